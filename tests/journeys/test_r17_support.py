"""R17: support is a thread in the portal on paid packages; a Free account is told that
support comes with a paid package."""

from __future__ import annotations

import datetime as dt

from playwright.sync_api import expect

from tests.browser.conftest import Contexts
from tests.conftest import Inbox
from tests.journeys.conftest import ZONE, Portal
from tests.journeys.customer import FREE, STANDARD, T, customer, subject, wait_for_mail

SUPPORT_STAFF = "support@pakiet.test"  # config SUPPORT_EMAIL (SUPPORT_STAFF_EMAIL unset)


def test_a_paid_customer_writes_to_support_and_a_free_one_is_told_it_is_for_paid_packages(
    contexts: Contexts, portal: Portal, inbox: Inbox, lang: str
) -> None:
    t = T(lang)
    topic = t.pick("Faktura z innym adresem", "Invoice with another address")
    body = t.pick(
        "Dzień dobry, czy możemy dostawać faktury na dwa adresy e-mail?",
        "Hello, can we get our invoices at two e-mail addresses?",
    )
    me = customer(contexts, portal, t)
    me.log_in(STANDARD)
    me.go("Contact support")
    me.page.get_by_label(t("Subject"), exact=True).fill(topic)
    me.page.get_by_label(t("Message"), exact=True).fill(body)
    me.page.get_by_role("button", name=t("Send"), exact=True).click()
    section = me.page.locator("#support")
    expect(section.get_by_role("status")).to_have_text(
        t("Thank you. We will answer here and by e-mail.")
    )
    listed = section.get_by_role("row").filter(has_text=topic)
    expect(listed).to_contain_text(t("Waiting for our answer"))
    listed.get_by_role("link", name=topic).click()
    expect(me.heading()).to_have_text(topic)
    thread = me.page.locator("#thread")
    expect(thread.locator(".support-message")).to_have_count(1)
    expect(thread.locator(".support-body")).to_have_text(body)
    # A follow-up in the same thread.
    more = t.pick("Drugi adres: ksiegowosc@szprycha.test", "The other one: books@szprycha.test")
    thread.get_by_label(t("Your reply"), exact=True).fill(more)
    thread.get_by_role("button", name=t("Send"), exact=True).click()
    expect(me.page.locator("#thread .support-body")).to_have_text([body, more])

    # Staff hear of it by e-mail (queued; the next background run sends it).
    portal.billing_run(dt.datetime.now(ZONE))
    staff = wait_for_mail(inbox, lambda m: m["To"] == SUPPORT_STAFF)
    assert topic in subject(staff)

    # A Free account is told support comes with a paid package, and where to get one.
    free = customer(contexts, portal, t)
    free.log_in(FREE)
    free.go("My package")
    expect(free.package).to_contain_text(t("Customer support is available on paid packages only."))
    free.go("Contact support")
    expect(free.page.locator("#support").get_by_role("status")).to_have_text(
        t("Customer support is available on paid packages. Buy a package to contact us.")
    )
    expect(free.page.get_by_label(t("Message"))).to_have_count(0)
    free.page.locator("#support").get_by_role("button", name=t("Buy a package")).click()
    expect(free.heading()).to_have_text(t("Edit package"))
