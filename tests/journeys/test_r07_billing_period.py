"""R7: monthly → yearly is self-service; yearly → monthly goes through support."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.conftest import Contexts
from tests.journeys.conftest import Portal
from tests.journeys.customer import PRO, STANDARD, T, amount_of, customer, exactly


def test_monthly_to_yearly_yourself_and_yearly_to_monthly_through_support(
    contexts: Contexts, portal: Portal, lang: str
) -> None:
    t = T(lang)
    me = customer(contexts, portal, t)
    me.log_in(STANDARD)
    me.open_edit()
    me.choose(period="year")
    change = t("Billing period: %(before)s → %(after)s", before=t("Monthly"), after=t("Yearly"))
    expect(me.summary.locator("ul.changes li")).to_have_text([exactly(change)])
    expect(me.summary.get_by_role("rowheader").first).to_have_text(
        t("%(package)s package, %(period)s", package=t("Standard"), period=t("yearly"))
    )
    total = me.summary.get_by_test_id("total-due").inner_text()
    me.pay()
    expect(me.page).to_have_url(re.compile(r"/package$"))
    expect(me.flash()).to_have_text(t("Thank you! Your payment was received."))
    me.expect_active("Standard")
    expect(me.fact("Billing period")).to_have_text(t("Yearly"))
    assert [c["amount"] for c in portal.charges()] == [amount_of(total)]

    # Now yearly, the way back is not self-service (nor for Pro, yearly from the start).
    for email in (STANDARD, PRO):
        other = customer(contexts, portal, t)
        other.log_in(email)
        other.open_edit()
        monthly = other.page.get_by_role("radio", name=t("Monthly"), exact=True)
        expect(monthly).to_be_disabled()
        expect(other.page.get_by_role("radio", name=t("Yearly"), exact=True)).to_be_checked()
        note = other.page.locator("#period-note")
        expect(monthly).to_have_attribute("aria-describedby", "period-note")
        expect(note).to_contain_text(
            t("Switching from yearly to monthly is done by our support team.")
        )
        expect(note.get_by_role("link", name=t("Contact support"), exact=True)).to_be_visible()
