"""The learner's own data through HTTP: GET /v1/me/export and DELETE /v1/me, on SQLite and on
the Firestore emulator (with Pub/Sub), idempotent, leaving other learners untouched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ion.bootstrap import App, build_app, set_app
from ion.domain.events import hash_user_id
from tests.support.app import firestore_app_settings, function_client, make_settings
from tests.support.openapi_check import CheckedClient

SELF_INTRO = "I'm a beginner and I'm learning python. How do for loops work?"
FACT = "My capstone is a Flutter app called Plantly, due June 12."


@pytest.fixture
def embedded_app(clean_env: Path) -> Iterator[App]:
    application = build_app(make_settings(clean_env / "data", history_window=2, cache_ttl_s=3600))
    set_app(application)
    yield application
    set_app(None)


@pytest.fixture
def firestore_app(clean_env: Path, firestore_reset: None, pubsub_topic: Any) -> Iterator[App]:
    application = build_app(
        firestore_app_settings(
            clean_env / "data", pubsub_topic.topic, history_window=2, cache_ttl_s=3600
        )
    )
    set_app(application)
    yield application
    set_app(None)


@pytest.fixture(params=["sqlite", pytest.param("firestore", marks=pytest.mark.emulator)])
def wired(request: pytest.FixtureRequest) -> App:
    app: App = request.getfixturevalue(
        f"{'embedded' if request.param == 'sqlite' else 'firestore'}_app"
    )
    return app


def headers(app: App, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.dev_token(user)}"}


def chat(api: CheckedClient, auth: dict[str, str], message: str, **extra: Any) -> dict[str, Any]:
    extra_headers = extra.pop("headers", {})
    response = api.post(
        "/v1/chat", json={"message": message, **extra}, headers={**auth, **extra_headers}
    )
    assert response.status_code == 200, response.data
    body: dict[str, Any] = response.get_json()
    return body


def test_export_then_erase_everything_of_one_learner(wired: App) -> None:
    api = CheckedClient(function_client("chat"))
    alice, bob = headers(wired, "alice"), headers(wired, "bob")
    keyed = {"Idempotency-Key": "alice-first-1"}
    first = chat(api, alice, FACT, headers=keyed)
    conversation = first["conversation_id"]
    for turn in range(5):
        chat(
            api,
            alice,
            f"How do I test widget number {turn} in Flutter?",
            conversation_id=conversation,
        )
    second = chat(api, alice, SELF_INTRO)
    rated = api.post(
        f"/v1/conversations/{conversation}/messages/{first['message_id']}/feedback",
        json={"rating": "up", "comment": "clear, thanks"},
        headers=alice,
    )
    assert rated.status_code == 201
    api.put("/v1/me/profile", json={"goals": ["ship Plantly"], "level": "beginner"}, headers=alice)
    bob_reply = chat(api, bob, "How do database indexes work internally? B-tree or hash?")

    export = api.get("/v1/me/export", headers=alice)
    assert export.status_code == 200
    assert export.headers["Content-Disposition"].startswith("attachment")
    data = export.get_json()
    assert data["user_id"] == "alice"
    assert data["profile"]["goals"] == ["ship Plantly"]
    assert {(s["field"], s["value"]) for s in data["profile_suggestions"]} == {("stack", "python")}
    by_id = {c["conversation_id"]: c for c in data["conversations"]}
    assert set(by_id) == {conversation, second["conversation_id"]}
    long_one = by_id[conversation]
    assert len(long_one["messages"]) == 12
    assert FACT in long_one["summary"]
    rated_message = next(m for m in long_one["messages"] if m["id"] == first["message_id"])
    assert rated_message["feedback"]["comment"] == "clear, thanks"
    assert bob_reply["conversation_id"] not in by_id

    erased = api.delete("/v1/me", headers=alice)
    assert erased.status_code == 200
    counts = erased.get_json()["erased"]
    assert counts["conversations"] == 2
    assert counts["messages"] == 14
    assert counts["feedback"] == 1
    assert counts["idempotency_records"] == 1
    assert counts["cached_answers"] == 2  # the two first turns
    assert counts["profile"] == 1
    # Rate windows of both buckets and today's token budget.
    assert counts["quota_counters"] >= 3
    assert "no user id" in erased.get_json()["statistics"]

    # Nothing is left: no conversation, profile, replay or counter.
    assert api.get("/v1/conversations", headers=alice).get_json()["conversations"] == []
    empty = api.get("/v1/me/export", headers=alice).get_json()
    assert empty["conversations"] == [] and empty["profile"] is None
    assert wired.store.get_memory(conversation) is None
    user_hash = hash_user_id("alice")
    assert wired.backend.quota.delete_counters_with_prefix(f"tokens:{user_hash}:") == 0
    again = chat(api, alice, FACT, headers=keyed)
    assert again["conversation_id"] != conversation  # not a replay of erased text

    # Bob is untouched.
    bob_detail = api.get(f"/v1/conversations/{bob_reply['conversation_id']}", headers=bob)
    assert bob_detail.status_code == 200
    assert len(bob_detail.get_json()["messages"]) == 2


def test_erasure_is_idempotent(wired: App) -> None:
    api = CheckedClient(function_client("chat"))
    carol = headers(wired, "carol")
    chat(api, carol, "How do database indexes work internally? B-tree or hash?")
    assert api.delete("/v1/me", headers=carol).get_json()["erased"]["conversations"] == 1
    second = api.delete("/v1/me", headers=carol)
    assert second.status_code == 200
    assert set(second.get_json()["erased"].values()) == {0}
    never = api.delete("/v1/me", headers=headers(wired, "dave"))
    assert set(never.get_json()["erased"].values()) == {0}
