"""The chat function end to end with ION_LLM_PROVIDER=gemini: the real app, the real
google-genai client, the local fake Gemini server (tests/fakes/gemini.py), SQLite storage.

Timeouts are short and backoff is zero (ION_LLM_BACKOFF_BASE_S=0), so failures are fast.
Every response is validated against openapi.yaml.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import TestResponse

from ion.bootstrap import App, build_app, set_app
from ion.ports import IdempotencyRecord
from tests.fakes.gemini import (
    FakeGemini,
    answer,
    cut_stream,
    http_error,
    safety_block,
)
from tests.support.app import function_client
from tests.support.gemini import FALLBACK, PRIMARY, gemini_settings
from tests.support.openapi_check import CheckedClient

pytest.importorskip("google.genai")


@pytest.fixture
def app(gemini_app: App) -> App:
    """Overrides tests/support/app.py's `app` (so `auth` uses it too): Gemini provider."""
    return gemini_app


@pytest.fixture
def api(app: App) -> CheckedClient:
    return CheckedClient(function_client("chat"))


def post(api: CheckedClient, auth: dict[str, str], message: str, **extra: Any) -> TestResponse:
    headers = {**auth, **extra.pop("headers", {})}
    return api.post("/v1/chat", json={"message": message, **extra}, headers=headers)


def messages(
    api: CheckedClient, auth: dict[str, str], conversation_id: str
) -> list[dict[str, Any]]:
    detail = api.get(f"/v1/conversations/{conversation_id}", headers=auth)
    assert detail.status_code == 200
    result: list[dict[str, Any]] = detail.get_json()["messages"]
    return result


def sse_events(response: TestResponse) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in response.get_data(as_text=True).strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


QUESTION = "how do python decorators work?"


# --- answers ---------------------------------------------------------------------------


def test_answer_records_model_usage_latency_and_finish_reason(
    api: CheckedClient, auth: dict[str, str], fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(PRIMARY, answer("Decorators wrap functions.", usage=(40, 9, 3)))
    response = post(api, auth, QUESTION)
    assert response.status_code == 200
    body = response.get_json()
    assert body["reply"] == "Decorators wrap functions."
    assert (body["model"], body["finish_reason"], body["cached"]) == (PRIMARY, "STOP", False)
    assert body["usage"] == {"input_tokens": 40, "output_tokens": 12}  # thinking billed as output

    user, assistant = messages(api, auth, body["conversation_id"])
    assert (user["status"], assistant["status"]) == ("complete", "complete")
    assert assistant["model"] == PRIMARY
    assert assistant["usage"] == {"input_tokens": 40, "output_tokens": 12}
    assert assistant["finish_reason"] == "STOP"
    assert assistant["latency_ms"] == body["latency_ms"]
    (sent,) = fake_gemini.requests
    assert sent.contents[-1] == ("user", QUESTION)
    assert "Elro" in (sent.system_instruction or "")


def test_streaming_answer(
    api: CheckedClient, auth: dict[str, str], fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(PRIMARY, answer("One, ", "two, ", "three.", usage=(30, 5, 0)))
    response = post(api, auth, QUESTION, stream=True)
    assert response.status_code == 200
    events = sse_events(response)
    assert [name for name, _ in events] == ["meta", "delta", "delta", "delta", "done"]
    assert [data["text"] for name, data in events if name == "delta"] == [
        "One, ",
        "two, ",
        "three.",
    ]
    done = events[-1][1]
    meta = events[0][1]
    stored = messages(api, auth, meta["conversation_id"])[1]
    assert done == {
        "model": PRIMARY,
        "usage": {"input_tokens": 30, "output_tokens": 5},
        "finish_reason": "STOP",
        "cached": False,
        "latency_ms": stored["latency_ms"],
    }
    assert (stored["message_id"], stored["text"]) == (meta["message_id"], "One, two, three.")
    assert (stored["model"], stored["finish_reason"]) == (PRIMARY, "STOP")
    assert fake_gemini.requests[0].stream


def test_429_then_success(
    api: CheckedClient, auth: dict[str, str], fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(PRIMARY, http_error(429), answer("Second time lucky."))
    response = post(api, auth, QUESTION)
    assert response.status_code == 200
    assert (response.get_json()["reply"], response.get_json()["model"]) == (
        "Second time lucky.",
        PRIMARY,
    )
    assert len(fake_gemini.requests_for(PRIMARY)) == 2


def test_persistent_503_falls_back_to_the_second_model(
    api: CheckedClient, auth: dict[str, str], fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(PRIMARY, http_error(503), times=2)
    fake_gemini.enqueue(FALLBACK, answer("From the fallback model."))
    response = post(api, auth, QUESTION)
    assert response.status_code == 200
    body = response.get_json()
    assert (body["reply"], body["model"]) == ("From the fallback model.", FALLBACK)
    assert messages(api, auth, body["conversation_id"])[1]["model"] == FALLBACK

    # A fallback answer is never cached under the primary model's key.
    again = post(api, auth, QUESTION)
    assert again.status_code == 200
    assert again.get_json()["cached"] is False
    assert len(fake_gemini.requests) == 4  # 2 primary failures, fallback, then primary


def test_persistent_failure_is_503_then_a_retry_completes_the_kept_message(
    api: CheckedClient, auth: dict[str, str], fake_gemini: FakeGemini
) -> None:
    fake_gemini.set_default(http_error(503))
    failed = post(api, auth, QUESTION)
    assert failed.status_code == 503
    body = failed.get_json()
    assert body["error"]["code"] == "llm_unavailable"
    assert failed.headers["Retry-After"] == "10"
    conversation_id = body["conversation_id"]
    (kept,) = messages(api, auth, conversation_id)
    assert (kept["role"], kept["status"], kept["text"]) == ("user", "unanswered", QUESTION)

    # Still failing: the retry changes nothing and stores no duplicate.
    again = post(api, auth, QUESTION, conversation_id=conversation_id)
    assert again.status_code == 503
    assert messages(api, auth, conversation_id) == [kept]

    fake_gemini.reset()
    fake_gemini.enqueue(PRIMARY, answer("Here it is at last."))
    retry = post(api, auth, QUESTION, conversation_id=conversation_id)
    assert retry.status_code == 200
    reply = retry.get_json()
    assert reply["user_message_id"] == kept["message_id"]
    stored = messages(api, auth, conversation_id)
    assert [(m["message_id"], m["role"], m["status"]) for m in stored] == [
        (kept["message_id"], "user", "complete"),
        (reply["message_id"], "assistant", "complete"),
    ]
    detail = api.get(f"/v1/conversations/{conversation_id}", headers=auth).get_json()
    assert detail["message_count"] == 2
    # The unanswered message was not sent twice as history: just once, as the question.
    assert fake_gemini.requests[-1].contents == [("user", QUESTION)]


def test_a_different_text_after_a_failure_is_a_new_message(
    api: CheckedClient, auth: dict[str, str], fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(PRIMARY, http_error(503), times=2)
    fake_gemini.enqueue(FALLBACK, http_error(503), times=2)
    failed = post(api, auth, QUESTION)
    assert failed.status_code == 503
    conversation_id = failed.get_json()["conversation_id"]
    other = post(api, auth, "what about class decorators?", conversation_id=conversation_id)
    assert other.status_code == 200
    stored = messages(api, auth, conversation_id)
    assert [(m["role"], m["status"]) for m in stored] == [
        ("user", "unanswered"),
        ("user", "complete"),
        ("assistant", "complete"),
    ]


def test_safety_block_is_422_blocked_and_the_message_is_kept(
    api: CheckedClient, auth: dict[str, str], fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(PRIMARY, safety_block())
    response = post(api, auth, QUESTION)
    assert response.status_code == 422
    body = response.get_json()
    assert body["error"]["code"] == "blocked"
    (kept,) = messages(api, auth, body["conversation_id"])
    assert (kept["status"], kept["text"]) == ("blocked", QUESTION)
    assert len(fake_gemini.requests) == 1  # a block is never retried


def test_stream_cut_midway_reports_error_and_keeps_the_partial_answer(
    api: CheckedClient, auth: dict[str, str], fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(PRIMARY, cut_stream("Partial ", "answer ", "never sent", after=2))
    response = post(api, auth, QUESTION, stream=True)
    assert response.status_code == 200
    events = sse_events(response)
    assert [name for name, _ in events] == ["meta", "delta", "delta", "error"]
    assert events[-1][1]["error"]["code"] == "llm_unavailable"
    user, assistant = messages(api, auth, events[0][1]["conversation_id"])
    assert (assistant["status"], assistant["text"]) == ("incomplete", "Partial answer ")
    assert assistant["model"] == PRIMARY
    assert user["status"] == "complete"


# --- response cache ----------------------------------------------------------------------


def test_cache_hit_skips_the_llm_for_a_first_turn(
    api: CheckedClient, auth: dict[str, str], fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(PRIMARY, answer("Decorators wrap functions.", usage=(40, 9, 0)))
    first = post(api, auth, QUESTION)
    assert first.status_code == 200
    assert first.get_json()["cached"] is False

    # Same text up to case and whitespace: answered from the cache, no LLM request.
    hit = post(api, auth, "  how DO python   decorators work? ")
    assert hit.status_code == 200
    body = hit.get_json()
    assert (body["cached"], body["reply"], body["model"]) == (
        True,
        "Decorators wrap functions.",
        PRIMARY,
    )
    assert body["usage"] == {"input_tokens": 0, "output_tokens": 0}
    assert body["conversation_id"] != first.get_json()["conversation_id"]
    assert len(fake_gemini.requests) == 1
    stored = messages(api, auth, body["conversation_id"])
    assert [(m["role"], m["status"], m["model"]) for m in stored] == [
        ("user", "complete", None),
        ("assistant", "complete", PRIMARY),
    ]

    streamed = post(api, auth, QUESTION, stream=True)
    events = sse_events(streamed)
    assert [name for name, _ in events] == ["meta", "delta", "done"]
    assert events[-1][1]["cached"] is True
    assert len(fake_gemini.requests) == 1


def test_cache_is_never_used_when_the_conversation_has_history(
    api: CheckedClient, auth: dict[str, str], fake_gemini: FakeGemini
) -> None:
    first = post(api, auth, "hello there")
    assert first.status_code == 200
    post(api, auth, QUESTION)  # cached for first turns
    follow_up = post(api, auth, QUESTION, conversation_id=first.get_json()["conversation_id"])
    assert follow_up.status_code == 200
    assert follow_up.get_json()["cached"] is False
    assert len(fake_gemini.requests) == 3


def test_cache_disabled_with_ttl_zero(
    clean_env: Path, fake_gemini: FakeGemini, auth: dict[str, str]
) -> None:
    set_app(build_app(gemini_settings(clean_env / "nocache", fake_gemini, cache_ttl_s=0)))
    api = CheckedClient(function_client("chat"))
    for _ in range(2):
        response = post(api, auth, QUESTION)
        assert response.status_code == 200
        assert response.get_json()["cached"] is False
    assert len(fake_gemini.requests) == 2


# --- idempotency -------------------------------------------------------------------------


def test_idempotent_retry_returns_the_same_reply_without_an_llm_call(
    api: CheckedClient, auth: dict[str, str], fake_gemini: FakeGemini
) -> None:
    key = {"Idempotency-Key": "retry-7f3a"}
    first = post(api, auth, "explain generators", headers=key)
    assert first.status_code == 200
    assert "Idempotent-Replayed" not in first.headers
    replay = post(api, auth, "explain generators", headers=key)
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json() == first.get_json()
    assert len(fake_gemini.requests) == 1
    assert len(messages(api, auth, first.get_json()["conversation_id"])) == 2

    streamed = post(api, auth, "explain generators", headers=key, stream=True)
    assert streamed.headers["Idempotent-Replayed"] == "true"
    events = sse_events(streamed)
    assert [name for name, _ in events] == ["meta", "delta", "done"]
    assert events[1][1]["text"] == first.get_json()["reply"]
    assert events[0][1]["message_id"] == first.get_json()["message_id"]
    assert len(fake_gemini.requests) == 1


def test_idempotency_key_is_per_user(
    api: CheckedClient,
    auth: dict[str, str],
    auth_bob: dict[str, str],
    fake_gemini: FakeGemini,
) -> None:
    key = {"Idempotency-Key": "shared-key"}
    fake_gemini.set_default(answer("An answer."))
    mine = post(api, auth, "explain generators", headers=key)
    theirs = post(api, auth_bob, "explain generators", headers=key)
    assert theirs.status_code == 200
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.get_json()["conversation_id"] != mine.get_json()["conversation_id"]


def test_idempotency_key_reused_with_another_body_is_422(
    api: CheckedClient, auth: dict[str, str], fake_gemini: FakeGemini
) -> None:
    key = {"Idempotency-Key": "k-1"}
    assert post(api, auth, "explain generators", headers=key).status_code == 200
    reused = post(api, auth, "explain iterators", headers=key)
    assert reused.status_code == 422
    assert reused.get_json()["error"]["code"] == "idempotency_key_reused"
    assert len(fake_gemini.requests) == 1


def test_idempotency_key_in_flight_is_409_with_retry_after(
    api: CheckedClient, auth: dict[str, str], app: App, fake_gemini: FakeGemini
) -> None:
    assert app.idempotency is not None
    now = app.clock.now()
    app.idempotency.store.claim_idempotency(
        IdempotencyRecord(
            user_id="alice",
            key="busy",
            request_hash="whatever",
            state="pending",
            created_at=now,
            expires_at=now + timedelta(days=1),
            locked_until=now + timedelta(minutes=5),
        ),
        now,
    )
    # A pending claim with another body is still the other request's key: reused wins.
    response = post(api, auth, "explain generators", headers={"Idempotency-Key": "busy"})
    assert response.status_code == 422
    same_body_hash = _request_hash("explain generators")
    app.idempotency.store.release_idempotency("alice", "busy")
    app.idempotency.store.claim_idempotency(
        IdempotencyRecord(
            user_id="alice",
            key="busy",
            request_hash=same_body_hash,
            state="pending",
            created_at=now,
            expires_at=now + timedelta(days=1),
            locked_until=now + timedelta(minutes=5),
        ),
        now,
    )
    busy = post(api, auth, "explain generators", headers={"Idempotency-Key": "busy"})
    assert busy.status_code == 409
    assert busy.get_json()["error"]["code"] == "conflict"
    assert busy.headers["Retry-After"] == "2"
    assert fake_gemini.requests == []


def _request_hash(message: str, conversation_id: str | None = None) -> str:
    import hashlib

    return hashlib.sha256(
        json.dumps(
            {"message": message, "conversation_id": conversation_id},
            ensure_ascii=False,
            sort_keys=True,
        ).encode("utf-8")
    ).hexdigest()


def test_a_failed_request_releases_its_idempotency_key(
    api: CheckedClient, auth: dict[str, str], fake_gemini: FakeGemini
) -> None:
    key = {"Idempotency-Key": "after-503"}
    fake_gemini.set_default(http_error(503))
    assert post(api, auth, "explain generators", headers=key).status_code == 503
    fake_gemini.reset()
    retry = post(api, auth, "explain generators", headers=key)
    assert retry.status_code == 200
    assert "Idempotent-Replayed" not in retry.headers


@pytest.mark.parametrize("bad", ["", "has space", "é-not-ascii", "x" * 256])
def test_invalid_idempotency_key_is_400(
    api: CheckedClient, auth: dict[str, str], fake_gemini: FakeGemini, bad: str
) -> None:
    response = api.client.post(
        "/v1/chat",
        json={"message": "explain generators"},
        headers={**auth, "Idempotency-Key": bad.encode("utf-8").decode("latin-1")},
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_request"
    assert fake_gemini.requests == []


# --- readiness ---------------------------------------------------------------------------


def test_ready_reports_gemini_configured(api: CheckedClient) -> None:
    response = api.get("/ready")
    assert response.status_code == 200
    llm = response.get_json()["checks"]["llm"]
    assert (llm["ok"], llm["provider"]) == (True, "gemini")
    assert PRIMARY in llm["detail"]


def test_ready_is_503_when_the_gemini_key_is_missing(
    clean_env: Path, fake_gemini: FakeGemini
) -> None:
    settings = gemini_settings(clean_env / "nokey", fake_gemini, gemini_api_key=None)
    set_app(build_app(settings))
    try:
        response = CheckedClient(function_client("chat")).get("/ready")
    finally:
        set_app(None)
    assert response.status_code == 503
    llm = response.get_json()["checks"]["llm"]
    assert (llm["ok"], llm["provider"]) == (False, "gemini")
    assert "API key" in llm["detail"]
