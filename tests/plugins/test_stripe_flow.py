"""Buying through Stripe end to end: checkout, the emulator's hosted page, the return,
webhooks, saved cards and 3-D Secure, with the real SDK inside the plugin."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from pakiet_stripe.client import StripeProvider
from pakiet_stripe.emulator import StripeEmulator
from portal import demo
from portal.infra.extensions import db
from portal.infra.models import (
    Invoice,
    Order,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Subscription,
    User,
)
from portal.rules.money import Money
from tests.conftest import csrf_token

API_KEY = "sk_test_pakiet_flow"
SECRET = "whsec_pakiet_flow"
TODAY = dt.date(2026, 11, 26)


@pytest.fixture
def stripe_emulator() -> Iterator[StripeEmulator]:
    with StripeEmulator(api_key=API_KEY, webhook_secret=SECRET) as emulator:
        yield emulator


@pytest.fixture
def config_overrides(stripe_emulator):
    return {
        "MAIL_BACKEND": "locmem",
        "PLUGIN_CONFIG": {
            "stripe": {
                "api_key": API_KEY,
                "webhook_secret": SECRET,
                "api_base": stripe_emulator.base_url,
                "max_network_retries": 0,
                "timeout": 5,
            }
        },
    }


@pytest.fixture
def login(app, client, auth, catalogue, monkeypatch):
    monkeypatch.setattr("portal.web.checkout.today", lambda: TODAY)
    with app.app_context():
        demo.load(catalogue, today=TODAY)

    def as_(who: str):
        assert auth.login(f"{who}@demo.example.com", demo.PASSWORD).status_code == 302
        return client

    return as_


def text(response) -> str:
    return response.get_data(as_text=True).replace("\xa0", " ")


def press_pay(client, **fields):
    data = {
        "csrf_token": csrf_token(client, "/package/edit"),
        "package": "standard",
        "period": "month",
        "agents": "3",
        "conversations": "100",
        "currency": "PLN",
        "provider": "stripe",
    }
    data.update(fields)
    summary = text(client.post("/package/summary", data=data, headers={"HX-Request": "true"}))
    digest = re.search(r'name="quote_digest" value="([0-9a-f]*)"', summary).group(1)
    key = re.search(r'name="idempotency_key" value="([^"]+)"', text(client.get("/package/edit")))
    data.update(action="pay", quote_digest=digest, idempotency_key=key.group(1))
    return client.post("/package/edit", data=data)


def follow(client, url: str):
    parts = urlsplit(url)
    return client.get(parts.path + ("?" + parts.query if parts.query else ""))


def account_rows(app, email: str):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        sub = user.account.subscription
        methods = db.session.scalars(
            select(PaymentMethod).where(PaymentMethod.account_id == user.account_id)
        ).all()
        pays = db.session.scalars(
            select(Payment).where(Payment.account_id == user.account_id).order_by(Payment.id)
        )
        pays = pays.all()
        db.session.expunge_all()
        return sub, methods, pays


def test_first_purchase_with_a_visa(app, login, stripe_emulator):
    client = login("free")
    response = press_pay(client, agents="2", currency="EUR")
    assert response.status_code == 303
    session_id = response.headers["Location"].rsplit("/", 1)[1]
    assert response.headers["Location"].startswith(stripe_emulator.base_url + "/c/pay/")
    outcome = stripe_emulator.pay(session_id, card="4242424242424242")
    assert outcome.status == "succeeded"
    back = follow(client, outcome.redirect_url)
    assert back.headers["Location"] == "/package"
    sub, methods, pays = account_rows(app, "free@demo.example.com")
    assert (sub.package, sub.agents, sub.currency, sub.auto_renew) == ("standard", 2, "EUR", True)
    assert [(m.brand, m.last4, m.is_default) for m in methods] == [("visa", "4242", True)]
    [payment] = pays
    # 2 agents x EUR 20.00; a Polish seller charges a buyer of unknown country 23 % VAT
    assert (payment.status, payment.amount_minor, payment.currency) == ("paid", 4920, "EUR")
    page = text(client.get("/package"))
    assert "Visa •••• 4242" in page and "Dziękujemy!" in page
    # A Polish seller's EUR invoice states the VAT in PLN at the NBP rate of the day before.
    with app.app_context():
        invoice = db.session.scalar(select(Invoice))
    pln = invoice.content["vat_in_pln"]
    assert pln["table"].endswith("/A/NBP/2026") and pln["rate_date"] < invoice.content["sale_date"]
    assert Money(920, "PLN") * Decimal(pln["rate"]) == Money(pln["amount"]["minor"], "PLN")


def test_webhook_replays_after_the_return_activate_once(app, login, stripe_emulator):
    client = login("free")
    session_id = press_pay(client, agents="2").headers["Location"].rsplit("/", 1)[1]
    outcome = stripe_emulator.pay(session_id, card="5555555555554444")
    follow(client, outcome.redirect_url)
    version = account_rows(app, "free@demo.example.com")[0].version
    event = next(e for e in stripe_emulator.events if e["type"] == "checkout.session.completed")
    body = json.dumps(event).encode()
    headers = {"Stripe-Signature": stripe_emulator.sign(body), "Content-Type": "application/json"}
    outcomes = [
        client.post("/webhooks/stripe", data=body, headers=headers).get_json()["outcome"]
        for _ in range(3)
    ]
    assert outcomes == ["already_settled", "duplicate", "duplicate"]
    assert account_rows(app, "free@demo.example.com")[0].version == version
    forged = client.post("/webhooks/stripe", data=body + b" ", headers=headers)
    assert forged.status_code == 400


def test_a_declined_card_says_why_and_nothing_is_activated(app, login, stripe_emulator):
    client = login("free")
    response = press_pay(client, agents="2")
    session_id = response.headers["Location"].rsplit("/", 1)[1]
    outcome = stripe_emulator.pay(session_id, card="4000000000000002")
    assert outcome.status == "declined"
    # The customer gives up on the hosted page and comes back through cancel_url.
    with app.app_context():
        payment = db.session.scalar(select(Payment))
        cancel = f"/payments/{payment.public_id}/cancel"
    page = text(client.get(client.get(cancel).headers["Location"]))
    # Leaving after a decline says why the card did not go through, not only that they left.
    assert "Twój bank odrzucił kartę. Użyj innej karty lub innej metody płatności." in page
    assert "Anulowano płatność" not in page
    sub, methods, pays = account_rows(app, "free@demo.example.com")
    assert (sub.package, methods, pays[0].status) == ("free", [], PaymentStatus.FAILED)
    assert pays[0].failure_code == "generic_decline"


def test_leaving_the_hosted_page_without_trying_a_card_is_a_cancellation(
    app, login, stripe_emulator
):
    client = login("free")
    press_pay(client, agents="2")
    with app.app_context():
        payment = db.session.scalar(select(Payment))
        cancel = f"/payments/{payment.public_id}/cancel"
    page = text(client.get(client.get(cancel).headers["Location"]))
    assert "Anulowano płatność" in page
    sub, _methods, pays = account_rows(app, "free@demo.example.com")
    assert (sub.package, pays[0].status) == ("free", PaymentStatus.FAILED)


def test_a_later_change_charges_the_saved_card_off_session(app, login, stripe_emulator):
    client = login("free")
    session_id = press_pay(client, agents="2").headers["Location"].rsplit("/", 1)[1]
    follow(client, stripe_emulator.pay(session_id, card="4242424242424242").redirect_url)
    response = press_pay(client, agents="4")
    assert response.headers["Location"] == "/package"  # no hosted page: the card is saved
    sub, methods, pays = account_rows(app, "free@demo.example.com")
    assert sub.agents == 4
    assert [p.status for p in pays] == ["paid", "paid"]
    assert pays[1].method_id == methods[0].id


def test_an_off_session_charge_that_needs_3ds_sends_the_customer_to_authenticate(
    app, login, stripe_emulator
):
    client = login("free")
    session_id = press_pay(client, agents="2").headers["Location"].rsplit("/", 1)[1]
    assert stripe_emulator.pay(session_id, card="4000002760003184").status == "requires_action"
    follow(client, stripe_emulator.authenticate(session_id).redirect_url)
    response = press_pay(client, agents="4")
    location = response.headers["Location"]
    assert location.startswith(stripe_emulator.base_url)  # the bank's authentication page
    with app.app_context():
        payment = db.session.scalars(select(Payment).order_by(Payment.id.desc())).first()
        assert payment.status == PaymentStatus.PENDING and payment.action_url == location
        intent = payment.provider_ref or ""
    assert intent.startswith("pi_")
    outbox = app.extensions["mailman"].outbox
    [message] = [m for m in outbox if "Potwierdź" in m.subject]  # the link also goes by e-mail
    assert message.subject.replace("\xa0", " ") == "Potwierdź płatność 218,94 zł"
    assert location in message.body and message.to == ["free@demo.example.com"]
    done = stripe_emulator.authenticate(intent)
    follow(client, done.redirect_url)
    sub, _methods, pays = account_rows(app, "free@demo.example.com")
    assert sub.agents == 4
    assert [p.status for p in pays] == ["paid", "paid"]


def test_orders_are_unchanged_by_a_provider_outage(app, login, stripe_emulator):
    client = login("free")
    stripe_emulator.fail_next(500, count=5)
    response = press_pay(client, agents="2")
    page = text(client.get(response.headers["Location"]))
    assert "Operator płatności nie odpowiedział" in page
    with app.app_context():
        assert db.session.scalar(select(Order.status)) == "pending"
    sub = account_rows(app, "free@demo.example.com")[0]
    assert sub.package == "free"
    assert isinstance(sub, Subscription)


def test_replacing_the_card_through_the_hosted_setup_page(app, login, stripe_emulator):
    client = login("free")
    session_id = press_pay(client, agents="2").headers["Location"].rsplit("/", 1)[1]
    follow(client, stripe_emulator.pay(session_id, card="4242424242424242").redirect_url)
    token = csrf_token(client, "/payment-methods")
    response = client.post("/payment-methods/new", data={"csrf_token": token, "provider": "stripe"})
    assert response.headers["Location"].startswith(stripe_emulator.base_url)
    setup_id = response.headers["Location"].rsplit("/", 1)[1]
    outcome = stripe_emulator.pay(setup_id, card="5555555555554444", exp="08/31")
    back = follow(client, outcome.redirect_url)
    page = text(client.get(back.headers["Location"]))
    assert "Nowa metoda płatności została zapisana" in page
    _sub, methods, _pays = account_rows(app, "free@demo.example.com")
    default = [m for m in methods if m.is_default]
    assert [(m.brand, m.last4, m.exp_month, m.exp_year) for m in default] == [
        ("mastercard", "4444", 8, 2031)
    ]
    assert "Mastercard •••• 4444 (08/2031)" in page


def test_an_amex_cannot_become_the_saved_method(app, login, stripe_emulator):
    client = login("free")
    token = csrf_token(client, "/payment-methods")
    response = client.post("/payment-methods/new", data={"csrf_token": token, "provider": "stripe"})
    setup_id = response.headers["Location"].rsplit("/", 1)[1]
    outcome = stripe_emulator.pay(setup_id, card="378282246310005")
    # Stripe's page refuses blocked brands itself, with its own message.
    assert (outcome.status, outcome.redirect_url) == ("invalid", None)
    assert outcome.message
    assert account_rows(app, "free@demo.example.com")[1] == []


def test_a_webhook_landing_during_the_return_is_applied_once(
    app, login, stripe_emulator, monkeypatch
):
    """The return view loaded the payment before the webhook committed: the lock must see
    the webhook's work, not re-apply the success (which would refund a good payment)."""
    client = login("free")
    session_id = press_pay(client, agents="2").headers["Location"].rsplit("/", 1)[1]
    outcome = stripe_emulator.pay(session_id, card="4242424242424242")
    event = next(e for e in stripe_emulator.events if e["type"] == "checkout.session.completed")
    body = json.dumps(event).encode()
    headers = {"Stripe-Signature": stripe_emulator.sign(body), "Content-Type": "application/json"}
    original = StripeProvider.complete_return
    answers: list[str] = []

    def return_meanwhile_webhook(self, **kwargs):
        result = original(self, **kwargs)
        other = app.test_client()  # another request, committed while the return waits
        worker = threading.Thread(
            target=lambda: answers.append(
                other.post("/webhooks/stripe", data=body, headers=headers).get_json()["outcome"]
            )
        )
        worker.start()
        worker.join()
        return result

    monkeypatch.setattr(StripeProvider, "complete_return", return_meanwhile_webhook)
    back = follow(client, outcome.redirect_url)
    assert answers == ["applied"]
    assert back.headers["Location"] == "/package"
    sub, _methods, pays = account_rows(app, "free@demo.example.com")
    assert (sub.package, pays[0].status, pays[0].refunded_minor) == ("standard", "paid", 0)
    with app.app_context():
        assert db.session.scalar(select(Order.status)) == "paid"
    assert stripe_emulator.objects("refund") == []


def test_a_provider_error_on_a_saved_card_charge_ends_the_attempt(app, login, stripe_emulator):
    """The saved card's off-session charge gets no answer: nothing stays "pending", the
    order page says what happened, and Pay again charges once."""
    client = login("free")
    session_id = press_pay(client, agents="2").headers["Location"].rsplit("/", 1)[1]
    follow(client, stripe_emulator.pay(session_id, card="4242424242424242").redirect_url)
    stripe_emulator.fail_next(500)
    response = press_pay(client, agents="4")
    order_page = response.headers["Location"]
    assert order_page.startswith("/package/orders/")
    page = text(client.get(order_page))
    assert page.count("Operator płatności nie odpowiedział") == 1
    package = text(client.get("/package"))
    assert "Płatność w toku" not in package and 'hx-trigger="every 2s"' not in package
    assert "Operator płatności nie odpowiedział" in package  # the last attempt, and why
    sub, _methods, pays = account_rows(app, "free@demo.example.com")
    assert sub.agents == 2 and [p.status for p in pays] == ["paid", "failed"]
    token = csrf_token(client, order_page)
    again = client.post(order_page + "/pay", data={"csrf_token": token, "provider": "stripe"})
    assert again.headers["Location"] == "/package"
    sub, _methods, pays = account_rows(app, "free@demo.example.com")
    assert sub.agents == 4 and [p.status for p in pays] == ["paid", "failed", "paid"]
    charged = [i for i in stripe_emulator.objects("payment_intent") if i["status"] == "succeeded"]
    assert len(charged) == 2  # the first purchase and this change: one charge each


def test_an_abandoned_checkout_is_closed_at_stripe_after_its_expiry(app, login, stripe_emulator):
    from portal.rules import lifecycle

    client = login("free")
    session_id = press_pay(client, agents="2").headers["Location"].rsplit("/", 1)[1]
    with app.app_context():
        expires_at = db.session.scalar(select(Order.expires_at))
        report = lifecycle.run_now(expires_at + dt.timedelta(minutes=1))
    assert report.expired == 1
    [session] = [s for s in stripe_emulator.objects("checkout.session") if s["id"] == session_id]
    assert session["status"] == "expired"  # the hosted page can no longer take money
    _sub, _methods, pays = account_rows(app, "free@demo.example.com")
    assert [(p.status, p.failure_code) for p in pays] == [("failed", "expired")]
    assert stripe_emulator.pay(session_id, card="4242424242424242").status == "closed"


# -- tax decided at payment time (DESIGN.md section 2) --------------------------------------


def _us_buyer(app, email: str) -> None:
    from portal.infra.models import BillingInfo

    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        billing = db.session.scalar(
            select(BillingInfo).where(BillingInfo.account_id == user.account_id)
        )
        billing.country, billing.street, billing.postcode, billing.city = (
            "US",
            "350 Fifth Avenue",
            "10118",
            "New York",
        )
        billing.vat_number = billing.vat_status = None
        db.session.commit()


def _to_warsaw(client):
    data = {
        "csrf_token": csrf_token(client, "/billing"),
        "company_name": "Kwiaciarnia Bratek",
        "street": "ul. Marszałkowska 10",
        "postcode": "00-590",
        "city": "Warszawa",
        "country": "PL",
        "vat_number": "",
        "invoice_email": "free@demo.example.com",
    }
    response = client.post("/billing", data=data)
    assert response.status_code == 303, text(response)


def test_a_billing_change_that_changes_the_tax_closes_the_open_checkout_session(
    app, login, stripe_emulator
):
    client = login("free")
    _us_buyer(app, "free@demo.example.com")
    session_id = press_pay(client, agents="2").headers["Location"].rsplit("/", 1)[1]
    with app.app_context():
        order = db.session.scalar(select(Order))
    assert (order.tax_treatment, order.vat_minor) == ("outside_eu", 0)
    _to_warsaw(client)
    [session] = [s for s in stripe_emulator.objects("checkout.session") if s["id"] == session_id]
    assert session["status"] == "expired"  # the hosted page can no longer take the 0 % price
    assert stripe_emulator.pay(session_id, card="4242424242424242").status == "closed"
    sub, _methods, pays = account_rows(app, "free@demo.example.com")
    assert [(p.status, p.failure_code) for p in pays] == [("failed", "tax_changed")]
    assert sub.package == "free"
    page = text(client.get(f"/package/orders/{order.public_id}"))
    assert "To zamówienie zostało anulowane: po jego złożeniu zmieniły się dane" in page
    with app.app_context():
        assert db.session.scalar(select(Invoice)) is None


def test_a_stale_session_paid_before_the_change_is_refunded_not_invoiced(
    app, login, stripe_emulator
):
    """Captured at Stripe as a US buyer; the country is Poland by the time Stripe reports
    it: the webhook refunds it in full and no invoice pairs a Warsaw buyer with 0 % VAT."""
    client = login("free")
    _us_buyer(app, "free@demo.example.com")
    session_id = press_pay(client, agents="2").headers["Location"].rsplit("/", 1)[1]
    outcome = stripe_emulator.pay(session_id, card="4242424242424242")
    assert outcome.status == "succeeded"
    with app.app_context():  # the buyer data changed meanwhile (another tab, a VIES re-check)
        from portal.infra.models import BillingInfo

        billing = db.session.scalar(select(BillingInfo).where(BillingInfo.country == "US"))
        billing.country, billing.city = "PL", "Warszawa"
        db.session.commit()
    event = next(e for e in stripe_emulator.events if e["type"] == "checkout.session.completed")
    body = json.dumps(event).encode()
    headers = {"Stripe-Signature": stripe_emulator.sign(body), "Content-Type": "application/json"}
    response = client.post("/webhooks/stripe", data=body, headers=headers)
    assert response.get_json()["outcome"] == "stale"
    sub, _methods, pays = account_rows(app, "free@demo.example.com")
    assert [(p.status, p.failure_code) for p in pays] == [("refunded", "tax_changed")]
    assert [r["amount"] for r in stripe_emulator.objects("refund")] == [pays[0].amount_minor]
    assert sub.package == "free"
    # The customer's return lands on the order, which says the money went back and why.
    back = follow(client, outcome.redirect_url)
    page = text(client.get(back.headers["Location"]))
    assert "więc płatność została zwrócona w całości" in page
    with app.app_context():
        assert db.session.scalar(select(Invoice)) is None
