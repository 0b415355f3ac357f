"""ReliablePublisher (retry, outbox, drain) and InProcessTransport, with the shared fakes."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from ion.adapters.outbox import DrainResult, InProcessTransport, ReliablePublisher
from ion.domain.events import chat_turn_completed
from ion.domain.models import Intent, Pace, ResonanceKey, Tone, Usage
from tests.fakes.clock import ManualClock
from tests.fakes.events import InMemoryOutbox, RecordingTransport

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def event(n: int = 0) -> dict[str, Any]:
    return chat_turn_completed(
        conversation_id=f"c{n}",
        message_id=f"m{n}",
        user_id="u1",
        persona="lua",
        resonance_key=ResonanceKey(tone=Tone.CALM, pace=Pace.MEDIUM, intent=Intent.INQUIRY),
        model="offline",
        usage=Usage(),
        latency_ms=5,
        cached=False,
        occurred_at=T0,
    )


def make(
    transport: Any, outbox: InMemoryOutbox | None = None, **kwargs: Any
) -> tuple[ReliablePublisher, InMemoryOutbox, ManualClock, list[float]]:
    outbox = outbox if outbox is not None else InMemoryOutbox()
    clock = ManualClock(T0)
    sleeps: list[float] = []
    kwargs.setdefault("breaker_cooldown_s", 0)  # the breaker has its own tests below
    publisher = ReliablePublisher(transport, outbox, clock, sleep=sleeps.append, **kwargs)
    return publisher, outbox, clock, sleeps


def test_success_sends_once_without_outbox() -> None:
    transport = RecordingTransport()
    publisher, outbox, _, sleeps = make(transport)
    env = event()
    publisher.publish("chat.turn.completed", env)
    assert transport.sent == [("chat.turn.completed", env)]
    assert outbox.entries == {} and sleeps == []


def test_transient_failure_then_success_backs_off() -> None:
    transport = RecordingTransport(failures=2)
    publisher, outbox, _, sleeps = make(transport, max_attempts=3, base_delay_s=0.05)
    publisher.publish("chat.turn.completed", event())
    assert transport.calls == 3 and len(transport.sent) == 1
    assert sleeps == [0.05, 0.1]
    assert outbox.entries == {}


def test_persistent_failure_goes_to_outbox_intact(caplog: pytest.LogCaptureFixture) -> None:
    transport = RecordingTransport(failures=-1)
    publisher, outbox, _, sleeps = make(transport, max_attempts=3)
    env = event()
    publisher.publish("chat.turn.completed", env)  # must not raise
    assert transport.calls == 3 and sleeps == [0.05, 0.1]
    entry = outbox.entries[env["event_id"]]
    assert entry.payload == env
    assert entry.event_type == "chat.turn.completed"
    assert entry.created_at == T0
    assert entry.attempts == 3
    assert entry.last_error == "ConnectionError: transport down (call 3)"
    assert env["event_id"] in caplog.text


def test_outbox_write_failure_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    outbox = InMemoryOutbox()
    outbox.fail_add = True
    publisher, _, _, _ = make(RecordingTransport(failures=-1), outbox)
    env = event()
    with caplog.at_level(logging.ERROR, logger="ion.events"):
        publisher.publish("chat.turn.completed", env)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert env["event_id"] in message and "LOST" in message
    assert '"conversation_id": "c0"' in message  # envelope kept in the log as last copy


def test_bare_payload_is_refused() -> None:
    publisher, _, _, _ = make(RecordingTransport())
    with pytest.raises(ValueError, match="envelope"):
        publisher.publish("chat.turn.completed", {"user_id": "raw", "text": "hi"})


def test_drain_publishes_oldest_first_and_empties() -> None:
    transport = RecordingTransport(failures=-1)
    publisher, outbox, clock, _ = make(transport, max_attempts=1, drain_every_s=None)
    envs = [event(n) for n in range(3)]
    for env in envs:
        publisher.publish("chat.turn.completed", env)
        clock.advance(1)
    assert len(outbox.entries) == 3

    transport.failures = 0
    assert publisher.drain() == DrainResult(published=3, failed=0, remaining=0)
    assert [env for _, env in transport.sent] == envs
    assert outbox.entries == {}
    assert publisher.drain() == DrainResult(published=0, failed=0, remaining=0)


def test_drain_respects_limit() -> None:
    transport = RecordingTransport(failures=-1)
    publisher, outbox, clock, _ = make(transport, max_attempts=1, drain_every_s=None)
    for n in range(5):
        publisher.publish("chat.turn.completed", event(n))
        clock.advance(1)
    transport.failures = 0
    assert publisher.drain(limit=2) == DrainResult(published=2, failed=0, remaining=2)
    assert len(outbox.entries) == 3


def test_drain_with_failing_transport_records_attempts() -> None:
    transport = RecordingTransport(failures=-1)
    publisher, outbox, clock, _ = make(
        transport, max_attempts=2, drain_every_s=None, max_consecutive_failures=10
    )
    for n in range(2):
        publisher.publish("chat.turn.completed", event(n))
        clock.advance(1)
    result = publisher.drain()
    assert result == DrainResult(published=0, failed=2, remaining=2)
    for entry in outbox.entries.values():
        assert entry.attempts == 3  # 2 live attempts + 1 drain attempt
        assert entry.last_error is not None and "transport down" in entry.last_error


def test_drain_stops_after_consecutive_failures() -> None:
    transport = RecordingTransport(failures=-1)
    publisher, _, clock, _ = make(
        transport, max_attempts=1, drain_every_s=None, max_consecutive_failures=2
    )
    for n in range(5):
        publisher.publish("chat.turn.completed", event(n))
        clock.advance(1)
    calls_before = transport.calls
    assert publisher.drain() == DrainResult(published=0, failed=2, remaining=5)
    assert transport.calls - calls_before == 2  # did not wait on the other three


def test_successful_publish_drains_opportunistically() -> None:
    transport = RecordingTransport(failures=-1)
    publisher, outbox, clock, _ = make(transport, max_attempts=1, drain_every_s=60)
    stuck = event(1)
    publisher.publish("chat.turn.completed", stuck)
    assert len(outbox.entries) == 1

    transport.failures = 0
    clock.advance(1)
    fresh = event(2)
    publisher.publish("chat.turn.completed", fresh)  # first success: drains right away
    assert [env for _, env in transport.sent] == [fresh, stuck]
    assert outbox.entries == {}

    # Within the interval, a success does not query the outbox again.
    transport.failures = 1
    publisher.publish("chat.turn.completed", event(3))
    transport.sent.clear()
    clock.advance(10)
    publisher.publish("chat.turn.completed", event(4))
    assert len(transport.sent) == 1 and len(outbox.entries) == 1
    clock.advance(60)
    publisher.publish("chat.turn.completed", event(5))
    assert len(transport.sent) == 3 and outbox.entries == {}


def test_breaker_skips_the_transport_during_an_outage_then_recovers() -> None:
    transport = RecordingTransport(failures=-1)
    publisher, outbox, clock, _ = make(
        transport, max_attempts=3, drain_every_s=60, breaker_cooldown_s=30
    )
    publisher.publish("chat.turn.completed", event(1))
    assert transport.calls == 3
    clock.advance(5)
    second = event(2)
    publisher.publish("chat.turn.completed", second)
    assert transport.calls == 3, "an open breaker must not wait on the transport again"
    assert outbox.entries[second["event_id"]].attempts == 0
    assert len(outbox.entries) == 2

    transport.failures = 0
    clock.advance(30)  # cool-down over: the next publish tries again, and drains the backlog
    publisher.publish("chat.turn.completed", event(3))
    assert len(transport.sent) == 3
    assert outbox.entries == {}


def test_in_process_transport_delivers_copies_and_isolates_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = InProcessTransport(keep_recent=2)
    got_all: list[dict[str, Any]] = []
    got_turns: list[dict[str, Any]] = []

    def broken(envelope: dict[str, Any]) -> None:
        raise RuntimeError("subscriber bug")

    def mutating(envelope: dict[str, Any]) -> None:
        envelope["data"] = "mutated"
        got_all.append(envelope)

    transport.subscribe(broken)
    transport.subscribe(mutating)
    unsubscribe = transport.subscribe(got_turns.append, event_type="chat.turn.completed")
    transport.subscribe(got_turns.append, event_type="other.type")

    envs = [event(n) for n in range(3)]
    with caplog.at_level(logging.ERROR, logger="ion.events"):
        for env in envs:
            transport.send("chat.turn.completed", env)
    assert got_turns == envs  # unaffected by the mutating subscriber before it
    assert len(got_all) == 3
    assert envs[0]["data"] != "mutated"  # the publisher's dict is untouched
    assert transport.recent() == envs[1:]  # bounded
    assert "subscriber bug" in caplog.text

    unsubscribe()
    transport.send("chat.turn.completed", event(9))
    assert len(got_turns) == 3
    transport.clear()
    assert transport.recent() == []


def test_in_process_transport_rejects_non_json() -> None:
    transport = InProcessTransport()
    env = event()
    env["data"]["when"] = datetime.now(UTC)
    with pytest.raises(TypeError):
        transport.send("chat.turn.completed", env)


def test_reliable_publisher_over_in_process_transport() -> None:
    transport = InProcessTransport()
    publisher, outbox, _, _ = make(transport)
    env = event()
    publisher.publish("chat.turn.completed", env)
    assert transport.recent() == [env]
    assert outbox.entries == {}


def test_with_sqlite_outbox(sqlite_store: Any) -> None:
    """The embedded outbox store (fixture from conftest) keeps the payload byte for byte."""
    transport = RecordingTransport(failures=-1)
    clock = ManualClock(T0)
    publisher = ReliablePublisher(
        transport, sqlite_store, clock, sleep=lambda _: None, drain_every_s=None
    )
    env = event()
    publisher.publish("chat.turn.completed", env)
    [entry] = sqlite_store.pending_outbox(10)
    assert entry.id == env["event_id"] and entry.payload == env and entry.attempts == 3

    assert publisher.drain() == DrainResult(published=0, failed=1, remaining=1)
    assert sqlite_store.pending_outbox(10)[0].attempts == 4
    transport.failures = 0
    assert publisher.drain() == DrainResult(published=1, failed=0, remaining=0)
    assert transport.sent == [("chat.turn.completed", env)]
