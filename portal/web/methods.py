"""Payment methods (R8, R10): saved methods, replacing one, the auto-renewal switch."""

from __future__ import annotations

import secrets
from typing import Any

from flask import Blueprint, abort, flash, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext, lazy_gettext
from flask_login import current_user, login_required
from sqlalchemy import select

from portal.infra import audit
from portal.infra.extensions import db
from portal.infra.i18n import current_language
from portal.infra.models import Account, PaymentMethod, utcnow
from portal.plugin_api.contracts import ProviderError
from portal.rules import orders, payments
from portal.rules.catalogue import Period
from portal.rules.money import Money
from portal.rules.pricing import ChangeRefused, Selection
from portal.web import htmx_util
from portal.web.account import current_account
from portal.web.checkout import pricing
from portal.web.helpers import hands_off_to_providers
from portal.web.pay import UNAVAILABLE, providers, send_to

bp = Blueprint("methods", __name__, url_prefix="/payment-methods")

REFUSALS = {
    "auto_renew_free": lazy_gettext("Auto-renewal applies to paid packages."),
    "auto_renew_no_method": lazy_gettext("Add a payment method first: renewals are charged to it."),
    "auto_renew_suspended": lazy_gettext(
        "Your account is suspended: pay for a new period in My package to reactivate it."
    ),
    "brand_not_accepted": lazy_gettext(
        "We accept only Visa and Mastercard cards (and PayPal). Please add another card."
    ),
    "amex_not_accepted": lazy_gettext(
        "American Express cards are not accepted: we accept only Visa and Mastercard cards "
        "(and PayPal). Please add another card."
    ),
    "method_of_another_account": lazy_gettext("This payment method cannot be used here."),
}
SETUP_KEY = "pakiet_setup"


def renewal_total(account: Account) -> Money | None:
    """What the next renewal will charge: today's price of the same package, with VAT."""
    sub = account.subscription
    if not sub.is_paid or sub.currency is None or sub.period_end is None:
        return None
    selection = Selection(
        package=sub.package_code,
        period=Period(sub.period),
        agents=sub.agents,
        conversations=sub.conversations,
        currency=sub.currency,
    )
    try:
        result, _ = orders.quote_for(pricing(), account, selection, sub.period_end)
    except ChangeRefused:
        return None
    return result.total_due


def _context(account: Account) -> dict[str, Any]:
    methods = db.session.scalars(
        select(PaymentMethod)
        .where(PaymentMethod.account_id == account.id, PaymentMethod.removed_at.is_(None))
        .order_by(PaymentMethod.is_default.desc(), PaymentMethod.id.desc())
    ).all()
    return {
        "account": account,
        "sub": account.subscription,
        "methods": methods,
        "default_method": next((m for m in methods if m.is_default), None),
        "renewal_total": renewal_total(account),
        "setup_providers": [p for p in providers().values() if p.saves_methods],
    }


@bp.get("")
@hands_off_to_providers
@login_required
def page() -> ResponseReturnValue:
    account = current_account()
    return htmx_util.render("methods/page.html", "methods/_auto_renew.html", **_context(account))


@bp.post("/auto-renew")
@hands_off_to_providers
@login_required
def auto_renew() -> ResponseReturnValue:
    """The switch: HTMX swaps its fragment; without JavaScript the page reloads."""
    account = current_account()
    wanted = request.form.get("auto_renew")
    if wanted not in {"on", "off"}:
        abort(400)
    error = None
    before = account.subscription.auto_renew
    try:
        payments.set_auto_renew(account_id=account.id, on=wanted == "on")
    except payments.PaymentRefused as exc:
        error = str(REFUSALS[exc.code])
        db.session.rollback()
    db.session.refresh(account.subscription)
    if error is None and before != account.subscription.auto_renew:
        audit.record_customer(
            current_user,
            "auto_renew",
            object_type="subscription",
            object_id=account.subscription.id,
            before={"auto_renew": before},
            after={"auto_renew": account.subscription.auto_renew},
        )
    context = _context(account)
    status = 422 if error else 200  # 422: the live switch shows why
    return htmx_util.render(
        "methods/page.html", "methods/_auto_renew.html", status, error=error, **context
    )


@bp.post("/new")
@login_required
def new_method() -> ResponseReturnValue:
    """Replace the method: the provider's hosted setup page saves a new one."""
    account = current_account()
    provider = providers().get(request.form.get("provider", ""))
    if provider is None or not provider.saves_methods:
        abort(400)
    existing = payments.default_method(account.id, provider.name)
    customer_email = account.billing_info.invoice_email
    customer_ref = existing.customer_ref if existing else None
    db.session.rollback()  # nothing was written: no transaction waits on the provider
    try:
        target = provider.start_setup(
            customer_email=customer_email,
            customer_ref=customer_ref,
            return_url=url_for("methods.setup_return", provider_name=provider.name, _external=True),
            cancel_url=url_for("methods.page", _external=True),
            language=current_language(),
            idempotency_key=secrets.token_urlsafe(24),
        )
    except ProviderError:
        flash(str(UNAVAILABLE), "error")
        return redirect(url_for("methods.page"), code=303)
    session[SETUP_KEY] = {"provider": provider.name, "ref": target.provider_ref}
    return send_to(provider, target.url, fallback=url_for("methods.page"))


@bp.get("/setup/<provider_name>/return")
@login_required
def setup_return(provider_name: str) -> ResponseReturnValue:
    account = current_account()
    pending = session.pop(SETUP_KEY, None)
    provider = providers().get(provider_name)
    if provider is None or not pending or pending.get("provider") != provider_name:
        abort(404)
    account_id = account.id
    db.session.rollback()  # nothing was written: no transaction waits on the provider
    try:
        method = provider.complete_setup(
            provider_ref=str(pending["ref"]), params=dict(request.args)
        )
        saved = payments.add_method(
            account_id=account_id, provider=provider.name, method=method, now=utcnow()
        )
        audit.record_customer(
            current_user,
            "add_payment_method",
            object_type="payment_method",
            object_id=saved.id,
            after={"provider": saved.provider, "brand": saved.brand, "last4": saved.last4},
        )
    except ProviderError:
        flash(gettext("The new payment method was not saved. Please try again."), "error")
    except payments.PaymentRefused as exc:
        flash(str(REFUSALS[exc.code]), "error")
    else:
        flash(gettext("Your new payment method is saved and will be used from now on."), "success")
    return redirect(url_for("methods.page"), code=303)
