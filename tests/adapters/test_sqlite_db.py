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


FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
LATER = datetime(2999, 1, 1, tzinfo=UTC)


def _schema(path: Path) -> dict[str, list[tuple[str, str, int, str | None, int]]]:
    """Every table's columns (name, type, not null, default, primary key) and its indexes."""
    conn = sqlite3.connect(path)
    try:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        shape: dict[str, list[tuple[str, str, int, str | None, int]]] = {}
        for table in tables:
            shape[table] = [
                (row[1], row[2], row[3], row[4], row[5])
                for row in conn.execute(f"PRAGMA table_info({table})")
            ]
            shape[table + " indexes"] = [
                (row[1], "", 0, None, 0)
                for row in conn.execute(f"PRAGMA index_list({table})")
                if not str(row[1]).startswith("sqlite_autoindex")
            ]
        return shape
    finally:
        conn.close()


def test_a_database_made_before_the_one_migration_list_upgrades(tmp_path: Path) -> None:
    """A file from the code where conversations had their own versioned migrations and the
    other stores created their tables IF NOT EXISTS: kept rows stay, the version moves on,
    and the schema ends up the same as a new file's."""
    from ion.adapters.sqlite.migrations import SCHEMA_VERSION

    old = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(old, isolation_level=None)
    conn.executescript((FIXTURES / "sqlite_schema_before_migrations.sql").read_text())
    assert conn.execute("PRAGMA user_version").fetchone() == (7,)
    conn.execute(
        "INSERT INTO conversations (id, user_id, created_at, updated_at, title, message_count)"
        " VALUES ('c1', 'alice', ?, ?, 'hello', 0)",
        (NOW.isoformat(), NOW.isoformat()),
    )
    conn.execute("INSERT INTO quota_counters VALUES ('k', 3, ?)", (LATER.isoformat(),))
    conn.close()

    database = SqliteDatabase(old)
    store, quota = SqliteStore(database), SqliteQuotaStore(database)
    try:
        conversation = store.get_conversation("c1")
        assert conversation is not None and conversation.title == "hello"
        assert quota.increment("k", 1, expires_at=LATER) == 4
        version = database.connection().execute("PRAGMA user_version").fetchone()
        assert version == (SCHEMA_VERSION,)
    finally:
        database.close()

    fresh = tmp_path / "fresh.sqlite3"
    SqliteDatabase(fresh).connection()
    assert _schema(old) == _schema(fresh)


def test_writes_together_share_one_transaction_and_a_failed_one_undoes_only_itself(
    tmp_path: Path,
) -> None:
    db = SqliteDatabase(tmp_path / "ion.sqlite3")
    quota = SqliteQuotaStore(db)
    quota.increment("warm", 1, expires_at=datetime(2030, 1, 1, tzinfo=UTC))  # schema applied
    statements: list[str] = []
    db.connection().set_trace_callback(statements.append)
    later = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(RuntimeError), db.together():
        quota.increment("a", 1, expires_at=later)
        with db.write() as conn:
            conn.execute("INSERT INTO quota_counters (key, value, expires_at) VALUES ('b', 5, 'x')")
            raise RuntimeError("this write fails")
        quota.increment("c", 1, expires_at=later)  # never reached
    assert [s for s in statements if s.startswith(("BEGIN", "COMMIT"))] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]
    # What succeeded before the failure was kept; the failed write left nothing.
    assert (quota.counter("a"), quota.counter("b"), quota.counter("c")) == (1, 0, 0)
    with db.together():
        pass  # no write: no transaction
    assert statements.count("BEGIN IMMEDIATE") == 1
    db.close()


def test_a_failed_first_write_together_rolls_back_alone_and_later_writes_are_kept(
    tmp_path: Path,
) -> None:
    db = SqliteDatabase(tmp_path / "ion.sqlite3")
    quota = SqliteQuotaStore(db)
    later = datetime(2030, 1, 1, tzinfo=UTC)
    quota.increment("warm", 1, expires_at=later)  # schema applied
    statements: list[str] = []
    db.connection().set_trace_callback(statements.append)
    with db.together():
        with pytest.raises(RuntimeError), db.write() as conn:
            conn.execute("INSERT INTO quota_counters (key, value, expires_at) VALUES ('a', 5, 'x')")
            raise RuntimeError("the first write fails")
        quota.increment("b", 1, expires_at=later)
        quota.increment("c", 1, expires_at=later)
    # The first write of a transaction takes no savepoint: undoing it is the rollback.
    control = {"BEGIN", "ROLLBACK", "SAVEPOINT", "RELEASE", "COMMIT"}
    assert [s.split()[0] for s in statements if s.split()[0] in control] == [
        "BEGIN",
        "ROLLBACK",
        "BEGIN",
        "SAVEPOINT",
        "RELEASE",
        "COMMIT",
    ]
    assert (quota.counter("a"), quota.counter("b"), quota.counter("c")) == (0, 1, 1)
    db.close()


def test_expired_dedupe_marks_are_pruned_at_the_first_and_every_tenth_event(
    tmp_path: Path,
) -> None:
    db = SqliteDatabase(tmp_path / "ion.sqlite3")
    stats = SqliteLearningAndBackupStore(db, dedupe_days=1)
    old = datetime(2026, 1, 1, tzinfo=UTC)
    now = datetime(2026, 3, 1, tzinfo=UTC)

    def marks() -> int:
        return int(db.read_one("SELECT count(*) FROM processed_events")[0])  # type: ignore[index]

    with db.write() as conn:
        conn.executemany(
            "INSERT INTO processed_events (event_id, processed_at, expires_at) VALUES (?, ?, ?)",
            [(f"old{n}", old.isoformat(), old.isoformat()) for n in range(600)],
        )
    assert stats.apply_event_once("e" * 32, [], processed_at=now) is True
    assert marks() == 600 - 500 + 1  # the first event prunes ten batches
    for n in range(9):
        stats.apply_event_once(f"{n:032x}", [], processed_at=now)
    assert marks() == 101 + 9  # the next nine do not
    stats.apply_event_once("f" * 32, [], processed_at=now)
    assert marks() == 11  # the eleventh does
