"""Payments (issue 4) in a real browser, in Polish and in English.

The live portal here talks to the Stripe and PayPal emulators (session-scoped, free ports
on 127.0.0.1) through the real plugins and SDKs, and the emulators deliver their signed
webhooks to the live portal over HTTP, as in production. The browser goes to the
emulators' hosted pages (Stripe Checkout, PayPal's approval page) and types there what a
customer would. This module overrides ``live_server`` with a portal configured for both
providers; the other browser tests keep theirs, which has no payment provider.

Every webhook a test causes must be delivered and accepted (2xx) before the next test
starts; ``webhooks`` checks that when each test ends.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import pytest
from babel.dates import format_date
from babel.support import Translations
from playwright.sync_api import Locator, Page, expect
from sqlalchemy import select

from pakiet_paypal.emulator import PayPalEmulator
from pakiet_stripe.client import StripeProvider
from pakiet_stripe.emulator import StripeEmulator
from pakiet_vies.emulator import ViesEmulator
from portal.infra.config import ROOT
from portal.infra.extensions import db
from portal.infra.models import Payment, PaymentMethod
from portal.rules import accounts
from portal.web import checkout
from tests.browser.conftest import (
    Contexts,
    LiveServer,
    axe,
    describe,
    live_config,
    login,
    serious,
    serve,
)

FREE = "free@demo.example.com"  # Free, Polish
STANDARD = "standard@demo.example.com"  # Standard, monthly, 3 agents, PLN, no saved method

STRIPE_KEY, STRIPE_SECRET = "sk_test_pakiet_browser", "whsec_pakiet_browser"
PAYPAL_ID, PAYPAL_SECRET, PAYPAL_WEBHOOK = "pakiet-browser", "pakiet-browser-secret", "WH-BROWSER"

VISA, AMEX, DECLINED = "4242 4242 4242 4242", "3782 822463 10005", "4000 0000 0000 0002"
EXPIRY = "12 / 34"

# As in life (and in ``make run``) webhooks come a little late, so the customer's return
# is over first. One landing during the return is test_a_webhook_during_the_return_...
WEBHOOK_DELAY = 1.0
SETTLE_SECONDS = 10.0  # the longest a webhook may take to be delivered and accepted
ACTIVATION_MS = 10_000  # webhook (1.5 s late) + HTMX poll (every 2 s) + margin


# --- what the pages say --------------------------------------------------------------


@dataclass(frozen=True)
class Words:
    code: str
    locale: str  # the browser's
    # My package
    my_package: str
    buy: str
    active: str
    pending: str
    thanks: str
    agents: str
    payment_method: str
    currency: str
    auto_renewal: str
    off: str
    ends_on: str
    suspended_on: str  # the My package note, "{date}" to fill in
    # Edit package and the order page
    edit_heading: str
    activate: str  # "{package}" to fill in
    conversations: str
    card: str
    pay: str  # "{amount}" to fill in
    order_heading: str
    awaiting_payment: str
    declined: str
    cancelled: str
    # Payment methods
    methods: str
    switch_off: str
    switch_on: str
    off_status: str  # "{date}" to fill in
    add_method_first: str
    # the emulators' hosted pages
    stripe_number: str
    stripe_expiry: str
    stripe_cvc: str
    stripe_pay: str
    stripe_back: str
    stripe_declined: str
    stripe_brand_blocked: str
    paypal_email: str
    paypal_password: str
    paypal_pay: str
    amex_not_accepted: str
    edit: str
    add_method: str
    method_saved: str
    stripe_save: str


POLISH = Words(
    code="pl",
    locale="pl-PL",
    my_package="Mój pakiet",
    buy="Kup pakiet",
    active="Aktywny",
    pending="Płatność w toku",
    thanks="Dziękujemy! Otrzymaliśmy Twoją płatność.",
    agents="Agenci",
    payment_method="Metoda płatności",
    currency="Waluta",
    auto_renewal="Automatyczne odnawianie",
    off="Wyłączone",
    ends_on="Wygasa",
    suspended_on="Twoje konto zostanie zawieszone {date}.",
    edit_heading="Edytuj pakiet",
    activate="Aktywuj {package}",
    conversations="Rozmowy z czatbotem miesięcznie",
    card="Karta płatnicza (Visa, Mastercard)",
    pay="Zapłać {amount}",
    order_heading="Twoje zamówienie",
    awaiting_payment="Oczekuje na płatność",
    declined="Twój bank odrzucił kartę. Użyj innej karty lub innej metody płatności.",
    cancelled="Anulowano płatność. Nic nie zostało pobrane.",
    methods="Metody płatności",
    switch_off="Wyłącz automatyczne odnawianie",
    switch_on="Włącz automatyczne odnawianie",
    off_status="Wyłączone. Twoje konto zostanie zawieszone {date}, gdy skończy się opłacony okres.",
    add_method_first=(
        "Najpierw dodaj metodę płatności: to z niej pobierane są opłaty za odnowienia."
    ),
    stripe_number="Numer karty",
    stripe_expiry="Data ważności (MM / RR)",
    stripe_cvc="Kod bezpieczeństwa (CVC)",
    stripe_pay="Zapłać",
    stripe_back="← Wróć",
    stripe_declined="Twoja karta została odrzucona.",
    stripe_brand_blocked="Karty tego wydawcy nie są akceptowane. Użyj innej karty.",
    paypal_email="Adres e-mail",
    paypal_password="Hasło",
    paypal_pay="Zapłać teraz",
    amex_not_accepted="Nie obsługujemy kart American Express ani kryptowalut.",
    edit="Edytuj",
    add_method="Dodaj nową metodę płatności",
    method_saved="Nowa metoda płatności została zapisana",
    stripe_save="Zapisz kartę",
)
ENGLISH = Words(
    code="en",
    locale="en-GB",
    my_package="My package",
    buy="Buy a package",
    active="Active",
    pending="Payment pending",
    thanks="Thank you! Your payment was received.",
    agents="Agents",
    payment_method="Payment method",
    currency="Currency",
    auto_renewal="Auto-renewal",
    off="Off",
    ends_on="Ends on",
    suspended_on="Your account will be suspended on {date}.",
    edit_heading="Edit package",
    activate="Activate {package}",
    conversations="Chatbot conversations per month",
    card="Card (Visa, Mastercard)",
    pay="Pay {amount}",
    order_heading="Your order",
    awaiting_payment="Awaiting payment",
    declined="Your bank declined the card. Try another card or another payment method.",
    cancelled="You cancelled the payment. Nothing was charged.",
    methods="Payment methods",
    switch_off="Switch auto-renewal off",
    switch_on="Switch auto-renewal on",
    off_status="Off. Your account will be suspended on {date}, when the paid period ends.",
    add_method_first="Add a payment method first: renewals are charged to it.",
    stripe_number="Card number",
    stripe_expiry="Expiration date (MM / YY)",
    stripe_cvc="Security code (CVC)",
    stripe_pay="Pay",
    stripe_back="← Back",
    stripe_declined="Your card was declined.",
    stripe_brand_blocked="This card brand is not accepted. Please use a different card.",
    paypal_email="E-mail address",
    paypal_password="Password",
    paypal_pay="Pay Now",
    amex_not_accepted="American Express and cryptocurrencies are not accepted.",
    edit="Edit",
    add_method="Add a new payment method",
    method_saved="Your new payment method is saved and will be used from now on.",
    stripe_save="Save card",
)
# The user's stored language decides the portal's; the browser's locale the login page's.
LANGUAGES = pytest.mark.parametrize(
    ("words", "context_options"),
    [(w, {"locale": w.locale}) for w in (POLISH, ENGLISH)],
    ids=["pl", "en"],
)


def ngettext(words: Words, singular: str, plural: str, num: int) -> str:
    catalogue = Translations.load(str(ROOT / "translations"), [words.code])
    return catalogue.ngettext(singular, plural, num) % {"num": num}


def day(words: Words, value: dt.date) -> str:
    """A date as the portal's ``day`` filter writes it."""
    return format_date(value, "long", locale=words.code)


# --- the emulators and a live portal wired to them -----------------------------------


@pytest.fixture(scope="session")
def stripe_emulator() -> Iterator[StripeEmulator]:
    with StripeEmulator(api_key=STRIPE_KEY, webhook_secret=STRIPE_SECRET) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def paypal_emulator() -> Iterator[PayPalEmulator]:
    with PayPalEmulator(
        client_id=PAYPAL_ID, client_secret=PAYPAL_SECRET, webhook_id=PAYPAL_WEBHOOK
    ) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def live_server(
    migrated_db: str,
    tmp_path_factory: pytest.TempPathFactory,
    vies_emulator: ViesEmulator,
    stripe_emulator: StripeEmulator,
    paypal_emulator: PayPalEmulator,
) -> Iterator[LiveServer]:
    """The portal with both payment providers pointed at the emulators (as ``make run``)."""
    config = live_config(
        vies_emulator,
        stripe={
            "api_key": STRIPE_KEY,
            "webhook_secret": STRIPE_SECRET,
            "api_base": stripe_emulator.base_url,
            "max_network_retries": 0,
            "timeout": 5,
        },
        paypal={
            "client_id": PAYPAL_ID,
            "client_secret": PAYPAL_SECRET,
            "webhook_id": PAYPAL_WEBHOOK,
            "base_url": paypal_emulator.base_url,
            "timeout": 5,
        },
    )
    folder = tmp_path_factory.mktemp("live-payments")
    with serve(migrated_db, folder, MAIL_BACKEND="locmem", **config) as live:
        # The portal's address is known only now; the emulators read it per delivery.
        stripe_emulator.webhook_url = f"{live.url}/webhooks/stripe"
        paypal_emulator.webhook_url = f"{live.url}/webhooks/paypal"
        try:
            yield live
        finally:
            stripe_emulator.webhook_url = paypal_emulator.webhook_url = None


class Emulator(Protocol):
    webhook_delay: float

    @property
    def events(self) -> list[dict[str, Any]]: ...

    @property
    def deliveries(self) -> list[Any]: ...

    def wait_for_deliveries(self, count: int, timeout: float = 5.0) -> list[Any]: ...


def _type(event: dict[str, Any]) -> str:
    return str(event.get("type") or event.get("event_type"))


@dataclass
class Webhooks:
    """The webhooks the emulators send during one test."""

    before: dict[int, set[str]]  # per emulator (by id()), the events of earlier tests

    def new_events(self, emulator: Emulator) -> list[dict[str, Any]]:
        return [e for e in emulator.events if e["id"] not in self.before[id(emulator)]]

    def wait(self, emulator: Emulator, event_type: str | None = None) -> None:
        """Until every new event (of ``event_type``) was delivered and accepted (2xx)."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            deliveries = emulator.deliveries
            accepted = {
                d.event_id for d in deliveries if d.status is not None and 200 <= d.status < 300
            }
            relevant = [e for e in self.new_events(emulator) if event_type in (None, _type(e))]
            waiting = [e for e in relevant if e["id"] not in accepted]
            if not waiting and (event_type is None or relevant):
                return
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                emulator.wait_for_deliveries(len(deliveries) + 1, timeout=left)
            except TimeoutError:
                tried = [
                    (d.event_type, d.status, d.error)
                    for d in deliveries
                    if d.event_id in {e["id"] for e in waiting}
                ]
                pytest.fail(
                    f"webhooks not accepted by the portal in {SETTLE_SECONDS} s: "
                    f"{[_type(e) for e in waiting]}; attempts: {tried}",
                    pytrace=False,
                )

    def accepted(self, emulator: Emulator, event_type: str) -> list[Any]:
        new = {e["id"] for e in self.new_events(emulator)}
        return [
            d
            for d in emulator.deliveries
            if d.event_id in new and d.event_type == event_type and d.status == 200
        ]


@pytest.fixture(autouse=True)
def webhooks(
    live_server: LiveServer, stripe_emulator: StripeEmulator, paypal_emulator: PayPalEmulator
) -> Iterator[Webhooks]:
    """Webhooks ``WEBHOOK_DELAY`` late; at the end, all of this test's delivered and
    accepted (so none lands in the next test's fresh data) and the portal raised nothing."""
    emulators: tuple[Emulator, ...] = (stripe_emulator, paypal_emulator)
    for emulator in emulators:
        emulator.webhook_delay = WEBHOOK_DELAY
    before = {id(e): {event["id"] for event in e.events} for e in emulators}
    hooks = Webhooks(before)
    yield hooks
    for emulator in emulators:
        hooks.wait(emulator)
    assert not live_server.errors, f"the portal raised: {live_server.errors!r}"


# --- helpers ---------------------------------------------------------------------------


def log_in(page: Page, live_server: LiveServer, email: str, words: Words) -> None:
    """Log in as ``email`` after storing ``words.code`` as the user's language."""
    with live_server.app.app_context():
        user = accounts.find_user(email)
        assert user is not None
        user.language = words.code
        db.session.commit()
        db.session.remove()
    login(page, email)
    expect(page.locator("html")).to_have_attribute("lang", words.code)


@dataclass(frozen=True)
class Stored:
    package: str
    agents: int
    currency: str | None
    auto_renew: bool
    methods: list[tuple[str, str | None]]  # (brand, last four digits or PayPal e-mail)
    payments: list[str]  # statuses, oldest first


def stored(live_server: LiveServer, email: str) -> Stored:
    with live_server.app.app_context():
        user = accounts.find_user(email)
        assert user is not None and user.account is not None
        sub = user.account.subscription
        methods = db.session.scalars(
            select(PaymentMethod).where(PaymentMethod.account_id == user.account_id)
        ).all()
        payments = db.session.scalars(
            select(Payment.status).where(Payment.account_id == user.account_id).order_by(Payment.id)
        ).all()
        result = Stored(
            package=sub.package,
            agents=sub.agents,
            currency=sub.currency,
            auto_renew=sub.auto_renew,
            methods=[(m.brand, m.last4 or m.email) for m in methods],
            payments=list(payments),
        )
        db.session.remove()
        return result


def period_end(live_server: LiveServer, email: str) -> dt.date:
    with live_server.app.app_context():
        user = accounts.find_user(email)
        assert user is not None and user.account is not None
        end = user.account.subscription.period_end
        db.session.remove()
    assert end is not None
    return end


def server_total(live_server: LiveServer, email: str, words: Words, **fields: Any) -> str:
    """The total the portal computes for this edit form, formatted as its pages show it."""
    with live_server.app.test_request_context():
        user = accounts.find_user(email)
        assert user is not None and user.account is not None
        catalogue = live_server.app.extensions["pakiet.catalogue"]
        form = checkout.parse({k: str(v) for k, v in fields.items()}, user.account, catalogue)
        quote, _tax = checkout.summarise(user.account, form)
        db.session.remove()
    assert quote is not None and quote.payable, f"{fields} is not payable: {form.errors}"
    return quote.total_due.format(words.code)


def package_card(page: Page) -> Locator:
    return page.locator("#package")


def fact(page: Page, term: str) -> Locator:
    """The <dd> of My package's fact ``term``."""
    return package_card(page).locator(
        f"xpath=.//dl[contains(@class, 'package-facts')]/dt[normalize-space()='{term}']"
        "/following-sibling::dd[1]"
    )


def expect_active(page: Page, words: Words, package: str, agents: int, method: str) -> None:
    heading = package_card(page).get_by_role("heading", level=2)
    expect(heading).to_contain_text(package, timeout=ACTIVATION_MS)
    expect(heading).to_contain_text(words.active)
    expect(heading).not_to_contain_text(words.pending)
    agents_text = ngettext(words, "%(num)d agent", "%(num)d agents", agents)
    expect(fact(page, words.agents)).to_have_text(agents_text)
    expect(fact(page, words.payment_method)).to_contain_text(method)


def buy(
    page: Page,
    live_server: LiveServer,
    words: Words,
    *,
    package: str,
    agents: int,
    conversations: int,
    currency: str,
    provider: str,
) -> str:
    """From My package of a Free user: choose, wait for the exact price, press Pay.

    Returns the amount the Pay button showed.
    """
    package_card(page).get_by_role("button", name=words.buy, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(words.edit_heading)
    page.get_by_role("radio", name=words.activate.format(package=package), exact=True).check()
    page.get_by_role("spinbutton", name=words.agents, exact=True).fill(str(agents))
    page.get_by_role("spinbutton", name=words.conversations, exact=True).fill(str(conversations))
    page.get_by_role("combobox", name=re.compile(rf"^{words.currency}")).select_option(currency)
    page.get_by_role("radio", name=provider, exact=True).check()
    fields = {
        "package": package.lower(),
        "period": "month",
        "agents": agents,
        "conversations": conversations,
        "currency": currency,
    }
    amount = server_total(live_server, FREE, words, **fields)
    pay = page.locator("#summary button[name=action][value=pay]")
    # The live summary is current (its digest matches) once Pay shows this exact amount.
    expect(pay).to_have_text(words.pay.format(amount=amount))
    expect(pay).to_be_enabled()
    pay.click()
    return amount


def on_stripe(page: Page, stripe: StripeEmulator, words: Words) -> None:
    """The browser is on the emulator's Checkout page, in the customer's language."""
    expect(page).to_have_url(re.compile(rf"^{re.escape(stripe.base_url)}/c/pay/cs_\w+$"))
    expect(page.locator("html")).to_have_attribute("lang", words.code)


def enter_card(page: Page, words: Words, number: str, cvc: str = "123") -> None:
    """Fill in Stripe Checkout's card form (found by its labels) and press Pay."""
    page.get_by_label(words.stripe_number, exact=True).fill(number)
    page.get_by_label(words.stripe_expiry, exact=True).fill(EXPIRY)
    page.get_by_label(words.stripe_cvc, exact=True).fill(cvc)
    page.get_by_role("button", name=re.compile(rf"^{words.stripe_pay} ")).click()


def expect_order_page(page: Page, words: Words) -> None:
    expect(page).to_have_url(re.compile(r"/package/orders/[0-9a-f]{32}$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(words.order_heading)


def expect_free(page: Page, live_server: LiveServer, words: Words) -> None:
    """Nothing activated, nothing saved; My package still shows Free."""
    state = stored(live_server, FREE)
    assert (state.package, state.methods) == ("free", []), state
    assert "paid" not in state.payments, state
    page.get_by_role("navigation").get_by_role("link", name=words.my_package, exact=True).click()
    heading = package_card(page).get_by_role("heading", level=2)
    expect(heading).to_contain_text("Free")
    expect(heading).not_to_contain_text(words.pending)


def same_page(page: Page) -> list[str]:
    """Mark the document; returns the list of main-frame navigations from now on."""
    navigations: list[str] = []
    page.on(
        "framenavigated",
        lambda frame: navigations.append(frame.url) if frame == page.main_frame else None,
    )
    page.evaluate("() => { window.pakietSamePage = true; }")
    return navigations


def assert_same_page(page: Page, navigations: list[str]) -> None:
    assert page.evaluate("() => window.pakietSamePage === true"), "the page was reloaded"
    assert navigations == [], f"the browser navigated: {navigations}"


# --- 1. Standard with a Visa: payment pending, then active without a reload ------------


@LANGUAGES
def test_buy_standard_with_a_visa(
    page: Page,
    live_server: LiveServer,
    stripe_emulator: StripeEmulator,
    webhooks: Webhooks,
    words: Words,
) -> None:
    log_in(page, live_server, FREE, words)
    currency, agents = ("PLN", 2) if words.code == "pl" else ("EUR", 4)
    buy(
        page,
        live_server,
        words,
        package="Standard",
        agents=agents,
        conversations=100,
        currency=currency,
        provider=words.card,
    )
    on_stripe(page, stripe_emulator, words)

    # As in life the customer is back before the webhook: it comes 1.5 s late, and the
    # portal's own look at the session on the return fails once, so the return cannot
    # settle the payment and My package must wait for the webhook (R9).
    stripe_emulator.webhook_delay = 1.5
    stripe_emulator.fail_next(500)
    enter_card(page, words, VISA)

    expect(page).to_have_url(re.compile(r"/package$"))
    heading = package_card(page).get_by_role("heading", level=2)
    expect(heading).to_contain_text(words.pending)
    expect(package_card(page)).to_have_attribute("hx-trigger", "every 2s")
    navigations = same_page(page)

    expect_active(page, words, "Standard", agents, "Visa •••• 4242")
    expect(fact(page, words.currency)).to_contain_text(currency)
    # HTMX polling did it, in the same document, and stopped once settled.
    assert_same_page(page, navigations)
    expect(package_card(page)).not_to_have_attribute("hx-trigger", re.compile("."))
    assert webhooks.accepted(stripe_emulator, "checkout.session.completed")
    state = stored(live_server, FREE)
    assert (state.package, state.agents, state.currency) == ("standard", agents, currency)
    assert (state.methods, state.payments) == ([("visa", "4242")], ["paid"])


# --- 2. Pro with PayPal ------------------------------------------------------------------


@LANGUAGES
def test_buy_pro_with_paypal(
    page: Page, live_server: LiveServer, paypal_emulator: PayPalEmulator, words: Words
) -> None:
    log_in(page, live_server, FREE, words)
    currency = "PLN" if words.code == "pl" else "EUR"
    buyer = f"anna.{words.code}@buyer.test"
    buy(
        page,
        live_server,
        words,
        package="Pro",
        agents=2,
        conversations=500,
        currency=currency,
        provider="PayPal",
    )
    expect(page).to_have_url(
        re.compile(rf"^{re.escape(paypal_emulator.base_url)}/checkoutnow\?token=\w+")
    )
    expect(page.locator("html")).to_have_attribute("lang", words.code)
    page.get_by_label(words.paypal_email, exact=True).fill(buyer)
    page.get_by_label(words.paypal_password, exact=True).fill("any password")
    page.get_by_role("button", name=words.paypal_pay, exact=True).click()

    expect(page).to_have_url(re.compile(r"/package$"))
    expect(page.locator(".flash-success")).to_have_text(words.thanks)
    expect_active(page, words, "Pro", 2, f"PayPal ({buyer})")
    expect(fact(page, words.currency)).to_contain_text(currency)
    state = stored(live_server, FREE)
    assert (state.package, state.agents, state.currency) == ("pro", 2, currency)
    assert (state.methods, state.payments) == ([("paypal", buyer)], ["paid"])


# --- 3. Amex refused -----------------------------------------------------------------


@LANGUAGES
def test_an_amex_card_is_refused(
    page: Page, live_server: LiveServer, stripe_emulator: StripeEmulator, words: Words
) -> None:
    log_in(page, live_server, FREE, words)
    buy(
        page,
        live_server,
        words,
        package="Standard",
        agents=2,
        conversations=100,
        currency="PLN",
        provider=words.card,
    )
    on_stripe(page, stripe_emulator, words)
    enter_card(page, words, AMEX, cvc="1234")

    # Checkout refuses the brand (brands_blocked) before any money moves.
    expect(page.get_by_role("alert")).to_have_text(words.stripe_brand_blocked)
    on_stripe(page, stripe_emulator, words)
    page.get_by_role("link", name=words.stripe_back, exact=True).click()

    expect_order_page(page, words)
    expect(page.locator(".flash-error").first).to_have_text(words.cancelled)
    expect(page.locator(".badge")).to_have_text(words.awaiting_payment)
    # Our own page names American Express too, in the customer's language (R8).
    expect(page.get_by_role("main")).to_contain_text(words.amex_not_accepted)
    expect_free(page, live_server, words)
    assert stored(live_server, FREE).payments == ["failed"]


# --- 4. A declined card: the reason in the portal, and a retry that works ------------


@LANGUAGES
def test_a_declined_card_is_shown_and_a_retry_succeeds(
    page: Page,
    live_server: LiveServer,
    stripe_emulator: StripeEmulator,
    webhooks: Webhooks,
    words: Words,
) -> None:
    log_in(page, live_server, FREE, words)
    amount = buy(
        page,
        live_server,
        words,
        package="Standard",
        agents=2,
        conversations=100,
        currency="PLN",
        provider=words.card,
    )
    on_stripe(page, stripe_emulator, words)
    enter_card(page, words, DECLINED)
    expect(page.get_by_role("alert")).to_have_text(words.stripe_declined)

    # Stripe tells the portal about the decline by webhook; the customer gives up.
    webhooks.wait(stripe_emulator, "payment_intent.payment_failed")
    page.get_by_role("link", name=words.stripe_back, exact=True).click()

    expect_order_page(page, words)
    expect(page.get_by_role("alert")).to_have_text(words.declined)
    state = stored(live_server, FREE)
    assert (state.package, state.methods, state.payments) == ("free", [], ["failed"])

    # Try again from the order page, with a card that works.
    pay = page.get_by_role("button", name=words.pay.format(amount=amount), exact=True)
    expect(page.get_by_role("radio", name=words.card, exact=True)).to_be_checked()
    pay.click()
    on_stripe(page, stripe_emulator, words)
    enter_card(page, words, VISA)

    expect(page).to_have_url(re.compile(r"/package$"))
    expect_active(page, words, "Standard", 2, "Visa •••• 4242")
    state = stored(live_server, FREE)
    assert (state.package, state.agents) == ("standard", 2)
    assert (state.methods, state.payments) == ([("visa", "4242")], ["failed", "paid"])


# --- 5. Auto-renewal switched off ------------------------------------------------------


def assert_no_serious_violations(page: Page, where: str) -> None:
    found = serious(axe(page))
    assert not found, f"axe-core: serious/critical violations on {where}:\n{describe(found)}"


@LANGUAGES
def test_switching_auto_renewal_off(
    page: Page, contexts: Contexts, live_server: LiveServer, words: Words
) -> None:
    end = day(words, period_end(live_server, STANDARD))
    log_in(page, live_server, STANDARD, words)
    nav = page.get_by_role("navigation")
    nav.get_by_role("link", name=words.methods, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(words.methods)
    assert_no_serious_violations(page, f"the payment methods page ({words.code})")

    section = page.locator("#auto-renew")
    switch_off(page, words)
    expect(section.get_by_role("status")).to_contain_text(words.off_status.format(date=end))
    expect(section.get_by_role("button", name=words.switch_on, exact=True)).to_be_visible()
    assert stored(live_server, STANDARD).auto_renew is False
    assert_no_serious_violations(page, f"the payment methods page, switched off ({words.code})")

    nav.get_by_role("link", name=words.my_package, exact=True).click()
    expect(fact(page, words.auto_renewal)).to_contain_text(words.off)
    expect(fact(page, words.auto_renewal)).to_contain_text(words.suspended_on.format(date=end))
    expect(fact(page, words.ends_on)).to_have_text(end)


def switch_off(page: Page, words: Words) -> None:
    """Payment methods' "Switch auto-renewal off": it asks first, on a page of its own (the
    date, what is kept, an optional "why?"), then comes back to Payment methods."""
    page.locator("#auto-renew").get_by_role("button", name=words.switch_off, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(words.switch_off)
    assert_no_serious_violations(page, f"switching auto-renewal off ({words.code})")
    page.get_by_role("main").get_by_role("button", name=words.switch_off, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(words.methods)


@LANGUAGES
def test_switching_auto_renewal_on_without_a_saved_method_says_why(
    page: Page, live_server: LiveServer, words: Words
) -> None:
    log_in(page, live_server, STANDARD, words)
    page.get_by_role("navigation").get_by_role("link", name=words.methods, exact=True).click()
    section = page.locator("#auto-renew")
    switch_off(page, words)
    switch_on = section.get_by_role("button", name=words.switch_on, exact=True)
    with page.expect_response(lambda r: urlsplit(r.url).path == "/payment-methods/auto-renew"):
        switch_on.click()
    expect(section.get_by_role("alert")).to_have_text(words.add_method_first, timeout=1_000)
    assert stored(live_server, STANDARD).auto_renew is False


# --- a webhook that lands while the customer is coming back ----------------------------


def test_a_webhook_during_the_return_activates_once_and_keeps_the_payment(
    page: Page,
    live_server: LiveServer,
    stripe_emulator: StripeEmulator,
    webhooks: Webhooks,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    words = POLISH
    log_in(page, live_server, FREE, words)
    buy(
        page,
        live_server,
        words,
        package="Standard",
        agents=2,
        conversations=100,
        currency="PLN",
        provider=words.card,
    )
    on_stripe(page, stripe_emulator, words)
    stripe_emulator.webhook_delay = 0.0
    original = StripeProvider.complete_return

    def return_meanwhile_webhook(self: StripeProvider, **kwargs: Any) -> Any:
        event = original(self, **kwargs)
        # The portal is asking Stripe about the session when the webhook is handled.
        webhooks.wait(stripe_emulator, "checkout.session.completed")
        return event

    monkeypatch.setattr(StripeProvider, "complete_return", return_meanwhile_webhook)
    enter_card(page, words, VISA)
    page.wait_for_url(re.compile(r"/package(/orders/\w+)?$"))
    state = stored(live_server, FREE)
    assert (state.package, state.payments) == ("standard", ["paid"]), state
    expect(page).to_have_url(re.compile(r"/package$"))
    expect_active(page, words, "Standard", 2, "Visa •••• 4242")


# --- replacing the card, and a saved card's charge that needs 3-D Secure ----------------


@LANGUAGES
def test_replacing_the_card_through_the_providers_setup_page(
    page: Page, live_server: LiveServer, stripe_emulator: StripeEmulator, words: Words
) -> None:
    log_in(page, live_server, STANDARD, words)
    page.get_by_role("navigation").get_by_role("link", name=words.methods, exact=True).click()
    page.get_by_role("radio", name=words.card, exact=True).check()
    page.get_by_role("button", name=words.add_method, exact=True).click()
    # Stripe's hosted page in setup mode, on the emulator's origin.
    on_stripe(page, stripe_emulator, words)
    page.get_by_label(words.stripe_number, exact=True).fill("5555 5555 5555 4444")
    page.get_by_label(words.stripe_expiry, exact=True).fill(EXPIRY)
    page.get_by_label(words.stripe_cvc, exact=True).fill("123")
    page.get_by_role("button", name=words.stripe_save, exact=True).click()

    expect(page).to_have_url(re.compile(r"/payment-methods$"))
    expect(page.locator(".flash-success")).to_contain_text(words.method_saved)
    expect(page.locator("#saved-heading + ul")).to_contain_text("Mastercard •••• 4444")
    assert stored(live_server, STANDARD).methods == [("mastercard", "4444")]


@LANGUAGES
def test_a_saved_card_that_asks_for_3_d_secure_sends_the_customer_to_confirm(
    page: Page,
    live_server: LiveServer,
    stripe_emulator: StripeEmulator,
    webhooks: Webhooks,
    words: Words,
) -> None:
    """The change is charged to the saved card; the bank asks for 3-D Secure: the customer
    goes to the bank's page (another origin) from Pay, confirms, and comes back active."""
    log_in(page, live_server, FREE, words)
    buy(
        page,
        live_server,
        words,
        package="Standard",
        agents=2,
        conversations=100,
        currency="PLN",
        provider=words.card,
    )
    on_stripe(page, stripe_emulator, words)
    enter_card(page, words, "4000 0027 6000 3184")  # 3-D Secure on every payment
    page.get_by_role("button", name="Complete authentication", exact=True).click()
    expect_active(page, words, "Standard", 2, "Visa •••• 3184")

    package_card(page).get_by_role("button", name=words.edit, exact=True).click()
    page.get_by_role("spinbutton", name=words.agents, exact=True).fill("4")
    amount = server_total(live_server, FREE, words, agents=4)
    pay = page.locator("#summary button[name=action][value=pay]")
    expect(pay).to_have_text(words.pay.format(amount=amount))
    pay.click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(stripe_emulator.base_url)}/3d_secure"))
    page.get_by_role("button", name="Complete authentication", exact=True).click()
    expect_active(page, words, "Standard", 4, "Visa •••• 3184")
    assert stored(live_server, FREE).payments == ["paid", "paid"]
