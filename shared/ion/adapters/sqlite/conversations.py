"""Conversation and outbox storage on one SQLite file (the embedded backend).

Safe for a multi-threaded server and for several processes on the same file: connections,
WAL, busy timeout and `BEGIN IMMEDIATE` writes come from `SqliteDatabase` (sqlite_db.py),
which the learning and quota stores share. The schema is versioned (PRAGMA user_version).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ion.adapters.sqlite.database import SqliteDatabase, as_database
from ion.adapters.sqlite.database import from_timestamp as _dt
from ion.adapters.sqlite.database import to_timestamp as _ts
from ion.adapters.store_rules import (
    TurnConflict,
    check_outbox_id,
    check_turn,
    check_updated,
    conversation_page,
    decode_cursor,
    payload_json,
    to_utc,
)
from ion.domain.models import Conversation, Message, ResonanceKey, RoutingDecision, Usage
from ion.ports import (
    CachedAnswer,
    ConversationMemory,
    ConversationPage,
    IdempotencyRecord,
    OutboxEntry,
    TurnClaim,
)

# Each entry upgrades the schema by one version (PRAGMA user_version); append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE conversations (
            id              TEXT PRIMARY KEY,
            user_id         TEXT NOT NULL,
            created_at      TEXT NOT NULL,
            updated_at      TEXT NOT NULL,
            title           TEXT NOT NULL DEFAULT '',
            current_persona TEXT,
            message_count   INTEGER NOT NULL DEFAULT 0 CHECK (message_count >= 0)
        )
        """,
        """
        CREATE INDEX conversations_by_user
            ON conversations (user_id, updated_at DESC, id DESC)
        """,
        """
        CREATE TABLE messages (
            conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            seq             INTEGER NOT NULL CHECK (seq >= 0),
            id              TEXT NOT NULL,
            role            TEXT NOT NULL,
            text            TEXT NOT NULL,
            created_at      TEXT NOT NULL,
            persona         TEXT,
            routing         TEXT,
            resonance_key   TEXT,
            model           TEXT,
            usage           TEXT,
            latency_ms      INTEGER,
            finish_reason   TEXT,
            status          TEXT NOT NULL,
            PRIMARY KEY (conversation_id, seq)
        )
        """,
        """
        CREATE TABLE outbox (
            id          TEXT PRIMARY KEY,
            event_type  TEXT NOT NULL,
            payload     TEXT NOT NULL,
            created_at  TEXT NOT NULL,
            attempts    INTEGER NOT NULL DEFAULT 0,
            last_error  TEXT
        )
        """,
        "CREATE INDEX outbox_by_age ON outbox (created_at, id)",
    ),
    (
        """
        CREATE TABLE response_cache (
            cache_key     TEXT PRIMARY KEY,
            text          TEXT NOT NULL,
            model         TEXT NOT NULL,
            finish_reason TEXT,
            created_at    TEXT NOT NULL,
            expires_at    TEXT NOT NULL
        )
        """,
        "CREATE INDEX response_cache_by_expiry ON response_cache (expires_at)",
        """
        CREATE TABLE idempotency_keys (
            user_id      TEXT NOT NULL,
            idem_key     TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            state        TEXT NOT NULL CHECK (state IN ('pending', 'done')),
            created_at   TEXT NOT NULL,
            expires_at   TEXT NOT NULL,
            locked_until TEXT NOT NULL,
            response     TEXT,
            PRIMARY KEY (user_id, idem_key)
        )
        """,
        "CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at)",
    ),
    (
        # The turn lease: one turn at a time per conversation (claim_turn / save_turn).
        "ALTER TABLE conversations ADD COLUMN turn_lease TEXT",
        "ALTER TABLE conversations ADD COLUMN turn_lease_until TEXT",
    ),
    # Answers given under the crisis policy.
    ("ALTER TABLE messages ADD COLUMN crisis INTEGER NOT NULL DEFAULT 0",),
    (
        # Erasure: cached answers and Idempotency-Key replies name their conversation, so
        # deleting it deletes them. Old cache entries cannot be attributed (and were shared
        # across users): dropped. Old replies carry their conversation id in the JSON.
        "DELETE FROM response_cache",
        "ALTER TABLE response_cache ADD COLUMN conversation_id TEXT",
        "CREATE INDEX response_cache_by_conversation ON response_cache (conversation_id)",
        "ALTER TABLE idempotency_keys ADD COLUMN conversation_id TEXT",
        "UPDATE idempotency_keys SET conversation_id = json_extract(response, '$.conversation_id')"
        " WHERE response IS NOT NULL AND json_valid(response)",
        "CREATE INDEX idempotency_keys_by_conversation ON idempotency_keys (conversation_id)",
    ),
    # How an answer was given: {"mode", "personas", "quick_replies"} (NULL: a single answer).
    ("ALTER TABLE messages ADD COLUMN orchestration TEXT",),
    (
        # The rolling summary of the messages before the history window (JSON: summary,
        # through, updated_at); in the conversation's row, so it goes with it.
        "ALTER TABLE conversations ADD COLUMN memory TEXT",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

_CONVERSATION_COLUMNS = "id, user_id, created_at, updated_at, title, current_persona, message_count"
_MESSAGE_COLUMNS = (
    "id, conversation_id, role, text, created_at, persona, routing, resonance_key, model, "
    "usage, latency_ms, finish_reason, status, crisis, orchestration"
)

# Composed once from constant column lists (never from input), hence the S608 waivers.
_SELECT_CONVERSATIONS = f"SELECT {_CONVERSATION_COLUMNS} FROM conversations"  # noqa: S608
_SELECT_CONVERSATION_AND_LEASE = (
    f"SELECT {_CONVERSATION_COLUMNS}, turn_lease, turn_lease_until "  # noqa: S608
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
# With a lease: the same upsert, and the turn lease it held is released.
_UPSERT_CONVERSATION_RELEASING = (
    _UPSERT_CONVERSATION + ", turn_lease = NULL, turn_lease_until = NULL"
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
_IDEMPOTENCY_COLUMNS = (
    "user_id, idem_key, request_hash, state, created_at, expires_at, locked_until, response, "
    "conversation_id"
)


def _migrate(conn: sqlite3.Connection) -> None:
    """Runs in the schema transaction (BEGIN IMMEDIATE): another process may have migrated."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    for target in range(version + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[target - 1]:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {target}")


class SqliteStore:
    """`ConversationStore`, `OutboxStore`, `ResponseCache` and `IdempotencyStore` on a
    SQLite file."""

    def __init__(
        self, database: SqliteDatabase | Path | str, *, busy_timeout_ms: int = 10_000
    ) -> None:
        self._db = as_database(database, busy_timeout_ms)
        self._db.add_schema("conversations", _migrate)

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
                if lease is not None:
                    row = conn.execute(
                        "SELECT turn_lease FROM conversations WHERE id = ?", (c.id,)
                    ).fetchone()
                    if row is None or row[0] != lease:
                        # Taken over after it expired, or the conversation was deleted.
                        raise _LeaseLost
                conn.execute(
                    _UPSERT_CONVERSATION if lease is None else _UPSERT_CONVERSATION_RELEASING,
                    (
                        c.id,
                        c.user_id,
                        _ts(c.created_at),
                        _ts(c.updated_at),
                        c.title,
                        c.current_persona,
                        c.message_count,
                    ),
                )
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

    def claim_turn(
        self, conversation_id: str, user_id: str, *, now: datetime, until: datetime
    ) -> TurnClaim:
        with self._db.write() as conn:
            row = conn.execute(_SELECT_CONVERSATION_AND_LEASE, (conversation_id,)).fetchone()
            if row is None or row[1] != user_id:
                return TurnClaim()
            conversation = _conversation(row)
            held, held_until = row[7], row[8]
            if held is not None and held_until is not None and _dt(held_until) > to_utc(now):
                return TurnClaim(conversation=conversation, busy_until=_dt(held_until))
            lease = uuid.uuid4().hex
            conn.execute(
                "UPDATE conversations SET turn_lease = ?, turn_lease_until = ? WHERE id = ?",
                (lease, _ts(until), conversation_id),
            )
        return TurnClaim(conversation=conversation, lease=lease)

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

    # --- ResponseCache -------------------------------------------------------------

    def get_cached_answer(self, key: str, now: datetime) -> CachedAnswer | None:
        row = self._db.read_one(
            "SELECT text, model, finish_reason, created_at, expires_at, conversation_id "
            "FROM response_cache WHERE cache_key = ? AND expires_at > ?",
            (key, _ts(now)),
        )
        if row is None:
            return None
        return CachedAnswer(
            text=row[0],
            model=row[1],
            finish_reason=row[2],
            created_at=_dt(row[3]),
            expires_at=_dt(row[4]),
            conversation_id=row[5],
        )

    def put_cached_answer(self, key: str, answer: CachedAnswer) -> None:
        with self._db.write() as conn:
            # Expired entries are swept here (indexed by expiry), so the table stays small.
            conn.execute(
                "DELETE FROM response_cache WHERE expires_at <= ?", (_ts(answer.created_at),)
            )
            conn.execute(
                "INSERT OR REPLACE INTO response_cache "
                "(cache_key, text, model, finish_reason, created_at, expires_at, conversation_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    answer.text,
                    answer.model,
                    answer.finish_reason,
                    _ts(answer.created_at),
                    _ts(answer.expires_at),
                    answer.conversation_id,
                ),
            )

    def delete_cached_answers_for_conversation(self, conversation_id: str) -> int:
        with self._db.write() as conn:
            cursor = conn.execute(
                "DELETE FROM response_cache WHERE conversation_id = ?", (conversation_id,)
            )
            return cursor.rowcount

    # --- IdempotencyStore ----------------------------------------------------------

    def claim_idempotency(
        self, record: IdempotencyRecord, now: datetime
    ) -> IdempotencyRecord | None:
        r = record
        with self._db.write() as conn:
            conn.execute("DELETE FROM idempotency_keys WHERE expires_at <= ?", (_ts(now),))
            row = conn.execute(
                f"SELECT {_IDEMPOTENCY_COLUMNS} FROM idempotency_keys "  # noqa: S608
                "WHERE user_id = ? AND idem_key = ?",
                (r.user_id, r.key),
            ).fetchone()
            if row is not None:
                existing = _idempotency(row)
                if existing.state == "done" or existing.locked_until > to_utc(now):
                    return existing
            conn.execute(
                f"INSERT OR REPLACE INTO idempotency_keys ({_IDEMPOTENCY_COLUMNS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r.user_id,
                    r.key,
                    r.request_hash,
                    r.state,
                    _ts(r.created_at),
                    _ts(r.expires_at),
                    _ts(r.locked_until),
                    r.response,
                    r.conversation_id,
                ),
            )
        return None

    def complete_idempotency(
        self, user_id: str, key: str, response: str, *, conversation_id: str
    ) -> None:
        with self._db.write() as conn:
            conn.execute(
                "UPDATE idempotency_keys SET state = 'done', response = ?, conversation_id = ? "
                "WHERE user_id = ? AND idem_key = ?",
                (response, conversation_id, user_id, key),
            )

    def delete_idempotency_for_conversation(self, conversation_id: str) -> int:
        with self._db.write() as conn:
            cursor = conn.execute(
                "DELETE FROM idempotency_keys WHERE conversation_id = ?", (conversation_id,)
            )
            return cursor.rowcount

    def delete_idempotency_for_user(self, user_id: str) -> int:
        with self._db.write() as conn:
            cursor = conn.execute("DELETE FROM idempotency_keys WHERE user_id = ?", (user_id,))
            return cursor.rowcount

    def release_idempotency(self, user_id: str, key: str) -> None:
        with self._db.write() as conn:
            conn.execute(
                "DELETE FROM idempotency_keys WHERE user_id = ? AND idem_key = ? "
                "AND state = 'pending'",
                (user_id, key),
            )

    def renew_idempotency(self, user_id: str, key: str, locked_until: datetime) -> None:
        with self._db.write() as conn:
            conn.execute(
                "UPDATE idempotency_keys SET locked_until = ? "
                "WHERE user_id = ? AND idem_key = ? AND state = 'pending'",
                (_ts(locked_until), user_id, key),
            )

    # --- OutboxStore -----------------------------------------------------------------

    def add_outbox(self, entry: OutboxEntry) -> None:
        """Insert, or replace an entry with the same id."""
        check_outbox_id(entry.id)
        with self._db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO outbox "
                "(id, event_type, payload, created_at, attempts, last_error) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    entry.id,
                    entry.event_type,
                    payload_json(entry.payload),
                    _ts(entry.created_at),
                    entry.attempts,
                    entry.last_error,
                ),
            )

    def pending_outbox(self, limit: int) -> list[OutboxEntry]:
        if limit <= 0:
            return []
        rows = self._db.read(
            "SELECT id, event_type, payload, created_at, attempts, last_error "
            "FROM outbox ORDER BY created_at, id LIMIT ?",
            (limit,),
        )
        return [
            OutboxEntry(
                id=row[0],
                event_type=row[1],
                payload=json.loads(row[2]),
                created_at=_dt(row[3]),
                attempts=row[4],
                last_error=row[5],
            )
            for row in rows
        ]

    def remove_outbox(self, entry_id: str) -> None:
        """Idempotent: removing an absent entry is not an error."""
        with self._db.write() as conn:
            conn.execute("DELETE FROM outbox WHERE id = ?", (entry_id,))

    def record_outbox_failure(self, entry_id: str, error: str) -> None:
        """No-op for an absent entry (it was published and removed meanwhile)."""
        with self._db.write() as conn:
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                (error, entry_id),
            )


class _LeaseLost(Exception):
    """Raised inside save_turn's transaction (rolling it back) when the lease is gone."""


# --- row mapping -------------------------------------------------------------------


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


def _idempotency(row: tuple[Any, ...]) -> IdempotencyRecord:
    return IdempotencyRecord(
        user_id=row[0],
        key=row[1],
        request_hash=row[2],
        state=row[3],
        created_at=_dt(row[4]),
        expires_at=_dt(row[5]),
        locked_until=_dt(row[6]),
        response=row[7],
        conversation_id=row[8],
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
