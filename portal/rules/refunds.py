"""Refunds (R14): the first payment for a package, in full, within 15 days of it.

"Within 15 days" is measured on the account's wall clock (``Account.timezone``, by
default Europe/Warsaw): a payment settled at 10:00 on 20 October can be refunded until
09:59 on 4 November, local time, whatever the clocks did in between. Across the end of
summer time that is 15 days and one hour of real time, across its start 15 days less
one hour; the customer reads the date and time on their own clock, so that is the rule.
The refund is allowed while ``now < deadline`` (the deadline minute itself is late).

Only the account's first paid payment for a package qualifies, only while it is paid
and not refunded at all, and only while the account has paid nothing since (refunding
an earlier payment would take back a package the customer has paid for again).

:func:`confirm` is the one operation: it locks the payment, asks the provider for the
refund (one idempotency key per payment, so a retry never refunds twice), applies the
provider's REFUNDED event through :func:`portal.rules.payments.apply_event` (the state machines
live there), then in one transaction issues the credit note and puts the account back on
Free. A crash between the two transactions is finished by the next request.
This module takes data and a clock; the app's wiring is :func:`confirm_now`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import bindparam, func, or_, select

from portal.infra.extensions import db
from portal.infra.models import (
    Account,
    Invoice,
    InvoiceKind,
    Payment,
    PaymentStatus,
    Subscription,
)
from portal.plugin_api.contracts import PaymentProvider, SubscriptionChanged
from portal.rules import invoicing, payments
from portal.rules.catalogue import PackageCode

log = logging.getLogger(__name__)

REFUND_DAYS = 15
DEFAULT_TIMEZONE = "Europe/Warsaw"

ProviderLookup = Callable[[str], PaymentProvider | None]


class RefundRefused(Exception):
    """The refund cannot be made; ``code`` names why (translated by the view)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class RefundNotFound(Exception):
    """No such payment of this account (someone else's is not found either)."""


@dataclass(frozen=True)
class Refunded:
    payment: Payment
    credit_note: Invoice
    #: False when another request finished this refund (nothing more to announce).
    created: bool


def zone(account: Account) -> ZoneInfo:
    try:
        return ZoneInfo(account.timezone or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


def deadline(payment: Payment, tz: ZoneInfo) -> dt.datetime:
    """The first moment a refund is late: the same local time 15 calendar days later."""
    assert payment.settled_at is not None
    local = payment.settled_at.astimezone(tz)
    # Adding to an aware ZoneInfo datetime is wall-clock arithmetic (the offset is
    # recomputed for the new date); the result is normalised to UTC for comparisons.
    return (local + dt.timedelta(days=REFUND_DAYS)).astimezone(dt.UTC)


# The first two payments for a package that were ever settled (paid, or refunded since):
# a refund needs the first and no second, so more are never fetched. A payment core refused
# and refunded at once (a stale second checkout, a refused card brand: it carries the reason)
# bought nothing and does not count. Built once per process: My package and the invoices
# list run it on every view.
FIRST_PAID_PACKAGE_CRITERIA = (
    Payment.order_id.is_not(None),
    Payment.settled_at.is_not(None),
    # (Two comparisons, not IN: an IN is written into the SQL again at every execution.)
    or_(Payment.status == PaymentStatus.PAID.value, Payment.status == PaymentStatus.REFUNDED.value),
    Payment.failure_code.is_(None),
)
FIRST_PAID_PACKAGE_PAYMENTS = (
    select(Payment)
    .where(Payment.account_id == bindparam("account_id"), *FIRST_PAID_PACKAGE_CRITERIA)
    .order_by(Payment.settled_at, Payment.id)
    .limit(2)
)

# How many of those two there are, as a column any statement of the account's pages can
# carry (``account_id`` bound): only an account with exactly one goes on to :func:`offer`.
FIRST_PAID_PACKAGE_COUNT = (
    select(func.count())
    .select_from(
        select(Payment.id)
        .where(Payment.account_id == bindparam("account_id"), *FIRST_PAID_PACKAGE_CRITERIA)
        .limit(2)
        .subquery("first_paid")
    )
    .scalar_subquery()
)


def _first_paid_package_payments(account_id: int) -> list[Payment]:
    return list(db.session.scalars(FIRST_PAID_PACKAGE_PAYMENTS, {"account_id": account_id}))


def _invoice_of(payment: Payment) -> Invoice | None:
    invoice = db.session.scalar(
        select(Invoice).where(
            Invoice.payment_id == payment.id, Invoice.kind == InvoiceKind.INVOICE.value
        )
    )
    # Corrected to zero and issued again to another buyer (issue 23, point 4): the invoice
    # of the payment is now the one issued again.
    while isinstance(invoice, Invoice):
        again = db.session.scalar(
            select(Invoice).where(
                Invoice.corrects_id == invoice.id, Invoice.kind == InvoiceKind.INVOICE.value
            )
        )
        if not isinstance(again, Invoice):
            break
        invoice = again
    return invoice if isinstance(invoice, Invoice) else None


def _credit_note_for(invoice: Invoice) -> Invoice | None:
    note = db.session.scalar(
        select(Invoice).where(
            Invoice.corrects_id == invoice.id, Invoice.kind == InvoiceKind.CREDIT_NOTE.value
        )
    )
    return note if isinstance(note, Invoice) else None


def refusal(payment: Payment, account: Account, now: dt.datetime) -> str | None:
    """Why ``payment`` cannot be refunded now (a code), or ``None`` when it can."""
    if payment.status == PaymentStatus.REFUNDED or payment.refunded_minor > 0:
        return "already_refunded"
    if payment.status != PaymentStatus.PAID or payment.order_id is None:
        return "not_refundable"
    if payment.settled_at is None or payment.charge_ref is None:
        return "not_refundable"
    if not payments.provider_can_refund(payment.provider):
        # The provider declares it cannot give money back (can_refund): R14 still holds,
        # but staff refund it outside the portal, so the portal does not offer it.
        return "provider_cannot_refund"
    settled = _first_paid_package_payments(account.id)
    if not settled or settled[0].id != payment.id:
        return "not_first"
    if len(settled) > 1:
        return "paid_since"
    if now >= deadline(payment, zone(account)):
        return "too_late"
    if _invoice_of(payment) is None:
        return "invoice_pending"
    return None


def offer(account: Account, now: dt.datetime) -> Payment | None:
    """The payment the account may ask to have refunded now, if any."""
    settled = _first_paid_package_payments(account.id)
    if len(settled) != 1:
        return None
    payment = settled[0]
    return payment if refusal(payment, account, now) is None else None


def find(account_id: int, public_id: str) -> Payment:
    payment = db.session.scalar(
        select(Payment).where(Payment.public_id == public_id, Payment.account_id == account_id)
    )
    if not isinstance(payment, Payment):
        raise RefundNotFound(public_id)
    return payment


def _lock(account_id: int, public_id: str) -> Payment:
    payment = db.session.scalar(
        select(Payment)
        .where(Payment.public_id == public_id, Payment.account_id == account_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if not isinstance(payment, Payment):
        db.session.rollback()
        raise RefundNotFound(public_id)
    return payment


def idempotency_key(payment: Payment) -> str:
    return f"refund-{payment.public_id}-r14"


def confirm(
    *,
    account_id: int,
    payment_public_id: str,
    providers: ProviderLookup,
    seller: Mapping[str, str],
    render: invoicing.Renderer,
    free_agents: int,
    now: dt.datetime,
    today: dt.date,
) -> Refunded:
    """Refund the payment (see the module docs). Raises RefundRefused, RefundNotFound,
    or ProviderError (nothing changed; trying again is safe)."""
    payment = _lock(account_id, payment_public_id)
    account = db.session.get(Account, account_id)
    assert account is not None
    if payment.status == PaymentStatus.REFUNDED:
        invoice = _invoice_of(payment)
        if invoice is not None and _credit_note_for(invoice) is None:
            # Refunded at the provider and applied, then interrupted: finish it.
            return _complete(payment.id, account_id, seller, render, free_agents, now, today)
    code = refusal(payment, account, now)
    if code is not None:
        db.session.rollback()
        raise RefundRefused(code)
    provider = providers(payment.provider)
    if provider is None or payment.charge_ref is None:
        db.session.rollback()
        raise RefundRefused("not_refundable")
    charge_ref, amount, key = payment.charge_ref, payment.amount, idempotency_key(payment)
    provider_name = payment.provider
    # Nothing was written: the lock ends before the provider is asked, so no transaction
    # waits on it (security issue, point 8). A second request at once asks with the same
    # idempotency key and gets the same refund; the event is applied once, and _complete
    # finishes once, under the payment's lock.
    db.session.rollback()
    event = provider.refund(charge_ref=charge_ref, amount=amount, idempotency_key=key)
    outcome = payments.apply_event(provider_name, event, now=now)
    log.info("refund of payment %s: %s", payment_public_id, outcome)
    return _complete(payment.id, account_id, seller, render, free_agents, now, today)


def _complete(
    payment_id: int,
    account_id: int,
    seller: Mapping[str, str],
    render: invoicing.Renderer,
    free_agents: int,
    now: dt.datetime,
    today: dt.date,
) -> Refunded:
    """Credit note and back to Free, once per refunded payment (row locked again)."""
    payment = db.session.scalar(
        select(Payment)
        .where(Payment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert isinstance(payment, Payment)
    if payment.status != PaymentStatus.REFUNDED:
        db.session.rollback()
        log.error("payment %s: the provider did not refund it in full", payment.public_id)
        raise RefundRefused("provider_refused")
    invoice = _invoice_of(payment)
    assert invoice is not None
    existing = _credit_note_for(invoice)
    if existing is not None:  # another request finished it
        db.session.commit()
        return Refunded(payment=payment, credit_note=existing, created=False)
    sub = db.session.scalar(
        select(Subscription)
        .where(Subscription.account_id == account_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert isinstance(sub, Subscription)
    before = payments.state(sub)
    back_to_free(sub, free_agents)
    after = payments.state(sub)
    note = invoicing.issue_credit_note(  # commits the return to Free with it
        invoice_id=invoice.id, seller=seller, render=render, now=now, today=today
    )
    changed = SubscriptionChanged(
        account_id=account_id,
        subscription_id=sub.id,
        before=before,
        after=after,
        reason="refund",
        changed_at=now,
    )
    _announce(note, changed)
    return Refunded(payment=payment, credit_note=note, created=True)


def back_to_free(sub: Subscription, free_agents: int) -> None:
    """The Free package from now on; the currency and any account credit stay (R6)."""
    sub.package = PackageCode.FREE.value
    sub.agents = free_agents
    sub.conversations = 0
    sub.period_start = None
    sub.period_end = None
    sub.auto_renew = False
    sub.period_net_minor = 0


def _announce(note: Invoice, changed: SubscriptionChanged) -> None:
    from portal.plugin_api.registry import registry

    hook = registry().hook
    hook.invoice_issued(event=invoicing.issued_event(note))
    hook.subscription_changed(event=changed)


# -- composition: what the app uses -----------------------------------------------------------


def confirm_now(account_id: int, payment_public_id: str, *, now: dt.datetime) -> Refunded:
    """The app's call: providers, seller and renderer from the app; the e-mail sent."""
    from flask import current_app

    from portal.infra import mail
    from portal.plugin_api.registry import registry
    from portal.rules import einvoicing

    reg = registry()
    catalogue = current_app.extensions["pakiet.catalogue"]
    result = confirm(
        account_id=account_id,
        payment_public_id=payment_public_id,
        providers=reg.payment_providers.get,
        seller=current_app.config["SELLER"],
        render=invoicing.app_renderer(),
        free_agents=catalogue.package(PackageCode.FREE).max_agents,
        now=now,
        today=invoicing.local_today(now),
    )
    if result.created:
        einvoicing.after_issue(result.credit_note.id, now=now)
        # Through the outbox: an SMTP server that is down delays the e-mail, never loses it.
        note = result.credit_note
        key = f"refund-{note.id}"
        mail.queue(
            account_id,
            "refund",
            key=key,
            now=now,
            credit_note_id=note.id,
            amount=result.payment.amount,
        )
        db.session.commit()
        mail.deliver_pending(now=now, key=key)
    return result
