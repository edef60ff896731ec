"""The art. 106e VAT-in-PLN statement: only where Polish VAT is due in another currency; a
Czech seller's VAT in CZK (§ 4 odst. 5 ZDPH); the tax point of a renewal paid late."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from portal.documents.invoice import DocumentKind
from portal.documents.pdf import render
from portal.rules.invoicing import build_document
from tests.documents.test_facturx import schematron
from tests.documents.test_invoice_pdf import pdf_text

SELLER = {"name": "Pakiet sp. z o.o.", "country": "PL", "vat_id": "PL5260250274"}


def order(treatment: str, rate: str, vat_minor: int) -> Any:
    quote = {
        "period_start": "2026-03-01",
        "period_end": "2026-04-01",
        "vat_rate": rate,
        "lines": [
            {"kind": "package", "quantity": 1, "unit_price_minor": 10000, "amount_minor": 10000}
        ],
        "unused_credit_minor": 0,
        "account_credit_used_minor": 0,
        "subtotal_minor": 10000,
    }
    return SimpleNamespace(
        quote=quote,
        tax_treatment=treatment,
        currency="EUR",
        package="standard",
        period="month",
        net_minor=10000,
        vat_minor=vat_minor,
        total_minor=10000 + vat_minor,
    )


def account(country: str, vat_number: str | None) -> Any:
    billing = SimpleNamespace(
        company_name="Buyer",
        street="Street 1",
        postcode="00-001",
        city="City",
        country=country,
        vat_number=vat_number,
        invoice_email=None,
    )
    return SimpleNamespace(billing_info=billing)


def rates(base: str, quote: str, on_date: dt.date) -> Any:
    assert (base, quote) == ("EUR", "PLN")
    return SimpleNamespace(
        rate=Decimal("4.2693"), table="041/A/NBP/2026", effective_date=dt.date(2026, 2, 27)
    )


def build(treatment: str, rate: str, vat_minor: int, country: str, vat: str | None) -> Any:
    return build_document(
        number="FV/2026/03/0001",
        kind=DocumentKind.INVOICE,
        order=order(treatment, rate, vat_minor),
        account=account(country, vat),
        seller=SELLER,
        issue_date=dt.date(2026, 3, 2),
        language="en",
        rates=rates,
    )


def test_domestic_vat_in_euro_is_stated_in_pln() -> None:
    doc = build("domestic", "0.23", 2300, "PL", None)
    assert doc.vat_in_pln is not None and doc.vat_in_pln.amount.minor == 9819


@pytest.mark.parametrize(
    ("treatment", "rate", "vat_minor", "country", "vat"),
    [
        ("reverse_charge", "0", 0, "DE", "DE811907980"),  # no VAT due: no "VAT in PLN: 0.00"
        ("outside_eu", "0", 0, "US", None),
        ("eu_consumer", "0.19", 1900, "DE", None),  # OSS: German VAT, not converted to PLN
    ],
    ids=["reverse_charge", "outside_eu", "oss"],
)
def test_no_vat_in_pln_where_no_polish_vat_is_due(
    treatment: str, rate: str, vat_minor: int, country: str, vat: str | None
) -> None:
    assert build(treatment, rate, vat_minor, country, vat).vat_in_pln is None


def test_a_renewal_paid_on_a_retry_day_takes_its_tax_point_and_rate_from_the_payment() -> None:
    """Issue 23, point 6 (art. 19a ust. 8, art. 31a): paid on 4 March for a period that began
    on 1 March, the sale date and the NBP rate's date follow the payment."""
    asked: list[dt.date] = []

    def rates_asked(base: str, quote: str, on_date: dt.date) -> Any:
        asked.append(on_date)
        return rates(base, quote, on_date)

    doc = build_document(
        number="FV/2026/03/0001",
        kind=DocumentKind.INVOICE,
        order=order("domestic", "0.23", 2300),
        account=account("PL", None),
        seller=SELLER,
        issue_date=dt.date(2026, 3, 4),
        language="pl",
        rates=rates_asked,
        tax_point=dt.date(2026, 3, 4),
    )
    assert doc.sale_date == dt.date(2026, 3, 4) and doc.period_start == dt.date(2026, 3, 1)
    assert asked == [dt.date(2026, 3, 4)]
    text = pdf_text(render(doc)[0])
    assert "Data otrzymania zapłaty (obowiązek podatkowy): 4 marca 2026" in text
    assert "Data sprzedaży" not in text


CZ_SELLER = {"name": "Pakiet CZ s.r.o.", "country": "CZ", "vat_id": "CZ27082440"}


def czk_rates(base: str, quote: str, on_date: dt.date) -> Any:
    assert (base, quote, on_date) == ("EUR", "CZK", dt.date(2026, 3, 1))
    return SimpleNamespace(rate=Decimal("25.125"), table="42", effective_date=dt.date(2026, 2, 27))


def czech(treatment: str, rate: str, vat_minor: int, country: str, vat: str | None) -> Any:
    return build_document(
        number="FV/2026/03/0001",
        kind=DocumentKind.INVOICE,
        order=order(treatment, rate, vat_minor),
        account=account(country, vat),
        seller=CZ_SELLER,
        issue_date=dt.date(2026, 3, 2),
        language="en",
        rates=czk_rates,
    )


def test_a_czech_sellers_vat_in_euro_is_stated_in_czk_at_the_cnb_rate() -> None:
    """§ 4 odst. 5 ZDPH: the Czech VAT in CZK at the ČNB rate of the tax-point day; in the
    XML as BT-111 with CZK as the VAT accounting currency (BT-6)."""
    doc = czech("domestic", "0.21", 2100, "CZ", None)
    assert doc.vat_in_pln is not None
    assert (doc.vat_in_pln.amount.currency, doc.vat_in_pln.amount.minor) == ("CZK", 52763)
    pdf, xml = render(doc)
    assert "VAT in CZK: CZK 527.63 (ČNB exchange rate 25.1250 CZK of" in pdf_text(pdf)
    assert b"<ram:TaxCurrencyCode>CZK</ram:TaxCurrencyCode>" in xml
    assert b'<ram:TaxTotalAmount currencyID="CZK">527.63</ram:TaxTotalAmount>' in xml
    assert schematron().failures(xml) == []


@pytest.mark.parametrize(
    ("treatment", "rate", "vat_minor", "country", "vat"),
    [
        ("reverse_charge", "0", 0, "DE", "DE811907980"),
        ("eu_consumer", "0.19", 1900, "DE", None),  # OSS: German VAT, not converted
    ],
    ids=["reverse_charge", "oss"],
)
def test_no_vat_in_czk_where_no_czech_vat_is_due(
    treatment: str, rate: str, vat_minor: int, country: str, vat: str | None
) -> None:
    assert czech(treatment, rate, vat_minor, country, vat).vat_in_pln is None
