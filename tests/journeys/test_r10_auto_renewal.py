"""R10: auto-renewal switched off in Payment methods; the banner and the e-mails 7 days
and 1 day before the end; suspension when the period ends; reactivation by paying.

The background run is run as cron runs it, at the moments that matter (``--now``); for
the pages of those days the portal is restarted with its clock there (``faketime``)."""

from __future__ import annotations

import datetime as dt
import re

from playwright.sync_api import expect

from portal.rules.catalogue import Period
from portal.rules.periods import add_period
from tests.browser.conftest import Contexts
from tests.conftest import Inbox
from tests.journeys.conftest import ZONE, DemoDatabase, Portal
from tests.journeys.customer import (
    STANDARD,
    T,
    customer,
    exactly,
    subject,
    text_of,
    wait_for_mail,
)


def at(day: dt.date, hour: int = 9, minute: int = 0) -> dt.datetime:
    """``day`` at ``hour`` in the portal's time zone."""
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=ZONE)


def test_auto_renewal_off_warns_suspends_and_paying_reactivates(
    contexts: Contexts, portal: Portal, inbox: Inbox, lang: str, demo_database: DemoDatabase
) -> None:
    t = T(lang)
    start = demo_database.day - dt.timedelta(days=10)
    end = add_period(start, Period.MONTH)

    me = customer(contexts, portal, t)
    me.log_in(STANDARD)
    me.go("Payment methods")
    section = me.page.locator("#auto-renew")
    expect(section.get_by_role("status")).to_contain_text(t("On"))
    section.get_by_role("button", name=t("Switch auto-renewal off"), exact=True).click()
    # It asks first (the date, what is kept, an optional "why?"), then comes back.
    expect(me.heading()).to_have_text(t("Switch auto-renewal off"))
    me.page.get_by_label(t("We only needed it for a while")).check()
    me.page.get_by_role("main").get_by_role(
        "button", name=t("Switch auto-renewal off"), exact=True
    ).click()
    expect(me.heading()).to_have_text(t("Payment methods"))
    expect(section.get_by_role("status")).to_have_text(
        exactly(
            t("Off")
            + ". "
            + t(
                "Your account will be suspended on %(date)s, when the paid period ends. We will"
                " remind you by e-mail 7 days and 1 day before.",
                date=t.day(end),
            )
        )
    )
    expect(
        section.get_by_role("button", name=t("Switch auto-renewal on"), exact=True)
    ).to_be_visible()
    me.go("My package")
    expect(me.fact("Auto-renewal")).to_contain_text(t("Off"))
    expect(me.fact("Auto-renewal")).to_contain_text(
        t("Your account will be suspended on %(date)s.", date=t.day(end))
    )
    expect(me.fact("Ends on")).to_have_text(t.day(end))

    # Seven days before the end, and one day before: e-mails in the customer's language.
    portal.billing_run(at(end - dt.timedelta(days=7)))
    week = wait_for_mail(inbox, lambda m: m["To"] == STANDARD)
    assert subject(week) == t.n(
        "Your Pakiet package will be suspended in %(num)d day",
        "Your Pakiet package will be suspended in %(num)d days",
        7,
    )
    off = t(
        "Auto-renewal of your package is off, so your account will be suspended on %(date)s,"
        " when the paid period ends.",
        date=t.day(end),
    )
    assert off in text_of(week), text_of(week)
    portal.billing_run(at(end - dt.timedelta(days=1)))
    day_before = wait_for_mail(inbox, lambda m: m is not week and m["To"] == STANDARD)
    assert subject(day_before) == t(
        "Your Pakiet package will be suspended on %(date)s", date=t.day(end)
    )
    assert off in text_of(day_before)

    # The portal three days before the end: the banner on every page.
    portal.restart(clock=at(end - dt.timedelta(days=3)))
    me = customer(contexts, portal, t)
    me.log_in(STANDARD)
    me.go("My package")
    banner = me.page.locator(".lifecycle-banner")
    expect(banner.get_by_role("heading")).to_have_text(
        t.n("Your package ends in %(num)d day", "Your package ends in %(num)d days", 3)
    )
    expect(banner).to_contain_text(
        t("Auto-renewal is off, so your account will be suspended on %(date)s.", date=t.day(end))
    )
    expect(banner.get_by_role("link", name=t("Switch auto-renewal on"))).to_be_visible()
    me.go("Invoices")
    expect(banner).to_be_visible()

    # The period ends: the run suspends the account and says so.
    portal.billing_run(at(end, 0, 30))
    suspended = wait_for_mail(inbox, lambda m: subject(m) == t("Your Pakiet account is suspended"))
    assert t(
        "The paid period of your package ended on %(date)s without renewal, so your account is"
        " suspended.",
        date=t.day(end),
    ) in text_of(suspended)

    # The next day: suspended; paying for a new period reactivates it.
    day_after = end + dt.timedelta(days=1)
    portal.restart(clock=at(day_after, 10))
    me = customer(contexts, portal, t)
    me.log_in(STANDARD)
    me.go("My package")
    banner = me.page.locator(".lifecycle-banner")
    expect(me.package_heading()).to_contain_text(t("Suspended"))
    expect(me.fact("Ended on")).to_have_text(t.day(end))
    expect(banner.get_by_role("heading")).to_have_text(t("Your account is suspended"))
    expect(banner).to_contain_text(
        t("Since %(date)s: the paid period ended without renewal.", date=t.day(end))
    )
    expect(banner).to_contain_text(
        t("Pay for a new period to reactivate it; your settings are kept.")
    )
    banner.get_by_role("link", name=t("Reactivate"), exact=True).click()
    expect(me.heading()).to_have_text(t("Edit package"))
    total = t.money("328.41", "PLN")  # 3 agents × 89 zł + 23 % VAT, nothing left to credit
    me.expect_total(total)
    me.pay()
    expect(me.page).to_have_url(re.compile(r"/package$"))
    expect(me.flash()).to_have_text(t("Thank you! Your payment was received."))
    me.expect_active("Standard")
    expect(me.page.locator(".lifecycle-banner")).to_have_count(0)
    expect(me.fact("Renews on")).to_have_text(t.day(add_period(day_after, Period.MONTH)))
    expect(me.fact("Auto-renewal")).to_contain_text(t("On"))
    assert [c["amount"] for c in portal.charges()] == [32841]
