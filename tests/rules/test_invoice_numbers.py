"""Gapless invoice numbers per seller, series and year, safe under concurrent issuing."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.infra.extensions import db
from portal.infra.models import InvoiceSequence
from portal.rules import invoicing
from tests.conftest import at_once


def claim(app, seller="PL5260250274", series="FV", year=2026, rollback=False) -> int:
    with app.app_context():
        value = invoicing.next_number(seller, series, year)
        if rollback:
            db.session.rollback()
        else:
            db.session.commit()
        db.session.remove()
        return value


def test_numbers_start_at_one_per_seller_series_and_year(app):
    assert [claim(app) for _ in range(3)] == [1, 2, 3]
    assert claim(app, series="FVK") == 1
    assert claim(app, year=2027) == 1
    assert claim(app, seller="CZ12345678") == 1
    assert claim(app) == 4


def test_a_rolled_back_issue_leaves_no_gap(app):
    assert claim(app) == 1
    assert claim(app, rollback=True) == 2
    assert claim(app) == 2


def test_number_format():
    assert invoicing.format_number("FV", 2026, 42) == "FV/2026/000042"


@pytest.mark.postgres
def test_parallel_issuers_get_one_to_n_without_gaps_or_duplicates(app):
    issuers, rounds = 24, 5

    def issue() -> list[int]:
        return [claim(app) for _ in range(rounds)]

    got = [value for values in at_once(issuers, issue, timeout=30) for value in values]
    assert sorted(got) == list(range(1, issuers * rounds + 1))
    with app.app_context():
        assert db.session.scalar(select(InvoiceSequence.last_value)) == issuers * rounds
