"""The two ways a backend's stores are used by one request (`StoreAccess`); the backend
picks one (`ion.adapters.*.backend`).

- `SerialAccess` (SQLite): calls run one after another on the calling thread (they are
  local, and a thread's writes can then share its transaction: `together`).
- `ConcurrentAccess` (Firestore): independent calls run at the same time on a thread pool
  created once per instance, so a request waits for one round trip instead of several.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from ion.ports import StoreAccess

_THREAD_PREFIX = "ion-store-io"

Outcome = tuple[bool, Any]


def _outcome(call: Callable[[], Any]) -> Outcome:
    try:
        return True, call()
    except Exception as exc:
        return False, exc


def _results(outcomes: list[Outcome]) -> list[Any]:
    for ok, value in outcomes:
        if not ok:
            raise value
    return [value for _, value in outcomes]


def each(access: StoreAccess, calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """`access.at_once(*calls)` when there is something to overlap; a single call is just
    made, on this thread."""
    if len(calls) == 1:
        return [calls[0]()]
    return access.at_once(*calls) if calls else []


def _no_batching() -> AbstractContextManager[None]:
    return nullcontext()


class SerialAccess:
    """Calls one after another on this thread; `together` is the backend's (e.g. one SQLite
    transaction for the thread's writes)."""

    def __init__(self, together: Callable[[], AbstractContextManager[None]] = _no_batching) -> None:
        self._together = together

    def together(self) -> AbstractContextManager[None]:
        return self._together()

    def at_once(self, *calls: Callable[[], Any]) -> list[Any]:
        return _results([_outcome(call) for call in calls])


class ConcurrentAccess:
    """Independent calls at the same time: the first on the calling thread, the others on a
    pool made once per process (a forked child makes its own)."""

    def __init__(self, max_workers: int = 16) -> None:
        self._max_workers = max_workers
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0

    def together(self) -> AbstractContextManager[None]:
        return nullcontext()  # each write is its own commit; they are made at once instead

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = ThreadPoolExecutor(
                    max_workers=self._max_workers, thread_name_prefix=_THREAD_PREFIX
                )
                self._pid = os.getpid()
            return self._pool

    def at_once(self, *calls: Callable[[], Any]) -> list[Any]:
        # Called from a pool thread (nested): one after another, so a pool whose threads all
        # wait for queued work can never deadlock.
        if len(calls) < 2 or threading.current_thread().name.startswith(_THREAD_PREFIX):
            return _results([_outcome(call) for call in calls])
        pool = self._executor()
        # Each call sees the caller's context variables (request id in the logs).
        futures: list[Future[Outcome]] = [
            pool.submit(contextvars.copy_context().run, _outcome, call) for call in calls[1:]
        ]
        outcomes = [_outcome(calls[0])]
        for call, future in zip(calls[1:], futures, strict=True):
            # Still queued behind other requests' calls: made here instead of waiting.
            outcomes.append(_outcome(call) if future.cancel() else future.result())
        return _results(outcomes)

    def shutdown(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
