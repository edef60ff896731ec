"""History and documents in a real browser (issue 25 point 3), under the production
headers: the invoice filters and the year's ZIP download, and the payment history, at
1280 px and on a 390 px phone, in Polish and English; nothing wider than the phone."""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import pytest
from playwright.sync_api import expect

from portal.infra.extensions import db
from portal.rules import accounts
from tests.browser.conftest import Contexts, LiveServer, axe, describe, login, serious
from tests.browser.test_look import STANDARD, overflow
from tests.web.test_invoice_list import Books, Customer

WORDS = {
    "pl": {
        "year": "Rok",
        "show": "Pokaż",
        "zip": "Pobierz wszystkie dokumenty z 2025 r. (ZIP)",
        "failed": "Nieudana",
        "reason": "Twój bank odrzucił kartę.",
    },
    "en": {
        "year": "Year",
        "show": "Show",
        "zip": "Download all documents of 2025 (ZIP)",
        "failed": "Failed",
        "reason": "Your bank declined the card.",
    },
}


@pytest.fixture
def documents(live_server: LiveServer) -> list[str]:
    """Invoices of 2025 and 2026 and a declined attempt for the demo Standard customer."""
    with live_server.app.app_context():
        user = accounts.find_user(STANDARD)
        customer = Customer("standard", account_id=user.account_id)
        books = Books()
        books.seq = 900_000  # clear of the demo's own numbers
        at = dt.datetime(2025, 6, 1, 10, tzinfo=dt.UTC)
        for day in (dt.date(2025, 6, 1), dt.date(2025, 7, 1), dt.date(2026, 1, 1)):
            books.invoice(customer, day, payment=books.payment(customer, at, method_id=None))
        books.payment(customer, at, status="failed", failure_code="card_declined", method_id=None)
        db.session.commit()
        numbers = [i.number for i in customer.invoices]
        db.session.remove()
        return numbers


def fits(page, width: int) -> None:
    """No serious accessibility problem (axe); the page's content is no wider than the
    window; on a phone nothing is. (At 1280 px the Polish header alone is wider than that,
    with or without these pages.)"""
    found = serious(axe(page))
    assert not found, describe(found)
    main = int(page.evaluate("document.querySelector('main').scrollWidth"))
    assert main <= width, f"{page.url}: the content is {main} px wide"
    if width <= 390:
        assert overflow(page) <= width, f"{page.url} is {overflow(page)} px wide"


@pytest.mark.parametrize("language", ["pl", "en"])
@pytest.mark.parametrize("width", [1280, 390])
def test_filters_zip_and_history(contexts: Contexts, documents, language: str, width: int):
    words = WORDS[language]
    page = contexts.new_page(viewport={"width": width, "height": 844}, accept_downloads=True)
    login(page, STANDARD)
    if language == "en":
        page.get_by_role("navigation").get_by_role("button", name="English", exact=True).click()
        page.wait_for_load_state()

    page.goto("/invoices")
    page.get_by_label(words["year"]).select_option("2025")
    page.get_by_role("button", name=words["show"], exact=True).click()
    page.wait_for_url("**/invoices?year=2025*")
    rows = page.locator("table.invoices tbody tr")
    expect(rows).to_have_count(2)
    fits(page, width)
    with page.expect_download() as download:
        page.get_by_role("button", name=words["zip"]).click()
    archive = zipfile.ZipFile(io.BytesIO(download.value.path().read_bytes()))
    assert archive.namelist() == [n.replace("/", "-") + ".pdf" for n in documents[:2]]

    page.goto("/payments")
    rows = page.locator("table.history tbody tr")
    expect(rows).to_have_count(4)
    failed = rows.filter(has_text=words["failed"])
    expect(failed).to_contain_text(words["reason"])
    expect(rows.filter(has_text=documents[2]).get_by_role("link")).to_have_attribute(
        "href", f"/invoices/i-standard-{int(documents[2][-6:])}.pdf"
    )
    fits(page, width)
