"""Fakes of the event ports: a publisher that records, a transport that can be made to fail,
and a dict-backed outbox. The transport and the outbox pass the same contracts as the real
adapters (tests/contract/)."""

from __future__ import annotations

import json
from typing import Any

from ion.adapters.store_rules import check_outbox_id, payload_json
from ion.domain import events
from ion.ports import OutboxEntry


class RecordingPublisher:
    """EventPublisher that keeps every (event_type, payload) it is given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def publish(self, event_type: str, payload: dict[str, Any]) -> None:
        self.events.append((event_type, payload))


class RecordingTransport:
    """EventTransport that fails the next `failures` sends (all of them when failures < 0)
    and records the rest, each as a decoded copy of the JSON a real transport carries."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls = 0
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send(self, event_type: str, envelope: dict[str, Any]) -> None:
        self.calls += 1
        raw = events.encode_event(envelope)  # a non-JSON payload fails here, as on the wire
        if self.failures != 0:
            self.failures -= 1 if self.failures > 0 else 0
            raise ConnectionError(f"transport down (call {self.calls})")
        self.sent.append((event_type, json.loads(raw)))


class InMemoryOutbox:
    """A dict-backed OutboxStore, oldest first by (created_at, id) as the adapters order it;
    `fail_add` makes the next adds fail as a full disk would."""

    def __init__(self) -> None:
        self.entries: dict[str, OutboxEntry] = {}
        self.fail_add = False

    def add_outbox(self, entry: OutboxEntry) -> None:
        if self.fail_add:
            raise OSError("disk full")
        check_outbox_id(entry.id)
        payload_json(entry.payload)  # the adapters' own check: ValueError when not JSON
        self.entries[entry.id] = entry

    def pending_outbox(self, limit: int) -> list[OutboxEntry]:
        return sorted(self.entries.values(), key=lambda e: (e.created_at, e.id))[: max(limit, 0)]

    def remove_outbox(self, entry_id: str) -> None:
        self.entries.pop(entry_id, None)

    def record_outbox_failure(self, entry_id: str, error: str) -> None:
        entry = self.entries.get(entry_id)
        if entry is None:
            return
        self.entries[entry_id] = entry.model_copy(
            update={"attempts": entry.attempts + 1, "last_error": error}
        )
