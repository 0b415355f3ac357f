"""The OutboxStore contract, run against every backend's store and the in-memory fake the
unit tests use (tests/fakes/events.py), so the fake cannot drift from the port."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ion.ports import OutboxEntry, OutboxStore
from tests.fakes.events import InMemoryOutbox

T0 = datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", pytest.param("firestore", marks=pytest.mark.emulator)])
def outbox_store(request: pytest.FixtureRequest) -> OutboxStore:
    """Every OutboxStore: the fake, and each backend's conversation store."""
    if request.param == "memory":
        return InMemoryOutbox()
    store: OutboxStore = request.getfixturevalue(f"{request.param}_store")
    return store


def entry(eid: str, minutes: int, **payload: Any) -> OutboxEntry:
    return OutboxEntry(
        id=eid,
        event_type="chat.turn.completed",
        payload=payload,
        created_at=T0 + timedelta(minutes=minutes),
    )


def test_outbox_lifecycle(outbox_store: OutboxStore) -> None:
    assert outbox_store.pending_outbox(10) == []
    payload = {"nested": [[1, 2], [3]], "text": "한국어 🎉", "n": 1.5, "none": None, "ok": True}
    e1, e2, e3 = entry("e1", 5, **payload), entry("e2", 1), entry("e3", 3, k="v")
    for e in (e1, e2, e3):
        outbox_store.add_outbox(e)

    assert outbox_store.pending_outbox(10) == [e2, e3, e1]  # oldest first
    assert outbox_store.pending_outbox(2) == [e2, e3]
    assert outbox_store.pending_outbox(0) == []

    outbox_store.record_outbox_failure("e2", "timeout")
    outbox_store.record_outbox_failure("e2", "unavailable: 503")
    failed = outbox_store.pending_outbox(1)[0]
    assert (failed.attempts, failed.last_error) == (2, "unavailable: 503")
    assert failed.payload == {} and failed.created_at == e2.created_at

    outbox_store.remove_outbox("e2")
    assert [e.id for e in outbox_store.pending_outbox(10)] == ["e3", "e1"]
    assert outbox_store.pending_outbox(10)[1].payload == payload

    outbox_store.remove_outbox("e2")  # idempotent
    outbox_store.record_outbox_failure("missing", "ignored")  # no-op, no error
    assert [e.id for e in outbox_store.pending_outbox(10)] == ["e3", "e1"]


def test_outbox_add_replaces_same_id(outbox_store: OutboxStore) -> None:
    outbox_store.add_outbox(entry("e1", 1, v=1))
    outbox_store.add_outbox(entry("e1", 1, v=2))
    assert [e.payload for e in outbox_store.pending_outbox(10)] == [{"v": 2}]


def test_outbox_rejects_non_json_payload(outbox_store: OutboxStore) -> None:
    with pytest.raises(ValueError, match="JSON"):
        outbox_store.add_outbox(entry("e1", 1, when=datetime.now(UTC)))
    assert outbox_store.pending_outbox(10) == []


@pytest.mark.parametrize("bad_id", ["", "a/b", "c1/messages/00000000", ".", "..", "__x__"])
def test_ids_that_could_address_another_document(outbox_store: OutboxStore, bad_id: str) -> None:
    outbox_store.add_outbox(entry("e1", 1))
    with pytest.raises(ValueError, match="valid outbox entry id"):
        outbox_store.add_outbox(entry(bad_id, 0))
    outbox_store.remove_outbox(bad_id)
    outbox_store.record_outbox_failure(bad_id, "x")
    assert [(e.id, e.attempts) for e in outbox_store.pending_outbox(10)] == [("e1", 0)]
