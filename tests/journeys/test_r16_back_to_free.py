"""R16: going back to Free is done by support; a paid customer is told so, and how."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.conftest import Contexts
from tests.journeys.conftest import Portal
from tests.journeys.customer import STANDARD, Soft, T, customer

# Any wording will do that names going back to Free (the catalogues' own sentence is
# "The Free package cannot be chosen here. To go back to Free, contact our support team.").
BACK_TO_FREE = {
    "pl": re.compile(r"(wróci[ćc]|powr[óo]t\w*|przej[śs][ćc]).{0,30}\bFree\b", re.IGNORECASE),
    "en": re.compile(r"(back|return|go|switch)\w* to (the )?Free\b", re.IGNORECASE),
}


def test_a_paid_customer_is_told_that_going_back_to_free_is_done_by_support(
    contexts: Contexts, portal: Portal, lang: str
) -> None:
    t = T(lang)
    me = customer(contexts, portal, t)
    me.log_in(STANDARD)
    soft = Soft()
    # Where a customer looks: My package, then its Edit page (where Free cannot be chosen).
    me.go("My package")
    on_package = me.package.get_by_text(BACK_TO_FREE[lang])
    me.open_edit()
    expect(
        me.page.get_by_role("radio", name=t("Activate %(package)s", package=t("Free")))
    ).to_have_count(0)
    on_edit = me.page.locator("main").get_by_text(BACK_TO_FREE[lang])
    with soft.check("My package or Edit package says how to go back to Free"):
        told = on_edit.count() > 0
        if not told:
            me.go("My package")
            told = on_package.count() > 0
        assert told, (
            "neither My package nor Edit package tells a paid customer how to go back to"
            " Free (through support)"
        )
    # Support is there for it: a paid customer can write.
    me.go("My package")
    me.package.get_by_role("link", name=t("Contact support"), exact=True).click()
    expect(me.heading()).to_have_text(t("Contact support"))
    expect(me.page.get_by_role("heading", name=t("New request"))).to_be_visible()
    soft.done()
