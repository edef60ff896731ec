"""Buying through PayPal end to end: checkout, the emulator's approval page, capture on
return, webhooks, the vaulted account for later charges, with the real SDK."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from pakiet_paypal.emulator import PayPalEmulator
from portal import demo
from portal.infra.extensions import db
from portal.infra.models import Payment, PaymentMethod, PaymentStatus, User
from tests.conftest import csrf_token

TODAY = dt.date(2026, 11, 26)


@pytest.fixture
def paypal() -> Iterator[PayPalEmulator]:
    with PayPalEmulator(client_id="cid", client_secret="secret", webhook_id="WH-1") as emulator:
        yield emulator


@pytest.fixture
def config_overrides(paypal):
    return {
        "PLUGIN_CONFIG": {
            "paypal": {
                "client_id": "cid",
                "client_secret": "secret",
                "webhook_id": "WH-1",
                "base_url": paypal.base_url,
                "timeout": 5,
            }
        }
    }


@pytest.fixture
def free(app, client, auth, catalogue, monkeypatch):
    monkeypatch.setattr("portal.web.checkout.today", lambda: TODAY)
    with app.app_context():
        demo.load(catalogue, today=TODAY)
    assert auth.login("free@demo.example.com", demo.PASSWORD).status_code == 302
    return client


def text(response) -> str:
    return response.get_data(as_text=True).replace("\xa0", " ")


def press_pay(client, **fields):
    data = {
        "csrf_token": csrf_token(client, "/package/edit"),
        "package": "pro",
        "period": "month",
        "agents": "2",
        "conversations": "500",
        "currency": "PLN",
        "provider": "paypal",
    }
    data.update(fields)
    summary = text(client.post("/package/summary", data=data, headers={"HX-Request": "true"}))
    digest = re.search(r'name="quote_digest" value="([0-9a-f]*)"', summary).group(1)
    key = re.search(r'name="idempotency_key" value="([^"]+)"', text(client.get("/package/edit")))
    data.update(action="pay", quote_digest=digest, idempotency_key=key.group(1))
    return client.post("/package/edit", data=data)


def follow(client, url: str):
    parts = urlsplit(url)
    return client.get(parts.path + "?" + parts.query)


def order_id(response) -> str:
    assert response.status_code == 303
    return parse_qs(urlsplit(response.headers["Location"]).query)["token"][0]


def rows(app):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "free@demo.example.com"))
        sub = user.account.subscription
        methods = db.session.scalars(select(PaymentMethod)).all()
        pays = db.session.scalars(select(Payment).order_by(Payment.id)).all()
        db.session.expunge_all()
        return sub, methods, pays


def test_buy_pro_with_paypal(app, free, paypal):
    response = press_pay(free)
    assert response.headers["Location"].startswith(paypal.base_url)
    back = follow(free, paypal.approve(order_id(response), email="anna@buyer.test"))
    assert back.headers["Location"] == "/package"
    sub, methods, pays = rows(app)
    assert (sub.package, sub.agents, sub.conversations, sub.currency) == ("pro", 2, 500, "PLN")
    assert [(m.brand, m.email) for m in methods] == [("paypal", "anna@buyer.test")]
    # 2 agents x PLN 129.00 + 23 % VAT
    assert (pays[0].status, pays[0].amount_minor) == (PaymentStatus.PAID, 31734)
    assert "PayPal (anna@buyer.test)" in text(free.get("/package"))


def test_a_declined_paypal_payment_says_why(app, free, paypal):
    response = press_pay(free)
    back = follow(free, paypal.approve(order_id(response), email="declined@buyer.test"))
    page = text(free.get(back.headers["Location"]))
    assert "PayPal odrzucił płatność" in page
    sub, methods, pays = rows(app)
    assert (sub.package, methods, pays[0].status) == ("free", [], PaymentStatus.FAILED)


def test_the_vaulted_account_pays_the_next_change(app, free, paypal):
    follow(free, paypal.approve(order_id(press_pay(free)), email="anna@buyer.test"))
    response = press_pay(free, agents="3")
    assert response.headers["Location"] == "/package"
    sub, _methods, pays = rows(app)
    assert sub.agents == 3
    assert [p.status for p in pays] == ["paid", "paid"]


def test_the_capture_webhook_after_the_return_changes_nothing(app, free, paypal):
    follow(free, paypal.approve(order_id(press_pay(free)), email="anna@buyer.test"))
    version = rows(app)[0].version
    [capture] = paypal.captures.values()
    body, headers = paypal.signed_notification("PAYMENT.CAPTURE.COMPLETED", capture)
    first = free.post("/webhooks/paypal", data=body, headers=headers)
    again = free.post("/webhooks/paypal", data=body, headers=headers)
    assert first.get_json()["outcome"] == "already_settled"
    assert again.get_json()["outcome"] == "duplicate"
    tampered = free.post(
        "/webhooks/paypal", data=body.replace(b"COMPLETED", b"DECLINED"), headers=headers
    )
    assert tampered.status_code == 400
    assert rows(app)[0].version == version
