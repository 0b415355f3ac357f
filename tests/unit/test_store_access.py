"""StoreAccess: the calls of one request made at once (Firestore) or one after another
(SQLite), every call run to its end and the first failure raised."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ion.ports import StoreAccess
from ion.services.store_access import ConcurrentAccess, SerialAccess


def test_concurrent_calls_really_run_at_the_same_time() -> None:
    access = ConcurrentAccess(max_workers=4)
    # Each call waits for the two others: one after another, the barrier would time out.
    barrier = threading.Barrier(3, timeout=10)

    def call(value: int) -> int:
        barrier.wait()
        return value

    assert access.at_once(lambda: call(1), lambda: call(2), lambda: call(3)) == [1, 2, 3]
    access.shutdown()


@pytest.mark.parametrize("access", [SerialAccess(), ConcurrentAccess(max_workers=2)])
def test_every_call_runs_then_the_first_failure_is_raised(access: StoreAccess) -> None:
    ran: list[str] = []

    def fails(name: str) -> None:
        ran.append(name)
        raise ValueError(name)

    with pytest.raises(ValueError, match="first"):
        access.at_once(lambda: fails("first"), lambda: ran.append("ok"), lambda: fails("second"))
    assert sorted(ran) == ["first", "ok", "second"]


def test_serial_calls_run_in_order_on_the_calling_thread() -> None:
    threads: list[threading.Thread] = []

    def which(value: int) -> int:
        threads.append(threading.current_thread())
        return value

    values = SerialAccess().at_once(lambda: which(1), lambda: which(2))
    assert values == [1, 2] and threads == [threading.current_thread()] * 2


def test_nested_calls_from_the_pool_run_where_they_are() -> None:
    # A pool thread never waits for queued work (no deadlock when the pool is busy).
    access = ConcurrentAccess(max_workers=1)

    def inner() -> list[Any]:
        return access.at_once(lambda: "a", lambda: threading.current_thread().name)

    outer = access.at_once(lambda: "caller", inner)
    assert outer[0] == "caller" and outer[1][0] == "a"
    assert outer[1][1].startswith("ion-store-io")
    access.shutdown()


def test_serial_together_is_the_backends() -> None:
    entered: list[str] = []

    @contextmanager
    def one_transaction() -> Iterator[None]:
        entered.append("begin")
        yield
        entered.append("commit")

    with SerialAccess(one_transaction).together():
        entered.append("write")
    assert entered == ["begin", "write", "commit"]
    with ConcurrentAccess().together():
        pass  # each write is its own commit


REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="none")


def test_calls_on_the_pool_see_the_callers_context() -> None:
    # Flask's request context is a context variable: log lines made on the pool carry the
    # request's id as the caller's do.
    access = ConcurrentAccess(max_workers=2)
    token = REQUEST.set("req-1")
    try:
        seen = access.at_once(REQUEST.get, REQUEST.get, REQUEST.get)
    finally:
        REQUEST.reset(token)
    assert seen == ["req-1"] * 3
    access.shutdown()
