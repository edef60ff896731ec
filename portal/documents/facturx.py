"""EN 16931 invoice XML (UN/CEFACT Cross Industry Invoice, Factur-X profile EN 16931).

A pure function of an :class:`~portal.documents.invoice.InvoiceDocument`: no Flask, no
database. The XML is embedded in the PDF (Factur-X) and also offered for download alone.

Mapping decisions that the EN 16931 business rules force (rule ids in the comments):

* Item net prices may not be negative (BR-27), so a credit line (unused time, account
  credit) is written as a negative quantity at a positive price; its net stays negative.
* An invoice of VAT category O (outside the scope of VAT) may not carry a VAT identifier
  for the seller or the buyer (BR-O-02); the seller's number is then given as a tax
  registration id (BT-32, scheme ``FC``) and as the seller identifier (BT-29), which
  BR-CO-26 needs when BT-31 is absent.
* BT-74 (billing period end) is inclusive while the portal's period end is exclusive (the
  renewal date), hence the day subtracted.
* Amounts are written from :class:`~portal.rules.money.Money`'s exact ``Decimal`` amounts; no
  float is involved anywhere.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
import xml.etree.ElementTree as ET
from decimal import Decimal

from portal.documents.invoice import (
    InvoiceDocument,
    Party,
    VatCategory,
)
from portal.rules import periods
from portal.rules.money import Money

GUIDELINE_EN16931 = "urn:cen.eu:en16931:2017"

NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
    "qdt": "urn:un:unece:uncefact:data:standard:QualifiedDataType:100",
}
for _prefix, _uri in NS.items():
    # Global, but these prefixes are the ones every CII document uses.
    ET.register_namespace(_prefix, _uri)

# UNTDID 4461 payment means: 48 "bank card", 68 "online payment service" (PayPal),
# 30 "credit transfer" (needs the payee's account, BR-61), 42 "payment to bank account"
# (a transfer whose account the document does not state).
PAYMENT_MEANS_CODES = {"card": "48", "paypal": "68", "online": "68", "transfer": "30"}

# The legal wording when the issuing code supplied none, per document language.
DEFAULT_EXEMPTION = {
    VatCategory.REVERSE_CHARGE: {"pl": "odwrotne obciążenie", "en": "Reverse charge"},
    VatCategory.OUTSIDE_SCOPE: {
        "pl": "usługa niepodlegająca opodatkowaniu VAT w UE",
        "en": "Not subject to EU VAT",
    },
}
# VATEX codes (CEF code list) accompany the wording (BT-121).
EXEMPTION_CODES = {
    VatCategory.REVERSE_CHARGE: "VATEX-EU-AE",
    VatCategory.OUTSIDE_SCOPE: "VATEX-EU-O",
}

# UNTDID 4451 text subject qualifiers for IncludedNote (BT-21).
NOTE_GENERAL = "AAI"  # general information: the customer's note
NOTE_TAX = "TXD"  # tax declaration: exemption wording, VAT in PLN
NOTE_REASON = "ACD"  # reason: why a correction was issued


# Control, format (bidi overrides, zero-width), surrogate, private-use and unassigned
# characters, and the Unicode line/paragraph separators: never printed, and most C0
# controls are not even allowed in XML 1.0.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def strip_controls(text: str) -> str:
    """Free text (names, the customer's note) without what cannot be printed or encoded.

    Line breaks are kept as ``\n`` and tabs become spaces.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    return "".join(c for c in text if c == "\n" or unicodedata.category(c) not in _UNPRINTABLE)


def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    prefix, name = tag.split(":")
    element = ET.SubElement(parent, _q(prefix, name), attrs)
    if text is not None:
        element.text = strip_controls(text)
    return element


def amount_text(money: Money) -> str:
    """The exact decimal amount, never in exponent notation."""
    return f"{money.amount:f}"


def decimal_text(value: Decimal) -> str:
    """A quantity or percentage without trailing zeros or exponent (``23``, ``5.5``)."""
    text = f"{value.normalize():f}"
    return "0" if text in ("-0", "") else text


def percent_text(rate: Decimal) -> str:
    return decimal_text(rate * 100)


def exemption_reason(doc: InvoiceDocument) -> str | None:
    """BT-120 for AE and O; None for standard-rated documents."""
    if doc.vat_category == VatCategory.STANDARD:
        return None
    if doc.exemption_reason:
        return doc.exemption_reason
    return DEFAULT_EXEMPTION[doc.vat_category].get(doc.language, "")


def vat_in_pln_note(doc: InvoiceDocument) -> str | None:
    """The art. 106e VAT-in-PLN statement, in the document's language."""
    info = doc.vat_in_pln
    if info is None:
        return None
    rate = decimal_text(info.rate)
    date = info.rate_date.isoformat()
    pln = amount_text(info.amount)
    if info.amount.currency == "CZK":  # a Czech seller (§ 4 odst. 5 ZDPH): the ČNB rate
        if doc.language == "pl":
            return f"Kwota VAT w CZK: {pln} CZK (kurs ČNB {rate} z dnia {date}, nr {info.table})"
        return f"VAT in CZK: {pln} CZK (ČNB rate {rate} of {date}, fixing no. {info.table})"
    if doc.language == "pl":
        return (
            f"Kwota VAT w PLN: {pln} PLN (kurs średni NBP {rate} z dnia {date}, "
            f"tabela {info.table})"
        )
    return f"VAT in PLN: {pln} PLN (NBP average rate {rate} of {date}, table {info.table})"


def _date(parent: ET.Element, tag: str, day: dt.date, *, qualified: bool = False) -> None:
    # Format 102 is CCYYMMDD; the referenced-document date uses the qdt variant.
    holder = _sub(parent, tag)
    _sub(
        holder,
        "qdt:DateTimeString" if qualified else "udt:DateTimeString",
        day.strftime("%Y%m%d"),
        format="102",
    )


def _party(
    parent: ET.Element, tag: str, party: Party, *, vat_scheme: str | None, with_id: bool = False
) -> None:
    element = _sub(parent, tag)
    if with_id and party.vat_id:
        _sub(element, "ram:ID", party.vat_id)  # BT-29
    _sub(element, "ram:Name", party.name)
    address = _sub(element, "ram:PostalTradeAddress")
    if party.postcode:
        _sub(address, "ram:PostcodeCode", party.postcode)
    if party.street:
        _sub(address, "ram:LineOne", party.street)
    if party.city:
        _sub(address, "ram:CityName", party.city)
    _sub(address, "ram:CountryID", party.country)
    if party.email:
        _sub(
            _sub(element, "ram:URIUniversalCommunication"), "ram:URIID", party.email, schemeID="EM"
        )
    if party.vat_id and vat_scheme:
        _sub(
            _sub(element, "ram:SpecifiedTaxRegistration"),
            "ram:ID",
            party.vat_id,
            schemeID=vat_scheme,
        )


def _check_totals(doc: InvoiceDocument) -> Money:
    """Refuse a document whose totals do not add up: a wrong e-invoice must not be issued."""
    if not doc.lines:
        raise ValueError("an invoice needs at least one line (BR-16)")
    line_total = Money.zero(doc.currency)
    for line in doc.lines:
        line_total = line_total + line.net
    if line_total != doc.net_total:
        raise ValueError(f"lines add up to {line_total}, net total says {doc.net_total}")
    if doc.net_total + doc.vat_total != doc.total:
        raise ValueError(f"{doc.net_total} + {doc.vat_total} is not {doc.total}")
    if doc.vat_category != VatCategory.STANDARD and doc.vat_total:
        raise ValueError(f"VAT category {doc.vat_category} carries no VAT amount")
    return line_total


def to_cii_xml(doc: InvoiceDocument) -> bytes:
    """The document as Factur-X EN 16931 CII XML (UTF-8, with declaration)."""
    line_total = _check_totals(doc)
    category = doc.vat_category
    reason = exemption_reason(doc)
    outside_scope = category == VatCategory.OUTSIDE_SCOPE

    root = ET.Element(_q("rsm", "CrossIndustryInvoice"))
    context = _sub(root, "rsm:ExchangedDocumentContext")
    _sub(
        _sub(context, "ram:GuidelineSpecifiedDocumentContextParameter"), "ram:ID", GUIDELINE_EN16931
    )

    header = _sub(root, "rsm:ExchangedDocument")
    _sub(header, "ram:ID", doc.number)
    _sub(header, "ram:TypeCode", doc.type_code)
    _date(header, "ram:IssueDateTime", doc.issue_date)
    notes: list[tuple[str, str]] = []
    if reason:
        notes.append((reason, NOTE_TAX))
    pln_note = vat_in_pln_note(doc)
    if pln_note:
        notes.append((pln_note, NOTE_TAX))
    if doc.correction_reason:
        notes.append((doc.correction_reason, NOTE_REASON))
    if doc.note:
        notes.append((doc.note, NOTE_GENERAL))
    for content, subject in notes:
        note = _sub(header, "ram:IncludedNote")
        _sub(note, "ram:Content", content)
        _sub(note, "ram:SubjectCode", subject)

    transaction = _sub(root, "rsm:SupplyChainTradeTransaction")
    for line in doc.lines:
        item = _sub(transaction, "ram:IncludedSupplyChainTradeLineItem")
        _sub(_sub(item, "ram:AssociatedDocumentLineDocument"), "ram:LineID", str(line.position))
        _sub(_sub(item, "ram:SpecifiedTradeProduct"), "ram:Name", line.description)
        # BR-27: the price is never negative; the sign of a credit line goes to the quantity.
        price, quantity = line.unit_price, line.quantity
        if price.minor < 0:
            price, quantity = -price, -quantity
        agreement = _sub(item, "ram:SpecifiedLineTradeAgreement")
        _sub(
            _sub(agreement, "ram:NetPriceProductTradePrice"), "ram:ChargeAmount", amount_text(price)
        )
        delivery = _sub(item, "ram:SpecifiedLineTradeDelivery")
        _sub(delivery, "ram:BilledQuantity", decimal_text(quantity), unitCode=line.unit_code)
        settlement = _sub(item, "ram:SpecifiedLineTradeSettlement")
        tax = _sub(settlement, "ram:ApplicableTradeTax")
        _sub(tax, "ram:TypeCode", "VAT")
        _sub(tax, "ram:CategoryCode", category.value)
        if not outside_scope:  # BR-O-05: no rate on an O line; AE lines state 0 (BR-AE-05)
            _sub(tax, "ram:RateApplicablePercent", percent_text(doc.vat_rate))
        summation = _sub(settlement, "ram:SpecifiedTradeSettlementLineMonetarySummation")
        _sub(summation, "ram:LineTotalAmount", amount_text(line.net))

    agreement = _sub(transaction, "ram:ApplicableHeaderTradeAgreement")
    seller_scheme = "FC" if outside_scope else "VA"  # BR-O-02, see the module docstring
    # BR-CO-26 wants some seller identifier; without BT-31 (O) the VAT number serves as BT-29.
    _party(
        agreement,
        "ram:SellerTradeParty",
        doc.seller,
        vat_scheme=seller_scheme,
        with_id=outside_scope,
    )
    _party(agreement, "ram:BuyerTradeParty", doc.buyer, vat_scheme=None if outside_scope else "VA")

    delivery = _sub(transaction, "ram:ApplicableHeaderTradeDelivery")
    event = _sub(delivery, "ram:ActualDeliverySupplyChainEvent")
    _date(event, "ram:OccurrenceDateTime", doc.sale_date)  # BT-72, the date of supply

    settlement = _sub(transaction, "ram:ApplicableHeaderTradeSettlement")
    national = doc.vat_in_pln.amount.currency if doc.vat_in_pln is not None else None
    tax_currency = national if national and doc.currency != national else None
    if tax_currency:
        _sub(settlement, "ram:TaxCurrencyCode", tax_currency)  # BT-6
    _sub(settlement, "ram:InvoiceCurrencyCode", doc.currency)
    if doc.payment_means:
        code = PAYMENT_MEANS_CODES.get(doc.payment_means, "1")  # 1: "instrument not defined"
        if code == "30" and not doc.payee_iban:
            code = "42"  # BR-61: a credit transfer (30) must name the account
        means = _sub(settlement, "ram:SpecifiedTradeSettlementPaymentMeans")
        _sub(means, "ram:TypeCode", code)
        if code == "30" and doc.payee_iban:
            account = _sub(means, "ram:PayeePartyCreditorFinancialAccount")
            _sub(account, "ram:IBANID", doc.payee_iban)

    breakdown = _sub(settlement, "ram:ApplicableTradeTax")
    _sub(breakdown, "ram:CalculatedAmount", amount_text(doc.vat_total))
    _sub(breakdown, "ram:TypeCode", "VAT")
    if reason:
        _sub(breakdown, "ram:ExemptionReason", reason)  # BR-AE-10, BR-O-10
    _sub(breakdown, "ram:BasisAmount", amount_text(doc.net_total))
    _sub(breakdown, "ram:CategoryCode", category.value)
    if category in EXEMPTION_CODES:
        _sub(breakdown, "ram:ExemptionReasonCode", EXEMPTION_CODES[category])
    if not outside_scope:
        _sub(breakdown, "ram:RateApplicablePercent", percent_text(doc.vat_rate))

    period = _sub(settlement, "ram:BillingSpecifiedPeriod")
    _date(period, "ram:StartDateTime", doc.period_start)
    last_day = periods.last_day(doc.period_start, doc.period_end)
    _date(period, "ram:EndDateTime", last_day)

    due = doc.due
    if due.minor > 0:  # BR-CO-25: something still to pay needs a due date or terms
        terms = _sub(settlement, "ram:SpecifiedTradePaymentTerms")
        _date(terms, "ram:DueDateDateTime", doc.due_date or doc.issue_date)

    totals = _sub(settlement, "ram:SpecifiedTradeSettlementHeaderMonetarySummation")
    _sub(totals, "ram:LineTotalAmount", amount_text(line_total))
    _sub(totals, "ram:TaxBasisTotalAmount", amount_text(doc.net_total))
    _sub(totals, "ram:TaxTotalAmount", amount_text(doc.vat_total), currencyID=doc.currency)
    if tax_currency and doc.vat_in_pln is not None:
        # BT-111: the VAT in the accounting currency, required once BT-6 is given (BR-53).
        pln = amount_text(doc.vat_in_pln.amount)
        _sub(totals, "ram:TaxTotalAmount", pln, currencyID=tax_currency)
    _sub(totals, "ram:GrandTotalAmount", amount_text(doc.total))
    _sub(totals, "ram:TotalPrepaidAmount", amount_text(doc.paid))
    _sub(totals, "ram:DuePayableAmount", amount_text(due))

    if doc.corrects is not None:
        number, issued = doc.corrects
        reference = _sub(settlement, "ram:InvoiceReferencedDocument")
        _sub(reference, "ram:IssuerAssignedID", number)  # BT-25
        _date(reference, "ram:FormattedIssueDateTime", issued, qualified=True)  # BT-26

    ET.indent(root)
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))
