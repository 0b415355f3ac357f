"""Adapters: the only modules that touch I/O (SQLite, Firestore, Pub/Sub, LLM providers...).

The domain never imports this package. The few helpers below are shared by the two
conversation stores so that both behave identically (same cursor format, same datetime
normalisation, same conflict error); they are stdlib-only so importing them costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ion.domain.models import Conversation, Message
from ion.domain.records import ConversationPage
from ion.errors import BadRequest, Conflict


class TurnConflict(Conflict):
    """Another writer already stored messages at the sequence numbers of this turn.

    Raised instead of silently overwriting history (a turn whose lease expired and was
    taken over by another). Retrying after a moment computes the turn anew.
    """

    def __init__(self, message: str, *, retry_after_s: int | None = 2) -> None:
        super().__init__(message, retry_after_s=retry_after_s)


def to_utc(value: datetime) -> datetime:
    """A plain, timezone-aware UTC datetime (naive input is taken as UTC).

    Also turns subclasses (Firestore's DatetimeWithNanoseconds) into a plain `datetime`,
    truncated to microseconds, so models read back compare equal to what was written.
    """
    if type(value) is datetime and value.tzinfo is UTC:
        return value  # already one (most values: the clock's)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        tzinfo=UTC,
    )


def valid_id(value: str) -> bool:
    """Whether `value` can be a document id in every store (Firestore's rules are the
    strictest): non-empty, at most 1500 UTF-8 bytes, no '/', not '.', '..' or '__x__'.
    Checked so a crafted id can never address another document path.
    """
    return (
        bool(value)
        and "/" not in value
        and value not in (".", "..")
        and not (value.startswith("__") and value.endswith("__"))
        and len(value.encode("utf-8", "surrogatepass")) <= 1500
    )


_INVALID_CURSOR = "invalid cursor: pass back the next_cursor of the previous page unchanged"


def encode_cursor(updated_at: datetime, conversation_id: str) -> str:
    """An opaque page cursor: url-safe base64 of the last row's (updated_at, id)."""
    raw = json.dumps(
        [to_utc(updated_at).isoformat(timespec="microseconds"), conversation_id],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (updated_at, id) inside `cursor`; `BadRequest` when it was not made by us."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode())
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, str) for v in value)
        ):
            raise ValueError("cursor shape")
        updated_at = datetime.fromisoformat(value[0])
        if updated_at.tzinfo is None or not valid_id(value[1]):
            raise ValueError("cursor content")
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadRequest(_INVALID_CURSOR) from exc
    return to_utc(updated_at), value[1]


def check_turn(conversation: Conversation, messages: Sequence[Message]) -> int:
    """The sequence number of the turn's first message; `ValueError` when inconsistent.

    messages[i] gets seq = conversation.message_count - len(messages) + i, so the summary's
    `message_count` must already include the messages being appended.
    """
    if not valid_id(conversation.id):
        raise ValueError(f"save_turn: {conversation.id!r} is not a valid conversation id")
    first_seq = conversation.message_count - len(messages)
    if first_seq < 0:
        raise ValueError(
            f"save_turn: conversation {conversation.id!r} has message_count="
            f"{conversation.message_count} but {len(messages)} messages are being appended; "
            "message_count must include the new messages"
        )
    for i, message in enumerate(messages):
        if message.conversation_id != conversation.id:
            raise ValueError(
                f"save_turn: messages[{i}] belongs to conversation "
                f"{message.conversation_id!r}, not {conversation.id!r}"
            )
    return first_seq


def check_updated(conversation: Conversation, updated: Sequence[Message]) -> None:
    """`ValueError` unless every message to overwrite belongs to `conversation`, once."""
    for i, message in enumerate(updated):
        if message.conversation_id != conversation.id:
            raise ValueError(
                f"save_turn: updated[{i}] belongs to conversation "
                f"{message.conversation_id!r}, not {conversation.id!r}"
            )
    if len({m.id for m in updated}) != len(updated):
        raise ValueError("save_turn: a message appears twice in `updated`")


def check_outbox_id(entry_id: str) -> None:
    if not valid_id(entry_id):
        raise ValueError(f"{entry_id!r} is not a valid outbox entry id")


def payload_json(payload: dict[str, Any]) -> str:
    """An outbox payload as compact JSON text; `ValueError` when it is not JSON data."""
    try:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"outbox payload must be JSON-serialisable: {exc}") from exc


def conversation_page(fetched: Sequence[Conversation], limit: int) -> ConversationPage:
    """A page from `limit + 1` fetched conversations (newest first): the extra one only
    says that another page exists, and the cursor points after the page's last."""
    page = list(fetched[:limit])
    more = len(fetched) > limit
    cursor = encode_cursor(page[-1].updated_at, page[-1].id) if more and page else None
    return ConversationPage(conversations=page, next_cursor=cursor)
