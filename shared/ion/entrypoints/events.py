"""Event consumers: what the Pub/Sub-triggered functions do with a message.

The functions pass in the worker `ion.bootstrap.get_worker()` gives them.

`persona_events` keeps the routing statistics (turns, ups, downs per persona × resonance
key) from `chat.turn.completed` and `feedback.recorded` events.

Delivery is at-least-once, so every consumer is idempotent: the dedupe key is the event's
`event_id`, which is the same on a Pub/Sub redelivery (same message) AND on an outbox
re-publish (a new message id carrying the same envelope); the Pub/Sub message id alone
would miss the second case. The mark and the counter changes are written in one
transaction/batch (`RoutingStatsStore.apply_event_once`), so a crash between them cannot
count an event twice or lose it.

Failure policy (the return/raise decides ack vs. retry):
- malformed data, unknown event types, unsupported schema versions: logged, acknowledged
  (dropped): retrying cannot fix them;
- `DependencyUnavailable` (store down, timeouts) and any unexpected error: raised, so the
  function answers 500 and Pub/Sub redelivers (with the subscription's backoff, and to the
  dead-letter topic after its max attempts).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from ion.bootstrap import Worker, build_backup_runner
from ion.ports import Clock, RoutingStatsStore
from ion.services.learning import Outcome, apply_stats_event

log = logging.getLogger("ion.consumers")


class MalformedMessage(ValueError):
    """A push/CloudEvent body that does not carry a Pub/Sub message."""


def pubsub_message(cloud_event_data: Any) -> tuple[bytes, str | None, dict[str, str]]:
    """(data bytes, message id, attributes) of the Pub/Sub message inside a CloudEvent's
    data (`{"message": {"data": base64, "messageId", "attributes"}, "subscription"}`)."""
    if not isinstance(cloud_event_data, Mapping):
        raise MalformedMessage("CloudEvent data is not a Pub/Sub message envelope")
    message = cloud_event_data.get("message")
    if not isinstance(message, Mapping):
        raise MalformedMessage("CloudEvent data has no `message`")
    raw = message.get("data", "")
    if not isinstance(raw, str):
        raise MalformedMessage("Pub/Sub message data is not base64 text")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedMessage(f"Pub/Sub message data is not valid base64: {exc}") from exc
    message_id = message.get("messageId") or message.get("message_id")
    attributes = message.get("attributes") or {}
    return (
        data,
        str(message_id) if message_id else None,
        {str(k): str(v) for k, v in dict(attributes).items()},
    )


def handle_persona_event(cloud_event_data: Any, stats: RoutingStatsStore, clock: Clock) -> Outcome:
    """The `persona_events` function body, given the CloudEvent's data."""
    try:
        raw, message_id, _ = pubsub_message(cloud_event_data)
    except MalformedMessage as exc:
        log.warning("persona_events: dropping message: %s", exc)
        return "dropped"
    log.debug("persona_events: message %s", message_id)
    return apply_stats_event(raw, stats, clock)


# --- function bodies (functions/*/main.py call these) -------------------------------


def _event_data(cloud_event: Any) -> Any:
    return getattr(cloud_event, "data", None)


def _event_id(cloud_event: Any) -> str | None:
    try:
        value = cloud_event["id"]
    except (KeyError, TypeError):
        return None
    return str(value) if value else None


def persona_events(cloud_event: Any, worker: Worker) -> Outcome:
    """`persona_events`: keep the routing statistics from the events topic."""
    return handle_persona_event(_event_data(cloud_event), worker.records, worker.clock)


def scheduled_backup(cloud_event: Any, worker: Worker) -> dict[str, Any]:
    """`backup`: one scheduled backup run per (deduplicated) trigger message.

    The message content is ignored (Cloud Scheduler sends anything); its id dedupes
    redeliveries. Failures raise, so Pub/Sub retries the run.
    """
    trigger_id: str | None = None
    with contextlib.suppress(MalformedMessage):  # not a Pub/Sub message: still a trigger
        _, trigger_id, _ = pubsub_message(_event_data(cloud_event))
    trigger_id = trigger_id or _event_id(cloud_event)
    result = build_backup_runner(worker).run(trigger_id)
    summary: dict[str, Any] = result.as_json()
    log.info("backup run: %s", summary)
    return summary
