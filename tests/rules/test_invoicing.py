"""Invoices (issue 6): issued once per settled payment, stored, listed, noted, e-mailed."""

from __future__ import annotations

import io
from hashlib import sha256

import pytest
from facturx import get_xml_from_pdf, xml_check_xsd
from pypdf import PdfReader
from sqlalchemy import delete, func, select, update

from portal import demo
from portal.infra.extensions import db
from portal.infra.models import Invoice, InvoiceRendering, InvoiceSequence, Payment, utcnow
from portal.rules import invoicing
from tests.conftest import at_once, csrf_token
from tests.documents.test_facturx import schematron
from tests.rules.test_payments import (  # the third party's transfer plugin drives the payments
    THIRD_PARTY,
    back_from_bank,
    bank_token,
    place_and_pay,
    standard,
    transfer24,
)

__all__ = ["standard", "transfer24"]  # fixtures reused from test_payments


@pytest.fixture
def config_overrides(transfer24, smtp, monkeypatch):
    monkeypatch.syspath_prepend(str(THIRD_PARTY))
    from tests.conftest import BUILTIN_PLUGINS

    return {
        "PLUGINS": [*BUILTIN_PLUGINS, "pakiet_transfer24"],
        "PLUGIN_CONFIG": {
            "transfer24": {
                "base_url": transfer24.base_url,
                "api_key": "t24-key",
                "notify_secret": "t24-secret",
            }
        },
        "MAIL_BACKEND": "smtp",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": smtp.port,
        "MAIL_USE_TLS": False,
    }


def text(response) -> str:
    return response.get_data(as_text=True).replace("\xa0", " ")


def pdf_text(body: bytes) -> str:
    return " ".join(page.extract_text() for page in PdfReader(io.BytesIO(body)).pages)


def buy(standard, transfer24) -> None:
    back_from_bank(standard, transfer24, bank_token(place_and_pay(standard, agents="5")))


def invoices(app) -> list[Invoice]:
    with app.app_context():
        rows = db.session.scalars(select(Invoice).order_by(Invoice.id)).all()
        db.session.expunge_all()
        return rows


def test_a_settled_payment_issues_one_invoice(app, standard, transfer24, smtp):
    buy(standard, transfer24)
    [invoice] = invoices(app)
    assert invoice.number.startswith("FV/") and invoice.number.endswith("/000001")
    assert (invoice.currency, invoice.net_minor, invoice.vat_minor, invoice.total_minor) == (
        "PLN",
        26700,
        6141,
        32841,
    )
    lines = invoice.content["lines"]
    assert [line["net"]["minor"] for line in lines] == [44500, -17800]  # package, credit
    assert invoice.content["buyer"]["name"] == "Sklep Rowerowy Szprycha Sp. z o.o."
    with app.app_context():  # issuing again for the same payment does nothing
        payment_id = db.session.scalar(select(Payment.id))
        assert invoicing.issue_now(payment_id, now=utcnow()) is None
        assert db.session.scalar(select(func.count()).select_from(Invoice)) == 1


def test_the_invoices_page_lists_it_with_pdf_and_xml(app, standard, transfer24):
    buy(standard, transfer24)
    [invoice] = invoices(app)
    page = text(standard.get("/invoices"))
    assert invoice.number in page and "328,41 zł" in page
    assert "Nie wystawiamy faktur proforma" in page  # R13, where people look for one
    pdf = standard.get(f"/invoices/{invoice.public_id}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert invoice.number in pdf_text(pdf.data)
    xml = standard.get(f"/invoices/{invoice.public_id}.xml")
    assert xml.mimetype == "application/xml"
    assert xml_check_xsd(xml.data, flavor="factur-x", level="en16931")
    _name, embedded = get_xml_from_pdf(pdf.data, check_xsd=False)
    assert embedded == xml.data  # the PDF carries the same EN 16931 XML


def test_the_invoice_is_e_mailed_with_its_pdf_over_smtp(app, standard, transfer24, smtp):
    buy(standard, transfer24)
    [invoice] = invoices(app)
    [message] = smtp.messages
    assert message["To"] == "standard@demo.example.com"
    assert message["Subject"] == f"Faktura {invoice.number}"
    [attachment] = [part for part in message.walk() if part.get_filename()]
    assert attachment.get_filename() == invoice.number.replace("/", "-") + ".pdf"
    assert invoice.number in pdf_text(attachment.get_payload(decode=True))


def note(client, invoice, value, **extra):
    data = {"csrf_token": csrf_token(client, "/invoices"), "note": value, **extra}
    return client.post(
        f"/invoices/{invoice.public_id}/note", data=data, headers={"HX-Request": "true"}
    )


def test_a_note_is_printed_on_the_invoice_and_the_earlier_rendering_kept(app, standard, transfer24):
    buy(standard, transfer24)
    [invoice] = invoices(app)
    response = note(standard, invoice, "PO 4711 <script>alert(1)</script>\x07")
    assert response.status_code == 200
    row = text(response)
    assert row.startswith(f'<tr id="invoice-{invoice.public_id}"')
    assert "&lt;script&gt;" in row and "<script>" not in row
    printed = pdf_text(standard.get(f"/invoices/{invoice.public_id}.pdf").data)
    assert "PO 4711 <script>alert(1)</script>" in printed
    with app.app_context():
        renderings = db.session.scalars(select(InvoiceRendering.note)).all()
    assert renderings == [None, "PO 4711 <script>alert(1)</script>"]
    [after] = invoices(app)  # the fiscal content is as issued
    assert (after.number, after.total_minor, after.content) == (
        invoice.number,
        invoice.total_minor,
        invoice.content,
    )


def test_a_note_never_changes_the_issued_document_it_goes_on_a_marked_customer_copy(
    app, standard, transfer24, smtp
):
    """Issue 23, point 8: the issued PDF and XML stay byte for byte as issued and sent; the
    download gives the customer copy with the note (R11), marked as such, carrying the issued
    XML; the original stays downloadable; a note taken back drops the copy."""
    buy(standard, transfer24)
    [invoice] = invoices(app)
    base = f"/invoices/{invoice.public_id}"
    [message] = smtp.messages
    [sent] = [p.get_payload(decode=True) for p in message.walk() if p.get_filename()]
    issued_pdf, issued_xml = standard.get(base + ".pdf").data, standard.get(base + ".xml").data
    assert sha256(issued_pdf).digest() == sha256(sent).digest()
    assert "Kopia dla klienta" not in pdf_text(issued_pdf)

    assert note(standard, invoice, "PO 4711").status_code == 200
    copy = standard.get(base + ".pdf").data
    printed = pdf_text(copy)
    assert "PO 4711" in printed and "Kopia dla klienta z notatką" in printed
    _name, embedded = get_xml_from_pdf(copy, check_xsd=False)
    assert embedded == issued_xml  # the copy carries the issued XML, unchanged
    original = standard.get(base + "/issued.pdf")
    assert original.status_code == 200
    assert sha256(original.data).digest() == sha256(issued_pdf).digest()
    assert sha256(standard.get(base + ".xml").data).digest() == sha256(issued_xml).digest()
    with app.app_context():
        [stored] = db.session.scalars(select(Invoice)).all()
        assert bytes(stored.xml) == issued_xml
    row = text(standard.get("/invoices"))
    assert f'href="{base}/issued.pdf"' in row

    assert note(standard, invoice, "").status_code == 200  # taken back: the issued one again
    assert standard.get(base + ".pdf").data == issued_pdf
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(InvoiceRendering)) == 1


def test_the_issued_pdf_of_another_account_is_not_found(app, standard, transfer24, auth):
    buy(standard, transfer24)
    [invoice] = invoices(app)
    auth.logout()
    assert auth.login("free@demo.example.com", demo.PASSWORD).status_code == 302
    assert standard.get(f"/invoices/{invoice.public_id}/issued.pdf").status_code == 404


def test_a_downloaded_pdf_is_revalidated_so_a_note_added_later_reaches_the_customer(
    app, standard, transfer24
):
    buy(standard, transfer24)
    [invoice] = invoices(app)
    path = f"/invoices/{invoice.public_id}.pdf"
    first = standard.get(path)
    assert first.headers["Cache-Control"] == "private, no-cache"
    assert first.headers["ETag"]
    unchanged = standard.get(path, headers={"If-None-Match": first.headers["ETag"]})
    assert (unchanged.status_code, unchanged.data) == (304, b"")
    note(standard, invoice, "PO 4711")
    again = standard.get(path, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 200
    assert again.headers["ETag"] != first.headers["ETag"]
    assert "PO 4711" in pdf_text(again.data)


def test_a_note_over_the_limit_is_refused(app, standard, transfer24):
    buy(standard, transfer24)
    [invoice] = invoices(app)
    response = note(standard, invoice, "x" * 1001)
    assert response.status_code == 422
    assert "Notatka może mieć najwyżej 1000 znaków." in text(response)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(InvoiceRendering)) == 1


def test_a_note_can_carry_over_to_future_invoices(app, standard, transfer24):
    buy(standard, transfer24)
    [invoice] = invoices(app)
    note(standard, invoice, "PO 4711", carry_over="on")
    back_from_bank(standard, transfer24, bank_token(place_and_pay(standard, agents="6")))
    second = invoices(app)[1]
    assert second.note == "PO 4711"
    assert second.number.endswith("/000002")
    assert "PO 4711" in pdf_text(standard.get(f"/invoices/{second.public_id}.pdf").data)


def test_another_accounts_invoice_is_not_found(app, standard, auth, transfer24):
    buy(standard, transfer24)
    [invoice] = invoices(app)
    auth.logout()
    auth.login("free@demo.example.com", "pakiet-demo-2026")
    for path in (".pdf", ".xml"):
        assert standard.get(f"/invoices/{invoice.public_id}{path}").status_code == 404
    assert note(standard, invoice, "mine now").status_code == 404
    for path in ("/note", "/row"):
        assert standard.get(f"/invoices/{invoice.public_id}{path}").status_code == 404
    assert standard.get("/invoices/forged.pdf").status_code == 404
    assert invoice.number not in text(standard.get("/invoices"))


def change_billing(client, apply: bool, name: str = "Szprycha Sp. z o.o."):
    data = {
        "csrf_token": csrf_token(client, "/billing"),
        "company_name": name,
        "street": "ul. Rowerowa 2",
        "postcode": "30-001",
        "city": "Kraków",
        "country": "PL",
        "vat_number": "",
        "invoice_email": "faktury@example.com",
    }
    if apply:
        data["apply_to_last_invoice"] = "y"
    return client.post("/billing", data=data)


def test_new_billing_data_on_the_last_invoice_is_a_correcting_invoice(
    app, standard, transfer24, smtp
):
    buy(standard, transfer24)
    back_from_bank(standard, transfer24, bank_token(place_and_pay(standard, agents="6")))
    first, last = invoices(app)
    response = change_billing(standard, apply=True)
    assert response.status_code == 303
    first_after, last_after, correction = invoices(app)
    # Earlier invoices never change; the last one is corrected by a new document.
    assert (first_after.content, last_after.content) == (first.content, last.content)
    assert correction.kind == "correction" and correction.corrects_id == last.id
    assert correction.number.startswith("FVK/")
    assert correction.content["buyer"]["name"] == "Szprycha Sp. z o.o."
    assert correction.content["corrects"][0] == last.number
    assert correction.total_minor == last.total_minor
    page = text(standard.get("/invoices"))
    assert correction.number in page and f"koryguje {last.number}" in page
    printed = pdf_text(standard.get(f"/invoices/{correction.public_id}.pdf").data)
    assert "Szprycha Sp. z o.o." in printed and last.number in printed
    # Art. 106j ust. 2: the buyer before and after; no totals as a new sale, no payment.
    assert correction.content["buyer_before"]["name"] == last.content["buyer"]["name"]
    assert "DANE NABYWCY PRZED KOREKTĄ" in printed and "DANE NABYWCY PO KOREKCIE" in printed
    assert last.content["buyer"]["name"] in printed
    assert "kwoty faktury korygowanej nie ulegają zmianie" in printed
    for word in ("Razem brutto", "Zapłacono", "Pozostało do zapłaty"):
        assert word not in printed
    mails = [m for m in smtp.messages if correction.number in m["Subject"]]
    [mail] = mails
    body = next(p for p in mail.walk() if p.get_content_type() == "text/plain")
    words = " ".join(body.get_payload(decode=True).decode().split())
    assert "koryguje dane nabywcy" in words and "Dziękujemy za płatność" not in words


def test_without_the_choice_no_correction_is_issued(app, standard, transfer24):
    buy(standard, transfer24)
    change_billing(standard, apply=False)
    assert [i.kind for i in invoices(app)] == ["invoice"]


def without_invoice(app) -> int:
    """The bought package's payment, as if it had settled while invoicing was down."""
    with app.app_context():
        db.session.execute(delete(InvoiceRendering))
        db.session.execute(delete(Invoice))
        db.session.execute(update(InvoiceSequence).values(last_value=0))
        db.session.commit()
        return int(db.session.scalar(select(Payment.id)))


@pytest.mark.postgres
def test_issuing_racing_itself_still_makes_one_invoice_without_a_gap(app, standard, transfer24):
    buy(standard, transfer24)
    payment_id = without_invoice(app)

    def issue() -> None:
        with app.app_context():
            invoicing.issue_now(payment_id, now=utcnow())
            db.session.remove()

    at_once(10, issue, timeout=30)
    [invoice] = invoices(app)
    assert invoice.number.endswith("/000001")
    with app.app_context():
        assert db.session.scalar(select(InvoiceSequence.last_value)) == 1


@pytest.mark.postgres
def test_an_issuer_skips_a_payment_another_one_holds_without_rendering(app, standard, transfer24):
    """Runners walk the same list of due invoices: the payment's row is the claim, so a
    second runner renders nothing for an invoice the first is issuing."""
    buy(standard, transfer24)
    payment_id = without_invoice(app)
    with app.app_context():
        assert invoicing.pending_payments() == [payment_id]
    rendered: list[str] = []

    def renderer(doc):
        rendered.append(doc.number)
        return b"%PDF-1.7 test", b"<xml/>"

    def issue():
        return invoicing.issue_for_payment(
            payment_id=payment_id,
            seller=app.config["SELLER"],
            language="pl",
            render=renderer,
            rates=invoicing.app_rates(),
            now=utcnow(),
            today=utcnow().date(),
        )

    with app.app_context():
        other = db.engine.connect()  # the first runner, holding the payment
        holder = other.begin()
        other.execute(select(Payment.id).where(Payment.id == payment_id).with_for_update())
        try:
            assert issue() is None
            assert rendered == [] and invoices(app) == []
        finally:
            holder.rollback()
            other.close()
        invoice = issue()
        assert invoice is not None and rendered == [invoice.number]
        assert issue() is None  # issued: nothing more to render
        assert rendered == [invoice.number]
        db.session.remove()


def stop_before_rendering(app) -> Invoice:
    """The state an issuer leaves if it stops after taking the number, before the PDF."""
    from portal.infra.models import UNRENDERED, Notice

    [invoice] = invoices(app)
    with app.app_context():
        db.session.execute(delete(InvoiceRendering))
        db.session.execute(delete(Notice).where(Notice.key == f"invoice-{invoice.id}"))
        db.session.execute(update(Invoice).values(xml=UNRENDERED))
        db.session.commit()
        assert invoicing.unrendered() == [invoice.id]
    return invoice


def test_an_invoice_left_without_its_pdf_is_rendered_and_sent_by_the_next_run(
    app, standard, transfer24, smtp
):
    buy(standard, transfer24)
    invoice = stop_before_rendering(app)
    smtp.messages.clear()

    with app.app_context():
        assert invoicing.render_missing(now=utcnow()) == 1
        assert invoicing.unrendered() == []
        assert invoicing.render_missing(now=utcnow()) == 0  # once
        stored = db.session.get(Invoice, invoice.id)
        assert xml_check_xsd(bytes(stored.xml), flavor="factur-x", level="en16931")
        [pdf] = db.session.scalars(select(InvoiceRendering.pdf)).all()
    assert invoice.number in pdf_text(bytes(pdf))
    assert [s for s in smtp.subjects() if invoice.number in s]  # its e-mail, with the PDF


@pytest.mark.postgres
def test_the_number_is_taken_before_the_pdf_is_rendered(app, standard, transfer24):
    """The gapless counter is locked only to take the number: rendering the PDF (the slow
    part) happens after that commit, so issuers on many runners do not queue behind it."""
    buy(standard, transfer24)
    payment_id = without_invoice(app)
    seen: list[int] = []

    def renderer(doc):
        with db.engine.connect() as other:  # another issuer, at the counter now
            seen.append(
                other.execute(
                    select(InvoiceSequence.last_value).with_for_update(nowait=True)
                ).scalar_one()
            )
            other.rollback()
        return invoicing.app_renderer()(doc)

    with app.app_context():
        invoice = invoicing.issue_for_payment(
            payment_id=payment_id,
            seller=app.config["SELLER"],
            language="pl",
            render=renderer,
            rates=invoicing.app_rates(),
            now=utcnow(),
            today=utcnow().date(),
        )
        assert invoice is not None and seen == [1]  # committed, and free
        assert invoicing.unrendered() == []
        db.session.remove()


def test_downloads_do_not_wait_for_the_run_to_store_the_documents(app, standard, transfer24, smtp):
    buy(standard, transfer24)
    invoice = stop_before_rendering(app)

    pdf = standard.get(f"/invoices/{invoice.public_id}.pdf")
    assert pdf.status_code == 200 and invoice.number in pdf_text(pdf.data)
    xml = standard.get(f"/invoices/{invoice.public_id}.xml")
    assert xml.status_code == 200 and invoice.number.encode() in xml.data
    assert xml_check_xsd(xml.data, flavor="factur-x", level="en16931")
    with app.app_context():  # a download writes nothing: the run stores them, and e-mails
        assert invoicing.unrendered() == [invoice.id]
    assert standard.get("/invoices/" + "0" * 32 + ".pdf").status_code == 404


def test_a_note_without_javascript_has_a_page_of_its_own(app, standard, transfer24):
    buy(standard, transfer24)
    [invoice] = invoices(app)
    listed = text(standard.get("/invoices"))
    assert "<textarea" not in listed  # the list links to the form; it carries none
    assert f'href="/invoices/{invoice.public_id}/note"' in listed

    form_page = standard.get(f"/invoices/{invoice.public_id}/note")
    page = text(form_page)
    assert form_page.status_code == 200 and "<html" in page
    assert f"Notatka na fakturze {invoice.number}" in page
    assert "hx-post" not in page  # a plain form: no row to swap on this page
    data = {"csrf_token": csrf_token(standard, "/invoices"), "note": "PO 4711"}

    saved = standard.post(f"/invoices/{invoice.public_id}/note", data=data)
    assert saved.status_code == 303
    assert saved.headers["Location"].endswith(f"/invoices#invoice-{invoice.public_id}")
    assert "PO 4711" in text(standard.get("/invoices"))

    typed = "y" * 1001
    refused = standard.post(
        f"/invoices/{invoice.public_id}/note", data={**data, "note": typed, "carry_over": "on"}
    )
    page = text(refused)
    assert refused.status_code == 422 and "<html" in page
    assert "Notatka może mieć najwyżej 1000 znaków." in page
    assert f">{typed}</textarea>" in page and " checked>" in page  # as the customer typed it
    [after] = invoices(app)
    assert after.note == "PO 4711"
    row = standard.get(f"/invoices/{invoice.public_id}/row")  # Cancel, without JavaScript
    assert row.status_code == 303 and row.headers["Location"].endswith(
        f"/invoices#invoice-{invoice.public_id}"
    )


def test_the_note_form_opens_in_the_row_and_a_refused_note_keeps_what_was_typed(
    app, standard, transfer24
):
    buy(standard, transfer24)
    [invoice] = invoices(app)
    note(standard, invoice, "PO 4711")
    hx = {"HX-Request": "true"}

    opened = standard.get(f"/invoices/{invoice.public_id}/note", headers=hx)
    row = text(opened)
    assert opened.status_code == 200 and row.startswith(f'<tr id="invoice-{invoice.public_id}"')
    assert ">PO 4711</textarea>" in row and 'hx-post="/invoices/' in row

    typed = "PO 4712 " + "z" * 1000
    refused = note(standard, invoice, typed, carry_over="on")
    row = text(refused)
    assert refused.status_code == 422 and row.startswith("<tr ")
    assert f">{typed}</textarea>" in row and " checked>" in row
    assert 'role="alert"' in row and "Notatka może mieć najwyżej 1000 znaków." in row
    [after] = invoices(app)
    assert after.note == "PO 4711"

    cancelled = text(standard.get(f"/invoices/{invoice.public_id}/row", headers=hx))
    assert cancelled.startswith("<tr ") and "<textarea" not in cancelled
    assert "PO 4711" in cancelled and "Edytuj notatkę" in cancelled


def test_sixty_note_saves_keep_the_issued_pdf_and_the_latest_only(app, standard, transfer24, smtp):
    """Security issue, point 9: storage does not grow with every save of a note."""
    buy(standard, transfer24)
    [invoice] = invoices(app)
    for n in range(60):
        assert note(standard, invoice, f"PO {n}").status_code == 200
    with app.app_context():
        renderings = db.session.scalars(
            select(InvoiceRendering.note).order_by(InvoiceRendering.id)
        ).all()
    assert renderings == [None, "PO 59"]
    printed = pdf_text(standard.get(f"/invoices/{invoice.public_id}.pdf").data)
    assert "PO 59" in printed and "PO 58" not in printed
    [issued] = [m for m in smtp.messages if m["Subject"] == f"Faktura {invoice.number}"]
    assert issued  # the invoice e-mail went once, with the issued document


def test_note_saves_are_rate_limited_with_a_translated_429(app, standard, transfer24):
    buy(standard, transfer24)
    [invoice] = invoices(app)
    app.config["NOTE_RATE_LIMIT"] = "3 per minute"
    statuses = [note(standard, invoice, f"PO {n}").status_code for n in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = standard.post(
        f"/invoices/{invoice.public_id}/note",
        data={"csrf_token": csrf_token(standard, "/invoices"), "note": "PO 9"},
    )
    assert refused.status_code == 429 and "Zbyt wiele prób" in text(refused)
    [after] = invoices(app)
    assert after.note == "PO 2"


def test_a_refused_note_is_not_echoed_in_full(app, standard, transfer24):
    """Security issue, point 7: a 100 kB note is refused without being sent back."""
    buy(standard, transfer24)
    [invoice] = invoices(app)
    response = note(standard, invoice, "N" * 100_000)
    assert response.status_code == 422
    assert "N" * (invoicing.NOTE_LIMIT + 101) not in text(response)
    assert "N" * 100 in text(response)


def test_another_country_is_not_a_data_correction_the_invoice_is_reissued(
    app, standard, transfer24, smtp
):
    """Issue 23, point 4: another country makes another taxable person and tax treatment.
    The page says so before saving; the last invoice is corrected to zero by a credit note
    and issued again, under the next number of its series, to the new buyer, with the VAT of
    the new country and the price paid unchanged."""
    assert "corrected to zero" in text(standard.get("/billing")) or (
        "skorygowana do zera" in text(standard.get("/billing"))
    )
    buy(standard, transfer24)
    [last] = invoices(app)
    data = {
        "csrf_token": csrf_token(standard, "/billing"),
        "company_name": "Szprycha s.r.o.",
        "street": "Vodičkova 41",
        "postcode": "110 00",
        "city": "Praha",
        "country": "CZ",
        "vat_number": "",
        "invoice_email": "faktury@example.com",
        "apply_to_last_invoice": "y",
    }
    response = standard.post("/billing", data=data)
    assert response.status_code == 303
    page = text(standard.get("/billing"))
    assert "skorygowana do zera" in page
    last_after, credit, reissued = invoices(app)
    assert last_after.content == last.content  # the issued invoice never changes
    assert credit.kind == "credit_note" and credit.corrects_id == last.id
    assert credit.total_minor == last.total_minor  # corrected to zero: all of it
    assert credit.content["totals_before"]["total"]["minor"] == last.total_minor
    assert reissued.number in credit.content["correction_reason"]
    series, year, seq = last.number.split("/")
    assert reissued.kind == "invoice" and reissued.number == f"{series}/{year}/{int(seq) + 1:06d}"
    assert reissued.content["buyer"]["country"] == "CZ"
    assert reissued.content["buyer"]["name"] == "Szprycha s.r.o."
    assert reissued.total_minor == last.total_minor  # the price paid stays
    assert reissued.content["vat_rate"] == "0.21"  # a Czech consumer: Czech VAT
    assert reissued.net_minor + reissued.vat_minor == reissued.total_minor
    for invoice in (credit, reissued):
        xml = standard.get(f"/invoices/{invoice.public_id}.xml").data
        assert xml_check_xsd(xml, flavor="factur-x", level="en16931")
        assert schematron().failures(xml) == []
    printed = pdf_text(standard.get(f"/invoices/{reissued.public_id}.pdf").data)
    assert "Szprycha s.r.o." in printed and "21%" in printed
    subjects = [m["Subject"] for m in smtp.messages]
    assert any(credit.number in s for s in subjects)
    assert any(reissued.number in s for s in subjects)
    assert reissued.corrects_id == last.id
    assert f"wystawiona ponownie za {last.number}" in text(standard.get("/invoices"))
    # A refund of the payment (R14) then credits the invoice issued again.
    with app.app_context():
        from portal.rules.refunds import _invoice_of

        payment = db.session.get(Payment, last.payment_id)
        assert _invoice_of(payment).id == reissued.id
