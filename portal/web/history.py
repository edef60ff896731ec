"""Payment history: every payment attempt of the account and every refund, newest first,
50 a page, with the method used and the invoice or credit note of each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from flask import Blueprint, Response, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import format_time, gettext, lazy_gettext
from flask_login import login_required
from sqlalchemy import Select, String, case, literal, null, select, union_all
from sqlalchemy.orm import aliased

from portal.infra.extensions import db
from portal.infra.i18n import current_language
from portal.infra.models import (
    Account,
    Invoice,
    InvoiceKind,
    Order,
    Payment,
    PaymentMethod,
    PaymentStatus,
)
from portal.plugin_api.contracts import SavedMethod
from portal.web import htmx_util
from portal.web.helpers import format_day, format_minor, list_page
from portal.web.pay import describe_with, failure_message, offered
from portal.web.read_only import read_only
from portal.web.session_user import current_account

bp = Blueprint("history", __name__)

KIND_NAMES = {
    "charge": lazy_gettext("Payment"),
    "renewal": lazy_gettext("Renewal"),
    "refund": lazy_gettext("Refund"),
}
STATUS_NAMES = {
    PaymentStatus.PAID.value: lazy_gettext("Paid"),
    PaymentStatus.FAILED.value: lazy_gettext("Failed"),
    PaymentStatus.REFUNDED.value: lazy_gettext("Refunded"),
    PaymentStatus.PENDING.value: lazy_gettext("Pending"),
}

BADGES = {
    PaymentStatus.PAID.value: "badge-active",
    PaymentStatus.FAILED.value: "badge-suspended",
    PaymentStatus.PENDING.value: "badge-pending",
    PaymentStatus.REFUNDED.value: "",
}


def _payments(account_id: int) -> Select[*tuple[Any, ...]]:
    """The account's payment attempts, with their method and invoice."""
    return (
        select(
            Payment.created_at.label("at"),
            literal(0).label("source"),
            Payment.id.label("row_id"),
            case((Order.idempotency_key.like("renewal-%"), "renewal"), else_="charge").label(
                "kind"
            ),
            Payment.status.label("status"),
            Payment.amount_minor.label("amount_minor"),
            Payment.refunded_minor.label("refunded_minor"),
            Payment.currency.label("currency"),
            Payment.failure_code.label("failure_code"),
            Payment.provider.label("provider"),
            PaymentMethod.brand.label("brand"),
            PaymentMethod.last4.label("last4"),
            PaymentMethod.email.label("email"),
            Invoice.public_id.label("document_id"),
            Invoice.number.label("document_number"),
        )
        .outerjoin(Order, Order.id == Payment.order_id)
        .outerjoin(PaymentMethod, PaymentMethod.id == Payment.method_id)
        .outerjoin(Invoice, Invoice.payment_id == Payment.id)
        .where(Payment.account_id == account_id)
    )


def _refunds(account_id: int) -> Select[*tuple[Any, ...]]:
    """The account's refunds: its credit notes, with the payment and method they returned."""
    original = aliased(Invoice)
    return (
        select(
            Invoice.created_at.label("at"),
            literal(1).label("source"),
            Invoice.id.label("row_id"),
            literal("refund", String).label("kind"),
            literal(PaymentStatus.REFUNDED.value, String).label("status"),
            Invoice.total_minor.label("amount_minor"),
            literal(0).label("refunded_minor"),
            Invoice.currency.label("currency"),
            null().label("failure_code"),
            Payment.provider.label("provider"),
            PaymentMethod.brand.label("brand"),
            PaymentMethod.last4.label("last4"),
            PaymentMethod.email.label("email"),
            Invoice.public_id.label("document_id"),
            Invoice.number.label("document_number"),
        )
        .join(original, original.id == Invoice.corrects_id)
        .outerjoin(Payment, Payment.id == original.payment_id)
        .outerjoin(PaymentMethod, PaymentMethod.id == Payment.method_id)
        .where(Invoice.account_id == account_id, Invoice.kind == InvoiceKind.CREDIT_NOTE.value)
    )


class HistoryRow(NamedTuple):
    """One row of the page, its texts formatted once in Python."""

    day: str
    time: str
    kind: str
    amount: str
    status: str
    badge: str  # the badge's look (the classes My package uses for the same colours)
    reason: str | None  # why it failed or was refunded without being asked
    method: str
    document_url: str | None
    document_number: str | None


def _method(row: Any, language: str, labels: dict[str, str]) -> str:
    if row.brand:
        saved = SavedMethod(provider_ref="", brand=row.brand, last4=row.last4, email=row.email)
        return describe_with(row.provider or "", saved, language)
    # Paid on the provider's page: no saved method to name, the provider's label (a provider
    # switched off since, or whose label() fails, by its name).
    return labels.get(row.provider or "", str(row.provider or "—").title())


def _status(row: Any, language: str) -> tuple[str, str | None]:
    status = str(STATUS_NAMES.get(row.status, row.status))
    if row.kind == "refund":
        return status, None
    if row.status == PaymentStatus.FAILED.value:
        return status, failure_message(row.failure_code)
    if row.status == PaymentStatus.REFUNDED.value and row.failure_code:
        return status, failure_message(row.failure_code)  # refused brand, stale quote
    if row.status == PaymentStatus.PAID.value and row.refunded_minor:
        refunded = format_minor(row.refunded_minor, row.currency, language)
        return gettext("Paid, %(amount)s refunded", amount=refunded), None
    return status, None


def history_rows(rows: Sequence[Any]) -> list[HistoryRow]:
    language = current_language()
    base = url_for("invoices.page") + "/"
    labels = {choice.name: choice.label for choice in offered(None)}  # once per page
    result = []
    for row in rows:
        status, reason = _status(row, language)
        amount = -row.amount_minor if row.kind == "refund" else row.amount_minor
        result.append(
            HistoryRow(
                day=format_day(row.at, language=None),
                time=str(format_time(row.at, "short")),
                kind=str(KIND_NAMES.get(row.kind, row.kind)),
                amount=format_minor(amount, row.currency, language),
                status=status,
                badge=BADGES.get(row.status, ""),
                reason=reason,
                method=_method(row, language, labels),
                document_url=f"{base}{row.document_id}.pdf" if row.document_id else None,
                document_number=row.document_number,
            )
        )
    return result


@bp.get("/payments")
@login_required
@read_only
def page() -> ResponseReturnValue:
    return _page(current_account())


def _page(account: Account) -> Response:
    paging = list_page(request.args)
    both = union_all(_payments(account.id), _refunds(account.id)).subquery()
    found = db.session.execute(
        select(both)
        .order_by(both.c.at.desc(), both.c.source.desc(), both.c.row_id.desc())
        .offset(paging.offset)
        .limit(paging.size + 1)
    ).all()
    rows = found[: paging.size]
    status = 200
    error = None
    if paging.refused:
        status = 400
        error = gettext("This address asks for a page that does not exist.")
    elif not rows and paging.number > 1:
        status = 404
        error = gettext("The list has no page %(num)d.", num=paging.number)

    def page_url(number: int) -> str:
        args: dict[str, Any] = {"page": number} if number > 1 else {}
        return url_for("history.page", **args)

    return htmx_util.render(
        "history/page.html",
        "history/page.html",
        status,
        account=account,
        rows=history_rows(rows),
        list_error=error,
        paging=paging,
        previous_url=page_url(paging.number - 1) if paging.number > 1 else None,
        next_url=page_url(paging.number + 1) if len(found) > paging.size else None,
        first_url=page_url(1),
    )
