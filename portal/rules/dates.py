"""How a calendar day is written for a customer: one way per language, everywhere.

Pages, e-mails, invoice lines and PDFs all call :func:`long_day`, so a date reads the same
in each of them ("4 grudnia 2026" in Polish, "December 4, 2026" in English).
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

from babel.dates import format_date

FORMAT = "long"


@lru_cache(maxsize=4096)
def long_day(day: dt.date, language: str) -> str:
    """``day`` written out in ``language`` (Babel's long date; pure, so cached)."""
    if isinstance(day, dt.datetime):
        day = day.date()
    return format_date(day, FORMAT, locale=language)
