"""KSeF end to end: a paid B2B invoice through the plugin and its emulator.

Acceptance with the KSeF number and the UPO, a delayed status, a rejection with KSeF's
error code, an outage (offline mode, sent by the background run once KSeF is back: nothing
lost, nothing sent twice), a duplicate send after a crash, a correction naming the KSeF
number of the invoice it corrects, B2C staying outside, and the start-up errors.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from facturx import get_xml_from_pdf
from ksef_client.utils.ksef_number import is_valid_ksef_number
from lxml import etree
from sqlalchemy import select, update

from pakiet_ksef import fa3
from pakiet_ksef.client import KsefConfigError
from pakiet_ksef.emulator import KsefEmulator, ksef_number
from portal import create_app, demo
from portal.infra.extensions import db
from portal.infra.models import EInvoiceSubmission, Invoice, utcnow
from portal.plugin_api.registry import PluginError
from portal.rules import einvoicing, lifecycle
from tests.conftest import BUILTIN_PLUGINS, Auth, at_once, base_config, csrf_token
from tests.rules.test_invoicing import (
    THIRD_PARTY,
    buy,
    change_billing,
    invoices,
    note,
    pdf_text,
    standard,
    text,
    transfer24,
)

__all__ = ["standard", "transfer24"]

# The seller's KSeF offline certificate's key, which signs KOD II (an EC P-256 key).
OFFLINE_KEY = ec.generate_private_key(ec.SECP256R1())
OFFLINE_KEY_PEM = OFFLINE_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode("ascii")
OFFLINE_SERIAL = "0123456789ABCDEF"
KSEF_NUMBER = re.compile(r"5260250274-\d{8}-[0-9A-F]{12}-[0-9A-F]{2}")


@pytest.fixture
def ksef() -> Iterator[KsefEmulator]:
    with KsefEmulator() as emulator:
        yield emulator


@pytest.fixture
def config_overrides(transfer24, ksef, smtp, monkeypatch):
    monkeypatch.syspath_prepend(str(THIRD_PARTY))
    return {
        "PLUGINS": [*BUILTIN_PLUGINS, "pakiet_transfer24"],
        "PLUGIN_CONFIG": {
            "transfer24": {
                "base_url": transfer24.base_url,
                "api_key": "t24-key",
                "notify_secret": "t24-secret",
            },
            "ksef": {
                "base_url": ksef.base_url,
                "token": "ksef-token",
                "timeout": 5,
                "offline_certificate": {"serial": OFFLINE_SERIAL, "private_key": OFFLINE_KEY_PEM},
            },
        },
        "MAIL_BACKEND": "smtp",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": smtp.port,
        "MAIL_USE_TLS": False,
    }


def b2b(client) -> None:
    """The demo customer as a Polish business, with its NIP (KSeF covers it)."""
    change_billing_with_nip(client, apply=False, name="Sklep Rowerowy Szprycha Sp. z o.o.")


def submissions(app) -> list[EInvoiceSubmission]:
    with app.app_context():
        rows = db.session.scalars(select(EInvoiceSubmission).order_by(EInvoiceSubmission.id))
        found = list(rows)
        db.session.expunge_all()
        return found


def run(app, minutes: int = 11) -> lifecycle.Report:
    with app.app_context():
        return lifecycle.run_now(utcnow() + dt.timedelta(minutes=minutes))


def sends(ksef: KsefEmulator) -> list[dict]:
    return [s.body for s in ksef.requests if s.path.endswith("/invoices") and s.method == "POST"]


def test_a_paid_b2b_invoice_gets_its_ksef_number_and_upo(app, standard, transfer24, ksef, smtp):
    b2b(standard)
    buy(standard, transfer24)
    [invoice] = invoices(app)
    [sub] = submissions(app)
    assert (sub.invoice_id, sub.channel, sub.state, sub.offline) == (
        invoice.id,
        "ksef",
        "accepted",
        False,
    )
    assert ksef.accepted == [sub.national_number]
    assert KSEF_NUMBER.fullmatch(sub.national_number)
    assert (
        sub.assigned_at is not None and sub.receipt and sub.national_number.encode() in sub.receipt
    )
    assert fa3.validate(sub.payload) == []
    assert len(sends(ksef)) == 1
    # The list and the PDF copy show the KSeF number and the verification QR code's link.
    assert sub.national_number in text(standard.get("/invoices"))
    printed = pdf_text(standard.get(f"/invoices/{invoice.public_id}.pdf").data)
    assert sub.national_number in printed
    assert "/invoice/5260250274/" in printed
    # ...with the day KSeF assigned it, in the list and on the copy.
    with app.app_context():
        from portal.rules.dates import long_day
        from portal.rules.invoicing import local_today

        assigned = long_day(local_today(sub.assigned_at), "pl")
    assert f"{sub.national_number}, nadany {assigned}" in " ".join(printed.split())
    assert f"{sub.national_number} · {assigned}" in text(standard.get("/invoices"))
    # ...and so does the copy e-mailed, which left after KSeF answered.
    [message] = smtp.messages
    [attachment] = [part for part in message.walk() if part.get_filename()]
    assert sub.national_number in pdf_text(attachment.get_payload(decode=True))
    # The issued documents never change: the stored EN 16931 XML says nothing of KSeF.
    assert sub.national_number.encode() not in invoice.xml
    assert run(app).einvoices_accepted == 0 and len(sends(ksef)) == 1


def test_a_note_after_issue_goes_on_the_customer_copy_with_the_ksef_number(
    app, standard, transfer24, ksef
):
    """Issue 23, points 1 and 8 together: the copy of a KSeF invoice noted after issue shows
    the note, says it is the customer copy and shows KSeF's number; it carries the issued
    XML, and the PDF as issued stays as it was."""
    b2b(standard)
    buy(standard, transfer24)
    [invoice] = invoices(app)
    [sub] = submissions(app)
    base = f"/invoices/{invoice.public_id}"
    issued_pdf = standard.get(base + "/issued.pdf").data
    assert note(standard, invoice, "PO 4711").status_code == 200
    copy = standard.get(base + ".pdf").data
    printed = pdf_text(copy)
    assert "PO 4711" in printed and "Kopia dla klienta z notatką" in printed
    assert sub.national_number in printed
    _name, embedded = get_xml_from_pdf(copy, check_xsd=False)
    assert embedded == standard.get(base + ".xml").data == bytes(invoice.xml)
    assert standard.get(base + "/issued.pdf").data == issued_pdf


def test_ksef_down_issues_offline_and_the_background_run_sends_it_once(
    app, standard, transfer24, ksef, smtp
):
    b2b(standard)
    ksef.set_down(True)
    buy(standard, transfer24)
    [invoice] = invoices(app)  # issued all the same, with the next number: no gap
    assert invoice.number.endswith("/000001")
    [sub] = submissions(app)
    assert (sub.state, sub.offline, sub.national_number) == ("offline", True, None)
    assert sub.error_code == "http_503"
    # The customer's copy says it was issued in offline mode and goes to KSeF later.
    [message] = smtp.messages
    [attachment] = [part for part in message.walk() if part.get_filename()]
    printed = " ".join(pdf_text(attachment.get_payload(decode=True)).split())
    assert "trybie offline" in printed and "/invoice/5260250274/" in printed
    # ...with KOD II beside KOD I: the link signed with the seller's offline certificate.
    assert "CERTYFIKAT" in printed
    assert "/certificate/Nip/5260250274/5260250274/0123456789ABCDEF/" in printed
    with app.app_context():
        link = einvoicing.mark(db.session.get(Invoice, invoice.id)).certificate_url
    signed, signature = link.removeprefix("https://").removeprefix("http://").rsplit("/", 1)
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    OFFLINE_KEY.public_key().verify(der, signed.encode(), ec.ECDSA(hashes.SHA256()))
    assert "Czeka na KSeF" in text(standard.get("/invoices"))
    # The copy downloaded now says the same (and is kept by the download cache).
    downloaded = " ".join(pdf_text(standard.get(f"/invoices/{invoice.public_id}.pdf").data).split())
    assert "trybie offline" in downloaded
    payload = sub.payload

    assert run(app).einvoices_accepted == 0  # still down: nothing lost, tried again later
    [still] = submissions(app)
    assert still.state == "offline" and still.payload == payload

    ksef.set_down(False)
    assert run(app, minutes=3).einvoices_accepted == 0  # not due yet: no request at all
    assert sends(ksef) == []
    assert run(app, minutes=25).einvoices_accepted == 1
    [sent] = submissions(app)
    assert sent.state == "accepted" and ksef.accepted == [sent.national_number]
    assert sent.payload == payload  # the bytes whose hash the offline QR code printed
    [body] = sends(ksef)
    assert body["offlineMode"] is True
    assert run(app, minutes=60).einvoices_accepted == 0 and len(sends(ksef)) == 1
    # Downloaded again once KSeF assigned its number: the new copy, not the cached one.
    printed = pdf_text(standard.get(f"/invoices/{invoice.public_id}.pdf").data)
    assert sent.national_number in printed
    assert "trybie offline" not in " ".join(printed.split())


def test_a_ksef_known_to_be_down_is_not_called_for_every_invoice_of_a_run(
    app, standard, transfer24, ksef
):
    b2b(standard)
    ksef.set_down(True)
    buy(standard, transfer24)
    asked = len(ksef.requests)  # the one call that found KSeF down
    assert asked == 1
    with app.app_context():  # due again within the pause: offline at once, no request
        db.session.execute(update(EInvoiceSubmission).values(next_try_at=utcnow()))
        db.session.commit()
        assert einvoicing.run_due(now=utcnow() + dt.timedelta(minutes=1)) == 0
    assert len(ksef.requests) == asked
    [sub] = submissions(app)
    assert sub.state == "offline" and sub.error_code == "unavailable"
    ksef.set_down(False)
    assert run(app, minutes=25).einvoices_accepted == 1  # after the pause it is sent


def test_a_delayed_status_is_asked_again_by_the_background_run(app, standard, transfer24, ksef):
    ksef.delay_status(2)  # the send's status, and the second look right after it: 150
    b2b(standard)
    buy(standard, transfer24)
    [sub] = submissions(app)
    assert sub.state == "sent" and sub.reference and sub.national_number is None
    assert run(app, minutes=2).einvoices_accepted == 1
    [done] = submissions(app)
    assert done.state == "accepted" and ksef.accepted == [done.national_number]
    assert len(sends(ksef)) == 1  # asked, never sent again


@pytest.mark.postgres
def test_runners_racing_over_an_offline_invoice_send_it_once(app, standard, transfer24, ksef):
    """Many background runs at once once KSeF is back: the lease and SKIP LOCKED let one
    of them send it; the others pass it by."""
    b2b(standard)
    ksef.set_down(True)
    buy(standard, transfer24)
    ksef.set_down(False)
    later = utcnow() + dt.timedelta(minutes=11)

    def runner() -> int:
        with app.app_context():
            accepted = einvoicing.run_due(now=later)
            db.session.remove()
            return accepted

    assert sorted(at_once(6, runner, timeout=60)) == [0, 0, 0, 0, 0, 1]
    [sub] = submissions(app)
    assert sub.state == "accepted" and len(sends(ksef)) == 1 and len(ksef.accepted) == 1


def test_a_rejected_document_keeps_ksefs_error_code_and_is_not_sent_again(
    app, standard, transfer24, ksef
):
    ksef.reject_next(450)
    b2b(standard)
    buy(standard, transfer24)
    [sub] = submissions(app)
    assert (sub.state, sub.error_code) == ("rejected", "450")
    assert "semantyki" in sub.error_message
    run(app, minutes=60)
    assert len(sends(ksef)) == 1 and ksef.accepted == []
    # Staff see it, with KSeF's code, in the back office's KSeF list.
    staff = app.test_client()
    assert Auth(staff).login("admin@demo.example.com", demo.PASSWORD).status_code == 302
    [invoice] = invoices(app)
    page = text(staff.get("/admin/einvoices/"))
    assert invoice.number in page and "450" in page and "rejected" in page


def test_a_send_lost_in_a_crash_is_not_registered_twice(app, standard, transfer24, ksef):
    b2b(standard)
    buy(standard, transfer24)
    [first] = submissions(app)
    with app.app_context():  # as if the process died after KSeF took it, before we knew
        db.session.execute(
            update(EInvoiceSubmission).values(
                state="pending",
                reference=None,
                national_number=None,
                assigned_at=None,
                next_try_at=utcnow(),
            )
        )
        db.session.commit()
    assert run(app).einvoices_accepted == 1
    [again] = submissions(app)
    assert again.state == "accepted" and again.national_number == first.national_number
    assert len(sends(ksef)) == 2 and ksef.accepted == [first.national_number]  # 440, once


def test_a_correction_names_the_ksef_number_of_the_invoice_it_corrects(
    app, standard, transfer24, ksef
):
    b2b(standard)
    buy(standard, transfer24)
    change_billing_with_nip(standard)  # new buyer data on the last invoice: a correction
    original, correction = invoices(app)
    assert correction.corrects_id == original.id
    first, second = submissions(app)
    assert (first.state, second.state) == ("accepted", "accepted")
    assert ksef.accepted == [first.national_number, second.national_number]
    tree = etree.fromstring(second.payload)
    ns = {"fa": fa3.NS}
    assert tree.findtext("fa:Fa/fa:RodzajFaktury", namespaces=ns) == "KOR"
    corrected = "fa:Fa/fa:DaneFaKorygowanej/fa:NrKSeFFaKorygowanej"
    assert tree.findtext(corrected, namespaces=ns) == first.national_number
    assert tree.findtext("fa:Fa/fa:Podmiot2K/fa:DaneIdentyfikacyjne/fa:Nazwa", namespaces=ns)


def change_billing_with_nip(client, apply: bool = True, name: str = "Szprycha i Syn Sp. z o.o."):
    data = {
        "csrf_token": csrf_token(client, "/billing"),
        "company_name": name,
        "street": "ul. Rowerowa 2",
        "postcode": "30-001",
        "city": "Kraków",
        "country": "PL",
        "vat_number": "PL9574890682",
        "invoice_email": "faktury@example.com",
    }
    if apply:
        data["apply_to_last_invoice"] = "y"
    response = client.post("/billing", data=data)
    assert response.status_code == 303
    return response


def test_a_consumer_invoice_stays_outside_ksef(app, standard, transfer24, ksef):
    change_billing(standard, apply=False)  # no NIP: a consumer
    buy(standard, transfer24)
    [sub] = submissions(app)
    assert (sub.channel, sub.state, sub.payload) == (None, "outside", None)
    assert ksef.requests == []
    page = text(standard.get("/invoices"))
    assert "Czeka na KSeF" not in page and "KSeF: " not in page
    assert '<td class="einvoice"></td>' in page  # the KSeF column, empty for this one


def test_an_invoice_whose_issuer_stopped_before_ksef_is_sent_by_the_run(
    app, standard, transfer24, ksef, monkeypatch
):
    monkeypatch.setitem(app.extensions, "pakiet.after_issue", lambda invoice_id, now: None)
    b2b(standard)
    buy(standard, transfer24)
    assert submissions(app) == []
    monkeypatch.undo()
    assert run(app, minutes=1).einvoices_accepted == 1
    [sub] = submissions(app)
    assert sub.state == "accepted" and len(sends(ksef)) == 1


def test_the_emulator_numbers_documents_as_ksef_does():
    # The example of the KSeF docs (faktury/numer-ksef.md): CRC-8, polynomial 0x07.
    assert ksef_number("5265877635", dt.date(2025, 8, 26), 0x0100001AF629) == (
        "5265877635-20250826-0100001AF629-AF"
    )
    assert is_valid_ksef_number(ksef_number("5260250274", dt.date(2026, 3, 2), 12345))


def test_a_real_ksef_without_an_offline_certificate_stops_start_up_naming_it(database_url):
    config = base_config(
        database_url,
        PLUGIN_CONFIG={"ksef": {"base_url": "https://api-test.ksef.mf.gov.pl", "token": "t"}},
    )
    with pytest.raises(
        PluginError, match=r"pakiet_ksef.*PLUGIN_CONFIG\['ksef'\]\['offline_certificate'\]"
    ) as info:
        create_app(config)
    assert isinstance(info.value.__cause__, KsefConfigError)


def test_a_real_ksef_without_a_token_stops_start_up_naming_the_setting(database_url):
    config = base_config(
        database_url,
        PLUGIN_CONFIG={"ksef": {"base_url": "https://api-test.ksef.mf.gov.pl"}},
    )
    with pytest.raises(
        PluginError, match=r"pakiet_ksef.*PLUGIN_CONFIG\['ksef'\]\['token'\]"
    ) as info:
        create_app(config)
    assert isinstance(info.value.__cause__, KsefConfigError)


def test_without_settings_no_channel_is_installed(app):
    from portal.plugin_api.registry import registry

    assert "ksef" in registry(app).einvoicing_channels  # this module's app: the emulator
    plain = create_app(base_config(app.config["SQLALCHEMY_DATABASE_URI"]))
    assert registry(plain).einvoicing_channels == {}
    with plain.app_context():
        assert db.session.scalar(select(Invoice.id)) is None
        db.session.remove()
        db.engine.dispose()
