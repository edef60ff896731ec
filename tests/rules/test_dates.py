"""The one way a calendar day is written, per language (pages, e-mails, invoices, PDFs)."""

from __future__ import annotations

import datetime as dt
import inspect

import pytest

from portal.documents import pdf
from portal.rules import dates, invoicing
from portal.web import helpers


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("pl", "4 grudnia 2026"),
        ("en", "December 4, 2026"),
    ],
)
def test_long_day_per_language(language: str, expected: str) -> None:
    assert dates.long_day(dt.date(2026, 12, 4), language) == expected


def test_polish_month_is_in_the_genitive_and_has_no_leading_zero() -> None:
    assert dates.long_day(dt.date(2027, 3, 1), "pl") == "1 marca 2027"


def test_a_moment_is_written_as_its_day() -> None:
    moment = dt.datetime(2026, 1, 31, 23, 0)
    assert dates.long_day(moment, "en") == "January 31, 2026"


def test_pages_and_pdfs_write_the_same_day_the_same_way() -> None:
    day = dt.date(2026, 2, 28)
    assert helpers.format_day(day, "pl") == dates.long_day(day, "pl")
    assert helpers.format_day(day.isoformat(), "en") == dates.long_day(day, "en")
    assert "dates.long_day" in inspect.getsource(pdf._date)


def test_invoice_lines_use_the_helper_not_their_own_format() -> None:
    assert "format_date(" not in inspect.getsource(invoicing)
    assert "format_date(" not in inspect.getsource(pdf)
