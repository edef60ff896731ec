"""The payment history (issue 25 point 3): every attempt of the account's own payments and
its refunds, newest first, with the status and the failure's reason in the customer's
language, the method used and the document; 50 a page, at a constant number of statements."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from portal.infra.extensions import db
from tests.web.test_invoice_list import Books, login
from tests.web.test_sql_per_page import counting


@pytest.fixture
def config_overrides():
    """Both providers loaded (they name the methods; nothing here calls them)."""
    return {
        "PLUGIN_CONFIG": {
            "stripe": {
                "api_key": "sk_test_x",
                "webhook_secret": "whsec_x",
                "api_base": "http://127.0.0.1:9",
            },
            "paypal": {
                "client_id": "cid",
                "client_secret": "secret",
                "webhook_id": "WH-1",
                "base_url": "http://127.0.0.1:9",
            },
        }
    }


def at(day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(2026, 3, day, hour, tzinfo=dt.UTC)


@pytest.fixture
def story(app):
    """A first payment by card, a failed renewal, its successful retry (refunded in part by
    staff), a PayPal payment refunded in full with a credit note, one pending; and another
    account's payment."""
    books = Books()
    with app.app_context():
        mine, other = books.customer("mine"), books.customer("other", language="pl")
        first = books.payment(mine, at(1))
        books.invoice(mine, dt.date(2026, 3, 1), payment=first)
        books.payment(mine, at(2), status="failed", renewal=True, failure_code="insufficient_funds")
        retry = books.payment(mine, at(3), renewal=True, refunded_minor=1000)
        books.invoice(mine, dt.date(2026, 3, 3), payment=retry)
        paypal = books.payment(
            mine, at(4), method_id=None, provider="paypal", status="refunded", amount_minor=5000
        )
        paid_by_paypal = books.invoice(mine, dt.date(2026, 3, 4), payment=paypal, total_minor=5000)
        books.invoice(
            mine, dt.date(2026, 3, 5), kind="credit_note", corrects=paid_by_paypal, total_minor=5000
        )
        books.payment(mine, at(6), status="pending")
        books.payment(other, at(7), status="failed", failure_code="card_declined")
        db.session.commit()
        return {"mine": mine, "other": other, "documents": [i.number for i in mine.invoices]}


def rows_of(html: str) -> list[str]:
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip()
        for row in body.split("</tr>")[:-1]
    ]


def test_every_attempt_and_refund_of_the_account_newest_first(app, story):
    client = login(app, story["mine"])
    response = client.get("/payments")
    assert response.status_code == 200
    rows = rows_of(response.get_data(as_text=True))
    first_invoice, retry_invoice, paypal_invoice, credit_note = story["documents"]
    assert len(rows) == 6
    pending, refund, paypal, retry, failed, first = rows
    assert pending.startswith("March 6, 2026") and "Payment" in pending and "Pending" in pending
    assert "Refund" in refund and "-PLN 50.00" in refund.replace("−", "-")
    assert credit_note in refund and "PayPal" in refund
    assert "PayPal" in paypal and "Refunded" in paypal and paypal_invoice in paypal
    assert "Renewal" in retry and "Paid, PLN 10.00 refunded" in retry and retry_invoice in retry
    assert "Visa •••• 4242" in retry
    assert "Renewal" in failed and "Failed" in failed
    assert "The card has insufficient funds. Try another card." in failed
    assert "—" in failed  # no document for a failed attempt
    assert "Payment" in first and "PLN 218.94" in first and first_invoice in first
    # Times are the portal's (Europe/Warsaw): 10:00 UTC in March is 11:00 there.
    assert "11:00 AM" in first
    html = response.get_data(as_text=True)
    assert "p-other" not in html and "card_declined" not in html and "bank declined" not in html


def test_links_open_the_accounts_own_documents(app, story):
    client = login(app, story["mine"])
    html = client.get("/payments").get_data(as_text=True)
    links = re.findall(r'href="(/invoices/[^"]+\.pdf)"', html)
    assert len(links) == 4
    for link in links:
        assert client.get(link).status_code == 200
    assert all(login(app, story["other"]).get(link).status_code == 404 for link in links)


def test_the_history_is_in_the_customers_language(app, story):
    client = login(app, story["other"])  # Polish
    rows = rows_of(client.get("/payments").get_data(as_text=True))
    assert len(rows) == 1
    assert "7 marca 2026" in rows[0] and "Nieudana" in rows[0]
    assert "Twój bank odrzucił kartę." in rows[0]


def test_no_payments_yet(app):
    books = Books()
    with app.app_context():
        fresh = books.customer("fresh")
        db.session.commit()
    html = login(app, fresh).get("/payments").get_data(as_text=True)
    assert "No payments yet." in html


@pytest.fixture
def many(app):
    books = Books()
    with app.app_context():
        small, big = books.customer("small"), books.customer("big")
        for n in range(3):
            books.payment(small, at(1) + dt.timedelta(hours=n))
        for n in range(120):
            payment = books.payment(big, at(1) + dt.timedelta(hours=n))
            if n % 3 == 0:
                books.invoice(big, dt.date(2026, 3, 1), payment=payment)
        db.session.commit()
        return {"small": small, "big": big}


def test_pages_of_50_and_bad_pages(app, many):
    client = login(app, many["big"])
    first = client.get("/payments").get_data(as_text=True)
    assert len(rows_of(first)) == 50 and 'rel="next"' in first and 'rel="prev"' not in first
    third = client.get("/payments?page=3").get_data(as_text=True)
    assert len(rows_of(third)) == 20 and 'rel="next"' not in third
    assert 'href="/payments?page=2" rel="prev"' in third
    for query, status in [("page=4", 404), ("page=99999", 404), ("page=-1", 400), ("page=x", 400)]:
        response = client.get(f"/payments?{query}")
        assert response.status_code == status, query
        assert "Back to the first page" in response.get_data(as_text=True)


def test_the_history_costs_the_same_statements_for_3_and_120_payments(app, many):
    counts = {}
    for name in ("small", "big"):
        client = login(app, many[name])
        assert client.get("/payments").status_code == 200  # warm
        with counting(app) as statements:
            assert client.get("/payments").status_code == 200
        counts[name] = len(statements)
    assert counts["small"] == counts["big"], counts
