"""Helpers for emulating a central bank that publishes exchange rates on working days.

The NBP and ČNB emulators use them; so can the emulator of any other bank: its calendar
(:func:`easter`, from which most movable holidays follow, and :func:`working_day_number`,
how banks number their tables) and :func:`daily_rate`, a rate that varies a little from
day to day, the same on every run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal


def easter(year: int) -> dt.date:
    """Easter Sunday of ``year`` (the Gregorian computus)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    el = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * el) // 451
    month, day = divmod(h + el - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def working_day_number(day: dt.date, is_working_day: Callable[[dt.date], bool]) -> int:
    """How many working days of ``day``'s year there are up to ``day``, itself included:
    the serial number of the table or fixing published on ``day`` (``1`` for the first)."""
    first = dt.date(day.year, 1, 1)
    return sum(is_working_day(first + dt.timedelta(days=n)) for n in range((day - first).days + 1))


def daily_rate(around: Decimal, code: str, day: dt.date) -> Decimal:
    """``around`` moved by up to ±0.5 % for ``code`` on ``day``, the same on every run,
    with as many decimals as ``around`` has."""
    step = (day.toordinal() * 37 + sum(map(ord, code)) * 11) % 101 - 50
    varied = around * (1 + Decimal(step) / 10_000)
    return varied.quantize(around, rounding=ROUND_HALF_UP)
