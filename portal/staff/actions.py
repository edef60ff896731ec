"""Staff actions (R7, R16, issue 8): each a domain operation with its audit entry.

Every action takes the version of the object the member of staff saw on the confirmation
page: a double submit, or a change made meanwhile by the customer, the background run or
another member of staff, is refused with ``changed`` and nothing happens. The audit entry
is written in the action's own transaction, so there is no action without its entry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from flask_babel import force_locale, gettext
from sqlalchemy import select

from portal.infra import audit
from portal.infra.extensions import db
from portal.infra.models import (
    Invoice,
    InvoiceKind,
    Payment,
    PaymentStatus,
    Subscription,
    SubscriptionStatus,
    User,
)
from portal.plugin_api.contracts import (
    PaymentProvider,
    ProviderError,
    SubscriptionChanged,
    SubscriptionState,
)
from portal.rules import einvoicing, invoicing, payments
from portal.rules.catalogue import Catalogue, Period
from portal.rules.money import Money
from portal.rules.refunds import back_to_free as _free

MAX_EXTENSION_DAYS = 366


class StaffRefused(Exception):
    """Why an action was not carried out; ``params`` fill the translated message."""

    def __init__(self, code: str, **params: object) -> None:
        super().__init__(code, params)
        self.code = code
        self.params = params


def _lock_sub(sub_id: int, version: int) -> Subscription:
    sub = db.session.scalar(
        select(Subscription)
        .where(Subscription.id == sub_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if not isinstance(sub, Subscription):
        db.session.rollback()
        raise StaffRefused("not_found")
    if sub.version != version:
        db.session.rollback()
        raise StaffRefused("changed")
    return sub


Before = tuple[dict[str, object], SubscriptionState]


def _before(sub: Subscription) -> Before:
    """The subscription as the audit log and the ``subscription_changed`` hook see it."""
    return audit.subscription_state(sub), payments.state(sub)


def _finish(
    sub: Subscription,
    actor: User,
    action: str,
    before: Before,
    now: dt.datetime,
    note: str | None = None,
) -> Subscription:
    audit.record(
        actor=actor,
        action=action,
        account_id=sub.account_id,
        object_type="subscription",
        object_id=sub.id,
        before=before[0],
        after=audit.subscription_state(sub),
        note=note,
        now=now,
    )
    db.session.commit()
    _announce(sub, before[1], action, now)
    return sub


def _announce(sub: Subscription, before: SubscriptionState, reason: str, now: dt.datetime) -> None:
    from portal.plugin_api.registry import registry

    registry().hook.subscription_changed(
        event=SubscriptionChanged(
            account_id=sub.account_id,
            subscription_id=sub.id,
            before=before,
            after=payments.state(sub),
            reason=f"staff:{reason}",
            changed_at=now,
        )
    )


def schedule_monthly(*, sub_id: int, version: int, actor: User, now: dt.datetime) -> Subscription:
    """R7: a yearly subscription becomes monthly from its next renewal."""
    sub = _lock_sub(sub_id, version)
    if not sub.is_paid or sub.period != Period.YEAR:
        db.session.rollback()
        raise StaffRefused("not_yearly")
    if sub.next_period == Period.MONTH:
        db.session.rollback()
        raise StaffRefused("already_scheduled")
    before = _before(sub)
    sub.next_period = Period.MONTH.value
    return _finish(sub, actor, "schedule_monthly", before, now)


def schedule_currency(
    *,
    sub_id: int,
    version: int,
    currency: str,
    catalogue: Catalogue,
    actor: User,
    now: dt.datetime,
) -> Subscription:
    """The next period (from the renewal) is billed in ``currency``. Refused while account
    credit remains: it is in the old currency and a renewal could not use it."""
    sub = _lock_sub(sub_id, version)
    if not sub.is_paid:
        db.session.rollback()
        raise StaffRefused("not_paid")
    if currency not in catalogue.currencies:
        db.session.rollback()
        raise StaffRefused("unknown_currency", currency=currency)
    if currency == (sub.next_currency or sub.currency):
        db.session.rollback()
        raise StaffRefused("same_currency", currency=currency)
    if sub.credit_minor:
        db.session.rollback()
        raise StaffRefused("credit_left", credit=str(sub.credit))
    before = _before(sub)
    sub.next_currency = None if currency == sub.currency else currency
    return _finish(sub, actor, "schedule_currency", before, now)


def return_to_free(
    *,
    sub_id: int,
    version: int,
    free_agents: int,
    actor: User,
    note: str | None,
    now: dt.datetime,
) -> Subscription:
    """R16: the account goes back to Free at once (no refund: refund separately)."""
    sub = _lock_sub(sub_id, version)
    if not sub.is_paid:
        db.session.rollback()
        raise StaffRefused("already_free")
    before = _before(sub)
    _free(sub, free_agents)
    sub.status = SubscriptionStatus.ACTIVE.value
    sub.next_period = sub.next_currency = None
    sub.renewal_attempts = 0
    sub.retry_at = sub.suspended_at = None
    sub.suspended_reason = None
    return _finish(sub, actor, "return_to_free", before, now, note)


def extend_period(
    *,
    sub_id: int,
    version: int,
    days: int,
    actor: User,
    note: str | None,
    now: dt.datetime,
    today: dt.date,
) -> Subscription:
    """Give ``days`` more to the current period (a goodwill gesture). A subscription being
    retried or suspended whose new end is in the future is active again."""
    if not 1 <= days <= MAX_EXTENSION_DAYS:
        raise StaffRefused("days_range", max=MAX_EXTENSION_DAYS)
    sub = _lock_sub(sub_id, version)
    if not sub.is_paid or sub.period_end is None:
        db.session.rollback()
        raise StaffRefused("not_paid")
    before = _before(sub)
    sub.period_end = sub.period_end + dt.timedelta(days=days)
    if sub.period_end > today and sub.status != SubscriptionStatus.ACTIVE:
        sub.status = SubscriptionStatus.ACTIVE.value
        sub.renewal_attempts = 0
        sub.retry_at = sub.suspended_at = None
        sub.suspended_reason = None
    return _finish(sub, actor, "extend_period", before, now, note)


@dataclass(frozen=True)
class StaffRefund:
    payment: Payment
    credit_note: Invoice | None


def refund(
    *,
    payment_id: int,
    refunded_seen: int,
    amount: Money,
    providers: Callable[[str], PaymentProvider | None],
    seller: Mapping[str, str],
    render: invoicing.Renderer,
    actor: User,
    note: str | None,
    now: dt.datetime,
    today: dt.date,
) -> StaffRefund:
    """Refund ``amount`` of a payment (all or part of what remains) through its provider,
    with a credit note for that amount. The package is not changed (do that separately)."""
    payment = db.session.scalar(
        select(Payment)
        .where(Payment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if not isinstance(payment, Payment):
        db.session.rollback()
        raise StaffRefused("not_found")
    if payment.refunded_minor != refunded_seen:
        db.session.rollback()
        raise StaffRefused("changed")
    if payment.status != PaymentStatus.PAID:
        db.session.rollback()
        raise StaffRefused("not_refundable")
    remaining = payment.amount_minor - payment.refunded_minor
    if amount.currency != payment.currency or not 0 < amount.minor <= remaining:
        db.session.rollback()
        raise StaffRefused("amount_range", max=str(Money(remaining, payment.currency)))
    invoice = db.session.scalar(
        select(Invoice).where(Invoice.payment_id == payment.id, Invoice.kind == InvoiceKind.INVOICE)
    )
    if invoice is not None:
        rate = invoicing.from_content(invoice.content, None).vat_rate
        try:
            invoicing.split_gross(amount.minor, rate)
        except invoicing.SplitRefused as refused:
            db.session.rollback()
            below, above = refused.nearest
            raise StaffRefused(
                "amount_split",
                below=str(Money(below, payment.currency)),
                above=str(Money(above, payment.currency)),
            ) from None
    provider = providers(payment.provider)
    if provider is None or payment.charge_ref is None:
        db.session.rollback()
        raise StaffRefused("no_provider")
    if provider.can_refund is not True:  # the provider declares it cannot give money back
        db.session.rollback()
        raise StaffRefused("cannot_refund")
    before = {"refunded_minor": payment.refunded_minor, "status": payment.status}
    key = f"staff-refund-{payment.public_id}-{payment.refunded_minor}-{amount.minor}"
    charge_ref, provider_name = payment.charge_ref, payment.provider
    invoice_id = invoice.id if invoice is not None else None
    # Nothing was written: the lock ends before the provider is asked (security issue,
    # point 8). A double submit asks with the same key and gets the same refund; the one
    # that comes second finds the amount changed below and applies nothing.
    db.session.rollback()
    try:
        event = provider.refund(charge_ref=charge_ref, amount=amount, idempotency_key=key)
    except ProviderError as exc:
        raise StaffRefused("provider_error", message=str(exc)) from exc
    payment = db.session.scalar(
        select(Payment)
        .where(Payment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert isinstance(payment, Payment)
    if payment.refunded_minor != refunded_seen:
        db.session.rollback()  # the other submit applied this refund
        raise StaffRefused("changed")
    invoice = db.session.get(Invoice, invoice_id) if invoice_id is not None else None
    # The provider reports the total refunded so far; the one operation applies it here.
    try:
        payments.apply_in_transaction(provider_name, event, now=now)
    except payments.DuplicateEvent:  # (rolled back) the other submit applied it first
        raise StaffRefused("changed") from None
    audit.record(
        actor=actor,
        action="refund",
        account_id=payment.account_id,
        object_type="payment",
        object_id=payment.public_id,
        before=before,
        after={
            "refunded_minor": payment.refunded_minor,
            "status": payment.status,
            "amount": amount,
            "provider_event": event.event_id,
        },
        note=note,
        now=now,
    )
    if invoice is None:
        db.session.commit()
        return StaffRefund(payment=payment, credit_note=None)
    with force_locale(invoice.language):
        reason = note or str(gettext("Refund by Pakiet staff"))
    credit_note = invoicing.issue_partial_credit_note(  # commits the refund with it
        invoice_id=invoice.id,
        gross_minor=amount.minor,
        reason=reason,
        seller=seller,
        render=render,
        now=now,
        today=today,
    )
    einvoicing.after_issue(credit_note.id, now=now)  # KSeF, once committed
    return StaffRefund(payment=payment, credit_note=credit_note)


def revoke_sessions(*, account_id: int, actor: User, now: dt.datetime) -> int:
    """Log every user of the account out, on every device (a stolen or shared cookie stops
    working at its next request): the number of users."""
    from portal.infra.models import Account
    from portal.rules import accounts

    if db.session.get(Account, account_id) is None:
        raise StaffRefused("not_found")
    users = accounts.revoke_sessions(account_id=account_id)
    audit.record(
        actor=actor,
        action="revoke_sessions",
        account_id=account_id,
        object_type="account",
        object_id=account_id,
        after={"users": users},
        now=now,
    )
    db.session.commit()
    return users


def resend_invoice(*, invoice_id: int, actor: User, now: dt.datetime) -> Invoice:
    """E-mail the invoice again (through the outbox). A double submit within the same
    minute sends it once."""
    from portal.infra import mail

    invoice = db.session.get(Invoice, invoice_id)
    if invoice is None:
        raise StaffRefused("not_found")
    invoicing.ensure_rendered(invoice, now=now)  # the e-mail attaches its PDF
    key = f"invoice-{invoice.id}-resend-{now:%Y%m%d%H%M}"
    if mail.queue(invoice.account_id, "invoice", key=key, now=now, invoice_id=invoice.id):
        audit.record(
            actor=actor,
            action="resend_invoice",
            account_id=invoice.account_id,
            object_type="invoice",
            object_id=invoice.number,
            now=now,
        )
    db.session.commit()
    mail.deliver_pending(now=now, key=key)
    return invoice
