"""Payments: the one operation through which provider events change money state.

Providers (plugins) talk to their service and report :class:`PaymentEvent` objects;
only this module writes payment, order and activation rows. Applying an event is
idempotent per provider event (a unique row per ``(provider, event_id)``) and per
payment (a paid payment is not paid again), checks amount and currency against the
order, and moves payments and orders along the state machines below.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import Row, func, select
from sqlalchemy.exc import IntegrityError

from portal.infra.extensions import db
from portal.infra.models import (
    Account,
    BillingInfo,
    Order,
    OrderStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    ProviderEvent,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from portal.plugin_api.contracts import (
    PaymentEvent,
    PaymentEventKind,
    PaymentProvider,
    PaymentRequest,
    PaymentSettled,
    ProviderError,
    Redirect,
    SavedMethod,
    SubscriptionChanged,
    SubscriptionState,
)
from portal.rules import orders, renewal_off
from portal.rules.catalogue import PackageCode, Period
from portal.rules.money import Money
from portal.rules.tax import missing_for_invoice

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Why an order is not paid as it was: its VAT no longer follows from the buyer's data.
TAX_CHANGED = "tax_changed"
#: Why an order cannot be paid any more: it is past its expiry.
ORDER_EXPIRED = "order_expired"
# The billing data lack the country or address an invoice needs: nothing is charged.
BILLING_DATA_MISSING = "billing_data_missing"

#: R8: refused whatever the provider, and refunded if captured. Which other brands a
#: provider's saved methods may have is the provider's own declaration
#: (``PaymentProvider.renewable_brands``).
REFUSED_BRANDS = frozenset({"amex"})

PAYMENT_TRANSITIONS: Mapping[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.PENDING: frozenset({PaymentStatus.PAID, PaymentStatus.FAILED}),
    # A late success after a failure is real money: it is accepted (then checked).
    PaymentStatus.FAILED: frozenset({PaymentStatus.PAID}),
    PaymentStatus.PAID: frozenset({PaymentStatus.REFUNDED}),
    PaymentStatus.REFUNDED: frozenset(),
}

ORDER_TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.PAID, OrderStatus.FAILED, OrderStatus.SUPERSEDED}),
    OrderStatus.SUPERSEDED: frozenset(),
    OrderStatus.FAILED: frozenset(),
    OrderStatus.PAID: frozenset({OrderStatus.REFUNDED}),
    OrderStatus.REFUNDED: frozenset(),
}


# Rows are read FOR UPDATE with populate_existing: a row already in the session (loaded
# before the lock, say by the return view) is refreshed with what the lock sees, so a
# webhook that committed meanwhile is not applied twice.


class IllegalTransition(RuntimeError):
    """A state change the state machine does not allow (a bug, never user input)."""


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # this provider event was applied before
    ALREADY_SETTLED = "already_settled"  # e.g. the webhook after the return did it
    UNKNOWN_PAYMENT = "unknown_payment"
    MISMATCH = "mismatch"  # amount or currency differ from the order: not activated
    BRAND_REFUSED = "brand_refused"
    STALE = "stale"  # the subscription changed since the order: refunded
    IGNORED = "ignored"


class PaymentRefused(Exception):
    """The payment cannot start; ``code`` names why (translated by the view)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def brand_refused(provider_name: str, brand: str) -> bool:
    """Whether a payment made with a method of ``brand`` is refused (and refunded): R8's
    American Express always; for a provider that keeps methods, any brand it does not
    declare it can charge again (Stripe: Visa and Mastercard; a JCB card is refused)."""
    if brand.lower() in REFUSED_BRANDS:
        return True
    provider = _registered_provider(provider_name)
    return provider is not None and provider.saves_methods and not provider.charges_again(brand)


def renewable(provider_name: str, brand: str) -> bool:
    """Whether a method of ``brand`` at ``provider_name`` is worth keeping: renewals can
    charge it again."""
    provider = _registered_provider(provider_name)
    return (
        brand.lower() not in REFUSED_BRANDS
        and provider is not None
        and provider.charges_again(brand)
    )


def provider_can_refund(provider_name: str) -> bool:
    """Whether the provider of a payment declares it can give money back (``can_refund``);
    a provider switched off since cannot."""
    provider = _registered_provider(provider_name)
    return provider is not None and provider.can_refund is True


def refused_brand_code(brand: str) -> str:
    """Why a method of ``brand`` is refused: R8 names American Express; others in general."""
    return "amex_not_accepted" if brand.lower() == "amex" else "brand_not_accepted"


def payment_transition(payment: Payment, to: PaymentStatus) -> None:
    current = PaymentStatus(payment.status)
    if to not in PAYMENT_TRANSITIONS[current]:
        raise IllegalTransition(f"payment {payment.public_id}: {current} -> {to}")
    payment.status = to.value


def order_transition(order: Order, to: OrderStatus) -> None:
    current = OrderStatus(order.status)
    if to not in ORDER_TRANSITIONS[current]:
        raise IllegalTransition(f"order {order.public_id}: {current} -> {to}")
    order.status = to.value


# -- starting a payment -------------------------------------------------------------------


@dataclass(frozen=True)
class Urls:
    """Where a provider sends the customer back, per payment public id."""

    return_url: str
    cancel_url: str
    webhook_url: str | None = None  # where the provider posts its events for this payment


UrlMaker = Callable[[str, str], Urls]  # (payment public id, provider name) -> Urls


def default_method(account_id: int, provider: str | None = None) -> PaymentMethod | None:
    stmt = select(PaymentMethod).where(
        PaymentMethod.account_id == account_id,
        PaymentMethod.removed_at.is_(None),
        PaymentMethod.is_default.is_(True),
    )
    if provider is not None:
        stmt = stmt.where(PaymentMethod.provider == provider)
    method = db.session.scalar(stmt)
    return method if isinstance(method, PaymentMethod) else None


def saved(method: PaymentMethod | Row[Any]) -> SavedMethod:
    """What a provider is given of a saved method: from its row, or from a statement's row
    with the same column names (My package's, portal/rules/overview.py)."""
    return SavedMethod(
        provider_ref=method.provider_ref,
        brand=method.brand,
        customer_ref=method.customer_ref,
        last4=method.last4,
        exp_month=method.exp_month,
        exp_year=method.exp_year,
        email=method.email,
    )


def _lock_order(order_id: int) -> Order:
    order = db.session.scalar(
        select(Order)
        .where(Order.id == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert isinstance(order, Order)
    return order


def _attempt_key(order: Order) -> str:
    """One idempotency key per attempt: a retry after a failure is a new attempt."""
    failed = db.session.scalar(
        select(func.count())
        .select_from(Payment)
        .where(Payment.order_id == order.id, Payment.status == PaymentStatus.FAILED)
    )
    return f"{order.public_id}-{failed}"


def _payment_for_attempt(order: Order, provider: str, key: str, now: dt.datetime) -> Payment:
    existing = db.session.scalar(select(Payment).where(Payment.idempotency_key == key))
    if isinstance(existing, Payment):
        return existing
    payment = Payment(
        public_id=secrets.token_hex(16),
        account_id=order.account_id,
        order_id=order.id,
        provider=provider,
        idempotency_key=key,
        status=PaymentStatus.PENDING.value,
        amount_minor=order.total_minor,
        currency=order.currency,
        created_at=now,
    )
    db.session.add(payment)
    try:
        db.session.flush()
    except IntegrityError:  # a concurrent "Pay" made it first: use that one
        db.session.rollback()
        again = db.session.scalar(select(Payment).where(Payment.idempotency_key == key))
        assert isinstance(again, Payment)
        return again
    return payment


def start(
    *,
    account: Account,
    order: Order,
    provider: PaymentProvider,
    description: str,
    customer_email: str,
    language: str,
    make_urls: UrlMaker,
    now: dt.datetime,
) -> Redirect | Payment:
    """Start paying ``order`` with ``provider`` (see module docs).

    A saved method of that provider is charged off-session at once and the payment is
    returned settled, failed or awaiting authentication; otherwise the customer goes to
    the provider's hosted page (``Redirect``). Concurrent calls for one order share one
    attempt and one provider idempotency key, so the customer is charged once.
    """
    order = _lock_order(order.id)
    if order.status != OrderStatus.PENDING:
        raise PaymentRefused("order_closed")
    if now >= order.expires_at:
        raise PaymentRefused(ORDER_EXPIRED)
    billing = db.session.scalar(
        select(BillingInfo).where(BillingInfo.account_id == order.account_id)
    )
    if missing_for_invoice(billing):
        db.session.commit()
        raise PaymentRefused(BILLING_DATA_MISSING)
    if not tax_still_holds(order):
        # Placed from other buyer data: cancelled, with any session it opened (DESIGN.md 2).
        db.session.commit()
        close_stale_orders(account_id=order.account_id, now=now, providers=_registered_provider)
        raise PaymentRefused(TAX_CHANGED)
    if order.currency not in provider.currencies:
        raise PaymentRefused("currency_unsupported")
    key = _attempt_key(order)
    payment = _payment_for_attempt(order, provider.name, key, now)
    if payment.status != PaymentStatus.PENDING:
        db.session.commit()
        return payment
    urls = make_urls(payment.public_id, provider.name)
    method = default_method(account.id, provider.name)
    request = PaymentRequest(
        payment_id=payment.public_id,
        idempotency_key=key,
        amount=payment.amount,
        description=description,
        customer_email=customer_email,
        language=language,
        return_url=urls.return_url,
        cancel_url=urls.cancel_url,
        webhook_url=urls.webhook_url,
        save_method=True,
        customer_ref=method.customer_ref if method else _customer_ref(account.id, provider.name),
    )
    # No transaction stays open while the provider is asked (security issue, point 8): the
    # attempt is committed first; a concurrent Pay finds it and asks with the same
    # idempotency key, so the provider charges or opens one session for both.
    payment_id = payment.id
    if method is not None:
        payment.method_id = method.id
        card = saved(method)
        db.session.commit()
        try:
            event = provider_call(provider, "charge_saved", provider.charge_saved, request, card)
        except ProviderError as exc:
            # The provider did not answer (or its plugin failed): this attempt ends failed,
            # so nothing stays "pending" and Pay starts a new attempt. Should the charge have
            # gone through after all, its report finds this order paid or changed and is
            # refunded.
            log.warning(
                "saved-method charge of %s at %s failed: %s", payment.public_id, provider.name, exc
            )
            _fail_attempt(payment.id, "provider_unavailable")
            db.session.refresh(payment)
            return payment
        apply_event(provider.name, event, now=now)
        db.session.refresh(payment)
        return payment
    db.session.commit()
    try:
        redirect = provider_call(provider, "start_payment", provider.start_payment, request)
    except ProviderError:
        _fail_attempt(payment_id, "provider_unavailable")  # Pay starts a new attempt
        raise
    started = db.session.scalar(
        select(Payment)
        .where(Payment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert isinstance(started, Payment)
    if started.provider_ref is None:
        started.provider_ref = redirect.provider_ref
    db.session.commit()
    return redirect


def provider_call(provider: PaymentProvider, what: str, call: Callable[..., T], *args: Any) -> T:
    """``call(*args)``; anything but a :class:`ProviderError` raised by the provider's plugin
    (a bug) is logged with the plugin's name and becomes one ("not available now"), so the
    customer gets a clear message and the attempt ends failed instead of a 500 and an
    attempt left pending."""
    try:
        return call(*args)
    except ProviderError:
        raise
    except Exception as exc:
        from portal.plugin_api.registry import registry

        log.exception(
            "payment provider %r of plugin %r failed in %s",
            provider.name,
            registry().owner("payment provider", provider.name),
            what,
        )
        raise ProviderError(f"{provider.name}.{what} failed: {exc!r}") from exc


def _customer_ref(account_id: int, provider: str) -> str | None:
    """A provider customer id known from an earlier saved method, if any."""
    ref = db.session.scalar(
        select(PaymentMethod.customer_ref)
        .where(PaymentMethod.account_id == account_id, PaymentMethod.provider == provider)
        .order_by(PaymentMethod.id.desc())
        .limit(1)
    )
    return ref if isinstance(ref, str) else None


# -- applying provider events ---------------------------------------------------------------


def _record_event(provider: str, event: PaymentEvent, now: dt.datetime) -> ProviderEvent | None:
    """Claim the event; ``None`` when it was applied before (a replayed webhook).

    A record of it that named no known payment (it came before the payment was committed,
    as a webhook can overtake the transaction that starts a payment) is taken over: the
    event is applied now, once. A redelivery finds the payment, where it used to be
    answered as a duplicate and lost."""
    claim = _claim_statement(db.session.get_bind().dialect.name)
    if claim is not None:
        values = {
            "provider": provider,
            "event_id": event.event_id,
            "type": event.kind.value,
            "outcome": Outcome.IGNORED.value,
            "received_at": now,
        }
        # The claim reads nothing of what the session holds pending: it does not flush it
        # (a renewal batch's changes go together at its commit, issue 26).
        with db.session.no_autoflush:
            taken = db.session.scalars(claim, values, execution_options={"populate_existing": True})
            row = taken.first()
        if row is None:
            db.session.rollback()
        return row
    row = ProviderEvent(
        provider=provider,
        event_id=event.event_id,
        type=event.kind.value,
        outcome=Outcome.IGNORED.value,
        received_at=now,
    )
    db.session.add(row)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return None
    return row


@functools.cache
def _claim_statement(dialect: str) -> Any:
    """The claim of an event as one statement (built once per dialect; ``None`` where there
    is no ``ON CONFLICT``, which claims by INSERT and takes nothing over): a new record, or
    one that named no known payment, reset and locked; no row when the event was applied
    before. On PostgreSQL a concurrent claim of the same record waits for this one's
    transaction and then sees its outcome."""
    stmt = _taking_over(dialect, ProviderEvent, ("outcome",))
    return None if stmt is None else stmt.returning(ProviderEvent)


def _taking_over(dialect: str, target: Any, columns: tuple[str, ...]) -> Any:
    """An INSERT of a ``provider_event`` record that, when one of the same id exists and
    named no known payment, takes it over (``columns`` from the new values) and otherwise
    writes nothing; ``None`` for a database without ``ON CONFLICT``."""
    from sqlalchemy.dialects import postgresql, sqlite

    inserts: dict[str, Callable[..., Any]] = {
        "postgresql": postgresql.insert,
        "sqlite": sqlite.insert,
    }
    if dialect not in inserts:
        return None
    stmt = inserts[dialect](target)
    return stmt.on_conflict_do_update(
        index_elements=["provider", "event_id"],
        set_={column: stmt.excluded[column] for column in columns},
        where=ProviderEvent.outcome == Outcome.UNKNOWN_PAYMENT.value,
    )


def _find_payment(provider: str, event: PaymentEvent) -> Payment | None:
    stmt = select(Payment).where(Payment.provider == provider)
    if event.payment_id:
        stmt = stmt.where(Payment.public_id == event.payment_id)
    elif event.provider_ref or event.charge_ref:
        # Refunds and some failures do not echo core's id: match the provider's ids.
        refs = {ref for ref in (event.provider_ref, event.charge_ref) if ref}
        stmt = stmt.where(Payment.provider_ref.in_(refs) | Payment.charge_ref.in_(refs))
    else:
        return None
    payment = db.session.scalar(stmt.with_for_update().execution_options(populate_existing=True))
    return payment if isinstance(payment, Payment) else None


@dataclass(frozen=True)
class Held:
    """Rows the caller's transaction already holds locked (the renewal run: the
    subscription since its claim, the order and payment it made or locked for the charge):
    the handlers take them as they are instead of locking and reading them again."""

    payment: Payment
    order: Order
    subscription: Subscription


@dataclass
class _Context:
    now: dt.datetime
    refund: Callable[[Payment, str], None]
    held: Held | None = None
    # Hook calls to make once the transaction is committed.
    notices: list[Callable[[], object]] = field(default_factory=list)


def apply_event(
    provider_name: str,
    event: PaymentEvent,
    *,
    now: dt.datetime,
    refund: Callable[[Payment, str], None] | None = None,
) -> Outcome:
    """Apply one provider event, once. The only way payment state changes.

    ``refund(payment, reason)`` is called for money that must go back (a refused card
    brand, a quote that no longer holds); by default it asks the payment's provider.
    """
    row = _record_event(provider_name, event, now)
    if row is None:
        return Outcome.DUPLICATE
    outcome, notices = _apply(row, provider_name, event, now, refund)
    db.session.commit()
    for notice in notices:
        notice()
    return outcome


class DuplicateEvent(RuntimeError):
    """The event was applied before (raised where the caller's transaction must end)."""


def apply_in_transaction(
    provider_name: str,
    event: PaymentEvent,
    *,
    now: dt.datetime,
    refund: Callable[[Payment, str], None] | None = None,
    held: Held | None = None,
) -> tuple[Outcome, list[Callable[[], object]]]:
    """:func:`apply_event` inside the caller's transaction (the renewal run's, which holds
    the subscription's lock, and the order's and payment's: ``held``). The caller commits,
    then makes the returned calls (hooks, the invoice). A replayed event raises
    :class:`DuplicateEvent` after a rollback."""
    recorded = _record_event(provider_name, event, now)
    if recorded is None:
        raise DuplicateEvent(event.event_id)
    return _apply(recorded, provider_name, event, now, refund, held)


def _about(payment: Payment, provider_name: str, event: PaymentEvent) -> bool:
    return (payment.public_id, payment.provider) == (event.payment_id, provider_name)


def _apply(
    row: ProviderEvent,
    provider_name: str,
    event: PaymentEvent,
    now: dt.datetime,
    refund: Callable[[Payment, str], None] | None,
    held: Held | None = None,
) -> tuple[Outcome, list[Callable[[], object]]]:
    if held is not None and not _about(held.payment, provider_name, event):
        held = None  # an event about another payment: nothing of it is held
    payment = held.payment if held is not None else _find_payment(provider_name, event)
    if payment is None:
        log.warning("%s event %s names no known payment", provider_name, event.event_id)
        row.outcome = Outcome.UNKNOWN_PAYMENT.value
        return Outcome.UNKNOWN_PAYMENT, []
    row.payment_id = payment.id
    if event.provider_ref and payment.provider_ref is None:
        payment.provider_ref = event.provider_ref
    ctx = _Context(now=now, refund=refund or _no_refund, held=held)
    if refund is None:
        # Money for an order that no longer holds goes back after this transaction is
        # committed: no transaction stays open across the provider's call (security issue,
        # point 8). Should the process stop first, the background run finds the payment
        # (paid, with a failure code, not refunded) and asks again (refund_due).
        ctx.refund = lambda payment, reason: ctx.notices.append(
            functools.partial(refund_stale, payment.id)
        )
    outcome = _HANDLERS[event.kind](payment, event, ctx)
    row.outcome = outcome.value
    return outcome, ctx.notices


def _succeeded(payment: Payment, event: PaymentEvent, ctx: _Context) -> Outcome:
    """Webhooks overtake each other, so the end state must not depend on their order: a
    refund reported before the payment still ends refunded, and a saved method reported
    after it (PayPal's approval) is still kept."""
    if payment.status in (PaymentStatus.PAID, PaymentStatus.REFUNDED):
        _keep_method(payment, event, ctx.now)
        return Outcome.ALREADY_SETTLED
    outcome = _settle(payment, event, ctx)
    if outcome is Outcome.APPLIED and payment.refunded_minor >= payment.amount_minor:
        _refund_in_full(payment)
    return outcome


def _keep_method(payment: Payment, event: PaymentEvent, now: dt.datetime) -> None:
    """A method a later report of a settled payment names, if none was saved from it."""
    if event.method is None or payment.method_id is not None or event.amount != payment.amount:
        return
    if not renewable(payment.provider, event.method.brand) or payment.failure_code:
        return
    payment.method_id = save_method(payment.account_id, payment.provider, event.method, now).id


def _settle(payment: Payment, event: PaymentEvent, ctx: _Context) -> Outcome:
    if event.amount != payment.amount:
        log.error(
            "payment %s: provider reports %s, expected %s; not activated",
            payment.public_id,
            event.amount,
            payment.amount,
        )
        payment.failure_code = "amount_mismatch"
        return Outcome.MISMATCH
    payment_transition(payment, PaymentStatus.PAID)
    payment.settled_at = ctx.now
    payment.failure_code = payment.failure_message = payment.action_url = None
    payment.charge_ref = event.charge_ref or payment.charge_ref
    held = ctx.held
    if held is not None and held.order.id == payment.order_id:
        order: Order | None = held.order
    else:
        order = (
            db.session.get(Order, payment.order_id, populate_existing=True)
            if payment.order_id
            else None
        )
    brand = event.method.brand.lower() if event.method else None
    if brand is not None and brand_refused(payment.provider, brand):
        payment.failure_code = refused_brand_code(brand)
        ctx.refund(payment, "brand_not_accepted")
        if order is not None and order.status == OrderStatus.PENDING:
            order_transition(order, OrderStatus.FAILED)
        return Outcome.BRAND_REFUSED
    if event.method is not None and renewable(payment.provider, event.method.brand):
        payment.method_id = save_method(
            payment.account_id, payment.provider, event.method, ctx.now, payment.method_id
        ).id
    ctx.notices.append(_settled_notice(payment, ctx.now))
    if order is None:
        return Outcome.APPLIED
    sub: Subscription | None
    if held is not None and held.subscription.account_id == payment.account_id:
        sub = held.subscription
    else:
        sub = db.session.scalar(
            select(Subscription)
            .where(Subscription.account_id == payment.account_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    assert isinstance(sub, Subscription)
    # A checkout order's VAT was decided from the buyer data of its placing; paid after that
    # data changed the tax (a hosted page opened before, a webhook after the capture), it is
    # not applied: the invoice would pair the new buyer with the old VAT. A renewal's tax is
    # decided by the run that charges it (held), so it is not asked again.
    tax_changed = (
        held is None
        and not orders.is_renewal(order)
        and order.status in (OrderStatus.PENDING, OrderStatus.SUPERSEDED)
        and not tax_still_holds(order)
    )
    if (
        tax_changed
        or order.status != OrderStatus.PENDING
        or sub.version != order.subscription_version
    ):
        # Paid for a quote that no longer holds (another change got there first): the money
        # goes back in full.
        code = TAX_CHANGED if tax_changed else "quote_stale"
        payment.failure_code = code
        ctx.refund(payment, code)
        if order.status == OrderStatus.PENDING:
            order_transition(order, OrderStatus.SUPERSEDED)
        return Outcome.STALE
    order_transition(order, OrderStatus.PAID)
    reason = "renewal" if order.idempotency_key.startswith("renewal-") else "payment"
    ctx.notices.append(_changed_notice(sub, order, ctx.now, reason=reason))
    ctx.notices.append(_invoice_notice(payment.id, ctx.now))
    return Outcome.APPLIED


def _failed(payment: Payment, event: PaymentEvent, ctx: _Context) -> Outcome:
    if payment.status != PaymentStatus.PENDING:
        return Outcome.ALREADY_SETTLED
    payment_transition(payment, PaymentStatus.FAILED)
    payment.failure_code = (event.failure_code or "failed")[:64]
    payment.failure_message = (event.failure_message or "")[:500] or None
    payment.action_url = None
    return Outcome.APPLIED


def _requires_action(payment: Payment, event: PaymentEvent, ctx: _Context) -> Outcome:
    if payment.status != PaymentStatus.PENDING:
        return Outcome.ALREADY_SETTLED
    payment.action_url = event.action_url
    payment.failure_code = event.failure_code or "authentication_required"
    if event.action_url:
        ctx.notices.append(_action_notice(payment, event, ctx.now))
    return Outcome.APPLIED


def _refunded(payment: Payment, event: PaymentEvent, ctx: _Context) -> Outcome:
    if event.amount is None or event.amount.currency != payment.currency:
        return Outcome.MISMATCH
    total = min(event.amount.minor, payment.amount_minor)
    if total <= payment.refunded_minor:
        return Outcome.ALREADY_SETTLED
    payment.refunded_minor = total
    if total == payment.amount_minor and payment.status == PaymentStatus.PAID:
        _refund_in_full(payment)
    # A refund of a payment not settled yet is kept: its success, when it arrives, ends
    # refunded (see _succeeded).
    return Outcome.APPLIED


def _refund_in_full(payment: Payment) -> None:
    payment_transition(payment, PaymentStatus.REFUNDED)
    order = (
        db.session.get(Order, payment.order_id, populate_existing=True)
        if payment.order_id
        else None
    )
    if order is not None and order.status == OrderStatus.PAID:
        order_transition(order, OrderStatus.REFUNDED)


_HANDLERS = {
    PaymentEventKind.SUCCEEDED: _succeeded,
    PaymentEventKind.FAILED: _failed,
    PaymentEventKind.REQUIRES_ACTION: _requires_action,
    PaymentEventKind.REFUNDED: _refunded,
}


def save_method(
    account_id: int,
    provider: str,
    method: SavedMethod,
    now: dt.datetime,
    charged_id: int | None = None,
) -> PaymentMethod:
    """Store a method saved at ``provider`` and make it the account's default (R8).
    ``charged_id``: the stored method the payment was charged with, most often this one
    (a renewal), found in the session without a query."""
    row = db.session.get(PaymentMethod, charged_id) if charged_id is not None else None
    if row is None or (row.provider, row.provider_ref) != (provider, method.provider_ref):
        row = db.session.scalar(
            select(PaymentMethod).where(
                PaymentMethod.provider == provider,
                PaymentMethod.provider_ref == method.provider_ref,
            )
        )
    if not isinstance(row, PaymentMethod):
        row = PaymentMethod(
            account_id=account_id,
            provider=provider,
            provider_ref=method.provider_ref,
            created_at=now,
        )
        db.session.add(row)
    elif row.account_id != account_id:
        raise PaymentRefused("method_of_another_account")
    row.customer_ref = method.customer_ref
    row.brand = method.brand.lower()
    row.last4 = method.last4
    row.exp_month = method.exp_month
    row.exp_year = method.exp_year
    row.email = method.email
    row.removed_at = None
    if row.id is None:
        db.session.flush()  # its id, for the payment
    if not row.is_default:  # make_default keeps one default per account
        make_default(row)
    return row


def make_default(method: PaymentMethod) -> None:
    others = db.session.scalars(
        select(PaymentMethod).where(
            PaymentMethod.account_id == method.account_id, PaymentMethod.id != method.id
        )
    )
    for other in others:
        other.is_default = False
    method.is_default = True


def _no_refund(payment: Payment, reason: str) -> None:
    raise AssertionError("replaced in _apply")


def refund_stale(payment_id: int) -> bool:
    """Give back a payment that came for an order that no longer holds (its failure code
    says why), asked with no transaction open; ``True`` once it is refunded. The key is the
    payment's own, so asking again (the background run, a replayed report) refunds once."""
    from portal.plugin_api.registry import registry

    payment = db.session.get(Payment, payment_id, populate_existing=True)
    if (
        payment is None
        or payment.status != PaymentStatus.PAID
        or payment.failure_code is None
        or payment.refunded_minor >= payment.amount_minor
    ):
        db.session.rollback()
        return False
    name, charge_ref, amount, public_id = (
        payment.provider,
        payment.charge_ref,
        payment.amount,
        payment.public_id,
    )
    db.session.rollback()
    provider = registry().payment_providers.get(name)
    if provider is None or charge_ref is None or provider.can_refund is not True:
        log.error("payment %s must be refunded by staff, outside the portal (%s)", public_id, name)
        return False
    try:
        event = provider.refund(
            charge_ref=charge_ref, amount=amount, idempotency_key=f"refund-{public_id}-stale"
        )
    except ProviderError as exc:
        log.warning("refund of %s at %s postponed: %s", public_id, name, exc)
        return False
    payment = db.session.scalar(
        select(Payment)
        .where(Payment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert isinstance(payment, Payment)
    if event.amount is not None and event.amount.currency == payment.currency:
        payment.refunded_minor = max(
            payment.refunded_minor, min(event.amount.minor, payment.amount_minor)
        )
        if payment.refunded_minor == payment.amount_minor:
            payment_transition(payment, PaymentStatus.REFUNDED)
    db.session.commit()
    return payment.status == PaymentStatus.REFUNDED


def refund_due(limit: int = 100) -> int:
    """Refund what :func:`refund_stale` could not at the time (the background run):
    payments paid for an order that no longer held and not given back yet. Payments of a
    provider that cannot refund (``can_refund``) are left to staff: not asked every run."""
    from portal.plugin_api.registry import registry

    refunding = [p.name for p in registry().payment_providers.values() if p.can_refund is True]
    due = db.session.scalars(
        select(Payment.id)
        .where(
            Payment.status == PaymentStatus.PAID.value,
            Payment.failure_code.is_not(None),
            Payment.refunded_minor < Payment.amount_minor,
            Payment.provider.in_(refunding),
        )
        .order_by(Payment.id)
        .limit(limit)
    ).all()
    db.session.rollback()
    return sum(1 for payment_id in due if refund_stale(payment_id))


# -- activation -----------------------------------------------------------------------------


def state(sub: Subscription) -> SubscriptionState:
    return SubscriptionState(
        package=sub.package,
        period=sub.period,
        agents=sub.agents,
        conversations=sub.conversations,
        currency=sub.currency,
        status=sub.status,
        period_end=sub.period_end,
        auto_renew=sub.auto_renew,
    )


def activate(sub: Subscription, order: Order, now: dt.datetime) -> None:
    """Give the account exactly what the order quoted, for the quoted period (R6, R10)."""
    record = order.quote
    sub.package = PackageCode(order.package).value
    sub.period = Period(order.period).value
    sub.agents = order.agents
    sub.conversations = order.conversations
    sub.currency = order.currency
    sub.period_start = dt.date.fromisoformat(str(record["period_start"]))
    sub.period_end = dt.date.fromisoformat(str(record["period_end"]))
    # The price of the new period is what later credit for unused time is based on.
    sub.period_net_minor = order.subtotal_minor
    sub.credit_minor = int(record["credit_after_minor"])
    sub.status = SubscriptionStatus.ACTIVE.value
    sub.auto_renew = True  # R10: a payment switches auto-renewal on
    # A paid period clears what a failed renewal or a suspension left behind.
    sub.renewal_attempts = 0
    sub.retry_at = None
    sub.suspended_at = None
    sub.suspended_reason = None


def confirm_free_change(*, account: Account, order: Order, now: dt.datetime) -> None:
    """An order with nothing to pay (credit covers it) takes effect at once."""
    order = _lock_order(order.id)
    if order.status != OrderStatus.PENDING or order.total_minor != 0:
        raise PaymentRefused("order_closed")
    if now >= order.expires_at:
        raise PaymentRefused(ORDER_EXPIRED)
    sub = db.session.scalar(
        select(Subscription)
        .where(Subscription.account_id == account.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert isinstance(sub, Subscription)
    if sub.version != order.subscription_version:
        order_transition(order, OrderStatus.SUPERSEDED)
        db.session.commit()
        raise PaymentRefused("quote_stale")
    order_transition(order, OrderStatus.PAID)
    notice = _changed_notice(sub, order, now, reason="change")
    db.session.commit()
    notice()


def _hook() -> Any:
    from portal.plugin_api.registry import registry

    return registry().hook


def _settled_notice(payment: Payment, now: dt.datetime) -> Callable[[], None]:
    event = PaymentSettled(
        account_id=payment.account_id,
        payment_id=payment.public_id,
        provider=payment.provider,
        amount=payment.amount,
        settled_at=now,
    )
    return lambda: _hook().payment_settled(event=event)


@dataclass(frozen=True)
class InvoiceDue:
    """Issue and send the invoice of a payment once it is committed (R11). A billing run
    leaves these to its invoice stage, which issues every invoice that is due."""

    payment_id: int
    now: dt.datetime

    def __call__(self) -> object:
        from portal.rules import invoicing

        return invoicing.issue_now(self.payment_id, now=self.now)


def _invoice_notice(payment_id: int, now: dt.datetime) -> Callable[[], object]:
    return InvoiceDue(payment_id, now)


def _action_notice(payment: Payment, event: PaymentEvent, now: dt.datetime) -> Callable[[], object]:
    """E-mail the link where the customer confirms a payment their bank holds (3-D Secure):
    queued in the event's transaction, sent once it is committed (or by a later run)."""
    from portal.infra import mail

    key = f"payment-action-{payment.id}-{event.event_id}"[:200]
    mail.queue(
        payment.account_id,
        "payment_action",
        key=key,
        now=now,
        amount=payment.amount,
        action_url=event.action_url,
    )
    return lambda: mail.deliver_pending(now=now, key=key)


def _changed_notice(
    sub: Subscription, order: Order, now: dt.datetime, *, reason: str
) -> Callable[[], None]:
    """Activate the order on ``sub`` and return the hook call that reports it."""
    before = state(sub)
    activate(sub, order, now)
    event = SubscriptionChanged(
        account_id=sub.account_id,
        subscription_id=sub.id,
        before=before,
        after=state(sub),
        reason=reason,
        changed_at=now,
    )
    return lambda: _hook().subscription_changed(event=event)


def cancel(payment_id: int) -> None:
    """The customer came back from the hosted page without paying."""
    _fail_attempt(payment_id, "cancelled")


def _fail_attempt(payment_id: int, code: str) -> None:
    """End a payment attempt that is still pending as failed, with ``code``; commits."""
    payment = db.session.scalar(
        select(Payment)
        .where(Payment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert isinstance(payment, Payment)
    if payment.status == PaymentStatus.PENDING:
        payment_transition(payment, PaymentStatus.FAILED)
        payment.failure_code = code
        payment.action_url = None
    db.session.commit()


# -- orders placed from other buyer data, and expired ones ---------------------------------


def tax_still_holds(order: Order) -> bool:
    """Whether the account's billing data in force now decide the order's VAT."""
    billing = db.session.scalar(
        select(BillingInfo).where(BillingInfo.account_id == order.account_id)
    )
    return orders.tax_holds(
        orders.current_pricing(), billing if isinstance(billing, BillingInfo) else None, order
    )


def unpayable_reason(order: Order, now: dt.datetime) -> str | None:
    """Why a pending checkout order cannot be paid as it is (``None`` when it can): past
    its expiry (``order_expired``), or placed from buyer data that decided another VAT
    (``tax_changed``)."""
    if order.status != OrderStatus.PENDING or orders.is_renewal(order):
        return None
    if now >= order.expires_at:
        return ORDER_EXPIRED
    if not tax_still_holds(order):
        return TAX_CHANGED
    return None


def _registered_provider(name: str) -> PaymentProvider | None:
    from portal.plugin_api.registry import registry

    return registry().payment_providers.get(name)


def close_stale_orders(
    *,
    account_id: int,
    now: dt.datetime,
    providers: Callable[[str], PaymentProvider | None] = _registered_provider,
) -> list[str]:
    """Cancel the account's open checkout orders whose VAT the buyer data in force no longer
    decide (a billing country, VAT number or its validity changed since they were placed),
    and close the provider sessions they opened, so the hosted page can no longer take
    money for them. Returns the public ids of the orders cancelled.

    The order is superseded first, then each pending attempt is closed at its provider
    (``cancel``): one the provider reports paid meanwhile is applied, and applying refunds
    it in full (``tax_changed``); the others end failed with ``tax_changed``. A provider
    that cannot answer now leaves its attempt failed here: should the hosted page take the
    money after all, the provider's report finds the order superseded and refunds it."""
    candidates = db.session.scalars(
        select(Order)
        .where(
            Order.account_id == account_id,
            Order.idempotency_key.not_like("renewal-%"),
            (Order.status == OrderStatus.PENDING.value)
            | (
                (Order.status == OrderStatus.SUPERSEDED.value)
                & Order.id.in_(
                    select(Payment.order_id).where(
                        Payment.account_id == account_id,
                        Payment.status == PaymentStatus.PENDING.value,
                    )
                )
            ),
        )
        .order_by(Order.id)
    ).all()
    stale = [order.id for order in candidates if not tax_still_holds(order)]
    db.session.rollback()
    cancelled: list[str] = []
    for order_id in stale:
        order = _lock_order(order_id)
        if order.status == OrderStatus.PENDING:
            order_transition(order, OrderStatus.SUPERSEDED)
            cancelled.append(order.public_id)
        elif order.status != OrderStatus.SUPERSEDED:
            db.session.rollback()  # paid or failed meanwhile
            continue
        db.session.commit()
        attempts = db.session.scalars(
            select(Payment.id).where(
                Payment.order_id == order_id, Payment.status == PaymentStatus.PENDING.value
            )
        ).all()
        for payment_id in attempts:
            close_attempt(payment_id, code=TAX_CHANGED, now=now, providers=providers)
    return cancelled


def close_attempt(
    payment_id: int,
    *,
    code: str,
    now: dt.datetime,
    providers: Callable[[str], PaymentProvider | None] = _registered_provider,
) -> None:
    """Close a pending attempt at its provider so it can no longer take money, and end it
    failed with ``code``; an attempt the provider reports paid meanwhile is applied instead
    (real money: applying refunds it when its order no longer holds). Commits."""
    payment = db.session.get(Payment, payment_id, populate_existing=True)
    if not isinstance(payment, Payment) or payment.status != PaymentStatus.PENDING:
        return
    provider_name, ref, public_id = payment.provider, payment.provider_ref, payment.public_id
    db.session.rollback()  # the read ends before the provider is asked (nothing was written)
    provider = providers(provider_name)
    event = None
    if provider is not None and ref:
        try:
            event = provider.cancel(provider_ref=ref)
        except ProviderError as exc:
            log.info("closing %s at %s failed: %s", public_id, provider.name, exc)
    if event is not None and event.kind is PaymentEventKind.SUCCEEDED:
        apply_event(provider_name, event, now=now)
        return
    _fail_attempt(payment_id, code)


def refuse_expired(payment_id: int, *, now: dt.datetime) -> None:
    """The customer came back from the provider for an order past its expiry: the attempt
    is closed at the provider (not completed: nothing is captured) and ends ``expired``,
    the order with it; one the provider reports paid meanwhile is applied (as
    :func:`close_expired` does)."""
    close_attempt(payment_id, code="expired", now=now)
    payment = db.session.get(Payment, payment_id, populate_existing=True)
    if not isinstance(payment, Payment) or payment.status != PaymentStatus.FAILED:
        return
    order = _lock_order(payment.order_id) if payment.order_id else None
    if order is not None and order.status == OrderStatus.PENDING:
        order_transition(order, OrderStatus.FAILED)
    db.session.commit()


# -- abandoned checkouts --------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """A customer's latest payment attempt on a checkout, for My package (R9)."""

    pending: bool  # waiting for the provider, and its order still payable
    failure_code: str | None  # why it failed, when it did
    amount: Money
    order_public_id: str
    order_payable: bool  # its order can still be paid (pending, not expired)


def attempt_of(
    status: str,
    failure_code: str | None,
    amount: Money,
    order_status: str,
    order_public_id: str,
    expires_at: dt.datetime,
    now: dt.datetime,
) -> Attempt | None:
    """What My package says of the customer's latest checkout payment (read by
    :mod:`portal.rules.overview`): pending or failed, else ``None``.

    Pending never outlives its order's expiry: a customer who left the provider's page sees
    "payment pending" (and My package polls) that long at most; the background run then
    closes the attempt at the provider (:func:`close_expired`)."""
    payable = order_status == OrderStatus.PENDING and expires_at > now
    failed = status == PaymentStatus.FAILED or (status == PaymentStatus.PENDING and not payable)
    if status == PaymentStatus.PENDING and payable:
        return Attempt(True, None, amount, order_public_id, payable)
    if failed and order_status in (OrderStatus.PENDING, OrderStatus.FAILED):
        code = failure_code if status == PaymentStatus.FAILED else "expired"
        return Attempt(False, code, amount, order_public_id, payable)
    return None


def close_expired(
    *, now: dt.datetime, providers: Callable[[str], PaymentProvider | None], limit: int = 500
) -> int:
    """Close the payment attempts of checkout orders past their expiry (the background run):
    the provider's page is closed (Stripe expires the Checkout Session) and the attempt ends
    failed with ``expired``, the order with it; an attempt the provider reports as paid
    meanwhile is applied instead. Returns how many were closed. Each is locked with SKIP
    LOCKED, so runners share the work; a provider that cannot answer now is asked again at
    the next run."""
    due = db.session.execute(
        select(Order.id, Payment.id)
        .join(Order, Payment.order_id == Order.id)
        .where(
            Payment.status == PaymentStatus.PENDING.value,
            Order.status == OrderStatus.PENDING.value,
            Order.expires_at <= now,
            Order.idempotency_key.not_like("renewal-%"),
        )
        .order_by(Payment.id)
        .limit(limit)
    ).all()
    db.session.rollback()
    closed = 0
    for order_id, payment_id in due:
        # The order first, then its payment: the order in which paying locks them.
        order = db.session.scalar(
            select(Order)
            .where(Order.id == order_id, Order.status == OrderStatus.PENDING.value)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
        payment = db.session.scalar(
            select(Payment)
            .where(Payment.id == payment_id, Payment.status == PaymentStatus.PENDING.value)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
        if not isinstance(order, Order) or not isinstance(payment, Payment):
            db.session.rollback()  # settled meanwhile, or another runner has it
            continue
        provider_name, ref, public_id = payment.provider, payment.provider_ref, payment.public_id
        # The locks end before the provider is asked (security issue, point 8); closing a
        # page twice (two runners) is harmless, and the attempt is ended once, below.
        db.session.rollback()
        provider = providers(provider_name)
        event = None
        if provider is not None and ref:
            try:
                event = provider.cancel(provider_ref=ref)
            except ProviderError as exc:
                log.info("closing %s at %s failed: %s", public_id, provider.name, exc)
                continue
        if event is not None and event.kind is PaymentEventKind.SUCCEEDED:
            apply_event(provider_name, event, now=now)  # paid at the last moment
            continue
        order = _lock_order(order_id)
        payment = db.session.scalar(
            select(Payment)
            .where(Payment.id == payment_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        assert isinstance(payment, Payment)
        if order.status != OrderStatus.PENDING or payment.status != PaymentStatus.PENDING:
            db.session.rollback()  # settled or closed meanwhile
            continue
        payment_transition(payment, PaymentStatus.FAILED)
        payment.failure_code = "expired"
        payment.action_url = None
        order_transition(order, OrderStatus.FAILED)
        db.session.commit()
        closed += 1
    return closed


def add_method(
    *, account_id: int, provider: str, method: SavedMethod, now: dt.datetime
) -> PaymentMethod:
    """A method saved through the provider's setup page (no payment): the new default."""
    if not renewable(provider, method.brand):
        raise PaymentRefused(refused_brand_code(method.brand))
    row = save_method(account_id, provider, method, now)
    sub = db.session.scalar(
        select(Subscription)
        .where(Subscription.account_id == account_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if isinstance(sub, Subscription) and sub.status == SubscriptionStatus.PAST_DUE:
        sub.retry_at = now  # a failed renewal is tried again with the new method at once
    db.session.commit()
    return row


def set_auto_renew(
    *,
    account_id: int,
    on: bool,
    why: renewal_off.OffAnswer | None = None,
    user_id: int | None = None,
    now: dt.datetime | None = None,
) -> Subscription:
    """Switch auto-renewal (R10). Switching on needs a paid package and a saved method.

    ``why``, the customer's optional answer when switching off, is stored in the same
    transaction when the switch really goes from on to off (issue 25)."""
    sub = db.session.scalar(
        select(Subscription)
        .where(Subscription.account_id == account_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert isinstance(sub, Subscription)
    if on and not sub.is_paid:
        raise PaymentRefused("auto_renew_free")
    if on and sub.status == SubscriptionStatus.SUSPENDED:
        raise PaymentRefused("auto_renew_suspended")
    if on and default_method(account_id) is None:
        raise PaymentRefused("auto_renew_no_method")
    if sub.auto_renew != on:
        if not on and why is not None:
            renewal_off.record(why, account_id=account_id, user_id=user_id, now=now or utcnow())
        sub.auto_renew = on
    db.session.commit()
    return sub
