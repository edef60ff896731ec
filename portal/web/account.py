"""My package (rule R1)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, redirect
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from portal.infra.i18n import home_url
from portal.infra.models import Account, Subscription, utcnow
from portal.plugin_api.registry import registry
from portal.rules import payment_methods, payments
from portal.web import htmx_util
from portal.web.read_only import read_only

bp = Blueprint("account", __name__)


def current_account() -> Account:
    """The logged-in customer's account; staff without one get a 404."""
    if current_user.account_id is None:
        abort(404)
    # With its subscription and billing data: detached from the user's row in a read-only
    # view, attached otherwise (portal/web/session_user.py).
    account = current_user.account
    if not isinstance(account, Account):
        abort(404)
    return account


def _package_context(account: Account) -> dict[str, Any]:
    sub: Subscription = account.subscription
    catalogue = current_app.extensions["pakiet.catalogue"]
    currency = registry().currencies.get(sub.currency) if sub.currency else None
    method = payments.default_method(account.id)
    return {
        "account": account,
        "sub": sub,
        "package": catalogue.package(sub.package),
        "currency": currency,
        "attempt": payments.latest_attempt(account.id, utcnow()),
        "method": method,
        "method_expires": sub.is_paid
        and sub.auto_renew
        and payment_methods.expires_before(method, sub.period_end),
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
