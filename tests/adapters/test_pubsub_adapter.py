"""PubSubTransport + ReliablePublisher against Google's real Pub/Sub emulator."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from google.api_core.exceptions import RetryError

from ion.adapters.outbox import ReliablePublisher
from ion.adapters.pubsub import PubSubTransport
from ion.domain.events import ChatTurnCompletedData, chat_turn_completed, decode_event
from ion.domain.models import Intent, Pace, ResonanceKey, Tone, Usage
from tests.fakes.clock import ManualClock
from tests.fakes.events import InMemoryOutbox
from tests.support.pubsub import PubSubEmulator, PubSubTopic


def event(n: int = 0) -> dict[str, Any]:
    return chat_turn_completed(
        conversation_id=f"c{n}",
        message_id=f"m{n}",
        user_id="learner-1",
        persona="lua",
        resonance_key=ResonanceKey(tone=Tone.ANXIOUS, pace=Pace.BURST, intent=Intent.PLANNING),
        model="gemini-2.5-flash",
        usage=Usage(input_tokens=3, output_tokens=4),
        latency_ms=120,
        cached=False,
        occurred_at=datetime.now(UTC),
    )


def pull(subscription_path: str, expected: int, timeout_s: float = 10.0) -> list[Any]:
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    received: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(received) < expected and time.monotonic() < deadline:
            response = subscriber.pull(subscription=subscription_path, max_messages=10, timeout=5.0)
            if response.received_messages:
                subscriber.acknowledge(
                    subscription=subscription_path,
                    ack_ids=[m.ack_id for m in response.received_messages],
                )
            received.extend(m.message for m in response.received_messages)
    finally:
        subscriber.close()
    return received


@pytest.mark.emulator
def test_publish_pull_decode_round_trip(
    pubsub_emulator: PubSubEmulator, pubsub_topic: PubSubTopic
) -> None:
    transport = PubSubTransport(pubsub_emulator.project, pubsub_topic.topic, timeout_s=5.0)
    outbox = InMemoryOutbox()
    publisher = ReliablePublisher(transport, outbox, ManualClock())
    try:
        envs = [event(n) for n in range(3)]
        for env in envs:
            publisher.publish("chat.turn.completed", env)
        assert outbox.entries == {}

        messages = pull(pubsub_topic.subscription_path, expected=3)
    finally:
        transport.close()

    by_id = {env["event_id"]: env for env in envs}
    assert len(messages) == 3
    for message in messages:
        decoded = decode_event(message.data)
        assert dict(message.attributes) == {
            "event_type": "chat.turn.completed",
            "schema_version": "1",
            "event_id": decoded.event_id,
        }
        original = by_id[decoded.event_id]
        assert isinstance(decoded.data, ChatTurnCompletedData)
        assert decoded.data.model_dump(mode="json") == original["data"]
        assert b"learner-1" not in message.data


@pytest.mark.emulator
def test_missing_topic_goes_to_outbox(pubsub_emulator: PubSubEmulator) -> None:
    transport = PubSubTransport(pubsub_emulator.project, "no-such-topic", timeout_s=5.0)
    outbox = InMemoryOutbox()
    sleeps: list[float] = []
    publisher = ReliablePublisher(transport, outbox, ManualClock(), sleep=sleeps.append)
    env = event()
    try:
        publisher.publish("chat.turn.completed", env)  # must not raise
    finally:
        transport.close()
    entry = outbox.entries[env["event_id"]]
    assert entry.payload == env
    assert entry.last_error is not None and "NotFound" in entry.last_error


@pytest.mark.emulator
def test_drain_after_topic_appears(pubsub_emulator: PubSubEmulator) -> None:
    from google.cloud import pubsub_v1

    topic = f"late-{time.monotonic_ns()}"
    transport = PubSubTransport(pubsub_emulator.project, topic, timeout_s=5.0)
    outbox = InMemoryOutbox()
    publisher = ReliablePublisher(
        transport, outbox, ManualClock(), sleep=lambda _: None, drain_every_s=None
    )
    admin = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    subscription = subscriber.subscription_path(pubsub_emulator.project, f"{topic}-sub")
    try:
        env = event()
        publisher.publish("chat.turn.completed", env)
        assert list(outbox.entries) == [env["event_id"]]

        admin.create_topic(name=transport.topic_path)
        subscriber.create_subscription(name=subscription, topic=transport.topic_path)
        assert publisher.drain().published == 1
        assert outbox.entries == {}
        [message] = pull(subscription, expected=1)
        assert decode_event(message.data).event_id == env["event_id"]
    finally:
        transport.close()
        subscriber.close()
        admin.stop()


@pytest.mark.timeout(60)
def test_unreachable_pubsub_fails_within_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """No emulator: a dead endpoint must surface as an error within timeout_s, not minutes."""
    from google.cloud import pubsub_v1

    from tests.support.emulators import free_port

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    client = pubsub_v1.PublisherClient()
    transport = PubSubTransport("ion-test", "t", publisher_client=client, timeout_s=0.5)
    try:
        # The bounded retry gives up (RetryError) instead of the client's default minutes;
        # the test's own timeout marker only guards against a hang.
        with pytest.raises(RetryError):
            transport.send("chat.turn.completed", event())
    finally:
        client.stop()


def test_topic_path_forms() -> None:
    assert PubSubTransport("p", "t").topic_path == "projects/p/topics/t"
    assert PubSubTransport("p", "projects/q/topics/u").topic_path == "projects/q/topics/u"
    with pytest.raises(ValueError):
        PubSubTransport("p", "t", timeout_s=0)
