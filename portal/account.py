"""My package (rule R1)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, redirect
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from sqlalchemy import bindparam, select

from portal import htmx_util, payments
from portal.extensions import db
from portal.i18n import home_url
from portal.models import Account, Payment, PaymentStatus, Subscription
from portal.plugins import registry
from portal.read_only import read_only

bp = Blueprint("account", __name__)


def current_account() -> Account:
    """The logged-in customer's account; staff without one get a 404."""
    if current_user.account_id is None:
        abort(404)
    # Loaded with the user, with its subscription and billing data (auth.load_user).
    account = current_user.account
    if not isinstance(account, Account):
        abort(404)
    return account


# Built once per process rather than on every view of My package.
PENDING_PAYMENT = (
    select(Payment.id)
    .where(Payment.account_id == bindparam("account_id"), Payment.status == PaymentStatus.PENDING)
    .limit(1)
)


def payment_pending(account_id: int) -> bool:
    """Whether a payment awaits its provider's confirmation (R9)."""
    return db.session.scalar(PENDING_PAYMENT, {"account_id": account_id}) is not None


def _package_context(account: Account) -> dict[str, Any]:
    sub: Subscription = account.subscription
    catalogue = current_app.extensions["pakiet.catalogue"]
    currency = registry().currencies.get(sub.currency) if sub.currency else None
    return {
        "account": account,
        "sub": sub,
        "package": catalogue.package(sub.package),
        "currency": currency,
        "pending": payment_pending(account.id),
        "method": payments.default_method(account.id),
    }


@bp.get("/")
def index() -> ResponseReturnValue:
    return redirect(home_url())


@bp.get("/package")
@login_required
@read_only
def package() -> ResponseReturnValue:
    account = current_account()
    context = _package_context(account)
    return htmx_util.render("account/package.html", "account/_package.html", **context)
