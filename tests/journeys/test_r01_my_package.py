"""R1: My package shows what the customer has."""

from __future__ import annotations

import datetime as dt

from playwright.sync_api import expect

from portal.rules.catalogue import Period
from portal.rules.periods import add_period
from tests.browser.conftest import Contexts
from tests.journeys.conftest import DemoDatabase, Portal
from tests.journeys.customer import PRO, STANDARD, T, customer, exactly


def test_my_package_shows_the_package_and_its_terms(
    contexts: Contexts, portal: Portal, lang: str, demo_database: DemoDatabase
) -> None:
    t = T(lang)
    me = customer(contexts, portal, t)
    me.log_in(STANDARD)
    me.go("My package")
    start = demo_database.day - dt.timedelta(days=10)
    expect(me.package_heading()).to_contain_text(t("Standard"))
    expect(me.package_heading()).to_contain_text(t("Active"))
    expect(me.package_heading()).not_to_contain_text(t("Payment pending"))
    expect(me.fact("Package")).to_have_text(t("Standard"))
    expect(me.fact("Billing period")).to_have_text(t("Monthly"))
    expect(me.fact("Agents")).to_have_text(t.n("%(num)d agent", "%(num)d agents", 3))
    expect(me.fact("Chatbot conversations")).to_have_text(
        t.n("%(num)d conversation per month", "%(num)d conversations per month", 100)
    )
    expect(me.fact("Currency")).to_contain_text("PLN")
    expect(me.fact("Renews on")).to_have_text(t.day(add_period(start, Period.MONTH)))
    expect(me.fact("Auto-renewal")).to_contain_text(t("On"))
    expect(me.fact("Payment method")).to_contain_text("Visa •••• 4242")
    expect(me.fact("Account credit")).to_have_count(0)

    # Pro: yearly, more conversations than included, in euro.
    pro = customer(contexts, portal, t)
    pro.log_in(PRO)
    pro.go("My package")
    start = demo_database.day - dt.timedelta(days=100)
    expect(pro.package_heading()).to_contain_text(t("Pro"))
    expect(pro.package_heading()).to_contain_text(t("Active"))
    expect(pro.fact("Billing period")).to_have_text(t("Yearly"))
    expect(pro.fact("Agents")).to_have_text(t.n("%(num)d agent", "%(num)d agents", 8))
    expect(pro.fact("Chatbot conversations")).to_have_text(
        exactly(
            t.n("%(num)d conversation per month", "%(num)d conversations per month", 1500)
            + " ("
            + t.n("%(num)d included in the package", "%(num)d included in the package", 500)
            + ")"
        )
    )
    expect(pro.fact("Currency")).to_contain_text("EUR")
    expect(pro.fact("Renews on")).to_have_text(t.day(add_period(start, Period.YEAR)))
    expect(pro.fact("Auto-renewal")).to_contain_text(t("On"))
    expect(pro.fact("Payment method")).to_contain_text("Visa •••• 4242")
