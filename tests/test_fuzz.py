"""Bad input (issue 10.3): hypothesis throws numbers, huge and binary strings, Unicode,
HTML/JS and SQL-looking text at every form and at the summary, note and billing
endpoints. Never a 500; a refusal is a 4xx (or the form again) with a message and writes
nothing. ``<script>`` in a note or a company name stays inert in HTML, PDF and e-mail.

Derandomized with modest example counts so CI is stable and quick. Support messages are
added once issue 8 lands (see docs/reliability.md).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import (
    Account,
    BillingChange,
    BillingInfo,
    Invoice,
    InvoiceRendering,
    Notice,
    Order,
    Payment,
    User,
)
from tests.conftest import csrf_token
from tests.test_payments import (
    back_from_bank,
    bank_token,
    config_overrides,
    place_and_pay,
    standard,
    transfer24,
)

__all__ = ["config_overrides", "standard", "transfer24"]  # fixtures reused

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

NASTY = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'; DROP TABLE invoice; --",
    "1 OR 1=1",
    "\x00\x01\x02",
    "\ud7ff\ufffe\uffff",
    "Zażółć gęślą jaźń",
    "‮evil",
    "x" * 100_000,
    "-1",
    "1e309",
    "NaN",
    "0x10",
    "9" * 40,
    "",
    " ",
]

text_value = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=300),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
)


def fields(names: list[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({}, optional={name: text_value for name in names})


def writes(app) -> tuple[int, ...]:
    with app.app_context():
        result = tuple(
            int(db.session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (
                Account,
                User,
                Order,
                Payment,
                Invoice,
                InvoiceRendering,
                BillingChange,
                Notice,
            )
        )
        db.session.remove()
        return result


def billing_row(app) -> tuple[Any, ...]:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "standard@demo.example.com"))
        info = db.session.scalar(
            select(BillingInfo).where(BillingInfo.account_id == user.account_id)
        )
        mapper = info.__mapper__
        row = tuple(getattr(info, c.key) for c in mapper.column_attrs)
        db.session.remove()
        return row


def assert_handled(response, path: str) -> None:
    assert response.status_code < 500, (path, response.status_code)
    if response.status_code >= 400:
        body = response.get_data(as_text=True)
        assert body.strip(), (path, response.status_code)  # a page or fragment that says why


# -- every form ---------------------------------------------------------------------------


BILLING = {
    "company_name": "Sklep Rowerowy Szprycha Sp. z o.o.",
    "street": "ul. Długa 5",
    "postcode": "80-831",
    "city": "Gdańsk",
    "country": "PL",
    "vat_number": "",
    "invoice_email": "faktury@szprycha.pl",
}
PACKAGE = {
    "package": "standard",
    "period": "month",
    "agents": "4",
    "conversations": "100",
    "currency": "PLN",
}
# Valid forms the fuzzed fields replace some fields of, so every field's check is reached.
BASES: dict[str, dict[str, str]] = {
    "/billing": BILLING,
    "/billing/vat-check": BILLING,
    "/package/summary": PACKAGE,
    "/package/edit": PACKAGE,
}

FORMS: dict[str, list[str]] = {
    "/package/summary": ["package", "period", "agents", "conversations", "currency", "provider"],
    "/package/edit": [
        "package",
        "period",
        "agents",
        "conversations",
        "currency",
        "provider",
        "action",
        "quote_digest",
        "idempotency_key",
    ],
    "/billing": [
        "company_name",
        "street",
        "postcode",
        "city",
        "country",
        "vat_number",
        "invoice_email",
        "apply_to_last_invoice",
        "action",
    ],
    "/billing/vat-check": ["country", "vat_number"],
    "/payment-methods/auto-renew": ["auto_renew"],
    "/payment-methods/new": ["provider"],
    "/language": ["language", "next"],
}


@pytest.mark.parametrize("path", list(FORMS))
def test_customer_forms_never_fail_and_never_write_on_refusal(app, standard, path):
    token = csrf_token(standard, "/package")
    baseline = writes(app)

    @FUZZ
    @given(data=fields(FORMS[path]), htmx=st.booleans())
    def run(data: dict[str, str], htmx: bool) -> None:
        before = writes(app), billing_row(app)
        headers = {"HX-Request": "true"} if htmx else {}
        body = {"csrf_token": token, **BASES.get(path, {}), **data}
        response = standard.post(path, data=body, headers=headers)
        assert_handled(response, path)
        refused = response.status_code >= 400 or (
            path == "/billing" and response.status_code == 200
        )
        if refused or path in ("/package/summary", "/billing/vat-check"):
            assert (writes(app), billing_row(app)) == before, (path, data)

    run()
    # Nothing fuzzed ever created an account, an order, a payment or an invoice.
    after = writes(app)
    assert after[:5] == baseline[:5]


@pytest.mark.parametrize("path", ["/signup", "/login"])
def test_public_forms_never_fail(app, client, path):
    token = csrf_token(client, path)
    names = ["company", "email", "password", "confirm"] if path == "/signup" else []
    names = names or ["email", "password", "next"]

    @FUZZ
    @given(data=fields(names))
    def run(data: dict[str, str]) -> None:
        before = writes(app)
        response = client.post(path, data={"csrf_token": token, **data})
        assert_handled(response, path)
        if response.status_code != 302:  # refused: the form again, nothing stored
            assert writes(app) == before, data

    run()


# -- the invoice note -----------------------------------------------------------------------


def buy(app, standard, transfer24) -> str:
    back_from_bank(standard, transfer24, bank_token(place_and_pay(standard, agents="5")))
    with app.app_context():
        public_id = db.session.scalar(select(Invoice.public_id))
        db.session.remove()
    return str(public_id)


def test_the_note_endpoint_never_fails(app, standard, transfer24):
    invoice = buy(app, standard, transfer24)
    token = csrf_token(standard, "/invoices")
    path = f"/invoices/{invoice}/note"

    @FUZZ
    @given(data=fields(["note", "carry_over"]), htmx=st.booleans())
    def run(data: dict[str, str], htmx: bool) -> None:
        with app.app_context():
            renderings = db.session.scalar(select(func.count()).select_from(InvoiceRendering))
            db.session.remove()
        headers = {"HX-Request": "true"} if htmx else {}
        response = standard.post(path, data={"csrf_token": token, **data}, headers=headers)
        assert_handled(response, path)
        if response.status_code >= 400:
            with app.app_context():
                count = db.session.scalar(select(func.count()).select_from(InvoiceRendering))
                db.session.remove()
            assert count == renderings, data

    run()


# -- <script> is inert everywhere ----------------------------------------------------------

SCRIPT = "<script>alert('x')</script>"


def test_script_in_a_note_and_company_name_is_inert_in_html_pdf_and_e_mail(
    app, standard, transfer24
):
    token = csrf_token(standard, "/billing")
    saved = standard.post(
        "/billing", data={"csrf_token": token, **BILLING, "company_name": f"ACME {SCRIPT}"}
    )
    assert saved.status_code == 303
    invoice = buy(app, standard, transfer24)
    note = standard.post(
        f"/invoices/{invoice}/note",
        data={"csrf_token": csrf_token(standard, "/invoices"), "note": f"PO 7 {SCRIPT}"},
    )
    assert note.status_code < 400
    for path in ["/billing", "/invoices", "/package"]:
        body = standard.get(path).get_data(as_text=True)
        assert "<script>alert" not in body, path
    assert "&lt;script&gt;alert" in standard.get("/invoices").get_data(as_text=True)
    pdf = standard.get(f"/invoices/{invoice}.pdf")
    reader = PdfReader(io.BytesIO(pdf.data))
    pdf.close()
    printed = " ".join(page.extract_text() for page in reader.pages)
    assert SCRIPT in printed  # shown as the text it is: a PDF runs no HTML
    assert printed.count("<script>") == 2  # the buyer's name and the note
    assert b"/JavaScript" not in pdf.data and b"/JS" not in pdf.data  # no PDF script at all
    with app.app_context():
        mail = db.session.scalar(select(Notice).where(Notice.template == "invoice"))
        assert mail is not None and mail.sent_at is not None
        db.session.remove()
    # E-mails are text/plain only (templates/email/*.txt, no HTML part): nothing in one
    # is markup, so nothing in one runs.
    templates = Path(app.root_path).parent / "templates" / "email"
    assert sorted({p.suffix for p in templates.iterdir()}) == [".txt"]
