"""SQLite backups: consistent snapshots (sqlite3 backup API) and the logical NDJSON format.

Generic over the schema: tables are enumerated from `sqlite_master` (internal `sqlite_*`
tables skipped), so tables added by any module are backed up without code changes here.
"""

from __future__ import annotations

import base64
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ion.adapters.sqlite_db import connect, unavailable
from ion.backup import (
    BackupInvalid,
    Manifest,
    StoreNotEmpty,
    prune_directory,
    read_records,
    unique_name,
    verify_backup,
    write_backup,
)
from ion.errors import DependencyUnavailable
from ion.ports import BackupKind, BackupRecord

log = logging.getLogger("ion.backup")

BACKEND = "sqlite"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def _connect(path: Path, busy_timeout_ms: int = 10_000) -> Iterator[sqlite3.Connection]:
    """A short-lived connection that changes nothing about the file (no WAL switch: a
    snapshot stays one self-contained file)."""
    with unavailable(f"sqlite database {path}"):
        conn = connect(path, busy_timeout_ms)
        try:
            yield conn
        finally:
            conn.close()


def _tables(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def _indexes(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    rows = conn.execute(
        "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        "ORDER BY name"
    ).fetchall()
    return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"$bytes"}:
        return base64.b64decode(value["$bytes"])
    return value


# --- snapshots -----------------------------------------------------------------------


def snapshot(db_path: Path, destination: Path) -> None:
    """A consistent copy of the live database (readers and writers may continue meanwhile),
    integrity-checked, written to a temporary name and renamed into place."""
    partial = destination.with_name(f".{destination.name}.partial")
    partial.unlink(missing_ok=True)
    with _connect(db_path) as source, closing(sqlite3.connect(partial)) as target:
        source.backup(target)
        target.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        (status,) = target.execute("PRAGMA integrity_check").fetchone()
        if status != "ok":
            raise DependencyUnavailable(f"snapshot of {db_path} failed its integrity check")
    partial.replace(destination)


class SqliteSnapshotTarget:
    """The embedded backend's scheduled backup: `<dir>/<UTC timestamp>.sqlite3`."""

    kind: BackupKind = "sqlite-snapshot"

    def __init__(self, db_path: Path, directory: Path, retention_days: int) -> None:
        self._db_path = db_path
        self._directory = directory
        self._retention_days = retention_days

    def start(self, backup_id: str, started_at: datetime) -> BackupRecord:
        self._directory.mkdir(parents=True, exist_ok=True)
        name = unique_name(self._directory, backup_id, ".sqlite3")
        destination = self._directory / f"{name}.sqlite3"
        snapshot(self._db_path, destination)
        with _connect(destination) as conn:
            tables = [name for name, _ in _tables(conn)]
        return BackupRecord(
            id=name,
            kind=self.kind,
            status="succeeded",
            started_at=started_at,
            finished_at=datetime.now(UTC),
            location=str(destination),
            collections=tables,
        )

    def refresh(self, record: BackupRecord, now: datetime) -> BackupRecord:
        return record

    def prune(self, now: datetime) -> list[str]:
        return prune_directory(self._directory, now, self._retention_days)


# --- logical export / restore ----------------------------------------------------------


def export_sqlite(db_path: Path, directory: Path) -> Manifest:
    """Every table as NDJSON (`{column: value}` per row, BLOBs as {"$bytes": base64}), read
    in ONE read transaction, so the export is a consistent snapshot."""
    if not db_path.is_file():
        raise DependencyUnavailable(f"sqlite database {db_path} does not exist")
    collections: dict[str, list[dict[str, Any]]] = {}
    with _connect(db_path) as conn:
        conn.execute("BEGIN")  # deferred: the first SELECT pins one snapshot for all tables
        try:
            tables = _tables(conn)
            schema = [{"type": "table", "name": n, "sql": sql} for n, sql in tables] + [
                {"type": "index", "name": n, "sql": sql} for n, _, sql in _indexes(conn)
            ]
            (user_version,) = conn.execute("PRAGMA user_version").fetchone()
            for name, _ in tables:
                cursor = conn.execute(f"SELECT * FROM {_quote(name)}")  # noqa: S608
                columns = [d[0] for d in cursor.description]
                collections[name] = [
                    {c: _encode(v) for c, v in zip(columns, row, strict=True)} for row in cursor
                ]
        finally:
            conn.execute("COMMIT")
    return write_backup(
        directory,
        BACKEND,
        collections,
        meta={"user_version": int(user_version), "schema": schema},
    )


def sqlite_row_counts(db_path: Path) -> dict[str, int]:
    with _connect(db_path) as conn:
        return {
            name: int(conn.execute(f"SELECT COUNT(*) FROM {_quote(name)}").fetchone()[0])  # noqa: S608
            for name, _ in _tables(conn)
        }


def restore_sqlite(db_path: Path, directory: Path, *, force: bool = False) -> Manifest:
    """Restore a logical backup into `db_path`, in ONE transaction (all or nothing).

    Refuses (StoreNotEmpty) when any table holds a row, unless `force`, which first deletes
    every row of every table. Tables missing in the target are created from the backup's
    schema; a backup from a newer schema (`user_version`) than the target is refused.
    Foreign keys are off while rows go in (any order) and checked before the commit.
    """
    manifest = verify_backup(directory)
    if manifest.backend != BACKEND:
        raise BackupInvalid(f"{directory} is a {manifest.backend} backup, not {BACKEND}")
    source_version = int(manifest.meta.get("user_version", 0))
    schema: list[dict[str, str]] = list(manifest.meta.get("schema", []))
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with _connect(db_path) as conn:
        conn.execute("PRAGMA foreign_keys = OFF")  # only effective outside a transaction
        conn.execute("BEGIN IMMEDIATE")
        try:
            existing = {name for name, _ in _tables(conn)}
            (target_version,) = conn.execute("PRAGMA user_version").fetchone()
            if existing and target_version < source_version:
                raise BackupInvalid(
                    f"backup schema version {source_version} is newer than the database's "
                    f"{target_version}: restore with the release that made the backup"
                )
            occupied = [
                name
                for name in sorted(existing)
                if conn.execute(f"SELECT 1 FROM {_quote(name)} LIMIT 1").fetchone()  # noqa: S608
            ]
            if occupied and not force:
                raise StoreNotEmpty(
                    f"{db_path} is not empty (rows in {', '.join(occupied)}); "
                    "restore into an empty store, or pass --force to replace its contents"
                )
            for name in occupied:
                conn.execute(f"DELETE FROM {_quote(name)}")  # noqa: S608
            _create_missing(conn, schema)
            if not existing and source_version:
                conn.execute(f"PRAGMA user_version = {source_version}")
            for entry in manifest.files:
                _insert_rows(conn, entry.collection, read_records(directory, entry))
            violations = conn.execute("PRAGMA foreign_key_check").fetchall()
            if violations:
                raise BackupInvalid(
                    f"restore would break {len(violations)} foreign keys, e.g. {violations[0]}"
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.execute("PRAGMA foreign_keys = ON")
    log.info("restored %s into %s: %s", directory, db_path, manifest.counts)
    return manifest


def _create_missing(conn: sqlite3.Connection, schema: list[dict[str, str]]) -> None:
    """Create the backup's tables and indexes that the target lacks (by name)."""
    present = {
        str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE sql IS NOT NULL")
    }
    for kind in ("table", "index"):
        for item in schema:
            if item["type"] == kind and item["name"] not in present:
                conn.execute(item["sql"])
                present.add(item["name"])


def _insert_rows(conn: sqlite3.Connection, table: str, rows: Iterator[dict[str, Any]]) -> None:
    batch: list[tuple[Any, ...]] = []
    columns: list[str] | None = None
    sql = ""
    for row in rows:
        if columns is None or list(row) != columns:
            if batch:
                conn.executemany(sql, batch)
                batch = []
            columns = list(row)
            sql = (
                f"INSERT INTO {_quote(table)} ({', '.join(_quote(c) for c in columns)}) "  # noqa: S608
                f"VALUES ({', '.join('?' for _ in columns)})"
            )
        batch.append(tuple(_decode(row[c]) for c in columns))
    if batch:
        conn.executemany(sql, batch)
