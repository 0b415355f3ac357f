"""Rate limits and token budgets: the QuotaStore contract on SQLite and the Firestore emulator,
exact admission under cross-process contention, and 429s over HTTP that never reach the LLM."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ion.adapters.sqlite.quota import SqliteQuotaStore
from ion.bootstrap import App, build_app, set_app
from ion.domain.events import hash_user_id
from ion.domain.models import LlmChunk, LlmRequest, LlmResponse, Usage
from ion.errors import BudgetExhausted, RateLimited
from ion.ports import QuotaStore
from ion.services.quota import QuotaGuard, QuotaLimits
from tests.fixtures_app import function_client, make_settings
from tests.openapi_check import CheckedClient

NOON = datetime(2026, 3, 4, 12, 0, 15, tzinfo=UTC)
LATER = NOON + timedelta(hours=1)


@dataclass
class FixedClock:
    current: datetime = NOON

    def now(self) -> datetime:
        return self.current


# ---- the QuotaStore contract, on every backend --------------------------------------


@pytest.fixture
def sqlite_quota(tmp_path: Path) -> Iterator[SqliteQuotaStore]:
    store = SqliteQuotaStore(tmp_path / "ion.sqlite3")
    yield store
    store.close()


@pytest.fixture
def firestore_quota(firestore_client: Any, firestore_reset: None) -> QuotaStore:
    from ion.adapters.firestore.quota import FirestoreQuotaStore

    return FirestoreQuotaStore(firestore_client)


@pytest.fixture(params=["sqlite", pytest.param("firestore", marks=pytest.mark.emulator)])
def quota_store(request: pytest.FixtureRequest) -> QuotaStore:
    store: QuotaStore = request.getfixturevalue(f"{request.param}_quota")
    return store


def test_counter_starts_at_zero_and_adds(quota_store: QuotaStore) -> None:
    assert quota_store.counter("tokens:u1:20260304") == 0
    assert quota_store.increment("tokens:u1:20260304", 120, expires_at=LATER) == 120
    assert quota_store.increment("tokens:u1:20260304", 30, expires_at=LATER) == 150
    assert quota_store.counter("tokens:u1:20260304") == 150
    assert quota_store.counter("tokens:u2:20260304") == 0


def test_keys_with_slashes_and_unicode_are_separate_counters(quota_store: QuotaStore) -> None:
    assert quota_store.increment("rate/a/b", 1, expires_at=LATER) == 1
    assert quota_store.increment("rate:ü", 2, expires_at=LATER) == 2
    assert quota_store.counter("rate/a/b") == 1


def test_negative_amounts_give_back(quota_store: QuotaStore) -> None:
    # A token reservation settled below its estimate, or released, is given back this way.
    assert quota_store.increment("k", 1300, expires_at=LATER) == 1300
    assert quota_store.increment("k", -1050, expires_at=LATER) == 250
    assert quota_store.increment("k", -250, expires_at=LATER) == 0
    assert quota_store.counter("k") == 0


def test_concurrent_increments_each_see_a_distinct_value(
    quota_store: QuotaStore, request: pytest.FixtureRequest
) -> None:
    # The emulator serialises writes per document: keep its share modest.
    threads, each = (4, 5) if "firestore" in request.node.name else (8, 25)

    def work(_: int) -> list[int]:
        return [quota_store.increment("hot", 1, expires_at=LATER) for _ in range(each)]

    with ThreadPoolExecutor(threads) as pool:
        seen = [value for values in pool.map(work, range(threads)) for value in values]
    assert sorted(seen) == list(range(1, threads * each + 1))


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
    guard = QuotaGuard(store, FixedClock(), QuotaLimits(chat_per_minute=limit))
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
    guard = QuotaGuard(store, FixedClock(), QuotaLimits(daily_tokens=budget))

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
    guard = QuotaGuard(SqliteQuotaStore(where), FixedClock(), QuotaLimits(daily_tokens=3000))
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
        FirestoreQuotaStore(firestore_client), FixedClock(), QuotaLimits(daily_tokens=3000)
    )
    assert guard.tokens_used("budget-user") == 3900


def test_reservations_settle_and_release(sqlite_quota: SqliteQuotaStore, clock: FixedClock) -> None:
    guard = guard_for(sqlite_quota, clock, daily_tokens=3000)
    first = guard.reserve("u", 1300)
    second = guard.reserve("u", 1300)
    assert guard.tokens_used("u") == 2600
    guard.settle(first, Usage(input_tokens=100, output_tokens=150))
    assert guard.tokens_used("u") == 1550
    guard.release(second)  # the call failed
    assert guard.tokens_used("u") == 250
    assert guard.reserve("u", 0) is None  # a cached answer: checked, nothing reserved
    third = guard.reserve("u", 2900)  # 250 used < 3000: admitted, may overshoot
    assert guard.tokens_used("u") == 3150
    with pytest.raises(BudgetExhausted) as caught:
        guard.reserve("u", 10)
    assert caught.value.retry_after_s == 12 * 3600 - 15
    assert guard.tokens_used("u") == 3150  # the refused reservation was given back
    with pytest.raises(BudgetExhausted):
        guard.reserve("u", 0)
    guard.settle(third, Usage(input_tokens=2000, output_tokens=900))
    assert guard.tokens_used("u") == 3150
    assert guard_for(sqlite_quota, clock, daily_tokens=0).reserve("u", 10**9) is None


# ---- the guard ------------------------------------------------------------------------


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


def guard_for(store: QuotaStore, clock: FixedClock, **limits: int) -> QuotaGuard:
    return QuotaGuard(store, clock, QuotaLimits(**limits))


def test_rate_limit_resets_with_the_next_minute(
    sqlite_quota: SqliteQuotaStore, clock: FixedClock
) -> None:
    guard = guard_for(sqlite_quota, clock, chat_per_minute=2)
    guard.admit("u", "chat")
    guard.admit("u", "chat")
    with pytest.raises(RateLimited) as caught:
        guard.admit("u", "chat")
    assert caught.value.retry_after_s == 45  # 12:00:15 → the window ends at 12:01:00
    guard.admit("other-user", "chat")
    clock.current += timedelta(seconds=45)
    guard.admit("u", "chat")


def test_buckets_and_zero_limits(sqlite_quota: SqliteQuotaStore, clock: FixedClock) -> None:
    guard = guard_for(sqlite_quota, clock, chat_per_minute=1, api_per_minute=0)
    guard.admit("u", "chat")
    for _ in range(50):
        guard.admit("u", "api")  # 0 = no limit
    with pytest.raises(RateLimited):
        guard.admit("u", "chat")


def test_budget_blocks_once_used_up_and_renews_next_day(
    sqlite_quota: SqliteQuotaStore, clock: FixedClock
) -> None:
    guard = guard_for(sqlite_quota, clock, daily_tokens=100)
    guard.check_budget("u")
    guard.record_usage("u", Usage(input_tokens=60, output_tokens=30))
    guard.check_budget("u")
    guard.record_usage("u", Usage(input_tokens=5, output_tokens=5), cached=True)  # free
    guard.record_usage("u", Usage(input_tokens=6, output_tokens=6))  # overshoot: one answer
    assert guard.tokens_used("u") == 102
    with pytest.raises(BudgetExhausted) as caught:
        guard.check_budget("u")
    assert caught.value.retry_after_s == 12 * 3600 - 15
    clock.current += timedelta(hours=12)
    guard.check_budget("u")
    assert guard.tokens_used("u") == 0


def test_counters_are_keyed_by_user_hash_not_user_id(
    sqlite_quota: SqliteQuotaStore, clock: FixedClock
) -> None:
    guard = guard_for(sqlite_quota, clock, daily_tokens=100)
    guard.record_usage("alice@example.com", Usage(input_tokens=1, output_tokens=2))
    assert sqlite_quota.counter(f"tokens:{hash_user_id('alice@example.com')}:20260304") == 3
    conn = sqlite_quota._connection()
    keys = [row[0] for row in conn.execute("SELECT key FROM quota_counters")]
    assert not any("alice" in key for key in keys)


# ---- over HTTP ------------------------------------------------------------------------


class CountingLlm:
    """Wraps the real offline model and counts calls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0
        self.name = inner.name

    def generate(self, request: LlmRequest) -> LlmResponse:
        self.calls += 1
        response: LlmResponse = self.inner.generate(request)
        return response

    def stream(self, request: LlmRequest) -> Iterator[LlmChunk]:
        self.calls += 1
        yield from self.inner.stream(request)

    def readiness(self) -> tuple[bool, str]:
        ready: tuple[bool, str] = self.inner.readiness()
        return ready


@pytest.fixture
def limited(clean_env: Path) -> Iterator[tuple[App, CountingLlm, FixedClock]]:
    application = build_app(make_settings(clean_env / "data", cache_ttl_s=0))
    clock = FixedClock()
    application.quota = QuotaGuard(
        application.quota.store,
        clock,
        QuotaLimits(chat_per_minute=3, api_per_minute=6, daily_tokens=10_000),
    )
    llm = CountingLlm(application.llm)
    application.chat._llm = llm  # type: ignore[assignment]
    set_app(application)
    yield application, llm, clock
    set_app(None)


@pytest.fixture
def limited_api(limited: tuple[App, CountingLlm, FixedClock]) -> CheckedClient:
    return CheckedClient(function_client("chat"))


def _headers(app: App, user: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {app.dev_token(user)}"}


def test_chat_over_the_rate_limit_is_429_without_an_llm_call(
    limited: tuple[App, CountingLlm, FixedClock], limited_api: CheckedClient
) -> None:
    app, llm, _ = limited
    for i in range(3):
        # Concrete questions: a vague first message is answered by a clarifying question,
        # which makes no LLM call.
        message = f"how do python decorators work, take {i}?"
        ok = limited_api.post("/v1/chat", json={"message": message}, headers=_headers(app))
        assert ok.status_code == 200
    refused = limited_api.post("/v1/chat", json={"message": "one more"}, headers=_headers(app))
    assert (refused.status_code, refused.get_json()["error"]["code"]) == (429, "rate_limited")
    assert refused.headers["Retry-After"] == "45"
    assert llm.calls == 3


def test_rate_limits_are_per_user(
    limited: tuple[App, CountingLlm, FixedClock], limited_api: CheckedClient
) -> None:
    app, _, _ = limited
    for i in range(3):
        limited_api.post("/v1/chat", json={"message": f"q {i}"}, headers=_headers(app))
    bob = limited_api.post("/v1/chat", json={"message": "hello"}, headers=_headers(app, "bob"))
    assert bob.status_code == 200


def test_streaming_chat_counts_too(
    limited: tuple[App, CountingLlm, FixedClock], limited_api: CheckedClient
) -> None:
    app, llm, _ = limited
    for i in range(3):
        limited_api.post(
            "/v1/chat", json={"message": f"stream {i}", "stream": True}, headers=_headers(app)
        ).get_data()
    refused = limited_api.post(
        "/v1/chat", json={"message": "again", "stream": True}, headers=_headers(app)
    )
    assert refused.status_code == 429
    assert llm.calls == 3


def test_other_endpoints_share_the_api_limit(
    limited: tuple[App, CountingLlm, FixedClock], limited_api: CheckedClient
) -> None:
    app, _, _ = limited
    statuses = [
        limited_api.get("/v1/conversations", headers=_headers(app)).status_code for _ in range(7)
    ]
    assert statuses == [200] * 6 + [429]


def test_budget_exhausted_is_429_and_spends_nothing(
    limited: tuple[App, CountingLlm, FixedClock], limited_api: CheckedClient
) -> None:
    app, llm, clock = limited
    app.quota = QuotaGuard(
        app.quota.store,
        clock,
        QuotaLimits(chat_per_minute=100, api_per_minute=100, daily_tokens=50),
    )
    first = limited_api.post(
        "/v1/chat", json={"message": "explain recursion"}, headers=_headers(app)
    )
    assert first.status_code == 200
    usage = first.get_json()["usage"]
    spent = usage["input_tokens"] + usage["output_tokens"]
    assert spent > 50  # one answer may overshoot the budget (documented)
    assert app.quota.tokens_used("alice") == spent
    refused = limited_api.post("/v1/chat", json={"message": "and loops?"}, headers=_headers(app))
    assert (refused.status_code, refused.get_json()["error"]["code"]) == (429, "budget_exhausted")
    assert refused.headers["Retry-After"] == str(12 * 3600 - 15)
    assert llm.calls == 1
    assert app.quota.tokens_used("alice") == spent


@pytest.mark.emulator
@pytest.mark.timeout(60)
def test_unreachable_firestore_is_dependency_unavailable(
    firestore_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retries that give up (RetryError) must become 503 dependency_unavailable, not a 500."""
    from google.cloud import firestore

    from ion.adapters.firestore.quota import FirestoreQuotaStore
    from ion.errors import DependencyUnavailable
    from tests.emulators import free_port

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    store = FirestoreQuotaStore(firestore.Client(project="ion-test"), timeout_s=0.5)
    expires = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(DependencyUnavailable):
        store.increment("user:minute", 1, expires_at=expires)
    with pytest.raises(DependencyUnavailable):
        store.counter("user:minute")
