"""The Proof of issue 24 in a real browser, under the portal's own policy.

``pakiet-paybylink`` (tests/thirdparty) is a second third party's provider: redirect only,
no saved methods (``renewable_brands`` empty). A customer buys with it in Chromium; at the
renewal nothing can be charged, so the run leaves the renewal open, and the customer
follows the banner to the renewal page and pays it by hand, on PayByLink's own origin,
which the page's Content-Security-Policy lets the browser reach.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from pakiet_vies.emulator import ViesEmulator
from portal.infra.extensions import db
from portal.rules import accounts, lifecycle
from tests.browser.conftest import FREE, LiveServer, as_customer, serve_third_party, translate
from tests.conftest import module_emulator

LABELS = {"pl": "Płatność linkiem (PayByLink)", "en": "Pay by link (PayByLink)"}
LANGUAGES = pytest.mark.parametrize(
    ("language", "context_options"),
    [("pl", {"locale": "pl-PL"}), ("en", {"locale": "en-GB"})],
    ids=["pl", "en"],
)


paybylink = module_emulator("paybylink")


@pytest.fixture(scope="module")
def live_server(
    migrated_db: str,
    tmp_path_factory: pytest.TempPathFactory,
    vies_emulator: ViesEmulator,
    paybylink: Any,
) -> Iterator[LiveServer]:
    with serve_third_party(
        "paybylink", paybylink, migrated_db, tmp_path_factory, vies_emulator
    ) as live:
        yield live


def pay_on_paybylink(page: Page, paybylink: Any) -> None:
    expect(page).to_have_url(re.compile(rf"^{re.escape(paybylink.base_url)}/pay/L\d+$"))
    page.get_by_role("button", name="Pay now", exact=True).click()
    expect(page).to_have_url(re.compile(r"/package$"))


def renewal_run(live_server: LiveServer) -> dt.date:
    """The background run on the day the customer's period ends; returns that day."""
    app = live_server.app
    with app.app_context():
        user = accounts.find_user(FREE)
        assert user is not None and user.account is not None
        end = user.account.subscription.period_end
        assert end is not None
        zone = ZoneInfo(app.config["BABEL_DEFAULT_TIMEZONE"])
        at = dt.datetime.combine(end, dt.time(1), tzinfo=zone).astimezone(dt.UTC)
        lifecycle.run(now=at, deps=lifecycle.deps_for(app))
        db.session.remove()
    return end


@LANGUAGES
def test_bought_by_link_and_the_renewal_paid_by_hand_in_the_browser(
    page: Page, live_server: LiveServer, paybylink: Any, language: str
) -> None:
    _ = lambda text: translate(language, text)  # noqa: E731
    # The database is the demo's again (the renewal's order ids with it): so is PayByLink.
    paybylink.forget()
    as_customer(page, live_server, language)
    page.locator("#package").get_by_role("button", name=_("Buy a package"), exact=True).click()
    page.get_by_role("radio", name=_("Activate %(package)s") % {"package": "Standard"}).check()
    page.get_by_role("spinbutton", name=_("Agents"), exact=True).fill("2")
    page.get_by_role("combobox", name=re.compile(rf"^{_('Currency')}")).select_option("EUR")
    # Swapped in for the currency: PayByLink takes EUR.
    page.get_by_role("radio", name=LABELS[language], exact=True).check()
    pay = page.locator("#summary button[name=action][value=pay]")
    expect(pay).to_have_text(re.compile(_("Pay %(amount)s").replace("%(amount)s", r".*€.*")))
    expect(page.locator(".htmx-request, .htmx-swapping, .htmx-settling")).to_have_count(0)
    expect(pay).to_be_enabled()
    pay.click()
    pay_on_paybylink(page, paybylink)
    heading = page.locator("#package").get_by_role("heading", level=2)
    expect(heading).to_contain_text("Standard", timeout=10_000)
    expect(heading).to_contain_text(_("Active"))

    # The period ends: nothing can be charged again, so the renewal waits for the customer.
    end = renewal_run(live_server)
    page.goto("/package")
    banner = page.locator(".lifecycle-banner")
    expect(banner).to_contain_text(_("Your renewal waits to be paid"))
    banner.get_by_role("link", name=_("Pay the renewal")).click()
    expect(page).to_have_url(re.compile(r"/package/renewal$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(_("Pay the renewal"))
    page.get_by_role("radio", name=LABELS[language], exact=True).check()
    page.get_by_role(
        "button", name=re.compile("^" + re.escape(_("Pay %(amount)s").split("%")[0]))
    ).click()
    pay_on_paybylink(page, paybylink)
    expect(page.locator(".lifecycle-banner")).to_have_count(0, timeout=10_000)
    with live_server.app.app_context():
        user = accounts.find_user(FREE)
        assert user is not None and user.account is not None
        sub = user.account.subscription
        assert (sub.status, sub.period_start) == ("active", end)
        assert sub.period_end is not None and sub.period_end > end
        db.session.remove()
    assert live_server.errors == []
