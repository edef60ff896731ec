"""R14: the first payment for a package is refunded within 15 days on the customer's
request: the provider refunds it, a credit note is issued, the account returns to Free."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.conftest import Contexts
from tests.conftest import Inbox
from tests.journeys.conftest import Portal
from tests.journeys.customer import (
    STANDARD,
    T,
    attachments,
    customer,
    subject,
    wait_for_mail,
)


def test_refund_within_15_days_returns_to_free_with_a_credit_note(
    contexts: Contexts, portal: Portal, inbox: Inbox, lang: str
) -> None:
    t = T(lang)
    paid = t.money("328.41", "PLN")
    me = customer(contexts, portal, t)
    me.log_in(STANDARD)
    me.go("Invoices")
    original = me.invoice_rows().first.get_by_role("rowheader").inner_text().strip()
    me.go("My package")
    me.package.get_by_role("button", name=t("Request refund"), exact=True).click()
    expect(me.heading()).to_have_text(t("Request refund"))
    expect(me.page.locator("main")).to_contain_text(
        t(
            "We will refund %(amount)s, the whole of your first payment for the package, to"
            " the payment method you used.",
            amount=paid,
        )
    )
    expect(me.page.locator("main")).to_contain_text(
        t(
            "Your account returns to the Free package now, with up to 3 agents and no chatbot"
            " conversations."
        )
    )
    me.page.get_by_role(
        "button", name=t("Refund %(amount)s and return to Free", amount=paid), exact=True
    ).click()

    expect(me.heading()).to_have_text(t("Refund confirmed"))
    expect(me.page.get_by_role("status")).to_have_text(
        t("We have refunded %(amount)s. Your account is now on the Free package.", amount=paid)
    )
    done = me.page.locator("main").inner_text()
    match = re.search(
        re.escape(t("Credit note %(number)s is in Invoices and has been sent to you by e-mail.",
                    number="@@")).replace("@@", r"(\S+)"),
        done,
    )  # fmt: skip
    assert match, done
    note = match.group(1)

    me.go("My package")
    expect(me.package_heading()).to_contain_text(t("Free"))
    expect(me.package.get_by_role("button", name=t("Request refund"))).to_have_count(0)
    me.go("Invoices")
    rows = me.invoice_rows()
    expect(rows).to_have_count(2)
    expect(rows.nth(0).get_by_role("rowheader")).to_contain_text(note)
    expect(rows.nth(0).get_by_role("rowheader")).to_contain_text(
        t("corrects %(number)s", number=original)
    )
    expect(rows.nth(0).locator("td").nth(2)).to_have_text(t("Credit note"))
    expect(rows.nth(1).get_by_role("rowheader")).to_have_text(original)

    # Stripe gave the money back, once, in full.
    refunds = portal.stripe_list("refunds")
    assert [(r["payment_intent"], r["amount"], r["status"]) for r in refunds] == [
        ("pi_demo_standard", 32841, "succeeded")
    ]
    # The e-mail says so, with the credit note.
    mail = wait_for_mail(inbox, lambda m: subject(m) == t("Refund of %(amount)s", amount=paid))
    assert mail["To"] == STANDARD
    assert [name for name, _ in attachments(mail)] == [note.replace("/", "-") + ".pdf"]
