"""Billing-period calendar arithmetic."""

from __future__ import annotations

import calendar
import datetime as dt

from portal.rules.catalogue import Period


def add_months(day: dt.date, months: int) -> dt.date:
    """Same day of month ``months`` later, clamped to the month's last day (31 Jan -> 28/29 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return day.replace(
        year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1])
    )


def add_period(start: dt.date, period: Period | str) -> dt.date:
    """The exclusive end of a period that starts on ``start``."""
    return add_months(start, 12 if Period(period) is Period.YEAR else 1)


def last_day(start: dt.date, end: dt.date) -> dt.date:
    """The last day of a period stored as ``[start, end)``: what every page, e-mail and
    document writes as the period's end ("3 December – 2 January")."""
    return max(start, end - dt.timedelta(days=1))
