"""`SqliteDatabase`: the connections, WAL switch and schemas shared by the SQLite stores."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ion.adapters.sqlite import database as sqlite_db
from ion.adapters.sqlite.conversations import SqliteStore
from ion.adapters.sqlite.database import SqliteDatabase
from ion.adapters.sqlite.quota import SqliteQuotaStore
from ion.adapters.sqlite.records import SqliteLearningAndBackupStore
from ion.errors import DependencyUnavailable


@pytest.fixture
def locked_file(tmp_path: Path) -> Iterator[tuple[Path, sqlite3.Connection]]:
    """A fresh file still in rollback-journal mode, with another connection holding its
    write lock (as a second process creating the database at the same moment would)."""
    path = tmp_path / "ion.sqlite3"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("CREATE TABLE other (x)")
    other.execute("BEGIN IMMEDIATE")
    yield path, other
    other.close()


def test_wal_switch_waits_for_another_connections_lock(
    locked_file: tuple[Path, sqlite3.Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite answers the switch with SQLITE_BUSY at once, without its busy handler: the
    # database retries, and here the other connection commits during the first pause.
    path, other = locked_file
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        other.execute("COMMIT")

    monkeypatch.setattr(sqlite_db, "sleep", pause)
    store = SqliteStore(path)
    try:
        store.ping()
        assert len(pauses) == 1
        assert store._connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()


def test_wal_switch_gives_up_after_the_busy_timeout(
    locked_file: tuple[Path, sqlite3.Connection],
) -> None:
    path, _ = locked_file
    store = SqliteStore(path, busy_timeout_ms=50)
    with pytest.raises(DependencyUnavailable, match="locked"):
        store.ping()


def test_the_three_stores_share_one_database(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "ion.sqlite3")
    store, learning, quota = SqliteStore(db), SqliteLearningAndBackupStore(db), SqliteQuotaStore(db)
    later = datetime(2100, 1, 1, tzinfo=UTC)
    assert quota.increment("k", 2, expires_at=later) == 2
    assert learning.routing_stats() == []
    store.ping()
    conn = store._connection()
    assert quota._connection() is conn  # one connection per thread for the whole file
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"conversations", "feedback", "quota_counters"} <= tables
    store.close()  # closes the shared connections; the next call opens new ones
    assert quota.increment("k", 1, expires_at=later) == 3
    assert quota._connection() is not conn
    db.close()


def test_database_file_is_owner_only(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "data" / "ion.sqlite3")
    store.ping()
    assert stat.S_IMODE((tmp_path / "data" / "ion.sqlite3").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
