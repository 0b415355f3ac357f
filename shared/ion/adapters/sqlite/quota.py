"""`QuotaStore` on the SQLite file of the embedded backend (its own table; the connections
of `SqliteDatabase`, shared with the other stores; the table is defined in migrations.py).

Atomic across threads and processes: every increment is an upsert with `RETURNING` in a
`BEGIN IMMEDIATE` transaction (SQLite's single writer lock), so concurrent callers each get
a distinct new value; several counters change in one transaction (`increment_many`, a turn
claim).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from ion.adapters.sqlite.database import SqliteDatabase, as_database
from ion.ports import CounterChange

_UPSERT = """
INSERT INTO quota_counters (key, value, expires_at) VALUES {rows}
ON CONFLICT (key) DO UPDATE SET value = value + excluded.value,
    expires_at = max(expires_at, excluded.expires_at)
RETURNING key, value
"""
# Expired counters are deleted now and then by whoever writes (no background job needed).
_PURGE_EVERY = 500


@lru_cache(maxsize=16)
def _upsert(rows: int) -> str:
    return _UPSERT.format(rows=", ".join(["(?, ?, ?)"] * rows))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


_purge_lock = threading.Lock()
_writes = 0


def apply_counter_changes(conn: sqlite3.Connection, changes: Sequence[CounterChange]) -> list[int]:
    """Make `changes` in the caller's write transaction (also the conversation store's turn
    claim); the counters' new values in order."""
    global _writes
    with _purge_lock:
        _writes += len(changes)
        purge = _writes >= _PURGE_EVERY
        if purge:
            _writes = 0
    keys = [c.key for c in changes]
    if not keys:
        values: list[int] = []
    elif len(set(keys)) == len(keys):
        # One statement for all counters. RETURNING's row order is unspecified: by key.
        params = [value for c in changes for value in (c.key, c.amount, _iso(c.expires_at))]
        new_values = dict(conn.execute(_upsert(len(changes)), params).fetchall())
        values = [int(new_values[key]) for key in keys]
    else:  # a key changed twice: each change's own result, in order
        values = [
            int(conn.execute(_upsert(1), (c.key, c.amount, _iso(c.expires_at))).fetchone()[1])
            for c in changes
        ]
    if purge:
        conn.execute("DELETE FROM quota_counters WHERE expires_at < ?", (_iso(datetime.now(UTC)),))
    return values


class SqliteQuotaStore:
    def __init__(
        self, database: SqliteDatabase | Path | str, *, busy_timeout_ms: int = 10_000
    ) -> None:
        self._db = as_database(database, busy_timeout_ms)

    def _connection(self) -> sqlite3.Connection:
        return self._db.connection()

    def increment(self, key: str, amount: int, *, expires_at: datetime) -> int:
        return self.increment_many([CounterChange(key=key, amount=amount, expires_at=expires_at)])[
            0
        ]

    def increment_many(self, changes: Sequence[CounterChange]) -> list[int]:
        with self._db.write() as conn:
            return apply_counter_changes(conn, changes)

    def counter(self, key: str) -> int:
        row = self._db.read_one("SELECT value FROM quota_counters WHERE key = ?", (key,))
        return 0 if row is None else int(row[0])

    def delete_counters_with_prefix(self, prefix: str) -> int:
        # A range on the primary key (no LIKE: a key may hold '%' or '_').
        with self._db.write() as conn:
            cursor = conn.execute(
                "DELETE FROM quota_counters WHERE key >= ? AND key < ?",
                (prefix, prefix + "\U0010ffff"),
            )
            return cursor.rowcount

    def close(self) -> None:
        self._db.close()
