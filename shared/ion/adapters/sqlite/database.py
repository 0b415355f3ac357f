"""One SQLite database file, shared by the embedded stores (`SqliteStore`,
`SqliteLearningAndBackupStore`, `SqliteQuotaStore`): connections, pragmas, schemas, transactions.

Safe for a multi-threaded server and for several processes on the same file:

- one connection per thread, reopened in a child process after a fork (gunicorn --preload);
- a busy timeout, so writers queue for the write lock instead of failing;
- WAL journal (readers never block the writer). Switching a file to WAL needs an exclusive
  lock, and SQLite reports SQLITE_BUSY for it at once, WITHOUT its busy handler, when another
  connection holds a lock (the switch upgrades a read into a write). So the switch is made
  once per database object, under a process-wide lock, and retried for up to the busy
  timeout while another process holds the file; later connections find WAL in the header;
- every write in a `BEGIN IMMEDIATE` transaction: the write lock is taken up front, waiting
  through the busy handler. A deferred transaction that reads and then writes would instead
  fail at once with SQLITE_BUSY(_SNAPSHOT) when another connection wrote meanwhile;
- `together()`: the writes of one step of a request (e.g. a chat turn's store write, its
  token settlement and its events) share one transaction, each a savepoint of it;
- the schema (every store's tables, `migrations.py`) is migrated to this release's version
  once per database object, in one `BEGIN IMMEDIATE` transaction, before first use.

`sqlite3.OperationalError` (locked past the busy timeout, disk I/O error, ...) surfaces as
`DependencyUnavailable`; constraint errors (`IntegrityError`) pass through to the store.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from time import monotonic, sleep
from types import TracebackType
from typing import Any

from ion.adapters.sqlite.migrations import migrate
from ion.adapters.store_rules import to_utc
from ion.errors import DependencyUnavailable

log = logging.getLogger(__name__)

# Serialises journal-mode switches within the process (rare: once per database object).
_WAL_LOCK = threading.Lock()


def to_timestamp(value: datetime) -> str:
    """The one timestamp format of every table: fixed-width UTC ISO text, which sorts
    lexicographically in time order and stays readable."""
    return to_utc(value).isoformat(timespec="microseconds")


def from_timestamp(value: str) -> datetime:
    return to_utc(datetime.fromisoformat(value))


def _reset_wal_lock() -> None:
    # A lock held by another thread at fork time would stay locked forever in the child.
    global _WAL_LOCK
    _WAL_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_reset_wal_lock)


def connect(
    path: Path, busy_timeout_ms: int, *, check_same_thread: bool = True
) -> sqlite3.Connection:
    """A connection in autocommit mode (callers issue BEGIN/COMMIT) with a busy timeout.

    Raises `sqlite3.Error` / `OSError`; callers map them."""
    return sqlite3.connect(
        path,
        timeout=busy_timeout_ms / 1000,
        isolation_level=None,
        check_same_thread=check_same_thread,
    )


class unavailable:  # lower case: used like the function it was, `with unavailable(...)`
    """`sqlite3.OperationalError` → `DependencyUnavailable`: not the caller's bug.

    A class, not a generator: it wraps every statement a request makes."""

    __slots__ = ("_what",)

    def __init__(self, what: str) -> None:
        self._what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, sqlite3.OperationalError):
            raise DependencyUnavailable(f"{self._what} unavailable: {exc}") from exc


_ERRORS = unavailable("sqlite database")


def _is_busy(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY


def _is_transient_at_open(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_IOERR,
    }


class SqliteDatabase:
    """Connections to one SQLite file: one per thread, with the pragmas, schema and
    transactions described in the module docstring."""

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 10_000) -> None:
        self._path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._wal_ready = False
        self._migrated = False

    @property
    def path(self) -> Path:
        return self._path

    # --- connections -----------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, on a schema migrated to this release's version."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        # A connection must never cross a fork: reopen in the child.
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = self._open()
            self._local.conn = conn
            self._local.pid = os.getpid()
        if not self._migrated:
            self._migrate(conn)
        return conn

    def _open(self) -> sqlite3.Connection:
        try:
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Learners' conversations: owner-only from the first byte (SQLite gives the
            # -wal/-shm files the same mode as the database file).
            if not self._path.exists():
                os.close(os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600))
            # check_same_thread=False only so close() can run from another thread; each
            # connection serves one thread.
            conn = connect(self._path, self._busy_timeout_ms, check_same_thread=False)
        except (sqlite3.Error, OSError) as exc:
            raise DependencyUnavailable(f"sqlite database {self._path} unavailable: {exc}") from exc
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            # Deleted rows are overwritten with zeros, not left readable in free pages:
            # erasing a conversation must erase its text from the file too.
            conn.execute("PRAGMA secure_delete = ON")
            # NORMAL is durable across application crashes in WAL mode (not power loss).
            conn.execute("PRAGMA synchronous = NORMAL")
            self._enable_wal(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise DependencyUnavailable(f"sqlite database {self._path} unavailable: {exc}") from exc
        with self._lock:
            self._connections.append(conn)
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        if self._wal_ready:
            return  # the file is in WAL mode: every new connection reads it from the header
        with _WAL_LOCK:
            if self._wal_ready:
                return
            deadline = monotonic() + self._busy_timeout_ms / 1000
            delay = 0.001
            while True:
                try:
                    # Reading the mode first: once any process switched the file, nobody
                    # needs the exclusive lock again.
                    (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
                    if str(mode).lower() != "wal":
                        conn.execute("PRAGMA journal_mode = WAL").fetchone()
                    break
                except sqlite3.OperationalError as exc:
                    # Another process is switching or using the fresh file: SQLite did not
                    # wait (BUSY), or saw its half-made -wal/-shm files (IOERR). Both pass.
                    if not _is_transient_at_open(exc) or monotonic() >= deadline:
                        raise
                    sleep(delay)
                    delay = min(delay * 2, 0.05)
            self._wal_ready = True

    def _migrate(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if self._migrated:
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    migrate(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise DependencyUnavailable(
                    f"sqlite database {self._path} unavailable: {exc}"
                ) from exc
            self._migrated = True

    def purge_wal(self) -> None:
        """Copy the WAL into the database file and truncate it (after an erasure), so the
        erased rows' old page images do not linger in the -wal file. Best effort: while
        another connection reads an older snapshot the WAL cannot be reset yet; the next
        erasure or SQLite's automatic checkpoints overwrite it later."""
        with self.errors():
            row = self.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if row is not None and row[0]:
            log.warning("sqlite: WAL still in use after an erasure; it is reset later")

    def close(self) -> None:
        """Close every connection opened so far (tests, graceful shutdown); the next use
        opens new ones."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    # --- transactions ----------------------------------------------------------------

    def errors(self) -> unavailable:
        return _ERRORS

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One `BEGIN IMMEDIATE` transaction: committed on exit, rolled back on any error.

        Inside `together()` (or another write of this thread) it is a savepoint of the
        open transaction instead: still all or nothing, committed with the others."""
        with self.errors():
            conn = self.connection()
            if getattr(self._local, "together", False) or conn.in_transaction:
                yield from _savepoint(conn, self._local)
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def together(self) -> Iterator[None]:
        """The writes this thread makes inside share one transaction, begun by the first
        of them and committed at the end, also when an exception ends the block: each
        write stays all or nothing on its own (a failed one undid itself), so what
        succeeded is kept, as it would be with a transaction each. Re-entrant."""
        if getattr(self._local, "together", False):
            yield
            return
        self._local.together = True
        try:
            yield
        finally:
            self._local.together = False
            conn = getattr(self._local, "conn", None)
            if conn is not None and conn.in_transaction:
                with self.errors():
                    try:
                        conn.execute("COMMIT")
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        raise

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row of one statement (autocommit: its own consistent read, never a write)."""
        with self.errors():
            return self.connection().execute(sql, params).fetchall()

    def read_one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self.errors():
            row: tuple[Any, ...] | None = self.connection().execute(sql, params).fetchone()
            return row


def _savepoint(conn: sqlite3.Connection, local: threading.local) -> Iterator[sqlite3.Connection]:
    """A savepoint of the thread's transaction (begun here when `together` has not yet)."""
    if not conn.in_transaction:
        conn.execute("BEGIN IMMEDIATE")
        # The transaction's first write needs no savepoint of its own: undoing it is
        # rolling the transaction back, and the writes after it begin a new one.
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return
    depth = getattr(local, "depth", 0)
    name = f"write_{depth}"
    local.depth = depth + 1
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield conn
        conn.execute(f"RELEASE {name}")
    except BaseException:
        conn.execute(f"ROLLBACK TO {name}")
        conn.execute(f"RELEASE {name}")
        raise
    finally:
        local.depth = depth


def as_database(where: SqliteDatabase | Path | str, busy_timeout_ms: int) -> SqliteDatabase:
    """A store's database: the shared one it was given, or its own on a path."""
    if isinstance(where, SqliteDatabase):
        return where
    return SqliteDatabase(where, busy_timeout_ms=busy_timeout_ms)
