"""R8: cards of Visa and Mastercard and PayPal are taken, American Express is refused with
a clear message, and the saved method is replaced through the provider's own page."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.conftest import Contexts
from tests.journeys.conftest import Portal
from tests.journeys.customer import (
    AMEX,
    MASTERCARD,
    PAYPAL_WORDS,
    STANDARD,
    STRIPE_WORDS,
    T,
    customer,
)


def test_replacing_the_card_refuses_amex_and_takes_mastercard_and_paypal(
    contexts: Contexts, portal: Portal, lang: str
) -> None:
    t = T(lang)
    me = customer(contexts, portal, t)
    me.log_in(STANDARD)
    me.go("Payment methods")
    # Built from the loaded providers' labels (Stripe's card, then PayPal).
    card = {
        "en": "Card (Visa, Mastercard) and PayPal",
        "pl": "Karta płatnicza (Visa, Mastercard) i PayPal",
    }
    accepted = t("We accept: %(methods)s.", methods=card[lang])
    expect(me.page.locator("hgroup")).to_contain_text(accepted)
    saved = me.page.locator("#saved-heading + ul li")
    expect(saved).to_have_count(1)
    expect(saved).to_contain_text("Visa •••• 4242 (12/2034)")
    expect(saved).to_contain_text(t("used for payments and renewals"))

    # A new card, on Stripe's page: American Express is refused there, before anything.
    change = me.page.get_by_role("group", name=t("Change the payment method"))
    change.get_by_role("radio", name=me.card_label(), exact=True).check()
    me.page.get_by_role("button", name=t("Add a new payment method"), exact=True).click()
    me.on_stripe()
    me.enter_card(AMEX, cvc="1234", saving=True)
    expect(me.page.get_by_role("alert")).to_have_text(STRIPE_WORDS[lang]["blocked"])
    me.enter_card(MASTERCARD, saving=True)

    expect(me.page).to_have_url(re.compile(r"/payment-methods$"))
    expect(me.flash()).to_have_text(
        t("Your new payment method is saved and will be used from now on.")
    )
    expect(saved.first).to_contain_text("Mastercard •••• 4444")
    expect(saved.first).to_contain_text(t("used for payments and renewals"))
    expect(me.page.locator("#auto-renew").get_by_role("status")).to_contain_text(
        "Mastercard •••• 4444"
    )
    me.go("My package")
    expect(me.fact("Payment method")).to_contain_text("Mastercard •••• 4444")

    # And PayPal, approved on PayPal's page.
    me.go("Payment methods")
    change.get_by_role("radio", name="PayPal", exact=True).check()
    me.page.get_by_role("button", name=t("Add a new payment method"), exact=True).click()
    paypal = re.escape(portal.emulator("paypal"))
    expect(me.page).to_have_url(re.compile(rf"^{paypal}/agreements/approve\?"))
    buyer = f"szprycha.{lang}@buyer.test"
    words = PAYPAL_WORDS[lang]
    me.page.get_by_label(words["email"], exact=True).fill(buyer)
    me.page.get_by_label(words["password"], exact=True).fill("any password")
    me.page.get_by_role(
        "button", name=t.pick("Zgadzam się i kontynuuję", "Agree and Continue"), exact=True
    ).click()
    expect(me.page).to_have_url(re.compile(r"/payment-methods$"))
    expect(me.flash()).to_have_text(
        t("Your new payment method is saved and will be used from now on.")
    )
    expect(saved.first).to_contain_text(f"PayPal ({buyer})")
    expect(saved.first).to_contain_text(t("used for payments and renewals"))
    me.go("My package")
    expect(me.fact("Payment method")).to_contain_text(f"PayPal ({buyer})")
    assert portal.charges() == []  # saving a method takes no money
