"""Invoices (R11, R13): the list, downloads as stored, notes printed on the invoice."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from flask import Blueprint, Response, abort, current_app, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from flask_login import current_user, login_required
from flask_wtf.csrf import generate_csrf
from sqlalchemy import bindparam, select

from portal.infra import audit
from portal.infra.extensions import db, htmx, limiter
from portal.infra.i18n import current_language
from portal.infra.models import Account, Invoice, InvoiceRendering, Payment, utcnow
from portal.rules import invoicing
from portal.rules.refunds import offer
from portal.web import htmx_util
from portal.web import refunds as refund_pages
from portal.web.account import current_account
from portal.web.helpers import echoed, format_day, format_minor
from portal.web.read_only import read_only
from portal.web.session_user import narrow_user

bp = Blueprint("invoices", __name__, url_prefix="/invoices")

# One query: the number and the latest rendering of the account's own invoice. Built once
# per process, as building it cost a twentieth of the download.
LATEST_PDF = (
    select(Invoice.number, InvoiceRendering.pdf)
    .join(InvoiceRendering, InvoiceRendering.invoice_id == Invoice.id)
    .where(
        Invoice.public_id == bindparam("public_id"),
        Invoice.account_id == bindparam("account_id"),
    )
    .order_by(InvoiceRendering.id.desc())
    .limit(1)
)

# What a row of the list reads (invoices/_rows.html); a note's response passes the Invoice.
LIST_COLUMNS = (
    Invoice.id,
    Invoice.public_id,
    Invoice.number,
    Invoice.kind,
    Invoice.corrects_id,
    Invoice.payment_id,
    Invoice.issue_date,
    Invoice.currency,
    Invoice.total_minor,
    Invoice.note,
)


class ListRow(NamedTuple):
    """One row of the list with its texts formatted in Python, once per row: the template
    only places them (a list of 120 spent its time in the per-row filters and lookups)."""

    public_id: str
    url: str  # /invoices/<public_id>; .pdf, .xml, /note and /row follow it
    number: str
    corrects: str | None  # the number of the invoice it corrects
    day: str
    amount: str
    status: str
    refundable: bool  # the invoice of the payment a refund may be asked for (R14)
    note: str | None


def list_rows(
    invoices: Iterable[Any], numbers: Mapping[int, str], refundable: Payment | None
) -> list[ListRow]:
    """The rows of ``invoices`` (Invoice objects or rows of LIST_COLUMNS)."""
    base = url_for("invoices.page") + "/"
    language = current_language()
    status = {
        "invoice": gettext("Paid"),
        "correction": gettext("Correcting invoice"),
        "credit_note": gettext("Credit note"),
    }
    refund_payment = refundable.id if refundable is not None else None
    return [
        ListRow(
            public_id=i.public_id,
            url=base + i.public_id,
            number=i.number,
            corrects=numbers.get(i.corrects_id, "") if i.corrects_id else None,
            day=format_day(i.issue_date, language),
            # A credit note's amounts are the sums credited: the list shows them as money back.
            amount=format_minor(
                -i.total_minor if i.kind == "credit_note" else i.total_minor, i.currency, language
            ),
            status=status.get(i.kind, ""),
            refundable=refund_payment is not None
            and i.payment_id == refund_payment
            and i.kind == "invoice",
            note=i.note,
        )
        for i in invoices
    ]


def _own(public_id: str) -> Invoice:
    """An invoice of the logged-in account; anyone else's is a 404."""
    if current_user.account_id is None:
        abort(404)
    invoice = db.session.scalar(
        select(Invoice).where(
            Invoice.public_id == public_id, Invoice.account_id == current_user.account_id
        )
    )
    if not isinstance(invoice, Invoice):
        abort(404)
    return invoice


@bp.get("")
@login_required
@read_only
def page() -> ResponseReturnValue:
    return _list_page(current_account())


def _list_page(account: Account) -> Response:
    # Plain rows of the columns the list shows, not ORM instances: building 120 of them,
    # each with its two deferred columns, cost more than the query.
    invoices = db.session.execute(
        select(*LIST_COLUMNS).where(Invoice.account_id == account.id).order_by(Invoice.id.desc())
    ).all()
    numbers = {i.id: i.number for i in invoices}
    refundable = refund_offer(account)
    return htmx_util.render(
        "invoices/page.html",
        "invoices/page.html",
        200,
        account=account,
        rows=list_rows(invoices, numbers, refundable),
        editing_id=None,
        note_limit=invoicing.NOTE_LIMIT,
        refundable=refundable,
        **row_context(),
    )


def row_context() -> dict[str, Any]:
    """What every row of the list shows alike, translated and built once per page rather
    than once per row (a list of 120 invoices spent most of its time here)."""
    return {
        "row_text": {
            "refund": gettext("Request refund"),
            "add_note": gettext("Add note"),
            "edit_note": gettext("Edit note"),
            "cancel": gettext("Cancel"),
            "note_label": gettext(
                "Note printed on this invoice (at most %(num)d characters)",
                num=invoicing.NOTE_LIMIT,
            ),
            "carry_over": gettext("Also print it on future invoices"),
            "save_note": gettext("Save note"),
        },
        "invoices_url": url_for("invoices.page"),
        # The note form's token (Flask-WTF checks it against the session).
        "row_csrf_token": generate_csrf(),
    }


def refund_offer(account: Account) -> Payment | None:
    """The one payment a refund may be asked for (R14), looked up once per page."""
    return offer(account, refund_pages.now())


def _download(body: bytes, filename: str, mimetype: str) -> Response:
    """The document, revalidated on every download: a note added since, or a rendering made
    again, must reach the customer (a cached copy would hide it); an unchanged one costs a 304.
    """
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-cache"
    response.set_etag(hashlib.sha256(body).hexdigest()[:32])
    response.make_conditional(request)
    return response


@bp.get("/<public_id>.pdf")
@login_required
@read_only
@narrow_user
def pdf(public_id: str) -> ResponseReturnValue:
    if current_user.account_id is None:
        abort(404)
    row = db.session.execute(
        LATEST_PDF, {"public_id": public_id, "account_id": current_user.account_id}
    ).one_or_none()
    if row is None:  # someone else's, or its documents are not stored yet
        invoice = _own(public_id)
        body, _xml = invoicing.documents(invoice)
        return _download(body, invoice.number.replace("/", "-") + ".pdf", "application/pdf")
    number, body = row
    return _download(bytes(body), number.replace("/", "-") + ".pdf", "application/pdf")


@bp.get("/<public_id>.xml")
@login_required
@read_only
@narrow_user
def xml(public_id: str) -> ResponseReturnValue:
    invoice = _own(public_id)
    _pdf, body = invoicing.documents(invoice)
    return _download(body, invoice.number.replace("/", "-") + ".xml", "application/xml")


@bp.get("/<public_id>/note")
@login_required
@read_only
def note_form(public_id: str) -> ResponseReturnValue:
    """The note form: in the invoice's row (HTMX) or on a page of its own."""
    invoice = _own(public_id)
    return _note_response(invoice, 200, editing=True, note_text=invoice.note)


@bp.get("/<public_id>/row")
@login_required
@read_only
def row(public_id: str) -> ResponseReturnValue:
    """The invoice's row as the list shows it (the note form's Cancel)."""
    invoice = _own(public_id)
    if not htmx:
        return redirect(url_for("invoices.page", _anchor=f"invoice-{invoice.public_id}"), 303)
    return _note_response(invoice, 200, editing=False)


def _note_limit() -> str:
    return str(current_app.config["NOTE_RATE_LIMIT"])


def _note_key() -> str:
    """Each signed-in user has their own allowance (several may share an address)."""
    return f"note-user-{current_user.get_id()}"


@bp.post("/<public_id>/note")
@login_required
@limiter.limit(_note_limit, key_func=_note_key)
def note(public_id: str) -> ResponseReturnValue:
    """Add or change the note: the invoice is re-rendered with it; the row is swapped. A
    refused note comes back in its form, as typed, with the reason."""
    invoice = _own(public_id)
    account = current_account()
    text = request.form.get("note", "")
    carry_over = request.form.get("carry_over") == "on"
    before = invoice.note
    try:
        invoicing.set_note(
            invoice=invoice, note=text, render=invoicing.app_renderer(), now=utcnow()
        )
    except invoicing.InvoiceRefused:
        error = gettext("A note can have at most %(num)d characters.", num=invoicing.NOTE_LIMIT)
        return _note_response(
            invoice,
            422,
            editing=True,
            note_text=echoed(text, invoicing.NOTE_LIMIT),
            note_error=error,
            carry_over=carry_over,
        )
    if invoice.note != before:
        audit.record_customer(
            current_user,
            "invoice_note",
            object_type="invoice",
            object_id=invoice.number,
            before={"note": before},
            after={"note": invoice.note},
        )
    if carry_over:
        account.invoice_note = invoice.note
        db.session.commit()
    if not htmx:  # without JavaScript: back to the whole list, at this invoice
        return redirect(url_for("invoices.page", _anchor=f"invoice-{invoice.public_id}"), 303)
    return _note_response(invoice, 200, editing=False)


def _note_response(invoice: Invoice, status: int, *, editing: bool, **form: Any) -> Response:
    """One invoice's row (HTMX), with its note form when ``editing``; without JavaScript
    the form has a page of its own (``invoices/note.html``)."""
    account = current_account()
    numbers = {invoice.id: invoice.number}
    if invoice.corrects_id is not None:
        corrected = db.session.get(Invoice, invoice.corrects_id)
        if corrected is not None:
            numbers[corrected.id] = corrected.number
    refundable = refund_offer(account)
    return htmx_util.render(
        "invoices/note.html",
        "invoices/_rows.html",
        status,
        account=account,
        invoice=invoice,
        rows=list_rows([invoice], numbers, refundable),
        editing_id=invoice.public_id if editing else None,
        note_limit=invoicing.NOTE_LIMIT,
        refundable=refundable,
        **row_context(),
        **form,
    )
