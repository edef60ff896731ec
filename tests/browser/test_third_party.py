"""A third party's payment provider in a real browser, under the portal's own policy.

``pakiet-transfer24`` (tests/thirdparty) is a redirect-and-notify bank transfer written
against the public contract only. Its bank page lives on another origin, which the provider
declares (``hosted_origins``): Pay must take the customer there and back exactly as with the
built-in providers (issue 20). The same portal shows that "payment pending" does not stick
when the customer never comes back from the bank.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from pakiet_vies.emulator import ViesEmulator
from portal.infra.extensions import db
from portal.infra.models import Order
from tests.browser.conftest import LiveServer, as_customer, serve_third_party, translate
from tests.conftest import module_emulator

LANGUAGES = pytest.mark.parametrize(
    ("language", "context_options"),
    [("pl", {"locale": "pl-PL"}), ("en", {"locale": "en-GB"})],
    ids=["pl", "en"],
)


transfer24 = module_emulator("transfer24")


@pytest.fixture(scope="module")
def live_server(
    migrated_db: str,
    tmp_path_factory: pytest.TempPathFactory,
    vies_emulator: ViesEmulator,
    transfer24: Any,
) -> Iterator[LiveServer]:
    with serve_third_party(
        "transfer24", transfer24, migrated_db, tmp_path_factory, vies_emulator
    ) as live:
        transfer24.notify_url = f"{live.url}/webhooks/transfer24"
        yield live


def choose_and_pay(page: Page, language: str) -> None:
    """Buy Standard for 2 agents in PLN with the bank transfer, from My package."""
    _ = lambda text: translate(language, text)  # noqa: E731
    page.locator("#package").get_by_role("button", name=_("Buy a package"), exact=True).click()
    page.get_by_role("radio", name=_("Activate %(package)s") % {"package": "Standard"}).check()
    page.get_by_role("spinbutton", name=_("Agents"), exact=True).fill("2")
    page.get_by_role("combobox", name=re.compile(rf"^{_('Currency')}")).select_option("PLN")
    label = "Przelew online (Transfer24)" if language == "pl" else "Online bank transfer"
    page.get_by_role("radio", name=label, exact=True).check()
    pay = page.locator("#summary button[name=action][value=pay]")
    expect(pay).to_have_text(re.compile(_("Pay %(amount)s").replace("%(amount)s", r"\S+")))
    # As a person reads the summary before paying: no summary still on its way.
    expect(page.locator(".htmx-request, .htmx-swapping, .htmx-settling")).to_have_count(0)
    expect(pay).to_be_enabled()
    pay.click()


@LANGUAGES
def test_a_third_party_provider_pays_in_the_browser(
    page: Page, live_server: LiveServer, transfer24: Any, language: str
) -> None:
    as_customer(page, live_server, language)
    choose_and_pay(page, language)
    # On the bank's own origin, which the policy let the browser reach.
    expect(page).to_have_url(re.compile(rf"^{re.escape(transfer24.base_url)}/trnRequest/T\d+$"))
    page.get_by_role("button", name="Zapłać", exact=True).click()
    expect(page).to_have_url(re.compile(r"/package$"))
    heading = page.locator("#package").get_by_role("heading", level=2)
    expect(heading).to_contain_text("Standard", timeout=10_000)
    expect(heading).to_contain_text(translate(language, "Active"))


@LANGUAGES
def test_payment_pending_stops_at_the_orders_expiry_when_the_customer_never_returns(
    page: Page,
    live_server: LiveServer,
    transfer24: Any,
    monkeypatch: pytest.MonkeyPatch,
    language: str,
) -> None:
    as_customer(page, live_server, language)
    choose_and_pay(page, language)
    expect(page).to_have_url(re.compile(rf"^{re.escape(transfer24.base_url)}/trnRequest/T\d+$"))
    page.goto("/package")  # the customer leaves the bank's page and never pays
    card = page.locator("#package")
    expect(card).to_contain_text(translate(language, "Payment pending"))
    expect(card).to_have_attribute("hx-trigger", "every 2s")
    with live_server.app.app_context():
        expires_at = db.session.scalars(db.select(Order.expires_at)).one()
        db.session.remove()
    # The clock passes the order's expiry: the polling page updates itself and stops.
    later = expires_at + dt.timedelta(seconds=1)
    monkeypatch.setattr("portal.web.account.utcnow", lambda: later)
    expect(card).not_to_contain_text(translate(language, "Payment pending"), timeout=6_000)
    expect(card).not_to_have_attribute("hx-trigger", re.compile("."))
    expect(card).to_contain_text(
        translate(language, "The payment page expired. Nothing was charged; please try again.")
    )
    expect(card.get_by_role("link", name=translate(language, "Try again"))).to_have_attribute(
        "href", "/package/edit"
    )
