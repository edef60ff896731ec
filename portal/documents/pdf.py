"""The invoice PDF: an A4 page (or more) in the document's language, Factur-X inside.

Rendered with fpdf2 rather than WeasyPrint: fpdf2 is pure Python (its only native
dependency, Pillow, comes as a wheel), while WeasyPrint needs the system's Pango and
Cairo libraries, which ``pip install`` cannot bring; with fpdf2, ``make test`` works on
a fresh machine from the project's own install step. The same goes for the font: a
Unicode TTF with the Polish letters is needed (PDF core fonts are Latin-1 only), fpdf2
ships none, and a system font would make the output depend on the machine, so the font
is Source Sans Pro from the ``font-source-sans-pro`` PyPI package (SIL OFL), a declared
dependency.

Everything here is a pure function of an :class:`InvoiceDocument`; the XML embedded is
exactly :func:`portal.documents.facturx.to_cii_xml` of the same document.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import threading
from collections.abc import Sequence
from decimal import Decimal
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import facturx
import segno
from babel import Locale
from babel.numbers import format_decimal
from facturx.facturx import FACTURX_LEVEL2xsd
from fontTools.ttLib import TTFont
from fpdf import FPDF
from fpdf.enums import Align, OutputIntentSubType, TableBordersLayout, XPos, YPos
from fpdf.fonts import FontFace
from fpdf.output import PDFICCProfile
from lxml import etree
from PIL import ImageCms

from portal.documents.facturx import exemption_reason, strip_controls, to_cii_xml
from portal.documents.invoice import (
    DocumentKind,
    EInvoiceStamp,
    InvoiceDocument,
    Party,
    VatCategory,
)
from portal.rules import dates, periods
from portal.rules.money import Money

FONT_FAMILY = "SourceSans"
LANGUAGES = ("pl", "en")

# Every text of the document that does not come from the data, per language.
# Polish terms: under the VAT Act a seller's refund is documented by a "faktura
# korygująca" (art. 106j); a "nota korygująca" is the buyer's document, so the credit
# note is titled as a correcting invoice with "nota kredytowa" in brackets.
_LABELS: dict[str, dict[str, str]] = {
    "pl": {
        "title_invoice": "Faktura VAT",
        "title_correction": "Faktura korygująca",
        "title_credit_note": "Faktura korygująca (nota kredytowa)",
        "number": "Nr",
        "issue_date": "Data wystawienia",
        "sale_date": "Data sprzedaży",
        "period": "Okres rozliczeniowy",
        "seller": "Sprzedawca",
        "buyer": "Nabywca",
        "vat_id_pl": "NIP",
        "vat_id": "Nr VAT UE",
        "corrects": "Faktura korygowana: {number} z dnia {date}",
        "correction_reason": "Przyczyna korekty: {reason}",
        "col_position": "Lp.",
        "col_description": "Nazwa usługi",
        "col_quantity": "Ilość",
        "col_unit_price": "Cena jedn. netto",
        "col_net": "Wartość netto",
        "col_rate": "Stawka VAT",
        "col_vat": "Kwota VAT",
        "col_gross": "Wartość brutto",
        "rate_AE": "np. (odwrotne obciążenie)",
        "rate_O": "np.",
        "total_net": "Razem netto",
        "total_vat": "Razem VAT",
        "total": "Razem brutto",
        "paid": "Zapłacono",
        "due": "Pozostało do zapłaty",
        "payment_means": "Forma płatności",
        "means_card": "karta płatnicza",
        "means_paypal": "PayPal",
        "means_online": "płatność online",
        "means_transfer": "przelew",
        "vat_in_pln": (
            "Kwota VAT w PLN: {amount} (kurs średni NBP {rate} PLN z dnia {date}, "
            "tabela nr {table})"
        ),
        "note": "Uwagi",
        "vat_in_czk": "Kwota VAT w CZK: {amount} (kurs ČNB {rate} CZK z dnia {date}, nr {table})",
        "tax_point": "Data otrzymania zapłaty (obowiązek podatkowy)",
        "col_net_correction": "Wartość netto korekty",
        "before_correction": "Przed korektą",
        "after_correction": "Po korekcie",
        "difference": "Korekta (różnica)",
        "total_correction": "Razem korekta brutto",
        "customer_copy": (
            "Kopia dla klienta z notatką. Wystawiona faktura pozostaje bez zmian; "
            "notatka nabywcy nie jest jej częścią."
        ),
        "einvoice_number": "Numer {system}: {number}",
        "einvoice_assigned": "Numer {system}: {number}, nadany {date}",
        "einvoice_offline": "Faktura wystawiona w trybie offline: zostanie przesłana do {system}.",
        "einvoice_waiting": (
            "Faktura przesłana do {system}; numer zostanie nadany po jej przyjęciu."
        ),
        "einvoice_qr": "Kod QR weryfikacji faktury w {system}:",
        "buyer_before": "Dane nabywcy przed korektą",
        "buyer_after": "Dane nabywcy po korekcie",
        "amounts_unchanged": (
            "Korekta dotyczy wyłącznie danych nabywcy: kwoty faktury korygowanej "
            "nie ulegają zmianie."
        ),
    },
    "en": {
        "title_invoice": "Invoice",
        "title_correction": "Correcting invoice",
        "title_credit_note": "Credit note",
        "number": "No.",
        "issue_date": "Issue date",
        "sale_date": "Date of supply",
        "period": "Billing period",
        "seller": "Seller",
        "buyer": "Buyer",
        "vat_id_pl": "VAT ID",
        "vat_id": "VAT ID",
        "corrects": "Corrects invoice {number} of {date}",
        "correction_reason": "Reason for correction: {reason}",
        "col_position": "No.",
        "col_description": "Description",
        "col_quantity": "Qty",
        "col_unit_price": "Unit price (net)",
        "col_net": "Net amount",
        "col_rate": "VAT rate",
        "col_vat": "VAT",
        "col_gross": "Gross amount",
        "rate_AE": "reverse charge",
        "rate_O": "not subject to VAT",
        "total_net": "Total net",
        "total_vat": "Total VAT",
        "total": "Total",
        "paid": "Paid",
        "due": "Amount due",
        "payment_means": "Payment method",
        "means_card": "card",
        "means_paypal": "PayPal",
        "means_online": "online payment",
        "means_transfer": "bank transfer",
        "vat_in_pln": (
            "VAT in PLN: {amount} (NBP average exchange rate {rate} PLN of {date}, "
            "table no. {table})"
        ),
        "note": "Note",
        "vat_in_czk": "VAT in CZK: {amount} (ČNB exchange rate {rate} CZK of {date}, no. {table})",
        "tax_point": "Date payment was received (tax point)",
        "col_net_correction": "Net amount of the correction",
        "before_correction": "Before the correction",
        "after_correction": "After the correction",
        "difference": "Correction (difference)",
        "total_correction": "Total of the correction",
        "customer_copy": (
            "Customer copy with note. The issued invoice stays unchanged; the buyer's note "
            "is not part of it."
        ),
        "einvoice_number": "{system} number: {number}",
        "einvoice_assigned": "{system} number: {number}, assigned on {date}",
        "einvoice_offline": "Issued in offline mode: this invoice will be sent to {system}.",
        "einvoice_waiting": "Sent to {system}; its number is assigned once it is accepted.",
        "einvoice_qr": "QR code verifying the invoice in {system}:",
        "buyer_before": "Buyer's data before the correction",
        "buyer_after": "Buyer's data after the correction",
        "amounts_unchanged": (
            "This correction concerns the buyer's data only: the amounts of the corrected "
            "invoice do not change."
        ),
    },
}

# Statutory phrases of the seller's country, printed beside the document's own wording when
# the document is in another language: a Polish seller's English document carries the Polish
# ones (art. 106e ust. 1 pkt 18, art. 106j: Polish practice expects them), a Czech seller's
# reverse charge says "daň odvede zákazník" (§ 29 odst. 2 ZDPH) in every language.
_STATUTORY: dict[str, tuple[str, dict[str, str]]] = {
    "PL": (
        "pl",
        {
            "title_correction": "Faktura korygująca",
            "title_credit_note": "Faktura korygująca",
            "rate_AE": "odwrotne obciążenie",
        },
    ),
    "CZ": ("cs", {"rate_AE": "daň odvede zákazník"}),
}

_TITLES = {
    DocumentKind.INVOICE: "title_invoice",
    DocumentKind.CORRECTION: "title_correction",
    DocumentKind.CREDIT_NOTE: "title_credit_note",
}

_BLANK_LINES = re.compile(r"\n{3,}")


def _font_path(name: str) -> Path:
    return Path(str(files("font_source_sans_pro").joinpath("files", name)))


@cache
def _font_files() -> tuple[Path, Path]:
    return _font_path("SourceSansPro-Regular.ttf"), _font_path("SourceSansPro-Bold.ttf")


@cache
def _covered() -> frozenset[int]:
    """Code points both font styles can draw."""
    sets = []
    for path in _font_files():
        with TTFont(str(path)) as font:
            sets.append(frozenset(font.getBestCmap()))
    return sets[0] & sets[1]


@cache
def _srgb_profile() -> bytes:
    # PDF/A needs an output intent for device colours; Pillow's LittleCMS builds sRGB.
    return bytes(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())


def clean_text(text: str) -> str:
    """Text from the customer, made printable: never markup, never a broken PDF.

    Control and format characters go (a bidi override could make printed text lie),
    line breaks stay (at most one blank line in a row), tabs become spaces, and a
    character the font cannot draw becomes "?" instead of an invisible gap.
    """
    covered = _covered()
    text = "".join(c if c == "\n" or ord(c) in covered else "?" for c in strip_controls(text))
    return _BLANK_LINES.sub("\n\n", text).strip()


def _labels(doc: InvoiceDocument) -> dict[str, str]:
    labels = dict(_LABELS.get(doc.language, _LABELS["en"]))
    language, phrases = _STATUTORY.get(doc.seller.country, ("", {}))
    if phrases and _locale(doc) != language:
        for key, phrase in phrases.items():
            labels[key] = f"{labels[key]} / {phrase}"
    return labels


def _locale(doc: InvoiceDocument) -> str:
    return doc.language if doc.language in LANGUAGES else "en"


def _date(doc: InvoiceDocument, day: dt.date) -> str:
    return dates.long_day(day, _locale(doc))


def _number(doc: InvoiceDocument, value: Decimal, pattern: str = "#,##0.####") -> str:
    return format_decimal(value, format=pattern, locale=_locale(doc))


def _money(doc: InvoiceDocument, amount: Money) -> str:
    return amount.format(_locale(doc))


def _rate(doc: InvoiceDocument) -> str:
    if doc.vat_category == VatCategory.STANDARD:
        return f"{_number(doc, doc.vat_rate * 100)}%"
    return _labels(doc)[f"rate_{doc.vat_category.value}"]


def _party_lines(doc: InvoiceDocument, party: Party) -> list[str]:
    labels = _labels(doc)
    country = Locale.parse(_locale(doc)).territories.get(party.country, party.country)
    lines = [party.street or "", " ".join(p for p in (party.postcode, party.city) if p), country]
    if party.vat_id:
        key = "vat_id_pl" if party.vat_id.startswith("PL") else "vat_id"
        lines.append(f"{labels[key]}: {party.vat_id}")
    if party.email:
        lines.append(party.email)
    return [clean_text(line) for line in lines if line]


class _InvoicePDF(FPDF):
    def __init__(self) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        # fpdf2's public font API: it embeds each style subset to the glyphs the document
        # uses (fontTools). A document is rendered once and stored, so the ~70 ms this costs
        # over the hand-made subsetting of earlier versions buys an fpdf2 that can be
        # upgraded (docs/performance.md).
        regular, bold = _font_files()
        self.add_font(FONT_FAMILY, "", str(regular))
        self.add_font(FONT_FAMILY, "B", str(bold))
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(auto=True, margin=15)

    def text_line(self, text: str, *, size: float = 9, bold: bool = False, h: float = 4.6) -> None:
        self.set_font(FONT_FAMILY, "B" if bold else "", size)
        # Left-aligned: fpdf2 justifies by default, which stretches a short note's words.
        self.multi_cell(0, h, text, align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _table(
    pdf: _InvoicePDF,
    widths: Sequence[float],
    aligns: Sequence[str],
    heading: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: float | None = None,
    bold_last: bool = False,
) -> None:
    pdf.set_font(FONT_FAMILY, "", 8.5)
    options: dict[str, Any] = {}
    if width is not None:
        options["width"] = width
        options["align"] = Align.R
    with pdf.table(
        col_widths=tuple(widths),
        text_align=tuple(aligns),
        headings_style=FontFace(emphasis="BOLD", fill_color=(235, 235, 235)),
        borders_layout=TableBordersLayout.HORIZONTAL_LINES,
        line_height=5,
        padding=1,
        **options,
    ) as table:
        table.row(heading)
        for index, values in enumerate(rows):
            style = FontFace(emphasis="BOLD") if bold_last and index == len(rows) - 1 else None
            table.row(values, style=style)


def render_pdf(
    doc: InvoiceDocument, stamp: EInvoiceStamp | None = None, *, customer_copy: bool = False
) -> bytes:
    """The invoice as a plain PDF (no XML yet): see :func:`render` for the Factur-X file.
    A ``customer_copy`` is marked as such under the title; a ``stamp`` prints what the
    national e-invoicing system said of it."""
    pdf = _layout(doc, customer_copy=customer_copy)
    if stamp is not None:
        _einvoice(pdf, doc, stamp)
    return bytes(pdf.output())


def _einvoice(pdf: _InvoicePDF, doc: InvoiceDocument, stamp: EInvoiceStamp) -> None:
    """The national e-invoicing block: the number, or offline mode, and the QR code with
    the number under it (or OFFLINE while there is none), as KSeF prescribes."""
    labels = _labels(doc)
    pdf.ln(4)
    if stamp.number:
        if stamp.assigned_on is not None:
            text = labels["einvoice_assigned"].format(
                system=stamp.system, number=stamp.number, date=_date(doc, stamp.assigned_on)
            )
        else:
            text = labels["einvoice_number"].format(system=stamp.system, number=stamp.number)
        pdf.text_line(text, bold=True)
    elif stamp.offline:
        pdf.text_line(labels["einvoice_offline"].format(system=stamp.system), bold=True)
    else:
        pdf.text_line(labels["einvoice_waiting"].format(system=stamp.system), bold=True)
    if not stamp.verification_url:
        return
    pdf.text_line(labels["einvoice_qr"].format(system=stamp.system))
    image = io.BytesIO()
    segno.make(stamp.verification_url, error="m").save(image, kind="png", scale=4, border=2)
    image.seek(0)
    if pdf.get_y() + 40 > pdf.h - pdf.b_margin:
        pdf.add_page()
    pdf.image(image, w=32, h=32)
    pdf.text_line(stamp.number or "OFFLINE", size=8, bold=True)
    pdf.text_line(stamp.verification_url, size=7)
    if stamp.certificate_url:  # KOD II: the seller's offline certificate vouches for it
        image = io.BytesIO()
        segno.make(stamp.certificate_url, error="m").save(image, kind="png", scale=4, border=2)
        image.seek(0)
        if pdf.get_y() + 40 > pdf.h - pdf.b_margin:
            pdf.add_page()
        pdf.image(image, w=32, h=32)
        pdf.text_line("CERTYFIKAT", size=8, bold=True)
        pdf.text_line(stamp.certificate_url, size=7)


def _layout(doc: InvoiceDocument, *, customer_copy: bool = False) -> _InvoicePDF:
    labels = _labels(doc)
    pdf = _InvoicePDF()
    # A fixed creation date (the issue date) keeps two renderings byte-comparable.
    pdf.set_creation_date(dt.datetime.combine(doc.issue_date, dt.time(), dt.UTC))
    pdf.set_lang(_locale(doc))
    pdf.set_title(f"{labels[_TITLES[doc.kind]]} {doc.number}")
    pdf.set_author(doc.seller.name)
    pdf.add_output_intent(
        OutputIntentSubType.PDFA,
        output_condition_identifier="sRGB",
        registry_name="http://www.color.org",
        dest_output_profile=PDFICCProfile(contents=_srgb_profile(), n=3, alternate="DeviceRGB"),
        info="sRGB IEC61966-2.1",
    )
    pdf.add_page()

    # Title and dates.
    pdf.set_font(FONT_FAMILY, "B", 18)
    pdf.cell(0, 9, labels[_TITLES[doc.kind]], new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.text_line(f"{labels['number']} {clean_text(doc.number)}", size=12, bold=True, h=6)
    if customer_copy:
        pdf.text_line(labels["customer_copy"], bold=True)
    pdf.ln(1)
    last_day = periods.last_day(doc.period_start, doc.period_end)
    for key, value in (
        ("issue_date", _date(doc, doc.issue_date)),
        # A payment received after the period began (a renewal paid on a retry day) is the
        # tax point (prepayment, art. 19a ust. 8): the date is named as what it is.
        (
            "sale_date" if doc.sale_date <= doc.period_start else "tax_point",
            _date(doc, doc.sale_date),
        ),
        ("period", f"{_date(doc, doc.period_start)} – {_date(doc, last_day)}"),
    ):
        pdf.text_line(f"{labels[key]}: {value}")
    pdf.ln(4)

    # Seller and buyer side by side.
    top = pdf.get_y()
    column = (pdf.epw - 10) / 2
    bottoms = []
    for index, (key, party) in enumerate((("seller", doc.seller), ("buyer", doc.buyer))):
        x = pdf.l_margin + index * (column + 10)
        pdf.set_xy(x, top)
        pdf.set_font(FONT_FAMILY, "B", 8)
        pdf.cell(column, 4.5, labels[key].upper(), new_x=XPos.LEFT, new_y=YPos.NEXT)
        pdf.set_font(FONT_FAMILY, "B", 10)
        pdf.multi_cell(
            column, 5, clean_text(party.name), align=Align.L, new_x=XPos.LEFT, new_y=YPos.NEXT
        )
        pdf.set_font(FONT_FAMILY, "", 9)
        for text in _party_lines(doc, party):
            pdf.multi_cell(column, 4.6, text, align=Align.L, new_x=XPos.LEFT, new_y=YPos.NEXT)
        bottoms.append(pdf.get_y())
    pdf.set_xy(pdf.l_margin, max(bottoms) + 5)

    if doc.corrects is not None:
        number, issued = doc.corrects
        text = labels["corrects"].format(number=clean_text(number), date=_date(doc, issued))
        pdf.text_line(text, bold=True)
    if doc.correction_reason:
        pdf.text_line(labels["correction_reason"].format(reason=clean_text(doc.correction_reason)))
    if doc.corrects is not None or doc.correction_reason:
        pdf.ln(3)

    if doc.buyer_before is not None and doc.is_data_correction:
        _data_correction(pdf, doc, doc.buyer_before)
        _note(pdf, doc)
        return pdf

    if doc.kind is DocumentKind.CREDIT_NOTE:
        _credit_amounts(pdf, doc)
    else:
        _amounts(pdf, doc)

    if doc.payment_means:
        means = labels.get(f"means_{doc.payment_means}", doc.payment_means)
        pdf.text_line(f"{labels['payment_means']}: {clean_text(means)}")
    reason = exemption_reason(doc)
    if reason:
        pdf.text_line(clean_text(reason), bold=True)
    if doc.vat_in_pln is not None:
        info = doc.vat_in_pln
        key = "vat_in_czk" if info.amount.currency == "CZK" else "vat_in_pln"
        text = labels[key].format(
            amount=info.amount.format(_locale(doc)),
            rate=_number(doc, info.rate, "0.0000##"),
            date=_date(doc, info.rate_date),
            table=clean_text(info.table),
        )
        pdf.text_line(text)

    _note(pdf, doc)
    return pdf


def _amounts(pdf: _InvoicePDF, doc: InvoiceDocument) -> None:
    """The lines, the VAT summary and the totals of an invoice or a correction."""
    labels = _labels(doc)
    # Lines.
    rows = [
        [
            str(line.position),
            clean_text(line.description),
            _number(doc, line.quantity),
            _money(doc, line.unit_price),
            _money(doc, line.net),
        ]
        for line in doc.lines
    ]
    heading = [labels[k] for k in ("col_position", "col_description", "col_quantity")]
    heading += [labels["col_unit_price"], labels["col_net"]]
    _table(pdf, (8, 88, 16, 34, 34), ("R", "L", "R", "R", "R"), heading, rows)
    pdf.ln(5)

    # VAT summary: one category per document.
    summary_heading = [labels[k] for k in ("col_rate", "col_net", "col_vat", "col_gross")]
    summary = [
        [
            _rate(doc),
            _money(doc, doc.net_total),
            _money(doc, doc.vat_total),
            _money(doc, doc.total),
        ]
    ]
    _table(pdf, (40, 30, 30, 30), ("L", "R", "R", "R"), summary_heading, summary, width=130)
    pdf.ln(4)

    # Totals. A correction or a credit note documents no payment: it never says "paid".
    totals = [
        (labels["total_net"], _money(doc, doc.net_total), False),
        (labels["total_vat"], _money(doc, doc.vat_total), False),
        (labels["total"], _money(doc, doc.total), True),
    ]
    if doc.kind is DocumentKind.INVOICE:
        totals += [
            (labels["paid"], _money(doc, doc.paid), False),
            (labels["due"], _money(doc, doc.due), True),
        ]
    for label, value, bold in totals:
        pdf.set_font(FONT_FAMILY, "B" if bold else "", 10 if bold else 9)
        pdf.set_x(pdf.l_margin + pdf.epw - 100)
        pdf.cell(60, 5.5, label, align=Align.R)
        pdf.cell(40, 5.5, value, align=Align.R, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)


def _credit_amounts(pdf: _InvoicePDF, doc: InvoiceDocument) -> None:
    """A credit note's amounts as art. 106j asks: the negative difference per line, and per
    rate the corrected invoice's amounts before and after the correction with the
    difference. The XML carries the same amounts without the minus (type code 381)."""
    labels = _labels(doc)
    rows = [
        [
            str(line.position),
            clean_text(line.description),
            _number(doc, -line.quantity),
            _money(doc, line.unit_price),
            _money(doc, -line.net),
        ]
        for line in doc.lines
    ]
    heading = [labels[k] for k in ("col_position", "col_description", "col_quantity")]
    heading += [labels["col_unit_price"], labels["col_net_correction"]]
    _table(pdf, (8, 88, 16, 34, 34), ("R", "L", "R", "R", "R"), heading, rows)
    pdf.ln(5)

    summary: list[list[str]] = []
    before, after = doc.totals_before, doc.totals_after
    if before is not None and after is not None:
        for key, amounts in (("before_correction", before), ("after_correction", after)):
            summary.append(
                [
                    labels[key],
                    _rate(doc),
                    _money(doc, amounts.net),
                    _money(doc, amounts.vat),
                    _money(doc, amounts.total),
                ]
            )
    summary.append(
        [
            labels["difference"],
            _rate(doc),
            _money(doc, -doc.net_total),
            _money(doc, -doc.vat_total),
            _money(doc, -doc.total),
        ]
    )
    heading = [""] + [labels[k] for k in ("col_rate", "col_net", "col_vat", "col_gross")]
    _table(pdf, (40, 35, 35, 30, 40), ("L", "L", "R", "R", "R"), heading, summary, bold_last=True)
    pdf.ln(4)
    totals = [
        (labels["total_net"], _money(doc, -doc.net_total), False),
        (labels["total_vat"], _money(doc, -doc.vat_total), False),
        (labels["total_correction"], _money(doc, -doc.total), True),
    ]
    for label, value, bold in totals:
        pdf.set_font(FONT_FAMILY, "B" if bold else "", 10 if bold else 9)
        pdf.set_x(pdf.l_margin + pdf.epw - 100)
        pdf.cell(60, 5.5, label, align=Align.R)
        pdf.cell(40, 5.5, value, align=Align.R, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)


def _note(pdf: _InvoicePDF, doc: InvoiceDocument) -> None:
    note = clean_text(doc.note) if doc.note else ""
    if note:
        pdf.ln(3)
        pdf.text_line(_labels(doc)["note"], bold=True)
        pdf.text_line(note)


def _data_correction(pdf: _InvoicePDF, doc: InvoiceDocument, before: Party) -> None:
    """Art. 106j ust. 2: the buyer's data before and after; no lines or totals, which would
    read as a new sale, and nothing about a payment."""
    labels = _labels(doc)
    top = pdf.get_y()
    column = (pdf.epw - 10) / 2
    bottoms = []
    for index, (key, party) in enumerate((("buyer_before", before), ("buyer_after", doc.buyer))):
        x = pdf.l_margin + index * (column + 10)
        pdf.set_xy(x, top)
        pdf.set_font(FONT_FAMILY, "B", 8)
        pdf.multi_cell(
            column, 4.5, labels[key].upper(), align=Align.L, new_x=XPos.LEFT, new_y=YPos.NEXT
        )
        pdf.set_font(FONT_FAMILY, "", 9)
        for text in [clean_text(party.name), *_party_lines(doc, party)]:
            pdf.multi_cell(column, 4.6, text, align=Align.L, new_x=XPos.LEFT, new_y=YPos.NEXT)
        bottoms.append(pdf.get_y())
    pdf.set_xy(pdf.l_margin, max(bottoms) + 5)
    pdf.text_line(labels["amounts_unchanged"], bold=True)


@cache
def _xsd() -> etree.XMLSchema:
    """The Factur-X EN 16931 schema the library checks with, parsed once per process (the
    library parses it again for every document: ~3 ms of the ~3.2 ms its check costs)."""
    path = files("facturx").joinpath("xsd_and_schematron", FACTURX_LEVEL2xsd["en16931"])
    with _xsd_lock:
        return etree.XMLSchema(file=str(path))


_xsd_lock = threading.Lock()


def check_xsd(xml: bytes) -> None:
    """Refuse an XML that does not match the Factur-X EN 16931 schema (ValueError)."""
    schema = _xsd()
    with _xsd_lock:  # an XMLSchema object is not safe to share between threads
        valid = schema.validate(etree.fromstring(xml))
        error = schema.error_log.last_error
    if not valid:
        raise ValueError(f"the Factur-X XML does not match the EN 16931 schema: {error}")


def embed_facturx(pdf: bytes, xml: bytes, *, lang: str | None = None) -> bytes:
    """PDF/A-3 with ``xml`` attached as ``factur-x.xml`` (profile EN 16931).

    The XML is checked against the schema first (:func:`check_xsd`), so an invalid
    e-invoice can never be stored.
    """
    check_xsd(xml)
    result = facturx.generate_from_binary(
        pdf, xml, flavor="factur-x", level="en16931", check_xsd=False, lang=lang
    )
    return bytes(result)


def render(doc: InvoiceDocument, stamp: EInvoiceStamp | None = None) -> tuple[bytes, bytes]:
    """``(pdf_with_xml, xml)`` of one document: what the issuing code stores. With a
    ``stamp`` (the customer's copy once KSeF answered) the PDF also shows it; the XML is
    the same either way."""
    xml = to_cii_xml(doc)
    return embed_facturx(render_pdf(doc, stamp), xml, lang=_locale(doc)), xml


def render_customer_copy(
    doc: InvoiceDocument, issued_xml: bytes, stamp: EInvoiceStamp | None = None
) -> bytes:
    """The customer's copy of an issued document with the note of ``doc`` printed on it,
    marked as a copy, carrying the issued XML byte for byte: the issued document (its
    PDF and XML) is never rendered again (DESIGN.md section 2)."""
    pdf = render_pdf(doc, stamp, customer_copy=True)
    return embed_facturx(pdf, issued_xml, lang=_locale(doc))
