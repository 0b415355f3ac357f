"""The ConversationStore contract for a turn's read and its optimistic claim (`read_turn`,
`claim_turn(expected=..., counters=...)`), run against SQLite and the Firestore emulator:
a claim lands only on the conversation as it was read, and charges the request's counters
in the same write, only when it lands."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ion.adapters.store_rules import TurnConflict
from ion.ports import ConversationMemory, CounterChange, QuotaStore, TurnClaim, TurnSnapshot
from tests.contract.test_conversation_store import (
    LEASE_S,
    T0,
    conv,
    msg,
    race_claims,
    save_history,
)

LATER = T0 + timedelta(hours=1)
CHARGES = [
    CounterChange(key="rate:api:u1", amount=1, expires_at=LATER),
    CounterChange(key="tokens:u1", amount=700, expires_at=LATER),
]


@pytest.fixture
def quota(store: Any) -> QuotaStore:
    """The quota counters of the same backend as `store` (the claim writes to them)."""
    if hasattr(store, "database"):
        from ion.adapters.sqlite.quota import SqliteQuotaStore

        return SqliteQuotaStore(store.database)
    from ion.adapters.firestore.quota import FirestoreQuotaStore

    return FirestoreQuotaStore(store.client)


def counters(quota: QuotaStore) -> list[int]:
    return [quota.counter(change.key) for change in CHARGES]


def test_read_turn_gives_the_window_the_summary_and_a_version(store: Any) -> None:
    save_history(store, "c1", 6)
    memory = ConversationMemory(summary="- likes Go", through=2, updated_at=T0)
    assert store.put_memory("c1", memory) is True
    snapshot = store.read_turn("c1", "u1", now=T0, history=4)
    assert snapshot.conversation == conv("c1", count=6)
    assert [m.id for m in snapshot.history] == [f"c1-m{n}" for n in range(2, 6)]
    assert snapshot.memory == memory
    assert snapshot.busy_until is None and snapshot.version


def test_read_turn_of_a_missing_foreign_or_busy_conversation(store: Any) -> None:
    save_history(store, "c1", 2)
    assert store.read_turn("nope", "u1", now=T0, history=4) == TurnSnapshot()
    assert store.read_turn("c1", "mallory", now=T0, history=4) == TurnSnapshot()
    assert store.read_turn("a/b", "u1", now=T0, history=4) == TurnSnapshot()
    store.claim_turn("c1", "u1", now=T0, until=T0 + LEASE_S)
    busy = store.read_turn("c1", "u1", now=T0 + timedelta(seconds=1), history=4)
    assert busy == TurnSnapshot(conversation=conv("c1", count=2), busy_until=T0 + LEASE_S)
    # Once the lease expired, the conversation is free again.
    free = store.read_turn("c1", "u1", now=T0 + LEASE_S + timedelta(seconds=1), history=4)
    assert free.busy_until is None and len(free.history) == 2


def test_a_claim_on_the_version_read_takes_the_lease_and_charges(
    store: Any, quota: QuotaStore
) -> None:
    save_history(store, "c1", 2)
    snapshot = store.read_turn("c1", "u1", now=T0, history=4)
    claim = store.claim_turn(
        "c1", "u1", now=T0, until=T0 + LEASE_S, expected=snapshot.version, counters=CHARGES
    )
    assert claim.lease and not claim.changed
    assert claim.counters == (1, 700) and counters(quota) == [1, 700]
    # The lease is live: the next read sees the conversation busy, a claim is refused.
    assert store.read_turn("c1", "u1", now=T0, history=4).busy_until == T0 + LEASE_S
    store.save_turn(conv("c1", count=4), [msg("c1", 2), msg("c1", 3)], lease=claim.lease)
    assert store.read_turn("c1", "u1", now=T0, history=4).busy_until is None


def test_a_claim_on_a_version_with_an_expired_lease_takes_the_conversation_over(
    store: Any, quota: QuotaStore
) -> None:
    save_history(store, "c1", 2)
    held = store.claim_turn("c1", "u1", now=T0, until=T0 + LEASE_S)
    later = T0 + LEASE_S + timedelta(seconds=1)
    snapshot = store.read_turn("c1", "u1", now=later, history=4)
    claim = store.claim_turn(
        "c1", "u1", now=later, until=later + LEASE_S, expected=snapshot.version, counters=CHARGES
    )
    assert claim.lease and claim.lease != held.lease and not claim.changed
    assert counters(quota) == [1, 700]
    # The first turn lost its lease: its save is refused, the new holder's lands.
    with pytest.raises(TurnConflict):
        store.save_turn(conv("c1", count=4), [msg("c1", 2), msg("c1", 3)], lease=held.lease)
    store.save_turn(conv("c1", count=4), [msg("c1", 2), msg("c1", 3)], lease=claim.lease)


def test_a_claim_on_the_version_read_is_not_another_learners(store: Any, quota: QuotaStore) -> None:
    save_history(store, "c1", 2)
    snapshot = store.read_turn("c1", "u1", now=T0, history=4)
    claim = store.claim_turn(
        "c1", "mallory", now=T0, until=T0 + LEASE_S, expected=snapshot.version, counters=CHARGES
    )
    assert claim == TurnClaim()
    assert counters(quota) == [0, 0]
    assert store.read_turn("c1", "u1", now=T0, history=4).busy_until is None


@pytest.mark.parametrize("meanwhile", ["saved", "claimed", "released", "deleted"])
def test_a_claim_on_an_outdated_version_writes_nothing(
    store: Any, quota: QuotaStore, meanwhile: str
) -> None:
    save_history(store, "c1", 2)
    if meanwhile == "released":
        held = store.claim_turn("c1", "u1", now=T0, until=T0 + LEASE_S)
        read_at = T0 + LEASE_S + timedelta(seconds=1)  # the lease expired: free to read
    else:
        read_at = T0
    snapshot = store.read_turn("c1", "u1", now=read_at, history=4)
    assert snapshot.version
    if meanwhile == "saved":
        store.save_turn(conv("c1", count=4), [msg("c1", 2), msg("c1", 3)])
    elif meanwhile == "claimed":
        store.claim_turn("c1", "u1", now=T0, until=T0 + timedelta(seconds=1))
    elif meanwhile == "released":
        store.release_turn("c1", held.lease)
    else:
        store.delete_conversation("c1")
    claim = store.claim_turn(
        "c1",
        "u1",
        now=read_at,
        until=read_at + LEASE_S,
        expected=snapshot.version,
        counters=CHARGES,
    )
    assert claim == TurnClaim(changed=True)
    assert counters(quota) == [0, 0]  # a claim that did not land charged nothing


def test_racing_claims_on_one_version_exactly_one_lands_and_charges(
    store: Any, quota: QuotaStore
) -> None:
    save_history(store, "c1", 2)
    version = store.read_turn("c1", "u1", now=T0, history=4).version
    results = race_claims(
        6,
        lambda: store.claim_turn(
            "c1", "u1", now=T0, until=T0 + LEASE_S, expected=version, counters=CHARGES
        ),
    )
    assert sum(1 for r in results if r.lease is not None) == 1
    assert sum(1 for r in results if r.changed) == 5
    assert counters(quota) == [1, 700]


def test_a_claim_without_a_version_charges_only_when_it_lands(
    store: Any, quota: QuotaStore
) -> None:
    save_history(store, "c1", 2)
    first = store.claim_turn("c1", "u1", now=T0, until=T0 + LEASE_S, counters=CHARGES)
    assert first.lease and first.counters == (1, 700)
    busy = store.claim_turn("c1", "u1", now=T0, until=T0 + LEASE_S, counters=CHARGES)
    assert busy.lease is None and busy.counters == ()
    assert counters(quota) == [1, 700]


def test_read_turn_ignores_the_wall_clock(store: Any) -> None:
    # `now` decides whether a lease is live, whatever the machine's time.
    save_history(store, "c1", 2)
    store.claim_turn("c1", "u1", now=T0, until=T0 + LEASE_S)
    far = datetime(2030, 1, 1, tzinfo=UTC)
    assert store.read_turn("c1", "u1", now=far, history=1).busy_until is None


class WindowReadFirst:
    """A StoreAccess whose second call (read_turn's history window) runs first, then
    `meanwhile`, then the first (the conversation document): the window is older than the
    document, as it may be when both are read at the same time."""

    def __init__(self, meanwhile: Any) -> None:
        self.meanwhile = meanwhile

    def together(self) -> Any:
        return contextlib.nullcontext()

    def at_once(self, *calls: Any) -> list[Any]:
        window = calls[1]()
        self.meanwhile()
        return [calls[0](), window]


@pytest.mark.emulator
def test_firestore_a_window_older_than_its_conversation_is_read_again(
    firestore_client: Any, firestore_reset: None
) -> None:
    from ion.adapters.firestore.conversations import FirestoreStore

    plain = FirestoreStore(firestore_client)
    save_history(plain, "c1", 2)

    def another_turn() -> None:
        plain.save_turn(conv("c1", count=4), [msg("c1", 2), msg("c1", 3)])

    racing = FirestoreStore(firestore_client, access=WindowReadFirst(another_turn))
    snapshot = racing.read_turn("c1", "u1", now=T0, history=4)
    assert snapshot.conversation == conv("c1", count=4)
    assert [m.id for m in snapshot.history] == [f"c1-m{n}" for n in range(4)]
    claim = racing.claim_turn("c1", "u1", now=T0, until=T0 + LEASE_S, expected=snapshot.version)
    assert claim.lease is not None
