"""Billing information in a real browser: the live VAT-number check as people see it, in
both languages, for a mistyped, a valid and a VIES-down number; and without JavaScript."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from portal import demo
from tests.browser.conftest import LiveServer, axe, describe, login, serious

STANDARD = "standard@demo.example.com"  # Polish
PRO = "pro@demo.example.com"  # English

POLISH = {
    "nav": "Informacje rozliczeniowe",
    "street": "Ulica i numer",
    "postcode": "Kod pocztowy",
    "city": "Miejscowość",
    "country": "Kraj",
    "email": "E-mail do wysyłki faktur",
    "vat": "Numer VAT",
    "check": "Sprawdź numer VAT",
    "save": "Zapisz",
    "checksum": "Cyfra kontrolna tego numeru się nie zgadza",
    "valid": "Potwierdzony w VIES.",
    "pending": "Weryfikacja w toku.",
    "pending_vat": "Do tego czasu doliczamy VAT na fakturach.",
    "invalid_cause": "nie jest zarejestrowana jako podatnik VAT-UE",
    "saved": "Zapisano.",
}
ENGLISH = {
    "nav": "Billing information",
    "street": "Street and number",
    "postcode": "Postcode",
    "city": "City",
    "country": "Country",
    "email": "E-mail for invoices",
    "vat": "VAT number",
    "check": "Check the VAT number",
    "save": "Save",
    "checksum": "This number's check digit does not match",
    "valid": "Confirmed in VIES.",
    "pending": "Verification pending.",
    "pending_vat": "Meanwhile VAT is charged on your invoices.",
    "invalid_cause": "not registered for intra-EU transactions",
    "saved": "Saved.",
}
# (who, words, country, mistyped, valid, VIES down, what the valid number shows)
CASES = [
    (
        STANDARD,
        POLISH,
        "PL",
        "PL 526-025-02-75",
        "pl 957 489 06 82",
        "PL6351396937",
        "SKLEP ROWEROWY SZPRYCHA SP. Z O.O.",
    ),
    (
        PRO,
        ENGLISH,
        "DE",
        "DE812415869",
        "DE 812 415 868",
        "DE870596402",
        "reverse charge (you account for the VAT in Germany)",
    ),
]


def open_billing(page: Page, who: str, words: dict[str, str]) -> None:
    login(page, who, demo.PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name=words["nav"]).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(words["nav"])


def fill_address(page: Page, words: dict[str, str], country: str) -> None:
    page.get_by_label(words["street"]).fill("Hauptstraße 1")
    page.get_by_label(words["postcode"]).fill("80331")
    page.get_by_label(words["city"]).fill("München")
    page.get_by_label(words["country"]).select_option(country)
    # The demo logins' addresses end in .test, which the e-mail check refuses.
    page.get_by_label(words["email"]).fill("faktury@firma.pl")


def enter_vat(page: Page, words: dict[str, str], number: str) -> None:
    field = page.get_by_label(words["vat"])
    field.fill(number)
    field.press("Tab")  # "change" fires when the field is left


@pytest.mark.parametrize(
    ("who", "words", "country", "mistyped", "valid", "down", "confirmed"),
    CASES,
    ids=["polish", "english"],
)
def test_live_check_of_a_mistyped_a_valid_and_a_vies_down_number(
    page: Page,
    live_server: LiveServer,
    who: str,
    words: dict[str, str],
    country: str,
    mistyped: str,
    valid: str,
    down: str,
    confirmed: str,
) -> None:
    open_billing(page, who, words)
    fill_address(page, words, country)
    status = page.locator("#vat-status")

    enter_vat(page, words, mistyped)
    expect(status).to_contain_text(words["checksum"])
    expect(status.get_by_role("alert")).to_be_visible()

    enter_vat(page, words, valid)
    expect(status).to_contain_text(words["valid"])
    expect(status).to_contain_text(confirmed)

    enter_vat(page, words, down)
    expect(status).to_contain_text(words["pending"])
    expect(status).to_contain_text(words["pending_vat"])

    violations = serious(axe(page))
    assert not violations, describe(violations)

    page.get_by_role("button", name=words["save"], exact=True).click()
    expect(page.get_by_text(words["saved"])).to_be_visible()
    expect(page.locator("#vat-status")).to_contain_text(words["pending"])
    user = live_server.user(who)
    assert user is not None
    with live_server.app.app_context():
        from portal.infra.extensions import db
        from portal.infra.models import BillingInfo

        billing = db.session.query(BillingInfo).filter_by(account_id=user.account_id).one()
        assert (billing.vat_number, billing.vat_status, billing.country) == (
            down.replace(" ", ""),
            "pending",
            country,
        )
        db.session.remove()


@pytest.fixture
def context_options() -> dict[str, Any]:
    return {}


@pytest.mark.parametrize("context_options", [{"java_script_enabled": False}], indirect=True)
def test_without_javascript_the_check_button_and_saving_work(page: Page) -> None:
    open_billing(page, STANDARD, POLISH)
    fill_address(page, POLISH, "PL")
    page.get_by_label(POLISH["vat"]).fill("PL3960306202")
    page.get_by_role("button", name=POLISH["check"]).click()
    status = page.locator("#vat-status")
    expect(status).to_contain_text("VIES nie potwierdza numeru VAT PL3960306202.")
    expect(status).to_contain_text(POLISH["invalid_cause"])
    expect(status.get_by_role("link")).to_have_attribute(
        "href", "https://ec.europa.eu/taxation_customs/vies/"
    )
    page.get_by_label(POLISH["vat"]).fill("PL9574890682")
    page.get_by_role("button", name=POLISH["save"], exact=True).click()
    expect(page.get_by_text(POLISH["saved"])).to_be_visible()
    expect(page.locator("#vat-status")).to_contain_text(POLISH["valid"])
