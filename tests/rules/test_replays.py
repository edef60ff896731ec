"""Replays and races (issue 10.1): every webhook delivered 50 times, out of order, leaves
the state one delivery in order leaves; parallel invoice issues keep numbers gapless.

The customer never comes back from the provider's page here: the webhooks alone carry
the payment, so every event type reaches ``/webhooks/<provider>`` and ``apply_event``.
The order is fixed (reversed first, then a seeded shuffle), so CI is stable.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy import inspect as sa_inspect

from pakiet_paypal.emulator import PayPalEmulator
from pakiet_stripe.emulator import StripeEmulator
from portal.infra.extensions import db
from portal.infra.models import (
    Invoice,
    InvoiceRendering,
    InvoiceSequence,
    Notice,
    Order,
    Payment,
    PaymentMethod,
    ProviderEvent,
    User,
    utcnow,
)
from portal.plugin_api.registry import registry
from portal.rules import invoicing
from portal.rules.money import Money
from tests.conftest import providers_config
from tests.plugins.test_paypal_flow import order_id
from tests.plugins.test_paypal_flow import press_pay as press_pay_paypal
from tests.plugins.test_stripe_flow import press_pay as press_pay_stripe
from tests.rules.test_payments import back_from_bank, bank_token, place_and_pay

REPLAYS = 50
STRIPE_KEY, STRIPE_SECRET = "sk_test_replays", "whsec_replays"


@pytest.fixture
def stripe_emulator() -> Iterator[StripeEmulator]:
    with StripeEmulator(api_key=STRIPE_KEY, webhook_secret=STRIPE_SECRET) as emulator:
        yield emulator


@pytest.fixture
def config_overrides(stripe_emulator, paypal, transfer24) -> dict[str, Any]:
    return {
        "MAIL_BACKEND": "locmem",
        **providers_config(stripe_emulator, paypal, transfer24, timeout=5),
    }


def out_of_order(deliveries: list[Any], seed: int) -> list[Any]:
    """Each delivery ``REPLAYS`` times: first all in reverse, then shuffled."""
    rest = deliveries * (REPLAYS - 1)
    random.Random(seed).shuffle(rest)
    return list(reversed(deliveries)) + rest


def first_invoice_of(year: int) -> list[tuple[str]]:
    return [(f"FV/{year}/000001",)]


def state(app, email: str) -> dict[str, Any]:
    """What a delivery can change for the account, in comparable form."""
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        account_id = user.account_id
        sub = user.account.subscription

        def listed(model, *columns):
            stmt = select(*columns).where(model.account_id == account_id).order_by(model.id)
            return [tuple(row) for row in db.session.execute(stmt)]

        result = {
            "subscription": (sub.package, sub.agents, sub.currency, sub.status, sub.version),
            "auto_renew": sub.auto_renew,
            "payments": listed(
                Payment, Payment.status, Payment.amount_minor, Payment.refunded_minor
            ),
            "orders": listed(Order, Order.status),
            "invoices": listed(Invoice, Invoice.number),
            "methods": listed(PaymentMethod, PaymentMethod.brand, PaymentMethod.is_default),
            "notices": listed(Notice, Notice.template),
        }
        db.session.remove()
        return result


def deliver(client, path: str, deliveries: list[tuple[bytes, dict[str, str]]]) -> list[str]:
    outcomes = []
    for body, headers in deliveries:
        response = client.post(path, data=body, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        outcomes.append(response.get_json()["outcome"])
    return outcomes


def event_rows(app) -> int:
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(ProviderEvent))
        db.session.remove()
        return int(count or 0)


# -- Stripe ---------------------------------------------------------------------------------


def stripe_deliveries(emulator: StripeEmulator) -> list[tuple[bytes, dict[str, str]]]:
    """Every event the emulator recorded, signed as Stripe sends it (one body per event:
    a replay is the same event id, signed again)."""
    out = []
    for event in emulator.events:
        body = json.dumps(event).encode()
        out.append(
            (body, {"Stripe-Signature": emulator.sign(body), "Content-Type": "application/json"})
        )
    return out


def stripe_purchase(app, client, emulator: StripeEmulator) -> None:
    """Free → Standard, 2 agents in EUR: a declined card, then a Visa; no return."""
    session_id = press_pay_stripe(client, agents="2", currency="EUR").headers["Location"]
    session_id = session_id.rsplit("/", 1)[1]
    assert emulator.pay(session_id, card="4000000000000002").status == "declined"
    assert emulator.pay(session_id, card="4242424242424242").status == "succeeded"


EXPECTED_STRIPE = {
    "subscription": ("standard", 2, "EUR", "active", 2),
    "auto_renew": True,
    "payments": [("paid", 4920, 0)],
    "orders": [("paid",)],
    "methods": [("visa", True)],
    "notices": [("invoice",)],
}


def test_stripe_events_50_times_out_of_order_apply_once(app, login, stripe_emulator, today):
    client = login("free")
    stripe_purchase(app, client, stripe_emulator)
    waiting = state(app, "free@demo.example.com")  # nothing until a webhook
    assert (waiting["payments"], waiting["subscription"][0]) == ([("pending", 4920, 0)], "free")
    deliveries = stripe_deliveries(stripe_emulator)
    types = {e["type"] for e in stripe_emulator.events}
    assert {"payment_intent.payment_failed", "payment_intent.succeeded"} <= types
    assert "checkout.session.completed" in types
    outcomes = deliver(client, "/webhooks/stripe", out_of_order(deliveries, seed=1))
    assert outcomes.count("applied") == 1  # one success activated; the rest said so
    assert state(app, "free@demo.example.com") == dict(
        EXPECTED_STRIPE, invoices=first_invoice_of(today.year)
    )


def test_a_stripe_refund_arriving_before_the_payment_still_ends_refunded(
    app, login, stripe_emulator, today
):
    """A refund made at Stripe (its dashboard) whose webhook overtakes the payment's."""
    client = login("free")
    stripe_purchase(app, client, stripe_emulator)
    [intent] = [i for i in stripe_emulator.objects("payment_intent") if i["status"] == "succeeded"]
    with app.app_context():
        registry(app).payment_providers["stripe"].refund(
            charge_ref=intent["id"], amount=Money(4920, "EUR"), idempotency_key="dashboard-1"
        )
    assert "charge.refunded" in {e["type"] for e in stripe_emulator.events}
    deliver(client, "/webhooks/stripe", out_of_order(stripe_deliveries(stripe_emulator), seed=2))
    # In order: activated by the payment, then the payment and its order refunded.
    expected = dict(EXPECTED_STRIPE, payments=[("refunded", 4920, 4920)], orders=[("refunded",)])
    expected["invoices"] = first_invoice_of(today.year)
    assert state(app, "free@demo.example.com") == expected


# -- PayPal ---------------------------------------------------------------------------------


def paypal_deliveries(emulator: PayPalEmulator) -> list[tuple[bytes, dict[str, str]]]:
    """Every recorded event; each replay is a new transmission of the same event, as
    PayPal's re-deliveries are (the emulator signs a transmission, not an event)."""
    events = emulator.events
    return [(json.dumps(event).encode(), {"event": event["id"]}) for event in events]


def deliver_paypal(client, emulator: PayPalEmulator, order: list[Any]) -> list[str]:
    by_id = {event["id"]: event for event in emulator.events}
    outcomes = []
    for _body, marker in order:
        with emulator._lock:  # noqa: SLF001 - a fresh signature for a recorded event
            body, headers = emulator._transmission(by_id[marker["event"]])  # noqa: SLF001
        response = client.post("/webhooks/paypal", data=body, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        outcomes.append(response.get_json()["outcome"])
    return outcomes


EXPECTED_PAYPAL = {
    "subscription": ("pro", 2, "PLN", "active", 2),
    "auto_renew": True,
    "payments": [("paid", 31734, 0)],
    "orders": [("paid",)],
    "methods": [("paypal", True)],
    "notices": [("invoice",)],
}


def paypal_approved(client, emulator: PayPalEmulator) -> str:
    token = order_id(press_pay_paypal(client))
    emulator.approve(token, email="anna@buyer.test")
    return token


def test_paypal_events_50_times_out_of_order_apply_once(app, login, paypal, today):
    client = login("free")
    paypal_approved(client, paypal)
    # The approval webhook captures; the capture's own webhook follows. Deliver the
    # approval once to learn every event, then replay them all out of order.
    [approved] = paypal_deliveries(paypal)
    deliver_paypal(client, paypal, [approved])
    events = paypal_deliveries(paypal)
    assert {json.loads(b)["event_type"] for b, _ in events} >= {
        "CHECKOUT.ORDER.APPROVED",
        "PAYMENT.CAPTURE.COMPLETED",
    }
    deliver_paypal(client, paypal, out_of_order(events, seed=3))
    assert state(app, "free@demo.example.com") == dict(
        EXPECTED_PAYPAL, invoices=first_invoice_of(today.year)
    )
    assert len(paypal.captures) == 1  # approvals replayed capture nothing new


def test_a_paypal_refund_arriving_before_the_capture_still_ends_refunded(app, login, paypal, today):
    client = login("free")
    token = paypal_approved(client, paypal)
    provider = None
    with app.app_context():
        provider = registry(app).payment_providers["paypal"]
        payment = db.session.scalar(select(Payment))
        captured = provider.complete_return(provider_ref=token, params={"token": token})
        provider.refund(
            charge_ref=captured.charge_ref,
            amount=payment.amount,
            idempotency_key="dashboard-1",
        )
        db.session.remove()
    events = paypal_deliveries(paypal)
    assert "PAYMENT.CAPTURE.REFUNDED" in {json.loads(b)["event_type"] for b, _ in events}
    deliver_paypal(client, paypal, out_of_order(events, seed=4))
    expected = dict(EXPECTED_PAYPAL, payments=[("refunded", 31734, 31734)], orders=[("refunded",)])
    expected["invoices"] = first_invoice_of(today.year)
    assert state(app, "free@demo.example.com") == expected


# -- a third party's provider ---------------------------------------------------------------


def test_transfer24_notifications_50_times_out_of_order_apply_once(app, login, transfer24):
    client = login("standard")
    before = state(app, "standard@demo.example.com")
    token = bank_token(place_and_pay(client, agents="5"))
    pending = transfer24.notification(token)  # the bank's "still pending" (ignored)
    declined_first = transfer24.notification(token, status="failed")
    transfer24.decide(token, "pay")
    paid = transfer24.notification(token)
    deliveries = [pending, declined_first, paid]
    deliver(client, "/webhooks/transfer24", out_of_order(deliveries, seed=5))
    after = state(app, "standard@demo.example.com")
    assert after["subscription"][:2] == ("standard", 5)
    assert after["subscription"][4] == before["subscription"][4] + 1  # activated once
    assert [p[0] for p in after["payments"]] == ["paid"]
    assert len(after["invoices"]) == len(before["invoices"]) + 1
    assert event_rows(app) <= len(deliveries)


# -- races on PostgreSQL --------------------------------------------------------------------


def clone(row: Any, n: int) -> Any:
    """A copy of ``row`` (new id) with its unique references made unique."""
    mapper = sa_inspect(type(row)).mapper
    values = {c.key: getattr(row, c.key) for c in mapper.column_attrs if c.key != "id"}
    for name in ("public_id", "idempotency_key", "provider_ref", "charge_ref"):
        if isinstance(values.get(name), str):
            values[name] = f"{values[name][:24]}r{n:03d}"
    return type(row)(**values)


@pytest.mark.postgres
def test_fifty_concurrent_invoice_issues_get_gapless_numbers(app, login, transfer24):
    """50 settled payments (copies of a real one) issued at once: numbers 1..50, one each."""
    issuers = 50
    client = login("standard")
    back_from_bank(client, transfer24, bank_token(place_and_pay(client, agents="5")))
    with app.app_context():  # as if 50 payments had settled while invoicing was down
        db.session.execute(delete(InvoiceRendering))
        db.session.execute(delete(Notice))
        db.session.execute(delete(Invoice))
        db.session.execute(update(InvoiceSequence).values(last_value=0))
        paid = db.session.scalar(select(Payment))
        order = db.session.get(Order, paid.order_id)
        payment_ids = [paid.id]
        for n in range(1, issuers):
            copy = clone(order, n)
            db.session.add(copy)
            db.session.flush()
            payment = clone(paid, n)
            payment.order_id = copy.id
            db.session.add(payment)
            db.session.flush()
            payment_ids.append(payment.id)
        db.session.commit()
        db.session.remove()
    barrier = threading.Barrier(issuers, timeout=60)
    errors: list[BaseException] = []

    def issue(payment_id: int) -> None:
        try:
            barrier.wait()  # before taking a connection: the pool is smaller than 50
            with app.app_context():
                invoicing.issue_now(payment_id, now=utcnow())
                db.session.remove()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=issue, args=(pid,)) for pid in payment_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with app.app_context():
        rows = db.session.execute(select(Invoice.seq, Invoice.payment_id)).all()
        assert sorted(seq for seq, _ in rows) == list(range(1, issuers + 1))
        assert sorted(pid for _, pid in rows) == sorted(payment_ids)
        assert db.session.scalar(select(InvoiceSequence.last_value)) == issuers
