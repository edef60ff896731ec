"""R6: the summary shows the credit for the unused days and its arithmetic; a downgrade
charges nothing and leaves account credit, which My package shows."""

from __future__ import annotations

import datetime as dt
import re

from playwright.sync_api import expect

from portal.rules.catalogue import Period
from portal.rules.periods import add_period
from tests.browser.conftest import Contexts
from tests.journeys.conftest import DemoDatabase, Portal, today
from tests.journeys.customer import STANDARD, T, customer, half_up

PAID = 26_700  # Standard: 3 agents × 89 zł net, paid for the current month
VAT = (23, 100)


def test_the_summary_shows_the_credit_and_a_downgrade_leaves_account_credit(
    contexts: Contexts, portal: Portal, lang: str, demo_database: DemoDatabase
) -> None:
    t = T(lang)
    start = demo_database.day - dt.timedelta(days=10)
    end = add_period(start, Period.MONTH)
    unused, days = (end - today()).days, (end - start).days
    credit = half_up(PAID * unused, days)

    me = customer(contexts, portal, t)
    me.log_in(STANDARD)
    me.open_edit()

    # Up to 5 agents: the new month in full, less the credit for the unused days.
    me.choose(agents=5)
    net = 44_500 - credit
    vat = half_up(net * VAT[0], VAT[1])
    me.expect_total(t.money_minor(net + vat, "PLN"))
    credit_row = me.summary.locator("tr.credit").first
    expect(credit_row).to_contain_text(t("Credit for unused time"))
    expect(credit_row).to_contain_text(
        t.n(
            "%(num)d unused day of %(days)d × %(paid)s paid for the current period",
            "%(num)d unused days of %(days)d × %(paid)s paid for the current period",
            unused,
            days=days,
            paid=t.money_minor(PAID, "PLN"),
        )
    )
    expect(credit_row.locator("td")).to_have_text("−" + t.money_minor(credit, "PLN"))
    new_period = t(
        "Price for the new period, %(start)s – %(end)s",
        start=t.day(today()),
        end=t.day(add_period(today(), Period.MONTH) - dt.timedelta(days=1)),
    )
    expect(me.summary.get_by_role("row", name=re.compile(re.escape(new_period)))).to_contain_text(
        t.money_minor(44_500, "PLN")
    )
    expect(me.summary.get_by_role("row", name=re.compile(t("Net amount due")))).to_contain_text(
        t.money_minor(net, "PLN")
    )

    # Down to 1 agent: the credit exceeds the new price: nothing to pay, the rest is kept.
    me.choose(agents=1)
    left = credit - 8_900
    assert left > 0, "the demo's Standard has more than a third of its month left"
    expect(me.summary.get_by_test_id("total-due")).to_have_text(t.money_minor(0, "PLN"))
    expect(me.pay_button).to_have_text(t("Confirm the change"))
    expect(me.summary).to_contain_text(
        t(
            "Account credit after this change: %(amount)s, used up by your next invoices.",
            amount=t.money_minor(left, "PLN"),
        )
    )
    me.pay()
    expect(me.page).to_have_url(re.compile(r"/package$"))
    expect(me.flash()).to_have_text(t("Your package has been changed. Nothing was charged."))
    expect(me.fact("Agents")).to_have_text(t.n("%(num)d agent", "%(num)d agents", 1))
    expect(me.fact("Account credit")).to_contain_text(t.money_minor(left, "PLN"))
    expect(me.fact("Account credit")).to_contain_text(t("used up by your next invoices"))
    assert portal.charges() == []  # nothing was charged, nothing was refunded in cash
    assert portal.stripe_list("refunds") == []
