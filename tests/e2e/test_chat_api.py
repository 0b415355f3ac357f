"""The chat function through functions-framework's real app, validated against openapi.yaml."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from ion.bootstrap import App
from ion.errors import LlmError
from ion.services.quota import QuotaGuard
from tests.fakes.clock import ManualClock
from tests.fakes.jwks_server import unsigned_token
from tests.fakes.llm import RecordingLlm
from tests.support.app import TEST_JWT_SECRET
from tests.support.openapi_check import CheckedClient


@pytest.fixture
def api(chat_client: FlaskClient) -> CheckedClient:
    return CheckedClient(chat_client)


def chat(
    api: CheckedClient, headers: dict[str, str], message: str, **extra: object
) -> dict[str, Any]:
    response = api.post("/v1/chat", json={"message": message, **extra}, headers=headers)
    assert response.status_code == 200, response.data
    body: dict[str, Any] = response.get_json()
    return body


def error_code(response: TestResponse) -> str:
    body = response.get_json()
    # A chat turn that could not be answered also names the conversation keeping the message.
    assert set(body) - {"conversation_id"} == {"error", "request_id"}
    code: str = body["error"]["code"]
    return code


def test_health_and_ready(api: CheckedClient) -> None:
    assert api.get("/health").get_json() == {"status": "ok"}
    ready = api.get("/ready")
    assert ready.status_code == 200
    body = ready.get_json()
    assert body["status"] == "ready"
    assert body["checks"]["llm"]["provider"] == "offline"


def test_chat_answers_with_routing_and_persists(api: CheckedClient, auth: dict[str, str]) -> None:
    body = chat(api, auth, "I've been stuck on this bug for 6 hours and I want to quit")
    assert body["persona"] == {"id": "lua", "name": "Lua"}
    assert body["routing"]["primary"] == "lua"
    assert set(body["routing"]["scores"]) == {"lua", "elro", "riri", "nana"}
    assert body["model"] == "offline"
    assert body["usage"]["output_tokens"] > 0
    assert body["cached"] is False

    detail = api.get(f"/v1/conversations/{body['conversation_id']}", headers=auth).get_json()
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]
    assert (
        detail["messages"][0]["text"]
        == "I've been stuck on this bug for 6 hours and I want to quit"
    )
    assert detail["messages"][1]["text"] == body["reply"]
    assert detail["messages"][1]["message_id"] == body["message_id"]
    assert detail["messages"][1]["persona"] == "lua"


def test_follow_up_stays_with_current_persona(api: CheckedClient, auth: dict[str, str]) -> None:
    first = chat(api, auth, "How do database indexes work internally? B-tree or hash?")
    assert first["persona"]["id"] == "elro"
    follow = chat(api, auth, "and the second one?", conversation_id=first["conversation_id"])
    assert follow["persona"]["id"] == "elro"
    assert follow["conversation_id"] == first["conversation_id"]
    detail = api.get(f"/v1/conversations/{first['conversation_id']}", headers=auth).get_json()
    assert detail["message_count"] == 4


def test_korean_message_gets_korean_answer(api: CheckedClient, auth: dict[str, str]) -> None:
    body = chat(api, auth, "면접이 내일인데 너무 불안해서 잠이 안 와요")
    assert body["persona"]["id"] == "lua"
    assert any("\uac00" <= ch <= "\ud7a3" for ch in body["reply"])


def test_users_never_see_each_other(
    api: CheckedClient, auth: dict[str, str], auth_bob: dict[str, str]
) -> None:
    mine = chat(api, auth, "what is a closure?")["conversation_id"]
    path = f"/v1/conversations/{mine}"
    assert error_code(api.get(path, headers=auth_bob)) == "not_found"
    assert api.get(path, headers=auth_bob).status_code == 404
    assert api.delete(path, headers=auth_bob).status_code == 404
    response = api.post(
        "/v1/chat", json={"message": "hi", "conversation_id": mine}, headers=auth_bob
    )
    assert response.status_code == 404
    assert api.get("/v1/conversations", headers=auth_bob).get_json()["conversations"] == []
    assert api.get(path, headers=auth).status_code == 200


def test_list_is_newest_first_and_paginates(api: CheckedClient, auth: dict[str, str]) -> None:
    ids = [
        chat(api, auth, f"question number {i} about python lists")["conversation_id"]
        for i in range(5)
    ]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = api.get("/v1/conversations" + query, headers=auth).get_json()
        pages += 1
        seen += [c["conversation_id"] for c in page["conversations"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert pages == 3


def test_bad_cursor_and_limit(api: CheckedClient, auth: dict[str, str]) -> None:
    assert api.get("/v1/conversations?cursor=%%%garbage", headers=auth).status_code == 400
    assert api.get("/v1/conversations?limit=0", headers=auth).status_code == 422
    assert api.get("/v1/conversations?limit=101", headers=auth).status_code == 422
    assert api.get("/v1/conversations?limit=abc", headers=auth).status_code == 422


def test_delete_erases(api: CheckedClient, auth: dict[str, str]) -> None:
    cid = chat(api, auth, "explain REST vs GraphQL")["conversation_id"]
    response = api.delete(f"/v1/conversations/{cid}", headers=auth)
    assert response.status_code == 204
    assert api.get(f"/v1/conversations/{cid}", headers=auth).status_code == 404
    assert api.delete(f"/v1/conversations/{cid}", headers=auth).status_code == 404


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_token"),
        ({"Authorization": "Basic abc"}, "invalid_token"),
        ({"Authorization": "Bearer not-a-jwt"}, "invalid_token"),
    ],
)
def test_auth_errors(api: CheckedClient, headers: dict[str, str], code: str) -> None:
    response = api.post("/v1/chat", json={"message": "hi"}, headers=headers)
    assert response.status_code == 401
    assert error_code(response) == code
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def _token(secret: str, **claims: object) -> dict[str, str]:
    now = datetime.now(UTC)
    base: dict[str, object] = {
        "sub": "alice",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
    }
    base.update(claims)
    return {"Authorization": "Bearer " + jwt.encode(base, secret, algorithm="HS256")}


def test_expired_and_forged_tokens(api: CheckedClient) -> None:
    past = int((datetime.now(UTC) - timedelta(hours=1)).timestamp())
    expired = api.get("/v1/conversations", headers=_token(TEST_JWT_SECRET, exp=past))
    assert (expired.status_code, error_code(expired)) == (401, "token_expired")
    forged = api.get("/v1/conversations", headers=_token("another-secret-" + "y" * 30))
    assert (forged.status_code, error_code(forged)) == (401, "invalid_signature")
    unsigned = unsigned_token({"sub": "alice", "exp": 9999999999, "iat": 1})
    none_alg = api.get("/v1/conversations", headers={"Authorization": f"Bearer {unsigned}"})
    assert none_alg.status_code == 401


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": "{not json", "content_type": "application/json"}, 400, "invalid_json"),
        (
            {"data": "message=hi", "content_type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
        ),
        ({"json": {}}, 422, "validation_failed"),
        ({"json": {"message": 42}}, 422, "validation_failed"),
        ({"json": {"message": "hi", "extra": 1}}, 422, "validation_failed"),
        ({"json": {"message": "   "}}, 422, "validation_failed"),
        ({"json": {"message": "a\x00b"}}, 422, "validation_failed"),
        ({"json": ["message"]}, 422, "validation_failed"),
        ({"json": {"message": "hi", "conversation_id": "../etc"}}, 422, "validation_failed"),
        ({"json": {"message": "hi", "conversation_id": "doesnotexist"}}, 404, "not_found"),
    ],
)
def test_bad_requests(
    api: CheckedClient, auth: dict[str, str], kwargs: dict[str, Any], status: int, code: str
) -> None:
    response = api.post("/v1/chat", headers=auth, **kwargs)
    assert response.status_code == status, response.data
    assert error_code(response) == code


def test_message_length_limit(api: CheckedClient, auth: dict[str, str], app: App) -> None:
    limit = app.settings.max_message_chars
    assert api.post("/v1/chat", json={"message": "a" * limit}, headers=auth).status_code == 200
    too_long = api.post("/v1/chat", json={"message": "a" * (limit + 1)}, headers=auth)
    assert too_long.status_code == 422
    assert str(limit) in too_long.get_json()["error"]["message"]


def test_body_too_large(api: CheckedClient, auth: dict[str, str], app: App) -> None:
    big = json.dumps({"message": "x" * (app.settings.max_body_bytes + 10)})
    response = api.post("/v1/chat", data=big, content_type="application/json", headers=auth)
    assert (response.status_code, error_code(response)) == (413, "payload_too_large")


def test_unknown_path_and_method(chat_client: FlaskClient, auth: dict[str, str]) -> None:
    missing = chat_client.get("/v1/nothing-here", headers=auth)
    assert (missing.status_code, error_code(missing)) == (404, "not_found")
    wrong = chat_client.put("/v1/chat", json={"message": "hi"}, headers=auth)
    assert (wrong.status_code, error_code(wrong)) == (405, "method_not_allowed")
    assert wrong.headers["Allow"] == "POST"
    bad_id = chat_client.get("/v1/conversations/bad.id!", headers=auth)
    assert (bad_id.status_code, error_code(bad_id)) == (400, "bad_request")


def test_stored_text_is_verbatim(api: CheckedClient, auth: dict[str, str]) -> None:
    nasty = (
        '\'; DROP TABLE messages; -- <script>alert(1)</script> $(rm -rf /) {"$gt": ""} 😀 \u200f'
    )
    cid = chat(api, auth, nasty)["conversation_id"]
    detail = api.get(f"/v1/conversations/{cid}", headers=auth).get_json()
    assert detail["messages"][0]["text"] == nasty


def _sse_events(raw: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_streaming_answer(api: CheckedClient, auth: dict[str, str]) -> None:
    response = api.post(
        "/v1/chat", json={"message": "what is a monad?", "stream": True}, headers=auth
    )
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    events = _sse_events(response.get_data(as_text=True))
    names = [name for name, _ in events]
    assert names[0] == "meta" and names[-1] == "done"
    assert set(names[1:-1]) == {"delta"}
    meta = events[0][1]
    text = "".join(data["text"] for name, data in events if name == "delta")
    detail = api.get(f"/v1/conversations/{meta['conversation_id']}", headers=auth).get_json()
    assert detail["messages"][1]["text"] == text
    assert detail["messages"][1]["message_id"] == meta["message_id"]
    done = events[-1][1]
    assert done["latency_ms"] == detail["messages"][1]["latency_ms"]
    assert done["usage"] == detail["messages"][1]["usage"]


def test_llm_failure_is_503_and_keeps_the_message(
    api: CheckedClient, auth: dict[str, str], app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        app.chat,
        "_llm",
        RecordingLlm(failure=LlmError("the model is unavailable", retry_after_s=7)),
    )
    response = api.post("/v1/chat", json={"message": "explain generators"}, headers=auth)
    assert (response.status_code, error_code(response)) == (503, "llm_unavailable")
    assert response.headers["Retry-After"] == "7"
    conversations = api.get("/v1/conversations", headers=auth).get_json()["conversations"]
    assert len(conversations) == 1
    detail = api.get(f"/v1/conversations/{conversations[0]['conversation_id']}", headers=auth)
    messages = detail.get_json()["messages"]
    assert [(m["role"], m["status"], m["text"]) for m in messages] == [
        ("user", "unanswered", "explain generators")
    ]


def test_invalid_requests_and_replays_do_not_use_up_the_chat_limit(
    api: CheckedClient, auth: dict[str, str], app: App
) -> None:
    # A stopped clock: the limit is per minute, and a slow machine may cross a minute.
    app.quota = QuotaGuard(app.quota.store, ManualClock(), app.quota.limits)
    limit = app.settings.rate_limit_per_minute
    for _ in range(limit + 2):
        assert api.post("/v1/chat", json={"message": ""}, headers=auth).status_code == 422
    keyed = {**auth, "Idempotency-Key": "first-question-1"}
    first = api.post("/v1/chat", json={"message": "what is a mutex?"}, headers=keyed)
    assert first.status_code == 200
    for i in range(limit - 1):
        assert chat(api, auth, f"what is a semaphore, part {i}?")["reply"]
    over = api.post("/v1/chat", json={"message": "one more question"}, headers=auth)
    assert (over.status_code, error_code(over)) == (429, "rate_limited")
    replay = api.post("/v1/chat", json={"message": "what is a mutex?"}, headers=keyed)
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json() == first.get_json()


def test_a_deleted_conversation_is_never_replayed(api: CheckedClient, auth: dict[str, str]) -> None:
    keyed = {**auth, "Idempotency-Key": "delete-me-1"}
    first = api.post("/v1/chat", json={"message": "explain recursion"}, headers=keyed).get_json()
    assert (
        api.delete(f"/v1/conversations/{first['conversation_id']}", headers=auth).status_code == 204
    )
    again = api.post("/v1/chat", json={"message": "explain recursion"}, headers=keyed)
    assert again.status_code == 200
    assert "Idempotent-Replayed" not in again.headers
    assert again.get_json()["conversation_id"] != first["conversation_id"]
    replay = api.post("/v1/chat", json={"message": "explain recursion"}, headers=keyed)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json() == again.get_json()


def test_explicit_stream_false_wins_over_accept(api: CheckedClient, auth: dict[str, str]) -> None:
    response = api.post(
        "/v1/chat",
        json={"message": "what is a monad?", "stream": False},
        headers={**auth, "Accept": "text/event-stream"},
    )
    assert response.status_code == 200
    assert response.mimetype == "application/json"
