"""Invoices (issue 6) in a real browser, in Polish and English: after a purchase the
invoice is listed, a note added inline is printed in the PDF, the XML downloads, and
another account's invoice is not found."""

from __future__ import annotations

import io
import re
from pathlib import Path

from playwright.sync_api import Page, expect
from pypdf import PdfReader
from sqlalchemy import select

from portal.infra.extensions import db
from portal.infra.models import Invoice
from portal.rules import accounts
from tests.browser.conftest import Contexts, LiveServer, login
from tests.browser.test_payments import (  # the payment-enabled portal and its emulators
    FREE,
    LANGUAGES,
    POLISH,
    STANDARD,
    Words,
    buy,
    live_server,
    log_in,
    paypal_emulator,
    stripe_emulator,
    webhooks,
)

__all__ = ["live_server", "paypal_emulator", "stripe_emulator", "webhooks"]

TEXTS = {
    "pl": {
        "nav": "Faktury",
        "add": "Dodaj notatkę",
        "edit": "Edytuj notatkę",
        "save": "Zapisz notatkę",
        "cancel": "Anuluj",
    },
    "en": {
        "nav": "Invoices",
        "add": "Add note",
        "edit": "Edit note",
        "save": "Save note",
        "cancel": "Cancel",
    },
}


def only_invoice(live_server: LiveServer, email: str) -> Invoice:
    with live_server.app.app_context():
        user = accounts.find_user(email)
        assert user is not None
        invoice = db.session.scalars(
            select(Invoice).where(Invoice.account_id == user.account_id)
        ).one()
        db.session.expunge(invoice)
        db.session.remove()
        return invoice


def pdf_text(body: bytes) -> str:
    return " ".join(page.extract_text() for page in PdfReader(io.BytesIO(body)).pages)


@LANGUAGES
def test_invoice_listed_noted_downloaded_and_private(
    page: Page, live_server: LiveServer, contexts: Contexts, paypal_emulator, words: Words
) -> None:
    texts = TEXTS[words.code]
    log_in(page, live_server, FREE, words)
    buy(
        page,
        live_server,
        words,
        package="Standard",
        agents=2,
        conversations=100,
        currency="PLN",
        provider="PayPal",
    )
    page.get_by_label(words.paypal_email, exact=True).fill(f"inv.{words.code}@buyer.test")
    page.get_by_label(words.paypal_password, exact=True).fill("any password")
    page.get_by_role("button", name=words.paypal_pay, exact=True).click()
    expect(page).to_have_url(re.compile(r"/package$"))

    page.get_by_role("navigation").get_by_role("link", name=texts["nav"], exact=True).click()
    invoice = only_invoice(live_server, FREE)
    row = page.locator(f"#invoice-{invoice.public_id}")
    expect(row.get_by_role("rowheader")).to_contain_text(invoice.number)

    # The note form opens in the row and the saved row is swapped in place (no page load).
    page.evaluate("window.__same_page = true")
    expect(row.get_by_role("textbox")).to_have_count(0)  # the list carries no forms
    row.get_by_role("link", name=texts["add"], exact=True).click()
    note = "PO-4711 <b>Dział IT</b>"
    row.get_by_role("textbox").fill("x" * 1000 + "y")  # the field stops at the limit
    expect(row.get_by_role("textbox")).to_have_value("x" * 1000)
    row.get_by_role("link", name=texts["cancel"], exact=True).click()  # Cancel: as before
    expect(row.get_by_role("textbox")).to_have_count(0)
    row.get_by_role("link", name=texts["add"], exact=True).click()
    row.get_by_role("textbox").fill(note)
    row.get_by_role("button", name=texts["save"], exact=True).click()
    expect(page.locator(f"#invoice-{invoice.public_id} .note-text")).to_have_text(note)
    expect(row.get_by_role("link", name=texts["edit"], exact=True)).to_be_visible()
    assert page.evaluate("window.__same_page") is True

    pdf = page.request.get(f"{live_server.url}/invoices/{invoice.public_id}.pdf")
    assert pdf.ok and pdf.headers["content-type"] == "application/pdf"
    printed = pdf_text(pdf.body())
    assert note in printed and invoice.number in printed

    with page.expect_download() as download_info:
        row.get_by_role("link", name="XML", exact=True).click()
    xml = download_info.value
    assert xml.suggested_filename == invoice.number.replace("/", "-") + ".xml"
    assert invoice.number.encode() in Path(xml.path()).read_bytes()

    other = contexts.new_page()
    login(other, STANDARD)
    for suffix in (".pdf", ".xml"):
        response = other.request.get(f"{live_server.url}/invoices/{invoice.public_id}{suffix}")
        assert response.status == 404


def test_a_long_note_keeps_the_row_short_and_opens_in_full(
    page: Page, live_server: LiveServer, paypal_emulator
) -> None:
    """Issue 25, point 6: a long note does not make its invoice row tall; it is shown cut
    short, and in full on demand."""
    words = POLISH
    texts = TEXTS[words.code]
    log_in(page, live_server, FREE, words)
    buy(
        page,
        live_server,
        words,
        package="Standard",
        agents=2,
        conversations=100,
        currency="PLN",
        provider="PayPal",
    )
    page.get_by_label(words.paypal_email, exact=True).fill("long.note@buyer.test")
    page.get_by_label(words.paypal_password, exact=True).fill("any password")
    page.get_by_role("button", name=words.paypal_pay, exact=True).click()
    expect(page).to_have_url(re.compile(r"/package$"))
    page.get_by_role("navigation").get_by_role("link", name=texts["nav"], exact=True).click()
    invoice = only_invoice(live_server, FREE)
    row = page.locator(f"#invoice-{invoice.public_id}")
    short = row.bounding_box()
    assert short is not None

    long_note = ("Zamówienie PO-2026/117, dział zakupów, centrum kosztów 4711. " * 8).strip()
    row.get_by_role("link", name=texts["add"], exact=True).click()
    row.get_by_role("textbox").fill(long_note)
    row.get_by_role("button", name=texts["save"], exact=True).click()
    fold = row.locator("details.note-long")
    expect(fold).to_be_visible()
    # The fold is one line; what the note cell holds (the fold and the edit link) is two
    # lines high, not the note's ten (or the four of a cut note wrapping in its cell).
    line = fold.locator("summary").bounding_box()
    assert line is not None and line["height"] <= 36, line
    link = row.locator("td.note > a").bounding_box()
    assert link is not None and link["y"] + link["height"] - line["y"] <= 70, (line, link)
    assert short is not None
    full = fold.locator(":scope > span.note-text")
    expect(full).to_be_hidden()
    fold.locator("summary").click()
    expect(full).to_be_visible()
    expect(full).to_have_text(long_note)
