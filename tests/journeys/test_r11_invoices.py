"""R11: the invoice of a purchase is listed, downloads as a PDF, takes a note that is
printed on it, and is e-mailed to the address in Billing information."""

from __future__ import annotations

import io
import re
from urllib.parse import urljoin

from playwright.sync_api import expect
from pypdf import PdfReader

from tests.browser.conftest import Contexts
from tests.conftest import Inbox
from tests.journeys.conftest import Portal, today
from tests.journeys.customer import (
    STANDARD,
    Soft,
    T,
    attachments,
    customer,
    subject,
    wait_for_mail,
)


def pdf_text(data: bytes) -> str:
    assert data.startswith(b"%PDF-"), data[:20]
    return " ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_the_invoice_of_a_purchase_is_listed_downloaded_annotated_and_emailed(
    contexts: Contexts, portal: Portal, inbox: Inbox, lang: str
) -> None:
    t = T(lang)
    me = customer(contexts, portal, t)
    me.log_in(STANDARD)
    me.go("Invoices")
    expect(me.page.get_by_role("note")).to_have_text(
        t(
            "We do not issue proforma invoices: the invoice is issued when the payment is"
            " confirmed and appears here at once."
        )
    )
    rows = me.invoice_rows()
    expect(rows).to_have_count(1)  # the current month's, paid when it started
    expect(rows.first.locator("td").nth(1)).to_have_text(t.money("328.41", "PLN"))

    # A purchase: one more agent, paid with the saved card.
    me.open_edit()
    me.choose(agents=4)
    total = me.summary.get_by_test_id("total-due").inner_text()
    me.pay()
    expect(me.flash()).to_have_text(t("Thank you! Your payment was received."))
    me.go("Invoices")
    expect(rows).to_have_count(2)
    new = rows.first
    number = new.get_by_role("rowheader").inner_text().strip()
    assert re.fullmatch(rf"FV/{today().year}/\d{{6}}", number), number
    cells = new.locator("td")
    expect(cells.nth(0)).to_have_text(t.day(today()))
    expect(cells.nth(1)).to_have_text(total)
    expect(cells.nth(2)).to_have_text(t("Paid"))

    # Downloads as a PDF: the invoice with its number and amount.
    with me.page.expect_download() as download:
        new.get_by_role("link", name="PDF", exact=True).click()
    assert download.value.suggested_filename == number.replace("/", "-") + ".pdf"
    first_pdf = download.value.path().read_bytes()
    first = pdf_text(first_pdf)
    assert number in first

    # A note, added in the list, is shown there and printed on the invoice.
    note = t.pick("Zamówienie nr ZK/4711, dział rowerów", "Purchase order PO-4711, bike unit")
    # The PDF as issued, before any note (with KSeF on, the plain download is a copy
    # stamped with the KSeF number assigned after issue, so not the issued bytes).
    pdf_href = new.get_by_role("link", name="PDF", exact=True).get_attribute("href")
    assert pdf_href is not None and pdf_href.endswith(".pdf")
    issued_url = urljoin(me.page.url, pdf_href.removesuffix(".pdf") + "/issued.pdf")
    issued_before = me.page.request.get(issued_url).body()
    new.get_by_role("link", name=t("Add note"), exact=True).click()
    field = me.page.get_by_role(
        "textbox",
        name=t("Note printed on your copy of this invoice (at most %(num)d characters)", num=1000),
    )
    field.fill(note)
    me.page.get_by_role("button", name=t("Save note"), exact=True).click()
    expect(new.locator(".note-text")).to_have_text(note)
    expect(new.get_by_role("link", name=t("Edit note"), exact=True)).to_be_visible()
    me.page.reload()
    expect(rows.first.locator(".note-text")).to_have_text(note)
    with me.page.expect_download() as download:
        rows.first.get_by_role("link", name="PDF", exact=True).click()
    annotated = pdf_text(download.value.path().read_bytes())
    assert number in annotated
    soft = Soft()
    with soft.check("the PDF downloaded again after adding a note"):
        assert " ".join(note.split()) in " ".join(annotated.split()), (
            "the note is not on the PDF the browser got (the first download, from its cache?)"
        )

    # The note is on the customer's copy, marked as such; the invoice as issued stays as it
    # was and downloadable (issue 23, point 8).
    assert t.pick("Kopia dla klienta z notatką", "Customer copy with note") in annotated
    with me.page.expect_download() as download:
        rows.first.get_by_role("link", name=t("PDF as issued"), exact=True).click()
    issued = download.value.path().read_bytes()
    assert issued == issued_before, "the issued PDF changed after a note"
    printed = " ".join(pdf_text(issued).split())
    assert number in printed and " ".join(note.split()) not in printed

    # In another browser (nothing cached) the invoice carries the note.
    elsewhere = customer(contexts, portal, t)
    elsewhere.log_in(STANDARD)
    elsewhere.go("Invoices")
    with elsewhere.page.expect_download() as download:
        elsewhere.invoice_rows().first.get_by_role("link", name="PDF", exact=True).click()
    fresh = pdf_text(download.value.path().read_bytes())
    assert " ".join(note.split()) in " ".join(fresh.split()), fresh

    # E-mailed to the invoice address (the demo's: the login), with the PDF.
    mail = wait_for_mail(inbox, lambda m: subject(m) == t("Invoice %(number)s", number=number))
    assert mail["To"] == STANDARD
    files = attachments(mail)
    assert [name for name, _ in files] == [number.replace("/", "-") + ".pdf"]
    assert number in pdf_text(files[0][1])
    soft.done()
