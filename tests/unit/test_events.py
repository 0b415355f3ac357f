"""Event envelope and schema: content, privacy and decoding errors."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from ion.domain import events
from ion.domain.events import (
    CHAT_TURN_COMPLETED,
    ChatTurnCompletedData,
    MalformedEvent,
    UnknownEventType,
    UnsupportedSchemaVersion,
    chat_turn_completed,
    decode_event,
    encode_event,
    hash_user_id,
)
from ion.domain.models import Intent, Pace, ResonanceKey, Tone, Usage

KEY = ResonanceKey(tone=Tone.CURIOUS, pace=Pace.FLOWING, intent=Intent.LEARNING)
WHEN = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=9)))


def make(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "conversation_id": "c1",
        "message_id": "m2",
        "user_id": "user-42",
        "persona": "lua",
        "resonance_key": KEY,
        "model": "gemini-2.5-flash",
        "usage": Usage(input_tokens=10, output_tokens=20),
        "latency_ms": 850,
        "cached": False,
        "occurred_at": WHEN,
    }
    kwargs.update(overrides)
    return chat_turn_completed(**kwargs)


def all_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in all_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in all_keys(v)}
    return set()


def test_envelope_shape() -> None:
    env = make()
    assert set(env) == {"schema_version", "event_id", "event_type", "occurred_at", "data"}
    assert env["schema_version"] == 1
    assert env["event_type"] == "chat.turn.completed"
    assert len(env["event_id"]) == 32 and int(env["event_id"], 16) >= 0
    # Converted to UTC, RFC 3339 with Z.
    assert env["occurred_at"] == "2026-03-01T00:30:15.123Z"
    assert env["data"] == {
        "conversation_id": "c1",
        "message_id": "m2",
        "user_hash": hash_user_id("user-42"),
        "persona": "lua",
        "resonance_key": {"tone": "curious", "pace": "flowing", "intent": "learning"},
        "model": "gemini-2.5-flash",
        "usage": {"input_tokens": 10, "output_tokens": 20},
        "latency_ms": 850,
        "cached": False,
    }
    json.dumps(env, allow_nan=False)  # JSON-ready as is


def test_event_ids_are_unique_and_can_be_given() -> None:
    assert make()["event_id"] != make()["event_id"]
    assert make(event_id="ab" * 16)["event_id"] == "ab" * 16


def test_user_id_is_hashed_not_carried() -> None:
    env = make(user_id="alice@example.com")
    raw = encode_event(env).decode()
    assert "alice" not in raw
    assert "user_id" not in all_keys(env)
    digest = hash_user_id("alice@example.com")
    assert len(digest) == 32 and all(c in "0123456789abcdef" for c in digest)
    assert digest == hash_user_id("alice@example.com")  # stable: joins across events work
    assert digest != hash_user_id("alice@example.co")
    # Domain-separated: not the bare sha256 of the id (no cross-system rainbow tables).
    assert digest != hashlib.sha256(b"alice@example.com").hexdigest()[:32]


def test_no_text_field_anywhere() -> None:
    env = make()
    text_like = {"text", "message", "reply", "content", "prompt", "body"}
    assert not all_keys(env) & text_like
    # The builder cannot even accept text.
    with pytest.raises(TypeError):
        make(text="hello")


def test_naive_occurred_at_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make(occurred_at=datetime(2026, 1, 1))


def test_round_trip_decode() -> None:
    env = make(cached=True)
    event = decode_event(encode_event(env))
    assert event.event_id == env["event_id"]
    assert event.event_type == CHAT_TURN_COMPLETED
    assert event.schema_version == 1
    assert event.occurred_at == datetime(2026, 3, 1, 0, 30, 15, 123000, tzinfo=UTC)
    assert isinstance(event.data, ChatTurnCompletedData)
    assert event.data.resonance_key == KEY
    assert event.data.usage == Usage(input_tokens=10, output_tokens=20)
    assert event.data.cached is True
    assert decode_event(json.dumps(env)) == event  # str works too
    # An in-process transport's envelope, already parsed: read the same, not altered.
    parsed = json.loads(encode_event(env))
    assert decode_event(parsed) == event
    assert parsed == json.loads(encode_event(env))


def test_decoder_ignores_additive_fields() -> None:
    env = make()
    env["trace"] = "x"
    env["data"]["new_optional_field"] = 1
    data = decode_event(encode_event(env)).data
    assert isinstance(data, ChatTurnCompletedData) and data.persona == "lua"


def test_encode_is_canonical() -> None:
    env = make()
    reordered = dict(reversed(list(env.items())))
    assert encode_event(env) == encode_event(reordered)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"\xff\xfe", "UTF-8 JSON"),
        (b"{not json", "UTF-8 JSON"),
        (b"[1, 2]", "JSON object, got list"),
        (b'"x"', "JSON object, got str"),
    ],
)
def test_decode_rejects_non_objects(raw: bytes, match: str) -> None:
    with pytest.raises(MalformedEvent, match=match):
        decode_event(raw)


def test_decode_rejects_other_schema_versions() -> None:
    for version in (2, "1", None, True):
        env = make()
        env["schema_version"] = version
        with pytest.raises(UnsupportedSchemaVersion, match="schema_version"):
            decode_event(json.dumps(env))


def test_decode_unknown_type_is_distinguishable() -> None:
    env = make()
    env["event_type"] = "chat.turn.exploded"
    with pytest.raises(UnknownEventType, match=r"chat\.turn\.exploded"):
        decode_event(json.dumps(env))


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda e: e.pop("event_id"), "event_id"),
        (lambda e: e.update(event_id="not-hex"), "event_id"),
        (lambda e: e.update(occurred_at="2026-01-01T00:00:00"), "occurred_at"),
        (lambda e: e.update(data=[]), "data"),
        (lambda e: e["data"].pop("user_hash"), r"data for chat\.turn\.completed.*user_hash"),
        (lambda e: e["data"].update(latency_ms=-1), "latency_ms"),
        (lambda e: e["data"]["resonance_key"].update(tone="sleepy"), "resonance_key.tone"),
    ],
)
def test_decode_reports_what_is_wrong(mutate: Any, match: str) -> None:
    env = make()
    mutate(env)
    with pytest.raises(MalformedEvent, match=match) as info:
        decode_event(json.dumps(env))
    assert isinstance(info.value, ValueError)
    with pytest.raises(MalformedEvent, match=match):
        decode_event(json.loads(json.dumps(env)))  # parsed by an in-process transport


def test_attributes() -> None:
    env = make()
    assert events.event_attributes(env) == {
        "event_type": "chat.turn.completed",
        "schema_version": "1",
        "event_id": env["event_id"],
    }
