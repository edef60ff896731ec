"""SQL per page (issue 9): the pages the benchmark drives run as many statements for an
account with 3 invoices as for one with 40, with other accounts' data in the database.

Counts, not timings: the timings are ``make bench``'s job (``scripts/bench.py``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from werkzeug.security import generate_password_hash

from portal.infra.extensions import db
from portal.infra.models import (
    Invoice,
    InvoiceRendering,
    Payment,
    utcnow,
)
from tests.conftest import PASSWORD, Auth, csrf_token, paid_account_with_card, standard_order

TODAY = dt.date(2026, 11, 26)
PDF = b"%PDF-1.7\n% a stored rendering\n%%EOF\n"


@pytest.fixture
def frozen_today(monkeypatch):
    monkeypatch.setattr("portal.web.checkout.today", lambda: TODAY)


def make_account(name: str, invoices: int, password_hash: str, first_seq: int) -> None:
    """A paid Standard account with a saved card and ``invoices`` paid invoices."""
    now = utcnow()
    account, method = paid_account_with_card(
        name,
        password_hash=password_hash,
        created_at=now,
        confirmed_at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
        street="ul. Długa 5",
        city="Gdańsk",
        language="pl",
    )
    for n in range(invoices):
        created = now - dt.timedelta(days=30 * (invoices - n))
        order = standard_order(
            public_id=f"o-{name}-{n}",
            account_id=account.id,
            idempotency_key=f"k-{name}-{n}",
            status="paid",
            subtotal_minor=17800,
            net_minor=17800,
            vat_minor=4094,
            total_minor=21894,
            created_at=created,
            expires_at=created + dt.timedelta(days=30),
        )
        db.session.add(order)
        db.session.flush()
        payment = Payment(
            public_id=f"p-{name}-{n}",
            account_id=account.id,
            order_id=order.id,
            method_id=method.id,
            provider="stripe",
            provider_ref=f"pi_{name}_{n}",
            charge_ref=f"pi_{name}_{n}",
            idempotency_key=f"k-{name}-{n}",
            status="paid",
            amount_minor=21894,
            currency="PLN",
            created_at=created,
            settled_at=created,
        )
        db.session.add(payment)
        db.session.flush()
        seq = first_seq + n
        invoice = Invoice(
            public_id=f"i-{name}-{n}",
            account_id=account.id,
            seller_key="PL5260250274",
            series="FV",
            year=2026,
            seq=seq,
            number=f"FV/2026/{seq:06d}",
            payment_id=payment.id,
            issue_date=created.date(),
            sale_date=created.date(),
            currency="PLN",
            language="pl",
            net_minor=17800,
            vat_minor=4094,
            total_minor=21894,
            content={},
            xml=b"<rsm:CrossIndustryInvoice/>",
            note="PO 4711" if n % 2 else None,
            created_at=created,
        )
        db.session.add(invoice)
        db.session.flush()
        db.session.add(InvoiceRendering(invoice_id=invoice.id, pdf=PDF, rendered_at=created))


@pytest.fixture
def accounts(app, frozen_today) -> None:
    """Small (3 invoices) and big (40), among other accounts with invoices of their own."""
    password_hash = generate_password_hash(PASSWORD)
    with app.app_context():
        seq = 1
        for name, count in [("other1", 5), ("small", 3), ("other2", 12), ("big", 40)]:
            make_account(name, count, password_hash, seq)
            seq += count
        db.session.commit()


@contextmanager
def counting(app) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def page_statements(app, client, name: str) -> dict[str, list[str]]:
    """The statements each benchmarked page runs for the logged-in account ``name``."""
    assert Auth(client).login(f"{name}@firma.example.com").status_code == 302
    token = csrf_token(client, "/package/edit")
    form = {
        "csrf_token": token,
        "package": "standard",
        "period": "month",
        "agents": "3",
        "conversations": "100",
        "currency": "PLN",
    }
    html = client.get("/invoices").get_data(as_text=True)
    pdf_link = re.search(r'href="(/invoices/[^"]+\.pdf)"', html)
    assert pdf_link, "no PDF link on the invoices page"
    requests = {
        "summary": lambda: client.post(
            "/package/summary", data=form, headers={"HX-Request": "true"}
        ),
        "my package": lambda: client.get("/package"),
        "invoices": lambda: client.get("/invoices"),
        "pdf": lambda: client.get(pdf_link.group(1)),
    }
    counts = {}
    for page, request in requests.items():
        assert request().status_code == 200  # warm: first-request work is not per page
        with counting(app) as statements:
            response = request()
        assert response.status_code == 200, page
        counts[page] = statements
    return counts


def test_sql_per_page_does_not_grow_with_the_number_of_invoices(app, accounts):
    small = page_statements(app, app.test_client(), "small")
    big = page_statements(app, app.test_client(), "big")

    assert big["invoices"] and big["pdf"]
    for page in small:
        assert len(big[page]) == len(small[page]), (page, small[page], big[page])


def test_the_invoices_page_lists_every_invoice_of_the_big_account(app, accounts):
    client = app.test_client()
    assert Auth(client).login("big@firma.example.com").status_code == 302
    html = client.get("/invoices").get_data(as_text=True)
    assert len(re.findall(r'href="/invoices/i-big-\d+\.pdf"', html)) == 40
    assert "i-small-" not in html and "i-other" not in html


def test_a_pdf_downloaded_again_is_one_narrow_statement_without_its_bytes(app, accounts):
    """The copy is kept per process by what decides its bytes (portal/web/copy_cache.py):
    downloaded again, it costs one statement, the user's with the copy's facts (joined on the
    user's account), which reads no PDF."""
    client = app.test_client()
    assert Auth(client).login("small@firma.example.com").status_code == 302
    first = client.get("/invoices/i-small-0.pdf")
    assert first.status_code == 200 and first.data == PDF
    with counting(app) as statements:
        again = client.get("/invoices/i-small-0.pdf")
    assert (again.status_code, again.data, again.headers["ETag"]) == (
        200,
        PDF,
        first.headers["ETag"],
    )
    assert len(statements) == 1, statements  # the user with the copy's facts
    assert "FROM user_account" in statements[0] and "invoice_rendering" in statements[0]
    assert not any("invoice_rendering.pdf" in s for s in statements), statements
    # Someone else's invoice stays a 404, cached or not.
    other = app.test_client()
    assert Auth(other).login("big@firma.example.com").status_code == 302
    assert other.get("/invoices/i-small-0.pdf").status_code == 404
    assert other.get("/invoices/no-such-invoice.pdf").status_code == 404


def test_a_note_saved_after_a_download_reaches_the_next_download(app, accounts):
    client = app.test_client()
    assert Auth(client).login("small@firma.example.com").status_code == 302
    first = client.get("/invoices/i-small-0.pdf")
    with app.app_context():
        invoice = db.session.scalar(sa.select(Invoice).where(Invoice.public_id == "i-small-0"))
        db.session.add(InvoiceRendering(invoice_id=invoice.id, pdf=PDF + b"% note\n"))
        db.session.commit()
    again = client.get("/invoices/i-small-0.pdf")
    assert again.data == PDF + b"% note\n" and again.headers["ETag"] != first.headers["ETag"]


def test_the_copy_cache_keeps_to_its_size_and_evicts_the_least_recently_used() -> None:
    from portal.web.copy_cache import CopyCache

    cache = CopyCache(max_bytes=10)
    cache.put("a", b"aaaa")
    cache.put("b", b"bbbb")
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", b"cccc")  # 12 bytes: b goes
    assert (cache.get("b"), len(cache), cache.size) == (None, 2, 8)
    assert cache.get("a").body == b"aaaa" and cache.get("c").body == b"cccc"
    served = cache.put("big", b"x" * 11)  # larger than the cache: served, not kept
    assert served.body == b"x" * 11 and cache.get("big") is None
    assert CopyCache(max_bytes=0).put("a", b"a").etag  # switched off: nothing kept
