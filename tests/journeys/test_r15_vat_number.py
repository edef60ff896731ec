"""R15: the VAT number is checked in VIES; one it does not confirm is explained, with the
link to VIES's own check; a confirmed one means the reverse charge."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.conftest import Contexts
from tests.journeys.conftest import Portal
from tests.journeys.customer import PRO, T, customer

# The VIES emulator's fixed table: Germany confirms one number, and not the other.
VALID, NOT_REGISTERED = "DE812415868", "DE304114426"


def test_vies_checks_the_vat_number_and_explains_a_refusal(
    contexts: Contexts, portal: Portal, lang: str
) -> None:
    t = T(lang)
    me = customer(contexts, portal, t)
    me.log_in(PRO)
    me.go("Billing information")
    status = me.page.locator("#vat-status")
    expect(status).to_contain_text(t("Confirmed in VIES."))
    germany = t.pick("Niemcy", "Germany")
    reverse = t(
        "VAT on your invoices: %(rate)s, reverse charge (you account for the VAT in %(country)s).",
        rate="0%",
        country=germany,
    )
    expect(status).to_contain_text(re.compile(re.escape(reverse).replace("0%", r"0\s?%")))

    field = me.page.get_by_role("textbox", name=re.compile(t("VAT number")))
    field.fill(NOT_REGISTERED)
    field.press("Tab")  # the number is checked when the field is left
    alert = status.get_by_role("alert")
    expect(alert).to_contain_text(
        t("VIES does not confirm the VAT number %(number)s.", number=NOT_REGISTERED)
    )
    expect(alert).to_contain_text(
        t(
            "The usual cause: the number is not registered for intra-EU transactions (in Poland:"
            " not registered as a VAT-EU taxpayer). Your tax office registers it on request;"
            " then check the number again here."
        )
    )
    expect(alert).to_contain_text(t("Until VIES confirms the number, your invoices include VAT."))
    link = alert.get_by_role(
        "link", name=t("Check your number yourself in VIES (European Commission)")
    )
    expect(link).to_have_attribute(
        "href", re.compile(r"^https://ec\.europa\.eu/taxation_customs/vies/")
    )
    expect(field).to_have_attribute("aria-invalid", "false")  # typed right; VIES says no

    # Back to the registered number: confirmed, and the reverse charge again.
    field.fill(VALID)
    me.page.get_by_role("button", name=t("Check the VAT number"), exact=True).click()
    expect(status).to_contain_text(t("Confirmed in VIES."))
    expect(status.get_by_role("alert")).to_have_count(0)
    expect(status).to_contain_text(re.compile(re.escape(reverse).replace("0%", r"0\s?%")))
