"""A provider that cannot charge again, end to end (issue 24, point 3 and its Proof).

``pakiet-paybylink`` (tests/thirdparty) is a redirect-only provider that keeps no method:
it declares ``renewable_brands`` empty. A customer who bought with it is not charged at
renewal; the renewal's order stays open, an e-mail and the portal's banner link the page
``/package/renewal``, and the customer pays it there by hand, with any provider that takes
the currency. Checkout offers only the providers that take the order's currency, and a
provider whose ``label()`` raises is left out while the others keep working.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from portal import demo
from portal.infra.extensions import db
from portal.infra.models import Invoice, Order, Payment, PaymentMethod, Subscription, User
from portal.plugin_api.registry import registry
from portal.rules import lifecycle
from portal.testing.pytest_plugin import Checkout
from tests.conftest import (
    BUILTIN_PLUGINS,
    Auth,
    Inbox,
    billing_form,
    csrf_token,
    decoded_subject,
    smtp_config,
    third_party_config,
)

TODAY = dt.date(2026, 11, 26)
RENEWAL_DAY = dt.date(2026, 12, 26)
WARSAW = ZoneInfo("Europe/Warsaw")
FREE = "free@demo.example.com"


def at(day: dt.date, hour: int = 10) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=WARSAW).astimezone(dt.UTC)


@pytest.fixture
def config_overrides(paybylink: Any, transfer24: Any, smtp: Inbox) -> dict[str, Any]:
    return {
        **smtp_config(smtp),
        "PUBLIC_URL": "https://portal.example.com",
        "PLUGINS": [*BUILTIN_PLUGINS, "pakiet_paybylink", "pakiet_transfer24"],
        "PLUGIN_CONFIG": {
            "paybylink": third_party_config("paybylink", paybylink),
            "transfer24": third_party_config("transfer24", transfer24),
        },
    }


class Clock:
    """The portal's clock in these tests: set by the test, never the wall clock."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = at(TODAY)
        for target in (
            "portal.web.pay.utcnow",
            "portal.web.checkout.utcnow",
            "portal.web.account.utcnow",
            "portal.infra.models.utcnow",
        ):
            monkeypatch.setattr(target, lambda: self.now)
        monkeypatch.setattr("portal.web.checkout.today", lambda: self.now.astimezone(WARSAW).date())


@pytest.fixture
def customer(app, client, auth, catalogue, monkeypatch) -> Any:
    """The demo Free account, logged in, on a clock of the test's."""
    clock = Clock(monkeypatch)
    with app.app_context():
        demo.load(catalogue, today=TODAY)
    assert auth.login(FREE, demo.PASSWORD).status_code == 302
    return clock


def text(response: Any) -> str:
    return response.get_data(as_text=True).replace("\xa0", " ")


def buy(client: Any, provider: str, currency: str = "PLN") -> Any:
    """Press Pay for Standard, 2 agents, on the edit page's form (the kit's driver)."""
    return Checkout(client).pay(provider, agents=2, currency=currency)


def pay_at_paybylink(client: Any, emulator: Any, response: Any) -> Any:
    """On PayByLink's page the customer pays; back at the portal's return address."""
    assert response.status_code == 303, text(response)
    location = response.headers["Location"]
    assert location.startswith(f"{emulator.base_url}/pay/"), location
    link = emulator.links[location.rsplit("/", 1)[1]]
    emulator.pay(link["id"])
    back = urlparse(link["return"])
    return client.get(back.path)


def the_subscription(app: Any) -> Subscription:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == FREE))
        sub = user.account.subscription
        db.session.expunge_all()
        return sub


def test_a_customer_who_paid_by_link_pays_the_renewal_by_hand(
    app, client, customer, paybylink, smtp
):
    # Bought with the link: nothing is kept for renewals to charge.
    page = text(pay_at_paybylink(client, paybylink, buy(client, "paybylink")))
    sub = the_subscription(app)
    assert (sub.package, sub.status, sub.period_end) == ("standard", "active", RENEWAL_DAY)
    with app.app_context():
        assert db.session.scalars(select(PaymentMethod)).all() == []

    # The renewal run: no method its provider can charge again, so no charge and no
    # failure of the customer's card; the order stays open to be paid by hand.
    with app.app_context():
        report = lifecycle.run(now=at(RENEWAL_DAY, 1), deps=lifecycle.deps_for(app))
    assert report.renewed == 0 and report.postponed == 0
    assert the_subscription(app).status == "past_due"
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == FREE))
        to = user.account.billing_info.invoice_email
        account_id = user.account_id
    subjects = [decoded_subject(m) for m in smtp.messages if to in m["To"]]
    assert "Opłać odnowienie pakietu Pakiet" in subjects, subjects
    [message] = [
        m
        for m in smtp.messages
        if to in m["To"] and decoded_subject(m) == "Opłać odnowienie pakietu Pakiet"
    ]
    body = message.get_payload(decode=True).decode()
    assert "https://portal.example.com/package/renewal" in body

    # The portal says so on every page, with the link.
    customer.now = at(RENEWAL_DAY, 9)
    page = text(client.get("/package"))
    assert "Odnowienie czeka na zapłatę" in page
    assert 'href="/package/renewal"' in page

    # The page: the renewal's amount, and every provider that takes PLN.
    page = text(client.get("/package/renewal"))
    with app.app_context():
        order = db.session.scalars(
            select(Order).where(Order.status == "pending", Order.account_id == account_id)
        ).one()
        total = order.total
        public_id = order.public_id
        db.session.expunge_all()
    assert f"/package/orders/{public_id}/pay" in page
    assert 'value="paybylink"' in page and 'value="transfer24"' in page
    assert "Zapłać" in page

    # Paid by hand with the link: the next period, invoiced.
    response = client.post(
        f"/package/orders/{public_id}/pay",
        data={"csrf_token": csrf_token(client, "/package/renewal"), "provider": "paybylink"},
    )
    link = paybylink.links[response.headers["Location"].rsplit("/", 1)[1]]
    assert (link["amount"], link["currency"]) == (total.minor, "PLN")
    assert pay_at_paybylink(client, paybylink, response).headers["Location"] == "/package"
    sub = the_subscription(app)
    assert (sub.status, sub.period_start, sub.period_end) == (
        "active",
        RENEWAL_DAY,
        dt.date(2027, 1, 26),
    )
    with app.app_context():
        paid = db.session.scalars(
            select(Payment).where(Payment.status == "paid", Payment.account_id == account_id)
        ).all()
        assert [p.provider for p in paid] == ["paybylink", "paybylink"]
        assert db.session.get(Order, order.id).status == "paid"
        invoices = select(Invoice).where(Invoice.account_id == account_id)
        assert len(db.session.scalars(invoices).all()) == 2
    assert "Odnowienie czeka na zapłatę" not in text(client.get("/package"))
    assert "Żadne odnowienie nie czeka na zapłatę." in text(client.get("/package/renewal"))


def test_the_renewal_page_needs_a_login_and_shows_only_ones_own(app, client, customer):
    page = text(client.get("/package/renewal"))
    assert "Żadne odnowienie nie czeka na zapłatę." in page
    anonymous = app.test_client().get("/package/renewal")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]


def test_checkout_offers_only_the_providers_that_take_the_currency(app, client, customer):
    # Transfer24 takes PLN only; PayByLink PLN and EUR.
    pln = text(client.get("/package/edit?currency=PLN"))
    assert 'value="transfer24"' in pln and 'value="paybylink"' in pln
    eur = text(client.get("/package/edit?currency=EUR"))
    assert 'value="transfer24"' not in eur and 'value="paybylink"' in eur
    # Switching the currency live swaps the methods in with the prices.
    data = {
        "csrf_token": csrf_token(client, "/package/edit"),
        "package": "standard",
        "period": "month",
        "agents": "2",
        "conversations": "100",
        "currency": "EUR",
        "prices_in": "PLN",
        "provider": "transfer24",
    }
    swap = text(client.post("/package/summary", data=data, headers={"HX-Request": "true"}))
    fieldset = re.search(
        r'<fieldset id="providers-field" hx-swap-oob="true">.*?</fieldset>', swap, re.S
    )
    assert fieldset, swap
    assert 'value="transfer24"' not in fieldset.group(0)
    assert re.search(r'value="paybylink" checked', fieldset.group(0))


def test_a_provider_whose_label_raises_is_left_out_and_the_others_work(
    app, client, customer, paybylink, caplog, monkeypatch
):
    broken = registry(app).payment_providers["transfer24"]

    def label(language: str) -> str:
        raise RuntimeError("label service down")

    monkeypatch.setattr(broken, "label", label)
    with caplog.at_level(logging.ERROR, logger="portal.web.pay"):
        page = client.get("/package/edit?currency=PLN")
    assert page.status_code == 200
    assert 'value="transfer24"' not in text(page)
    assert 'value="paybylink"' in text(page)
    assert "Płatność linkiem (PayByLink)" in text(page)
    assert any(
        "'transfer24'" in r.getMessage() and "plugin 'pakiet_transfer24'" in r.getMessage()
        for r in caplog.records
    )
    # And the customer still buys with the one that works.
    response = pay_at_paybylink(client, paybylink, buy(client, "paybylink"))
    assert response.headers["Location"] == "/package"
    assert the_subscription(app).package == "standard"


def test_a_czech_sellers_euro_invoice_states_its_vat_in_czk_at_cnbs_rate(
    app, client, customer, paybylink
):
    """The same for a Czech seller (§ 4 odst. 5 ZDPH): a Czech buyer paying in EUR gets the
    VAT in CZK at ČNB's rate, through the rate sources as installed, and the invoice names
    the plugin that gave it."""
    app.config["SELLER"] = {
        "name": "Pakiet CZ s.r.o.",
        "street": "Vodičkova 41",
        "postcode": "110 00",
        "city": "Praha",
        "country": "CZ",
        "vat_id": "CZ27082440",
        "invoice_series": "FV",
    }
    billing = billing_form(
        client,
        country="CZ",
        city="Praha",
        company_name="Nowa Firma s.r.o.",
        street="Václavské náměstí 1",
        postcode="110 00",
        invoice_email="faktury@firma.example.com",
    )
    assert client.post("/billing", data=billing).status_code == 303
    response = pay_at_paybylink(client, paybylink, buy(client, "paybylink", currency="EUR"))
    assert response.headers["Location"] == "/package"
    with app.app_context():
        [invoice] = db.session.scalars(select(Invoice).where(Invoice.currency == "EUR")).all()
        stated = invoice.content["vat_in_pln"]
        assert stated["amount"]["currency"] == "CZK" and stated["table"]
        assert invoice.content["vat_rate"] == "0.21"
        assert invoice.rate_plugin == "pakiet_cnb"


def test_an_invoice_issued_again_to_a_polish_buyer_states_its_vat_in_pln_and_its_plugin(
    app, client, customer, paybylink
):
    """A Czech consumer's euro invoice (Czech VAT through OSS: no PLN line) issued again to a
    Polish company: Polish VAT, stated in PLN at NBP's rate of the original sale date, from
    the rate sources as installed, and the invoice issued again names the plugin."""

    def billing(country: str, city: str, street: str, postcode: str, **extra: str) -> Any:
        data = billing_form(
            client,
            country,
            city,
            company_name="Szprycha",
            street=street,
            postcode=postcode,
            invoice_email="faktury@firma.example.com",
            **extra,
        )
        return client.post("/billing", data=data)

    assert billing("CZ", "Praha", "Václavské náměstí 1", "110 00").status_code == 303
    response = pay_at_paybylink(client, paybylink, buy(client, "paybylink", currency="EUR"))
    assert response.headers["Location"] == "/package"
    moved = billing("PL", "Kraków", "ul. Rowerowa 2", "30-001", apply_to_last_invoice="y")
    assert moved.status_code == 303
    with app.app_context():
        first, credit, again = db.session.scalars(select(Invoice).order_by(Invoice.id)).all()
        assert first.content["vat_in_pln"] is None and first.rate_plugin is None
        assert credit.kind == "credit_note" and again.corrects_id == first.id
        assert again.content["vat_rate"] == "0.23" and again.currency == "EUR"
        assert again.content["vat_in_pln"]["amount"]["currency"] == "PLN"
        assert again.rate_plugin == "pakiet_nbp"


def test_the_exchange_rate_on_an_invoice_names_its_plugin_in_the_admin(
    app, client, customer, paybylink, auth
):
    """Issue 24, point 5: the rate printed on a legal document records which plugin gave it
    (a Polish buyer paying in EUR: the VAT is also stated in PLN at NBP's rate)."""
    response = pay_at_paybylink(client, paybylink, buy(client, "paybylink", currency="EUR"))
    assert response.headers["Location"] == "/package"
    with app.app_context():
        [invoice] = db.session.scalars(select(Invoice).where(Invoice.currency == "EUR")).all()
        assert invoice.content["vat_in_pln"] is not None
        assert invoice.rate_plugin == "pakiet_nbp"
        number = invoice.number
    staff = app.test_client()
    assert Auth(staff).login("admin@demo.example.com", demo.PASSWORD).status_code == 302
    page = text(staff.get("/admin/invoices/"))
    assert number in page and "pakiet_nbp" in page


def test_a_provider_whose_start_fails_with_a_bug_gives_a_clear_message_not_a_500(
    app, client, customer, paybylink, caplog, monkeypatch
):
    """Issue 24, point 5: anything a provider's start_payment raises, not only a
    ProviderError, is taken out of this request, logged with its plugin's name; the customer
    reads why and can pay again (the attempt ended failed, not left pending)."""
    broken = registry(app).payment_providers["transfer24"]

    def start_payment(request: Any) -> Any:
        raise KeyError("redirect_url")  # a bug in the plugin

    monkeypatch.setattr(broken, "start_payment", start_payment)
    with caplog.at_level(logging.ERROR, logger="portal.rules.payments"):
        response = buy(client, "transfer24")
    assert response.status_code == 303
    page = text(client.get(response.headers["Location"]))
    assert "Operator płatności nie odpowiedział" in page
    assert any(
        "'transfer24'" in r.getMessage() and "'pakiet_transfer24'" in r.getMessage()
        for r in caplog.records
    )
    with app.app_context():
        [payment] = db.session.scalars(select(Payment)).all()
        assert (payment.status, payment.failure_code) == ("failed", "provider_unavailable")
    # ...and paying again with another provider works.
    again = pay_at_paybylink(client, paybylink, buy(client, "paybylink"))
    assert again.headers["Location"] == "/package"


def test_a_provider_whose_describe_fails_still_names_the_method_on_every_page(
    app, client, customer, paybylink, caplog, monkeypatch
):
    with app.app_context():
        account_id = db.session.scalar(select(User.account_id).where(User.email == FREE))
        db.session.add(
            PaymentMethod(
                account_id=account_id,
                provider="paybylink",
                provider_ref="alias-1",
                brand="blik",
                is_default=True,
            )
        )
        db.session.commit()
    broken = registry(app).payment_providers["paybylink"]

    def describe(method: Any, language: str) -> str:
        raise RuntimeError("describe broke")

    monkeypatch.setattr(broken, "describe", describe)
    for path in ("/payment-methods", "/package", "/payments"):
        page = client.get(path)
        assert page.status_code == 200, path
    assert "Blik" in text(client.get("/payment-methods"))
    assert "could not describe a method" in caplog.text and "pakiet_paybylink" in caplog.text


def test_a_purchase_fires_payment_settled_with_the_payment_id_the_provider_was_given(
    app, client, customer, paybylink, monkeypatch
):
    """Issue 24, point 7, at run time: the id in PaymentRequest, in the provider's events
    and in payment_settled is one and the same public id."""
    from portal.plugin_api.hookspecs import hookimpl

    settled: list[Any] = []

    class Listener:
        @hookimpl
        def payment_settled(self, event: Any) -> None:
            settled.append(event)

    registry(app).pm.register(Listener(), name="listener")
    provider = registry(app).payment_providers["paybylink"]
    requested: list[str] = []
    start = provider.start_payment

    def recording(request: Any) -> Any:
        requested.append(request.payment_id)
        return start(request)

    monkeypatch.setattr(provider, "start_payment", recording)
    response = pay_at_paybylink(client, paybylink, buy(client, "paybylink"))
    assert response.headers["Location"] == "/package"
    with app.app_context():
        [payment] = db.session.scalars(select(Payment)).all()
        public_id = payment.public_id
    assert requested == [public_id]
    assert [event.payment_id for event in settled] == [public_id]
    assert isinstance(settled[0].payment_id, str)


def test_the_vat_check_admin_names_the_plugin_that_answered(app, client, customer, auth):
    """Issue 24, point 5: a VAT check's answer records its plugin, shown to staff."""
    from portal.infra.models import VatCheck

    with app.app_context():
        account_id = db.session.scalar(select(User.account_id).where(User.email == FREE))
        db.session.add(
            VatCheck(
                account_id=account_id,
                country="DE",
                number="123456789",
                status="valid",
                validator="vies",
                checked_at=at(TODAY),
                plugin="pakiet_vies",
                source_registry="VIES",
            )
        )
        db.session.commit()
    staff = app.test_client()
    assert Auth(staff).login("admin@demo.example.com", demo.PASSWORD).status_code == 302
    page = text(staff.get("/admin/vies/"))
    assert "pakiet_vies" in page and "123456789" in page
