"""Single, duo and clarify turns: the rule (domain), the labelled data, and the HTTP API on
the offline provider, the fake Gemini server and the Firestore emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import TestResponse

from ion.bootstrap import App, build_app, set_app
from ion.domain.models import RoutingDecision
from ion.domain.orchestration import TurnPlan, chosen_reply, plan_turn
from ion.domain.personas import load_catalog
from ion.services.orchestration import CLARIFY_MODEL
from tests.fakes.gemini import FakeGemini
from tests.support.app import firestore_app_settings, function_client, make_settings
from tests.support.openapi_check import CheckedClient
from tests.support.paths import REPO

DUO_EN = (
    "I have 3 assignments due this week and I'm totally burned out, what order should I do them in?"
)
DUO_KO = "코테 또 떨어져서 우울한데 다음 달까지 공부 계획을 어떻게 짜야 할까요"
SINGLE = "How do database indexes work internally? B-tree or hash?"
CRISIS_SHORT = "I want to die"

POLICY = load_catalog().orchestration
assert POLICY is not None


def decision(primary: str = "elro", confidence: float = 0.9, **extra: Any) -> RoutingDecision:
    scores = {"lua": 0.1, "elro": 0.1, "riri": 0.1, "nana": 0.1, primary: 0.7}
    return RoutingDecision(
        primary=primary,
        secondary=extra.pop("secondary", None),
        confidence=confidence,
        scores=scores,
        reason="test",
        **extra,
    )


def parts_routed(routes: dict[str, tuple[str, float]]) -> Any:
    """A part router that knows `routes` (part → persona, confidence) and fails on any
    other part, so a test sees exactly which parts the rule asked about."""

    def route_part(part: str) -> tuple[str, float]:
        return routes[part]

    return route_part


def plan(text: str = "x y z", **overrides: Any) -> TurnPlan:
    assert POLICY is not None
    values: dict[str, Any] = {
        "decision": decision(),
        "strengths": {"lua": 0.0, "elro": 0.0, "riri": 0.0, "nana": 0.0},
        "route_part": parts_routed({}),
        "text": text,
        "language": "en",
        "first_message": True,
        "after_clarify": False,
        "crisis": False,
    }
    values.update(overrides)
    return plan_turn(POLICY, **values)


# --- the rule ----------------------------------------------------------------------------


def test_two_parts_with_two_sure_needs_make_a_duo_with_the_primary_first() -> None:
    text = "I'm panicking about all of it, the capstone is due Friday and I have no plan"
    assert POLICY is not None
    parts = POLICY.duo.parts(text)
    assert parts == [
        "I'm panicking about all of it",
        "the capstone is due Friday",
        "I have no plan",
    ]
    routes = {parts[0]: ("lua", 0.97), parts[1]: ("nana", 0.6), parts[2]: ("nana", 0.95)}
    got = plan(text, decision=decision("nana"), route_part=parts_routed(routes))
    assert got == TurnPlan("duo", ("nana", "lua"))


def test_a_second_need_routed_unsure_stays_single() -> None:
    text = "how do I index this table, also I'm a bit tired today"
    assert POLICY is not None
    first, second = POLICY.duo.parts(text)
    routes = {first: ("elro", 0.98), second: ("lua", 0.7)}
    got = plan(text, decision=decision("elro"), route_part=parts_routed(routes))
    assert got == TurnPlan("single", ("elro",))


def test_parts_that_never_name_the_primary_stay_single() -> None:
    text = "the deploy failed twice today, and the latency went up by 40 percent"
    assert POLICY is not None
    first, second = POLICY.duo.parts(text)
    routes = {first: ("nana", 0.95), second: ("riri", 0.95)}
    got = plan(text, decision=decision("elro"), route_part=parts_routed(routes))
    assert got == TurnPlan("single", ("elro",))


def test_parts_are_routed_only_until_the_answer_is_decided() -> None:
    # The part router knows only the parts it may be asked about (KeyError otherwise).
    text = "I'm panicking about all of it, the capstone is due Friday and I have no plan"
    assert POLICY is not None
    first, second, third = POLICY.duo.parts(text)
    # Two unsure parts leave one part, too few for the primary and a partner.
    unsure = {first: ("lua", 0.5), second: ("nana", 0.6)}
    assert plan(text, decision=decision("nana"), route_part=parts_routed(unsure)).mode == "single"
    # The primary and a partner found in the first two parts: the third is not routed.
    sure = {first: ("lua", 0.97), second: ("nana", 0.95)}
    got = plan(text, decision=decision("nana"), route_part=parts_routed(sure))
    assert got == TurnPlan("duo", ("nana", "lua"))
    # The first sure partner in the message's order is the one that joins.
    later = {first: ("nana", 0.95), second: ("riri", 0.92), third: ("lua", 0.99)}
    got = plan(text, decision=decision("nana"), route_part=parts_routed(later))
    assert got == TurnPlan("duo", ("nana", "riri"))


def test_a_one_part_message_is_never_routed_again() -> None:
    # No part router entry at all: asking it anything would raise KeyError.
    got = plan("B-tree or hash index for this query?", decision=decision("elro"))
    assert got == TurnPlan("single", ("elro",))


def test_korean_parts_split_at_sentence_endings_and_clause_words() -> None:
    assert POLICY is not None
    assert POLICY.duo.parts(
        "코테 또 떨어져서 너무 우울해요 다음 달까지 공부 계획을 어떻게 짜야 할까요"
    ) == [
        "코테 또 떨어져서 너무 우울해요",
        "다음 달까지 공부 계획을 어떻게 짜야 할까요",
    ]


def test_a_crisis_is_always_single_even_when_vague_or_mixed() -> None:
    text = "I want to die, and I have no plan for the exams"
    assert plan("help", decision=decision("lua", 0.1), crisis=True) == TurnPlan("single", ("lua",))
    assert plan(text, decision=decision("lua"), crisis=True).mode == "single"


def test_a_vague_first_message_gets_a_question_in_its_language() -> None:
    got = plan("help", decision=decision("nana", 0.9))
    assert got.mode == "clarify"
    assert 2 <= len(got.quick_replies) <= 4
    assert len(got.personas) == len(got.quick_replies)
    assert got.personas[0] == "nana"  # the best guess is offered first
    korean = plan("질문 있어요", language="ko", decision=decision("elro", 0.9))
    assert korean.mode == "clarify"
    assert all(any("\uac00" <= ch <= "\ud7a3" for ch in reply) for reply in korean.quick_replies)


def test_low_confidence_without_cues_clarifies_but_not_later_or_twice_or_when_judged() -> None:
    unsure = decision("elro", 0.2)
    assert plan("GIL thing?", decision=unsure).mode == "clarify"
    assert plan("GIL thing?", decision=unsure, first_message=False).mode == "single"
    assert plan("GIL thing?", decision=unsure, after_clarify=True).mode == "single"
    judged = decision("elro", 0.2, judged=True)
    assert plan("GIL thing?", decision=judged).mode == "single"
    # A message long enough to carry its own need is never questioned.
    assert plan(" ".join(["word"] * 12), decision=unsure).mode == "single"


def test_greetings_are_answered_not_questioned() -> None:
    assert plan("hi", decision=decision("lua", 0.87)).mode == "single"


def test_a_quick_reply_is_recognised_by_text_or_number() -> None:
    replies = ("I need to plan or organise my work", "마음이 힘들거나 지쳤어요")
    assert chosen_reply("i need to plan or organise my work.", replies) == 0
    assert chosen_reply(" 2 ", replies) == 1
    assert chosen_reply("3", replies) is None
    assert chosen_reply("something else entirely", replies) is None


# --- the labelled data (routed with the real router) ---------------------------------------


def _labelled(folder: str) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((REPO / "data" / "orchestration" / folder).glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return rows


@pytest.mark.parametrize("folder", ["train", "heldout"])
def test_the_rule_on_labelled_mixed_messages(app: App, folder: str) -> None:
    rows = _labelled(folder)
    assert {row["lang"] for row in rows} == {"ko", "en"}
    planned = []
    for row in rows:
        turn = app.chat.prepare("labeller", row["text"])
        app.chat.abandon(turn)
        planned.append((row, turn.plan))
    said_duo = [(row, p) for row, p in planned if p.mode == "duo"]
    true_duo = [(row, p) for row, p in planned if row["mode"] == "duo"]
    single = [(row, p) for row, p in planned if row["mode"] == "single"]
    # The floors sit just under what the rule measured (docs/orchestration.md): independent
    # writers' tempting singles are sometimes split, but most duos it makes are real ones,
    # with the right pair, and it finds most real duos.
    precision = sum(row["mode"] == "duo" for row, _ in said_duo) / len(said_duo)
    pair_right = sum(set(p.personas) == set(row["personas"]) for row, p in true_duo)
    single_kept = sum(p.mode == "single" for _, p in single) / len(single)
    floors = {"train": (0.95, 0.65, 0.95), "heldout": (0.8, 0.75, 0.75)}[folder]
    assert precision >= floors[0], precision
    assert pair_right / len(true_duo) >= floors[1], pair_right / len(true_duo)
    assert single_kept >= floors[2], single_kept
    # Clarifying questions go to vague messages only, never to a duo or a clear single.
    clarified = [row for row, p in planned if p.mode == "clarify"]
    assert clarified and all(row["mode"] == "clarify" for row in clarified)


# --- HTTP, offline provider, SQLite ---------------------------------------------------------


@pytest.fixture
def api(chat_client: Any) -> CheckedClient:
    return CheckedClient(chat_client)


def post(api: CheckedClient, auth: dict[str, str], message: str, **extra: Any) -> TestResponse:
    return api.post("/v1/chat", json={"message": message, **extra}, headers=auth)


def sse_events(response: TestResponse) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in response.get_data(as_text=True).strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def stored_answer(api: CheckedClient, auth: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    detail = api.get(f"/v1/conversations/{body['conversation_id']}", headers=auth).get_json()
    answer: dict[str, Any] = next(
        m for m in detail["messages"] if m["message_id"] == body["message_id"]
    )
    return answer


def test_a_duo_answer_through_http(api: CheckedClient, auth: dict[str, str]) -> None:
    body = post(api, auth, DUO_EN).get_json()
    assert (body["mode"], body["personas"], body["quick_replies"]) == ("duo", ["nana", "lua"], [])
    assert body["persona"]["id"] == "nana"
    assert "\n\n**Lua adds:** " in body["reply"]  # the primary first, then the marked part
    stored = stored_answer(api, auth, body)
    assert (stored["mode"], stored["personas"]) == ("duo", ["nana", "lua"])

    korean = post(api, auth, DUO_KO).get_json()
    assert (korean["mode"], korean["personas"]) == ("duo", ["nana", "lua"])
    assert "**루아의 한마디:**" in korean["reply"]


def test_a_single_answer_says_so(api: CheckedClient, auth: dict[str, str]) -> None:
    body = post(api, auth, SINGLE).get_json()
    assert (body["mode"], body["personas"], body["quick_replies"]) == ("single", ["elro"], [])
    assert stored_answer(api, auth, body)["mode"] == "single"


def test_the_stream_meta_event_carries_the_mode(api: CheckedClient, auth: dict[str, str]) -> None:
    events = sse_events(post(api, auth, DUO_EN, stream=True))
    meta = events[0][1]
    assert events[0][0] == "meta"
    assert (meta["mode"], meta["personas"], meta["quick_replies"]) == ("duo", ["nana", "lua"], [])
    text = "".join(data["text"] for name, data in events if name == "delta")
    assert "**Lua adds:**" in text


def test_clarify_then_a_quick_reply_routes_with_that_context(
    api: CheckedClient, auth: dict[str, str], app: App
) -> None:
    question = post(api, auth, "도와주세요").get_json()
    assert question["mode"] == "clarify"
    assert question["model"] == CLARIFY_MODEL
    assert question["usage"] == {"input_tokens": 0, "output_tokens": 0}
    replies = question["quick_replies"]
    assert 2 <= len(replies) <= 4 and len(question["personas"]) == len(replies)
    assert all(any("\uac00" <= ch <= "\ud7a3" for ch in r) for r in replies)
    for number, reply in enumerate(replies, 1):
        assert f"{number}. {reply}" in question["reply"]
    assert stored_answer(api, auth, question)["quick_replies"] == replies

    # The learner picks the choice standing for Riri (by its text).
    index = question["personas"].index("riri") if "riri" in question["personas"] else 0
    answer = post(api, auth, replies[index], conversation_id=question["conversation_id"]).get_json()
    assert answer["persona"]["id"] == question["personas"][index]
    assert answer["mode"] != "clarify"
    assert answer["routing"]["confidence"] == 1.0


def test_a_vague_answer_to_a_question_is_never_questioned_again(
    api: CheckedClient, auth: dict[str, str]
) -> None:
    question = post(api, auth, "help").get_json()
    assert question["mode"] == "clarify"
    again = post(api, auth, "hmm", conversation_id=question["conversation_id"]).get_json()
    assert again["mode"] != "clarify"
    assert again["model"] == "offline"


def test_free_text_after_a_question_is_routed_with_the_first_message(
    api: CheckedClient, auth: dict[str, str]
) -> None:
    question = post(api, auth, "I have a question about my project").get_json()
    assert question["mode"] == "clarify"
    answer = post(
        api,
        auth,
        "the p95 latency went up to 900 ms after the release, is that a regression?",
        conversation_id=question["conversation_id"],
    ).get_json()
    assert answer["persona"]["id"] == "riri"


def test_a_short_crisis_message_gets_the_single_safe_answer(
    api: CheckedClient, auth: dict[str, str]
) -> None:
    body = post(api, auth, CRISIS_SHORT).get_json()
    assert body["safety"]["crisis"] is True
    assert (body["mode"], body["personas"], body["quick_replies"]) == ("single", ["lua"], [])


# --- Gemini through google-genai against the fake server -----------------------------------


@pytest.fixture
def gemini_app(clean_env: Path, fake_gemini: FakeGemini) -> Iterator[App]:
    pytest.importorskip("google.genai")
    settings = make_settings(
        clean_env / "data",
        llm_provider="gemini",
        gemini_api_key="test-key-duo",
        gemini_base_url=fake_gemini.base_url,
        gemini_model="gemini-duo-test",
        llm_timeout_s=5.0,
        llm_max_attempts=1,
    )
    application = build_app(settings)
    set_app(application)
    yield application
    set_app(None)


def test_gemini_duo_is_one_composed_call_and_clarify_none(
    gemini_app: App, fake_gemini: FakeGemini
) -> None:
    api = CheckedClient(function_client("chat"))
    auth = {"Authorization": f"Bearer {gemini_app.dev_token('gina')}"}
    body = post(api, auth, DUO_EN).get_json()
    assert body["mode"] == "duo"
    requests = fake_gemini.requests
    assert len(requests) == 1
    system = requests[0].system_instruction or ""
    assert "You are Nana" in system
    assert 'starting exactly with "**Lua adds:**"' in system
    assert "Lua, the empathetic encourager" in system

    question = post(api, auth, "help").get_json()
    assert question["mode"] == "clarify"
    assert len(fake_gemini.requests) == 1  # a clarifying question makes no model call


# --- the Firestore emulator -----------------------------------------------------------------


@pytest.fixture
def gcp_app(clean_env: Path, firestore_reset: None, pubsub_topic: Any) -> Iterator[App]:
    application = build_app(firestore_app_settings(clean_env / "data", pubsub_topic.topic))
    set_app(application)
    yield application
    set_app(None)


@pytest.mark.emulator
def test_duo_and_clarify_on_firestore(gcp_app: App) -> None:
    api = CheckedClient(function_client("chat"))
    auth = {"Authorization": f"Bearer {gcp_app.dev_token('fran')}"}
    duo = post(api, auth, DUO_EN).get_json()
    stored = stored_answer(api, auth, duo)
    assert (stored["mode"], stored["personas"]) == ("duo", ["nana", "lua"])
    question = post(api, auth, "help").get_json()
    assert stored_answer(api, auth, question)["quick_replies"] == question["quick_replies"]
    answer = post(api, auth, "1", conversation_id=question["conversation_id"]).get_json()
    assert answer["persona"]["id"] == question["personas"][0]
    assert answer["mode"] != "clarify"


def test_a_persona_without_a_clarify_choice_is_never_offered() -> None:
    unsure = RoutingDecision(
        primary="seki",
        secondary="elro",
        confidence=0.2,
        scores={"seki": 0.5, "elro": 0.2, "lua": 0.1, "riri": 0.1, "nana": 0.1},
        reason="test",
    )
    got = plan("help", decision=unsure)
    assert got.mode == "clarify"
    assert "seki" not in got.personas and got.personas[0] == "elro"
