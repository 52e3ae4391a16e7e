"""The suite's one notion of "now".

Every service takes a :data:`Clock` (a function returning an aware UTC datetime) from the
composition root; nothing else in a service asks the system for the time. Production uses
:func:`system_clock`. Tests and rehearsals use :class:`ShiftedClock`, which starts at a chosen
instant and then runs at the real pace (so TTLs, timeouts and ordering behave as in production),
for example to run the whole suite "on" 2027-01-04 or 2030-06-30.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

Clock = Callable[[], dt.datetime]
CST = dt.timezone(dt.timedelta(hours=8), "CST")


def system_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ShiftedClock:
    """A clock that reads ``start`` when created and advances with the monotonic clock."""

    def __init__(self, start: dt.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ShiftedClock needs an aware datetime")
        self._start = start.astimezone(dt.UTC)
        self._t0 = time.monotonic()

    def __call__(self) -> dt.datetime:
        return self._start + dt.timedelta(seconds=time.monotonic() - self._t0)

    def advance(self, delta: dt.timedelta) -> None:
        """Move the clock on (tests: "tomorrow")."""
        self._start += delta

    @classmethod
    def at_cst(cls, day: dt.date, hour: int = 9) -> ShiftedClock:
        """``hour`` o'clock China Standard Time on ``day``."""
        return cls(dt.datetime(day.year, day.month, day.day, hour, tzinfo=CST))


def today_cst(clock: Clock) -> dt.date:
    """The calendar day in China Standard Time: the day every business date is counted in."""
    return clock().astimezone(CST).date()


def clock_for(start: dt.datetime | None) -> Clock:
    """The system clock, or a :class:`ShiftedClock` from ``start`` (``MEDSETTLE_TEST_CLOCK_START``)."""
    return system_clock if start is None else ShiftedClock(start)
