"""Paying an order (R8, R9): hand-off to the provider, the return, webhooks."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from babel.lists import format_list
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext, lazy_gettext
from flask_login import current_user, login_required
from sqlalchemy import select
from werkzeug.wrappers import Response as WerkzeugResponse

from portal.infra.extensions import csrf, db, limiter
from portal.infra.i18n import current_language
from portal.infra.models import (
    Account,
    Order,
    Payment,
    PaymentMethod,
    PaymentStatus,
    utcnow,
)
from portal.plugin_api.contracts import (
    PaymentEvent,
    PaymentEventKind,
    PaymentProvider,
    ProviderError,
    Redirect,
    SavedMethod,
    WebhookRejected,
    describe_saved,
)
from portal.plugin_api.registry import origin, registry
from portal.rules import lifecycle, orders, payments
from portal.web.helpers import hands_off_to_providers
from portal.web.session_user import current_account

log = logging.getLogger(__name__)
bp = Blueprint("pay", __name__)

UNAVAILABLE = lazy_gettext(
    "The payment provider did not answer. Nothing was charged; please try again in a moment."
)
# Why a payment did not go through, in the customer's words (codes from providers/core).
FAILURES = {
    "card_declined": lazy_gettext(
        "Your bank declined the card. Try another card or another payment method."
    ),
    "generic_decline": lazy_gettext(
        "Your bank declined the card. Try another card or another payment method."
    ),
    "insufficient_funds": lazy_gettext("The card has insufficient funds. Try another card."),
    "expired_card": lazy_gettext("The card has expired. Try another card."),
    "incorrect_cvc": lazy_gettext("The card's security code was wrong. Try again."),
    "INSTRUMENT_DECLINED": lazy_gettext(
        "PayPal declined the payment. Choose another funding source in PayPal or pay by card."
    ),
    "ORDER_NOT_APPROVED": lazy_gettext("The payment was not approved in PayPal."),
    "cancelled": lazy_gettext("You cancelled the payment. Nothing was charged."),
    "expired": lazy_gettext("The payment page expired. Nothing was charged; please try again."),
    "authentication_required": lazy_gettext(
        "Your bank asks you to confirm this payment. Continue to confirm it."
    ),
    "brand_not_accepted": lazy_gettext(
        "This card cannot be charged again for renewals, so it is not accepted. The payment "
        "was refunded in full; please pay with another card or payment method."
    ),
    "amex_not_accepted": lazy_gettext(
        "American Express cards are not accepted. The payment was refunded in full; please pay "
        "with another card or payment method."
    ),
    "provider_unavailable": UNAVAILABLE,
    "quote_stale": lazy_gettext(
        "Your package changed before the payment arrived, so it was refunded in full. "
        "Please check the new price."
    ),
    payments.TAX_CHANGED: lazy_gettext(
        "Your billing information changed the VAT on this order after it was placed, so the "
        "payment was refunded in full. Please place the order again."
    ),
}
GENERIC_FAILURE = lazy_gettext("The payment did not go through. Nothing was charged; try again.")
REFUSALS = {
    "order_closed": lazy_gettext("This order can no longer be paid."),
    "currency_unsupported": lazy_gettext(
        "This payment method does not accept your currency. Please choose another one."
    ),
    "quote_stale": lazy_gettext("Your package changed meanwhile. Please check the new price."),
    payments.ORDER_EXPIRED: lazy_gettext(
        "This order has expired and can no longer be paid. Nothing was charged; "
        "please place the order again."
    ),
    payments.TAX_CHANGED: lazy_gettext(
        "Your billing information changed the VAT on this order after it was placed, so "
        "the order was cancelled. Nothing was charged; please place the order again."
    ),
    payments.BILLING_DATA_MISSING: lazy_gettext(
        "Before you pay, enter your billing country and address in Billing information: the "
        "invoice cannot be issued without them. Nothing was charged."
    ),
}


#: Failures that name what is accepted: the sentence is built from the providers loaded.
NAMES_ACCEPTED = frozenset({"brand_not_accepted", "amex_not_accepted"})


def failure_message(code: str | None) -> str:
    message = str(FAILURES.get(code or "", GENERIC_FAILURE))
    if code in NAMES_ACCEPTED:
        return f"{message} {accepted_methods()}"
    return message


def providers() -> dict[str, PaymentProvider]:
    return registry().payment_providers


@dataclass(frozen=True)
class Offered:
    """A payment provider as the customer sees it in a choice: its name and label."""

    name: str
    label: str


def offered(currency: str | None) -> list[Offered]:
    """The providers a customer may choose for ``currency`` (every one for ``None``), with
    their labels. A provider whose ``label()`` raises is left out of this request, logged
    with its plugin's name: the others keep working."""
    language = current_language()
    reg = registry()
    choices = []
    for provider in reg.providers_for(currency):
        try:
            label = provider.label(language)
            if not isinstance(label, str) or not label:
                raise TypeError(f"label() returned {label!r}")
        except Exception:
            log.exception(
                "payment provider %r of plugin %r left out: its label() failed",
                provider.name,
                reg.owner("payment provider", provider.name),
            )
            continue
        choices.append(Offered(provider.name, label))
    return choices


def accepted_methods() -> str:
    """The "We accept ..." sentence: the labels of the payment providers loaded."""
    language = current_language()
    labels = [choice.label for choice in offered(None)]
    if not labels:
        return str(
            gettext(
                "No payment method is available right now. Please try again later or contact"
                " support."
            )
        )
    accepted = gettext("We accept: %(methods)s.", methods=format_list(labels, locale=language))
    # R8 is core's rule whatever the plugins: core refuses American Express.
    refused = gettext("American Express and cryptocurrencies are not accepted.")
    return f"{accepted} {refused}"


def _urls(payment_id: str, provider_name: str) -> payments.Urls:
    return payments.Urls(
        return_url=url_for("pay.returned", payment_id=payment_id, _external=True),
        cancel_url=url_for("pay.cancelled", payment_id=payment_id, _external=True),
        webhook_url=url_for("pay.webhook", provider_name=provider_name, _external=True),
    )


def _order_page(order: Order) -> str:
    if orders.is_renewal(order):
        return url_for("pay.renewal")
    return url_for("checkout.order", public_id=order.public_id)


def begin(account: Account, order: Order, provider_name: str | None) -> WerkzeugResponse:
    """Start paying a placed order and send the customer where the payment goes on."""
    if order.total_minor == 0:
        try:
            payments.confirm_free_change(account=account, order=order, now=utcnow())
        except payments.PaymentRefused as exc:
            flash(str(REFUSALS[exc.code]), "error")
            return redirect(_order_page(order), code=303)
        flash(gettext("Your package has been changed. Nothing was charged."), "success")
        return redirect(url_for("account.package"), code=303)
    provider = providers().get(provider_name or "")
    if provider is None:
        flash(gettext("Choose a payment method."), "error")
        return redirect(_order_page(order), code=303)
    try:
        outcome = payments.start(
            account=account,
            order=order,
            provider=provider,
            description=gettext("Pakiet: %(package)s", package=order.package.title()),
            customer_email=account.billing_info.invoice_email,
            language=current_language(),
            make_urls=_urls,
            now=utcnow(),
        )
    except payments.PaymentRefused as exc:
        flash(str(REFUSALS[exc.code]), "error")
        return redirect(_order_page(order), code=303)
    except ProviderError as exc:
        db.session.rollback()
        log.warning("payment start at %s failed: %s", provider.name, exc)
        flash(str(UNAVAILABLE), "error")
        return redirect(_order_page(order), code=303)
    if isinstance(outcome, Redirect):
        return send_to(provider, outcome.url, fallback=_order_page(order))
    return _after(outcome, order)


def send_to(provider: PaymentProvider | None, url: str, *, fallback: str) -> WerkzeugResponse:
    """Redirect the customer to ``provider``'s page at ``url``, which must be on an origin
    the provider declared (``hosted_origins``): the page's policy lets the browser follow
    only those, so any other would leave the customer stuck on "Pay" without a word."""
    if provider is not None and origin(url) in provider.hosted_origins:
        return redirect(url, code=303)
    log.error(
        "payment provider %r sent the customer to %s, an origin missing from its"
        " hosted_origins: declare it there",
        provider.name if provider else None,
        origin(url),
    )
    flash(str(UNAVAILABLE), "error")
    return redirect(fallback, code=303)


def _after(payment: Payment, order: Order) -> WerkzeugResponse:
    """Where the customer goes once a payment answered."""
    if payment.status == PaymentStatus.PAID:
        flash(gettext("Thank you! Your payment was received."), "success")
        return redirect(url_for("account.package"), code=303)
    if payment.status == PaymentStatus.PENDING and payment.action_url:
        provider = providers().get(payment.provider)
        return send_to(provider, payment.action_url, fallback=_order_page(order))
    if payment.status == PaymentStatus.PENDING:
        return redirect(url_for("account.package"), code=303)
    return redirect(_order_page(order), code=303)  # the order page says why it failed


@bp.post("/package/orders/<public_id>/pay")
@login_required
def pay_order(public_id: str) -> ResponseReturnValue:
    account = current_account()
    order = orders.find_order(account.id, public_id)
    if order is None:
        abort(404)
    return begin(account, order, request.form.get("provider"))


@bp.get("/package/renewal")
@hands_off_to_providers
@login_required
def renewal() -> ResponseReturnValue:
    """Pay the open renewal by hand (R10): for a customer whose method cannot be charged
    again (a bank transfer, a pay-by-link), with any provider that takes the currency."""
    account = current_account()
    order = lifecycle.open_renewal(account.id, utcnow())
    failure = render_order_failure(order) if order is not None else None
    return render_template(
        "pay/renewal.html",
        order=order,
        record=order.quote if order is not None else None,
        failure=failure,
        providers=offered(order.currency) if order is not None else [],
        saved_method=payments.default_method(account.id),
    )


def _own_payment(payment_id: str) -> Payment:
    payment = db.session.scalar(
        select(Payment).where(
            Payment.public_id == payment_id, Payment.account_id == current_user.account_id
        )
    )
    if not isinstance(payment, Payment):
        abort(404)
    return payment


@bp.get("/payments/<payment_id>/return")
@login_required
def returned(payment_id: str) -> ResponseReturnValue:
    """Back from the hosted page: confirm with the provider now rather than wait."""
    payment = _own_payment(payment_id)
    provider = providers().get(payment.provider)
    order = db.session.get(Order, payment.order_id) if payment.order_id else None
    if provider is None or payment.provider_ref is None or order is None:
        abort(404)
    refused = payments.unpayable_reason(order, utcnow())
    if payment.status == PaymentStatus.PENDING and refused is not None:
        # Not completed (for some providers completing is the capture): closed instead.
        if refused == payments.ORDER_EXPIRED:
            payments.refuse_expired(payment.id, now=utcnow())
        else:
            payments.close_stale_orders(account_id=order.account_id, now=utcnow())
        db.session.refresh(payment)
        db.session.refresh(order)
        if payment.status == PaymentStatus.REFUNDED:
            return redirect(_order_page(order), code=303)  # the order page says why
        if payment.status != PaymentStatus.PAID:
            flash(str(REFUSALS[refused]), "error")
            return redirect(_order_page(order), code=303)
    if payment.status == PaymentStatus.PENDING:
        ref, public_id = payment.provider_ref, payment.public_id
        db.session.commit()  # nothing read or written stays open while the provider answers
        try:
            event = payments.provider_call(
                provider, "complete_return", _complete_return, provider, ref, dict(request.args)
            )
        except ProviderError as exc:
            # Not settled yet, or the provider is slow: the webhook will finish it (R9).
            log.info("return of %s not settled: %s", public_id, exc)
        else:
            payments.apply_event(payment.provider, event, now=utcnow())
        db.session.refresh(payment)
    return _after(payment, order)


def _complete_return(provider: PaymentProvider, ref: str, params: dict[str, str]) -> PaymentEvent:
    return provider.complete_return(provider_ref=ref, params=params)


@bp.get("/payments/<payment_id>/cancel")
@login_required
def cancelled(payment_id: str) -> ResponseReturnValue:
    """Back from the hosted page without paying: close the attempt at the provider."""
    payment = _own_payment(payment_id)
    provider = providers().get(payment.provider)
    order = db.session.get(Order, payment.order_id) if payment.order_id else None
    event = None
    if provider is not None and payment.provider_ref and payment.status == PaymentStatus.PENDING:
        ref, public_id = payment.provider_ref, payment.public_id
        db.session.commit()  # nothing read or written stays open while the provider answers
        try:
            event = provider.cancel(provider_ref=ref)
        except ProviderError as exc:
            log.info("cancel of %s at %s failed: %s", public_id, provider.name, exc)
    if event is not None and event.kind is PaymentEventKind.SUCCEEDED:
        payments.apply_event(payment.provider, event, now=utcnow())  # paid after all
    elif event is not None and event.kind is PaymentEventKind.FAILED and _declined(event):
        payments.apply_event(payment.provider, event, now=utcnow())  # left after a decline
    else:
        payments.cancel(payment.id)
    db.session.refresh(payment)
    if order is None:
        return redirect(url_for("account.package"), code=303)
    return _after(payment, order)


def _declined(event: PaymentEvent) -> bool:
    """A failure the customer met on the provider's page (not only the closing of it)."""
    return event.failure_code not in (None, "expired", "cancelled", "canceled")


@bp.post("/webhooks/<provider_name>")
@csrf.exempt
@limiter.exempt
def webhook(provider_name: str) -> ResponseReturnValue:
    """Provider notifications: verified by the provider plugin, applied once by core."""
    provider = providers().get(provider_name)
    if provider is None:
        abort(404)
    # A provider's event may be larger than any form: this route alone reads up to
    # WEBHOOK_MAX_CONTENT_LENGTH (413 beyond).
    request.max_content_length = current_app.config["WEBHOOK_MAX_CONTENT_LENGTH"]
    body = request.get_data(cache=False)
    try:
        event = provider.parse_webhook(body=body, headers=dict(request.headers))
    except WebhookRejected as exc:
        log.warning("rejected %s webhook: %s", provider_name, exc)
        return {"error": "signature verification failed"}, 400
    except ProviderError as exc:
        log.warning("%s webhook could not be verified now: %s", provider_name, exc)
        return {"error": "try again later"}, 503
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        # Signed, but not the object the plugin expects ([], "x", {} ...): the sender's
        # mistake, not ours, and nothing was changed.
        log.warning("malformed %s webhook: %r", provider_name, exc)
        return {"error": "malformed payload"}, 400
    if event is None:
        return {"received": True, "outcome": "ignored"}
    outcome = payments.apply_event(provider_name, event, now=utcnow())
    return {"received": True, "outcome": outcome.value}


def render_order_failure(order: Order) -> str | None:
    """The reason the order's last attempt failed, if it did."""
    last = db.session.scalar(
        select(Payment).where(Payment.order_id == order.id).order_by(Payment.id.desc()).limit(1)
    )
    if not isinstance(last, Payment):
        return None
    refused = last.status == PaymentStatus.REFUNDED and last.failure_code  # refused brand, stale
    if last.status == PaymentStatus.FAILED and last.failure_code == payments.TAX_CHANGED:
        return None  # closed unpaid: the order page says why it was cancelled
    if last.status == PaymentStatus.FAILED or refused:
        return failure_message(last.failure_code)
    return None


def describe(method: PaymentMethod) -> str:
    """A saved method in the customer's words, e.g. "Visa •••• 4242 (12/2030)"."""
    return describe_with(method.provider, payments.saved(method), current_language())


def describe_saved_method(provider_name: str, saved: SavedMethod) -> str:
    """A saved method read without its row (My package's one statement), as :func:`describe`."""
    return describe_with(provider_name, saved, current_language())


def describe_with(provider_name: str, saved: SavedMethod, language: str) -> str:
    """``saved`` as its provider names it; a provider switched off since, or whose
    ``describe()`` fails (logged with its plugin), still says what the method is."""
    provider = providers().get(provider_name)
    if provider is not None:
        try:
            text = provider.describe(saved, language)
            if isinstance(text, str) and text:
                return text
            raise TypeError(f"describe() returned {text!r}")
        except Exception:
            log.exception(
                "payment provider %r of plugin %r could not describe a method",
                provider.name,
                registry().owner("payment provider", provider.name),
            )
    return describe_saved(saved, saved.brand.title())
