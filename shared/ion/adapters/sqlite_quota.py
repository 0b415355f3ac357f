"""`QuotaStore` on the SQLite file of the embedded backend (its own table, own connections).

Atomic across threads and processes: every increment is one `BEGIN IMMEDIATE` transaction
(SQLite's single writer lock) running an upsert with `RETURNING`, so concurrent callers
each get a distinct new value. WAL journal and a busy timeout like `SqliteStore`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ion.errors import DependencyUnavailable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS quota_counters (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL,
    expires_at TEXT NOT NULL
) WITHOUT ROWID
"""
_INDEX = "CREATE INDEX IF NOT EXISTS quota_counters_expiry ON quota_counters (expires_at)"
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
    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 10_000) -> None:
        self._path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._writes = 0

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(_SCHEMA)
            conn.execute(_INDEX)
        except (sqlite3.Error, OSError) as exc:
            raise DependencyUnavailable(f"quota store {self._path} unavailable: {exc}") from exc
        self._local.conn = conn
        self._local.pid = os.getpid()
        with self._lock:
            self._connections.append(conn)
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            raise DependencyUnavailable(f"quota store unavailable: {exc}") from exc

    def increment(self, key: str, amount: int, *, expires_at: datetime) -> int:
        if amount < 0:
            raise ValueError("amount must be >= 0")
        with self._lock:
            self._writes += 1
            purge = self._writes % _PURGE_EVERY == 0
        with self._transaction() as conn:
            (value,) = conn.execute(_UPSERT, (key, amount, _iso(expires_at))).fetchone()
            if purge:
                conn.execute(
                    "DELETE FROM quota_counters WHERE expires_at < ?", (_iso(datetime.now(UTC)),)
                )
        return int(value)

    def counter(self, key: str) -> int:
        try:
            row = (
                self._connection()
                .execute("SELECT value FROM quota_counters WHERE key = ?", (key,))
                .fetchone()
            )
        except sqlite3.OperationalError as exc:
            raise DependencyUnavailable(f"quota store unavailable: {exc}") from exc
        return 0 if row is None else int(row[0])

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()
