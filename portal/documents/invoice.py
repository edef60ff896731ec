"""The immutable content of an issued invoice, as documents (PDF, XML) render it.

Built once at issue from the database rows (snapshots of seller and buyer, typed lines)
and never changed: renderers are pure functions of an :class:`InvoiceDocument`. Only
the customer's ``note`` may differ between two renderings of the same invoice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from portal.rules.money import Money


class DocumentKind(StrEnum):
    INVOICE = "invoice"  # UNTDID 1001 code 380
    CORRECTION = "correction"  # a correcting invoice (faktura korygująca), code 384
    # Money back (refund), code 381. Its amounts are positive, the sums credited: in
    # EN 16931 the type code carries the sign, so a credit note of -100 would mean +100.
    CREDIT_NOTE = "credit_note"


TYPE_CODES = {
    DocumentKind.INVOICE: "380",
    DocumentKind.CORRECTION: "384",
    DocumentKind.CREDIT_NOTE: "381",
}


class VatCategory(StrEnum):
    """EN 16931 VAT category codes (UNTDID 5305) the portal uses."""

    STANDARD = "S"
    REVERSE_CHARGE = "AE"
    OUTSIDE_SCOPE = "O"  # services to a buyer outside the EU: not subject to EU VAT


@dataclass(frozen=True)
class Party:
    name: str
    street: str | None
    postcode: str | None
    city: str | None
    country: str  # ISO 3166-1 alpha-2
    vat_id: str | None  # with its prefix, e.g. "PL5260250274", "EL123456789"
    email: str | None = None


@dataclass(frozen=True)
class DocumentLine:
    """One invoice line. Credits (unused time, account credit) are negative lines."""

    position: int
    description: str  # already in the document's language
    quantity: Decimal
    unit_price: Money  # net
    net: Money  # quantity x unit price, rounded once
    unit_code: str = "C62"  # UN/ECE rec. 20 "one"


@dataclass(frozen=True)
class VatInPln:
    """A Polish seller's foreign-currency invoice also states the VAT in PLN (art. 106e); a
    Czech seller's, in CZK at the ČNB rate (§ 4 odst. 5 ZDPH): ``amount`` is in that
    currency, whatever the name."""

    amount: Money  # PLN
    rate: Decimal  # PLN per one unit of the invoice currency
    table: str  # e.g. "231/A/NBP/2026"
    rate_date: dt.date


@dataclass(frozen=True)
class Totals:
    """Net, VAT and gross at the document's one rate (a corrected invoice's, art. 106j)."""

    net: Money
    vat: Money
    total: Money


@dataclass(frozen=True)
class EInvoiceStamp:
    """What a national e-invoicing system (KSeF) said of an issued document, printed on the
    customer's copy. It arrives after issue, so it is never part of the document's content:
    the copy is rendered again with it, the issued renderings stay as they were."""

    system: str  # "KSeF"
    number: str | None  # the system's number, once assigned
    offline: bool  # issued in offline mode: the system was down
    verification_url: str | None  # the QR code's link (KSeF: KOD I)
    certificate_url: str | None = None  # issued offline: KOD II, signed by the seller
    assigned_on: dt.date | None = None  # the day the system assigned ``number``


@dataclass(frozen=True)
class InvoiceDocument:
    number: str
    kind: DocumentKind
    issue_date: dt.date
    sale_date: dt.date  # the date of supply (the period's start)
    period_start: dt.date
    period_end: dt.date  # exclusive: the renewal date
    currency: str
    language: str  # "pl" or "en": the language of every text on the document
    seller: Party
    buyer: Party
    lines: tuple[DocumentLine, ...]
    vat_category: VatCategory
    vat_rate: Decimal  # a fraction: Decimal("0.23")
    net_total: Money
    vat_total: Money
    total: Money
    paid: Money  # already paid (the invoice documents a payment)
    # Legal wording for reverse charge or outside-scope supplies, in ``language``.
    exemption_reason: str | None = None
    payment_means: str | None = None  # "card", "paypal", "transfer"
    corrects: tuple[str, dt.date] | None = None  # number and issue date of the original
    correction_reason: str | None = None
    note: str | None = None  # the customer's note, printed on the document
    vat_in_pln: VatInPln | None = None
    # EN 16931 asks for these only in some cases; both default to None because the portal's
    # invoices document a payment already made (nothing due, paid by card or PayPal).
    due_date: dt.date | None = None  # BT-9: BR-CO-25 wants it (or terms) when due > 0
    payee_iban: str | None = None  # BT-84: BR-61 wants it for a credit transfer (code 30)
    # A correction of the buyer's data (art. 106j ust. 2): the buyer as the corrected
    # invoice named them; ``buyer`` is the buyer after the correction.
    buyer_before: Party | None = None
    # A credit note (art. 106j ust. 2 pkt 5): the corrected invoice's amounts at its rate, so
    # the document shows them before and after the correction beside the difference. Its
    # lines and totals are the difference (positive here and in the XML, whose type code 381
    # carries the sign; the PDF prints them with a minus).
    totals_before: Totals | None = None

    @property
    def is_data_correction(self) -> bool:
        return self.kind is DocumentKind.CORRECTION and self.buyer_before is not None

    @property
    def totals_after(self) -> Totals | None:
        """A credit note's amounts after the correction (the corrected ones less its own)."""
        before = self.totals_before
        if before is None:
            return None
        return Totals(
            before.net - self.net_total, before.vat - self.vat_total, before.total - self.total
        )

    @property
    def type_code(self) -> str:
        return TYPE_CODES[self.kind]

    @property
    def due(self) -> Money:
        return self.total - self.paid
