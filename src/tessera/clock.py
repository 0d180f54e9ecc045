"""An injectable clock, so tests travel in time instead of sleeping.

Time is a float of seconds since the Unix epoch (UTC): cheap to read on hot paths, trivially
comparable, and what stores with TTLs (Redis, SQL integer columns) keep anyway.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Anything with ``now()``; every expiry check in Tessera reads it."""

    def now(self) -> float:
        """Seconds since the Unix epoch, UTC."""
        ...


class SystemClock:
    """The real wall clock."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that only moves when told to; shipped publicly for library users' tests."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward (never backward: expiry logic may assume monotonicity)."""
        if seconds < 0:
            raise ValueError("a FakeClock only moves forward")
        self._now += seconds

    def set(self, when: float) -> None:
        if when < self._now:
            raise ValueError("a FakeClock only moves forward")
        self._now = float(when)


SYSTEM_CLOCK: Clock = SystemClock()


def to_datetime(ts: float) -> datetime:
    """An aware UTC datetime for a clock reading (for display and SQL)."""
    return datetime.fromtimestamp(ts, tz=UTC)
