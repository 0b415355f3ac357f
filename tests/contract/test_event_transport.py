"""The EventTransport contract, run against every adapter: the in-process transport, Pub/Sub
on Google's real emulator (a topic with a pull subscription per test), and the recording
fake the unit tests use (tests/fakes/events.py).

Each test makes the same assertions on every transport, as a subscriber sees them: the
event type and the decoded envelope of each delivery.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from ion.adapters.outbox import InProcessTransport
from ion.domain import events
from ion.domain.models import Intent, Pace, ResonanceKey, Tone, Usage
from ion.ports import EventTransport
from tests.fakes.events import RecordingTransport
from tests.support.pubsub import PubSubEmulator, PubSubTopic

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
KEY = ResonanceKey(tone=Tone.CALM, pace=Pace.MEDIUM, intent=Intent.INQUIRY)
Delivery = tuple[str, dict[str, Any]]


@dataclass
class TransportUnderTest:
    transport: EventTransport
    # Waits for `count` deliveries (and a moment for any extra one), returns all of them.
    deliveries: Callable[[int], list[Delivery]]


def turn_event(n: int) -> dict[str, Any]:
    return events.chat_turn_completed(
        conversation_id=f"c{n}",
        message_id=f"m{n}",
        user_id="learner-1",
        persona="lua",
        resonance_key=KEY,
        model="offline",
        usage=Usage(input_tokens=3, output_tokens=4),
        latency_ms=12,
        cached=False,
        occurred_at=T0,
    )


def feedback_event(n: int) -> dict[str, Any]:
    return events.feedback_recorded(
        conversation_id=f"c{n}",
        message_id=f"m{n}",
        user_id="learner-1",
        persona="riri",
        resonance_key=KEY,
        rating="up",
        previous_rating=None,
        occurred_at=T0,
    )


def in_process() -> TransportUnderTest:
    transport = InProcessTransport()
    received: list[Delivery] = []

    def recorder(event_type: str) -> Callable[[dict[str, Any]], None]:
        return lambda envelope: received.append((event_type, envelope))

    for event_type in (events.CHAT_TURN_COMPLETED, events.FEEDBACK_RECORDED):
        transport.subscribe(recorder(event_type), event_type)
    return TransportUnderTest(transport, lambda _count: list(received))


def recording_fake() -> TransportUnderTest:
    transport = RecordingTransport()
    return TransportUnderTest(transport, lambda _count: list(transport.sent))


def pubsub(emulator: PubSubEmulator, topic: PubSubTopic) -> Iterator[TransportUnderTest]:
    from google.api_core import exceptions
    from google.cloud import pubsub_v1

    from ion.adapters.pubsub import PubSubTransport

    transport = PubSubTransport(emulator.project, topic.topic, timeout_s=5.0)
    subscriber = pubsub_v1.SubscriberClient()
    received: list[Delivery] = []

    def pull_once(timeout_s: float) -> int:
        try:
            response = subscriber.pull(
                subscription=topic.subscription_path, max_messages=10, timeout=timeout_s
            )
        except exceptions.DeadlineExceeded:
            return 0
        messages = response.received_messages
        if messages:
            subscriber.acknowledge(
                subscription=topic.subscription_path, ack_ids=[m.ack_id for m in messages]
            )
        for m in messages:
            received.append((m.message.attributes["event_type"], json.loads(m.message.data)))
        return len(messages)

    def deliveries(count: int) -> list[Delivery]:
        deadline = time.monotonic() + 20.0
        while len(received) < count and time.monotonic() < deadline:
            pull_once(5.0)
        pull_once(1.0)  # one more look: a transport must not deliver more than was sent
        return list(received)

    try:
        yield TransportUnderTest(transport, deliveries)
    finally:
        transport.close()
        subscriber.close()


@pytest.fixture(
    params=["in_process", pytest.param("pubsub", marks=pytest.mark.emulator), "recording_fake"]
)
def subject(request: pytest.FixtureRequest) -> Iterator[TransportUnderTest]:
    if request.param == "in_process":
        yield in_process()
    elif request.param == "recording_fake":
        yield recording_fake()
    else:
        yield from pubsub(
            request.getfixturevalue("pubsub_emulator"), request.getfixturevalue("pubsub_topic")
        )


def by_event_id(deliveries: list[Delivery]) -> list[Delivery]:
    return sorted(deliveries, key=lambda delivery: str(delivery[1]["event_id"]))


def test_each_event_arrives_once_with_its_type_and_envelope(subject: TransportUnderTest) -> None:
    sent = [
        (events.CHAT_TURN_COMPLETED, turn_event(1)),
        (events.FEEDBACK_RECORDED, feedback_event(2)),
        (events.CHAT_TURN_COMPLETED, turn_event(3)),
    ]
    for event_type, envelope in sent:
        subject.transport.send(event_type, envelope)
    assert by_event_id(subject.deliveries(3)) == by_event_id(sent)


def test_the_same_envelope_sent_twice_arrives_twice(subject: TransportUnderTest) -> None:
    """Duplicates are the consumer's to drop (it dedupes on event_id), not the transport's."""
    envelope = turn_event(1)
    subject.transport.send(events.CHAT_TURN_COMPLETED, envelope)
    subject.transport.send(events.CHAT_TURN_COMPLETED, envelope)
    assert subject.deliveries(2) == [(events.CHAT_TURN_COMPLETED, envelope)] * 2


@pytest.mark.parametrize(
    ("bad_value", "error"), [(datetime(2026, 1, 1, tzinfo=UTC), TypeError), (math.nan, ValueError)]
)
def test_a_payload_that_is_not_json_is_refused_and_never_delivered(
    subject: TransportUnderTest, bad_value: object, error: type[Exception]
) -> None:
    bad = turn_event(1)
    bad["data"]["when"] = bad_value
    with pytest.raises(error):
        subject.transport.send(events.CHAT_TURN_COMPLETED, bad)
    good = turn_event(2)
    subject.transport.send(events.CHAT_TURN_COMPLETED, good)
    assert subject.deliveries(1) == [(events.CHAT_TURN_COMPLETED, good)]
