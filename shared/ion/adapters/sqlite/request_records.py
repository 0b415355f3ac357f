"""The per-request records of the embedded backend's conversation store: the first-turn
response cache, Idempotency-Key records and the durable event outbox. `SqliteStore` is
one of these, on the same connections (its tables are in migrations.py).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ion.adapters.sqlite.database import SqliteDatabase
from ion.adapters.sqlite.database import from_timestamp as _dt
from ion.adapters.sqlite.database import to_timestamp as _ts
from ion.adapters.store_rules import check_outbox_id, payload_json, to_utc
from ion.ports import CachedAnswer, IdempotencyRecord, OutboxEntry

_IDEMPOTENCY_COLUMNS = (
    "user_id, idem_key, request_hash, state, created_at, expires_at, locked_until, response, "
    "conversation_id"
)


class SqliteRequestRecords:
    """`ResponseCache`, `IdempotencyStore` and `OutboxStore` on a SQLite file."""

    _db: SqliteDatabase

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
