"""The tests' calendar: every suite a test starts runs "on" TEST_DAY (its clock starts at 09:00
China Standard Time that day and then runs at the real pace), so no test depends on the day it
is run. A test that needs another date starts its suite with a clock of its own."""

from __future__ import annotations

import datetime as dt

from libs.platform.clock import CST

TEST_DAY = dt.date(2026, 7, 1)
TEST_CLOCK_START = dt.datetime(TEST_DAY.year, TEST_DAY.month, TEST_DAY.day, 9, tzinfo=CST)
