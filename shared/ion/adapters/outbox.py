"""Reliable event publishing: live transport first, durable outbox when it fails.

`ReliablePublisher` implements the EventPublisher port on top of any `EventTransport`
(Pub/Sub, in-process) and an `OutboxStore` (SQLite, Firestore). Delivery is at-least-once:
an event may be sent twice (e.g. a send that timed out but landed, then was drained), so
consumers dedupe on `event_id`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ion.domain import events
from ion.ports import Clock, EventTransport, OutboxEntry, OutboxStore

logger = logging.getLogger("ion.events")

_MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class DrainFailure:
    """Why one entry could not be sent (its id and type; never its payload)."""

    entry_id: str
    event_type: str
    attempts: int
    error: str


@dataclass(frozen=True)
class DrainResult:
    published: int
    failed: int
    remaining: int
    """Entries still pending after the drain, as seen by one `pending_outbox(limit)` call
    (so capped at `limit`: `remaining == limit` means "at least that many")."""
    failures: tuple[DrainFailure, ...] = field(default=(), compare=False)
    """The failed entries, each with its last error (for `ion outbox drain`)."""


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


class ReliablePublisher:
    """EventPublisher that never fails the caller and never drops an event it can store.

    `publish` tries the transport up to `max_attempts` times with exponential backoff
    (`base_delay_s`, doubling). If every attempt fails, the envelope goes to the outbox.

    If writing the outbox ITSELF fails, `publish` logs at ERROR (with the event id and the
    full envelope, which is privacy-safe: no text, hashed user) and returns normally. This is
    deliberate: the caller's chat reply is already persisted and answered, so raising would
    turn a lost analytics event into a failed user request without saving the event either.

    After a successful live send, pending outbox entries are drained opportunistically
    (`drain_batch` entries at most once per `drain_every_s`; None disables it), so a
    recovered transport empties the outbox on later requests without a separate job.
    """

    def __init__(
        self,
        transport: EventTransport,
        outbox: OutboxStore,
        clock: Clock,
        *,
        max_attempts: int = 3,
        base_delay_s: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
        drain_every_s: float | None = 60.0,
        drain_batch: int = 20,
        max_consecutive_failures: int = 3,
        breaker_cooldown_s: float = 30.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if max_consecutive_failures < 1:
            raise ValueError("max_consecutive_failures must be >= 1")
        self._transport = transport
        self._outbox = outbox
        self._clock = clock
        self._max_attempts = max_attempts
        self._base_delay_s = base_delay_s
        self._sleep = sleep
        self._drain_every_s = drain_every_s
        self._drain_batch = drain_batch
        self._max_consecutive_failures = max_consecutive_failures
        self._drain_lock = threading.Lock()
        self._last_drain: datetime | None = None
        # Circuit breaker: after a publish exhausts its attempts, later publishes go straight
        # to the outbox for `breaker_cooldown_s`, so an outage never slows every chat reply.
        self._breaker_cooldown_s = breaker_cooldown_s
        self._breaker_open_until: datetime | None = None

    @property
    def transport(self) -> EventTransport:
        """The live transport (e.g. to subscribe in-process consumers to it)."""
        return self._transport

    # --- EventPublisher port ----------------------------------------------------------

    def publish(self, event_type: str, payload: dict[str, Any]) -> None:
        """Send `payload`, an envelope built by `ion.domain.events` (e.g. `chat_turn_completed`).

        A bare data dict is refused with ValueError (a programming error, not a transport
        failure): only the event builders guarantee the schema and the privacy rules (hashed
        user id, no text), and a raw dict could leak either.
        """
        if not events.is_envelope(payload):
            raise ValueError(
                f"publish({event_type!r}) needs an event envelope from ion.domain.events "
                f"(got keys {sorted(payload)}); e.g. events.chat_turn_completed(...)"
            )
        envelope = payload
        if envelope["event_type"] != event_type:
            logger.warning(
                "publish(%r) got an envelope of type %r; the envelope wins (event %s)",
                event_type,
                envelope["event_type"],
                envelope["event_id"],
            )
            event_type = str(envelope["event_type"])

        open_until = self._breaker_open_until
        if open_until is not None and self._clock.now() < open_until:
            self._store(
                event_type, envelope, "not sent: transport circuit open after failures", attempts=0
            )
            return
        error = self._send_with_retry(event_type, envelope)
        if error is None:
            self._breaker_open_until = None
            self._maybe_drain()
            return
        if self._breaker_cooldown_s > 0:
            self._breaker_open_until = self._clock.now() + timedelta(
                seconds=self._breaker_cooldown_s
            )
        self._store(event_type, envelope, error)

    # --- draining ---------------------------------------------------------------------

    def drain(self, limit: int = 100) -> DrainResult:
        """Re-send up to `limit` pending entries, oldest first, once each.

        Sent entries are removed; failures are recorded on the entry (attempts, last_error).
        Stops early after `max_consecutive_failures` failures in a row, since that means the
        transport is down and each further try would only wait for its timeout; untried
        entries stay pending. Transport errors never propagate; outbox read errors do.
        """
        with self._drain_lock:
            return self._drain_locked(limit)

    def _drain_locked(self, limit: int) -> DrainResult:
        self._last_drain = self._clock.now()
        published = failed = consecutive = 0
        failures: list[DrainFailure] = []
        for entry in self._outbox.pending_outbox(limit):
            if consecutive >= self._max_consecutive_failures:
                logger.warning("outbox drain stopped after %d failures in a row", consecutive)
                break
            try:
                self._transport.send(entry.event_type, entry.payload)
            except Exception as exc:
                failed += 1
                consecutive += 1
                self._record_failure(entry, exc)
                failures.append(
                    DrainFailure(entry.id, entry.event_type, entry.attempts + 1, _describe(exc))
                )
                continue
            consecutive = 0
            published += 1
            try:
                self._outbox.remove_outbox(entry.id)
            except Exception:
                # The event is out; it stays pending and will be sent again (consumers dedupe).
                logger.exception("outbox: sent event %s but could not remove it", entry.id)
        remaining = len(self._outbox.pending_outbox(limit))
        if published or failed:
            logger.info(
                "outbox drain: published=%d failed=%d remaining=%d", published, failed, remaining
            )
        return DrainResult(
            published=published, failed=failed, remaining=remaining, failures=tuple(failures)
        )

    def _maybe_drain(self) -> None:
        if self._drain_every_s is None:
            return
        now = self._clock.now()
        last = self._last_drain
        if last is not None and (now - last).total_seconds() < self._drain_every_s:
            return
        # Never make a request wait for another thread's drain.
        if not self._drain_lock.acquire(blocking=False):
            return
        try:
            self._drain_locked(self._drain_batch)
        except Exception:
            logger.exception("outbox: opportunistic drain failed")
        finally:
            self._drain_lock.release()

    # --- helpers ----------------------------------------------------------------------

    def _send_with_retry(self, event_type: str, envelope: dict[str, Any]) -> str | None:
        """None on success, else a description of the last error."""
        last_error = "no attempt made"
        for attempt in range(1, self._max_attempts + 1):
            try:
                self._transport.send(event_type, envelope)
                return None
            except Exception as exc:
                last_error = _describe(exc)
                logger.warning(
                    "event %s (%s): send attempt %d/%d failed: %s",
                    envelope["event_id"],
                    event_type,
                    attempt,
                    self._max_attempts,
                    last_error,
                )
            if attempt < self._max_attempts:
                self._sleep(self._base_delay_s * 2 ** (attempt - 1))
        return last_error

    def _store(
        self, event_type: str, envelope: dict[str, Any], error: str, *, attempts: int | None = None
    ) -> None:
        event_id = str(envelope["event_id"])
        try:
            self._outbox.add_outbox(
                OutboxEntry(
                    id=event_id,
                    event_type=event_type,
                    payload=envelope,
                    created_at=self._clock.now(),
                    attempts=self._max_attempts if attempts is None else attempts,
                    last_error=error,
                )
            )
        except Exception:
            # Last resort: the envelope in the log is the only copy left (see class docstring).
            logger.exception(
                "event %s (%s) LOST: transport failed (%s) and the outbox write failed; "
                "envelope=%s",
                event_id,
                event_type,
                error,
                json.dumps(envelope, default=str, sort_keys=True),
            )
            return
        logger.warning("event %s (%s) stored in the outbox: %s", event_id, event_type, error)

    def _record_failure(self, entry: OutboxEntry, exc: Exception) -> None:
        try:
            self._outbox.record_outbox_failure(entry.id, _describe(exc))
        except Exception:
            logger.exception("outbox: could not record failure for %s", entry.id)


Subscriber = Callable[[dict[str, Any]], None]


class InProcessTransport:
    """The embedded transport: synchronous delivery to in-process subscribers.

    Each subscriber gets its own copy of the envelope (decoded from the same JSON a real
    transport would carry, so non-JSON payloads fail here too, in development). Subscriber
    exceptions are logged and never reach the publisher. The last `keep_recent` envelopes are
    kept for inspection (tests, a debug endpoint).
    """

    def __init__(self, *, keep_recent: int = 100) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[tuple[str | None, Subscriber]] = []
        self._recent: deque[bytes] = deque(maxlen=keep_recent)

    def subscribe(self, handler: Subscriber, event_type: str | None = None) -> Callable[[], None]:
        """Call `handler(envelope)` for events of `event_type` (None = all); returns an
        unsubscribe function."""
        item = (event_type, handler)
        with self._lock:
            self._subscribers.append(item)

        def unsubscribe() -> None:
            with self._lock:
                if item in self._subscribers:
                    self._subscribers.remove(item)

        return unsubscribe

    def send(self, event_type: str, envelope: dict[str, Any]) -> None:
        raw = events.encode_event(envelope)
        with self._lock:
            self._recent.append(raw)
            targets = [h for t, h in self._subscribers if t is None or t == event_type]
        # Outside the lock, so a subscriber may publish or subscribe without deadlocking.
        for handler in targets:
            try:
                handler(json.loads(raw))
            except Exception:
                logger.exception(
                    "event subscriber %r failed on %s %s",
                    handler,
                    event_type,
                    envelope.get("event_id"),
                )

    def recent(self) -> list[dict[str, Any]]:
        """Copies of the most recently sent envelopes, oldest first."""
        with self._lock:
            raws = list(self._recent)
        return [json.loads(raw) for raw in raws]

    def clear(self) -> None:
        with self._lock:
            self._recent.clear()
