"""Payments core (issue 4): the contract, the one event operation, the state machines.

Driven end to end through a third party's plugin: ``tests/thirdparty`` holds a real
distribution, ``pakiet-transfer24`` (redirect and notify, like BLIK or Przelewy24), with
its own emulator. It uses nothing of Pakiet but the public contract.
"""

from __future__ import annotations

import datetime as dt
import re
from itertools import product
from urllib.parse import urlparse

import pytest
from sqlalchemy import func, select

from portal import create_app, demo
from portal.infra.extensions import db
from portal.infra.models import (
    Account,
    Order,
    OrderStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    ProviderEvent,
    Subscription,
    User,
    utcnow,
)
from portal.plugin_api.contracts import PaymentEvent, PaymentEventKind, SavedMethod
from portal.plugin_api.registry import registry
from portal.rules import payments
from portal.rules.money import Money
from tests.conftest import THIRD_PARTY, at_once, base_config, csrf_token, third_party_config
from tests.conftest import transfer24 as transfer24  # the shared fixture, reused from here

TODAY = dt.date(2026, 11, 26)


@pytest.fixture
def config_overrides(transfer24):
    from tests.conftest import BUILTIN_PLUGINS

    return {
        "PLUGINS": [*BUILTIN_PLUGINS, "pakiet_transfer24"],
        "PLUGIN_CONFIG": {"transfer24": third_party_config("transfer24", transfer24)},
    }


@pytest.fixture
def standard(app, client, auth, catalogue, monkeypatch):
    """The demo Standard account (monthly, 3 agents, PLN), logged in."""
    monkeypatch.setattr("portal.web.checkout.today", lambda: TODAY)
    with app.app_context():
        demo.load(catalogue, today=TODAY)
    assert auth.login("standard@demo.example.com", demo.PASSWORD).status_code == 302
    return client


def text(response) -> str:
    return response.get_data(as_text=True).replace("\xa0", " ")


def place_and_pay(client, provider="transfer24", **fields):
    """Press Pay on the summary: returns the response (a redirect to the bank page)."""
    data = {
        "csrf_token": csrf_token(client, "/package/edit"),
        "package": "standard",
        "period": "month",
        "agents": "3",
        "conversations": "100",
        "currency": "PLN",
    }
    data.update(fields)
    summary = text(client.post("/package/summary", data=data, headers={"HX-Request": "true"}))
    digest = re.search(r'name="quote_digest" value="([0-9a-f]*)"', summary).group(1)
    page = text(client.get("/package/edit"))
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page).group(1)
    data.update(action="pay", quote_digest=digest, idempotency_key=key, provider=provider)
    return client.post("/package/edit", data=data)


def bank_token(response) -> str:
    assert response.status_code == 303, text(response)
    return response.headers["Location"].rsplit("/", 1)[1]


def back_from_bank(client, emulator, token: str, action: str = "pay"):
    target = urlparse(emulator.decide(token, action))
    return client.get(target.path + ("?" + target.query if target.query else ""))


def webhook(client, emulator, token: str, **changes):
    body, headers = emulator.notification(token, **changes)
    return client.post("/webhooks/transfer24", data=body, headers=headers)


def subscription(app) -> Subscription:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "standard@demo.example.com"))
        sub = user.account.subscription
        db.session.expunge_all()
        return sub


def only(app, model):
    with app.app_context():
        rows = db.session.scalars(select(model)).all()
        db.session.expunge_all()
        return rows


# -- third party --------------------------------------------------------------------------


def test_a_third_party_payment_distribution_is_discovered(database_url, monkeypatch, transfer24):
    monkeypatch.syspath_prepend(str(THIRD_PARTY))
    app = create_app(
        base_config(
            database_url,
            PLUGINS=[],
            PLUGINS_AUTOLOAD=True,
            PLUGINS_ALLOW=["currencies", "transfer24"],
            PLUGIN_CONFIG={
                "transfer24": {"base_url": "http://x", "api_key": "k", "notify_secret": "s"}
            },
        )
    )
    reg = registry(app)
    assert list(reg.payment_providers) == ["transfer24"]
    info = {p.name: p for p in reg.plugins()}["transfer24"]
    assert (info.version, info.distribution) == ("0.3.0", "pakiet-transfer24")
    assert info.hooks == ("register_payment_providers",)


def test_the_provider_shows_up_in_checkout(standard):
    page = text(standard.get("/package/edit"))
    assert 'name="provider" value="transfer24"' in page
    assert "Przelew online (Transfer24)" in page


def test_a_disabled_provider_is_hidden(database_url, monkeypatch, transfer24):
    monkeypatch.syspath_prepend(str(THIRD_PARTY))
    from tests.conftest import BUILTIN_PLUGINS

    app = create_app(
        base_config(
            database_url,
            PLUGINS=[*BUILTIN_PLUGINS, "pakiet_transfer24"],
            PLUGIN_CONFIG={
                "transfer24": {
                    "base_url": transfer24.base_url,
                    "api_key": "k",
                    "notify_secret": "s",
                    "enabled": False,
                }
            },
        )
    )
    assert "transfer24" not in registry(app).payment_providers


# -- the happy path ------------------------------------------------------------------------


def test_pay_redirect_return_activates_exactly_the_quote(app, standard, transfer24):
    token = bank_token(place_and_pay(standard, agents="5"))
    trn = transfer24.transactions[token]
    assert (trn["amount"], trn["currency"]) == (32841, "PLN")  # what the summary showed
    page = text(standard.get("/package"))
    assert "Płatność w toku" in page and 'hx-trigger="every 2s"' in page  # R9: pending
    response = back_from_bank(standard, transfer24, token)
    assert response.headers["Location"] == "/package"
    sub = subscription(app)
    assert (sub.package, sub.period, sub.agents, sub.conversations) == ("standard", "month", 5, 100)
    assert (sub.period_start, sub.period_end) == (TODAY, dt.date(2026, 12, 26))
    assert (sub.period_net_minor, sub.credit_minor, sub.auto_renew) == (44500, 0, True)
    [payment] = only(app, Payment)
    [order] = only(app, Order)
    assert (payment.status, order.status) == (PaymentStatus.PAID, OrderStatus.PAID)
    assert payment.charge_ref == token
    page = text(standard.get("/package"))
    assert "Dziękujemy! Otrzymaliśmy Twoją płatność." in page
    assert "Płatność w toku" not in page and "hx-trigger" not in page  # polling stops


def test_webhook_first_then_return_then_replays_activate_once(app, standard, transfer24):
    token = bank_token(place_and_pay(standard, agents="5"))
    transfer24.decide(token, "pay")
    first = webhook(standard, transfer24, token)
    assert first.get_json() == {"received": True, "outcome": "applied"}
    version = subscription(app).version
    assert back_from_bank(standard, transfer24, token).headers["Location"] == "/package"
    body, headers = transfer24.notification(token)
    outcomes = [
        standard.post("/webhooks/transfer24", data=body, headers=headers).get_json()["outcome"]
        for _ in range(5)
    ]
    assert outcomes == ["already_settled"] + ["duplicate"] * 4
    assert subscription(app).version == version  # activated once
    with app.app_context():
        # the first webhook and the second notification; the return asked nothing
        assert db.session.scalar(select(func.count()).select_from(ProviderEvent)) == 2


def test_out_of_order_failure_after_success_changes_nothing(app, standard, transfer24):
    token = bank_token(place_and_pay(standard, agents="5"))
    transfer24.decide(token, "pay")
    webhook(standard, transfer24, token)
    late = webhook(standard, transfer24, token, status="failed")
    assert late.get_json()["outcome"] == "already_settled"
    [payment] = only(app, Payment)
    assert payment.status == PaymentStatus.PAID
    assert subscription(app).agents == 5


# -- failures --------------------------------------------------------------------------------


def test_a_declined_transfer_says_why_and_can_be_retried(app, standard, transfer24):
    response = place_and_pay(standard, agents="5")
    token = bank_token(response)
    transfer24.decide(token, "decline")
    webhook(standard, transfer24, token)
    [order] = only(app, Order)
    order_page = standard.get(f"/package/orders/{order.public_id}")
    assert "Płatność nie powiodła się. Nic nie zostało pobrane" in text(order_page)
    assert subscription(app).agents == 3  # nothing activated
    retry = standard.post(
        f"/package/orders/{order.public_id}/pay",
        data={"csrf_token": csrf_token(standard, "/package"), "provider": "transfer24"},
    )
    second = bank_token(retry)
    assert second != token  # a new attempt, a new idempotency key
    back_from_bank(standard, transfer24, second)
    assert subscription(app).agents == 5
    assert sorted(p.status for p in only(app, Payment)) == ["failed", "paid"]


def test_cancel_on_the_bank_page(app, standard, transfer24):
    token = bank_token(place_and_pay(standard, agents="5"))
    response = back_from_bank(standard, transfer24, token, action="decline")
    assert response.status_code == 303
    page = text(standard.get(response.headers["Location"]))
    assert "Anulowano płatność. Nic nie zostało pobrane." in page
    assert only(app, Payment)[0].failure_code == "cancelled"


def test_provider_down_at_start_charges_nothing_and_retry_works(app, standard, transfer24):
    with app.app_context():
        provider = registry(app).payment_providers["transfer24"]
    good = provider.base_url
    provider.base_url = "http://127.0.0.1:9"  # nothing listens there
    try:
        response = place_and_pay(standard, agents="5")
    finally:
        provider.base_url = good
    assert response.status_code == 303
    page = text(standard.get(response.headers["Location"]))
    assert "Operator płatności nie odpowiedział. Nic nie zostało pobrane" in page
    [order] = only(app, Order)
    assert order.status == OrderStatus.PENDING
    retry = standard.post(
        f"/package/orders/{order.public_id}/pay",
        data={"csrf_token": csrf_token(standard, "/package"), "provider": "transfer24"},
    )
    back_from_bank(standard, transfer24, bank_token(retry))
    assert subscription(app).agents == 5


def test_a_currency_the_provider_does_not_take_is_refused(app, client, auth, catalogue, transfer24):
    with app.app_context():
        demo.load(catalogue, today=TODAY)
    auth.login("pro@demo.example.com", demo.PASSWORD)  # an EUR account
    response = place_and_pay(
        client, package="pro", period="year", agents="9", conversations="1500", currency="EUR"
    )
    page = text(client.get(response.headers["Location"]))
    assert "This payment method does not accept your currency" in page
    assert only(app, Payment) == []


# -- webhooks: bad input ---------------------------------------------------------------------


def test_webhook_signatures_and_garbage(app, standard, transfer24):
    token = bank_token(place_and_pay(standard, agents="5"))
    transfer24.decide(token, "pay")
    body, headers = transfer24.notification(token)
    tampered = body.replace(b'"amount": 32841', b'"amount": 1')
    assert standard.post("/webhooks/transfer24", data=tampered, headers=headers).status_code == 400
    unsigned = {"Content-Type": "application/json"}
    assert standard.post("/webhooks/transfer24", data=body, headers=unsigned).status_code == 400
    assert standard.post("/webhooks/nosuch", data=body, headers=headers).status_code == 404
    assert subscription(app).agents == 3
    ignored = webhook(standard, transfer24, token, status="chargeback_review")
    assert ignored.get_json() == {"received": True, "outcome": "ignored"}
    unknown = webhook(standard, transfer24, token, session_id="f" * 32)
    assert unknown.get_json()["outcome"] == "unknown_payment"
    assert subscription(app).agents == 3


def test_an_amount_that_differs_from_the_order_activates_nothing(app, standard, transfer24):
    token = bank_token(place_and_pay(standard, agents="5"))
    transfer24.decide(token, "pay")
    assert webhook(standard, transfer24, token, amount=100).get_json()["outcome"] == "mismatch"
    assert subscription(app).agents == 3
    assert only(app, Payment)[0].status == PaymentStatus.PENDING


def test_a_foreign_return_or_cancel_url_is_not_found(app, standard, auth, transfer24):
    token = bank_token(place_and_pay(standard, agents="5"))
    [payment] = only(app, Payment)
    auth.logout()
    auth.login("free@demo.example.com", demo.PASSWORD)
    assert standard.get(f"/payments/{payment.public_id}/return?token={token}").status_code == 404
    assert standard.get(f"/payments/{payment.public_id}/cancel").status_code == 404
    assert standard.get("/payments/forged/return").status_code == 404
    assert only(app, Payment)[0].status == PaymentStatus.PENDING


# -- the one operation, directly ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "target"), list(product(PaymentStatus, PaymentStatus)), ids=str
)
def test_payment_state_machine(current, target):
    payment = Payment(public_id="p", status=current.value)
    allowed = {
        (PaymentStatus.PENDING, PaymentStatus.PAID),
        (PaymentStatus.PENDING, PaymentStatus.FAILED),
        (PaymentStatus.FAILED, PaymentStatus.PAID),
        (PaymentStatus.PAID, PaymentStatus.REFUNDED),
    }
    if (current, target) in allowed:
        payments.payment_transition(payment, target)
        assert payment.status == target
    else:
        with pytest.raises(payments.IllegalTransition):
            payments.payment_transition(payment, target)


@pytest.mark.parametrize(("current", "target"), list(product(OrderStatus, OrderStatus)), ids=str)
def test_order_state_machine(current, target):
    order = Order(public_id="o", status=current.value)
    allowed = {
        (OrderStatus.PENDING, OrderStatus.PAID),
        (OrderStatus.PENDING, OrderStatus.FAILED),
        (OrderStatus.PENDING, OrderStatus.SUPERSEDED),
        (OrderStatus.PAID, OrderStatus.REFUNDED),
    }
    if (current, target) in allowed:
        payments.order_transition(order, target)
        assert order.status == target
    else:
        with pytest.raises(payments.IllegalTransition):
            payments.order_transition(order, target)


def pending_payment(app, standard) -> Payment:
    bank_token(place_and_pay(standard, agents="5"))
    return only(app, Payment)[0]


def succeeded(payment: Payment, brand: str, event_id: str = "e1") -> PaymentEvent:
    return PaymentEvent(
        event_id=event_id,
        kind=PaymentEventKind.SUCCEEDED,
        payment_id=payment.public_id,
        provider_ref=payment.provider_ref,
        amount=Money(payment.amount_minor, payment.currency),
        method=SavedMethod(provider_ref=f"pm_{brand}", brand=brand, last4="0005"),
        charge_ref="ch_1",
    )


def test_an_amex_payment_is_refused_and_refunded(app, standard, transfer24):
    payment = pending_payment(app, standard)
    refunds: list[tuple[str, str]] = []
    with app.app_context():
        outcome = payments.apply_event(
            "transfer24",
            succeeded(payment, "amex"),
            now=utcnow(),
            refund=lambda p, reason: refunds.append((p.public_id, reason)),
        )
    assert outcome is payments.Outcome.BRAND_REFUSED
    assert refunds == [(payment.public_id, "brand_not_accepted")]
    assert only(app, Payment)[0].failure_code == "amex_not_accepted"
    assert only(app, Order)[0].status == OrderStatus.FAILED
    assert only(app, PaymentMethod) == []  # an Amex is never saved
    assert subscription(app).agents == 3


def test_a_visa_payment_saves_the_method_as_default(app, standard, transfer24, monkeypatch):
    # The provider declares it can charge Visa again (PaymentProvider.renewable_brands).
    provider = registry(app).payment_providers["transfer24"]
    monkeypatch.setattr(provider, "renewable_brands", frozenset({"visa"}), raising=False)
    payment = pending_payment(app, standard)
    with app.app_context():
        outcome = payments.apply_event("transfer24", succeeded(payment, "visa"), now=utcnow())
    assert outcome is payments.Outcome.APPLIED
    [method] = only(app, PaymentMethod)
    assert (method.brand, method.last4, method.is_default) == ("visa", "0005", True)


def test_a_method_its_provider_cannot_charge_again_is_not_kept(app, standard, transfer24):
    """Transfer24 declares no renewable brands: whatever method it reports, the payment is
    applied and nothing is saved for renewals to charge (core has no brand list of its own)."""
    payment = pending_payment(app, standard)
    with app.app_context():
        outcome = payments.apply_event("transfer24", succeeded(payment, "blik"), now=utcnow())
    assert outcome is payments.Outcome.APPLIED
    assert only(app, PaymentMethod) == []
    assert subscription(app).agents == 5


def test_a_report_that_came_before_its_payment_is_applied_when_it_comes_again(
    app, standard, transfer24, monkeypatch
):
    """A webhook can overtake the transaction that starts its payment: it names no known
    payment and is recorded so. Its redelivery, once the payment is there, is applied (it
    used to be answered as a duplicate and lost); a third delivery is a duplicate."""
    payment = pending_payment(app, standard)
    event = succeeded(payment, "visa", "e-early")
    with app.app_context():
        with monkeypatch.context() as early:  # the payment is not committed yet
            early.setattr(payments, "_find_payment", lambda provider, event: None)
            first = payments.apply_event("transfer24", event, now=utcnow())
        assert first is payments.Outcome.UNKNOWN_PAYMENT
        assert subscription(app).agents == 3
        second = payments.apply_event("transfer24", event, now=utcnow())
        third = payments.apply_event("transfer24", event, now=utcnow())
    assert (second, third) == (payments.Outcome.APPLIED, payments.Outcome.DUPLICATE)
    assert subscription(app).agents == 5
    [record] = only(app, ProviderEvent)
    [paid] = only(app, Payment)
    assert (record.event_id, record.outcome, record.payment_id) == ("e-early", "applied", paid.id)
    assert paid.status == PaymentStatus.PAID


@pytest.mark.postgres
def test_concurrent_redeliveries_of_an_early_report_apply_it_once(
    app, standard, transfer24, monkeypatch
):
    """Ten redeliveries at once of a report recorded before its payment: one applies it,
    the others wait for it and see it applied."""
    payment = pending_payment(app, standard)
    event = succeeded(payment, "visa", "e-early")
    with app.app_context():
        with monkeypatch.context() as early:
            early.setattr(payments, "_find_payment", lambda provider, event: None)
            payments.apply_event("transfer24", event, now=utcnow())
        db.session.remove()

    def redeliver() -> payments.Outcome:
        with app.app_context():
            outcome = payments.apply_event("transfer24", event, now=utcnow())
            db.session.remove()
        return outcome

    outcomes = at_once(10, redeliver)
    assert sorted(outcomes) == ["applied"] + ["duplicate"] * 9
    assert subscription(app).agents == 5
    [record] = only(app, ProviderEvent)
    assert record.outcome == "applied"


def test_a_payment_for_a_stale_quote_is_refunded(app, standard, transfer24):
    payment = pending_payment(app, standard)
    with app.app_context():  # staff changed the subscription meanwhile
        sub = db.session.scalar(select(Subscription).where(Subscription.currency == "PLN"))
        sub.agents = 4
        db.session.commit()
    refunds: list[str] = []
    with app.app_context():
        outcome = payments.apply_event(
            "transfer24",
            succeeded(payment, "visa"),
            now=utcnow(),
            refund=lambda p, reason: refunds.append(reason),
        )
    assert outcome is payments.Outcome.STALE
    assert refunds == ["quote_stale"]
    assert subscription(app).agents == 4
    assert only(app, Order)[0].status == OrderStatus.SUPERSEDED


def test_a_downgrade_covered_by_credit_needs_no_payment(app, standard, transfer24):
    """Yearly plan bought today, then fewer agents: the credit exceeds the new price."""
    with app.app_context():
        sub = db.session.scalar(select(Subscription).where(Subscription.currency == "PLN"))
        sub.agents, sub.period_start, sub.period_end = 10, TODAY, dt.date(2026, 12, 26)
        sub.period_net_minor = 89000
        db.session.commit()
    response = place_and_pay(standard, agents="2")
    assert response.headers["Location"] == "/package"
    sub = subscription(app)
    assert sub.agents == 2
    assert sub.credit_minor == 89000 - 17800  # 10 agents paid, 2 agents' new price
    assert only(app, Payment) == []
    assert only(app, Order)[0].status == OrderStatus.PAID


@pytest.mark.postgres
def test_twenty_concurrent_pays_for_one_order_charge_once(app, standard, transfer24):
    response = place_and_pay(standard, agents="5")
    bank_token(response)
    [order] = only(app, Order)

    def press_pay() -> None:
        with app.app_context():
            placed = db.session.get(Order, order.id)
            account = db.session.get(Account, placed.account_id)
            payments.start(
                account=account,
                order=placed,
                provider=registry(app).payment_providers["transfer24"],
                description="Pakiet",
                customer_email="a@example.com",
                language="pl",
                make_urls=lambda pid, _name: payments.Urls("http://r/" + pid, "http://c/" + pid),
                now=utcnow(),
            )
            db.session.remove()

    at_once(20, press_pay, timeout=30)
    assert len(only(app, Payment)) == 1
    assert len(transfer24.transactions) == 1


@pytest.mark.parametrize(
    ("brand", "code"), [("amex", "amex_not_accepted"), ("discover", "brand_not_accepted")]
)
def test_a_saved_method_of_another_brand_is_refused(app, standard, brand, code):
    with app.app_context():
        account_id = db.session.scalar(
            select(User.account_id).where(User.email == "standard@demo.example.com")
        )
        with pytest.raises(payments.PaymentRefused) as refused:
            payments.add_method(
                account_id=account_id,
                provider="stripe",
                method=SavedMethod(provider_ref=f"pm_{brand}", brand=brand, last4="0005"),
                now=utcnow(),
            )
    assert refused.value.code == code
    assert only(app, PaymentMethod) == []


def test_the_order_page_says_why_an_amex_was_refused(app, standard, transfer24):
    payment = pending_payment(app, standard)
    with app.app_context():
        payments.apply_event(
            "transfer24",
            succeeded(payment, "amex"),
            now=utcnow(),
            refund=lambda p, reason: payments.payment_transition(p, PaymentStatus.REFUNDED),
        )
    page = text(standard.get(f"/package/orders/{only(app, Order)[0].public_id}"))
    # R8: the refusal names American Express, on our side, in the customer's language.
    refusal = (
        "Karty American Express nie są akceptowane. Płatność została zwrócona w całości; zapłać"
        " inną kartą lub metodą płatności. Przyjmujemy: "
    )
    assert page.count(refusal) == 1, page
    # What is accepted comes from the providers loaded: here the bank transfer alone.
    accepted = page.split(refusal, 1)[1].split(".", 1)[0]
    assert accepted == "Przelew online (Transfer24)"


def test_the_return_and_the_cancel_ask_the_provider_outside_any_transaction(
    app, standard, transfer24, monkeypatch
):
    """Security issue, point 8: nothing of the database is held while the provider answers."""
    from pakiet_transfer24.provider import Transfer24Provider

    seen: list[tuple[str, bool]] = []
    for name in ("complete_return", "cancel"):
        original = getattr(Transfer24Provider, name)

        def watching(self, *args, _name=name, _original=original, **kwargs):
            seen.append((_name, db.session().in_transaction()))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Transfer24Provider, name, watching)
    back_from_bank(standard, transfer24, bank_token(place_and_pay(standard, agents="5")))
    token = bank_token(place_and_pay(standard, agents="6"))
    target = urlparse(transfer24.decide(token, "cancel"))
    standard.get(target.path + ("?" + target.query if target.query else ""))
    assert ("complete_return", False) in seen and ("cancel", False) in seen, seen
    assert all(not open_ for _name, open_ in seen), seen


# -- tax decided at payment time (DESIGN.md section 2) --------------------------------------

WARSAW = {"street": "ul. Marszałkowska 10", "postcode": "00-590", "city": "Warszawa"}
NEW_YORK = {"street": "350 Fifth Avenue", "postcode": "10118", "city": "New York"}
CANCELLED_PL = "To zamówienie zostało anulowane: po jego złożeniu zmieniły się dane do faktury"
REFUNDED_PL = "więc płatność została zwrócona w całości"


def save_billing(client, country: str, vat_number: str = "", **address: str):
    """Save billing information through the page, as the customer does."""
    data = {
        "csrf_token": csrf_token(client, "/billing"),
        "company_name": "Sklep Rowerowy Szprycha",
        "country": country,
        "vat_number": vat_number,
        "invoice_email": "faktury@szprycha.example.com",
        **address,
    }
    response = client.post("/billing", data=data)
    assert response.status_code == 303, text(response)
    return response


def set_billing(app, country: str, vat_number: str | None = None, **address: str) -> None:
    """Buyer data changed outside the billing page (a VIES re-check, staff, another node)."""
    from portal.infra.models import BillingInfo, VatStatus

    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "standard@demo.example.com"))
        billing = db.session.scalar(
            select(BillingInfo).where(BillingInfo.account_id == user.account_id)
        )
        billing.country = country
        billing.vat_number = vat_number
        billing.vat_status = VatStatus.VALID.value if vat_number else None
        for name, value in address.items():
            setattr(billing, name, value)
        db.session.commit()


def us_order(app, standard) -> tuple[Order, Payment, str]:
    """A US buyer's order (no VAT) whose bank page is open: the order, its payment, token."""
    save_billing(standard, "US", **NEW_YORK)
    token = bank_token(place_and_pay(standard, agents="5"))
    [order] = only(app, Order)
    [payment] = only(app, Payment)
    assert (order.tax_treatment, order.vat_minor) == ("outside_eu", 0)
    return order, payment, token


def invoices(app) -> list:
    from portal.infra.models import Invoice

    return only(app, Invoice)


def test_changing_the_country_cancels_the_open_order_and_says_why(app, standard, transfer24):
    order, _payment, token = us_order(app, standard)
    page = text(standard.get(save_billing(standard, "PL", **WARSAW).headers["Location"]))
    assert "1 otwarte zamówienie zostało anulowane, bo nowe dane do faktury" in page
    [order] = only(app, Order)
    [payment] = only(app, Payment)
    assert order.status == OrderStatus.SUPERSEDED
    assert (payment.status, payment.failure_code) == (PaymentStatus.FAILED, "tax_changed")
    # The order page says why, in Polish, and links to the edit page with the same choice.
    page = text(standard.get(f"/package/orders/{order.public_id}"))
    assert CANCELLED_PL in page and "Złóż zamówienie ponownie" in page
    assert "/package/edit?package=standard&amp;period=month&amp;agents=5" in page
    assert "Zapłać" not in page
    # Paying it anyway is refused; the bank's money, should it still come, goes back.
    pay = standard.post(
        f"/package/orders/{order.public_id}/pay",
        data={"csrf_token": csrf_token(standard, "/package/edit"), "provider": "transfer24"},
    )
    assert pay.headers["Location"] == f"/package/orders/{order.public_id}"
    assert len(only(app, Payment)) == 1  # no new attempt
    back_from_bank(standard, transfer24, token)
    assert webhook(standard, transfer24, token).get_json()["outcome"] == "stale"
    [payment] = only(app, Payment)
    assert (payment.status, payment.failure_code) == (PaymentStatus.REFUNDED, "tax_changed")
    assert transfer24.transactions[token]["refunded"] == payment.amount_minor
    assert invoices(app) == []
    assert subscription(app).agents == 3


def test_the_order_page_in_english_says_why(app, standard, transfer24):
    order, _payment, _token = us_order(app, standard)
    standard.post(
        "/language", data={"csrf_token": csrf_token(standard, "/package"), "language": "en"}
    )
    page = text(standard.get(save_billing(standard, "PL", **WARSAW).headers["Location"]))
    assert "1 open order was cancelled because the new billing information changes" in page
    page = text(standard.get(f"/package/orders/{order.public_id}"))
    assert "This order was cancelled: your billing information changed after it was" in page
    assert "Place the order again" in page


def test_pay_is_refused_when_the_buyer_data_changed_the_tax(app, standard, transfer24):
    order, _payment, _token = us_order(app, standard)
    set_billing(app, "PL", **WARSAW)  # not through the billing page: Pay itself must see it
    pay = standard.post(
        f"/package/orders/{order.public_id}/pay",
        data={"csrf_token": csrf_token(standard, "/package/edit"), "provider": "transfer24"},
    )
    assert pay.headers["Location"] == f"/package/orders/{order.public_id}"
    page = text(standard.get(pay.headers["Location"]))
    assert "Po złożeniu zamówienia zmieniły się dane do faktury" in page and CANCELLED_PL in page
    [order] = only(app, Order)
    [payment] = only(app, Payment)  # no new attempt; the open one is closed
    assert order.status == OrderStatus.SUPERSEDED
    assert (payment.status, payment.failure_code) == (PaymentStatus.FAILED, "tax_changed")


def test_the_return_of_a_stale_session_is_not_completed_and_its_money_goes_back(
    app, standard, transfer24
):
    order, _payment, token = us_order(app, standard)
    set_billing(app, "PL", **WARSAW)
    back = back_from_bank(standard, transfer24, token)  # paid at the bank meanwhile
    assert back.headers["Location"] == f"/package/orders/{order.public_id}"
    assert only(app, Order)[0].status == OrderStatus.SUPERSEDED
    # The bank's notification of the payment: refunded in full, no invoice, no activation.
    assert webhook(standard, transfer24, token).get_json()["outcome"] == "stale"
    [payment] = only(app, Payment)
    assert (payment.status, payment.failure_code) == (PaymentStatus.REFUNDED, "tax_changed")
    assert transfer24.transactions[token]["refunded"] == payment.amount_minor
    assert invoices(app) == [] and subscription(app).agents == 3
    page = text(standard.get(f"/package/orders/{order.public_id}"))
    assert REFUNDED_PL in page and CANCELLED_PL in page


def test_a_webhook_for_a_stale_order_is_refunded_not_invoiced(app, standard, transfer24):
    """The bank page taken and paid before the change, reported only after it."""
    _order, _payment, token = us_order(app, standard)
    transfer24.decide(token, "pay")
    set_billing(app, "PL", **WARSAW)
    assert webhook(standard, transfer24, token).get_json()["outcome"] == "stale"
    [payment] = only(app, Payment)
    assert (payment.status, payment.failure_code) == (PaymentStatus.REFUNDED, "tax_changed")
    assert only(app, Order)[0].status == OrderStatus.SUPERSEDED
    assert invoices(app) == [] and subscription(app).agents == 3


def test_removing_the_vat_number_cancels_a_reverse_charge_order(app, standard, transfer24):
    berlin = {"street": "Unter den Linden 1", "postcode": "10117", "city": "Berlin"}
    set_billing(app, "DE", "DE812415868", **berlin)
    token = bank_token(place_and_pay(standard, agents="5"))
    [order] = only(app, Order)
    assert (order.tax_treatment, order.vat_minor) == ("reverse_charge", 0)
    save_billing(standard, "DE", "", **berlin)
    [order] = only(app, Order)
    assert order.status == OrderStatus.SUPERSEDED
    back_from_bank(standard, transfer24, token)
    assert webhook(standard, transfer24, token).get_json()["outcome"] == "stale"
    assert only(app, Payment)[0].status == PaymentStatus.REFUNDED
    assert invoices(app) == []


def test_an_unchanged_tax_keeps_the_order_payable(app, standard, transfer24):
    """Another address in the same country decides the same VAT: the order stands."""
    order, _payment, token = us_order(app, standard)
    save_billing(standard, "US", street="1 Infinite Loop", postcode="95014", city="Cupertino")
    assert only(app, Order)[0].status == OrderStatus.PENDING
    back = back_from_bank(standard, transfer24, token)
    assert back.headers["Location"] == "/package"
    assert only(app, Order)[0].status == OrderStatus.PAID
    [invoice] = invoices(app)
    assert invoice.content["buyer"]["country"] == "US"
    assert order.vat_minor == 0


def test_an_expired_order_cannot_be_paid_nor_completed_at_the_return(
    app, standard, transfer24, monkeypatch
):
    token = bank_token(place_and_pay(standard, agents="5"))
    [order] = only(app, Order)
    later = order.expires_at + dt.timedelta(minutes=1)
    monkeypatch.setattr("portal.web.pay.utcnow", lambda: later)
    pay = standard.post(
        f"/package/orders/{order.public_id}/pay",
        data={"csrf_token": csrf_token(standard, "/package/edit"), "provider": "transfer24"},
    )
    assert pay.headers["Location"] == f"/package/orders/{order.public_id}"
    page = text(standard.get(pay.headers["Location"]))
    assert "To zamówienie wygasło i nie można go już opłacić." in page
    assert len(only(app, Payment)) == 1
    # The customer comes back from the bank page after the expiry: not completed.
    back = back_from_bank(standard, transfer24, token)
    assert back.headers["Location"] == f"/package/orders/{order.public_id}"
    [payment] = only(app, Payment)
    assert (payment.status, payment.failure_code) == (PaymentStatus.FAILED, "expired")
    assert only(app, Order)[0].status == OrderStatus.FAILED
    # The bank took the money meanwhile: its report refunds it, nothing is activated.
    assert webhook(standard, transfer24, token).get_json()["outcome"] == "stale"
    assert only(app, Payment)[0].status == PaymentStatus.REFUNDED
    assert invoices(app) == [] and subscription(app).agents == 3


def test_an_order_is_not_charged_once_the_billing_address_is_gone(app, standard, transfer24):
    """Issue 23, point 5: no invoice without the buyer's address, so no charge either: Pay
    on a placed order whose account lost its street (data changed outside the form) is
    refused with the reason, and no new payment attempt is made."""
    bank_token(place_and_pay(standard, agents="5"))
    [order] = only(app, Order)
    set_billing(app, "PL", street=None)
    pay = standard.post(
        f"/package/orders/{order.public_id}/pay",
        data={"csrf_token": csrf_token(standard, "/package/edit"), "provider": "transfer24"},
    )
    assert pay.headers["Location"] == f"/package/orders/{order.public_id}"
    page = text(standard.get(pay.headers["Location"]))
    assert "Zanim zapłacisz, podaj kraj i adres w danych do faktury" in page
    assert len(only(app, Payment)) == 1  # the first attempt only
