"""Domain events: the envelope every event travels in, and one schema per event type.

Pure domain code (no I/O). Producers build envelopes with the functions below; consumers
decode raw bytes with `decode_event`. See docs/events.md for the contract.

Envelope (JSON object)::

    {"schema_version": 1, "event_id": "<32 hex>", "event_type": "chat.turn.completed",
     "occurred_at": "2026-01-01T12:00:00.000Z", "data": {...}}

Privacy: events never carry message text, and identify the learner only by
`hash_user_id(...)`, a pseudonym.

Compatibility: within `schema_version` 1 a data schema may only gain optional fields, so
decoders ignore fields they do not know; renaming or removing a field bumps the version.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from ion.domain.models import ResonanceKey, Usage

SCHEMA_VERSION: Final = 1
CHAT_TURN_COMPLETED: Final = "chat.turn.completed"
FEEDBACK_RECORDED: Final = "feedback.recorded"
SAFETY_CRISIS_DETECTED: Final = "safety.crisis_detected"

EventType = Literal["chat.turn.completed", "feedback.recorded", "safety.crisis_detected"]
Rating = Literal["up", "down"]

# Changing this prefix changes every pseudonym, which breaks joins across history: don't.
_USER_HASH_DOMAIN: Final = b"ion-mentoring/events/user-id/v1\x00"
_HEX32: Final = r"^[0-9a-f]{32}$"


class MalformedEvent(ValueError):
    """Raw bytes that are not a valid event envelope (or its data is invalid)."""


class UnsupportedSchemaVersion(MalformedEvent):
    """The envelope's `schema_version` is not one this code understands."""


class UnknownEventType(MalformedEvent):
    """A well-formed envelope whose `event_type` this code does not know; safe to skip."""


@lru_cache(maxsize=1024)  # a request hashes its learner's id for its log, events and stats
def hash_user_id(user_id: str) -> str:
    """A stable pseudonym for a user id: sha256 over a domain-separated input, 32 hex chars.

    It is pseudonymous, NOT secret: anyone who knows a user id can recompute it (there is no
    key), so it lets analytics count and join per learner without carrying the raw id, but it
    must not be treated as anonymisation.
    """
    return hashlib.sha256(_USER_HASH_DOMAIN + user_id.encode("utf-8")).hexdigest()[:32]


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision and a `Z` suffix."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        # A naive datetime has no defined instant; guessing the zone would corrupt ordering.
        raise ValueError("occurred_at must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- event data schemas -------------------------------------------------------------------


class _EventData(BaseModel):
    # Ignore unknown fields so older consumers accept additive (optional-field) changes.
    model_config = ConfigDict(frozen=True, extra="ignore")


class ChatTurnCompletedData(_EventData):
    """A persona answered one learner message (and the answer was persisted)."""

    conversation_id: str = Field(min_length=1)
    message_id: str = Field(min_length=1, description="The assistant message's id")
    user_hash: str = Field(pattern=_HEX32, description="hash_user_id(user_id)")
    persona: str = Field(min_length=1)
    resonance_key: ResonanceKey
    model: str
    usage: Usage
    latency_ms: int = Field(ge=0)
    cached: bool


class FeedbackRecordedData(_EventData):
    """A learner rated an assistant message (first rating or a changed one).

    `previous_rating` is the rating this one replaced (None for the first), so a consumer
    can keep exact counts by applying `-previous, +rating`, whatever order events arrive in.
    """

    conversation_id: str = Field(min_length=1)
    message_id: str = Field(min_length=1, description="The rated assistant message's id")
    user_hash: str = Field(pattern=_HEX32, description="hash_user_id(user_id)")
    persona: str = Field(min_length=1, description="Persona that wrote the rated answer")
    resonance_key: ResonanceKey
    rating: Rating
    previous_rating: Rating | None = None


class CrisisDetectedData(_EventData):
    """The crisis detector fired on a learner message: a human should follow up.

    Never the message text: operators with the documented role read the conversation
    itself (docs/operations.md)."""

    conversation_id: str = Field(min_length=1)
    user_hash: str = Field(pattern=_HEX32, description="hash_user_id(user_id)")
    language: Literal["ko", "en"]
    score: float = Field(ge=0.0, le=1.0, description="The detector's score (1.0 = a rule)")


EventData = ChatTurnCompletedData | FeedbackRecordedData | CrisisDetectedData

_DATA_MODELS: Final[dict[str, type[_EventData]]] = {
    CHAT_TURN_COMPLETED: ChatTurnCompletedData,
    FEEDBACK_RECORDED: FeedbackRecordedData,
    SAFETY_CRISIS_DETECTED: CrisisDetectedData,
}

EVENT_TYPES: Final[frozenset[str]] = frozenset(_DATA_MODELS)


class Event(BaseModel):
    """A decoded, validated event."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1]
    event_id: str = Field(pattern=_HEX32)
    event_type: EventType
    occurred_at: AwareDatetime
    data: EventData


class _RawEnvelope(BaseModel):
    """Envelope with undecoded data, so the data model can be chosen by `event_type`."""

    model_config = ConfigDict(extra="ignore")

    schema_version: int
    event_id: str = Field(pattern=_HEX32)
    event_type: str = Field(min_length=1)
    occurred_at: AwareDatetime
    data: dict[str, Any]


# --- producing ----------------------------------------------------------------------------


def envelope(
    event_type: str,
    data: BaseModel | Mapping[str, Any],
    *,
    occurred_at: datetime,
    event_id: str | None = None,
) -> dict[str, Any]:
    """Wrap event data in the versioned envelope (a JSON-ready dict).

    Pass a data model for known event types; a plain mapping is accepted for ad-hoc events
    (it is not validated here, so it must be JSON-ready and free of message text).
    """
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": event_id or uuid.uuid4().hex,
        "event_type": event_type,
        "occurred_at": format_timestamp(occurred_at),
        "data": data.model_dump(mode="json") if isinstance(data, BaseModel) else dict(data),
    }


def chat_turn_completed(
    *,
    conversation_id: str,
    message_id: str,
    user_id: str,
    persona: str,
    resonance_key: ResonanceKey,
    model: str,
    usage: Usage,
    latency_ms: int,
    cached: bool,
    occurred_at: datetime,
    event_id: str | None = None,
) -> dict[str, Any]:
    """The `chat.turn.completed` envelope. Takes no text on purpose: events never carry it."""
    data = ChatTurnCompletedData(
        conversation_id=conversation_id,
        message_id=message_id,
        user_hash=hash_user_id(user_id),
        persona=persona,
        resonance_key=resonance_key,
        model=model,
        usage=usage,
        latency_ms=latency_ms,
        cached=cached,
    )
    return envelope(CHAT_TURN_COMPLETED, data, occurred_at=occurred_at, event_id=event_id)


def crisis_detected(
    *,
    conversation_id: str,
    user_id: str,
    language: Literal["ko", "en"],
    score: float,
    occurred_at: datetime,
    event_id: str | None = None,
) -> dict[str, Any]:
    """The `safety.crisis_detected` envelope (no text, a pseudonymous user)."""
    data = CrisisDetectedData(
        conversation_id=conversation_id,
        user_hash=hash_user_id(user_id),
        language=language,
        score=min(1.0, max(0.0, score)),
    )
    return envelope(SAFETY_CRISIS_DETECTED, data, occurred_at=occurred_at, event_id=event_id)


def feedback_recorded(
    *,
    conversation_id: str,
    message_id: str,
    user_id: str,
    persona: str,
    resonance_key: ResonanceKey,
    rating: Rating,
    previous_rating: Rating | None,
    occurred_at: datetime,
    event_id: str | None = None,
) -> dict[str, Any]:
    """The `feedback.recorded` envelope. Takes no comment and no text on purpose."""
    data = FeedbackRecordedData(
        conversation_id=conversation_id,
        message_id=message_id,
        user_hash=hash_user_id(user_id),
        persona=persona,
        resonance_key=resonance_key,
        rating=rating,
        previous_rating=previous_rating,
    )
    return envelope(FEEDBACK_RECORDED, data, occurred_at=occurred_at, event_id=event_id)


def is_envelope(payload: dict[str, Any]) -> bool:
    """Whether `payload` already has the envelope's identifying keys."""
    return all(key in payload for key in ("schema_version", "event_id", "event_type", "data"))


def encode_event(envelope_: dict[str, Any]) -> bytes:
    """Canonical compact UTF-8 JSON (sorted keys, so equal events give equal bytes)."""
    return json.dumps(
        envelope_, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
    ).encode("utf-8")


def event_attributes(envelope_: dict[str, Any]) -> dict[str, str]:
    """Transport attributes (e.g. Pub/Sub) that let subscribers filter without decoding."""
    return {
        "event_type": str(envelope_["event_type"]),
        "schema_version": str(envelope_["schema_version"]),
        "event_id": str(envelope_["event_id"]),
    }


# --- consuming ----------------------------------------------------------------------------


def _summarise(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "<root>"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def decode_event(raw: bytes | str | Mapping[str, Any]) -> Event:
    """Parse and validate one event (its JSON, or an envelope already parsed by an
    in-process transport); raises MalformedEvent (a ValueError) with the reason."""
    if isinstance(raw, Mapping):
        obj: object = dict(raw)
    else:
        try:
            obj = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedEvent(f"event is not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise MalformedEvent(f"event must be a JSON object, got {type(obj).__name__}")

    version = obj.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise UnsupportedSchemaVersion(
            f"unsupported schema_version {version!r} (this code reads {SCHEMA_VERSION})"
        )
    try:
        raw_env = _RawEnvelope.model_validate(obj)
    except ValidationError as exc:
        raise MalformedEvent(f"invalid event envelope: {_summarise(exc)}") from exc

    data_model = _DATA_MODELS.get(raw_env.event_type)
    if data_model is None:
        raise UnknownEventType(f"unknown event_type {raw_env.event_type!r}")
    try:
        data = data_model.model_validate(raw_env.data)
    except ValidationError as exc:
        raise MalformedEvent(
            f"invalid data for {raw_env.event_type} event {raw_env.event_id}: {_summarise(exc)}"
        ) from exc
    # Validating via a dict keeps `event_type` checked against the EventType literal.
    return Event.model_validate(
        {
            "schema_version": raw_env.schema_version,
            "event_id": raw_env.event_id,
            "event_type": raw_env.event_type,
            "occurred_at": raw_env.occurred_at,
            "data": data,
        }
    )
