"""Learned routing: per persona × resonance-key statistics from feedback, as bounded nudges.

Pure domain code. The statistics are kept by the `persona_events` consumer (see
`ion.entrypoints.events`) through the `RoutingStatsStore` port; `LearnedRouter` reads them (cached
for `ttl_s`) and passes them to `Router.route(..., adjustments=...)`.

The nudge for persona p on messages with resonance key k (docs/routing-feedback.md)::

    votes = ups + downs
    nudge = 0                                   if votes < min_votes
    nudge = bound · (ups − downs) / (votes + 2) otherwise   (Laplace-smoothed, in (−bound, bound))

It is added to p's softmax score (the router clamps every nudge to ±ADJUSTMENT_BOUND = 0.1),
so two personas can move by at most 2·bound relative to each other: feedback tips close calls
and never overrides a decision whose margin is larger than that.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Literal, Protocol

from ion.domain import events
from ion.domain.models import Intent, Pace, ResonanceKey, Tone
from ion.domain.personas import PersonaCatalog
from ion.domain.routing import ADJUSTMENT_BOUND, Router
from ion.ports import Clock, DailyCount, RoutingStat, RoutingStatsStore, StatsDelta

log = logging.getLogger(__name__)


class StatsSource(Protocol):
    def routing_stats(self) -> list[RoutingStat]: ...


def nudge(stat: RoutingStat, *, bound: float, min_votes: int) -> float:
    """The bounded score adjustment one persona earns on one resonance key."""
    ups, downs = max(stat.ups, 0), max(stat.downs, 0)
    votes = ups + downs
    if bound <= 0 or votes < min_votes:
        return 0.0
    bound = min(bound, ADJUSTMENT_BOUND)
    return bound * (ups - downs) / (votes + 2)


def adjustments_for(
    stats: Iterable[RoutingStat], key: ResonanceKey, *, bound: float, min_votes: int
) -> dict[str, float]:
    """Non-zero nudges per persona for messages read as `key`."""
    return dict(_nudges_by_key(stats, bound=bound, min_votes=min_votes).get(_key_of(key), {}))


#: A resonance key as a dict key: enum members hash and compare by identity, cheaper than
#: the model's own equality.
_Key = tuple[Tone, Pace, Intent]
#: Per resonance key, the non-zero nudge of each persona.
_Nudges = dict[_Key, dict[str, float]]


def _key_of(key: ResonanceKey) -> _Key:
    return (key.tone, key.pace, key.intent)


def _nudges_by_key(stats: Iterable[RoutingStat], *, bound: float, min_votes: int) -> _Nudges:
    """`adjustments_for` of every key at once: a dict lookup per message, not a scan."""
    by_key: _Nudges = {}
    for stat in stats:
        value = nudge(stat, bound=bound, min_votes=min_votes)
        if value != 0.0:
            by_key.setdefault(_key_of(stat.resonance_key), {})[stat.persona] = value
    return by_key


class LearnedRouter(Router):
    """A `Router` whose decisions include the nudges learned from feedback.

    Same `route()` signature; caller-supplied `adjustments` are added to the learned ones
    (the router clamps the sum). Statistics are read at most once per `ttl_s` per instance;
    when reading fails the last good copy (or none) is used: routing never fails because
    of statistics.
    """

    def __init__(
        self,
        catalog: PersonaCatalog,
        stats: StatsSource | None,
        *,
        bound: float = 0.05,
        min_votes: int = 5,
        ttl_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
        **router_options: Any,
    ) -> None:
        super().__init__(catalog, **router_options)
        self._stats = stats
        self._bound = min(max(bound, 0.0), ADJUSTMENT_BOUND)
        self._min_votes = min_votes
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        # The statistics and the nudges read from them, replaced together.
        self._cached: tuple[list[RoutingStat], _Nudges] = ([], {})
        self._loaded_at: float | None = None

    @property
    def bound(self) -> float:
        return self._bound

    @property
    def min_votes(self) -> int:
        return self._min_votes

    def statistics(self) -> list[RoutingStat]:
        """The (cached) statistics the router currently uses."""
        return self._current()[0]

    def _current(self) -> tuple[list[RoutingStat], _Nudges]:
        if self._stats is None:
            return [], {}
        now = self._monotonic()
        loaded = self._loaded_at
        if loaded is not None and now - loaded < self._ttl_s:
            return self._cached
        with self._lock:
            if self._loaded_at is not None and now - self._loaded_at < self._ttl_s:
                return self._cached
            try:
                stats = self._stats.routing_stats()
                nudges = _nudges_by_key(stats, bound=self._bound, min_votes=self._min_votes)
                self._cached = (stats, nudges)
            except Exception:
                log.warning("routing statistics unavailable; using the last copy", exc_info=True)
            # Also after a failure: retry after the TTL, not on every message.
            self._loaded_at = now
            return self._cached

    def invalidate(self) -> None:
        """Forget the cached statistics (the next route reads them again)."""
        with self._lock:
            self._loaded_at = None

    def learned_adjustments(self, key: ResonanceKey) -> dict[str, float]:
        if self._bound <= 0:
            return {}
        return dict(self._current()[1].get(_key_of(key), {}))

    def _adjustments(
        self, message: str, adjustments: Mapping[str, float] | None
    ) -> Mapping[str, float] | None:
        # The nudges depend on the message's resonance key alone, which is read before
        # routing: one routing pass, with them.
        learned = self.learned_adjustments(self.resonance(message).key)
        if not learned:
            return adjustments
        merged = dict(adjustments or {})
        for persona, value in learned.items():
            merged[persona] = merged.get(persona, 0.0) + value
        return merged


# --- from events to statistics -----------------------------------------------------


def deltas_for(event: events.Event) -> list[StatsDelta]:
    """The counter changes one event stands for (empty for events that change nothing)."""
    data = event.data
    if isinstance(data, events.ChatTurnCompletedData):
        return [StatsDelta(persona=data.persona, resonance_key=data.resonance_key, turns=1)]
    if isinstance(data, events.FeedbackRecordedData):
        ups = (data.rating == "up") - (data.previous_rating == "up")
        downs = (data.rating == "down") - (data.previous_rating == "down")
        if ups == 0 and downs == 0:
            return []
        return [
            StatsDelta(persona=data.persona, resonance_key=data.resonance_key, ups=ups, downs=downs)
        ]
    return []


def daily_counts_for(event: events.Event) -> list[DailyCount]:
    """The per-day counters one event adds to, on the UTC day it occurred: the persona's
    turns, its net ups/downs, and a bare count of crisis detections (nothing else)."""
    data = event.data
    day = event.occurred_at.astimezone(UTC).date()
    if isinstance(data, events.CrisisDetectedData):
        return [DailyCount(day=day, name="crises", count=1)]
    counts: list[DailyCount] = []
    for delta in deltas_for(event):
        for metric in ("turns", "ups", "downs"):
            value = getattr(delta, metric)
            if value:
                counts.append(DailyCount(day=day, name=f"{metric}.{delta.persona}", count=value))
    return counts


# --- keeping the statistics from events ------------------------------------------------

Outcome = Literal["applied", "duplicate", "ignored", "dropped"]

# The name operators filter on for the persona_events consumer's lines.
consumer_log = logging.getLogger("ion.consumers")


def apply_stats_event(
    raw: bytes | Mapping[str, Any],
    stats: RoutingStatsStore,
    clock: Clock,
    *,
    outcome_level: int = logging.INFO,
) -> Outcome:
    """Decode one event and apply it to the routing statistics exactly once; its outcome
    is logged at `outcome_level` (an event that cannot be applied always at INFO or
    above)."""
    try:
        event = events.decode_event(raw)
    except events.UnknownEventType as exc:
        consumer_log.info("persona_events: ignoring %s", exc)
        return "ignored"
    except events.MalformedEvent as exc:
        consumer_log.warning("persona_events: dropping malformed event: %s", exc)
        return "dropped"
    applied = stats.apply_event_once(
        event.event_id,
        deltas_for(event),
        processed_at=clock.now(),
        daily=daily_counts_for(event),
    )
    outcome: Outcome = "applied" if applied else "duplicate"
    consumer_log.log(
        outcome_level, "persona_events: %s %s %s", outcome, event.event_type, event.event_id
    )
    return outcome


def stats_subscriber(stats: RoutingStatsStore, clock: Clock) -> Any:
    """An in-process transport subscriber (embedded backend) applying events to the stats.

    It runs inside the request that published the event, which logs its own line: the
    event's outcome is a DEBUG line here, not a second INFO line for every chat turn."""

    def on_event(envelope: dict[str, Any]) -> None:
        apply_stats_event(envelope, stats, clock, outcome_level=logging.DEBUG)

    return on_event


# --- the statistics report (GET /v1/routing/stats) ------------------------------------


@dataclass(frozen=True)
class StatisticsReport:
    bound: float
    min_votes: int
    # Per persona (every catalog persona, even with no events yet): turns, ups, downs.
    totals: dict[str, dict[str, int]]
    # Each statistic with the nudge it gives routing now.
    rows: list[tuple[RoutingStat, float]]


class RoutingStatistics:
    """The feedback statistics and the nudges they give now, read fresh from the store."""

    def __init__(
        self, stats: RoutingStatsStore, catalog: PersonaCatalog, *, bound: float, min_votes: int
    ) -> None:
        self._stats = stats
        self._catalog = catalog
        self._bound = bound
        self._min_votes = min_votes

    def report(self) -> StatisticsReport:
        stats = self._stats.routing_stats()
        totals: dict[str, dict[str, int]] = {
            pid: {"turns": 0, "ups": 0, "downs": 0} for pid in self._catalog.ids
        }
        for s in stats:
            total = totals.setdefault(s.persona, {"turns": 0, "ups": 0, "downs": 0})
            total["turns"] += s.turns
            total["ups"] += s.ups
            total["downs"] += s.downs
        rows = [(s, nudge(s, bound=self._bound, min_votes=self._min_votes)) for s in stats]
        return StatisticsReport(self._bound, self._min_votes, totals, rows)
