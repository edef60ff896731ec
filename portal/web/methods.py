"""Payment methods (R8, R10): saved methods, replacing one, the auto-renewal switch."""

from __future__ import annotations

import secrets
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext, lazy_gettext
from flask_login import current_user, login_required
from sqlalchemy import select

from portal.infra import audit
from portal.infra.extensions import db
from portal.infra.i18n import current_language
from portal.infra.models import Account, PaymentMethod, RenewalOffReason, utcnow
from portal.plugin_api.contracts import ProviderError
from portal.rules import orders, payment_methods, payments, renewal_off
from portal.rules.catalogue import Period
from portal.rules.money import Money
from portal.rules.pricing import ChangeRefused, Selection
from portal.web import htmx_util, pay
from portal.web.checkout import pricing
from portal.web.helpers import format_day, hands_off_to_providers
from portal.web.pay import UNAVAILABLE, describe, offered, providers, send_to
from portal.web.session_user import current_account

bp = Blueprint("methods", __name__, url_prefix="/payment-methods")

REFUSALS = {
    "auto_renew_free": lazy_gettext("Auto-renewal applies to paid packages."),
    "auto_renew_no_method": lazy_gettext("Add a payment method first: renewals are charged to it."),
    "auto_renew_suspended": lazy_gettext(
        "Your account is suspended: pay for a new period in My package to reactivate it."
    ),
    "brand_not_accepted": lazy_gettext(
        "This card cannot be charged for renewals, so it cannot be saved. Please add another "
        "card or payment method."
    ),
    "amex_not_accepted": lazy_gettext(
        "American Express cards are not accepted. Please add another card or payment method."
    ),
    "method_of_another_account": lazy_gettext("This payment method cannot be used here."),
    "unknown_method": lazy_gettext("This payment method is no longer saved."),
    "last_method_auto_renew": lazy_gettext(
        "This is your last payment method and auto-renewal is on: confirm that auto-renewal "
        "is switched off with it."
    ),
}


def _refusal(code: str) -> str:
    """Why a method was refused; a refused card says what is accepted (the providers loaded)."""
    message = str(REFUSALS[code])
    if code in pay.NAMES_ACCEPTED:
        return f"{message} {pay.accepted_methods()}"
    return message


BUSY = lazy_gettext("This payment method is being charged right now. Please try again in a minute.")
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
    sub = account.subscription
    return {
        "account": account,
        "sub": sub,
        "expires_before_renewal": {
            m.id
            for m in methods
            if sub.is_paid and payment_methods.expires_before(m, sub.period_end)
        },
        "methods": methods,
        "default_method": next((m for m in methods if m.is_default), None),
        "renewal_total": renewal_total(account),
        "setup_providers": [
            choice for choice in offered(sub.currency) if providers()[choice.name].saves_methods
        ],
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
        error = _refusal(exc.code)
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
        flash(_refusal(exc.code), "error")
    else:
        flash(gettext("Your new payment method is saved and will be used from now on."), "success")
    return redirect(url_for("methods.page"), code=303)


def _own_method(account: Account, method_id: int) -> PaymentMethod:
    method = db.session.scalar(
        select(PaymentMethod).where(
            PaymentMethod.id == method_id,
            PaymentMethod.account_id == account.id,
            PaymentMethod.removed_at.is_(None),
        )
    )
    if not isinstance(method, PaymentMethod):
        abort(404)
    return method


@bp.post("/<int:method_id>/default")
@login_required
def make_default(method_id: int) -> ResponseReturnValue:
    """Renewals charge this method from now on."""
    account = current_account()
    try:
        method = payment_methods.make_default(account_id=account.id, method_id=method_id)
    except payment_methods.MethodBusy:
        flash(str(BUSY), "error")
        return redirect(url_for("methods.page"), code=303)
    except payment_methods.MethodRefused:
        abort(404)
    audit.record_customer(
        current_user,
        "default_payment_method",
        object_type="payment_method",
        object_id=method.id,
        after={"is_default": True},
    )
    flash(gettext("Renewals will be charged to %(method)s.", method=describe(method)), "success")
    return redirect(url_for("methods.page"), code=303)


@bp.get("/<int:method_id>/remove")
@login_required
def confirm_remove(method_id: int) -> ResponseReturnValue:
    """The confirmation step: what removing this method changes."""
    account = current_account()
    method = _own_method(account, method_id)
    switches_off = payment_methods.removal_switches_auto_renew_off(
        account_id=account.id, method_id=method.id
    )
    return render_template(
        "methods/remove.html", method=method, sub=account.subscription, switches_off=switches_off
    )


@bp.post("/<int:method_id>/remove")
@login_required
def remove(method_id: int) -> ResponseReturnValue:
    account = current_account()
    method = _own_method(account, method_id)
    label = describe(method)
    try:
        switched_off = payment_methods.remove(
            account_id=account.id,
            method_id=method.id,
            switch_auto_renew_off=request.form.get("auto_renew_off") == "confirmed",
            now=utcnow(),
        )
    except payment_methods.MethodBusy:
        db.session.rollback()
        return render_template(
            "methods/remove.html",
            method=method,
            sub=account.subscription,
            switches_off=False,
            error=str(BUSY),
        ), 409
    except payment_methods.MethodRefused as exc:
        db.session.rollback()
        return render_template(
            "methods/remove.html",
            method=_own_method(account, method_id),
            sub=account.subscription,
            switches_off=True,
            error=_refusal(exc.code),
        ), 422
    audit.record_customer(
        current_user,
        "remove_payment_method",
        object_type="payment_method",
        object_id=method_id,
        after={"removed": True, "auto_renew_switched_off": switched_off},
    )
    flash(gettext("%(method)s is removed.", method=label), "success")
    if switched_off:
        flash(gettext("Auto-renewal is off."), "success")
    return redirect(url_for("methods.page"), code=303)


# The optional "why?" when switching auto-renewal off (issue 25), in the order shown.
OFF_REASONS = {
    RenewalOffReason.TOO_EXPENSIVE: lazy_gettext("It is too expensive"),
    RenewalOffReason.MISSING_FEATURES: lazy_gettext("It lacks features we need"),
    RenewalOffReason.OTHER_PRODUCT: lazy_gettext("We are switching to another product"),
    RenewalOffReason.TEMPORARY: lazy_gettext("We only needed it for a while"),
    RenewalOffReason.OTHER: lazy_gettext("Another reason"),
}
ANSWER_REFUSALS = {
    "unknown_reason": lazy_gettext("Choose one of the reasons listed, or none."),
    "detail_too_long": lazy_gettext(
        "Please tell us in at most %(max)s characters.", max=renewal_off.MAX_DETAIL
    ),
}


@bp.route("/auto-renew/off", methods=("GET", "POST"))
@login_required
def confirm_auto_renew_off() -> ResponseReturnValue:
    """Switching auto-renewal off (from My package or Payment methods): the exact date and
    what is kept first, with an optional "why?"; the answer is stored with the switch, for
    staff."""
    account = current_account()
    sub = account.subscription
    # Asked from Payment methods (its switch links here) or from My package: back there.
    back = "methods" if request.values.get("back") == "methods" else None
    back_url = url_for("methods.page") if back else url_for("account.package")
    if not sub.is_paid or not sub.auto_renew or sub.period_end is None:
        return redirect(back_url, code=303)
    error = None
    if request.method == "POST":
        try:
            answer = renewal_off.parse_answer(
                request.form.get("reason"), request.form.get("detail")
            )
        except renewal_off.AnswerRefused as refused:
            error = str(ANSWER_REFUSALS[refused.code])
        else:
            payments.set_auto_renew(
                account_id=account.id, on=False, why=answer, user_id=current_user.id, now=utcnow()
            )
            db.session.refresh(account.subscription)
            audit.record_customer(
                current_user,
                "auto_renew",
                object_type="subscription",
                object_id=account.subscription.id,
                before={"auto_renew": True},
                after={
                    "auto_renew": account.subscription.auto_renew,
                    "reason": answer.reason.value if answer else None,
                },
            )
            flash(
                gettext(
                    "Auto-renewal is off. Your account will be suspended on %(date)s.",
                    date=format_day(sub.period_end, current_language()),
                ),
                "success",
            )
            return redirect(back_url, code=303)
    return render_template(
        "methods/auto_renew_off.html",
        sub=sub,
        back=back,
        back_url=back_url,
        reasons=OFF_REASONS,
        error=error,
        chosen=request.form.get("reason", ""),
        detail=request.form.get("detail", ""),
        max_detail=renewal_off.MAX_DETAIL,
    ), (422 if error else 200)
