"""Bad input in the browser: what an impatient, curious or distracted customer does while
paying. Each ends with one charge at most (read at the Stripe emulator and in the invoice
list) and a clear message in the customer's language."""

from __future__ import annotations

import datetime as dt
import re
import time

from playwright.sync_api import expect

from tests.browser.conftest import Contexts
from tests.journeys.conftest import ZONE, Portal
from tests.journeys.customer import (
    FREE,
    STANDARD,
    STRIPE_WORDS,
    VISA,
    Soft,
    T,
    amount_of,
    customer,
    path_of,
)

STANDARD_ONE_AGENT = "109.47"  # Standard, monthly, 1 agent: 89 zł + 23 % VAT


def test_a_double_click_on_pay_charges_once(contexts: Contexts, portal: Portal, lang: str) -> None:
    t = T(lang)
    me = customer(contexts, portal, t)
    me.log_in(STANDARD)
    me.open_edit()
    me.choose(agents=4)
    total = me.summary.get_by_test_id("total-due").inner_text()
    expect(me.pay_button).to_have_text(t("Pay %(amount)s", amount=total))
    me.settle()
    me.pay_button.dblclick()
    expect(me.page).to_have_url(re.compile(r"/package$"))
    expect(me.flash()).to_have_text(t("Thank you! Your payment was received."))
    expect(me.fact("Agents")).to_have_text(t.n("%(num)d agent", "%(num)d agents", 4))
    assert [c["amount"] for c in portal.charges()] == [amount_of(total)]
    me.go("Invoices")
    # The month's invoice, and this payment's. The second click's request finds the payment
    # already paid and answers at once; the first, which charged, issues the invoice after
    # its commit, so on a loaded machine the list can be a moment early: a customer would
    # look again, and so does this test.
    deadline = time.monotonic() + 30
    while me.invoice_rows().count() < 2 and time.monotonic() < deadline:
        me.page.wait_for_timeout(500)
        me.page.reload()
    expect(me.invoice_rows()).to_have_count(2)


def test_back_after_paying_does_not_pay_again(
    contexts: Contexts, portal: Portal, lang: str
) -> None:
    t = T(lang)
    me = customer(contexts, portal, t)
    me.log_in(FREE)
    me.open_edit()
    me.choose(package="Standard", agents=1, currency="PLN", provider=me.card_label())
    me.expect_total(t.money(STANDARD_ONE_AGENT, "PLN"))
    me.pay()
    me.on_stripe()
    me.enter_card(VISA)
    expect(me.page).to_have_url(re.compile(r"/package$"))
    me.expect_active("Standard")

    # Back, page by page, to the edit page: no page on the way takes a second payment
    # (Stripe's page of the paid session, where the browser keeps it in its history, says
    # the payment is complete), and the edit page says there is nothing left to pay.
    def nothing_to_pay() -> None:
        expect(me.heading()).to_have_text(t("Edit package"))
        expect(me.summary).to_contain_text(
            t("This is your current package: there is nothing to change or pay.")
        )
        expect(me.summary.get_by_role("button", name=t("Pay"), exact=True)).to_be_disabled()

    seen = []
    for _ in range(3):
        me.page.go_back()
        seen.append(me.page.url)
        if me.page.url.startswith(portal.emulator("stripe")):
            expect(me.page.get_by_label(STRIPE_WORDS[lang]["number"])).to_have_count(0)
            expect(me.page.locator("main")).to_contain_text(
                t.pick("Ta płatność została zakończona.", "This payment is complete.")
            )
        elif path_of(me.page.url) == "/package":
            me.expect_active("Standard")
        else:
            nothing_to_pay()
            break
    else:
        # Chromium skips, on Back, an entry that left without a user gesture (the form is
        # sent again by pakiet.js when a summary arrived during the press, and on a loaded
        # machine the gesture has expired by then): Back went from Stripe's page to My
        # package. The edit page, opened again, must still have nothing to pay.
        assert seen[0].startswith(portal.emulator("stripe")), seen
        assert all(path_of(url) == "/package" for url in seen[1:]), seen
        me.page.goto("/package/edit")
        nothing_to_pay()
    assert [c["amount"] for c in portal.charges()] == [10947]
    me.go("Invoices")
    expect(me.invoice_rows()).to_have_count(1)


def test_reloading_mid_checkout_pays_once(contexts: Contexts, portal: Portal, lang: str) -> None:
    t = T(lang)
    me = customer(contexts, portal, t)
    me.log_in(FREE)
    me.open_edit()
    me.choose(package="Standard", agents=1, currency="PLN", provider=me.card_label())
    me.expect_total(t.money(STANDARD_ONE_AGENT, "PLN"))
    me.page.reload()  # the edit page, before paying
    expect(me.heading()).to_have_text(t("Edit package"))
    me.choose(package="Standard", agents=1, currency="PLN", provider=me.card_label())
    me.expect_total(t.money(STANDARD_ONE_AGENT, "PLN"))
    me.pay()
    me.on_stripe()
    me.page.reload()  # Stripe's page
    me.on_stripe()
    me.enter_card(VISA)
    expect(me.page).to_have_url(re.compile(r"/package$"))
    me.page.reload()  # My package, just after
    me.expect_active("Standard")
    assert [c["amount"] for c in portal.charges()] == [10947]
    assert len(portal.stripe_list("checkout/sessions")) == 1
    me.go("Invoices")
    expect(me.invoice_rows()).to_have_count(1)


def test_two_tabs_paying_the_same_change_charge_once(
    contexts: Contexts, portal: Portal, lang: str
) -> None:
    t = T(lang)
    me = customer(contexts, portal, t)
    me.log_in(STANDARD)
    other = type(me)(me.page.context.new_page(), t, portal, STANDARD)  # a second tab
    other.page.goto("/package")
    for tab in (me, other):
        tab.open_edit()
        tab.choose(agents=5)
    total = me.summary.get_by_test_id("total-due").inner_text()
    expect(other.summary.get_by_test_id("total-due")).to_have_text(total)
    me.pay()
    expect(me.flash()).to_have_text(t("Thank you! Your payment was received."))
    other.pay()
    # The second tab is not charged: it shows what is true now, and tells why.
    expect(other.heading()).to_have_text(t("Edit package"))
    expect(other.summary).to_contain_text(
        t("This is your current package: there is nothing to change or pay.")
    )
    other.settle()  # the live summary, if it asks again, has had its say
    soft = Soft()
    with soft.check("the second tab's Pay, once its page has settled"):
        expect(other.page.locator("main").get_by_role("alert")).to_have_text(
            t(
                "The price or your package changed since you opened this page. Please check the"
                " new summary before you pay."
            )
        )
    assert [c["amount"] for c in portal.charges()] == [amount_of(total)]
    other.go("My package")
    expect(other.fact("Agents")).to_have_text(t.n("%(num)d agent", "%(num)d agents", 5))
    other.go("Invoices")
    expect(other.invoice_rows()).to_have_count(2)
    soft.done()


def test_leaving_the_provider_page_charges_nothing_and_says_so(
    contexts: Contexts, portal: Portal, lang: str
) -> None:
    t = T(lang)
    me = customer(contexts, portal, t)
    me.log_in(FREE)
    me.open_edit()
    me.choose(package="Standard", agents=1, currency="PLN", provider=me.card_label())
    me.expect_total(t.money(STANDARD_ONE_AGENT, "PLN"))
    me.pay()
    me.on_stripe()
    # Cancelled on Stripe's page ("Back"): the order page says nothing was charged.
    me.stripe_back()
    expect(me.heading()).to_have_text(t("Your order"))
    expect(me.page.get_by_role("alert")).to_have_text(
        t("You cancelled the payment. Nothing was charged.")
    )
    me.go("My package")
    expect(me.package_heading()).to_contain_text(t("Free"))
    expect(me.package_heading()).not_to_contain_text(t("Payment pending"))

    # Again, and this time the customer just closes Stripe's tab.
    me.open_edit()
    me.choose(package="Standard", agents=1, currency="PLN", provider=me.card_label())
    me.expect_total(t.money(STANDARD_ONE_AGENT, "PLN"))
    me.pay()
    me.on_stripe()
    me.page.close()
    assert portal.charges() == []

    # An hour later, nothing paid: My package must not still be waiting for the provider.
    portal.restart(clock=dt.datetime.now(ZONE) + dt.timedelta(hours=1))
    later = customer(contexts, portal, t)
    later.log_in(FREE)
    later.go("My package")
    expect(later.package_heading()).to_contain_text(t("Free"))
    soft = Soft()
    with soft.check("My package an hour after the customer left Stripe's page unpaid"):
        expect(later.package_heading()).not_to_contain_text(t("Payment pending"))
        expect(later.package.get_by_role("status")).to_have_count(0)
    soft.done()
