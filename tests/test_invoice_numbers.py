"""Gapless invoice numbers per seller, series and year, safe under concurrent issuing."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from portal import invoicing
from portal.extensions import db
from portal.models import InvoiceSequence


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
    barrier = threading.Barrier(issuers, timeout=30)
    got: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def issue() -> None:
        try:
            barrier.wait()
            for _ in range(rounds):
                value = claim(app)
                with lock:
                    got.append(value)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=issue) for _ in range(issuers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(got) == list(range(1, issuers * rounds + 1))
    with app.app_context():
        assert db.session.scalar(select(InvoiceSequence.last_value)) == issuers * rounds
