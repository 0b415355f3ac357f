"""A crisis turn on the Gemini provider: the real app and google-genai client against the
local fake Gemini server. The safe prompt is used; a blocked or failed answer falls back to
the safe template; nothing is cached; the learner always gets an answer with resources."""

from __future__ import annotations

from typing import Any

import pytest

from ion.bootstrap import App
from ion.domain.crisis import load_policy
from ion.services.chat import CRISIS_TEMPLATE_MODEL
from tests.e2e.test_chat_gemini import sse_events
from tests.fakes.gemini import FakeGemini, answer, finish_blocked, http_error, safety_block
from tests.support.app import function_client
from tests.support.gemini import FALLBACK, PRIMARY
from tests.support.openapi_check import CheckedClient

pytest.importorskip("google.genai")

CRISIS_EN = "this sprint is endless and lately I keep thinking it'd be easier to just not wake up"
CRISIS_KO = "팀원들 다 내가 없으면 더 잘 굴러갈 것 같아. 그냥 없어지고 싶다"


@pytest.fixture
def app(gemini_app: App) -> App:
    return gemini_app


@pytest.fixture
def api(app: App) -> CheckedClient:
    return CheckedClient(function_client("chat"))


def _post(api: CheckedClient, auth: dict[str, str], message: str, **extra: Any) -> Any:
    response = api.post("/v1/chat", json={"message": message, **extra}, headers=auth)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def _cache_rows(app: App) -> int:
    store: Any = app.store
    (count,) = store.database.read_one("SELECT COUNT(*) FROM response_cache")
    return int(count)


def test_the_model_answers_with_the_safe_prompt_and_the_resources_are_added(
    api: CheckedClient, app: App, auth: dict[str, str], fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(PRIMARY, answer("I'm really glad you told me. Are you safe right now?"))
    body = _post(api, auth, CRISIS_EN).get_json()
    assert body["model"] == PRIMARY and body["persona"]["id"] == "lua"
    assert body["reply"].startswith("I'm really glad you told me. Are you safe right now?")
    assert "988" in body["reply"] and "https://findahelpline.com" in body["reply"]
    assert body["safety"]["crisis"] is True
    (sent,) = fake_gemini.requests
    instruction = sent.system_instruction or ""
    assert "safe-messaging" in instruction and "safe right now" in instruction
    assert "988" in instruction  # the resources, word for word, are in the prompt
    assert "Elro" not in instruction and "Nana" not in instruction
    assert sent.contents[-1] == ("user", CRISIS_EN)
    assert _cache_rows(app) == 0


@pytest.mark.parametrize(
    "failure",
    [safety_block(), finish_blocked("SAFETY"), http_error(500), http_error(400, "bad")],
    ids=["prompt-blocked", "answer-withheld", "server-error", "rejected"],
)
def test_a_blocked_or_failed_answer_falls_back_to_the_template(
    api: CheckedClient, app: App, auth: dict[str, str], fake_gemini: FakeGemini, failure: Any
) -> None:
    fake_gemini.enqueue(PRIMARY, failure, times=5)
    fake_gemini.enqueue(FALLBACK, failure, times=5)
    body = _post(api, auth, CRISIS_KO).get_json()
    assert body["model"] == CRISIS_TEMPLATE_MODEL
    assert body["reply"] == load_policy().template_answer("ko")
    assert body["safety"]["crisis"] is True
    assert [r.get("phone") for r in body["safety"]["resources"]][:3] == ["109", "1388", "1577-0199"]
    assert body["usage"] == {"input_tokens": 0, "output_tokens": 0}
    assert _cache_rows(app) == 0


def test_a_streamed_crisis_answer_arrives_whole_with_its_resources(
    api: CheckedClient, auth: dict[str, str], fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(PRIMARY, safety_block(), times=5)
    fake_gemini.enqueue(FALLBACK, safety_block(), times=5)
    events = sse_events(_post(api, auth, CRISIS_EN, stream=True))
    assert [name for name, _ in events] == ["meta", "delta", "done"]
    assert events[0][1]["safety"]["crisis"] is True
    assert events[1][1]["text"] == load_policy().template_answer("en")
    assert events[2][1]["model"] == CRISIS_TEMPLATE_MODEL


def test_a_calm_message_still_uses_the_persona_prompt(
    api: CheckedClient, auth: dict[str, str], fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(PRIMARY, answer("Decorators wrap functions."))
    body = _post(api, auth, "how do python decorators work?").get_json()
    assert body["safety"] == {"crisis": False, "resources": []}
    (sent,) = fake_gemini.requests
    assert "safe-messaging" not in (sent.system_instruction or "")


def test_a_learner_who_moves_on_after_a_crisis_is_acknowledged_and_checked_on(
    api: CheckedClient, auth: dict[str, str], fake_gemini: FakeGemini
) -> None:
    policy = load_policy()
    fake_gemini.enqueue(PRIMARY, answer("Thank you for telling me. Are you safe right now?"))
    first = _post(api, auth, CRISIS_EN).get_json()
    fake_gemini.enqueue(PRIMARY, answer("We can look at that together soon. Are you safe?"))
    follow = "never mind. can you just explain what a closure is in JS"
    body = _post(api, auth, follow, conversation_id=first["conversation_id"]).get_json()
    assert body["safety"]["crisis"] is True and body["persona"]["id"] == "lua"
    before, after = (sent.system_instruction or "" for sent in fake_gemini.requests)
    assert policy.moved_on.prompt["en"] not in before
    assert policy.moved_on.prompt["en"] in after and "safe-messaging" in after
    assert fake_gemini.requests[-1].contents[-1] == ("user", follow)
