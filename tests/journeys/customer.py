"""What a customer does in the portal, in their language: the journeys' vocabulary.

Everything here goes through the browser: clicks, typing, reading. The words come from the
portal's own catalogues (``T``), so a journey reads the page as the customer does; a text
the catalogues do not have is written out in both languages where it is asserted.
"""

from __future__ import annotations

import datetime as dt
import email.message
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from babel.dates import format_date
from babel.support import Translations
from playwright.sync_api import Locator, Page, expect

from portal.demo import PASSWORD
from portal.infra.config import ROOT
from portal.rules.money import Money
from tests.browser.conftest import login
from tests.conftest import Inbox, decoded_subject
from tests.journeys.conftest import JOURNEY_TIMEOUT_MS, Portal

FREE = "free@demo.example.com"  # Free, Polish
STANDARD = "standard@demo.example.com"  # Standard, monthly, 3 agents, PLN, Visa 4242, Polish
PRO = "pro@demo.example.com"  # Pro, yearly, 8 agents, 1,500 conversations, EUR, Visa, English

VISA, MASTERCARD = "4242 4242 4242 4242", "5555 5555 5555 4444"
AMEX, DECLINED = "3782 822463 10005", "4000 0000 0000 0002"
EXPIRY = "12 / 34"

# Webhooks come ~1 s late; the pending page polls every 2 s.
ACTIVATION_MS = 15_000
LANGUAGE_NAMES = {"pl": "Polski", "en": "English"}
SOFT_TIMEOUT_MS = 5_000

# The emulators' hosted pages (they speak the customer's language too).
STRIPE_WORDS = {
    "pl": {
        "number": "Numer karty",
        "expiry": "Data ważności (MM / RR)",
        "cvc": "Kod bezpieczeństwa (CVC)",
        "pay": "Zapłać",
        "save": "Zapisz kartę",
        "back": "← Wróć",
        "declined": "Twoja karta została odrzucona.",
        "blocked": "Karty tego wydawcy nie są akceptowane. Użyj innej karty.",
    },
    "en": {
        "number": "Card number",
        "expiry": "Expiration date (MM / YY)",
        "cvc": "Security code (CVC)",
        "pay": "Pay",
        "save": "Save card",
        "back": "← Back",
        "declined": "Your card was declined.",
        "blocked": "This card brand is not accepted. Please use a different card.",
    },
}
PAYPAL_WORDS = {
    "pl": {"email": "Adres e-mail", "password": "Hasło", "pay": "Zapłać teraz"},
    "en": {"email": "E-mail address", "password": "Password", "pay": "Pay Now"},
}


class T:
    """The portal's words in one language, from its compiled catalogues."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.catalogue = Translations.load(str(ROOT / "translations"), [lang])

    def __call__(self, message: str, **values: Any) -> str:
        text = self.catalogue.gettext(message)
        return text % values if values else text

    def n(self, singular: str, plural: str, num: int, **values: Any) -> str:
        return self.catalogue.ngettext(singular, plural, num) % {"num": num, **values}

    def money(self, amount: str | Decimal, currency: str) -> str:
        """``"328.41", "PLN"`` as the portal writes it: ``328,41 zł`` / ``PLN 328.41``."""
        minor = int((Decimal(amount) * 100).to_integral_value())
        return Money(minor, currency).format(self.lang)

    def money_minor(self, minor: int, currency: str) -> str:
        return Money(minor, currency).format(self.lang)

    def day(self, value: dt.date) -> str:
        return format_date(value, "long", locale=self.lang)

    def pick(self, pl: str, en: str) -> str:
        """A text the catalogues do not hold (an emulator's page, an expected fix)."""
        return pl if self.lang == "pl" else en


def exactly(text: str) -> re.Pattern[str]:
    """A pattern for ``text`` as a whole, whitespace-insensitive."""
    return re.compile(r"^\s*" + r"\s+".join(map(re.escape, text.split())) + r"\s*$")


def containing(text: str) -> re.Pattern[str]:
    return re.compile(r"\s+".join(map(re.escape, text.split())))


@dataclass
class Customer:
    """One customer at one browser page."""

    page: Page
    t: T
    portal: Portal
    email: str = ""

    @property
    def lang(self) -> str:
        return self.t.lang

    # -- getting in --------------------------------------------------------------------

    def log_in(self, email: str, password: str = PASSWORD) -> None:
        """Log in through the form; then speak the journey's language (the switcher)."""
        self.email = email
        self.page.goto("/login")
        login(self.page, email, password)
        self.speak()

    def speak(self) -> None:
        """Switch the portal to the journey's language with the switcher, if needed."""
        if self.page.locator("html").get_attribute("lang") != self.lang:
            switcher = self.page.locator("form.language-switcher")
            switcher.get_by_role("button", name=LANGUAGE_NAMES[self.lang], exact=True).click()
        expect(self.page.locator("html")).to_have_attribute("lang", self.lang)

    def sign_up(
        self, company: str, email: str, inbox: Inbox, password: str = "a long enough password 7"
    ) -> None:
        """Create an account through the sign-up form, then open the link of the e-mail
        and confirm, as a new customer does (lands on My package)."""
        self.email = email
        self.page.goto("/signup")
        self.speak()
        form = self.page.locator("main form")
        t = self.t
        form.get_by_label(t("Company name"), exact=True).fill(company)
        form.get_by_label(t("E-mail"), exact=True).fill(email)
        form.get_by_label(t("Password"), exact=True).fill(password)
        form.get_by_label(t("Repeat the password"), exact=True).fill(password)
        form.get_by_role("button", name=t("Sign up"), exact=True).click()
        expect(self.page.get_by_role("heading", level=1)).to_have_text(t("Check your inbox"))
        message = wait_for_mail(inbox, lambda m: m["To"] == email)
        assert subject(message) == t("Confirm your e-mail address for Pakiet")
        link = re.search(r"https?://\S+/signup/confirm/\S+", text_of(message))
        assert link is not None, text_of(message)
        self.page.goto(link.group(0))
        expect(self.page.get_by_role("heading", level=1)).to_have_text(
            t("Confirm your e-mail address")
        )
        self.page.get_by_role("button", name=t("Confirm and log in"), exact=True).click()
        expect(self.page.get_by_role("heading", level=1)).to_have_text(t("My package"))

    # -- finding one's way -------------------------------------------------------------

    def go(self, section: str) -> None:
        """Follow a link of the main navigation (``"My package"``, ``"Invoices"``...)."""
        nav = self.page.get_by_role("navigation", name=self.t("Main"))
        # The navigation names support shortly; its page has the full heading.
        link = (
            self.t.catalogue.pgettext("navigation", "Support")
            if section == "Contact support"
            else self.t(section)
        )
        nav.get_by_role("link", name=link, exact=True).click()
        expect(self.page.get_by_role("heading", level=1)).to_have_text(self.t(section))

    def heading(self) -> Locator:
        return self.page.get_by_role("heading", level=1)

    # -- My package --------------------------------------------------------------------

    @property
    def package(self) -> Locator:
        return self.page.locator("#package")

    def package_heading(self) -> Locator:
        return self.package.get_by_role("heading", level=2)

    def fact(self, term: str) -> Locator:
        """The value of My package's fact ``term`` (an English msgid)."""
        name = self.t(term)
        return self.package.locator(
            f"xpath=.//dl[contains(@class, 'package-facts')]/dt[normalize-space()='{name}']"
            "/following-sibling::dd[1]"
        )

    def period_end(self) -> dt.date:
        """The renewal (or end) date My package shows, as the machine-readable <time>."""
        self.go("My package")
        value = self.package.locator("dd time").first.get_attribute("datetime")
        assert value, "My package shows no period end"
        return dt.date.fromisoformat(value)

    def expect_active(self, package: str, *, timeout: float = ACTIVATION_MS) -> None:
        heading = self.package_heading()
        expect(heading).to_contain_text(self.t(package), timeout=timeout)
        expect(heading).to_contain_text(self.t("Active"), timeout=timeout)
        expect(heading).not_to_contain_text(self.t("Payment pending"), timeout=timeout)

    # -- the edit form and its summary ------------------------------------------------

    def open_edit(self) -> None:
        """My package → Edit (Buy a package on Free, Reactivate when suspended)."""
        self.go("My package")
        self.package.get_by_role("button", name=re.compile(self._edit_names())).click()
        expect(self.heading()).to_have_text(self.t("Edit package"))
        self.page.wait_for_load_state("load")  # the page's scripts run: it is live

    def _edit_names(self) -> str:
        names = [self.t("Edit"), self.t("Buy a package"), self.t("Reactivate")]
        return "^(" + "|".join(map(re.escape, names)) + ")$"

    def choose(
        self,
        *,
        period: str | None = None,
        package: str | None = None,
        agents: int | None = None,
        conversations: int | None = None,
        currency: str | None = None,
        provider: str | None = None,
    ) -> None:
        """Fill in the edit form as a customer would, top to bottom."""
        page, t = self.page, self.t
        if period is not None:
            label = t("Monthly") if period == "month" else t("Yearly")
            self._pick(page.get_by_role("radio", name=label, exact=True))
        if package is not None:
            name = t("Activate %(package)s", package=t(package))
            self._pick(page.get_by_role("radio", name=name, exact=True))
        if agents is not None:
            self._type(page.get_by_role("spinbutton", name=t("Agents"), exact=True), agents)
        if conversations is not None:
            field = page.get_by_role(
                "spinbutton", name=t("Chatbot conversations per month"), exact=True
            )
            self._type(field, conversations)
        if currency is not None:
            select = page.get_by_role("combobox", name=re.compile(rf"^{t('Currency')}"))
            if select.input_value() != currency:
                with self._summary_answers():
                    select.select_option(currency)
        if provider is not None:
            page.get_by_role("radio", name=provider, exact=True).check()

    def _summary_answers(self) -> Any:
        return self.page.expect_response(lambda r: path_of(r.url) == "/package/summary")

    def _pick(self, radio: Locator) -> None:
        """Choose a radio button, and let the summary answer before going on (as a person
        reads it): the answer may bring the conversations into the package's range."""
        if radio.is_checked():
            return
        with self._summary_answers():
            radio.check()

    def _type(self, field: Locator, number: int) -> None:
        """Type a number (the summary follows it, and is let to answer)."""
        if field.input_value() == str(number):
            return
        with self._summary_answers():
            field.fill(str(number))

    def settle(self) -> None:
        """Until no summary is on its way (what a person reading the page waits for)."""
        expect(self.page.locator(".htmx-request, .htmx-swapping, .htmx-settling")).to_have_count(0)

    def pay(self) -> None:
        """Press the summary's Pay (or Confirm) button once the summary has settled."""
        self.settle()
        self.pay_button.click()

    @property
    def summary(self) -> Locator:
        return self.page.locator("#summary")

    @property
    def pay_button(self) -> Locator:
        return self.summary.get_by_role("button", name=re.compile(self._pay_names()))

    def _pay_names(self) -> str:
        t = self.t
        pay = re.escape(t("Pay %(amount)s", amount="@")).replace("@", ".+")
        return f"^({pay}|{re.escape(t('Confirm the change'))}|{re.escape(t('Pay'))})$"

    def expect_total(self, amount: str) -> None:
        """The live summary is current: its total and its Pay button show ``amount``."""
        expect(self.summary.get_by_test_id("total-due")).to_have_text(amount)
        expect(self.pay_button).to_have_text(self.t("Pay %(amount)s", amount=amount))
        expect(self.pay_button).to_be_enabled()

    def card_label(self) -> str:
        """The Stripe plugin's name for itself (its own words, not the catalogues')."""
        return self.t.pick("Karta płatnicza (Visa, Mastercard)", "Card (Visa, Mastercard)")

    # -- the providers' pages -----------------------------------------------------------

    def on_stripe(self) -> None:
        stripe = re.escape(self.portal.emulator("stripe"))
        expect(self.page).to_have_url(re.compile(rf"^{stripe}/c/pay/cs_\w+"))
        expect(self.page.locator("html")).to_have_attribute("lang", self.lang)

    def enter_card(self, number: str, cvc: str = "123", *, saving: bool = False) -> None:
        """Stripe Checkout: type the card and press Pay (or Save card)."""
        words = STRIPE_WORDS[self.lang]
        page = self.page
        page.get_by_label(words["number"], exact=True).fill(number)
        page.get_by_label(words["expiry"], exact=True).fill(EXPIRY)
        page.get_by_label(words["cvc"], exact=True).fill(cvc)
        button = words["save"] if saving else words["pay"]
        page.get_by_role("button", name=re.compile(rf"^{re.escape(button)}")).click()

    def stripe_back(self) -> None:
        self.page.get_by_role("link", name=STRIPE_WORDS[self.lang]["back"], exact=True).click()

    def on_paypal(self) -> None:
        paypal = re.escape(self.portal.emulator("paypal"))
        expect(self.page).to_have_url(re.compile(rf"^{paypal}/checkoutnow\?token=\w+"))
        expect(self.page.locator("html")).to_have_attribute("lang", self.lang)

    def approve_paypal(self, buyer: str) -> None:
        words = PAYPAL_WORDS[self.lang]
        self.page.get_by_label(words["email"], exact=True).fill(buyer)
        self.page.get_by_label(words["password"], exact=True).fill("any password")
        self.page.get_by_role("button", name=words["pay"], exact=True).click()

    # -- invoices ----------------------------------------------------------------------

    def invoice_rows(self) -> Locator:
        return self.page.locator("table.invoices tbody tr")

    def flash(self) -> Locator:
        return self.page.locator(".flashes .flash")


# -- e-mail ------------------------------------------------------------------------------


def wait_for_mail(
    inbox: Inbox, match: Callable[[email.message.Message], bool], timeout: float = 15
) -> email.message.Message:
    """The first message ``match`` accepts, waiting for it to arrive."""
    deadline = time.monotonic() + timeout
    while True:
        for message in list(inbox.messages):
            if match(message):
                return message
        if time.monotonic() > deadline:
            raise AssertionError(f"no such e-mail in {timeout} s; got {inbox.subjects()}")
        time.sleep(0.1)


def subject(message: email.message.Message) -> str:
    return decoded_subject(message)


def text_of(message: email.message.Message) -> str:
    """The plain-text body of a message."""
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode(part.get_content_charset() or "utf-8")
    return ""


def attachments(message: email.message.Message) -> list[tuple[str, bytes]]:
    found = []
    for part in message.walk():
        filename = part.get_filename()
        if filename:
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found.append((filename, payload))
    return found


def path_of(url: str) -> str:
    return urlsplit(url).path


def amount_of(shown: str) -> int:
    """Minor units of an amount as the portal shows it (``1 234,56 zł``, ``€1,234.56``)."""
    digits = re.sub(r"[^\d,.]", "", shown)
    whole, _, cents = re.split(r"[,.](?=\d{2}$)", digits)[0], "", digits[-2:]
    return int(re.sub(r"[,.]", "", whole) + cents)


def half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half-up to a whole number (of minor units)."""
    whole, rest = divmod(numerator, denominator)
    return whole + (1 if 2 * rest >= denominator else 0)


class Soft:
    """Checks that let a journey go on after a wrong text (a product defect), so the rest
    of the journey is still exercised; ``done()`` fails the test with all of them."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    @contextmanager
    def check(self, what: str) -> Iterator[None]:
        """The page is there already: a text is on it or not, without the long wait."""
        expect.set_options(timeout=SOFT_TIMEOUT_MS)
        try:
            yield
        except AssertionError as exc:
            self.failures.append(f"{what}:\n{exc}")
        finally:
            expect.set_options(timeout=JOURNEY_TIMEOUT_MS)

    def done(self) -> None:
        assert not self.failures, "\n\n".join(self.failures)


def customer(contexts: Any, portal: Portal, t: T) -> Customer:
    """A customer at a new browser context (of the portal as it runs now)."""
    return Customer(contexts.new_page(base_url=portal.url), t, portal)
