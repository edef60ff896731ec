"""Bad input (issue 10.3): hypothesis throws numbers, huge and binary strings, Unicode,
HTML/JS and SQL-looking text at every form and at the summary, note and billing
endpoints. Never a 500; a refusal is a 4xx (or the form again) with a message and writes
nothing. ``<script>`` in a note or a company name stays inert in HTML, PDF and e-mail.

Support requests and replies are fuzzed the same way, and so are the back office's
action forms as staff (extend, currency, refund, notes, support reply): never a 500, and
a refusal leaves no audit entry and no change. ``<script>`` in a support message stays
inert in the customer's thread, the staff thread and the e-mails.

Derandomized with modest example counts so CI is stable and quick.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader
from sqlalchemy import func, select

from portal import demo
from portal.infra.extensions import db
from portal.infra.models import (
    Account,
    AuditEntry,
    BillingChange,
    BillingInfo,
    Invoice,
    InvoiceRendering,
    Notice,
    Order,
    Payment,
    Subscription,
    SupportMessage,
    SupportThread,
    User,
)
from portal.rules import support
from tests.conftest import Auth, csrf_token
from tests.rules.test_payments import (
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


# -- support requests and replies ---------------------------------------------------------

SUPPORT_TABLES = (SupportThread, SupportMessage, Notice, AuditEntry)


def support_rows(app) -> tuple[Any, ...]:
    """Every support thread and message, with the outbox and the audit log counted."""
    with app.app_context():
        threads = tuple(
            (t.id, t.subject, t.status, t.updated_at)
            for t in db.session.scalars(select(SupportThread).order_by(SupportThread.id))
        )
        messages = tuple(
            (m.id, m.thread_id, m.body)
            for m in db.session.scalars(select(SupportMessage).order_by(SupportMessage.id))
        )
        counted = tuple(
            int(db.session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Notice, AuditEntry)
        )
        db.session.remove()
        return threads, messages, counted


def accepted(subject: str | None, body: str) -> bool:
    """What the support rules say about this input (subject None: a reply)."""
    try:
        if subject is not None:
            support.clean_subject(subject)
        support.clean(body, support.BODY_LIMIT)
    except support.SupportRefused:
        return False
    return True


def test_support_requests_never_fail_and_never_write_on_refusal(app, standard):
    token = csrf_token(standard, "/support")

    @FUZZ
    @given(data=fields(["subject", "body"]), htmx=st.booleans())
    def run(data: dict[str, str], htmx: bool) -> None:
        before = support_rows(app)
        headers = {"HX-Request": "true"} if htmx else {}
        response = standard.post("/support", data={"csrf_token": token, **data}, headers=headers)
        assert_handled(response, "/support")
        after = support_rows(app)
        if accepted(data.get("subject", ""), data.get("body", "")):
            assert response.status_code == (200 if htmx else 303), data
            assert len(after[0]) == len(before[0]) + 1 and len(after[1]) == len(before[1]) + 1
            subject = after[0][-1][1]
            assert subject == support.clean_subject(data.get("subject"))
        else:
            assert response.status_code == 422, (data, response.status_code)
            assert after == before, data

    run()


def test_support_replies_never_fail_and_never_write_on_refusal(app, standard):
    token = csrf_token(standard, "/support")
    opened = standard.post(
        "/support", data={"csrf_token": token, "subject": "Faktura", "body": "Pytanie"}
    )
    path = opened.headers["Location"]

    @FUZZ
    @given(data=fields(["body", "subject", "status"]), htmx=st.booleans())
    def run(data: dict[str, str], htmx: bool) -> None:
        before = support_rows(app)
        headers = {"HX-Request": "true"} if htmx else {}
        response = standard.post(path, data={"csrf_token": token, **data}, headers=headers)
        assert_handled(response, path)
        after = support_rows(app)
        assert after[0][0][1] == "Faktura"  # a reply never renames the thread
        if accepted(None, data.get("body", "")):
            assert response.status_code == (200 if htmx else 303), data
            assert after[1][-1][2] == support.clean(data.get("body"), support.BODY_LIMIT)
        else:
            assert response.status_code == 422, (data, response.status_code)
            assert after == before, data

    run()


# -- the back office's forms, as staff ----------------------------------------------------


def staff(app):
    client = app.test_client()
    assert Auth(client).login("admin@demo.example.com", demo.PASSWORD).status_code == 302
    return client


def standard_ids(app) -> dict[str, int]:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "standard@demo.example.com"))
        ids = {
            "sub": db.session.scalar(
                select(Subscription.id).where(Subscription.account_id == user.account_id)
            ),
            "payment": db.session.scalar(
                select(Payment.id).where(Payment.account_id == user.account_id)
            ),
            "thread": db.session.scalar(
                select(SupportThread.id).where(SupportThread.account_id == user.account_id)
            ),
        }
        db.session.remove()
        return ids


def back_office(app) -> tuple[Any, ...]:
    """What a staff action may change: subscriptions, payments, invoices, support, the
    audit log and the outbox."""
    with app.app_context():
        subs = tuple(
            tuple(getattr(sub, c.key) for c in sub.__mapper__.column_attrs)
            for sub in db.session.scalars(select(Subscription).order_by(Subscription.id))
        )
        paid = tuple(
            (p.id, p.status, p.refunded_minor)
            for p in db.session.scalars(select(Payment).order_by(Payment.id))
        )
        db.session.remove()
    return subs, paid, writes(app), support_rows(app)


def audited(app) -> int:
    with app.app_context():
        count = int(db.session.scalar(select(func.count()).select_from(AuditEntry)) or 0)
        db.session.remove()
        return count


def current(app, ids: dict[str, int]) -> dict[str, str]:
    """The versions the confirmation pages carry right now."""
    with app.app_context():
        sub = db.session.get(Subscription, ids["sub"])
        payment = db.session.get(Payment, ids["payment"])
        seen = {"version": str(sub.version), "refunded_seen": str(payment.refunded_minor)}
        db.session.remove()
        return seen


STAFF_FORMS: dict[str, tuple[str, dict[str, str], list[str]]] = {
    # action: (path template, a valid body, the fields fuzzed)
    "extend": ("/admin/actions/subscription/{sub}/extend", {"days": "3"}, ["days", "note"]),
    "currency": (
        "/admin/actions/subscription/{sub}/currency",
        {"currency": "EUR"},
        ["currency", "version"],
    ),
    "refund": (
        "/admin/actions/payment/{payment}/refund",
        {"amount": "1.23"},
        ["amount", "refunded_seen", "note"],
    ),
    "free": ("/admin/actions/subscription/{sub}/free", {}, ["version", "note"]),
    "reply": ("/admin/actions/thread/{thread}", {"body": "Dzień dobry"}, ["body"]),
}

# Huge exponents and absurd precision, on top of the usual nasties, for the amount.
AMOUNTS = st.sampled_from(
    ["1e999999999", "1e-999999999", "-0", "0.001", "1,23", " 1 234,50 ", "Infinity", "sNaN"]
)


@pytest.mark.parametrize("action", list(STAFF_FORMS))
def test_staff_action_forms_never_fail_and_never_write_on_refusal(
    app, standard, transfer24, action
):
    buy(app, standard, transfer24)  # a paid invoice to refund
    opened = standard.post(
        "/support",
        data={"csrf_token": csrf_token(standard, "/support"), "subject": "S", "body": "B"},
    )
    assert opened.status_code == 303
    ids = standard_ids(app)
    admin = staff(app)
    template, valid, names = STAFF_FORMS[action]
    path = template.format(**ids)
    token = csrf_token(admin, path)
    strategy = fields(names)
    if action == "refund":
        strategy = st.one_of(strategy, st.fixed_dictionaries({"amount": AMOUNTS}))
    successes = []

    @FUZZ
    @given(data=strategy)
    @example(data={"note": "zwrot\x00 \u202e", "body": "a\x00b"})  # PostgreSQL refuses NUL
    def run(data: dict[str, str]) -> None:
        before, entries = back_office(app), audited(app)
        body = {"csrf_token": token, **current(app, ids), **valid, **data}
        response = admin.post(path, data=body)
        assert_handled(response, path)
        if response.status_code == 302:  # done: exactly one audit entry says so
            assert audited(app) == entries + 1, data
            assert back_office(app) != before
            successes.append(data)
        else:
            assert response.status_code in (404, 422), (data, response.status_code)
            assert (back_office(app), audited(app)) == (before, entries), data

    run()
    # The valid body alone is accepted (unless a fuzzed success already used it up).
    response = admin.post(path, data={"csrf_token": token, **current(app, ids), **valid})
    assert successes or response.status_code == 302


STAFF_LISTS = [
    "accounts", "users", "subscriptions", "orders", "payments", "refunds", "invoices",
    "support", "vies", "audit",
]  # fmt: skip
LIST_PARAMS = ["search", "flt0_0", "flt1_3", "page", "sort", "desc", "page_size", "id", "url"]


def test_staff_lists_never_fail_on_a_hand_made_query_string(app, standard):
    """Searches, filters, paging, sorting and details ids as Flask-Admin reads them from
    the URL: never a 500 (PostgreSQL refuses a NUL, a negative offset, a huge page)."""
    admin = staff(app)

    @FUZZ
    @given(
        slug=st.sampled_from(STAFF_LISTS),
        details=st.booleans(),
        params=st.fixed_dictionaries({}, optional={name: text_value for name in LIST_PARAMS}),
    )
    @example(slug="accounts", details=False, params={"search": "a\x00b"})
    @example(slug="audit", details=False, params={"flt0_0": "a\x00b"})
    @example(slug="payments", details=False, params={"page": "-1"})
    @example(slug="accounts", details=False, params={"page": "9" * 20})
    @example(slug="accounts", details=True, params={"id": "abc"})
    @example(slug="users", details=True, params={"id": "\x00"})
    def run(slug: str, details: bool, params: dict[str, str]) -> None:
        before = back_office(app), audited(app)
        path = f"/admin/{slug}/" + ("details/" if details else "")
        response = admin.get(path, query_string=params)
        assert_handled(response, path)
        response.close()
        assert (back_office(app), audited(app)) == before, (path, params)

    run()


# -- <script> in support messages ---------------------------------------------------------


def test_script_in_a_support_message_is_inert_in_html_and_e_mail(app, standard):
    token = csrf_token(standard, "/support")
    opened = standard.post(
        "/support", data={"csrf_token": token, "subject": f"Pilne {SCRIPT}", "body": SCRIPT}
    )
    assert opened.status_code == 303
    path = opened.headers["Location"]
    reply = standard.post(path, data={"csrf_token": token, "body": f"Jeszcze {SCRIPT}"})
    assert reply.status_code == 303
    ids = standard_ids(app)
    admin = staff(app)
    thread = f"/admin/actions/thread/{ids['thread']}"
    answered = admin.post(
        thread, data={"csrf_token": csrf_token(admin, thread), "body": f"Staff {SCRIPT}"}
    )
    assert answered.status_code == 302
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "standard@demo.example.com"))
        account_id = user.account_id
        db.session.remove()
    pages = {
        "the customer's list": standard.get("/support"),
        "the customer's thread": standard.get(path),
        "the customer's thread (HTMX)": standard.get(path, headers={"HX-Request": "true"}),
        "the staff thread": admin.get(thread),
        "the staff list": admin.get("/admin/support/"),
        "the staff account page": admin.get(f"/admin/actions/account/{account_id}"),
    }
    for where, response in pages.items():
        assert response.status_code == 200, where
        body = response.get_data(as_text=True)
        assert "<script>alert" not in body, where
        assert "&lt;script&gt;alert" in body, where
    for where in ("the customer's thread", "the staff thread"):
        body = pages[where].get_data(as_text=True)
        assert body.count("&lt;script&gt;alert") >= 4, where  # subject and three messages
    # The e-mails (to staff twice, to the customer once) carry it as plain text.
    with app.app_context():
        from portal.infra import mail

        notices = db.session.scalars(
            select(Notice).where(Notice.template.in_(["support_staff", "support_reply"]))
        ).all()
        assert sorted(n.template for n in notices) == [
            "support_reply",
            "support_staff",
            "support_staff",
        ]
        for notice in notices:
            context = {k: mail.decode(v) for k, v in notice.context.items()}
            subject, text = mail.render(notice.template, "pl", **context)
            assert SCRIPT in text and "&lt;" not in text, notice.template  # not HTML-escaped
            assert "\n" not in subject
        db.session.remove()
    templates = Path(app.root_path).parent / "templates" / "email"
    assert {"support_staff.txt", "support_reply.txt"} <= {p.name for p in templates.iterdir()}
    assert sorted({p.suffix for p in templates.iterdir()}) == [".txt"]  # no HTML part


def test_support_messages_are_stored_as_written(app, standard):
    """A guard for the fuzzing's oracle: a message survives the round trip unchanged
    (Unicode, quotes, SQL-looking text), only control characters are dropped."""
    token = csrf_token(standard, "/support")
    body = 'Zażółć ‮ \'; DROP TABLE support_thread; -- "x" \x00\x07 koniec'
    response = standard.post(
        "/support", data={"csrf_token": token, "subject": "Zapytanie", "body": body}
    )
    assert response.status_code == 303
    with app.app_context():
        stored = db.session.scalar(select(SupportMessage.body))
        db.session.remove()
    assert stored == body.replace("\x00\x07", "")
