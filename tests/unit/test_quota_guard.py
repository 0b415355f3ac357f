"""QuotaGuard: per-minute rate limits and daily token budgets, keyed by user hash (over the
SQLite quota store in the test's tmp dir)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ion.adapters.sqlite.quota import SqliteQuotaStore
from ion.domain.events import hash_user_id
from ion.domain.models import Usage
from ion.errors import BudgetExhausted, RateLimited
from ion.ports import QuotaStore
from ion.services.quota import QuotaGuard, QuotaLimits
from tests.fakes.clock import ManualClock

NOON = datetime(2026, 3, 4, 12, 0, 15, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOON)


def guard_for(store: QuotaStore, clock: ManualClock, **limits: int) -> QuotaGuard:
    return QuotaGuard(store, clock, QuotaLimits(**limits))


def test_rate_limit_resets_with_the_next_minute(
    sqlite_quota: SqliteQuotaStore, clock: ManualClock
) -> None:
    guard = guard_for(sqlite_quota, clock, chat_per_minute=2)
    guard.admit("u", "chat")
    guard.admit("u", "chat")
    with pytest.raises(RateLimited) as caught:
        guard.admit("u", "chat")
    assert caught.value.retry_after_s == 45  # 12:00:15 → the window ends at 12:01:00
    guard.admit("other-user", "chat")
    clock.advance(45)
    guard.admit("u", "chat")


def test_buckets_and_zero_limits(sqlite_quota: SqliteQuotaStore, clock: ManualClock) -> None:
    guard = guard_for(sqlite_quota, clock, chat_per_minute=1, api_per_minute=0)
    guard.admit("u", "chat")
    for _ in range(50):
        guard.admit("u", "api")  # 0 = no limit
    with pytest.raises(RateLimited):
        guard.admit("u", "chat")


def test_budget_blocks_once_used_up_and_renews_next_day(
    sqlite_quota: SqliteQuotaStore, clock: ManualClock
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
    clock.advance(timedelta(hours=12))
    guard.check_budget("u")
    assert guard.tokens_used("u") == 0


def test_counters_are_keyed_by_user_hash_not_user_id(
    sqlite_quota: SqliteQuotaStore, clock: ManualClock
) -> None:
    guard = guard_for(sqlite_quota, clock, daily_tokens=100)
    guard.record_usage("alice@example.com", Usage(input_tokens=1, output_tokens=2))
    assert sqlite_quota.counter(f"tokens:{hash_user_id('alice@example.com')}:20260304") == 3
    conn = sqlite_quota._connection()
    keys = [row[0] for row in conn.execute("SELECT key FROM quota_counters")]
    assert not any("alice" in key for key in keys)


def test_reservations_settle_and_release(
    sqlite_quota: SqliteQuotaStore, clock: ManualClock
) -> None:
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


def test_a_charge_is_one_write_judged_in_bucket_order(
    sqlite_quota: SqliteQuotaStore, clock: ManualClock
) -> None:
    guard = guard_for(sqlite_quota, clock, chat_per_minute=1, api_per_minute=3, daily_tokens=1000)
    reservation = guard.apply(guard.charge("u", ["api", "chat"], 400))
    assert reservation is not None and reservation.tokens == 400
    assert guard.tokens_used("u") == 400
    # Over the chat limit: refused, and its reservation is given back at once.
    with pytest.raises(RateLimited, match="for chat messages"):
        guard.apply(guard.charge("u", ["api", "chat"], 400))
    assert guard.tokens_used("u") == 400
    # The API limit is judged first (the third request in this minute passes it).
    guard.apply(guard.charge("u", ["api"]))
    with pytest.raises(RateLimited) as caught:
        guard.apply(guard.charge("u", ["api", "chat"], 400))
    assert "chat" not in caught.value.message


def test_a_charge_checks_the_budget_before_its_own_reservation(
    sqlite_quota: SqliteQuotaStore, clock: ManualClock
) -> None:
    guard = guard_for(sqlite_quota, clock, daily_tokens=1000)
    assert guard.apply(guard.charge("u", ["chat"], 0)) is None  # a check: nothing reserved
    guard.apply(guard.charge("u", ["chat"], 999))
    guard.apply(guard.charge("u", ["chat"], 500))  # 999 used before it: admitted
    with pytest.raises(BudgetExhausted):
        guard.apply(guard.charge("u", ["chat"], 0))  # even a check, once used up
    with pytest.raises(BudgetExhausted):
        guard.apply(guard.charge("u", ["chat"], 10))
    assert guard.tokens_used("u") == 1499  # the refused reservation was given back


def test_limits_turned_off_charge_nothing(
    sqlite_quota: SqliteQuotaStore, clock: ManualClock
) -> None:
    guard = guard_for(sqlite_quota, clock, chat_per_minute=0, api_per_minute=0, daily_tokens=0)
    charge = guard.charge("u", ["api", "chat"], 5000)
    assert charge.changes == () and guard.apply(charge) is None
