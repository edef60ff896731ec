"""My package (rule R1)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, redirect
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from portal.infra.i18n import home_url
from portal.infra.models import Account, Subscription, utcnow
from portal.plugin_api.registry import registry
from portal.rules import overview, payment_methods
from portal.web import htmx_util
from portal.web import refunds as refund_pages
from portal.web.read_only import read_only
from portal.web.session_user import along_with_user, current_account

bp = Blueprint("account", __name__)


def _package_context(account: Account, facts_row: Any = None) -> dict[str, Any]:
    sub: Subscription = account.subscription
    catalogue = current_app.extensions["pakiet.catalogue"]
    currency = registry().currencies.get(sub.currency) if sub.currency else None
    facts = overview.package_facts(account, utcnow(), refund_pages.now(), facts_row)
    method = facts.method
    return {
        "account": account,
        "sub": sub,
        "package": catalogue.package(sub.package),
        "currency": currency,
        "attempt": facts.attempt,
        "method": method,
        "method_provider": facts.method_provider,
        "method_expires": sub.is_paid
        and sub.auto_renew
        and payment_methods.expires_before(method, sub.period_end),
        "refundable": facts.refundable,
    }


@bp.get("/")
def index() -> ResponseReturnValue:
    return redirect(home_url())


def _facts_params() -> dict[str, Any]:
    return overview.facts_params(utcnow())


@bp.get("/package")
@login_required
@read_only
@along_with_user(overview.PACKAGE_FACTS, account=True, billing=False, params=_facts_params)
def package() -> ResponseReturnValue:
    """One round trip: the package's facts come with the user's row (along_with_user)."""
    account = current_account()
    context = _package_context(account, current_user.along)
    return htmx_util.render("account/package.html", "account/_package.html", **context)
