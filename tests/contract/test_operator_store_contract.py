"""The operator page's store reads (daily counters, disagreement pages and time ranges),
run against SQLite and the Firestore emulator like the rest of the learning contract."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from ion.domain.models import Intent, Pace, ResonanceKey, Tone
from ion.ports import DailyCount, RoutingDisagreement, StatsDelta
from tests.conftest import LearningBackend

T0 = datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=UTC)
KEY = ResonanceKey(tone=Tone.ANXIOUS, pace=Pace.FLOWING, intent=Intent.EXPRESSIVE)
DAY = date(2026, 3, 1)


def _turn(day: date, persona: str = "lua") -> list[DailyCount]:
    return [DailyCount(day=day, name=f"turns.{persona}", count=1)]


def test_daily_counts_apply_once_with_their_event(learning_backend: LearningBackend) -> None:
    store = learning_backend.learning
    delta = [StatsDelta(persona="lua", resonance_key=KEY, turns=1)]
    assert store.apply_event_once("a" * 32, delta, processed_at=T0, daily=_turn(DAY)) is True
    # A redelivery changes neither the statistics nor the daily counters.
    assert store.apply_event_once("a" * 32, delta, processed_at=T0, daily=_turn(DAY)) is False
    assert store.apply_event_once("b" * 32, delta, processed_at=T0, daily=_turn(DAY)) is True
    next_day = DAY + timedelta(days=1)
    assert store.apply_event_once("c" * 32, [], processed_at=T0, daily=_turn(next_day, "elro"))
    crisis = [DailyCount(day=next_day, name="crises", count=1)]
    assert store.apply_event_once("d" * 32, [], processed_at=T0, daily=crisis)
    vote = [
        DailyCount(day=next_day, name="ups.lua", count=-1),
        DailyCount(day=next_day, name="downs.lua", count=1),
    ]
    assert store.apply_event_once("e" * 32, [], processed_at=T0, daily=vote)

    assert store.daily_counts(DAY, next_day) == [
        DailyCount(day=DAY, name="turns.lua", count=2),
        DailyCount(day=next_day, name="crises", count=1),
        DailyCount(day=next_day, name="downs.lua", count=1),
        DailyCount(day=next_day, name="turns.elro", count=1),
        DailyCount(day=next_day, name="ups.lua", count=-1),
    ]
    # Both ends are inclusive; days outside the range are left out.
    assert store.daily_counts(DAY, DAY) == [DailyCount(day=DAY, name="turns.lua", count=2)]
    assert store.daily_counts(DAY - timedelta(days=9), DAY - timedelta(days=1)) == []
    assert [s.turns for s in store.routing_stats()] == [2]


def _disagreement(n: int, at: datetime) -> RoutingDisagreement:
    return RoutingDisagreement(
        message_hash=f"{n:064x}",
        message=f"message {n}",
        local_persona="elro",
        judge_persona="lua",
        confidence=0.4,
        main_need="support",
        created_at=at,
        expires_at=at + timedelta(days=30),
    )


def _hashes(rows: list[RoutingDisagreement]) -> list[int]:
    return [int(d.message_hash, 16) for d in rows]


def test_disagreement_pages_follow_ties_and_time_ranges(learning_backend: LearningBackend) -> None:
    store = learning_backend.learning
    # Three rows share one instant (ties break by hash, descending), two are older, one
    # is a day later.
    rows = [_disagreement(n, T0) for n in (4, 6, 5)]
    rows += [_disagreement(2, T0 - timedelta(hours=1)), _disagreement(1, T0 - timedelta(hours=2))]
    rows.append(_disagreement(9, T0 + timedelta(days=1)))
    for row in rows:
        store.put_disagreement(row)

    pages: list[list[int]] = []
    after: Any = None
    while True:
        page = store.list_disagreements(limit=2, now=T0, after=after)
        if not page:
            break
        pages.append(_hashes(page))
        after = (page[-1].created_at, page[-1].message_hash)
    assert pages == [[9, 6], [5, 4], [2, 1]]

    in_range = store.list_disagreements(
        limit=10, now=T0, since=T0 - timedelta(hours=1), until=T0 + timedelta(hours=1)
    )
    assert _hashes(in_range) == [6, 5, 4, 2]
    continued = store.list_disagreements(
        limit=10,
        now=T0,
        since=T0 - timedelta(hours=1),
        until=T0 + timedelta(hours=1),
        after=(T0, f"{5:064x}"),
    )
    assert _hashes(continued) == [4, 2]
