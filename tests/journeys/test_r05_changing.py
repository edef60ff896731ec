"""R5: a paid customer changes agents, conversations or the package; the summary shows
the change as "before → after (difference)", and the saved card pays it at once."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.conftest import Contexts
from tests.journeys.conftest import Portal
from tests.journeys.customer import STANDARD, T, amount_of, customer


def test_a_paid_customer_changes_the_package_and_the_saved_card_pays(
    contexts: Contexts, portal: Portal, lang: str
) -> None:
    t = T(lang)
    me = customer(contexts, portal, t)
    me.log_in(STANDARD)
    me.open_edit()
    # The form takes the target numbers, and says what there is now.
    expect(
        me.page.get_by_text(
            t("The number of agents you want to have, not how many to add. Now: %(num)d.", num=3)
        )
    ).to_be_visible()
    expect(me.page.get_by_role("group", name=t("Payment method"))).to_contain_text("Visa •••• 4242")
    if lang == "pl":
        me.choose(agents=5, conversations=200)
        changes = [
            t("Agents: %(before)d → %(after)d", before=3, after=5) + " (+2)",
            t("Chatbot conversations per month: %(before)d → %(after)d", before=100, after=200)
            + " (+100)",
        ]
        package, conversations = "Standard", 200
    else:
        me.choose(package="Pro", agents=5)
        changes = [
            t("Package: %(before)s → %(after)s", before=t("Standard"), after=t("Pro")),
            t("Agents: %(before)d → %(after)d", before=3, after=5) + " (+2)",
            # Pro includes 500 a month: the 100 of Standard are brought into its range.
            t("Chatbot conversations per month: %(before)d → %(after)d", before=100, after=500)
            + " (+400)",
        ]
        package, conversations = "Pro", 500
    listed = me.summary.locator("ul.changes li")
    expect(listed).to_have_count(len(changes))
    for item, text in zip(listed.all(), changes, strict=True):
        expect(item).to_have_text(
            re.compile(r"^\s*" + r"\s*".join(map(re.escape, text.split())) + r"\s*$")
        )
    total = me.summary.get_by_test_id("total-due").inner_text()
    expect(me.pay_button).to_have_text(t("Pay %(amount)s", amount=total))

    visited: list[str] = []
    me.page.on("framenavigated", lambda frame: visited.append(frame.url))
    me.pay()
    # Straight back to My package: the saved card was charged, no provider page between.
    expect(me.page).to_have_url(re.compile(r"/package$"))
    assert all(url.startswith(portal.url) for url in visited), visited
    expect(me.flash()).to_have_text(t("Thank you! Your payment was received."))
    me.expect_active(package)
    expect(me.fact("Agents")).to_have_text(t.n("%(num)d agent", "%(num)d agents", 5))
    expect(me.fact("Chatbot conversations")).to_contain_text(
        t.n("%(num)d conversation per month", "%(num)d conversations per month", conversations)
    )
    expect(me.fact("Payment method")).to_contain_text("Visa •••• 4242")
    # The card was charged once, off-session, exactly the amount shown.
    charges = portal.charges()
    assert [c["amount"] for c in charges] == [amount_of(total)], charges
    assert [c["payment_method"] for c in charges] == ["pm_demo_standard"]
    intent = portal.stripe(f"payment_intents/{charges[0]['payment_intent']}")
    assert intent["status"] == "succeeded"
