"""Sample invoice documents for the renderer tests (XML and PDF), one per tax situation.

Totals are computed from the lines with :class:`Money`, as the issuing code does, so a
sample can only be as inconsistent as a test deliberately makes it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal

from portal.documents.invoice import (
    DocumentKind,
    DocumentLine,
    InvoiceDocument,
    Party,
    Totals,
    VatCategory,
    VatInPln,
)
from portal.rules.money import Money

SELLER = Party(
    name="Pakiet sp. z o.o.",
    street="ul. Prosta 51",
    postcode="00-838",
    city="Warszawa",
    country="PL",
    vat_id="PL5260250274",
    email="faktury@pakiet.example",
)
PL_BUYER = Party(
    name="Kwiaciarnia Żółć sp.j.",
    street="ul. Źródlana 7",
    postcode="30-001",
    city="Kraków",
    country="PL",
    vat_id="PL7740001454",
    email="biuro@zolc.example",
)
DE_BUYER = Party(
    name="Muster Chat GmbH",
    street="Hauptstraße 1",
    postcode="10115",
    city="Berlin",
    country="DE",
    vat_id="DE811907980",
)
US_BUYER = Party(
    name="Acme Support Inc.",
    street="1 Market St",
    postcode="94105",
    city="San Francisco",
    country="US",
    vat_id=None,
)
FR_CONSUMER = Party(
    name="Jeanne Dupont",
    street="12 rue de Rivoli",
    postcode="75004",
    city="Paris",
    country="FR",
    vat_id=None,
)


def line(position: int, description: str, quantity: str, price: str, currency: str) -> DocumentLine:
    unit_price = Money.of(price, currency)
    qty = Decimal(quantity)
    return DocumentLine(position, description, qty, unit_price, unit_price * qty)


def document(
    number: str,
    *,
    currency: str,
    language: str,
    buyer: Party,
    lines: list[tuple[str, str, str]],
    category: VatCategory = VatCategory.STANDARD,
    rate: str = "0.23",
    kind: DocumentKind = DocumentKind.INVOICE,
    **extra: object,
) -> InvoiceDocument:
    doc_lines = tuple(
        line(i, text, qty, price, currency) for i, (text, qty, price) in enumerate(lines, 1)
    )
    net = Money.zero(currency)
    for doc_line in doc_lines:
        net = net + doc_line.net
    vat_rate = Decimal(rate) if category == VatCategory.STANDARD else Decimal(0)
    vat = net * vat_rate
    doc = InvoiceDocument(
        number=number,
        kind=kind,
        issue_date=dt.date(2026, 3, 2),
        sale_date=dt.date(2026, 3, 1),
        period_start=dt.date(2026, 3, 1),
        period_end=dt.date(2026, 4, 1),
        currency=currency,
        language=language,
        seller=SELLER,
        buyer=buyer,
        lines=doc_lines,
        vat_category=category,
        vat_rate=vat_rate,
        net_total=net,
        vat_total=vat,
        total=net + vat,
        paid=net + vat,
        payment_means="card",
    )
    return replace(doc, **extra)  # type: ignore[arg-type]


DOMESTIC = document(
    "FV/2026/03/0001",
    currency="PLN",
    language="pl",
    buyer=PL_BUYER,
    lines=[
        ("Pakiet Pro: 3 agentów, 1.03.2026–31.03.2026", "3", "99.00"),
        ("Pakiet 500 rozmów", "1", "49.99"),
        ("Kredyt za niewykorzystany okres", "1", "-45.67"),
    ],
)
REVERSE_CHARGE = document(
    "FV/2026/03/0002",
    currency="EUR",
    language="en",
    buyer=DE_BUYER,
    lines=[("Pro package: 5 agents, 2026-03-01 to 2026-03-31", "5", "24.00")],
    category=VatCategory.REVERSE_CHARGE,
    payment_means="paypal",
)
REVERSE_CHARGE_PL = replace(
    REVERSE_CHARGE,
    number="FV/2026/03/0003",
    language="pl",
    lines=(line(1, "Pakiet Pro: 5 agentów", "5", "24.00", "EUR"),),
)
OUTSIDE_EU = document(
    "FV/2026/03/0004",
    currency="USD",
    language="en",
    buyer=US_BUYER,
    lines=[("Starter package: 2 agents", "2", "19.00")],
    category=VatCategory.OUTSIDE_SCOPE,
    exemption_reason="Service not subject to VAT in Poland (art. 28b of the Polish VAT Act)",
)
EU_CONSUMER = document(
    "FV/2026/03/0005",
    currency="EUR",
    language="en",
    buyer=FR_CONSUMER,
    lines=[("Starter package: 1 agent", "1", "19.00")],
    rate="0.20",
)
CORRECTION = replace(
    document(
        "FK/2026/03/0001",
        currency="PLN",
        language="pl",
        buyer=replace(PL_BUYER, name="Kwiaciarnia Żółć i Syn sp.j."),
        lines=[("Pakiet Pro: 3 agentów, 1.03.2026–31.03.2026", "3", "99.00")],
        kind=DocumentKind.CORRECTION,
        corrects=("FV/2026/03/0001", dt.date(2026, 3, 2)),
        correction_reason="Zmiana danych nabywcy",
    ),
    issue_date=dt.date(2026, 3, 9),
    buyer_before=PL_BUYER,
)
CREDIT_NOTE = replace(
    document(
        "FK/2026/03/0002",
        currency="PLN",
        language="pl",
        buyer=PL_BUYER,
        lines=[("Zwrot za niewykorzystany okres 10.03.2026–31.03.2026", "1", "70.97")],
        kind=DocumentKind.CREDIT_NOTE,
        corrects=("FV/2026/03/0001", dt.date(2026, 3, 2)),
        correction_reason="Zwrot płatności",
    ),
    # The corrected invoice: 99.00 net at 23 % (art. 106j: before, after, difference).
    totals_before=Totals(Money(9900, "PLN"), Money(2277, "PLN"), Money(12177, "PLN")),
)
CREDIT_LINES = document(
    "FV/2026/03/0006",
    currency="PLN",
    language="en",
    buyer=PL_BUYER,
    lines=[
        ("Business package: 10 agents", "10", "79.00"),
        ("Credit for unused time", "1", "-312.45"),
        ("Account credit used", "1", "-100.00"),
    ],
)
_EUR_PL = document(
    "FV/2026/03/0007",
    currency="EUR",
    language="pl",
    buyer=PL_BUYER,
    lines=[("Pakiet Business: 4 agentów", "4", "31.50")],
)
EUR_WITH_PLN_VAT = replace(
    _EUR_PL,
    vat_in_pln=VatInPln(
        # EUR and PLN both have two decimals: the VAT's cents times the rate are grosze.
        amount=Money(_EUR_PL.vat_total.minor, "PLN") * Decimal("4.2693"),
        rate=Decimal("4.2693"),
        table="041/A/NBP/2026",
        rate_date=dt.date(2026, 2, 27),
    ),
)

# A seller with no Polish establishment: a Czech s.r.o. invoicing a German business in EUR.
CZ_SELLER = Party(
    name="Pakiet CZ s.r.o.",
    street="Vodičkova 41",
    postcode="110 00",
    city="Praha",
    country="CZ",
    vat_id="CZ27082440",
    email="faktury@pakiet.example",
)
CZECH_SELLER = replace(REVERSE_CHARGE, number="FV/2026/03/0008", seller=CZ_SELLER)
# A Czech seller's domestic sale in EUR: Czech VAT, stated in CZK at the ČNB rate (§ 4 odst. 5
# ZDPH); BT-6 is CZK and BT-111 the CZK amount.
_CZ_EUR = replace(
    document(
        "FV/2026/03/0009",
        currency="EUR",
        language="en",
        buyer=replace(PL_BUYER, name="Kavárna s.r.o.", country="CZ", vat_id="CZ25596641"),
        lines=[("Pro package: 2 agents", "2", "31.50")],
        rate="0.21",
    ),
    seller=CZ_SELLER,
)
CZECH_SELLER_CZK = replace(
    _CZ_EUR,
    vat_in_pln=VatInPln(
        amount=Money(_CZ_EUR.vat_total.minor, "CZK") * Decimal("25.125"),
        rate=Decimal("25.125"),
        table="42",
        rate_date=dt.date(2026, 2, 27),
    ),
)

ALL = {
    "domestic": DOMESTIC,
    "reverse_charge": REVERSE_CHARGE,
    "reverse_charge_pl": REVERSE_CHARGE_PL,
    "outside_eu": OUTSIDE_EU,
    "eu_consumer": EU_CONSUMER,
    "correction": CORRECTION,
    "credit_note": CREDIT_NOTE,
    "credit_lines": CREDIT_LINES,
    "eur_with_pln_vat": EUR_WITH_PLN_VAT,
    "czech_seller": CZECH_SELLER,
    "czech_seller_czk": CZECH_SELLER_CZK,
}
