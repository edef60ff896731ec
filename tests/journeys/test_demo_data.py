"""Point 9 of issue 20: the demo data tells the truth, as ``make run`` starts it.

``flask demo-data`` then ``scripts/devserver.py`` (the ``portal`` fixture): every demo
account with auto-renewal on has a saved card the Stripe emulator can charge off-session,
every demo account has a billing country, each paid one the paid invoice of its current
period, a renewal of the demo goes through, and a second start changes nothing. The
database is read (never written) through a read-only SQLite connection."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

from tests.journeys.conftest import ZONE, Portal


@contextmanager
def database(portal: Portal) -> Iterator[sqlite3.Connection]:
    path = portal.instance / "pakiet.sqlite3"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        yield db


def rows(portal: Portal, sql: str, *args: Any) -> list[sqlite3.Row]:
    with database(portal) as db:
        return list(db.execute(sql, args))


def stripe_post(portal: Portal, path: str, **form: str) -> Any:
    key = portal.ready["plugin_config"]["stripe"]["api_key"]
    request = urllib.request.Request(
        f"{portal.emulator('stripe')}/v1/{path}",
        data=urllib.parse.urlencode(form).encode(),
        headers={"Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


ACCOUNTS = """
    SELECT u.email, s.package, s.period, s.currency, s.auto_renew, s.status,
           s.period_start, s.period_end, b.country, b.street, b.city, b.vat_number, b.vat_status,
           s.account_id
    FROM user_account u JOIN subscription s ON s.account_id = u.account_id
    JOIN billing_info b ON b.account_id = u.account_id
    WHERE u.email LIKE '%@demo.example.com' ORDER BY u.email
"""


def test_every_demo_account_has_a_billing_country_and_address(portal: Portal) -> None:
    found = {r["email"]: r for r in rows(portal, ACCOUNTS)}
    assert set(found) == {
        "free@demo.example.com",
        "standard@demo.example.com",
        "pro@demo.example.com",
    }
    for email, row in found.items():
        assert row["country"] and row["street"] and row["city"], (email, dict(row))
    assert found["free@demo.example.com"]["country"] == "PL"
    assert found["standard@demo.example.com"]["country"] == "PL"
    pro = found["pro@demo.example.com"]
    assert (pro["country"], pro["vat_number"], pro["vat_status"]) == ("DE", "DE812415868", "valid")


def test_each_auto_renewing_demo_account_has_a_card_the_emulator_can_charge(
    portal: Portal,
) -> None:
    renewing = [r for r in rows(portal, ACCOUNTS) if r["auto_renew"]]
    assert {r["email"] for r in renewing} == {
        "standard@demo.example.com",
        "pro@demo.example.com",
    }
    for account in renewing:
        [method] = rows(
            portal,
            "SELECT provider, provider_ref, customer_ref, brand, last4 FROM payment_method"
            " WHERE account_id = ? AND is_default AND removed_at IS NULL",
            account["account_id"],
        )
        assert (method["provider"], method["brand"], method["last4"]) == ("stripe", "visa", "4242")
        at_stripe = portal.stripe(f"payment_methods/{method['provider_ref']}")
        assert at_stripe["customer"] == method["customer_ref"]
        # Charged off-session, as a renewal would be.
        intent = stripe_post(
            portal,
            "payment_intents",
            amount="1000",
            currency=account["currency"].lower(),
            customer=method["customer_ref"],
            payment_method=method["provider_ref"],
            confirm="true",
            off_session="true",
        )
        assert intent["status"] == "succeeded", intent


def test_each_paid_demo_account_has_the_paid_invoice_of_its_current_period(
    portal: Portal,
) -> None:
    paid = [r for r in rows(portal, ACCOUNTS) if r["package"] != "free"]
    assert len(paid) == 2
    for account in paid:
        invoices = rows(
            portal,
            "SELECT i.number, i.issue_date, i.sale_date, i.total_minor, i.currency, p.status,"
            " p.charge_ref, p.amount_minor, o.quote FROM invoice i"
            " JOIN payment p ON p.id = i.payment_id JOIN checkout_order o ON o.id = p.order_id"
            " WHERE i.account_id = ? AND i.kind = 'invoice'",
            account["account_id"],
        )
        assert len(invoices) == 1, account["email"]
        [invoice] = invoices
        quote = json.loads(invoice["quote"])
        assert (quote["period_start"], quote["period_end"]) == (
            account["period_start"],
            account["period_end"],
        )
        assert invoice["issue_date"] == invoice["sale_date"] == account["period_start"]
        assert invoice["status"] == "paid" and invoice["currency"] == account["currency"]
        assert invoice["total_minor"] == invoice["amount_minor"]
        # The payment is at Stripe, refundable: its PaymentIntent succeeded for that amount.
        intent = portal.stripe(f"payment_intents/{invoice['charge_ref']}")
        assert (intent["status"], intent["amount"]) == ("succeeded", invoice["amount_minor"])
    # Reverse charge for Pro's confirmed German VAT number; 23 % for Standard in Poland.
    totals = {
        r["email"]: r["total_minor"]
        for r in rows(
            portal,
            "SELECT u.email, i.total_minor FROM invoice i JOIN user_account u"
            " ON u.account_id = i.account_id",
        )
    }
    assert totals == {"standard@demo.example.com": 32841, "pro@demo.example.com": 340000}


def test_a_renewal_of_the_demo_goes_through_the_emulator(portal: Portal) -> None:
    [standard] = [r for r in rows(portal, ACCOUNTS) if r["email"].startswith("standard@")]
    end = dt.date.fromisoformat(standard["period_end"])
    output = portal.billing_run(dt.datetime.combine(end, dt.time(9), tzinfo=ZONE))
    assert "1 renewed, 0 failed charges" in output, output
    [after] = [r for r in rows(portal, ACCOUNTS) if r["email"].startswith("standard@")]
    assert (after["status"], after["period_start"]) == ("active", end.isoformat())
    [charge] = portal.charges()
    assert (charge["amount"], charge["payment_method"]) == (32841, "pm_demo_standard")
    renewal = rows(
        portal,
        "SELECT i.issue_date, i.total_minor FROM invoice i WHERE i.account_id = ?"
        " ORDER BY i.id DESC LIMIT 1",
        standard["account_id"],
    )
    assert [tuple(r) for r in renewal] == [(end.isoformat(), 32841)]


def test_a_second_start_changes_nothing(portal: Portal) -> None:
    tables = ("billing_info", "checkout_order", "payment", "payment_method", "invoice")

    def state() -> dict[str, list[tuple[Any, ...]]]:
        return {
            table: [tuple(r) for r in rows(portal, f"SELECT * FROM {table}")] for table in tables
        }

    before = state()
    portal.restart()
    assert state() == before
    # and the emulator knows the demo's objects again
    assert portal.stripe("payment_intents/pi_demo_pro")["status"] == "succeeded"
