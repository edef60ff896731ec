"""My package (rule R1)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, redirect
from flask.typing import ResponseReturnValue
from flask_login import login_required

from portal.infra.i18n import home_url
from portal.infra.models import Account, Subscription, utcnow
from portal.plugin_api.registry import registry
from portal.rules import overview, payment_methods
from portal.web import htmx_util
from portal.web import refunds as refund_pages
from portal.web.read_only import read, read_only
from portal.web.session_user import current_account

bp = Blueprint("account", __name__)


def _package_context(account: Account) -> dict[str, Any]:
    sub: Subscription = account.subscription
    catalogue = current_app.extensions["pakiet.catalogue"]
    currency = registry().currencies.get(sub.currency) if sub.currency else None
    facts = overview.package_facts(account, utcnow(), refund_pages.now(), execute=read)
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


@bp.get("/package")
@login_required
@read_only
def package() -> ResponseReturnValue:
    account = current_account()
    context = _package_context(account)
    return htmx_util.render("account/package.html", "account/_package.html", **context)
