"""R12: billing information is edited; "apply to the last invoice" issues a correcting
invoice with the new data, and the list shows both."""

from __future__ import annotations

import io
import re

from playwright.sync_api import expect
from pypdf import PdfReader

from tests.browser.conftest import Contexts
from tests.conftest import Inbox
from tests.journeys.conftest import Portal, today
from tests.journeys.customer import STANDARD, T, customer, subject, wait_for_mail


def pdf_text(data: bytes) -> str:
    assert data.startswith(b"%PDF-"), data[:20]
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    return " ".join(text.split())


def test_new_billing_data_with_a_correcting_invoice_for_the_last_one(
    contexts: Contexts, portal: Portal, inbox: Inbox, lang: str
) -> None:
    t = T(lang)
    me = customer(contexts, portal, t)
    me.log_in(STANDARD)
    me.go("Invoices")
    original = me.invoice_rows().first.get_by_role("rowheader").inner_text().strip()

    me.go("Billing information")
    form = me.page.locator("form#billing")
    expect(form.get_by_label(t("Company name"), exact=True)).to_have_value(
        "Sklep Rowerowy Szprycha Sp. z o.o."
    )
    street = form.get_by_label(t("Street and number"), exact=True)
    expect(street).to_have_value("ul. Długa 5")
    expect(form.get_by_label(t("City"), exact=True)).to_have_value("Gdańsk")
    expect(form.get_by_label(t("Country"), exact=True)).to_have_value("PL")
    expect(form.get_by_role("textbox", name=re.compile(t("VAT number")))).to_have_value(
        "PL9574890682"
    )
    expect(me.page.locator("#vat-status")).to_contain_text(t("Confirmed in VIES."))

    street.fill("ul. Długa 7")
    form.get_by_role("switch", name=t("Apply to the last invoice as well")).check()
    form.get_by_role("button", name=t("Save"), exact=True).click()
    expect(me.flash()).to_have_text(
        t(
            "Saved. Your next invoices use the new details, and your last invoice has a "
            "correcting invoice with them (see Invoices)."
        )
    )
    expect(street).to_have_value("ul. Długa 7")

    me.go("Invoices")
    rows = me.invoice_rows()
    expect(rows).to_have_count(2)
    correction, first = rows.nth(0), rows.nth(1)
    expect(correction.get_by_role("rowheader")).to_contain_text(
        t("corrects %(number)s", number=original)
    )
    number = correction.get_by_role("rowheader").inner_text().split()[0]
    assert number != original and re.fullmatch(r"[A-Z]+/\d{4}/\d{6}", number), number
    expect(correction.locator("td").nth(0)).to_have_text(t.day(today()))
    expect(correction.locator("td").nth(2)).to_have_text(t("Correcting invoice"))
    expect(first.get_by_role("rowheader")).to_have_text(original)
    expect(first.locator("td").nth(2)).to_have_text(t("Paid"))

    # The correction names the new address and the invoice it corrects; that one is as issued.
    with me.page.expect_download() as download:
        correction.get_by_role("link", name="PDF", exact=True).click()
    corrected = pdf_text(download.value.path().read_bytes())
    assert "ul. Długa 7" in corrected and original in corrected, corrected
    with me.page.expect_download() as download:
        first.get_by_role("link", name="PDF", exact=True).click()
    issued = pdf_text(download.value.path().read_bytes())
    assert "ul. Długa 5" in issued and "ul. Długa 7" not in issued, issued

    mail = wait_for_mail(inbox, lambda m: subject(m) == t("Invoice %(number)s", number=number))
    assert mail["To"] == STANDARD
