"""The whole chat function on ION_BACKEND=gcp: Firestore and Pub/Sub emulators, no fakes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ion.bootstrap import App, build_app, set_app
from ion.domain.events import decode_event, hash_user_id
from tests.conftest import FIRESTORE_TEST_PROJECT
from tests.support.app import function_client, make_settings
from tests.support.openapi_check import CheckedClient
from tests.support.pubsub import PubSubTopic

pytestmark = pytest.mark.emulator


@pytest.fixture
def gcp_app(clean_env: Path, firestore_reset: None, pubsub_topic: PubSubTopic) -> Iterator[App]:
    assert FIRESTORE_TEST_PROJECT == "ion-test"
    app = build_app(
        make_settings(
            clean_env / "data",
            backend="gcp",
            gcp_project=FIRESTORE_TEST_PROJECT,
            events_topic=pubsub_topic.topic,
            jwt_issuer="https://auth.ion.example",
            jwt_audience="ion-mentoring",
        )
    )
    set_app(app)
    yield app
    set_app(None)


def pull(subscription_path: str, expected: int) -> list[Any]:
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    received: list[Any] = []
    try:
        for _ in range(20):
            response = subscriber.pull(subscription=subscription_path, max_messages=10, timeout=5)
            received += response.received_messages
            if response.received_messages:
                subscriber.acknowledge(
                    subscription=subscription_path,
                    ack_ids=[m.ack_id for m in response.received_messages],
                )
            if len(received) >= expected:
                break
    finally:
        subscriber.close()
    return received


def test_chat_end_to_end_on_firestore_and_pubsub(gcp_app: App, pubsub_topic: PubSubTopic) -> None:
    api = CheckedClient(function_client("chat"))
    auth = {"Authorization": f"Bearer {gcp_app.dev_token('alice')}"}
    assert api.get("/ready").status_code == 200

    first = api.post("/v1/chat", json={"message": "How does a B-tree index work?"}, headers=auth)
    assert first.status_code == 200
    cid = first.get_json()["conversation_id"]
    second = api.post(
        "/v1/chat", json={"message": "and the second one?", "conversation_id": cid}, headers=auth
    )
    assert second.status_code == 200

    # The conversation lives in Firestore, as the data model says.
    doc = gcp_app.store.client.collection("conversations").document(cid).get()  # type: ignore[attr-defined]
    assert doc.exists and doc.to_dict()["message_count"] == 4
    detail = api.get(f"/v1/conversations/{cid}", headers=auth).get_json()
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant"] * 2

    # Each turn went out on Pub/Sub, without text or the raw user id.
    messages = pull(pubsub_topic.subscription_path, expected=2)
    assert len(messages) == 2
    for received in messages:
        raw = received.message.data
        event = decode_event(raw)
        assert event.event_type == "chat.turn.completed"
        assert received.message.attributes["event_type"] == "chat.turn.completed"
        assert b"alice" not in raw and b"B-tree" not in raw
        assert json.loads(raw)["data"]["user_hash"] == hash_user_id("alice")
    ids = {json.loads(m.message.data)["data"]["message_id"] for m in messages}
    assert ids == {first.get_json()["message_id"], second.get_json()["message_id"]}


def test_deleting_a_conversation_erases_its_feedback_on_firestore(gcp_app: App) -> None:
    api = CheckedClient(function_client("chat"))
    auth = {"Authorization": f"Bearer {gcp_app.dev_token('alice')}"}
    reply = api.post("/v1/chat", json={"message": "what is a closure?"}, headers=auth).get_json()
    cid, mid = reply["conversation_id"], reply["message_id"]
    feedback_url = f"/v1/conversations/{cid}/messages/{mid}/feedback"
    posted = api.post(feedback_url, json={"rating": "down", "comment": "too vague"}, headers=auth)
    assert posted.status_code == 201
    assert gcp_app.records is not None
    assert gcp_app.records.get_feedback(cid, mid) is not None
    assert api.delete(f"/v1/conversations/{cid}", headers=auth).status_code == 204
    assert gcp_app.records.get_feedback(cid, mid) is None
