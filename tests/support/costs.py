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
from contextlib import contextmanager
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
    # (group, branch) for calls started together; None: made by the request's own thread.
    branch: tuple[int, int] | None


@dataclass
class FirestoreRpcs:
    """RPCs of one Firestore client, in the order they were issued, with their phase."""

    calls: list[_Rpc] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _local: threading.local = field(default_factory=threading.local)
    _groups: Iterator[int] = field(default_factory=itertools.count)

    def install(self, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        api = client._firestore_api
        for name in FIRESTORE_RPCS:
            original = getattr(api, name)

            def counted(*args: Any, _name: str = name, _orig: Any = original, **kw: Any) -> Any:
                with self._lock:
                    self.calls.append(_Rpc(_name, getattr(self._local, "branch", None)))
                return _orig(*args, **kw)

            monkeypatch.setattr(api, name, counted)

    def watch(self, access: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        """Record the calls one `access.at_once` starts as the branches of one group."""
        original = access.at_once

        def grouped(*calls: Callable[[], Any]) -> list[Any]:
            with self._lock:
                group = next(self._groups)

            def in_branch(index: int, call: Callable[[], Any]) -> Callable[[], Any]:
                def run() -> Any:
                    with self.branch(group, index):
                        return call()

                return run

            return list(original(*(in_branch(i, call) for i, call in enumerate(calls))))

        monkeypatch.setattr(access, "at_once", grouped)

    @contextmanager
    def branch(self, group: int, index: int) -> Iterator[None]:
        """RPCs made inside belong to branch `index` of the concurrent group `group`."""
        previous = getattr(self._local, "branch", None)
        self._local.branch = (group, index)
        try:
            yield
        finally:
            self._local.branch = previous

    def reset(self) -> None:
        with self._lock:
            self.calls = []

    def plan(self, letters: dict[str, str]) -> str:
        """The RPCs as issued, in `letters`: a direct one alone, a group as `[a | b]`, its
        branches in the order they were started (empty ones left out), each in order. The
        same for every run: branches of a group run at the same time, but each is recorded
        on its own."""
        items: list[str | dict[int, list[str]]] = []
        groups: dict[int, dict[int, list[str]]] = {}
        for call in self.calls:
            letter = letters.get(call.method, call.method)
            if call.branch is None:
                items.append(letter)
                continue
            group, index = call.branch
            if group not in groups:
                groups[group] = {}
                items.append(groups[group])
            groups[group].setdefault(index, []).append(letter)
        return ", ".join(
            item
            if isinstance(item, str)
            else "[" + " | ".join(" ".join(item[i]) for i in sorted(item)) + "]"
            for item in items
        )

    @property
    def rounds(self) -> int:
        """Sequential rounds: each direct RPC is one; a concurrent group counts its longest
        branch (RPCs within one branch run one after the other)."""
        total = 0
        group_branches: dict[int, dict[int, int]] = {}
        for call in self.calls:
            if call.branch is None:
                total += 1
                continue
            group, index = call.branch
            branches = group_branches.setdefault(group, {})
            branches[index] = branches.get(index, 0) + 1
        return total + sum(max(branches.values()) for branches in group_branches.values())
