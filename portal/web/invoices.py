"""Invoices (R11, R13): the list (filtered by year and kind, 50 a page), downloads as
stored (one document, or a year's as a ZIP), notes printed on a customer copy (the issued
document never changes; it stays downloadable as issued)."""

from __future__ import annotations

import functools
import html
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    request,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext, lazy_gettext
from flask_login import current_user, login_required
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup, escape
from sqlalchemy import Select, String, bindparam, cast, func, select
from sqlalchemy.orm import aliased

from portal.infra import audit
from portal.infra.extensions import db, htmx, limiter
from portal.infra.i18n import current_language
from portal.infra.models import (
    Account,
    EInvoiceSubmission,
    Invoice,
    InvoiceKind,
    InvoiceRendering,
    Payment,
    latest_pdf,
    utcnow,
)
from portal.rules import einvoicing, invoicing, refunds
from portal.rules.refunds import offer
from portal.web import htmx_util
from portal.web import refunds as refund_pages
from portal.web.copy_cache import copy_cache, etag_of
from portal.web.helpers import ListPage, echoed, format_day, format_minor, list_page, path_for
from portal.web.printing import Texts, pager
from portal.web.read_only import read, read_only
from portal.web.session_user import along_with_user, current_account, narrow_user

bp = Blueprint("invoices", __name__, url_prefix="/invoices")

# One query: the number and the latest rendering of the account's own invoice. Built once
# per process, as building it cost a twentieth of the download. (The stack's floor for a PDF
# download, scripts/bench_floor.py, is this query and its bytes.)
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

# One narrow query: what decides the bytes of the copy the customer downloads (the number,
# the latest rendering, which never changes once stored, and the submission to a national
# e-invoicing channel); no bytes. The key of portal/web/copy_cache.py. It rides with the
# user's row (along_with_user), joined on the user's account: someone else's invoice is
# not found.
COPY_FACTS = (
    select(
        Invoice.account_id,
        Invoice.number,
        InvoiceRendering.id.label("rendering_id"),
        EInvoiceSubmission.channel,
        EInvoiceSubmission.state,
        EInvoiceSubmission.national_number,
        EInvoiceSubmission.assigned_at,
        EInvoiceSubmission.offline,
        EInvoiceSubmission.payload_hash,
    )
    .join(InvoiceRendering, InvoiceRendering.invoice_id == Invoice.id)
    .outerjoin(EInvoiceSubmission, EInvoiceSubmission.invoice_id == Invoice.id)
    .where(Invoice.public_id == bindparam("public_id"))
    .order_by(InvoiceRendering.id.desc())
    .limit(1)
)
RENDERING_PDF = select(InvoiceRendering.pdf).where(InvoiceRendering.id == bindparam("id"))

# The years the account has invoices in, newest first, one index lookup per year (a "skip
# scan" down ix_invoice_account_year): a GROUP BY read every invoice of the account, 3 ms
# for 12,000 (the list's cost grew with the data).
_YEARS = select(func.max(Invoice.year).label("year")).where(
    Invoice.account_id == bindparam("account_id")
)
_YEARS_CTE = _YEARS.cte("years", recursive=True)
_EARLIER = aliased(Invoice)
_YEARS_CTE = _YEARS_CTE.union_all(
    select(
        select(func.max(_EARLIER.year))
        .where(_EARLIER.account_id == bindparam("account_id"), _EARLIER.year < _YEARS_CTE.c.year)
        .scalar_subquery()
    ).where(_YEARS_CTE.c.year.is_not(None))
)
_HAS_YEAR = _YEARS_CTE.c.year.is_not(None)
YEARS = select(_YEARS_CTE.c.year).where(_HAS_YEAR)
# The same years as one text ("2026,2025"), a column of every row of a page of the list:
# uncorrelated, it runs once, and saves the page a round trip (its own statement, YEARS, is
# left for an empty page).
YEAR_LIST = (
    select(func.aggregate_strings(cast(_YEARS_CTE.c.year, String), ","))
    .where(_HAS_YEAR)
    .scalar_subquery()
)


# What a row of the list reads, in this order (list_rows reads them by position); a note's
# response passes its Invoice as such a row (list_row).
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


def einvoice_texts(invoice_ids: list[int]) -> dict[int, str]:
    """What the list says of each invoice's way through KSeF (one query for the page)."""
    if not einvoicing.channels():
        return {}
    texts = {}
    titles = {name: c.title or name for name, c in einvoicing.channels().items()}
    for invoice_id, row in einvoicing.marks(invoice_ids).items():
        if row.channel is None:
            continue
        system = titles.get(row.channel, row.channel)
        if row.national_number:
            texts[invoice_id] = row.national_number  # under the column's "KSeF"
            if row.assigned_at is not None:
                texts[invoice_id] += " · " + format_day(
                    invoicing.local_today(row.assigned_at), current_language()
                )
        elif row.state == "rejected":
            texts[invoice_id] = gettext("Refused by %(system)s", system=system)
        else:
            texts[invoice_id] = gettext("Waiting for %(system)s", system=system)
    return texts


def list_row(invoice: Invoice) -> tuple[Any, ...]:
    """An invoice as a row of LIST_COLUMNS (for :class:`RowPrinter`)."""
    return tuple(getattr(invoice, column.key) for column in LIST_COLUMNS)


class RowPrinter:
    """The list's rows as HTML, printed in Python straight from the rows of LIST_COLUMNS,
    rather than formatted into objects and placed by a Jinja loop (issue 26: a page of 50
    spent a fifth of its time in the loop's lookups and per-value escaping, and the list's
    cost grew with its rows). Every value is escaped here, by ``html.escape``, once; what is
    the same for every row (translated texts, the refund link, the list's query) is escaped
    once per page. The row whose note is being edited takes its form, rendered by
    ``invoices/_note_form.html``, as ``note_form``."""

    def __init__(
        self,
        text: Mapping[str, str],
        list_query: str,
        einvoice: bool,
        refundable: Payment | None,
        refund_url: str | None,
        texts: Texts,
    ) -> None:
        e = html.escape
        self.gettext = gettext = texts.plain  # escaped here, as every value
        self.language = texts.language
        self.text = {key: e(value) for key, value in text.items()}
        self.status = {
            "invoice": e(gettext("Paid")),
            "correction": e(gettext("Correcting invoice")),
            "credit_note": e(gettext("Credit note")),
        }
        self.base = e(path_for("invoices.page") + "/")
        self.query = e(list_query)
        self.einvoice = einvoice  # the national e-invoicing column (KSeF), when installed
        self.refund_payment = refundable.id if refundable is not None else None  # R14
        self.refund_link = (
            f' · <a href="{e(refund_url)}">{self.text["refund"]}</a>' if refund_url else ""
        )

    def __call__(
        self,
        invoices: Iterable[Sequence[Any]],
        numbers: Mapping[int, str],
        einvoices: Mapping[int, str],
        editing_id: str | None = None,
        note_form: Markup | None = None,
    ) -> Markup:
        """The rows of ``invoices`` (rows whose first columns are LIST_COLUMNS, read by
        position: by name, ten columns cost a row as much as the rest of it); ``numbers``:
        the number of each invoice a row corrects; ``einvoices``: :func:`einvoice_texts`."""
        e, text, status, base, query = html.escape, self.text, self.status, self.base, self.query
        amounts: dict[tuple[int, str], str] = {}  # a renewal's amount repeats down the list
        out = []
        for (
            invoice_id,
            public_id,
            number,
            kind,
            corrects_id,
            payment_id,
            day,
            currency,
            total,
            note,
            *_,
        ) in invoices:
            url = base + e(public_id)
            number = e(number)
            if corrects_id:
                corrects = numbers.get(corrects_id, "")
                said = (
                    self.gettext("issued again for %(number)s", number=corrects)
                    if kind == "invoice"  # an invoice issued again for another buyer
                    else self.gettext("corrects %(number)s", number=corrects)
                )
                number += f" <small>{e(said)}</small>"  # a space: read apart, not run on
            # A credit note's amounts are the sums credited: the list shows them as money back.
            signed = -total if kind == "credit_note" else total
            amount = amounts.get((signed, currency))
            if amount is None:
                amount = e(format_minor(signed, currency, self.language))
                amounts[signed, currency] = amount
            links = f'<a href="{url}.pdf">PDF</a> · <a href="{url}.xml">XML</a>'
            if note:
                links += f' · <a href="{url}/issued.pdf">{text["issued_pdf"]}</a>'
            if self.refund_payment is not None and payment_id == self.refund_payment:
                if kind == "invoice":  # the payment's invoice, not its corrections
                    links += self.refund_link
            if editing_id == public_id and note_form is not None:
                cell = str(note_form)  # HTML already (a Markup's += would escape what follows)
            else:
                cell = ""
                if note and len(note) > 80:  # its first 79 characters; the rest unfolds
                    cell = (
                        f'<details class="note-long"><summary><span class="note-text">'
                        f"{e(note[:79])}…</span></summary>"
                        f'<span class="note-text">{e(note)}</span></details>'
                    )
                elif note:
                    cell = f'<span class="note-text">{e(note)}</span> '
                form = f"{url}/note{query}"
                cell += (
                    f'<a href="{form}" hx-get="{form}" hx-target="closest tr" '
                    f'hx-swap="outerHTML">{text["edit_note"] if note else text["add_note"]}</a>'
                )
            einvoice = ""
            if self.einvoice:
                einvoice = f'<td class="einvoice">{e(einvoices.get(invoice_id) or "")}</td>'
            out.append(
                f'<tr id="invoice-{e(public_id)}">\n<th scope="row">{number}</th>'
                f'<td>{e(format_day(day, self.language))}</td><td class="num">{amount}</td>'
                f"<td>{status.get(kind, '')}</td><td>{links}</td>"
                f'<td class="note">{cell}</td>{einvoice}</tr>\n'
            )
        return Markup("".join(out))


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


#: The kinds a customer filters the list by, in the order of the filter's choices.
KIND_NAMES = {
    InvoiceKind.INVOICE.value: lazy_gettext("Invoices"),
    InvoiceKind.CREDIT_NOTE.value: lazy_gettext("Credit notes"),
    InvoiceKind.CORRECTION.value: lazy_gettext("Correcting invoices"),
}
YEAR = re.compile(r"^[0-9]{4}$")
CORRECTED = aliased(Invoice)


class Filters(NamedTuple):
    year: int | None = None
    kind: str | None = None

    def args(self) -> dict[str, Any]:
        """The filters as the list's GET parameters (none for "all")."""
        return {name: value for name, value in self._asdict().items() if value is not None}


def parse_filters(args: Mapping[str, str]) -> tuple[Filters, bool]:
    """The filters of the list's GET parameters, and whether one of them was refused (then
    it is dropped: the list shows all years or all kinds)."""
    refused = False
    year_text = args.get("year", "").strip()
    year = None
    if year_text:
        if YEAR.match(year_text) and 2000 <= int(year_text) <= 9999:
            year = int(year_text)
        else:
            refused = True
    kind = args.get("kind", "").strip() or None
    if kind is not None and kind not in KIND_NAMES:
        kind, refused = None, True
    return Filters(year, kind), refused


def list_state(args: Mapping[str, str]) -> dict[str, Any]:
    """Where in the list a customer is (its filters and page, each only when valid): a note
    saved or cancelled without JavaScript goes back there, not to the first page."""
    filters, refused = parse_filters(args)
    paging = list_page(args)
    state = {} if refused else filters.args()
    if paging.number > 1 and not paging.refused:
        state["page"] = paging.number
    return state


@bp.get("")
@login_required
@read_only
@narrow_user
def page() -> ResponseReturnValue:
    """The list needs the account's id only: the account itself is loaded when a refund may
    be offered (one paid package payment), which a page seldom needs."""
    if current_user.account_id is None:
        abort(404)
    return _list_page(current_user.account_id)


@functools.cache
def list_statement(by_year: bool, by_kind: bool) -> Select[*tuple[Any, ...]]:
    """A page of the list, newest first, built once per filter combination.

    Plain rows of the columns the list shows, not ORM instances: building 120 of them, each
    with its two deferred columns, cost more than the query. The number of the invoice a
    correction corrects comes with it (it may be on another page), and so does how many paid
    package payments the account has (the refund offer, R14, needs exactly one), and the
    years of its invoices (the year filter: YEAR_LIST).
    """
    stmt = (
        select(
            *LIST_COLUMNS,
            CORRECTED.number.label("corrects_number"),
            refunds.FIRST_PAID_PACKAGE_COUNT.label("first_paid"),
            YEAR_LIST.label("years"),
        )
        .outerjoin(CORRECTED, CORRECTED.id == Invoice.corrects_id)
        .where(Invoice.account_id == bindparam("account_id"))
    )
    if by_year:
        stmt = stmt.where(Invoice.year == bindparam("year"))
    if by_kind:
        stmt = stmt.where(Invoice.kind == bindparam("kind"))
    return stmt.order_by(Invoice.id.desc()).offset(bindparam("offset")).limit(bindparam("limit"))


def _list_page(account_id: int) -> Response:
    filters, refused = parse_filters(request.args)
    paging = list_page(request.args)
    found = read(
        list_statement(filters.year is not None, filters.kind is not None),
        {
            "account_id": account_id,
            "year": filters.year,
            "kind": filters.kind,
            "offset": paging.offset,
            "limit": paging.size + 1,
        },
    ).all()
    invoices = found[: paging.size]
    numbers = {i.corrects_id: i.corrects_number for i in invoices if i.corrects_id}
    if found:  # the years came with the page's rows (YEAR_LIST)
        years = sorted((int(year) for year in found[0].years.split(",")), reverse=True)
    else:
        years = list(read(YEARS, {"account_id": account_id}).scalars())
    # Only an account with exactly one paid package payment can be offered a refund (R14).
    first_paid = invoices and invoices[0].first_paid == 1
    refundable = refund_offer(current_account()) if first_paid else None
    status = 200
    error = None
    if refused or paging.refused:
        status = 400
        error = gettext(
            "This address asks for a year, kind of document or page that does not exist. "
            "Choose from the lists below."
        )
    elif not invoices and paging.number > 1:
        status = 404
        error = gettext("The list has no page %(num)d.", num=paging.number)

    def page_url(number: int) -> str:
        args = filters.args()
        if number > 1:
            args["page"] = number
        return url_for("invoices.page", **args)

    texts = Texts()  # the page's translations, looked up once for its rows and the rest
    rows = row_context(list_state(request.args), refundable, note_form=False, texts=texts)
    content = list_content(
        texts=texts,
        rows=rows["row_html"](invoices, numbers, einvoice_texts([i[0] for i in invoices])),
        einvoice_title=rows["einvoice_title"],
        filters=filters,
        years=years,
        error=error,
        paging=paging,
        previous_url=page_url(paging.number - 1) if paging.number > 1 else None,
        next_url=page_url(paging.number + 1) if len(found) > paging.size else None,
        first_url=page_url(1),
    )
    return htmx_util.render("invoices/page.html", "invoices/page.html", status, content=content)


def list_content(
    *,
    texts: Texts,
    rows: Markup,
    einvoice_title: str,
    filters: Filters,
    years: list[int],
    error: str | None,
    paging: ListPage,
    previous_url: str | None,
    next_url: str | None,
    first_url: str,
) -> Markup:
    """The list's page below its title, printed in Python as its rows are (a template
    spent a sixth of the page on its form, headings and pager): the filters (a year and a
    kind of document, with the year's ZIP), the table of ``rows`` (RowPrinter's), the
    pager; or why there is nothing to show. Every value is escaped here, once."""
    t = texts
    _, e = t.gettext, escape
    intro = _(
        "Here you will find all your invoices. Each one is also e-mailed to the address in "
        "Billing information."
    )
    proforma = _(
        "We do not issue proforma invoices: the invoice is issued when the payment is "
        "confirmed and appears here at once."
    )
    heading = _("Invoices")
    out = [
        f"<hgroup>\n  <h1>{heading}</h1>\n  <p>{intro}</p>\n</hgroup>\n"
        f'<p class="flash" role="note">{proforma}</p>\n'
    ]
    page_path = path_for("invoices.page")
    if years:
        year_label, all_years, kind_label = _("Year"), _("All years"), _("Documents")
        all_kinds, show = _("All documents"), _("Show")
        year_options = "".join(
            f'<option value="{year}"{" selected" if year == filters.year else ""}>{year}</option>'
            for year in years
        )
        kind_options = "".join(
            f'<option value="{e(kind)}"{" selected" if kind == filters.kind else ""}>'
            f"{e(name)}</option>"
            for kind, name in KIND_NAMES.items()
        )
        out.append(
            f'<form class="list-filters" method="get" action="{page_path}" role="search">\n'
            f'  <label for="filter-year">{year_label}\n'
            f'    <select id="filter-year" name="year">\n'
            f'      <option value="">{all_years}</option>\n      {year_options}\n'
            "    </select>\n  </label>\n"
            f'  <label for="filter-kind">{kind_label}\n'
            f'    <select id="filter-kind" name="kind">\n'
            f'      <option value="">{all_kinds}</option>\n      {kind_options}\n'
            "    </select>\n  </label>\n"
            f'  <button type="submit" class="secondary">{show}</button>\n'
        )
        if filters.year is not None and filters.year in years:
            zip_url = url_for("invoices.year_zip", year=filters.year)
            download = _("Download all documents of %(year)s (ZIP)", year=filters.year)
            out.append(
                f'  <a role="button" class="outline" href="{e(zip_url)}" download>{download}</a>\n'
            )
        out.append("</form>\n")
    if error:
        back = ""
        if paging.number > 1:
            first = _("Back to the first page")
            back = f' <a href="{e(first_url)}">{first}</a>'
        out.append(f'<p class="flash flash-error" role="alert">{e(error)}{back}</p>\n')
    if rows:
        headings = [
            _("Number"),
            _("Date"),
            _("Amount"),
            _("Status"),
            _("Download"),
            _("Note"),
        ]
        numeric = ' class="num"'  # the amounts' column
        cells = "".join(
            f'<th scope="col"{numeric if i == 2 else ""}>{h}</th>' for i, h in enumerate(headings)
        )
        if einvoice_title:
            cells += f'<th scope="col">{e(einvoice_title)}</th>'
        out.append(
            '<div class="overflow-auto">\n<table class="invoices">\n'
            f"  <thead>\n    <tr>{cells}</tr>\n  </thead>\n  <tbody>\n{rows}  </tbody>\n"
            "</table>\n</div>\n"
        )
        out.append(pager(paging, previous_url, next_url, t))
    elif years:
        if not error:
            none_match = _("No documents match these filters.")
            out.append(f"<p>{none_match}</p>\n")
    else:
        none_yet = _("No invoices yet: the first one is issued with your first payment.")
        out.append(f"<p>{none_yet}</p>\n")
    history = _("Payment history")
    every = _("every payment, refund and failed attempt, with the method used.")
    out.append(f'<p><a href="{path_for("history.page")}">{history}</a>: {every}</p>\n')
    return Markup("".join(out))


def row_context(
    state: Mapping[str, Any],
    refundable: Payment | None,
    *,
    note_form: bool = True,
    texts: Texts | None = None,
) -> dict[str, Any]:
    """What every row of the list shows alike, translated and built once per page rather
    than once per row (a list of 120 invoices spent most of its time here). ``state``: the
    list's filters and page (:func:`list_state`), which the note form carries back;
    ``refundable``: the payment a refund may be asked for (its invoice's row links to it).
    ``note_form``: also what the note form needs (its texts, token and links); the list's
    page shows no form, so it does without. ``texts``: the page's, when it has them."""
    texts = texts or Texts()
    gettext = texts.plain
    row_text = {
        "refund": gettext("Request refund"),
        "add_note": gettext("Add note"),
        "edit_note": gettext("Edit note"),
        "issued_pdf": gettext("PDF as issued"),
    }
    list_query = f"?{urlencode(state)}" if state else ""
    refund_url = (
        url_for("refunds.confirm_page", public_id=refundable.public_id) if refundable else None
    )
    # A column for the national e-invoicing channel (KSeF) when one is installed.
    einvoice_title = ", ".join(c.title or c.name for c in einvoicing.channels().values())
    printer = RowPrinter(row_text, list_query, bool(einvoice_title), refundable, refund_url, texts)
    context = {"row_html": printer, "einvoice_title": einvoice_title}
    if not note_form:
        return context
    row_text |= {
        "cancel": gettext("Cancel"),
        "note_label": gettext(
            "Note printed on your copy of this invoice (at most %(num)d characters)",
            num=invoicing.NOTE_LIMIT,
        ),
        "carry_over": gettext("Also print it on future invoices"),
        "save_note": gettext("Save note"),
    }
    return context | {
        "row_text": row_text,
        "invoices_url": path_for("invoices.page"),
        "list_state": state,
        "list_query": list_query,
        "list_url": url_for("invoices.page", **state),
        # The note form's token (Flask-WTF checks it against the session).
        "row_csrf_token": generate_csrf(),
    }


def refund_offer(account: Account) -> Payment | None:
    """The one payment a refund may be asked for (R14), looked up once per page."""
    return offer(account, refund_pages.now())


def _download(body: bytes, filename: str, mimetype: str, etag: str | None = None) -> Response:
    """The document, revalidated on every download: a note added since, or a rendering made
    again, must reach the customer (a cached copy would hide it); an unchanged one costs a 304.
    """
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-cache"
    response.set_etag(etag or etag_of(body))
    response.make_conditional(request)
    return response


@bp.get("/<public_id>.pdf")
@login_required
@read_only
@along_with_user(COPY_FACTS)
def pdf(public_id: str) -> ResponseReturnValue:
    if current_user.account_id is None:
        abort(404)
    facts = current_user.along  # read with the user, in the same statement
    if facts is None:  # someone else's (a 404), or its documents are not stored yet
        return _copy_the_long_way(public_id)
    number, rendering_id = facts[1], facts[2]
    stamped = bool(einvoicing.channels())
    # The submission decides the copy only when a channel stamps it (KSeF's number, offline).
    key = tuple(facts[2:]) if stamped else rendering_id
    cache = copy_cache()
    found = cache.get(key)
    if found is None:
        stored = db.session.scalar(RENDERING_PDF, {"id": rendering_id})
        if stored is None:  # a note saved between the two statements replaced it
            return _copy_the_long_way(public_id)
        body = einvoicing.customer_copy(_own(public_id), bytes(stored)) if stamped else stored
        found = cache.put(key, bytes(body))
    filename = number.replace("/", "-") + ".pdf"
    return _download(found.body, filename, "application/pdf", found.etag)


def _copy_the_long_way(public_id: str) -> Response:
    invoice = _own(public_id)
    body, _xml = invoicing.documents(invoice)
    body = einvoicing.customer_copy(invoice, body)
    return _download(body, invoice.number.replace("/", "-") + ".pdf", "application/pdf")


@bp.get("/<public_id>/issued.pdf")
@login_required
@read_only
def issued_pdf(public_id: str) -> ResponseReturnValue:
    """The PDF exactly as issued and sent, without a note saved since (that is on the
    customer copy the plain download gives)."""
    invoice = _own(public_id)
    body = invoicing.issued_pdf(invoice)
    return _download(body, invoice.number.replace("/", "-") + ".pdf", "application/pdf")


@bp.get("/<public_id>.xml")
@login_required
@read_only
@narrow_user
def xml(public_id: str) -> ResponseReturnValue:
    invoice = _own(public_id)
    _pdf, body = invoicing.documents(invoice)
    return _download(body, invoice.number.replace("/", "-") + ".xml", "application/xml")


def safe_filename(number: str, suffix: str) -> str:
    """A document's file name from its number: ``FV/2026/000012`` -> ``FV-2026-000012.pdf``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", number).strip(".-") + suffix


class _Chunks:
    """A write-only file whose bytes are taken away as they come: ``zipfile`` writes the
    archive into it and the response sends each document's part as soon as it is written."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.written = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.written += len(data)
        return len(data)

    def tell(self) -> int:
        return self.written

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def _year_archive(documents: list[tuple[int, str, str]], year: int) -> Iterator[bytes]:
    """The ZIP of ``documents`` ((id, number, public id)), one document in memory at a time."""
    out = _Chunks()
    # PDFs are compressed inside already: stored as they are, the archive costs no CPU.
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for invoice_id, number, public_id in documents:
            body = latest_pdf(invoice_id)
            if body is None:  # numbered but not rendered yet: rendered as a download is
                body, _xml = invoicing.documents(_own(public_id))
            archive.writestr(zipfile.ZipInfo(safe_filename(number, ".pdf"), _zip_time(year)), body)
            yield out.take()
    yield out.take()


def _zip_time(year: int) -> tuple[int, int, int, int, int, int]:
    """Every entry's timestamp: the archive of a year is the same bytes on every download."""
    return (year, 1, 1, 0, 0, 0)


@bp.get("/year/<int:year>.zip")
@login_required
@read_only
def year_zip(year: int) -> ResponseReturnValue:
    """The PDFs of every document of the account issued in ``year`` (invoices, credit notes,
    corrections), named by their numbers; 404 for a year without any."""
    account = current_account()
    documents = [
        (row.id, row.number, row.public_id)
        for row in db.session.execute(
            select(Invoice.id, Invoice.number, Invoice.public_id)
            .where(Invoice.account_id == account.id, Invoice.year == year)
            .order_by(Invoice.id)
        )
    ]
    if not documents:
        abort(404)
    response = Response(
        stream_with_context(_year_archive(documents, year)), mimetype="application/zip"
    )
    response.headers["Content-Disposition"] = f'attachment; filename="invoices-{year}.zip"'
    response.headers["Cache-Control"] = "private, no-cache"
    return response


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
        return redirect(_back_to_list(invoice, request.args), 303)
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
    """Add or change the note: it is printed on a customer copy (the issued document stays
    as it was); the row is swapped. A refused note comes back in its form, as typed, with
    the reason."""
    invoice = _own(public_id)
    account = current_account()
    text = request.form.get("note", "")
    carry_over = request.form.get("carry_over") == "on"
    before = invoice.note
    try:
        invoicing.set_note(
            invoice=invoice, note=text, render_copy=invoicing.app_copy_renderer(), now=utcnow()
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
    if not htmx:  # without JavaScript: back to the list where it was, at this invoice
        return redirect(_back_to_list(invoice, request.form), 303)
    return _note_response(invoice, 200, editing=False)


def _back_to_list(invoice: Invoice, args: Mapping[str, str]) -> str:
    return url_for("invoices.page", **list_state(args), _anchor=f"invoice-{invoice.public_id}")


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
        rows=[list_row(invoice)],
        numbers=numbers,
        einvoices=einvoice_texts([invoice.id]),
        editing_id=invoice.public_id if editing else None,
        note_limit=invoicing.NOTE_LIMIT,
        refundable=refundable,
        **row_context(
            list_state(request.form if request.method == "POST" else request.args), refundable
        ),
        **form,
    )
