"""Counting what one request costs the stores: SQLite write transactions and Firestore RPCs
with their sequential rounds (the counts that tests/e2e/test_chat_costs.py asserts).

- `SqliteWrites` traces every statement on every connection the app opens (installed by
  wrapping `ion.adapters.sqlite.database.connect` before the app is built). A write
  transaction is a `BEGIN IMMEDIATE`; a write statement outside one is recorded as a
  stray write, which the tests refuse (each would be a transaction of its own).
- `FirestoreRpcs` wraps every RPC method of a Firestore client's GAPIC stub. Each RPC is
  recorded with the logical phase it was issued in, never with wall-clock overlap, so the
  number of sequential rounds cannot flake: an RPC issued by the request's own thread is a
  round of its own; the calls one `StoreAccess.at_once` starts together (`watch`) are the
  branches of one group, whose RPCs form one round, as long as its longest branch (a
  branch that makes two RPCs one after the other counts two). That they really run at the
  same time is tests/unit/test_store_access.py's to show.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

_WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")

# Every unary and streaming RPC of google.cloud.firestore_v1's FirestoreClient.
FIRESTORE_RPCS = (
    "get_document",
    "list_documents",
    "update_document",
    "delete_document",
    "batch_get_documents",
    "begin_transaction",
    "commit",
    "rollback",
    "run_query",
    "run_aggregation_query",
    "partition_query",
    "write",
    "listen",
    "list_collection_ids",
    "batch_write",
    "create_document",
)


class SqliteWrites:
    """Write transactions (and stray writes) on every traced connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.transactions = 0
        self.stray_writes: list[str] = []
        self.statements: list[str] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Trace every connection opened from now on (call before building the app)."""
        import ion.adapters.sqlite.database as database

        original: Callable[..., sqlite3.Connection] = database.connect

        def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn = original(*args, **kwargs)
            self._trace(conn)
            return conn

        monkeypatch.setattr(database, "connect", traced)

    def _trace(self, conn: sqlite3.Connection) -> None:
        state = {"in_write": False}

        def on_statement(sql: str) -> None:
            verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
            with self._lock:
                self.statements.append(sql)
                if sql.strip().upper().startswith("BEGIN IMMEDIATE"):
                    state["in_write"] = True
                    self.transactions += 1
                elif verb in ("COMMIT", "ROLLBACK", "END"):
                    state["in_write"] = False
                elif verb in _WRITE_VERBS and not state["in_write"]:
                    self.stray_writes.append(sql)

        conn.set_trace_callback(on_statement)

    def reset(self) -> None:
        with self._lock:
            self.transactions = 0
            self.stray_writes = []
            self.statements = []


@dataclass
class _Rpc:
    method: str
    # The branches it was made in, outermost first: (group, branch index) for each
    # `at_once` it ran under; () when made by the request's own thread.
    path: tuple[tuple[int, int], ...]


# A sequence of RPCs (method names) and concurrent groups (branch index -> a sequence).
_Sequence = list["str | dict[int, _Sequence]"]


def _tree(calls: list[_Rpc]) -> _Sequence:
    """The calls as a sequence of RPCs and groups, each group where its first RPC was."""
    root: _Sequence = []
    sequences: dict[tuple[tuple[int, int], ...], _Sequence] = {(): root}
    groups: dict[tuple[tuple[tuple[int, int], ...], int], dict[int, _Sequence]] = {}
    for call in calls:
        prefix: tuple[tuple[int, int], ...] = ()
        for group, index in call.path:
            if (prefix, group) not in groups:
                groups[prefix, group] = {}
                sequences[prefix].append(groups[prefix, group])
            branches = groups[prefix, group]
            prefix = (*prefix, (group, index))
            sequences.setdefault(prefix, branches.setdefault(index, []))
        sequences[prefix].append(call.method)
    return root


def _rounds(sequence: _Sequence) -> int:
    return sum(
        1 if isinstance(item, str) else max(_rounds(branch) for branch in item.values())
        for item in sequence
    )


def _render(sequence: _Sequence, letters: dict[str, str], separator: str) -> str:
    return separator.join(
        letters.get(item, item)
        if isinstance(item, str)
        else "[" + " | ".join(_render(item[i], letters, " ") for i in sorted(item)) + "]"
        for item in sequence
    )


@dataclass
class FirestoreRpcs:
    """RPCs of one Firestore client, in the order they were issued, with their phase."""

    calls: list[_Rpc] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _local: threading.local = field(default_factory=threading.local)
    _groups: Iterator[int] = field(default_factory=itertools.count)

    def _path(self) -> tuple[tuple[int, int], ...]:
        path: tuple[tuple[int, int], ...] = getattr(self._local, "path", ())
        return path

    def install(self, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        api = client._firestore_api
        for name in FIRESTORE_RPCS:
            original = getattr(api, name)

            def counted(*args: Any, _name: str = name, _orig: Any = original, **kw: Any) -> Any:
                with self._lock:
                    self.calls.append(_Rpc(_name, self._path()))
                return _orig(*args, **kw)

            monkeypatch.setattr(api, name, counted)

    def watch(self, access: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        """Record the calls one `access.at_once` starts as the branches of one group (in
        the branch that started it, when nested)."""
        original = access.at_once

        def grouped(*calls: Callable[[], Any]) -> list[Any]:
            with self._lock:
                group = next(self._groups)
            parent = self._path()

            def in_branch(index: int, call: Callable[[], Any]) -> Callable[[], Any]:
                def run() -> Any:
                    previous = self._path()
                    self._local.path = (*parent, (group, index))
                    try:
                        return call()
                    finally:
                        self._local.path = previous

                return run

            return list(original(*(in_branch(i, call) for i, call in enumerate(calls))))

        monkeypatch.setattr(access, "at_once", grouped)

    def reset(self) -> None:
        with self._lock:
            self.calls = []

    def plan(self, letters: dict[str, str]) -> str:
        """The RPCs as issued, in `letters`: one after another separated by commas (by
        spaces within a branch), a group as `[a | b]`, its branches in the order they were
        started (empty ones left out). The same for every run: branches of a group run at
        the same time, but each is recorded on its own."""
        with self._lock:
            return _render(_tree(self.calls), letters, ", ")

    @property
    def rounds(self) -> int:
        """Sequential rounds: each RPC made one after another is one; a group counts as
        its longest branch."""
        with self._lock:
            return _rounds(_tree(self.calls))
