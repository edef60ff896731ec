"""'Payment pending' never sticks (R9, issue 20): an abandoned checkout, a provider error on a
saved-card charge and a declined payment all end in a state the customer understands.

My package shows "payment pending" (and polls) only while the attempt's order can still be
paid: at most until the order's expiry, whatever the provider does. The background run then
closes the attempt at the provider and ends it as expired; the customer reads why on My
package. Tested with the clock moved forward."""

from __future__ import annotations

import datetime as dt

from portal.infra.models import Order, OrderStatus, Payment, PaymentStatus, utcnow
from portal.rules import lifecycle
from tests.rules.test_payments import (
    bank_token,
    config_overrides,
    only,
    place_and_pay,
    standard,
    text,
    transfer24,
    webhook,
)

POLLS = 'hx-trigger="every 2s"'
PENDING = "Płatność w toku"

__all__ = ["config_overrides", "standard", "transfer24"]  # fixtures reused


def my_package(client) -> str:
    return text(client.get("/package"))


def test_an_abandoned_checkout_stops_being_pending_at_its_expiry(
    app, standard, transfer24, monkeypatch
):
    token = bank_token(place_and_pay(standard, agents="5"))
    page = my_package(standard)
    assert PENDING in page and POLLS in page
    [order] = only(app, Order)
    # The customer never comes back from the bank. A minute after the order's expiry My
    # package no longer says "pending" nor polls, even before any background run.
    later = order.expires_at + dt.timedelta(minutes=1)
    monkeypatch.setattr("portal.web.account.utcnow", lambda: later)
    page = my_package(standard)
    assert PENDING not in page and POLLS not in page
    assert "Strona płatności wygasła. Nic nie zostało pobrane" in page
    assert 'href="/package/edit"' in page  # the order itself can no longer be paid
    # The background run closes the attempt and its order.
    with app.app_context():
        report = lifecycle.run_now(later)
    assert report.expired == 1
    [payment] = only(app, Payment)
    assert (payment.status, payment.failure_code) == (PaymentStatus.FAILED, "expired")
    assert only(app, Order)[0].status == OrderStatus.FAILED
    # Paying at the bank after that is money for a closed order: refunded, not activated.
    transfer24.decide(token, "pay")
    assert webhook(standard, transfer24, token).status_code == 200
    [payment] = only(app, Payment)
    assert (payment.status, payment.failure_code) == (PaymentStatus.REFUNDED, "quote_stale")
    assert only(app, Order)[0].status == OrderStatus.FAILED
    assert "Standard" in my_package(standard) and "3 agentów" in my_package(standard)


def test_before_its_expiry_the_checkout_is_left_alone(app, standard, transfer24):
    bank_token(place_and_pay(standard, agents="5"))
    [order] = only(app, Order)
    with app.app_context():
        report = lifecycle.run_now(order.expires_at - dt.timedelta(minutes=1))
    assert report.expired == 0
    assert only(app, Payment)[0].status == PaymentStatus.PENDING
    assert PENDING in my_package(standard)


def test_a_declined_payment_is_not_pending_and_says_why(app, standard, transfer24):
    from tests.rules.test_payments import back_from_bank

    token = bank_token(place_and_pay(standard, agents="5"))
    back_from_bank(standard, transfer24, token, action="decline")
    page = my_package(standard)
    assert PENDING not in page and POLLS not in page
    assert "Twoja ostatnia płatność" in page and "nie doszła do skutku" in page
    assert f'href="/package/orders/{only(app, Order)[0].public_id}"' in page  # pay again


def test_the_attempt_shown_is_the_latest_one(app, standard, transfer24):
    from tests.rules.test_payments import back_from_bank

    token = bank_token(place_and_pay(standard, agents="5"))
    back_from_bank(standard, transfer24, token, action="pay")
    page = my_package(standard)
    assert PENDING not in page and "nie doszła do skutku" not in page
    with app.app_context():
        assert lifecycle.run_now(utcnow() + dt.timedelta(hours=1)).expired == 0


def test_the_latest_attempt_is_the_newest_payment_even_on_an_older_order(app, standard, transfer24):
    """A retry on the first order after a second one failed: the retry is what happened last
    (My package reads the newest payment of the day's orders, not the newest order's)."""
    from portal.infra.extensions import db

    bank_token(place_and_pay(standard, agents="5"))
    with app.app_context():
        first = db.session.get(Payment, only(app, Payment)[0].id)
        order = db.session.get(Order, first.order_id)
        second = Order(
            **{
                c.key: getattr(order, c.key)
                for c in Order.__table__.columns
                if c.key not in ("id", "public_id", "idempotency_key", "created_at")
            },
            public_id="second-order",
            idempotency_key="second",
            created_at=order.created_at + dt.timedelta(seconds=30),
        )
        db.session.add(second)
        db.session.flush()
        declined = dict(
            account_id=first.account_id,
            provider=first.provider,
            amount_minor=first.amount_minor,
            currency=first.currency,
        )
        db.session.add(
            Payment(
                **declined,
                public_id="declined-on-second",
                order_id=second.id,
                idempotency_key="declined-on-second",
                status=PaymentStatus.FAILED.value,
                failure_code="card_declined",
            )
        )
        db.session.flush()
        # The retry on the first order, after the second's decline: the newest payment.
        db.session.add(
            Payment(
                **declined,
                public_id="retry-on-first",
                order_id=order.id,
                idempotency_key="retry-on-first",
                status=PaymentStatus.PENDING.value,
            )
        )
        db.session.commit()
    page = my_package(standard)
    assert PENDING in page and POLLS in page
    assert "nie doszła do skutku" not in page
