"""Refund pages (R14): the offer, the confirmation step and the confirming POST."""

from __future__ import annotations

import datetime as dt
from typing import Any

from babel.dates import format_datetime
from flask import Blueprint, abort, render_template
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext
from flask_login import current_user, login_required

from portal.infra import audit
from portal.infra.i18n import current_language
from portal.infra.models import Account, Payment, utcnow
from portal.plugin_api.contracts import ProviderError
from portal.rules import refunds
from portal.web.session_user import current_account

bp = Blueprint("refunds", __name__, url_prefix="/refunds")

REFUSALS = {
    "already_refunded": lazy_gettext("This payment has already been refunded."),
    "too_late": lazy_gettext(
        "A refund can be requested only within 15 days of the first payment for a package. "
        "That time has passed."
    ),
    "not_first": lazy_gettext(
        "Only the first payment for a package can be refunded. This payment is not refundable."
    ),
    "paid_since": lazy_gettext(
        "You have paid again since your first payment, so it can no longer be refunded."
    ),
    "invoice_pending": lazy_gettext(
        "The invoice for this payment is still being issued. Please try again in a few minutes."
    ),
    "not_refundable": lazy_gettext("This payment cannot be refunded."),
    "provider_cannot_refund": lazy_gettext(
        "This payment method cannot give money back through the portal. Please write to our "
        "support team: we refund it to you by hand."
    ),
    "provider_refused": lazy_gettext(
        "The payment provider did not confirm the full refund. Please contact us."
    ),
}
PROVIDER_DOWN = lazy_gettext(
    "The payment provider is not responding, so nothing was refunded and nothing changed. "
    "Please try again in a few minutes."
)


def now() -> dt.datetime:
    """The clock of these pages (tests replace it)."""
    return utcnow()


def _payment(account: Account, public_id: str) -> Payment:
    try:
        return refunds.find(account.id, public_id)
    except refunds.RefundNotFound:
        abort(404)


@bp.app_context_processor
def refund_helpers() -> dict[str, Any]:
    def refund_offer(account: Account) -> Payment | None:
        return refunds.offer(account, now())

    return {"refund_offer": refund_offer}


def _page(
    account: Account, payment: Payment, error: str | None, status: int
) -> ResponseReturnValue:
    """The confirmation step: the amount, the consequences, the button (when eligible)."""
    if error is None:
        code = refunds.refusal(payment, account, now())
        error = str(REFUSALS[code]) if code else None
    until = None
    if payment.settled_at is not None:
        until = format_datetime(
            refunds.deadline(payment, refunds.zone(account)),
            "short",
            tzinfo=refunds.zone(account),
            locale=current_language(),
        )
    page = render_template("refunds/confirm.html", payment=payment, error=error, until=until)
    return page, status


@bp.get("/<public_id>")
@login_required
def confirm_page(public_id: str) -> ResponseReturnValue:
    account = current_account()
    return _page(account, _payment(account, public_id), None, 200)


@bp.post("/<public_id>")
@login_required
def confirm(public_id: str) -> ResponseReturnValue:
    account = current_account()
    payment = _payment(account, public_id)
    try:
        result = refunds.confirm_now(account.id, public_id, now=now())
    except refunds.RefundNotFound:
        abort(404)
    except refunds.RefundRefused as exc:
        return _page(account, refunds.find(account.id, public_id), str(REFUSALS[exc.code]), 409)
    except ProviderError:
        return _page(account, payment, str(PROVIDER_DOWN), 503)
    if result.created:
        audit.record_customer(
            current_user,
            "refund_request",
            object_type="payment",
            object_id=result.payment.public_id,
            after={"refunded": result.payment.amount, "credit_note": result.credit_note.number},
        )
    return render_template("refunds/done.html", payment=result.payment, note=result.credit_note)
