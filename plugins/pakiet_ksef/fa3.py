"""An issued invoice as KSeF's FA(3) XML, and its check against the official schema.

The schema (``schemat_FA(3)_v1-0E.xsd`` and the Ministry's base types it imports) is the one
the ``ksef-client`` package ships; it is loaded from there, so the version KSeF publishes and
the one we validate against cannot drift apart unnoticed. The document is built with lxml
from the portal's :class:`portal.documents.invoice.InvoiceDocument`: it maps onto some thirty
FA(3) fields, and writing them here keeps every amount a ``Decimal`` from integer minor units.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

from lxml import etree

NS = "http://crd.gov.pl/wzor/2025/06/25/13775/"
FORM_CODE = {"systemCode": "FA (3)", "schemaVersion": "1-0E", "value": "FA"}
SYSTEM_INFO = "Pakiet"

#: FA(3) FormaPlatnosci: 2 card, 6 bank transfer (other means are "PlatnoscInna").
PAYMENT_FORMS = {"card": "2", "transfer": "6"}

EU = frozenset(
    "AT BE BG CY CZ DE DK EE EL ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK XI".split()
)


class NotCovered(ValueError):
    """The document is not one KSeF takes (B2C, OSS, a seller with no Polish NIP)."""


def covers(doc: Any) -> bool:
    """KSeF takes a Polish seller's B2B invoices and their corrections: domestic, reverse
    charge to an EU business, exports. B2C and OSS (a consumer in another member state),
    and a seller without a Polish NIP, stay outside."""
    seller_vat = doc.seller.vat_id or ""
    if doc.seller.country != "PL" or not seller_vat.startswith("PL"):
        return False
    category = str(doc.vat_category)
    if category == "O":
        return True  # an export of services: outside the EU, with or without a tax number
    if not doc.buyer.vat_id:
        return False  # a consumer: B2C, or OSS in another member state
    if doc.buyer.country == "PL":
        return category == "S"
    return category == "AE"  # reverse charge to an EU business


def _el(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    node = etree.SubElement(parent, f"{{{NS}}}{name}")
    if text is not None:
        node.text = text
    return node


def _amount(minor: int, exponent: int = 2) -> str:
    return f"{Decimal(minor).scaleb(-exponent):.2f}"


def _nip(vat_id: str) -> str:
    return vat_id[2:] if vat_id.startswith("PL") else vat_id


def _address(parent: etree._Element, party: Any) -> None:
    adres = _el(parent, "Adres")
    _el(adres, "KodKraju", "GR" if party.country == "EL" else party.country)
    _el(adres, "AdresL1", (party.street or party.name)[:512])
    line2 = " ".join(p for p in (party.postcode, party.city) if p)
    if line2:
        _el(adres, "AdresL2", line2[:512])


def _buyer_identity(parent: etree._Element, party: Any) -> None:
    ident = _el(parent, "DaneIdentyfikacyjne")
    vat_id = party.vat_id or ""
    if party.country == "PL" and vat_id.startswith("PL"):
        _el(ident, "NIP", _nip(vat_id))
    elif vat_id and vat_id[:2] in EU:
        _el(ident, "KodUE", vat_id[:2])
        _el(ident, "NrVatUE", vat_id[2:])
    elif vat_id:
        _el(ident, "KodKraju", party.country)
        _el(ident, "NrID", vat_id)
    else:
        _el(ident, "BrakID", "1")
    _el(ident, "Nazwa", party.name[:512])


def _rate_code(doc: Any) -> str:
    category = str(doc.vat_category)
    if category == "AE":
        return "np II"  # services of art. 100 ust. 1 pkt 4: the buyer accounts for the VAT
    if category == "O":
        return "np I"  # place of supply outside Poland (an export of services)
    return str(int(doc.vat_rate * 100))


def build(
    doc: Any,
    *,
    generated_at: dt.datetime,
    corrected_ksef_number: str | None = None,
) -> bytes:
    """FA(3) XML of ``doc`` (an ``InvoiceDocument``), UTF-8 bytes.

    A credit note is a ``KOR`` whose amounts are the (negative) differences; a correction
    of the buyer's data a ``KOR`` with the buyer before the change (``Podmiot2K``) and no
    amounts changed. ``corrected_ksef_number`` is the KSeF number of the corrected invoice,
    ``None`` when that invoice has none (issued outside KSeF).
    """
    if not covers(doc):
        raise NotCovered(doc.number)
    kind = str(doc.kind)
    correcting = kind in ("correction", "credit_note")
    sign = -1 if kind == "credit_note" else 1
    data_only = correcting and doc.buyer_before is not None
    exponent = 2  # PLN, EUR, USD, CZK: the currencies KSeF invoices here are all cents

    root = etree.Element(f"{{{NS}}}Faktura", nsmap={None: NS})
    head = _el(root, "Naglowek")
    code = _el(head, "KodFormularza", FORM_CODE["value"])
    code.set("kodSystemowy", FORM_CODE["systemCode"])
    code.set("wersjaSchemy", FORM_CODE["schemaVersion"])
    _el(head, "WariantFormularza", "3")
    _el(head, "DataWytworzeniaFa", generated_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    _el(head, "SystemInfo", SYSTEM_INFO)

    seller = _el(root, "Podmiot1")
    ident = _el(seller, "DaneIdentyfikacyjne")
    _el(ident, "NIP", _nip(doc.seller.vat_id))
    _el(ident, "Nazwa", doc.seller.name[:512])
    _address(seller, doc.seller)

    buyer = _el(root, "Podmiot2")
    _buyer_identity(buyer, doc.buyer)
    _address(buyer, doc.buyer)
    if doc.buyer.email:
        contact = _el(buyer, "DaneKontaktowe")
        _el(contact, "Email", doc.buyer.email)
    _el(buyer, "JST", "2")  # not a local-government unit
    _el(buyer, "GV", "2")  # not a VAT group member

    fa = _el(root, "Fa")
    _el(fa, "KodWaluty", doc.currency)
    _el(fa, "P_1", doc.issue_date.isoformat())
    if doc.seller.city:
        _el(fa, "P_1M", doc.seller.city)
    _el(fa, "P_2", doc.number)
    period = _el(fa, "OkresFa")
    _el(period, "P_6_Od", doc.period_start.isoformat())
    last_day = doc.period_end - dt.timedelta(days=1)
    _el(period, "P_6_Do", max(last_day, doc.period_start).isoformat())

    net = 0 if data_only else sign * doc.net_total.minor
    vat = 0 if data_only else sign * doc.vat_total.minor
    total = 0 if data_only else sign * doc.total.minor
    category = str(doc.vat_category)
    if not data_only:
        if category == "AE":
            _el(fa, "P_13_9", _amount(net, exponent))
        elif category == "O":
            _el(fa, "P_13_8", _amount(net, exponent))
        else:
            _el(fa, "P_13_1", _amount(net, exponent))
            _el(fa, "P_14_1", _amount(vat, exponent))
            if doc.vat_in_pln is not None and doc.currency != "PLN":
                _el(fa, "P_14_1W", _amount(sign * doc.vat_in_pln.amount.minor))
    _el(fa, "P_15", _amount(total, exponent))

    notes = _el(fa, "Adnotacje")
    _el(notes, "P_16", "2")  # not the cash method
    _el(notes, "P_17", "2")  # not self-billing
    _el(notes, "P_18", "1" if category == "AE" else "2")  # reverse charge
    _el(notes, "P_18A", "2")  # no split payment
    exempt = _el(notes, "Zwolnienie")
    _el(exempt, "P_19N", "1")
    transport = _el(notes, "NoweSrodkiTransportu")
    _el(transport, "P_22N", "1")
    _el(notes, "P_23", "2")  # not a simplified triangular supply
    margin = _el(notes, "PMarzy")
    _el(margin, "P_PMarzyN", "1")

    _el(fa, "RodzajFaktury", "KOR" if correcting else "VAT")
    if correcting:
        if doc.correction_reason:
            _el(fa, "PrzyczynaKorekty", doc.correction_reason[:256])
        # 1: the correction takes effect on the original's date (a data correction);
        # 2: on its own date (money back).
        _el(fa, "TypKorekty", "1" if data_only else "2")
        corrected = _el(fa, "DaneFaKorygowanej")
        number, issued = doc.corrects
        _el(corrected, "DataWystFaKorygowanej", issued.isoformat())
        _el(corrected, "NrFaKorygowanej", number)
        if corrected_ksef_number:
            _el(corrected, "NrKSeF", "1")
            _el(corrected, "NrKSeFFaKorygowanej", corrected_ksef_number)
        else:
            _el(corrected, "NrKSeFN", "1")  # the corrected invoice was issued outside KSeF
        if data_only:
            before = _el(fa, "Podmiot2K")
            _buyer_identity(before, doc.buyer_before)
            _address(before, doc.buyer_before)

    if doc.correction_reason is None and doc.note:
        extra = _el(fa, "DodatkowyOpis")
        _el(extra, "Klucz", "Uwagi")
        _el(extra, "Wartosc", doc.note[:256])

    if not data_only:
        for line in doc.lines:
            row = _el(fa, "FaWiersz")
            _el(row, "NrWierszaFa", str(line.position))
            _el(row, "P_7", line.description[:512])
            _el(row, "P_8A", "szt.")
            _el(row, "P_8B", f"{line.quantity.normalize():f}")
            _el(row, "P_9A", _amount(sign * line.unit_price.minor, exponent))
            _el(row, "P_11", _amount(sign * line.net.minor, exponent))
            _el(row, "P_12", _rate_code(doc))
            if doc.vat_in_pln is not None and doc.currency != "PLN" and category == "S":
                _el(row, "KursWaluty", f"{doc.vat_in_pln.rate:.6f}")

    if not correcting and doc.paid.minor:
        pay = _el(fa, "Platnosc")
        _el(pay, "Zaplacono", "1")
        _el(pay, "DataZaplaty", doc.issue_date.isoformat())
        means = doc.payment_means or ""
        if means in PAYMENT_FORMS:
            _el(pay, "FormaPlatnosci", PAYMENT_FORMS[means])
        else:  # PayPal and the like: "another form", described
            _el(pay, "PlatnoscInna", "1")
            _el(pay, "OpisPlatnosci", {"paypal": "PayPal"}.get(means, means or "online"))

    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


class _ShippedSchemas(etree.Resolver):
    """The FA(3) schema imports its base types by their crd.gov.pl address: read them from
    the package's copies instead (nothing is fetched from the network)."""

    def resolve(self, system_url: str, public_id: str, context: Any) -> Any:
        name = system_url.rsplit("/", 1)[-1]
        shipped = SCHEMAS / name
        if shipped.is_file():
            return self.resolve_string(shipped.read_bytes(), context)
        return None


SCHEMAS = resources.files("ksef_client") / "documents" / "fa3" / "schemas"
SCHEMA_FILE = "schemat_FA(3)_v1-0E.xsd"


@cache
def schema() -> etree.XMLSchema:
    """The official FA(3) schema, as ``ksef-client`` ships it (with its base types)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    parser.resolvers.add(_ShippedSchemas())
    tree = etree.fromstring((SCHEMAS / SCHEMA_FILE).read_bytes(), parser=parser)
    return etree.XMLSchema(etree.ElementTree(tree))


def validate(xml: bytes) -> list[str]:
    """The schema's complaints about ``xml``; empty when it is valid FA(3)."""
    try:
        tree = etree.fromstring(xml, parser=etree.XMLParser(resolve_entities=False))
    except etree.XMLSyntaxError as exc:
        return [str(exc)]
    checker = schema()
    if checker.validate(tree):
        return []
    return [f"line {e.line}: {e.message}" for e in checker.error_log]
