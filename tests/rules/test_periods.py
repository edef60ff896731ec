"""Billing-period calendar arithmetic: month ends clamp, leap years, year boundaries."""

from __future__ import annotations

import calendar
import datetime as dt

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from portal.rules.catalogue import Period
from portal.rules.periods import add_months, add_period

D = dt.date


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (D(2026, 1, 31), 1, D(2026, 2, 28)),  # clamped to a common February
        (D(2028, 1, 31), 1, D(2028, 2, 29)),  # leap February
        (D(2028, 2, 29), 12, D(2029, 2, 28)),
        (D(2026, 3, 31), 1, D(2026, 4, 30)),
        (D(2026, 5, 31), 1, D(2026, 6, 30)),
        (D(2026, 8, 31), 1, D(2026, 9, 30)),
        (D(2026, 10, 31), 1, D(2026, 11, 30)),
        (D(2026, 12, 31), 1, D(2027, 1, 31)),  # December -> January of the next year
        (D(2026, 12, 1), 1, D(2027, 1, 1)),
        (D(2026, 12, 15), 13, D(2028, 1, 15)),
        (D(2026, 11, 30), 2, D(2027, 1, 30)),
        (D(2026, 1, 15), 1, D(2026, 2, 15)),
        (D(2026, 2, 28), 1, D(2026, 3, 28)),  # not snapped to the month end
        (D(2028, 2, 29), 1, D(2028, 3, 29)),
        (D(2026, 1, 31), 2, D(2026, 3, 31)),  # clamping is per call, not cumulative
        (D(2026, 1, 30), 1, D(2026, 2, 28)),
        (D(2028, 1, 30), 1, D(2028, 2, 29)),
        (D(2026, 1, 29), 1, D(2026, 2, 28)),
        (D(2026, 1, 28), 1, D(2026, 2, 28)),
        (D(2026, 5, 17), 0, D(2026, 5, 17)),
        (D(2026, 3, 31), -1, D(2026, 2, 28)),
        (D(2026, 1, 31), -1, D(2025, 12, 31)),
        (D(2028, 3, 30), -1, D(2028, 2, 29)),
        (D(2100, 1, 31), 1, D(2100, 2, 28)),  # divisible by 100: not a leap year
        (D(2000, 1, 31), 1, D(2000, 2, 29)),  # divisible by 400: a leap year
    ],
)
def test_add_months(start: dt.date, months: int, expected: dt.date) -> None:
    assert add_months(start, months) == expected


@pytest.mark.parametrize(
    ("start", "period", "expected"),
    [
        (D(2026, 1, 31), Period.MONTH, D(2026, 2, 28)),
        (D(2028, 1, 31), Period.MONTH, D(2028, 2, 29)),
        (D(2026, 3, 31), Period.MONTH, D(2026, 4, 30)),
        (D(2026, 12, 31), Period.MONTH, D(2027, 1, 31)),
        (D(2026, 12, 10), Period.MONTH, D(2027, 1, 10)),
        (D(2028, 2, 29), Period.YEAR, D(2029, 2, 28)),
        (D(2027, 2, 28), Period.YEAR, D(2028, 2, 28)),
        (D(2026, 12, 31), Period.YEAR, D(2027, 12, 31)),
        (D(2026, 1, 1), Period.YEAR, D(2027, 1, 1)),
        (D(2026, 1, 31), "month", D(2026, 2, 28)),
        (D(2028, 2, 29), "year", D(2029, 2, 28)),
    ],
)
def test_add_period(start: dt.date, period: Period | str, expected: dt.date) -> None:
    assert add_period(start, period) == expected


@pytest.mark.parametrize(
    ("year", "month", "length"),
    [
        (2026, 2, 28),
        (2028, 2, 29),
        (2026, 4, 30),
        (2026, 6, 30),
        (2026, 9, 30),
        (2026, 11, 30),
        (2026, 1, 31),
        (2026, 3, 31),
        (2026, 7, 31),
        (2026, 8, 31),
        (2026, 12, 31),
    ],
)
def test_month_lengths(year: int, month: int, length: int) -> None:
    # A month starting on the 1st lasts exactly the month's length ...
    start = D(year, month, 1)
    assert (add_period(start, Period.MONTH) - start).days == length
    # ... and 31 January moved into the month lands on its last day.
    assert add_months(D(year, 1, 31), month - 1) == D(year, month, length)


def test_unknown_period_is_refused() -> None:
    with pytest.raises(ValueError):
        add_period(D(2026, 1, 1), "week")


FAST = settings(max_examples=200, deadline=None)
# Leave room for a year at the top of the date range.
dates = st.dates(min_value=D(1, 1, 1), max_value=D(9998, 12, 31))


@FAST
@given(dates)
def test_a_month_is_after_the_start_and_at_most_31_days(start: dt.date) -> None:
    end = add_period(start, Period.MONTH)
    assert start < end
    assert 28 <= (end - start).days <= 31
    assert (end.year * 12 + end.month) - (start.year * 12 + start.month) == 1
    assert end.day == min(start.day, calendar.monthrange(end.year, end.month)[1])


@FAST
@given(dates)
def test_a_year_is_after_the_start_and_at_most_366_days(start: dt.date) -> None:
    end = add_period(start, Period.YEAR)
    assert start < end
    assert 365 <= (end - start).days <= 366
    assert (end.year, end.month) == (start.year + 1, start.month)
    assert end.day == start.day or (start.month, start.day, end.day) == (2, 29, 28)


@FAST
@given(dates, st.integers(-120, 120))
def test_add_months_lands_in_the_right_month(start: dt.date, months: int) -> None:
    index = start.year * 12 + start.month - 1 + months
    assume(1 <= index // 12 <= 9999)
    end = add_months(start, months)
    year, month0 = divmod(index, 12)
    assert (end.year, end.month) == (year, month0 + 1)
    assert end.day == min(start.day, calendar.monthrange(end.year, end.month)[1])
    assert (end > start) is (months > 0)
    assert (end < start) is (months < 0)
