"""The invoice list (issue 25 point 3, issue 26 point 2): filters by year and kind that keep
working across pages of 50, newest first; bad parameters answered with a clear page; the
same number of SQL statements for 12 invoices as for 120; a year's documents as one ZIP."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from dataclasses import dataclass, field

import pytest
from werkzeug.security import generate_password_hash

from portal.infra.extensions import db
from portal.infra.models import (
    Invoice,
    InvoiceRendering,
    Payment,
)
from tests.conftest import PASSWORD, Auth, csrf_token, paid_account_with_card, standard_order
from tests.web.test_sql_per_page import counting

CONFIRMED = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def pdf_of(number: str) -> bytes:
    return f"%PDF-1.7\n% {number}\n%%EOF\n".encode()


@dataclass
class Customer:
    """A paid account with a saved Visa card, built row by row at fixed dates."""

    name: str
    account_id: int = 0
    method_id: int = 0
    invoices: list[Invoice] = field(default_factory=list)

    @property
    def email(self) -> str:
        return f"{self.name}@firma.example.com"


class Books:
    """Accounts, payments and documents made directly, numbered one sequence for all."""

    def __init__(self) -> None:
        self.seq = 0
        self.password_hash = generate_password_hash(PASSWORD)

    def customer(self, name: str, language: str = "en") -> Customer:
        customer = Customer(name)
        account, method = paid_account_with_card(
            name,
            password_hash=self.password_hash,
            created_at=CONFIRMED,
            confirmed_at=CONFIRMED,
            street="Prosta 1",
            city="Warszawa",
            language=language,
            method_created_at=CONFIRMED,
        )
        customer.account_id, customer.method_id = account.id, method.id
        return customer

    def payment(
        self,
        customer: Customer,
        at: dt.datetime,
        *,
        status: str = "paid",
        renewal: bool = False,
        failure_code: str | None = None,
        method_id: int | None = -1,
        provider: str = "stripe",
        amount_minor: int = 21894,
        refunded_minor: int = 0,
    ) -> Payment:
        self.seq += 1
        key = f"{'renewal' if renewal else 'k'}-{customer.name}-{self.seq}"
        order = standard_order(
            public_id=f"o-{customer.name}-{self.seq}",
            account_id=customer.account_id,
            idempotency_key=key,
            status="paid" if status == "paid" else "pending",
            subtotal_minor=amount_minor,
            net_minor=amount_minor,
            vat_minor=0,
            total_minor=amount_minor,
            created_at=at,
            expires_at=at + dt.timedelta(days=30),
        )
        db.session.add(order)
        db.session.flush()
        payment = Payment(
            public_id=f"p-{customer.name}-{self.seq}",
            account_id=customer.account_id,
            order_id=order.id,
            method_id=customer.method_id if method_id == -1 else method_id,
            provider=provider,
            provider_ref=f"ref_{customer.name}_{self.seq}",
            idempotency_key=key,
            status=status,
            amount_minor=amount_minor,
            refunded_minor=refunded_minor,
            currency="PLN",
            failure_code=failure_code,
            created_at=at,
            settled_at=at if status in ("paid", "refunded") else None,
        )
        db.session.add(payment)
        db.session.flush()
        return payment

    def invoice(
        self,
        customer: Customer,
        day: dt.date,
        *,
        kind: str = "invoice",
        payment: Payment | None = None,
        corrects: Invoice | None = None,
        total_minor: int = 21894,
    ) -> Invoice:
        self.seq += 1
        series = {"invoice": "FV", "credit_note": "FVKR", "correction": "FVK"}[kind]
        number = f"{series}/{day.year}/{self.seq:06d}"
        at = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
        invoice = Invoice(
            public_id=f"i-{customer.name}-{self.seq}",
            account_id=customer.account_id,
            seller_key="PL5260250274",
            series=series,
            year=day.year,
            seq=self.seq,
            number=number,
            kind=kind,
            corrects_id=corrects.id if corrects else None,
            payment_id=payment.id if payment else None,
            issue_date=day,
            sale_date=day,
            currency="PLN",
            language="pl",
            net_minor=total_minor,
            vat_minor=0,
            total_minor=total_minor,
            content={},
            xml=b"<rsm:CrossIndustryInvoice/>",
            created_at=at,
        )
        db.session.add(invoice)
        db.session.flush()
        db.session.add(InvoiceRendering(invoice_id=invoice.id, pdf=pdf_of(number), rendered_at=at))
        customer.invoices.append(invoice)
        return invoice

    def paid_invoices(self, customer: Customer, count: int, first: dt.date) -> None:
        """``count`` paid invoices, one a day from ``first``."""
        for n in range(count):
            day = first + dt.timedelta(days=n)
            at = dt.datetime.combine(day, dt.time(10), tzinfo=dt.UTC)
            self.invoice(customer, day, payment=self.payment(customer, at))


def login(app, customer: Customer):
    client = app.test_client()
    assert Auth(client).login(customer.email).status_code == 302
    return client


def numbers_on(html: str) -> list[str]:
    return re.findall(r'<th scope="row">(FV[A-Z]*/\d{4}/\d{6})', html)


@pytest.fixture
def mixed(app):
    """One customer with documents of 2025 and 2026 of every kind; another with its own."""
    books = Books()
    with app.app_context():
        mine, other = books.customer("mine"), books.customer("other")
        first = books.invoice(mine, dt.date(2025, 3, 1), payment=books.payment(mine, CONFIRMED))
        books.invoice(mine, dt.date(2025, 3, 2), kind="correction", corrects=first)
        second = books.invoice(mine, dt.date(2026, 2, 1), payment=books.payment(mine, CONFIRMED))
        books.invoice(mine, dt.date(2026, 2, 3), kind="credit_note", corrects=second)
        books.invoice(other, dt.date(2024, 5, 5), payment=books.payment(other, CONFIRMED))
        books.invoice(other, dt.date(2025, 5, 5), payment=books.payment(other, CONFIRMED))
        db.session.commit()
        return {
            "mine": mine,
            "other": other,
            "numbers": [i.number for i in mine.invoices],
            "other_numbers": [i.number for i in other.invoices],
        }


def test_the_list_filters_by_year_and_kind(app, mixed):
    client = login(app, mixed["mine"])
    n = mixed["numbers"]  # invoice 2025, its correction, invoice 2026, its credit note

    assert numbers_on(client.get("/invoices").get_data(as_text=True)) == n[::-1]
    assert numbers_on(client.get("/invoices?year=2025").get_data(as_text=True)) == [n[1], n[0]]
    page = client.get("/invoices?kind=credit_note").get_data(as_text=True)
    assert numbers_on(page) == [n[3]]
    assert "corrects " + n[2] in page  # the corrected invoice is named, though filtered out
    assert numbers_on(client.get("/invoices?year=2025&kind=correction").get_data(as_text=True)) == [
        n[1]
    ]
    empty = client.get("/invoices?year=2026&kind=correction")
    assert empty.status_code == 200
    assert "No documents match these filters." in empty.get_data(as_text=True)
    # The year's choices are the account's own years, not the other account's 2024.
    html = client.get("/invoices").get_data(as_text=True)
    assert re.findall(r'<option value="(\d{4})"', html) == ["2026", "2025"]


def test_a_chosen_year_offers_its_zip(app, mixed):
    client = login(app, mixed["mine"])
    assert "/invoices/year/2025.zip" in client.get("/invoices?year=2025").get_data(as_text=True)
    assert ".zip" not in client.get("/invoices").get_data(as_text=True)


@pytest.mark.parametrize(
    "query",
    [
        "year=abc",
        "year=20255",
        "year=1999",
        "kind=proforma",
        "page=-1",
        "page=0",
        "page=abc",
        "page=1.5",
        "page=%EF%BC%92",
        "year=2025&page=x",
    ],
)
def test_bad_parameters_get_a_clear_page(app, mixed, query):
    client = login(app, mixed["mine"])
    response = client.get(f"/invoices?{query}")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "This address asks for a year, kind of document or page that does not exist." in html
    assert numbers_on(html)  # the list is still there, the refused parameter dropped


def test_a_page_past_the_end_is_a_clear_404(app, mixed):
    client = login(app, mixed["mine"])
    for query in ["page=2", "page=99999", "year=2025&page=3"]:
        response = client.get(f"/invoices?{query}")
        html = response.get_data(as_text=True)
        assert response.status_code == 404, query
        assert "The list has no page" in html and "Back to the first page" in html


@pytest.fixture
def many(app):
    """120 invoices of 2026 (one a day), and 12 of another account."""
    books = Books()
    with app.app_context():
        big, small = books.customer("big"), books.customer("small")
        books.paid_invoices(big, 120, dt.date(2026, 1, 1))
        books.paid_invoices(small, 12, dt.date(2026, 1, 1))
        db.session.commit()
        return {"big": big, "small": small, "numbers": [i.number for i in big.invoices]}


def test_pages_of_50_newest_first_keep_the_filters(app, many):
    client = login(app, many["big"])
    newest_first = many["numbers"][::-1]

    first = client.get("/invoices?year=2026&kind=invoice").get_data(as_text=True)
    assert numbers_on(first) == newest_first[:50]
    assert 'rel="prev"' not in first
    next_url = re.search(r'href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    assert next_url == "/invoices?year=2026&kind=invoice&page=2"

    second = client.get(next_url).get_data(as_text=True)
    assert numbers_on(second) == newest_first[50:100]
    prev_url = re.search(r'href="([^"]+)" rel="prev"', second).group(1).replace("&amp;", "&")
    assert prev_url == "/invoices?year=2026&kind=invoice"

    last = client.get("/invoices?year=2026&kind=invoice&page=3").get_data(as_text=True)
    assert numbers_on(last) == newest_first[100:]
    assert 'rel="next"' not in last


def test_the_list_costs_the_same_statements_for_12_and_120_invoices(app, many):
    counts = {}
    for name in ("small", "big"):
        client = login(app, many[name])
        for query in ["", "?year=2026", "?year=2026&kind=invoice"]:
            assert client.get(f"/invoices{query}").status_code == 200  # warm
            with counting(app) as statements:
                assert client.get(f"/invoices{query}").status_code == 200
            counts[name, query] = len(statements)
    # The user's row, then the page's rows with the years of the filter (YEAR_LIST).
    assert set(counts.values()) == {2}, counts


def test_an_empty_page_of_the_list_still_offers_the_accounts_years(app, mixed):
    """The years ride with the page's rows; a page with none (a filter that matches
    nothing) asks for them on their own, so the year filter is still there."""
    client = login(app, mixed["mine"])
    page = client.get("/invoices?year=2026&kind=correction").get_data(as_text=True)
    assert "No documents match these filters." in page
    assert re.findall(r'<option value="(\d{4})"', page) == ["2026", "2025"]
    listed = client.get("/invoices").get_data(as_text=True)
    assert re.findall(r'<option value="(\d{4})"', listed) == ["2026", "2025"]


def test_a_year_downloads_as_one_zip_of_its_own_documents(app, mixed):
    client = login(app, mixed["mine"])
    n = mixed["numbers"]
    with app.app_context():
        # A note printed on the 2025 invoice: the ZIP carries the latest rendering.
        first = db.session.query(Invoice).filter_by(number=n[0]).one()
        db.session.add(
            InvoiceRendering(
                invoice_id=first.id, pdf=b"%PDF-1.7 with a note", rendered_at=CONFIRMED
            )
        )
        db.session.commit()

    response = client.get("/invoices/year/2025.zip")
    assert response.status_code == 200
    assert response.mimetype == "application/zip"
    assert 'filename="invoices-2025.zip"' in response.headers["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.get_data()))
    assert archive.testzip() is None
    assert archive.namelist() == [n[0].replace("/", "-") + ".pdf", n[1].replace("/", "-") + ".pdf"]
    assert archive.read(archive.namelist()[0]) == b"%PDF-1.7 with a note"
    assert archive.read(archive.namelist()[1]) == pdf_of(n[1])

    assert client.get("/invoices/year/2024.zip").status_code == 404  # only the other's 2024
    assert client.get("/invoices/year/2023.zip").status_code == 404
    assert client.get("/invoices/year/abc.zip").status_code == 404
    other = login(app, mixed["other"])
    theirs = zipfile.ZipFile(io.BytesIO(other.get("/invoices/year/2025.zip").get_data()))
    assert theirs.namelist() == [mixed["other_numbers"][1].replace("/", "-") + ".pdf"]


def test_the_zip_needs_a_login(app, mixed):
    response = app.test_client().get("/invoices/year/2025.zip")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_note_without_javascript_comes_back_to_the_page_and_filters_it_left(app, many):
    """The note link of a row on page 2 of a filtered list carries where the list was; its
    own page (no JavaScript) keeps it in the form, and Save and Cancel go back there."""
    client = login(app, many["big"])
    second = client.get("/invoices?year=2026&kind=invoice&page=2").get_data(as_text=True)
    link = re.search(r'<a href="(/invoices/[^"/]+/note\?[^"]+)"', second).group(1)
    link = link.replace("&amp;", "&")
    assert link.endswith("/note?year=2026&kind=invoice&page=2")
    public_id = link.split("/")[2]

    form = client.get(link).get_data(as_text=True)  # the note's own page
    for name, value in [("year", "2026"), ("kind", "invoice"), ("page", "2")]:
        assert f'<input type="hidden" name="{name}" value="{value}">' in form
    back = f"/invoices?year=2026&kind=invoice&page=2#invoice-{public_id}"
    assert f'href="{back.replace("&", "&amp;")}"' in form  # Cancel

    token = csrf_token(client, link)
    saved = client.post(
        f"/invoices/{public_id}/note",
        data={"csrf_token": token, "note": "", "year": "2026", "kind": "invoice", "page": "2"},
    )
    assert (saved.status_code, saved.headers["Location"]) == (303, back)
    row = client.get(f"/invoices/{public_id}/row?year=2026&page=2")  # Cancel's HTMX target
    assert row.headers["Location"] == f"/invoices?year=2026&page=2#invoice-{public_id}"


def test_a_note_form_drops_a_list_state_it_cannot_read(app, many):
    client = login(app, many["big"])
    public_id = re.search(
        r'href="/invoices/([^"/]+)/note"', client.get("/invoices").get_data(as_text=True)
    ).group(1)
    token = csrf_token(client, f"/invoices/{public_id}/note")
    saved = client.post(
        f"/invoices/{public_id}/note",
        data={"csrf_token": token, "note": "", "year": "//evil.example", "page": "x"},
    )
    assert saved.headers["Location"] == f"/invoices#invoice-{public_id}"


def test_the_rows_printed_in_python_escape_every_value_a_customer_wrote(app, mixed):
    """The list's rows are printed by invoices.RowPrinter, not by Jinja: a note's markup
    and quotes come out as text, short or folded (the first 79 characters and "…"), in
    the list, in the row HTMX swaps back (the note form's Cancel) and next to the note
    form. (A saved note's row: test_fuzz's script test, with a real invoice.)"""
    client = login(app, mixed["mine"])
    first, correction = mixed["mine"].invoices[0], mixed["mine"].invoices[1]
    short = """<b onclick="x">'PO' & co</b>"""
    long = "<i>" + "x" * 90 + "</i>"
    reissue = mixed["mine"].invoices[2]
    with app.app_context():
        db.session.get(Invoice, first.id).note = short
        db.session.get(Invoice, correction.id).note = long
        db.session.get(Invoice, reissue.id).corrects_id = first.id  # issued again (new buyer)
        db.session.commit()
    page = client.get("/invoices").get_data(as_text=True)
    assert "<b onclick" not in page and "<i>" not in page
    assert (
        '<span class="note-text">&lt;b onclick=&quot;x&quot;&gt;&#x27;PO&#x27; &amp; co'
        "&lt;/b&gt;</span>" in page
    )
    assert f'<span class="note-text">&lt;i&gt;{"x" * 76}…</span></summary>' in page
    assert f'<span class="note-text">&lt;i&gt;{"x" * 90}&lt;/i&gt;</span></details>' in page
    # The correction says what it corrects; both rows with a note offer the PDF as issued.
    assert f"{correction.number} <small>corrects {first.number}</small>" in page
    assert f"{reissue.number} <small>issued again for {first.number}</small>" in page
    assert page.count("/issued.pdf") == 2
    assert re.search(rf'<tr id="invoice-{first.public_id}">.*?Edit note</a>', page, re.S)

    htmx = {"HX-Request": "true"}
    form = client.get(f"/invoices/{first.public_id}/note", headers=htmx).get_data(as_text=True)
    assert form.startswith(f'<tr id="invoice-{first.public_id}">')
    assert "&lt;b onclick=" in form and "<b onclick" not in form  # in the textarea
    assert 'hx-post="/invoices/' in form and "Edit note</a>" not in form  # the form, no link
    row = client.get(f"/invoices/{first.public_id}/row", headers=htmx).get_data(as_text=True)
    assert row.startswith(f'<tr id="invoice-{first.public_id}">') and row in page  # Cancel


def test_the_printed_page_escapes_a_channels_title_and_says_why_it_is_empty(app):
    """invoices.list_content, the page around the rows: a national e-invoicing channel's
    title (a plugin's) is shown as text; the pager and the empty states are the list's."""
    from markupsafe import Markup

    from portal.web.helpers import ListPage
    from portal.web.invoices import Filters, list_content
    from portal.web.printing import Texts

    common = {
        "filters": Filters(year=2026),
        "error": None,
        "first_url": "/invoices",
    }
    with app.test_request_context(headers={"Accept-Language": "en"}):
        common["texts"] = Texts()
        full = str(
            list_content(
                rows=Markup("<tr><td>row</td></tr>\n"),
                einvoice_title='<script>"KSeF"</script>',
                years=[2026, 2025],
                paging=ListPage(2, 50),
                previous_url="/invoices?year=2026",
                next_url="/invoices?year=2026&page=3",
                **common,
            )
        )
        empty = str(
            list_content(
                rows=Markup(""),
                einvoice_title="",
                years=[],
                paging=ListPage(1, 50),
                previous_url=None,
                next_url=None,
                **common,
            )
        )
    assert "<script>" not in full and "&lt;script&gt;&#34;KSeF&#34;&lt;/script&gt;" in full
    assert '<option value="2026" selected>2026</option>' in full
    assert 'href="/invoices/year/2026.zip" download>' in full  # the chosen year's ZIP
    assert 'rel="prev"' in full and "page=3" in full and "Page 2" in full
    assert "<tr><td>row</td></tr>" in full
    assert "No invoices yet" in empty and "<form" not in empty and "pager" not in empty
