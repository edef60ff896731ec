"""The art. 106e VAT-in-PLN statement: only where Polish VAT is due in another currency."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from portal.documents.invoice import DocumentKind
from portal.rules.invoicing import build_document

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
