"""`QuotaStore` on the SQLite file of the embedded backend (its own table; the connections
of `SqliteDatabase`, shared with the other stores; the table is defined in migrations.py).

Atomic across threads and processes: every increment is one `BEGIN IMMEDIATE` transaction
(SQLite's single writer lock) running an upsert with `RETURNING`, so concurrent callers
each get a distinct new value.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from ion.adapters.sqlite.database import SqliteDatabase, as_database

_UPSERT = """
INSERT INTO quota_counters (key, value, expires_at) VALUES (?, ?, ?)
ON CONFLICT (key) DO UPDATE SET value = value + excluded.value,
    expires_at = max(expires_at, excluded.expires_at)
RETURNING value
"""
# Expired counters are deleted now and then by whoever writes (no background job needed).
_PURGE_EVERY = 500


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


class SqliteQuotaStore:
    def __init__(
        self, database: SqliteDatabase | Path | str, *, busy_timeout_ms: int = 10_000
    ) -> None:
        self._db = as_database(database, busy_timeout_ms)
        self._lock = threading.Lock()
        self._writes = 0

    def _connection(self) -> sqlite3.Connection:
        return self._db.connection()

    def increment(self, key: str, amount: int, *, expires_at: datetime) -> int:
        with self._lock:
            self._writes += 1
            purge = self._writes % _PURGE_EVERY == 0
        with self._db.write() as conn:
            (value,) = conn.execute(_UPSERT, (key, amount, _iso(expires_at))).fetchone()
            if purge:
                conn.execute(
                    "DELETE FROM quota_counters WHERE expires_at < ?", (_iso(datetime.now(UTC)),)
                )
        return int(value)

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
