"""What the operator page reads: routing and feedback over time, crisis counts per day and
the routing judge's disagreements, within bounded time ranges and pages.

Only aggregate counters and the judge's review data are read here; conversations are not.
The HTTP layer checks the operator role before any of this runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from ion.domain.personas import PersonaCatalog
from ion.errors import ValidationFailed
from ion.ports import Clock, DisagreementStore, RoutingDisagreement, RoutingStatsStore

#: The longest range one request may ask for (a quarter: a chart stays readable).
MAX_RANGE_DAYS = 92
#: The range when the caller names none: the last four weeks, today included.
DEFAULT_RANGE_DAYS = 28


@dataclass(frozen=True)
class DayRange:
    first: date
    last: date

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time.min, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The instant just after the range (midnight UTC after `last`)."""
        return datetime.combine(self.last + timedelta(days=1), time.min, tzinfo=UTC)


def day_range(first: str | None, last: str | None, *, today: date) -> DayRange:
    """The UTC day range `from`..`to` (ISO dates, both optional, inclusive), checked."""
    end = _parse_day("to", last) if last is not None else today
    try:
        default_start = end - timedelta(days=DEFAULT_RANGE_DAYS - 1)
        start = _parse_day("from", first) if first is not None else default_start
        end + timedelta(days=1)  # the range's end instant must exist too
    except OverflowError:
        raise ValidationFailed("query parameters from and to must be real dates") from None
    if start > end:
        raise ValidationFailed("query parameter from must not be after to")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise ValidationFailed(f"a range spans at most {MAX_RANGE_DAYS} days")
    return DayRange(start, end)


_ISO_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _parse_day(name: str, value: str) -> date:
    try:
        if not _ISO_DAY.match(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(f"query parameter {name} must be a date like 2026-01-31") from None


@dataclass(frozen=True)
class DailySeries:
    range: DayRange
    # persona id → one value per day of the range, in order.
    turns: dict[str, list[int]]
    ups: dict[str, list[int]]
    downs: dict[str, list[int]]
    crises: list[int]


@dataclass(frozen=True)
class DisagreementPage:
    items: list[RoutingDisagreement]
    # (created_at, message_hash) of the last item when another page exists.
    next_after: tuple[datetime, str] | None


class OperatorReports:
    def __init__(
        self,
        *,
        stats: RoutingStatsStore,
        disagreements: DisagreementStore,
        catalog: PersonaCatalog,
        clock: Clock,
    ) -> None:
        self._stats = stats
        self._disagreements = disagreements
        self._catalog = catalog
        self._clock = clock

    def today(self) -> date:
        return self._clock.now().astimezone(UTC).date()

    def daily(self, days: DayRange) -> DailySeries:
        """Turns, net ups and downs per persona and crisis detections, one value per day."""
        index = {day: n for n, day in enumerate(days.days)}
        width = len(index)
        personas = list(self._catalog.ids)
        series: dict[str, dict[str, list[int]]] = {
            metric: {pid: [0] * width for pid in personas} for metric in ("turns", "ups", "downs")
        }
        crises = [0] * width
        for count in self._stats.daily_counts(days.first, days.last):
            slot = index.get(count.day)
            if slot is None:
                continue
            metric, _, persona = count.name.partition(".")
            if metric == "crises":
                crises[slot] += count.count
            elif metric in series and persona:
                row = series[metric].setdefault(persona, [0] * width)
                row[slot] += count.count
        return DailySeries(days, series["turns"], series["ups"], series["downs"], crises)

    def disagreements(
        self, days: DayRange, *, limit: int, after: tuple[datetime, str] | None
    ) -> DisagreementPage:
        """Newest first within the range; `next_after` continues the list (None: done)."""
        # One extra row says whether another page exists, without a second query.
        rows = self._disagreements.list_disagreements(
            limit=limit + 1,
            now=self._clock.now(),
            after=after,
            since=days.start,
            until=days.end,
        )
        page = rows[:limit]
        last = page[-1] if page and len(rows) > limit else None
        return DisagreementPage(
            page, None if last is None else (last.created_at, last.message_hash)
        )
