"""Signing up (security issue, point 6): the form, the "check your inbox" page, the e-mail's
link and its button, then My package on Free; a second sign-up with the same address gets
the same page, and its owner an e-mail."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import Contexts
from tests.conftest import Inbox
from tests.journeys.conftest import Portal
from tests.journeys.customer import T, customer, subject, wait_for_mail


def test_a_new_customer_signs_up_confirms_and_lands_on_free(
    contexts: Contexts, portal: Portal, inbox: Inbox, lang: str
) -> None:
    t = T(lang)
    me = customer(contexts, portal, t)
    me.sign_up("Kwiaciarnia Bratek", f"bratek-{lang}@example.com", inbox)
    expect(me.package_heading()).to_contain_text(t("Free"))

    again = customer(contexts, portal, t)
    again.page.goto("/signup")
    again.speak()
    form = again.page.locator("main form")
    form.get_by_label(t("Company name"), exact=True).fill("Someone else")
    form.get_by_label(t("E-mail"), exact=True).fill(f"bratek-{lang}@example.com")
    form.get_by_label(t("Password"), exact=True).fill("another long password 8")
    form.get_by_label(t("Repeat the password"), exact=True).fill("another long password 8")
    form.get_by_role("button", name=t("Sign up"), exact=True).click()
    expect(again.heading()).to_have_text(t("Check your inbox"))
    exists = wait_for_mail(inbox, lambda m: subject(m) == t("You already have a Pakiet account"))
    assert exists["To"] == f"bratek-{lang}@example.com"
