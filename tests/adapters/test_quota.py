"""Quota stores under contention: exact admission and token reservations with several processes
and threads on one SQLite file and on the Firestore emulator, and an unreachable Firestore."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ion.adapters.sqlite.quota import SqliteQuotaStore
from ion.domain.models import Usage
from ion.errors import BudgetExhausted, RateLimited
from ion.ports import QuotaStore
from ion.services.quota import QuotaGuard, QuotaLimits
from tests.fakes.clock import ManualClock

NOON = datetime(2026, 3, 4, 12, 0, 15, tzinfo=UTC)


# ---- exact admission across processes -------------------------------------------------


def _hammer(
    backend: str, where: str, limit: int, threads: int, attempts: int, start: Any, out: Any
) -> None:
    """One process: `threads` threads each try `attempts` requests for one user."""
    store: QuotaStore
    if backend == "sqlite":
        store = SqliteQuotaStore(where)
    else:
        from google.cloud import firestore

        from ion.adapters.firestore.quota import FirestoreQuotaStore

        store = FirestoreQuotaStore(firestore.Client(project=where, database="(default)"))
    guard = QuotaGuard(store, ManualClock(NOON), QuotaLimits(chat_per_minute=limit))
    barrier = threading.Barrier(threads)

    def one_thread() -> int:
        barrier.wait()
        admitted = 0
        for _ in range(attempts):
            try:
                guard.admit("hammered-user", "chat")
                admitted += 1
            except RateLimited:
                pass
        return admitted

    start.wait()
    with ThreadPoolExecutor(threads) as pool:
        out.put(sum(pool.map(lambda _: one_thread(), range(threads))))


def _run_processes(
    backend: str, where: str, *, processes: int, threads: int, attempts: int, limit: int
) -> int:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    out = ctx.Queue()
    workers = [
        ctx.Process(target=_hammer, args=(backend, where, limit, threads, attempts, start, out))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    start.set()
    admitted = [out.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    return sum(admitted)


def test_processes_and_threads_on_one_sqlite_file_admit_exactly_the_limit(
    tmp_path: Path,
) -> None:
    # 3 processes × 6 threads × 10 attempts = 180 requests for one user in one minute.
    admitted = _run_processes(
        "sqlite", str(tmp_path / "ion.sqlite3"), processes=3, threads=6, attempts=10, limit=25
    )
    assert admitted == 25


@pytest.mark.emulator
def test_processes_on_the_firestore_emulator_admit_exactly_the_limit(
    firestore_client: Any, firestore_reset: None
) -> None:
    from tests.conftest import FIRESTORE_TEST_PROJECT

    # 2 processes × 3 threads × 5 attempts = 30 requests, limit 7.
    admitted = _run_processes(
        "firestore", FIRESTORE_TEST_PROJECT, processes=2, threads=3, attempts=5, limit=7
    )
    assert admitted == 7


# ---- token reservations across processes -----------------------------------------------


def _reserve_hammer(
    backend: str,
    where: str,
    budget: int,
    estimate: int,
    spent: int,
    threads: int,
    decided: Any,
    out: Any,
) -> None:
    """One process: `threads` requests each reserve `estimate`, wait until every request of
    every process is admitted or refused, then settle to `spent` tokens."""
    store: QuotaStore
    if backend == "sqlite":
        store = SqliteQuotaStore(where)
    else:
        from google.cloud import firestore

        from ion.adapters.firestore.quota import FirestoreQuotaStore

        store = FirestoreQuotaStore(firestore.Client(project=where, database="(default)"))
    guard = QuotaGuard(store, ManualClock(NOON), QuotaLimits(daily_tokens=budget))

    def one_request(_: int) -> int:
        try:
            reservation = guard.reserve("budget-user", estimate)
        except BudgetExhausted:
            decided.wait()
            return 0
        decided.wait()  # nobody settles before every request is decided
        guard.settle(reservation, Usage(input_tokens=spent // 2, output_tokens=spent - spent // 2))
        return 1

    with ThreadPoolExecutor(threads) as pool:
        out.put(sum(pool.map(one_request, range(threads))))


def _run_reservations(
    backend: str,
    where: str,
    *,
    processes: int,
    threads: int,
    budget: int,
    estimate: int,
    spent: int,
) -> int:
    ctx = multiprocessing.get_context("spawn")
    decided = ctx.Barrier(processes * threads)
    out = ctx.Queue()
    workers = [
        ctx.Process(
            target=_reserve_hammer,
            args=(backend, where, budget, estimate, spent, threads, decided, out),
        )
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    admitted = [out.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    return sum(admitted)


@pytest.mark.parametrize(
    ("spent", "final"),
    [
        (250, 750),  # typical answers: 3 admitted, well under the budget
        (1300, 3900),  # every answer as large as its reservation: the worst case, B + 900
    ],
)
def test_two_processes_40_requests_reserve_exactly_the_budget_on_sqlite(
    tmp_path: Path, spent: int, final: int
) -> None:
    """Budget 3,000, reservation 1,300 a request, 2 processes × 20 concurrent requests:
    the requests that find 0, 1,300 and 2,600 reserved are admitted (3), all others are
    refused; the overshoot is below one request's reservation however many run at once."""
    where = str(tmp_path / "ion.sqlite3")
    admitted = _run_reservations(
        "sqlite", where, processes=2, threads=20, budget=3000, estimate=1300, spent=spent
    )
    assert admitted == 3
    guard = QuotaGuard(SqliteQuotaStore(where), ManualClock(NOON), QuotaLimits(daily_tokens=3000))
    assert guard.tokens_used("budget-user") == final


@pytest.mark.emulator
def test_two_processes_reserve_exactly_the_budget_on_the_firestore_emulator(
    firestore_client: Any, firestore_reset: None
) -> None:
    from ion.adapters.firestore.quota import FirestoreQuotaStore
    from tests.conftest import FIRESTORE_TEST_PROJECT

    # 2 processes × 5 requests (the emulator serialises writes per document).
    admitted = _run_reservations(
        "firestore",
        FIRESTORE_TEST_PROJECT,
        processes=2,
        threads=5,
        budget=3000,
        estimate=1300,
        spent=1300,
    )
    assert admitted == 3
    guard = QuotaGuard(
        FirestoreQuotaStore(firestore_client), ManualClock(NOON), QuotaLimits(daily_tokens=3000)
    )
    assert guard.tokens_used("budget-user") == 3900


@pytest.mark.emulator
@pytest.mark.timeout(60)
def test_unreachable_firestore_is_dependency_unavailable(
    firestore_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retries that give up (RetryError) must become 503 dependency_unavailable, not a 500."""
    from google.cloud import firestore

    from ion.adapters.firestore.quota import FirestoreQuotaStore
    from ion.errors import DependencyUnavailable
    from tests.support.emulators import free_port

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    store = FirestoreQuotaStore(firestore.Client(project="ion-test"), timeout_s=0.5)
    expires = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(DependencyUnavailable):
        store.increment("user:minute", 1, expires_at=expires)
    with pytest.raises(DependencyUnavailable):
        store.counter("user:minute")
