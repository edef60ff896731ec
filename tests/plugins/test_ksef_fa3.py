"""FA(3) XML of every kind of document KSeF covers, checked against the official schema."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from lxml import etree

from pakiet_ksef import fa3
from tests import invoice_samples as samples

NOW = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
ORIGINAL_KSEF = "5260250274-20260302-0100001AF629-AF"
NS = {"fa": fa3.NS}

COVERED = {
    "domestic": samples.DOMESTIC,
    "reverse_charge": samples.REVERSE_CHARGE,
    "reverse_charge_pl": samples.REVERSE_CHARGE_PL,
    "export": samples.OUTSIDE_EU,
    "foreign_currency_nbp_rate": samples.EUR_WITH_PLN_VAT,
    "credit_lines": samples.CREDIT_LINES,
    "credit_note": samples.CREDIT_NOTE,
    "data_correction": samples.CORRECTION,
}


def build(doc, **kwargs):
    kwargs.setdefault("corrected_ksef_number", ORIGINAL_KSEF if doc.corrects else None)
    return fa3.build(doc, generated_at=NOW, **kwargs)


def text(xml: bytes, path: str) -> list[str]:
    return [str(v) for v in etree.fromstring(xml).xpath(path + "/text()", namespaces=NS)]


@pytest.mark.parametrize("name", COVERED)
def test_every_covered_kind_is_valid_fa3(name):
    xml = build(COVERED[name])
    assert fa3.validate(xml) == []
    root = etree.fromstring(xml)
    assert root.tag == f"{{{fa3.NS}}}Faktura"
    code = root.find("fa:Naglowek/fa:KodFormularza", NS)
    assert code.get("kodSystemowy") == "FA (3)" and code.get("wersjaSchemy") == "1-0E"
    assert text(xml, "fa:Fa/fa:P_2") == [COVERED[name].number]


def test_a_broken_document_is_caught():
    xml = build(samples.DOMESTIC)
    root = etree.fromstring(xml)
    p2 = root.find("fa:Fa/fa:P_2", NS)
    p2.getparent().remove(p2)  # the invoice number, which KSeF requires
    errors = fa3.validate(etree.tostring(root))
    assert errors and any("P_2" in e for e in errors)
    bad_nip = xml.replace(b"<NIP>5260250274</NIP>", b"<NIP>0260250274</NIP>")
    assert fa3.validate(bad_nip)
    assert fa3.validate(b"<Faktura") != []


def test_domestic_invoice_states_net_vat_and_rate():
    xml = build(samples.DOMESTIC)
    assert text(xml, "fa:Podmiot1/fa:DaneIdentyfikacyjne/fa:NIP") == ["5260250274"]
    assert text(xml, "fa:Podmiot2/fa:DaneIdentyfikacyjne/fa:NIP") == ["7740001454"]
    assert text(xml, "fa:Fa/fa:P_13_1") == [f"{samples.DOMESTIC.net_total.amount:.2f}"]
    assert text(xml, "fa:Fa/fa:P_14_1") == [f"{samples.DOMESTIC.vat_total.amount:.2f}"]
    assert text(xml, "fa:Fa/fa:P_15") == [f"{samples.DOMESTIC.total.amount:.2f}"]
    assert set(text(xml, "fa:Fa/fa:FaWiersz/fa:P_12")) == {"23"}
    assert text(xml, "fa:Fa/fa:RodzajFaktury") == ["VAT"]


def test_reverse_charge_names_the_eu_buyer_and_the_buyer_accounts_for_vat():
    xml = build(samples.REVERSE_CHARGE)
    assert text(xml, "fa:Podmiot2/fa:DaneIdentyfikacyjne/fa:KodUE") == ["DE"]
    assert text(xml, "fa:Podmiot2/fa:DaneIdentyfikacyjne/fa:NrVatUE") == ["811907980"]
    assert text(xml, "fa:Fa/fa:Adnotacje/fa:P_18") == ["1"]
    assert text(xml, "fa:Fa/fa:P_13_9") == ["120.00"]
    assert text(xml, "fa:Fa/fa:P_14_1") == []
    assert set(text(xml, "fa:Fa/fa:FaWiersz/fa:P_12")) == {"np II"}


def test_the_payment_is_stated_with_its_form():
    assert text(build(samples.DOMESTIC), "fa:Fa/fa:Platnosc/fa:FormaPlatnosci") == ["2"]
    paypal = build(samples.REVERSE_CHARGE)  # paid through PayPal: another form, described
    assert text(paypal, "fa:Fa/fa:Platnosc/fa:PlatnoscInna") == ["1"]
    assert text(paypal, "fa:Fa/fa:Platnosc/fa:OpisPlatnosci") == ["PayPal"]
    assert text(build(samples.CREDIT_NOTE), "fa:Fa/fa:Platnosc/fa:Zaplacono") == []


def test_export_is_outside_polish_vat():
    xml = build(samples.OUTSIDE_EU)
    assert text(xml, "fa:Podmiot2/fa:DaneIdentyfikacyjne/fa:BrakID") == ["1"]
    assert text(xml, "fa:Fa/fa:P_13_8") == ["38.00"]
    assert set(text(xml, "fa:Fa/fa:FaWiersz/fa:P_12")) == {"np I"}
    assert text(xml, "fa:Fa/fa:KodWaluty") == ["USD"]


def test_foreign_currency_states_the_vat_in_pln_and_the_nbp_rate():
    doc = samples.EUR_WITH_PLN_VAT
    xml = build(doc)
    assert text(xml, "fa:Fa/fa:KodWaluty") == ["EUR"]
    assert text(xml, "fa:Fa/fa:P_14_1W") == [f"{doc.vat_in_pln.amount.amount:.2f}"]
    assert set(text(xml, "fa:Fa/fa:FaWiersz/fa:KursWaluty")) == {"4.269300"}


def test_credit_note_references_the_ksef_number_and_states_negative_differences():
    xml = build(samples.CREDIT_NOTE)
    assert text(xml, "fa:Fa/fa:RodzajFaktury") == ["KOR"]
    assert text(xml, "fa:Fa/fa:DaneFaKorygowanej/fa:NrFaKorygowanej") == ["FV/2026/03/0001"]
    assert text(xml, "fa:Fa/fa:DaneFaKorygowanej/fa:NrKSeFFaKorygowanej") == [ORIGINAL_KSEF]
    assert text(xml, "fa:Fa/fa:P_15") == [f"-{samples.CREDIT_NOTE.total.amount:.2f}"]


def test_correction_of_an_invoice_issued_outside_ksef_says_so():
    xml = build(samples.CREDIT_NOTE, corrected_ksef_number=None)
    assert fa3.validate(xml) == []
    assert text(xml, "fa:Fa/fa:DaneFaKorygowanej/fa:NrKSeFN") == ["1"]


def test_data_correction_carries_the_buyer_before_and_changes_no_amount():
    xml = build(samples.CORRECTION)
    assert text(xml, "fa:Fa/fa:Podmiot2K/fa:DaneIdentyfikacyjne/fa:Nazwa") == [
        samples.PL_BUYER.name
    ]
    assert text(xml, "fa:Podmiot2/fa:DaneIdentyfikacyjne/fa:Nazwa") == [
        "Kwiaciarnia Żółć i Syn sp.j."
    ]
    assert text(xml, "fa:Fa/fa:P_15") == ["0.00"]
    assert text(xml, "fa:Fa/fa:FaWiersz/fa:P_11") == []


@pytest.mark.parametrize(
    "doc",
    [
        replace(samples.DOMESTIC, buyer=replace(samples.PL_BUYER, vat_id=None)),  # B2C
        samples.EU_CONSUMER,  # OSS
        samples.CZECH_SELLER,  # no Polish establishment
    ],
    ids=["b2c", "oss", "czech_seller"],
)
def test_b2c_oss_and_a_czech_seller_stay_outside_ksef(doc):
    assert not fa3.covers(doc)
    with pytest.raises(fa3.NotCovered):
        fa3.build(doc, generated_at=NOW)


def test_the_schema_is_the_official_one():
    assert fa3.schema() is fa3.schema()
    assert (fa3.SCHEMAS / fa3.SCHEMA_FILE).read_text(encoding="utf-8").count(
        'targetNamespace="http://crd.gov.pl/wzor/2025/06/25/13775/"'
    ) == 1
