"""SQLite backups: consistent snapshots (sqlite3 backup API) and the logical NDJSON format.

Generic over the schema: tables are enumerated from `sqlite_master` (internal `sqlite_*`
tables skipped), so tables added by any module are backed up without code changes here.
"""

from __future__ import annotations

import base64
import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ion.adapters.backup_format import (
    BackupInvalid,
    Manifest,
    StoreNotEmpty,
    private_directory,
    private_file,
    prune_directory,
    read_records,
    unique_name,
    verify_backup,
    write_backup,
)
from ion.adapters.sqlite.database import SqliteDatabase, connect, unavailable
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
    os.close(private_file(partial))  # 0600 before SQLite writes a byte of it
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
        private_directory(self._directory)
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


def export_sqlite(db_path: Path, directory: Path, *, key: bytes) -> Manifest:
    """Every table as NDJSON (`{column: value}` per row, BLOBs as {"$bytes": base64}), read
    in ONE read transaction, so the export is a consistent snapshot; signed with `key`."""
    if not db_path.is_file():
        raise DependencyUnavailable(f"sqlite database {db_path} does not exist")
    collections: dict[str, list[dict[str, Any]]] = {}
    with _connect(db_path) as conn:
        conn.execute("BEGIN")  # deferred: the first SELECT pins one snapshot for all tables
        try:
            tables = _tables(conn)
            (user_version,) = conn.execute("PRAGMA user_version").fetchone()
            for name, _ in tables:
                cursor = conn.execute(f"SELECT * FROM {_quote(name)}")  # noqa: S608
                columns = [d[0] for d in cursor.description]
                collections[name] = [
                    {c: _encode(v) for c, v in zip(columns, row, strict=True)} for row in cursor
                ]
        finally:
            conn.execute("COMMIT")
    # No schema in the manifest: a restore creates the schema this release's code defines,
    # never SQL read from a file.
    return write_backup(
        directory, BACKEND, collections, key=key, meta={"user_version": int(user_version)}
    )


def sqlite_row_counts(db_path: Path) -> dict[str, int]:
    with _connect(db_path) as conn:
        return {
            name: int(conn.execute(f"SELECT COUNT(*) FROM {_quote(name)}").fetchone()[0])  # noqa: S608
            for name, _ in _tables(conn)
        }


def ensure_app_schema(db_path: Path) -> None:
    """Create (or migrate) the schema that this release's SQLite stores define."""
    database = SqliteDatabase(db_path)
    try:
        database.connection()  # migrates every table of the file to this release's version
    finally:
        database.close()


def restore_sqlite(db_path: Path, directory: Path, *, key: bytes, force: bool = False) -> Manifest:
    """Restore a logical backup into `db_path`, in ONE transaction (all or nothing).

    The manifest's signature is checked with `key` first. The schema is the one this
    release's code defines (created or migrated here), never SQL from the backup: a backup
    table or column that the schema lacks is refused, as is a backup from a newer schema
    version (`user_version`). Refuses (StoreNotEmpty) when any table holds a row, unless
    `force`, which first deletes every row of every table. Foreign keys are off while rows
    go in (any order) and checked before the commit.
    """
    manifest = verify_backup(directory, key=key)
    if manifest.backend != BACKEND:
        raise BackupInvalid(f"{directory} is a {manifest.backend} backup, not {BACKEND}")
    source_version = manifest.meta.get("user_version", 0)
    if not isinstance(source_version, int):
        raise BackupInvalid(f"{directory}: user_version {source_version!r} is not a number")
    private_directory(db_path.parent)
    ensure_app_schema(db_path)
    with _connect(db_path) as conn:
        conn.execute("PRAGMA foreign_keys = OFF")  # only effective outside a transaction
        conn.execute("BEGIN IMMEDIATE")
        try:
            existing = {name for name, _ in _tables(conn)}
            (target_version,) = conn.execute("PRAGMA user_version").fetchone()
            if target_version < source_version:
                raise BackupInvalid(
                    f"backup schema version {source_version} is newer than the database's "
                    f"{target_version}: restore with the release that made the backup"
                )
            for entry in manifest.files:
                _check_fits(existing, entry.collection, directory)
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
            for entry in manifest.files:
                columns = _columns(conn, entry.collection)
                _insert_rows(conn, entry.collection, read_records(directory, entry), columns)
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


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {str(r[1]) for r in conn.execute(f"PRAGMA table_info({_quote(table)})").fetchall()}


def _check_fits(existing: set[str], table: str, directory: Path) -> None:
    if table not in existing:
        raise BackupInvalid(
            f"{directory}: table {table!r} is not part of this release's schema; "
            "restore with the release that made the backup"
        )


def _insert_rows(
    conn: sqlite3.Connection, table: str, rows: Iterator[dict[str, Any]], known: set[str]
) -> None:
    batch: list[tuple[Any, ...]] = []
    columns: list[str] | None = None
    sql = ""
    for row in rows:
        if columns is None or list(row) != columns:
            unknown = sorted(set(row) - known)
            if unknown:
                raise BackupInvalid(
                    f"table {table!r} has no column {unknown[0]!r} in this release's schema"
                )
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
