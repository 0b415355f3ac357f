"""The QuotaStore contract, run against SQLite and the Firestore emulator."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from ion.ports import CounterChange, QuotaStore

# Far in the future: the SQLite store purges counters expired by the real clock every few
# hundred writes of the process, whichever test makes them, so a past expiry would make a
# counter vanish in whichever test happens to make the purging write.
LATER = datetime(2100, 3, 4, 13, 0, 15, tzinfo=UTC)


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


def test_several_counters_change_in_one_write(quota_store: QuotaStore) -> None:
    assert quota_store.increment("tokens:u1", 100, expires_at=LATER) == 100
    changes = [
        CounterChange(key="rate:api:u1", amount=1, expires_at=LATER),
        CounterChange(key="rate:chat:u1", amount=1, expires_at=LATER),
        CounterChange(key="tokens:u1", amount=0, expires_at=LATER),  # a check: its value
        CounterChange(key="rate:api:u1", amount=1, expires_at=LATER),  # twice: in order
    ]
    assert quota_store.increment_many(changes) == [1, 1, 100, 2]
    assert quota_store.increment_many([]) == []
    assert [quota_store.counter(k) for k in ("rate:api:u1", "rate:chat:u1")] == [2, 1]
