"""R9: a declined card says why and how to retry; the retry works, and activation follows
the provider's confirmation."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.conftest import Contexts
from tests.journeys.conftest import Portal
from tests.journeys.customer import (
    DECLINED,
    FREE,
    STRIPE_WORDS,
    VISA,
    Soft,
    T,
    amount_of,
    customer,
)


def test_a_declined_card_says_why_and_a_retry_activates_the_package(
    contexts: Contexts, portal: Portal, lang: str
) -> None:
    t = T(lang)
    me = customer(contexts, portal, t)
    me.log_in(FREE)
    me.open_edit()
    me.choose(package="Standard", agents=1, currency="PLN", provider=me.card_label())
    total = t.money("109.47", "PLN")  # 89 zł + 23 % VAT
    me.expect_total(total)
    me.pay()
    me.on_stripe()
    me.enter_card(DECLINED)
    expect(me.page.get_by_role("alert")).to_have_text(STRIPE_WORDS[lang]["declined"])
    me.stripe_back()

    # The order page says why, and offers to pay again.
    expect(me.page).to_have_url(re.compile(r"/package/orders/[0-9a-f]{32}$"))
    expect(me.heading()).to_have_text(t("Your order"))
    soft = Soft()
    with soft.check("the order page after Back from a declined card"):
        expect(me.page.get_by_role("alert")).to_have_text(
            t("Your bank declined the card. Try another card or another payment method.")
        )
    expect(me.page.locator(".badge")).to_have_text(t("Awaiting payment"))
    me.go("My package")
    expect(me.package_heading()).to_contain_text(t("Free"))
    me.page.go_back()
    retry = me.page.get_by_role("button", name=t("Pay %(amount)s", amount=total), exact=True)
    expect(me.page.get_by_role("radio", name=me.card_label(), exact=True)).to_be_checked()
    retry.click()
    me.on_stripe()
    me.enter_card(VISA)
    expect(me.page).to_have_url(re.compile(r"/package$"))
    me.expect_active("Standard")
    expect(me.fact("Payment method")).to_contain_text("Visa •••• 4242")
    assert [c["amount"] for c in portal.charges()] == [amount_of(total)]
    declined = [c for c in portal.stripe_list("charges") if c["status"] == "failed"]
    assert len(declined) == 1, declined
    soft.done()
