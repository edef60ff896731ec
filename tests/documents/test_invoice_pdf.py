"""The invoice PDF: readable text in the document's language, Factur-X XML inside."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from dataclasses import replace
from functools import cache
from pathlib import Path

import facturx
import pytest
from pypdf import PdfReader
from pypdf.generic import ArrayObject, DictionaryObject, StreamObject

from portal.documents.facturx import to_cii_xml
from portal.documents.invoice import InvoiceDocument
from portal.documents.pdf import clean_text, render, render_pdf
from portal.rules.money import Money
from tests import invoice_samples as samples

NOTE = "PO 4711 <script>alert('x')</script> — dostawa do działu IT"


@cache
def rendered(doc: InvoiceDocument) -> tuple[bytes, bytes]:
    return render(doc)  # each document rendered once per session: keeps the suite fast


def pdf_text(pdf: bytes) -> str:
    """The text of every page, with whitespace (no-break spaces too) collapsed."""
    reader = PdfReader(io.BytesIO(pdf))
    return " ".join(" ".join(page.extract_text().split()) for page in reader.pages)


def squash(text: str) -> str:
    return " ".join(text.split())


def fmt(money: Money, language: str) -> str:
    return squash(money.format(language))


def test_polish_invoice_text() -> None:
    doc = replace(samples.DOMESTIC, note=NOTE)
    text = pdf_text(rendered(doc)[0])
    assert "Faktura VAT" in text
    assert "FV/2026/03/0001" in text
    assert "Pakiet sp. z o.o." in text and "NIP: PL5260250274" in text
    assert "Kwiaciarnia Żółć sp.j." in text and "PL7740001454" in text
    assert "Data wystawienia: 2 marca 2026" in text
    assert "Data sprzedaży: 1 marca 2026" in text
    for money in (doc.net_total, doc.vat_total, doc.total):
        assert fmt(money, "pl") in text
    assert "Razem brutto 370,62 zł" in text
    assert "Zapłacono 370,62 zł" in text
    assert "-45,67 zł" in text  # the credit line
    assert "Forma płatności: karta płatnicza" in text
    assert squash(NOTE) in text  # the script tag is literal text


def test_thousands_are_grouped_the_polish_way() -> None:
    doc = samples.document(
        "FV/2026/03/0010",
        currency="PLN",
        language="pl",
        buyer=samples.PL_BUYER,
        lines=[("Pakiet Business", "1", "1003.71")],
    )
    text = pdf_text(rendered(doc)[0])
    assert fmt(Money.of("1234.56", "PLN"), "pl") == "1 234,56 zł"
    assert "1 234,56 zł" in text  # 1003.71 + 23 % VAT


def test_english_invoice_text() -> None:
    doc = samples.CREDIT_LINES
    text = pdf_text(rendered(doc)[0])
    assert text.startswith("Invoice")
    assert "No. FV/2026/03/0006" in text
    assert "Issue date: March 2, 2026" in text
    assert "Total PLN 464.39" in text
    assert fmt(doc.total, "en") in text and "Paid" in text
    assert "Credit for unused time" in text and "-PLN 312.45" in text


@pytest.mark.parametrize(
    ("doc", "wording"),
    [
        (samples.REVERSE_CHARGE, "Reverse charge"),
        (samples.REVERSE_CHARGE_PL, "odwrotne obciążenie"),
    ],
    ids=["en", "pl"],
)
def test_reverse_charge_wording(doc: InvoiceDocument, wording: str) -> None:
    text = pdf_text(rendered(doc)[0])
    assert wording in text
    assert "DE811907980" in text


def test_outside_eu_wording() -> None:
    text = pdf_text(rendered(samples.OUTSIDE_EU)[0])
    assert "Service not subject to VAT in Poland" in text
    assert "not subject to VAT" in text  # the rate column
    assert "$38.00" in text


def test_vat_in_pln_line() -> None:
    text = pdf_text(rendered(samples.EUR_WITH_PLN_VAT)[0])
    assert (
        "Kwota VAT w PLN: 123,72 zł (kurs średni NBP 4,2693 PLN z dnia 27 lutego 2026, "
        "tabela nr 041/A/NBP/2026)"
    ) in text
    assert "154,98 €" in text


def test_correction_shows_the_original_and_the_reason() -> None:
    text = pdf_text(rendered(samples.CORRECTION)[0])
    assert text.startswith("Faktura korygująca")
    assert "Faktura korygowana: FV/2026/03/0001 z dnia 2 marca 2026" in text
    assert "Przyczyna korekty: Zmiana danych nabywcy" in text
    assert "Kwiaciarnia Żółć i Syn sp.j." in text
    assert "DANE NABYWCY PRZED KOREKTĄ Kwiaciarnia Żółć sp.j." in text
    assert "DANE NABYWCY PO KOREKCIE Kwiaciarnia Żółć i Syn sp.j." in text
    assert "Razem brutto" not in text and "Zapłacono" not in text  # not a new sale
    credit = pdf_text(rendered(samples.CREDIT_NOTE)[0])
    assert credit.startswith("Faktura korygująca (nota kredytowa)")


def test_a_credit_note_shows_before_after_and_the_difference_and_its_xml_agrees() -> None:
    """Issue 23, point 3 (art. 106j): per line the negative difference, per rate the
    corrected invoice before and after the correction and the difference; the XML is a
    381 with the same amounts, unsigned (the type code carries the sign)."""
    doc = samples.CREDIT_NOTE
    pdf, xml = rendered(doc)
    text = pdf_text(pdf)
    assert "Wartość netto korekty" in text
    assert "1 Zwrot za niewykorzystany okres 10.03.2026–31.03.2026 -1 70,97 zł -70,97 zł" in text
    assert "Przed korektą 23% 99,00 zł 22,77 zł 121,77 zł" in text
    assert "Po korekcie 23% 28,03 zł 6,45 zł 34,48 zł" in text
    assert "Korekta (różnica) 23% -70,97 zł -16,32 zł -87,29 zł" in text
    assert "Razem korekta brutto -87,29 zł" in text
    root = ET.fromstring(xml)
    ns = {
        "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
        "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    }
    assert root.findtext("rsm:ExchangedDocument/ram:TypeCode", namespaces=ns) == "381"
    totals = (
        "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeSettlement/"
        "ram:SpecifiedTradeSettlementHeaderMonetarySummation/"
    )
    assert root.findtext(totals + "ram:GrandTotalAmount", namespaces=ns) == "87.29"
    assert root.findtext(totals + "ram:TaxBasisTotalAmount", namespaces=ns) == "70.97"
    english = pdf_text(rendered(replace(doc, language="en"))[0])
    assert "Before the correction" in english and "After the correction" in english
    assert "Total of the correction" in english


def test_a_credit_note_never_says_paid() -> None:
    for doc, words in (
        (samples.CREDIT_NOTE, ("Zapłacono", "Pozostało do zapłaty")),
        (replace(samples.CREDIT_NOTE, language="en"), ("Paid", "Amount due")),
        # A correction of amounts (not of the buyer's data) shows its totals, unpaid.
        (replace(samples.CORRECTION, buyer_before=None), ("Zapłacono", "Pozostało do zapłaty")),
    ):
        text = pdf_text(rendered(doc)[0])
        assert "Faktura korygująca" in text
        assert fmt(doc.total, doc.language) in text
        for word in words:
            assert word not in text
    # An invoice still documents its payment.
    assert "Zapłacono" in pdf_text(rendered(samples.DOMESTIC)[0])


def test_an_english_document_of_a_polish_seller_carries_the_polish_statutory_wording() -> None:
    credit = pdf_text(rendered(replace(samples.CREDIT_NOTE, language="en"))[0])
    assert credit.startswith("Credit note / Faktura korygująca")
    correction = pdf_text(rendered(replace(samples.CORRECTION, language="en"))[0])
    assert correction.startswith("Correcting invoice / Faktura korygująca")
    reverse = pdf_text(rendered(samples.REVERSE_CHARGE)[0])
    assert "reverse charge / odwrotne obciążenie" in reverse
    # A Czech seller: no Polish wording, the Czech reverse-charge phrase in any language.
    foreign = replace(
        samples.REVERSE_CHARGE, seller=replace(samples.SELLER, country="CZ", vat_id="CZ12345678")
    )
    czech = pdf_text(rendered(foreign)[0])
    assert "odwrotne obciążenie" not in czech
    assert "reverse charge / daň odvede zákazník" in czech  # § 29 odst. 2 ZDPH
    czech_pl = pdf_text(rendered(replace(foreign, language="pl"))[0])
    assert "np. (odwrotne obciążenie) / daň odvede zákazník" in czech_pl


@pytest.mark.parametrize(("name", "doc"), list(samples.ALL.items()), ids=list(samples.ALL))
def test_the_embedded_xml_is_the_document_xml(name: str, doc: InvoiceDocument) -> None:
    pdf, xml = rendered(doc)
    filename, embedded = facturx.get_xml_from_pdf(pdf, check_xsd=False)
    assert filename == "factur-x.xml"
    assert embedded == xml == to_cii_xml(doc)


def test_pdf_a3_markers() -> None:
    pdf, _ = rendered(samples.DOMESTIC)
    catalog = PdfReader(io.BytesIO(pdf)).root_object
    metadata = catalog["/Metadata"].get_object()
    assert isinstance(metadata, StreamObject)
    xmp = metadata.get_data()
    assert b"<pdfaid:part>3</pdfaid:part>" in xmp
    assert b"urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#" in xmp
    assert b"EN 16931" in xmp
    intents = catalog["/OutputIntents"].get_object()
    assert isinstance(intents, ArrayObject) and len(intents) == 1
    intent = intents[0].get_object()
    assert isinstance(intent, DictionaryObject)
    assert str(intent["/S"]) == "/GTS_PDFA1"
    assert str(catalog["/Lang"]) == "pl"


def test_a_long_note_with_control_characters_is_printed_whole() -> None:
    words = " ".join(f"słowo{i:03d}" for i in range(100))  # 1000 characters with spaces
    note = ("\x00\x1b[31m\u202e" + words)[:1000]
    unbroken = "x" * 300  # no space to break at
    doc = replace(samples.DOMESTIC, note=note + "\n" + unbroken)
    pdf, xml = render(doc)
    text = pdf_text(pdf)
    assert "słowo000" in text and "słowo099" in text
    assert "\x1b" not in text and "\u202e" not in text
    assert text.count("x") >= 300  # wrapped over several lines, nothing lost
    assert facturx.get_xml_from_pdf(pdf, check_xsd=True)[1] == xml


def test_clean_text() -> None:
    assert clean_text("a\x00b\tc\r\nd\u200be\u202e") == "ab c\nde"
    assert clean_text("one\n\n\n\n\ntwo") == "one\n\ntwo"
    assert clean_text("<b>&amp;</b>") == "<b>&amp;</b>"  # markup stays text
    assert clean_text("\U0001f600 ok") == "? ok"  # beyond the font: visible, not lost


def test_rendering_twice_gives_the_same_document() -> None:
    doc = replace(samples.DOMESTIC, note=NOTE)
    first, second = render_pdf(doc), render_pdf(doc)
    assert first == second  # fixed creation date: byte-identical
    assert pdf_text(render(doc)[0]) == pdf_text(render(doc)[0])


def test_the_note_changes_nothing_fiscal() -> None:
    without = pdf_text(rendered(samples.DOMESTIC)[0])
    with_note = pdf_text(rendered(replace(samples.DOMESTIC, note=NOTE))[0])
    assert with_note.startswith(without.split("Uwagi")[0].strip())


# -- the fonts, embedded through fpdf2's public API ------------------------------------------


def test_letters_beyond_polish_and_czech_are_printed() -> None:
    buyer = replace(samples.PL_BUYER, name="Ελληνικά Ανθοπωλεία ΑΕ — Żółć Říčany", city="Αθήνα")
    text = pdf_text(render_pdf(replace(samples.DOMESTIC, buyer=buyer)))
    assert "Ελληνικά Ανθοπωλεία ΑΕ — Żółć Říčany" in text and "Αθήνα" in text


def test_the_fonts_are_embedded_through_fpdf2s_public_api_only() -> None:
    source = (Path(__file__).resolve().parents[2] / "portal/documents/pdf.py").read_text()
    for inside in ("TTFFont", "SubsetMap", "OutputProducer", "PDFFontStream", "_tt_font_widths"):
        assert inside not in source, inside


def test_the_embedded_font_programs_are_valid_truetype_with_the_glyphs_used() -> None:
    from fontTools.ttLib import TTFont

    pdf, _ = rendered(samples.DOMESTIC)
    reader = PdfReader(io.BytesIO(pdf))
    programs = []
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            descendant = font.get_object()["/DescendantFonts"][0].get_object()
            descriptor = descendant["/FontDescriptor"].get_object()
            programs.append(descriptor["/FontFile2"].get_object().get_data())
    assert len(programs) == 2
    for data in programs:
        font = TTFont(io.BytesIO(data))
        glyf = font["glyf"]
        drawn = [name for name in font.getGlyphOrder() if glyf[name].numberOfContours]
        assert ".notdef" in drawn and len(drawn) > 20  # the letters of the invoice
        font.save(io.BytesIO())  # every table reads and writes back
