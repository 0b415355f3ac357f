"""Deleting a conversation erases every copy of its text, and the response cache never
tells one learner what another asked; on SQLite and on the Firestore emulator."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ion.bootstrap import App, build_app, set_app
from tests.conftest import FIRESTORE_TEST_PROJECT
from tests.support.app import function_client, make_settings
from tests.support.openapi_check import CheckedClient

SECRET = "zebra-quartz-7713 나는 면접이 너무 두려워요"


@pytest.fixture(params=["embedded", pytest.param("gcp", marks=pytest.mark.emulator)])
def backend_app(request: pytest.FixtureRequest, clean_env: Path) -> Iterator[App]:
    overrides: dict[str, Any] = {}
    if request.param == "gcp":
        request.getfixturevalue("firestore_reset")
        topic = request.getfixturevalue("pubsub_topic")
        overrides = {
            "backend": "gcp",
            "gcp_project": FIRESTORE_TEST_PROJECT,
            "events_topic": topic.topic,
            "jwt_issuer": "https://auth.ion.example",
            "jwt_audience": "ion-mentoring",
        }
    application = build_app(make_settings(clean_env / "data", **overrides))
    set_app(application)
    yield application
    set_app(None)


def everything_stored(app: App) -> str:
    """Every row of every table / every document of every collection, as one text."""
    if app.settings.backend == "gcp":
        client = app.store.client  # type: ignore[attr-defined]
        return "\n".join(
            f"{snap.reference.path} {snap.to_dict()}"
            for root in client.collections()
            for snap in root.recursive().stream()
        )
    conn = sqlite3.connect(app.settings.data_dir / "ion.sqlite3")
    try:
        tables = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        ]
        return "\n".join(
            f"{table} {row}"
            for table in tables
            for row in conn.execute(f'SELECT * FROM "{table}"').fetchall()
        )
    finally:
        conn.close()


def test_delete_erases_every_copy_of_the_conversation_text(backend_app: App) -> None:
    api = CheckedClient(function_client("chat"))
    auth = {"Authorization": f"Bearer {backend_app.dev_token('alice')}"}
    keyed = {**auth, "Idempotency-Key": "erase-me-1"}
    first = api.post("/v1/chat", json={"message": SECRET}, headers=keyed)
    assert first.status_code == 200
    body = first.get_json()
    cid = body["conversation_id"]
    reply = body["reply"]
    follow = api.post(
        "/v1/chat",
        json={"message": f"{SECRET} again", "conversation_id": cid},
        headers={**auth, "Idempotency-Key": "erase-me-2"},
    )
    assert follow.status_code == 200
    feedback = api.post(
        f"/v1/conversations/{cid}/messages/{body['message_id']}/feedback",
        json={"rating": "down", "comment": f"comment on {SECRET}"},
        headers=auth,
    )
    assert feedback.status_code == 201
    before = everything_stored(backend_app)
    # The test means something: the text and its derived copies were stored.
    assert before.count(SECRET) >= 4  # title, two messages, comment (+ cached replies)
    assert reply in before

    assert api.delete(f"/v1/conversations/{cid}", headers=auth).status_code == 204

    after = everything_stored(backend_app)
    assert SECRET not in after
    assert reply not in after
    assert follow.get_json()["reply"] not in after


def test_sqlite_file_keeps_no_erased_bytes(clean_env: Path) -> None:
    app = build_app(make_settings(clean_env / "data"))
    set_app(app)
    try:
        api = CheckedClient(function_client("chat"))
        auth = {"Authorization": f"Bearer {app.dev_token('alice')}"}
        body = api.post("/v1/chat", json={"message": SECRET}, headers=auth).get_json()
        assert (
            api.delete(f"/v1/conversations/{body['conversation_id']}", headers=auth).status_code
            == 204
        )
        needle = SECRET.encode("utf-8")
        files = sorted((clean_env / "data").glob("ion.sqlite3*"))
        assert [f.name for f in files if f.name == "ion.sqlite3"] == ["ion.sqlite3"]
        assert [f.name for f in files if needle in f.read_bytes()] == []
    finally:
        set_app(None)


def test_the_response_cache_is_per_learner(backend_app: App) -> None:
    api = CheckedClient(function_client("chat"))
    alice = {"Authorization": f"Bearer {backend_app.dev_token('alice')}"}
    bob = {"Authorization": f"Bearer {backend_app.dev_token('bob')}"}
    question = "how do python decorators work?"
    assert (
        api.post("/v1/chat", json={"message": question}, headers=alice).get_json()["cached"]
        is False
    )
    # Another learner with the same first message learns nothing about alice's question.
    bob_reply = api.post("/v1/chat", json={"message": question}, headers=bob).get_json()
    assert (bob_reply["cached"], bob_reply["usage"]["output_tokens"] > 0) == (False, True)
    # The same learner asking again in a new conversation is served from the cache.
    again = api.post("/v1/chat", json={"message": question}, headers=alice).get_json()
    assert (again["cached"], again["usage"]) == (True, {"input_tokens": 0, "output_tokens": 0})
