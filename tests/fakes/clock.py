"""The one clock fake: wall-clock time (the Clock port) and monotonic seconds, both moved by
the test, so nothing in a test depends on the real time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


class ManualClock:
    """`now()` stays at `current` until the test moves it (`advance`, or assigning
    `current`); with `tick`, every reading first moves it on by that much, so successive
    readings are strictly ordered. `monotonic()` moves with `advance` only, and is what
    a timer-driven cache takes (`monotonic=clock.monotonic`)."""

    def __init__(self, start: datetime = DEFAULT_START, *, tick: timedelta = timedelta(0)) -> None:
        self.current = start
        self.tick = tick
        self.seconds = 1000.0

    def now(self) -> datetime:
        self.current += self.tick
        return self.current

    def monotonic(self) -> float:
        return self.seconds

    def advance(self, by: timedelta | float) -> None:
        """Move both readings on by `by` (a timedelta, or seconds)."""
        step = by if isinstance(by, timedelta) else timedelta(seconds=by)
        self.current += step
        self.seconds += step.total_seconds()
