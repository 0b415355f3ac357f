"""Conversation and outbox storage on one SQLite file (the embedded backend).

Safe for a multi-threaded server and for several processes on the same file: connections,
WAL, busy timeout and `BEGIN IMMEDIATE` writes come from `SqliteDatabase` (sqlite_db.py),
which the learning and quota stores share. The schema is migrations.py's; the response cache, Idempotency-Key records and the
outbox are in request_records.py.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from ion.adapters.sqlite.database import SqliteDatabase, as_database
from ion.adapters.sqlite.database import from_timestamp as _dt
from ion.adapters.sqlite.database import to_timestamp as _ts
from ion.adapters.sqlite.quota import apply_counter_changes
from ion.adapters.sqlite.request_records import SqliteRequestRecords
from ion.adapters.store_rules import (
    TurnConflict,
    check_turn,
    check_updated,
    conversation_page,
    decode_cursor,
    to_utc,
)
from ion.domain.models import Conversation, Message, ResonanceKey, RoutingDecision, Usage
from ion.ports import (
    ConversationMemory,
    ConversationPage,
    CounterChange,
    TurnClaim,
    TurnSnapshot,
)

_CONVERSATION_COLUMNS = "id, user_id, created_at, updated_at, title, current_persona, message_count"
_MESSAGE_COLUMNS = (
    "id, conversation_id, role, text, created_at, persona, routing, resonance_key, model, "
    "usage, latency_ms, finish_reason, status, crisis, orchestration"
)

# Composed once from constant column lists (never from input), hence the S608 waivers.
_SELECT_CONVERSATIONS = f"SELECT {_CONVERSATION_COLUMNS} FROM conversations"  # noqa: S608
_SELECT_CONVERSATION_AND_LEASE = (
    f"SELECT {_CONVERSATION_COLUMNS}, turn_lease, turn_lease_until, memory "  # noqa: S608
    "FROM conversations WHERE id = ?"
)
_SELECT_MESSAGES = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?"  # noqa: S608
_UPSERT_CONVERSATION = (
    f"INSERT INTO conversations ({_CONVERSATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "  # noqa: S608
    "ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, "
    "created_at = excluded.created_at, updated_at = excluded.updated_at, "
    "title = excluded.title, current_persona = excluded.current_persona, "
    "message_count = excluded.message_count"
)
# With a lease: the row is written only while the turn still holds it, and the lease is
# released (no row changed: taken over after it expired, or the conversation deleted).
# Parameters: the conversation's columns after its id, then id and lease.
_UPDATE_CONVERSATION_RELEASING = (
    "UPDATE conversations SET user_id = ?, created_at = ?, updated_at = ?, title = ?, "
    "current_persona = ?, message_count = ?, turn_lease = NULL, turn_lease_until = NULL "
    "WHERE id = ? AND turn_lease = ?"
)
# A turn's claim of the conversation it read, in one statement: the lease is taken only if
# the row is still as read (its version's columns) and belongs to the learner.
_CLAIM_AS_READ = (
    "UPDATE conversations SET turn_lease = ?, turn_lease_until = ? "  # noqa: S608
    "WHERE id = ? AND user_id = ? AND updated_at IS ? AND message_count IS ? "
    f"AND turn_lease IS ? AND turn_lease_until IS ? RETURNING {_CONVERSATION_COLUMNS}"
)
_INSERT_MESSAGE = (
    f"INSERT INTO messages (seq, {_MESSAGE_COLUMNS}) "  # noqa: S608
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Parameters: _message_row(m)[2:] (role .. status), then conversation_id, id.
_UPDATE_MESSAGE = (
    "UPDATE messages SET role = ?, text = ?, created_at = ?, persona = ?, routing = ?, "
    "resonance_key = ?, model = ?, usage = ?, latency_ms = ?, finish_reason = ?, status = ?, "
    "crisis = ?, orchestration = ? WHERE conversation_id = ? AND id = ?"
)


class SqliteStore(SqliteRequestRecords):
    """`ConversationStore`, `OutboxStore`, `ResponseCache` and `IdempotencyStore` on a
    SQLite file."""

    def __init__(
        self, database: SqliteDatabase | Path | str, *, busy_timeout_ms: int = 10_000
    ) -> None:
        self._db = as_database(database, busy_timeout_ms)

    @property
    def path(self) -> Path:
        return self._db.path

    @property
    def database(self) -> SqliteDatabase:
        """The connections, shared with the other stores on this file (bootstrap)."""
        return self._db

    def _connection(self) -> sqlite3.Connection:
        return self._db.connection()

    def close(self) -> None:
        """Close every connection to the database (tests, graceful shutdown)."""
        self._db.close()

    # --- ConversationStore -----------------------------------------------------------

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        row = self._db.read_one(
            _SELECT_CONVERSATIONS + " WHERE id = ?",
            (conversation_id,),
        )
        return None if row is None else _conversation(row)

    def recent_messages(self, conversation_id: str, limit: int) -> list[Message]:
        if limit <= 0:
            return []
        rows = self._db.read(
            _SELECT_MESSAGES + " ORDER BY seq DESC LIMIT ?",
            (conversation_id, limit),
        )
        return [_message(row) for row in reversed(rows)]

    def list_messages(self, conversation_id: str) -> list[Message]:
        rows = self._db.read(
            _SELECT_MESSAGES + " ORDER BY seq",
            (conversation_id,),
        )
        return [_message(row) for row in rows]

    def list_conversations(
        self, user_id: str, *, limit: int, cursor: str | None = None
    ) -> ConversationPage:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        sql = _SELECT_CONVERSATIONS + " WHERE user_id = ?"
        params: list[Any] = [user_id]
        if cursor is not None:
            after_updated, after_id = decode_cursor(cursor)
            sql += " AND (updated_at < ? OR (updated_at = ? AND id < ?))"
            params += [_ts(after_updated), _ts(after_updated), after_id]
        sql += " ORDER BY updated_at DESC, id DESC LIMIT ?"
        params.append(limit + 1)  # one extra row tells whether another page exists
        rows = self._db.read(sql, params)
        return conversation_page([_conversation(row) for row in rows], limit)

    def save_turn(
        self,
        conversation: Conversation,
        messages: Sequence[Message],
        updated: Sequence[Message] = (),
        *,
        lease: str | None = None,
    ) -> None:
        first_seq = check_turn(conversation, messages)
        check_updated(conversation, updated)
        c = conversation
        try:
            with self._db.write() as conn:
                columns = (
                    c.user_id,
                    _ts(c.created_at),
                    _ts(c.updated_at),
                    c.title,
                    c.current_persona,
                    c.message_count,
                )
                if lease is None:
                    conn.execute(_UPSERT_CONVERSATION, (c.id, *columns))
                elif (
                    conn.execute(_UPDATE_CONVERSATION_RELEASING, (*columns, c.id, lease)).rowcount
                    != 1
                ):
                    # Taken over after it expired, or the conversation was deleted.
                    raise _LeaseLost
                # A message row's primary key is (conversation_id, seq): a second turn
                # computed from the same stale message_count collides here and fails.
                conn.executemany(
                    _INSERT_MESSAGE,
                    [(first_seq + i, *_message_row(m)) for i, m in enumerate(messages)],
                )
                for m in updated:
                    cursor = conn.execute(_UPDATE_MESSAGE, (*_message_row(m)[2:], c.id, m.id))
                    if cursor.rowcount != 1:
                        # Raised inside the transaction: nothing of the turn is written.
                        raise ValueError(
                            f"save_turn: message {m.id!r} of conversation {c.id!r} "
                            "does not exist, so it cannot be updated"
                        )
        except _LeaseLost as exc:
            if messages and self._already_saved(conversation.id, first_seq, messages):
                return  # the same turn saved twice (a retry): idempotent
            raise TurnConflict(
                f"conversation {conversation.id}: this turn no longer holds the conversation "
                "(its lease expired and another turn took it, or the conversation was deleted)"
            ) from exc
        except sqlite3.IntegrityError as exc:
            if self._already_saved(conversation.id, first_seq, messages):
                return  # the same turn saved twice (a retry): idempotent
            raise TurnConflict(
                f"conversation {conversation.id} already has messages at seq "
                f"{first_seq}..{first_seq + len(messages) - 1} (concurrent turn?)"
            ) from exc

    def read_turn(
        self, conversation_id: str, user_id: str, *, now: datetime, history: int
    ) -> TurnSnapshot:
        row = self._db.read_one(_SELECT_CONVERSATION_AND_LEASE, (conversation_id,))
        if row is None or row[1] != user_id:
            return TurnSnapshot()
        conversation = _conversation(row)
        busy_until = _busy_until(row, now)
        if busy_until is not None:
            return TurnSnapshot(conversation=conversation, busy_until=busy_until)
        # Read after the row: a turn saved in between changes the row, so the claim
        # expecting this version finds it changed and the turn reads again.
        return TurnSnapshot(
            conversation=conversation,
            history=self.recent_messages(conversation_id, history),
            memory=None if row[9] is None else ConversationMemory.model_validate_json(row[9]),
            version=_version(row),
        )

    def claim_turn(
        self,
        conversation_id: str,
        user_id: str,
        *,
        now: datetime,
        until: datetime,
        expected: str | None = None,
        counters: Sequence[CounterChange] = (),
    ) -> TurnClaim:
        with self._db.write() as conn:
            if expected is not None:
                lease = uuid.uuid4().hex
                row = _claim_as_read(conn, conversation_id, user_id, now, until, expected, lease)
                if row is not None:
                    values = apply_counter_changes(conn, counters)
                    return TurnClaim(
                        conversation=_conversation(row), lease=lease, counters=tuple(values)
                    )
                # Changed since it was read, busy, or not the learner's: read it to say which.
            row = conn.execute(_SELECT_CONVERSATION_AND_LEASE, (conversation_id,)).fetchone()
            if expected is not None and (row is None or _version(row) != expected):
                return TurnClaim(changed=True)
            if row is None or row[1] != user_id:
                return TurnClaim()
            conversation = _conversation(row)
            busy_until = _busy_until(row, now)
            if busy_until is not None:
                return TurnClaim(conversation=conversation, busy_until=busy_until)
            lease = uuid.uuid4().hex
            conn.execute(
                "UPDATE conversations SET turn_lease = ?, turn_lease_until = ? WHERE id = ?",
                (lease, _ts(until), conversation_id),
            )
            values = apply_counter_changes(conn, counters)
        return TurnClaim(conversation=conversation, lease=lease, counters=tuple(values))

    def release_turn(self, conversation_id: str, lease: str) -> None:
        with self._db.write() as conn:
            conn.execute(
                "UPDATE conversations SET turn_lease = NULL, turn_lease_until = NULL "
                "WHERE id = ? AND turn_lease = ?",
                (conversation_id, lease),
            )

    def _already_saved(
        self, conversation_id: str, first_seq: int, messages: Sequence[Message]
    ) -> bool:
        rows = self._db.read(
            "SELECT seq, id FROM messages WHERE conversation_id = ? "
            "AND seq >= ? AND seq < ? ORDER BY seq",
            (conversation_id, first_seq, first_seq + len(messages)),
        )
        return [row[1] for row in rows] == [m.id for m in messages]

    def delete_conversation(self, conversation_id: str) -> bool:
        with self._db.write() as conn:
            # Explicit delete as well as ON DELETE CASCADE: correct even if a connection
            # was opened without foreign_keys (e.g. the sqlite3 shell).
            conn.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))
            cursor = conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            existed = cursor.rowcount > 0
        self._db.purge_wal()
        return existed

    # --- MemoryStore ---------------------------------------------------------------

    def get_memory(self, conversation_id: str) -> ConversationMemory | None:
        row = self._db.read_one("SELECT memory FROM conversations WHERE id = ?", (conversation_id,))
        if row is None or row[0] is None:
            return None
        return ConversationMemory.model_validate_json(row[0])

    def put_memory(self, conversation_id: str, memory: ConversationMemory) -> bool:
        with self._db.write() as conn:
            row = conn.execute(
                "SELECT memory FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            if row is None:
                return False
            if row[0] is not None:
                current = ConversationMemory.model_validate_json(row[0])
                if current.through >= memory.through:
                    return True  # a newer summary is already there
            conn.execute(
                "UPDATE conversations SET memory = ? WHERE id = ?",
                (memory.model_dump_json(), conversation_id),
            )
        return True

    def ping(self) -> None:
        self._db.read_one("SELECT 1 FROM conversations LIMIT 1")


class _LeaseLost(Exception):
    """Raised inside save_turn's transaction (rolling it back) when the lease is gone."""


# --- row mapping -------------------------------------------------------------------


def _busy_until(row: tuple[Any, ...], now: datetime) -> datetime | None:
    """When the live lease of a `_SELECT_CONVERSATION_AND_LEASE` row expires (None: none)."""
    held, held_until = row[7], row[8]
    if held is not None and held_until is not None and _dt(held_until) > to_utc(now):
        return _dt(held_until)
    return None


def _claim_as_read(
    conn: sqlite3.Connection,
    conversation_id: str,
    user_id: str,
    now: datetime,
    until: datetime,
    expected: str,
    lease: str,
) -> tuple[Any, ...] | None:
    """Take the lease of a conversation still at version `expected` and not busy at `now`,
    in one statement; its row, or None when it was not taken (nothing written)."""
    try:
        updated_at, message_count, held, held_until = json.loads(expected)
    except (ValueError, TypeError):
        return None  # not a version of this store: the full check answers
    if held is not None and held_until is not None and _dt(held_until) > to_utc(now):
        return None  # busy as read
    row: tuple[Any, ...] | None = conn.execute(
        _CLAIM_AS_READ,
        (lease, _ts(until), conversation_id, user_id, updated_at, message_count, held, held_until),
    ).fetchone()
    return row


def _version(row: tuple[Any, ...]) -> str:
    """What changes with every write to a conversation's turn: a save (its `updated_at` and
    `message_count`), a claim or a release (the lease)."""
    return json.dumps([row[3], row[6], row[7], row[8]])


def _conversation(row: tuple[Any, ...]) -> Conversation:
    return Conversation(
        id=row[0],
        user_id=row[1],
        created_at=_dt(row[2]),
        updated_at=_dt(row[3]),
        title=row[4],
        current_persona=row[5],
        message_count=row[6],
    )


def _message_row(m: Message) -> tuple[Any, ...]:
    return (
        m.id,
        m.conversation_id,
        m.role,
        m.text,
        _ts(m.created_at),
        m.persona,
        None if m.routing is None else m.routing.model_dump_json(),
        None if m.resonance_key is None else m.resonance_key.model_dump_json(),
        m.model,
        None if m.usage is None else m.usage.model_dump_json(),
        m.latency_ms,
        m.finish_reason,
        m.status,
        int(m.crisis),
        _orchestration_json(m),
    )


def _orchestration_json(m: Message) -> str | None:
    if m.mode == "single" and not m.personas and not m.quick_replies:
        return None
    shape = {"mode": m.mode, "personas": m.personas, "quick_replies": m.quick_replies}
    return json.dumps(shape, ensure_ascii=False, separators=(",", ":"))


# A conversation's last messages are read again on every turn of it: a row already made
# into a Message is reused. The key is the whole row, so a row that changed is read anew.
@lru_cache(maxsize=1024)
def _message(row: tuple[Any, ...]) -> Message:
    return Message(
        id=row[0],
        conversation_id=row[1],
        role=row[2],
        text=row[3],
        created_at=_dt(row[4]),
        persona=row[5],
        routing=None if row[6] is None else RoutingDecision.model_validate_json(row[6]),
        resonance_key=None if row[7] is None else ResonanceKey.model_validate_json(row[7]),
        model=row[8],
        usage=None if row[9] is None else Usage.model_validate_json(row[9]),
        latency_ms=row[10],
        finish_reason=row[11],
        status=row[12],
        crisis=bool(row[13]),
        **({} if row[14] is None else json.loads(row[14])),
    )
