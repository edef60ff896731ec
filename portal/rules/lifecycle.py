"""The subscription lifecycle: the background run (rules R10, R16).

``flask --app wsgi billing run`` calls :func:`run`, which does what is due and nothing twice:

- renews paid subscriptions whose period ends with auto-renewal on: an order for the next
  period (with any change staff scheduled, and account credit), an off-session charge of the
  saved method through its plugin;
- suspends those whose auto-renewal is off when the period ends;
- sends the notices: 7 days and 1 day before a non-renewing end, before a renewal (the
  amount and date), after each failed charge;
- retries failed renewals after 1, 3 and 5 days (``RENEWAL_RETRY_DAYS``), then suspends;
- then, as a second stage, closes the checkouts abandoned past their order's expiry (the
  provider's page is closed and the attempt ends "expired": "payment pending" never sticks),
  issues the invoices that are due (those of this run's renewals and any postponed ones: each
  payment is claimed with ``FOR UPDATE SKIP LOCKED``, so runners share the work), retries
  pending VAT-number checks and sends queued e-mail.

Renewals do not wait for their invoices: rendering a PDF costs more than the renewal
itself, so a runner charges every due subscription first, and a customer whose card is
charged at 02:00 has the next period at once and the invoice a few minutes later.

Many runners may run at once. Subscriptions are claimed with ``SELECT … FOR UPDATE SKIP
LOCKED`` (PostgreSQL; SQLite has a single writer), a batch at a time (``RENEWAL_BATCH``). No
transaction stays open across a provider's call: a renewal's attempt (its order and payment)
is committed with a lease on the subscription before the charge, and the outcome applied in
a second transaction. A runner killed midway leaves its leases to run out: the next run
repeats each attempt with the same order, payment ids and idempotency key, so the provider
answers with the charge it already made instead of charging again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, or_, select, tuple_, update
from sqlalchemy.orm import joinedload, undefer
from sqlalchemy.orm.attributes import flag_modified

from portal.infra import mail
from portal.infra.extensions import db
from portal.infra.models import (
    Account,
    Order,
    OrderStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from portal.plugin_api.contracts import (
    PaymentEvent,
    PaymentEventKind,
    PaymentProvider,
    PaymentRequest,
    ProviderError,
    SavedMethod,
    SubscriptionChanged,
)
from portal.rules import payment_methods, payments
from portal.rules.catalogue import Catalogue, PackageCode, Period
from portal.rules.orders import Pricing, current_terms, new_order, tax_decision
from portal.rules.pricing import Quote, Selection, renewal
from portal.rules.tax import TaxDecision

log = logging.getLogger(__name__)

DEFAULT_RETRY_DAYS = (1, 3, 5)
DEFAULT_RENEWAL_NOTICE_DAYS = {"month": 7, "year": 30}
ENDING_NOTICE_DAYS = (7, 1)  # R10
BANNER_DAYS = 7  # R10: the banner shows from 7 days before a non-renewing end
MIN_RETRY_SPACING = dt.timedelta(hours=12)
#: Why a renewal was not charged: no saved method its provider can charge again. Its order
#: stays open and the customer pays it by hand (``/package/renewal``).
BY_HAND = "no_method"


@dataclass(frozen=True)
class Settings:
    timezone: str = "Europe/Warsaw"
    retry_days: tuple[int, ...] = DEFAULT_RETRY_DAYS
    renewal_notice_days: Mapping[str, int] = field(
        default_factory=lambda: dict(DEFAULT_RENEWAL_NOTICE_DAYS)
    )
    # A provider that is down is asked again after this; the attempt does not count.
    provider_down_delay: dt.timedelta = dt.timedelta(minutes=10)
    # How long other runners leave a subscription alone while its renewal is being charged
    # (far beyond a provider's timeout); a runner killed meanwhile is taken over after it.
    renewal_lease: dt.timedelta = dt.timedelta(minutes=5)
    # Subscriptions one claim takes together (RENEWAL_BATCH): their attempts are stored in
    # one transaction, charged one after another with none open, and applied in a second
    # one. The batch's charges together stay well within the lease (10 charges of a
    # provider's 10-second timeout: 100 s of 5 minutes).
    renewal_batch: int = 10
    public_url: str = "http://127.0.0.1:5000"
    secret: str = ""

    def day(self, now: dt.datetime) -> dt.date:
        """The calendar day of ``now`` where periods are counted (the portal's zone)."""
        return now.astimezone(ZoneInfo(self.timezone)).date()

    def day_start(self, day: dt.date) -> dt.datetime:
        """Midnight of ``day`` in the portal's zone, as a UTC instant."""
        local = dt.datetime.combine(day, dt.time(), tzinfo=ZoneInfo(self.timezone))
        return local.astimezone(dt.UTC)


def settings_for(app: Any) -> Settings:
    """``RENEWAL_RETRY_DAYS``, ``RENEWAL_NOTICE_DAYS``, ``PUBLIC_URL``, the portal's zone."""
    config = app.config
    return Settings(
        timezone=config["BABEL_DEFAULT_TIMEZONE"],
        retry_days=tuple(int(d) for d in config.get("RENEWAL_RETRY_DAYS", DEFAULT_RETRY_DAYS)),
        renewal_notice_days={
            str(k): int(v)
            for k, v in config.get("RENEWAL_NOTICE_DAYS", DEFAULT_RENEWAL_NOTICE_DAYS).items()
        },
        renewal_batch=max(1, int(config.get("RENEWAL_BATCH", 10))),
        public_url=str(config.get("PUBLIC_URL", "http://127.0.0.1:5000")).rstrip("/"),
        secret=str(config["SECRET_KEY"]),
    )


@dataclass(frozen=True)
class Deps:
    """What the run needs from the application: prices, providers, settings."""

    pricing: Pricing
    providers: Callable[[str], PaymentProvider | None]
    settings: Settings


@dataclass
class Report:
    checked: int = 0
    renewed: int = 0
    failed: int = 0
    suspended: int = 0
    postponed: int = 0  # the provider was down: tried again later, nothing counted
    errors: int = 0
    notices_queued: int = 0
    notices_sent: int = 0
    notices_failed: int = 0
    invoices_issued: int = 0
    einvoices_accepted: int = 0  # documents KSeF (or another channel) numbered in this run
    expired: int = 0  # abandoned checkouts closed past their order's expiry
    vat_checked: int = 0
    webhooks_sent: int = 0  # events the chat product took
    webhooks_failed: int = 0  # tries that failed (retried later, or given up)
    # Wall-clock seconds of the two stages (renewals and the rest; invoices and e-mail), the
    # second None when the run left it for the next (``--subscriptions-only``).
    renewal_seconds: float = 0.0
    invoice_seconds: float | None = 0.0

    def add(self, other: Report) -> None:
        """Count what one committed subscription counted."""
        for name, value in vars(other).items():
            if isinstance(value, int):
                setattr(self, name, getattr(self, name) + value)

    def line(self) -> str:
        if self.invoice_seconds is None:
            rest = "invoices and e-mail left for the next run"
        else:
            rest = f"invoices and e-mail in {self.invoice_seconds:.1f} s"
        return (
            f"billing run: {self.checked} checked, {self.renewed} renewed, {self.failed} failed "
            f"charges, {self.suspended} suspended, {self.postponed} postponed, "
            f"{self.errors} errors; notices {self.notices_queued} queued, {self.notices_sent} "
            f"sent, {self.notices_failed} not sent; {self.expired} expired checkouts closed; "
            f"{self.invoices_issued} invoices issued, {self.einvoices_accepted} accepted by "
            f"the e-invoicing channel; "
            f"{self.vat_checked} VAT numbers checked; webhooks {self.webhooks_sent} sent, "
            f"{self.webhooks_failed} failed; subscriptions in "
            f"{self.renewal_seconds:.1f} s, {rest}"
        )


# -- claiming -------------------------------------------------------------------------------


# The claim, built once per process (building it cost a fifth of the statement's own time
# in the runner): the next subscriptions with work due after ``after_id`` (at most
# ``batch``), locked; rows another runner holds are skipped. Their accounts, with billing
# data, default payment method and language, come in the same statement (only the
# subscriptions are locked): the work below reads them.
def _claim_statement(*, by_id: bool) -> Any:
    if by_id:
        which = Subscription.id == bindparam("sub_id")
    else:
        which = Subscription.id > bindparam("after_id")
    return (
        select(Subscription)
        .options(
            joinedload(Subscription.account).options(
                joinedload(Account.billing_info),
                joinedload(Account.default_method),
                undefer(Account.language),
            )
        )
        .where(
            Subscription.package != PackageCode.FREE.value,
            Subscription.status != SubscriptionStatus.SUSPENDED.value,
            or_(
                Subscription.next_check_at.is_(None),
                Subscription.next_check_at
                <= bindparam("now", type_=Subscription.next_check_at.type),
            ),
            which,
        )
        .order_by(Subscription.id)
        .limit(bindparam("batch"))
        .with_for_update(skip_locked=True, of=Subscription)
        .execution_options(populate_existing=True)
    )


CLAIM = _claim_statement(by_id=False)
# One of a batch claimed again on its own, when the batch gave way (see _renew_batch).
CLAIM_BY_ID = _claim_statement(by_id=True)

# Renewal attempts' orders and payments, when a runner stopped after storing them (each
# payment joined by its order's key): usually none. By (account id, key) pairs, so that a
# batch asks once (see _LeftOvers). Built once, as the claim.
LEFT_OVERS = (
    select(Order, Payment)
    .outerjoin(
        Payment,
        (Payment.order_id == Order.id) & (Payment.idempotency_key == Order.idempotency_key),
    )
    .where(tuple_(Order.account_id, Order.idempotency_key).in_(bindparam("pairs", expanding=True)))
)


def _claim(now: dt.datetime, after_id: int, batch: int = 1) -> list[Subscription]:
    """The next subscriptions with work due (see ``CLAIM``), locked, in id order."""
    found = db.session.scalars(CLAIM, {"now": now, "after_id": after_id, "batch": batch})
    return [sub for sub in found.unique() if isinstance(sub, Subscription)]


def _claim_again(now: dt.datetime, sub_id: int) -> Subscription | None:
    """``sub_id`` claimed on its own, if it is still due and no other runner holds it."""
    sub = db.session.scalar(CLAIM_BY_ID, {"now": now, "sub_id": sub_id, "batch": 1})
    return sub if isinstance(sub, Subscription) else None


# The run's timetable, a plain UPDATE (built once; SQLAlchemy Core, so that a batch's
# leases go in one executemany): not a change a customer's order depends on, so the
# subscription's version stays.
SET_NEXT_CHECK = (
    update(Subscription.__table__)
    .where(Subscription.__table__.c.id == bindparam("sub_id"))
    .values(next_check_at=bindparam("at", type_=Subscription.next_check_at.type))
)


def _set_next_check(sub_id: int, at: dt.datetime | None) -> None:
    """When the run next looks at the subscription (``SET_NEXT_CHECK``)."""
    db.session.flush()
    db.session.execute(SET_NEXT_CHECK, {"sub_id": sub_id, "at": at})


def next_check(sub: Subscription, now: dt.datetime, settings: Settings) -> dt.datetime | None:
    """When something can next be due for ``sub``: a notice day, the period end, a retry."""
    if not sub.is_paid or sub.status == SubscriptionStatus.SUSPENDED:
        return None
    if sub.status == SubscriptionStatus.PAST_DUE:
        return sub.retry_at or now + settings.provider_down_delay
    assert sub.period_end is not None
    end = sub.period_end
    if sub.auto_renew:
        marks = [end - dt.timedelta(days=settings.renewal_notice_days.get(sub.period, 7)), end]
    else:
        marks = [end - dt.timedelta(days=d) for d in ENDING_NOTICE_DAYS] + [end]
    future = [settings.day_start(day) for day in marks if settings.day_start(day) > now]
    return min(future) if future else now + settings.provider_down_delay


# -- the run --------------------------------------------------------------------------------


def run(
    *,
    now: dt.datetime,
    deps: Deps,
    limit: int | None = None,
    threads: int = 1,
    follow_ups: bool = True,
) -> Report:
    """Do everything that is due at ``now`` (see the module docs). Idempotent.
    ``follow_ups=False``: the subscriptions alone; invoices, VAT checks, e-mail and webhooks
    wait for the next full run (``flask billing run --subscriptions-only``).

    ``threads`` > 1 keeps that many renewals in flight at once (a provider answers a charge
    in a few hundred milliseconds, during which a runner would otherwise wait): each thread
    renews as another runner would, in its own application context and database session,
    claiming with ``SKIP LOCKED`` and leasing before its charge, so the guarantees are those
    of many runners. SQLite has a single writer: there it is always one thread."""
    report = Report()
    started = time.perf_counter()
    budget = _Budget(limit)
    if threads > 1 and db.engine.dialect.name != "sqlite":
        from flask import current_app

        app = current_app._get_current_object()  # type: ignore[attr-defined]
        parts = [Report() for _ in range(threads)]

        def renew_in_thread(part: Report) -> None:
            with app.app_context():
                try:
                    _renew_due(now, deps, budget, part)
                finally:
                    db.session.remove()

        workers = [
            threading.Thread(target=renew_in_thread, args=(part,), name=f"renewals-{n}")
            for n, part in enumerate(parts)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        for part in parts:
            report.add(part)
    else:
        _renew_due(now, deps, budget, report)
    report.renewal_seconds = time.perf_counter() - started
    if not follow_ups:
        report.invoice_seconds = None
        return report
    started = time.perf_counter()
    _follow_ups(now, deps, report)
    report.invoice_seconds = time.perf_counter() - started
    return report


class _Budget:
    """How many more subscriptions a run may look at (``--limit``), shared by its threads."""

    def __init__(self, limit: int | None) -> None:
        self.left = limit
        self.lock = threading.Lock()

    def take(self, wanted: int) -> int:
        """Up to ``wanted`` more (0: the run's limit is reached)."""
        if self.left is None:
            return wanted
        with self.lock:
            granted = max(0, min(wanted, self.left))
            self.left -= granted
            return granted

    def give_back(self, unused: int) -> None:
        if self.left is not None and unused > 0:
            with self.lock:
                self.left += unused


def _renew_due(now: dt.datetime, deps: Deps, budget: _Budget, report: Report) -> None:
    """Renew (or fail, suspend, notify) each subscription with work due, a batch at a time
    (``Settings.renewal_batch``); a batch of one is handled on its own."""
    last_id = 0
    while True:
        wanted = budget.take(deps.settings.renewal_batch)
        if not wanted:
            break
        subs = _claim(now, last_id, wanted)
        budget.give_back(wanted - len(subs))
        if not subs:
            db.session.rollback()
            break
        last_id = subs[-1].id
        report.checked += len(subs)
        if len(subs) == 1:
            _renew_alone(subs[0], now, deps, report)
        else:
            _renew_batch(subs, now, deps, report)


def _renew_alone(sub: Subscription, now: dt.datetime, deps: Deps, report: Report) -> None:
    """One claimed subscription in its own transactions (:func:`_on_its_own`)."""
    _on_its_own(sub.id, lambda counted: _process(sub, now, deps, counted), now, deps, report)


def _on_its_own(
    sub_id: int,
    work: Callable[[Report], list[Callable[[], object]]],
    now: dt.datetime,
    deps: Deps,
    report: Report,
) -> None:
    """``work(counted)`` for one subscription, which commits and returns the calls to make
    after it: whatever fails is rolled back and tried again later, and counts nothing (what
    the subscription counts is kept apart until its transaction is committed)."""
    counted = Report()
    try:
        after = work(counted)
    except Exception as exc:
        db.session.rollback()
        _put_off(sub_id, exc, now, deps, report)
        db.session.commit()
        return
    report.add(counted)
    _call_after(sub_id, after)


def _put_off(sub_id: int, exc: Exception, now: dt.datetime, deps: Deps, report: Report) -> None:
    """A subscription whose turn failed is looked at again later; nothing is counted
    against the customer. The caller commits."""
    if isinstance(exc, ProviderError):
        # Not the customer's failure (the provider is down, or our keys are wrong):
        # the attempt is repeated later.
        level = logging.WARNING if exc.retryable else logging.ERROR
        log.log(level, "renewal of subscription %s postponed: %s", sub_id, exc)
        report.postponed += 1
    else:
        log.error(
            "subscription %s: the run failed; it is tried again later",
            sub_id,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        report.errors += 1
    _set_next_check(sub_id, now + deps.settings.provider_down_delay)


def _call_after(sub_id: int, calls: list[Callable[[], object]]) -> None:
    """The calls a committed change left (hooks, notices), each on its own."""
    for call in calls:
        if isinstance(call, payments.InvoiceDue):
            continue  # issued by the invoice stage below, with every other one due
        try:
            call()
        except Exception:  # the change is committed; the hook is not called again
            db.session.rollback()
            log.exception("subscription %s: a follow-up failed", sub_id)


def _renew_batch(subs: list[Subscription], now: dt.datetime, deps: Deps, report: Report) -> None:
    """Several claimed subscriptions in two transactions (issue 26): what each one's turn
    does before a charge is stored together, with the leases, and committed; the charges
    are made one after another with no transaction open; their outcomes are applied
    together and committed. The guarantees are those of one at a time: an attempt is
    committed with its lease before its charge, and a runner killed during the charges
    leaves attempts that the next run finds by their keys and asks again (one charge).

    Should anything fail, the batch gives way: before the charges, its transaction is
    rolled back and each subscription is claimed again and handled on its own; after them,
    each charge's outcome is applied on its own (its charge is not made again)."""
    ids = [sub.id for sub in subs]  # read now: a rollback expires the objects
    counted = {sub_id: Report() for sub_id in ids}
    steps: dict[int, list[Callable[[], object]] | _Charge] = {}
    try:
        left_overs = _LeftOvers(subs, deps.settings.secret)
        for sub in subs:
            step = _prepare(sub, now, deps, counted[sub.id], left_overs)
            steps[sub.id] = step
            if not isinstance(step, _Charge):
                _reschedule(sub, now, deps.settings)
        charges = [step for step in steps.values() if isinstance(step, _Charge)]
        if charges:
            _store(charges)
            lease = now + deps.settings.renewal_lease
            db.session.execute(SET_NEXT_CHECK, [{"sub_id": c.sub_id, "at": lease} for c in charges])
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.warning(
            "subscriptions %s–%s: the batch gave way; each is handled on its own",
            ids[0],
            ids[-1],
            exc_info=True,
        )
        for sub_id in ids:
            again = _claim_again(now, sub_id)
            if again is None:
                db.session.rollback()  # renewed meanwhile by another runner, or not due
                continue
            _renew_alone(again, now, deps, report)
        return
    for sub_id, step in steps.items():
        if not isinstance(step, _Charge):
            report.add(counted[sub_id])
            _call_after(sub_id, step)
    if charges:
        _charge_batch(charges, now, deps, report)


def _charge_batch(charges: list[_Charge], now: dt.datetime, deps: Deps, report: Report) -> None:
    """The batch's charges, one after another with no transaction open, then their
    outcomes applied in one transaction (or each on its own, should that fail)."""
    events: list[PaymentEvent | Exception] = []
    for charge in charges:
        try:
            events.append(_charge(charge))
        except Exception as exc:  # ProviderError: postponed; anything else: an error
            events.append(exc)
    counted = {charge.sub_id: Report() for charge in charges}
    after: dict[int, list[Callable[[], object]]] = {}
    try:
        held = _relock_all(
            [
                charge.claimed
                for charge, event in zip(charges, events, strict=True)
                if charge.claimed is not None and not isinstance(event, Exception)
            ]
        )
        for charge, event in zip(charges, events, strict=True):
            sub_id = charge.sub_id
            if isinstance(event, Exception):
                _put_off(sub_id, event, now, deps, counted[sub_id])
                continue
            rows = held[sub_id]
            after[sub_id] = _charged(charge, rows, event, now, deps, counted[sub_id], alone=False)
            _reschedule(rows.sub, now, deps.settings)
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.warning(
            "renewals of subscriptions %s–%s: their outcomes are applied one by one",
            charges[0].sub_id,
            charges[-1].sub_id,
            exc_info=True,
        )
        for charge, event in zip(charges, events, strict=True):
            _apply_alone(charge, event, now, deps, report)
        return
    for charge in charges:
        sub_id = charge.sub_id
        report.add(counted[sub_id])
        _call_after(sub_id, after.get(sub_id, []))


def _apply_alone(
    charge: _Charge,
    event: PaymentEvent | Exception,
    now: dt.datetime,
    deps: Deps,
    report: Report,
) -> None:
    """One charge's outcome applied in its own transaction (the batch's gave way)."""

    def apply(counted: Report) -> list[Callable[[], object]]:
        if isinstance(event, Exception):
            raise event
        assert charge.claimed is not None
        rows = _relock(charge.claimed)
        after = _charged(charge, rows, event, now, deps, counted, alone=True)
        _reschedule(rows.sub, now, deps.settings)
        db.session.commit()
        return after

    _on_its_own(charge.sub_id, apply, now, deps, report)


def _follow_ups(now: dt.datetime, deps: Deps, report: Report) -> None:
    """What other parts left for the background: invoices, VAT checks, e-mail."""
    from flask import current_app

    from portal.rules import einvoicing, invoicing, vat, webhooks

    try:
        report.expired = payments.close_expired(now=now, providers=deps.providers)
    except Exception:
        db.session.rollback()
        log.exception("closing expired checkouts failed; it is tried again later")
        report.errors += 1
    try:
        payments.refund_due()  # money for orders that no longer held, not given back yet
    except Exception:
        db.session.rollback()
        log.exception("refunding stale payments failed; it is tried again later")
        report.errors += 1
    for payment_id in invoicing.pending_payments():
        try:
            if invoicing.issue_now(payment_id, now=now) is not None:
                report.invoices_issued += 1
        except Exception:  # one invoice that fails must not hold up the others, or e-mail
            db.session.rollback()
            log.exception("the invoice of payment %s failed; it is tried again later", payment_id)
            report.errors += 1
    try:
        invoicing.render_missing(now=now)  # those an issuer stopped before rendering
    except Exception:
        db.session.rollback()
        log.exception("rendering invoices left without documents failed")
        report.errors += 1
    try:  # KSeF: what an issuer left unsent, offline documents once it is back, statuses
        report.einvoices_accepted = einvoicing.run_due(now=now)
    except Exception:
        db.session.rollback()
        log.exception("sending e-invoices failed; it is tried again later")
        report.errors += 1
    vat_report = vat.run_due_checks(now=now, limit=500, settings=vat.settings_for(current_app))
    report.vat_checked = vat_report.checked
    report.notices_sent, report.notices_failed = mail.deliver_pending(now=now)
    try:  # after everything else: a receiver that hangs holds up nothing above
        report.webhooks_sent, report.webhooks_failed = webhooks.deliver_due(
            now=now, settings=webhooks.settings_for(current_app)
        )
    except Exception:
        db.session.rollback()
        log.exception("sending webhooks failed; they are sent later")
        report.errors += 1


def _process(
    sub: Subscription, now: dt.datetime, deps: Deps, report: Report
) -> list[Callable[[], object]]:
    """Handle one locked subscription on its own; commits; returns the calls to make after
    it. A renewal's attempt is committed with its lease before its charge, and its outcome
    applied in a second transaction."""
    step = _prepare(sub, now, deps, report)
    if isinstance(step, _Charge):
        _store([step])
        _set_next_check(sub.id, now + deps.settings.renewal_lease)
        db.session.commit()
        event = _charge(step)
        assert step.claimed is not None
        rows = _relock(step.claimed)
        step = _charged(step, rows, event, now, deps, report, alone=True)
        sub = rows.sub
    _reschedule(sub, now, deps.settings)
    db.session.commit()
    return step


def _prepare(
    sub: Subscription,
    now: dt.datetime,
    deps: Deps,
    report: Report,
    left_overs: _LeftOvers | None = None,
) -> list[Callable[[], object]] | _Charge:
    """What is due for one locked subscription, up to a renewal's charge: the calls to make
    after the commit, or the charge to make once the attempt is committed. ``left_overs``:
    its batch's attempts left by a stopped runner (:class:`_LeftOvers`)."""
    settings = deps.settings
    today = settings.day(now)
    account = sub.account  # loaded by _claim
    assert account is not None and sub.period_end is not None
    if sub.status == SubscriptionStatus.PAST_DUE and not sub.auto_renew:
        return _suspend(sub, now, "not_renewed", deps, report)
    if sub.period_end <= today and sub.status == SubscriptionStatus.ACTIVE:
        if sub.auto_renew:
            return _renew(sub, account, now, deps, report, left_overs)
        return _suspend(sub, now, "not_renewed", deps, report)
    if sub.status == SubscriptionStatus.PAST_DUE:
        if sub.retry_at is not None and sub.retry_at <= now:
            return _renew(sub, account, now, deps, report, left_overs)
        return []
    _queue_upcoming(sub, account, today, now, deps, report)
    return []


def _reschedule(sub: Subscription, now: dt.datetime, settings: Settings) -> None:
    """When the run looks at ``sub`` next (see :func:`next_check`); the caller commits."""
    at = next_check(sub, now, settings)
    if db.session.is_modified(sub):
        # The subscription changes anyway (a renewal, a suspension), its version with it:
        # the time of its next look goes in the same UPDATE (flagged, so that a value
        # equal to the old one still counts as set and is not reset by models._reschedule).
        sub.next_check_at = at
        flag_modified(sub, "next_check_at")
    else:
        _set_next_check(sub.id, at)


# -- notices before the period end ----------------------------------------------------------


def _queue(
    report: Report, account_id: int, name: str, key: str, now: dt.datetime, **ctx: Any
) -> None:
    if mail.queue(account_id, name, key=key, now=now, **ctx):
        report.notices_queued += 1


def _queue_upcoming(
    sub: Subscription,
    account: Account,
    today: dt.date,
    now: dt.datetime,
    deps: Deps,
    report: Report,
) -> None:
    assert sub.period_end is not None
    days_left = (sub.period_end - today).days
    links = _links(deps.settings)
    if not sub.auto_renew:
        # The nearest notice only: switched off the day before, one gets the 1-day notice.
        due = [d for d in sorted(ENDING_NOTICE_DAYS) if days_left <= d]
        if due:
            _queue(
                report,
                account.id,
                "suspension_upcoming",
                f"ending:{sub.id}:{sub.period_end.isoformat()}:{due[0]}",
                now,
                end=sub.period_end,
                days=max(days_left, 0),
                **links,
            )
        return
    if days_left <= deps.settings.renewal_notice_days.get(sub.period, 7):
        quote, _decision = _renewal_quote(sub, account, deps)
        method = payments.default_method(account.id)
        _queue(
            report,
            account.id,
            "renewal_upcoming",
            f"renewal:{sub.id}:{sub.period_end.isoformat()}",
            now,
            end=sub.period_end,
            amount=quote.total_due,
            next_end=quote.period_end,
            method=_describe(method),
            method_expires=payment_methods.expires_before(method, sub.period_end),
            **links,
        )


def _links(settings: Settings) -> dict[str, str]:
    base = settings.public_url
    return {
        "auto_renew_url": f"{base}/payment-methods#auto-renew",
        "methods_url": f"{base}/payment-methods",
        "checkout_url": f"{base}/package/edit",
        "package_url": f"{base}/package",
    }


def _describe(method: Any) -> str:
    if method is None:
        return ""
    if method.last4:
        return f"{method.brand.title()} •••• {method.last4}"
    return f"PayPal {method.email or ''}".strip()


# -- renewing -------------------------------------------------------------------------------


def _renewal_quote(sub: Subscription, account: Account, deps: Deps) -> tuple[Quote, TaxDecision]:
    assert sub.currency is not None and sub.period_end is not None
    selection = Selection(
        package=PackageCode(sub.package),
        period=Period(sub.next_period or sub.period),
        agents=sub.agents,
        conversations=sub.conversations,
        currency=sub.next_currency or sub.currency,
    )
    decision = tax_decision(deps.pricing, account.billing_info, sub.period_end)
    quote = renewal(deps.pricing.catalogue, current_terms(sub), selection, decision.rate)
    return quote, decision


class _LeftOvers:
    """The renewal attempts a stopped runner left of some claimed subscriptions (their
    orders, and payments if stored), looked up in one statement the first time one of them
    renews, by the key of each one's current attempt: a batch asks once, a batch that
    renews none never."""

    def __init__(self, subs: list[Subscription], secret: str) -> None:
        self._subs = subs
        self._secret = secret
        self._found: dict[tuple[int, str], tuple[Order, Payment | None]] | None = None

    def get(self, account_id: int, key: str) -> tuple[Order | None, Payment | None]:
        if self._found is None:
            self._found = self._look_up()
        return self._found.get((account_id, key), (None, None))

    def _look_up(self) -> dict[tuple[int, str], tuple[Order, Payment | None]]:
        pairs = [
            (sub.account_id, _ids(self._secret, sub, sub.renewal_attempts)[1])
            for sub in self._subs
            if sub.period_end is not None
        ]
        # Nothing pending in the session is of these attempts: it is not flushed first (a
        # batch's orders go in one statement, see _store).
        with db.session.no_autoflush:
            found = db.session.execute(LEFT_OVERS, {"pairs": pairs})
            return {(order.account_id, order.idempotency_key): (order, pay) for order, pay in found}


def _ids(secret: str, sub: Subscription, attempt: int) -> tuple[str, str]:
    """(public id, idempotency key) of one renewal attempt: the same on every run, so a
    runner killed after the charge and run again asks the provider with the same key."""
    assert sub.period_end is not None
    key = f"renewal-{sub.id}-{sub.period_end.isoformat()}-{attempt}"
    public = hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()[:32]
    return public, key


def _renew(
    sub: Subscription,
    account: Account,
    now: dt.datetime,
    deps: Deps,
    report: Report,
    left_overs: _LeftOvers | None = None,
) -> list[Callable[[], object]] | _Charge:
    """One renewal attempt for the period that ends at ``sub.period_end``, up to its charge:
    the calls to make after the commit when there is nothing to charge, else the charge,
    its order added to the session and its payment ready (:func:`_store` stores both)."""
    assert sub.period_end is not None
    attempt = sub.renewal_attempts
    _close_earlier_attempts(sub, attempt)
    quote, decision = _renewal_quote(sub, account, deps)
    public_id, key = _ids(deps.settings.secret, sub, attempt)
    # The attempt's order and payment exist when a runner stopped after storing them (say,
    # killed during the charge): both are looked up by the attempt's key, with the rest of
    # its batch's (usually there are none).
    if left_overs is None:
        left_overs = _LeftOvers([sub], deps.settings.secret)
    order, payment = left_overs.get(account.id, key)
    if order is None:
        order = new_order(
            account_id=account.id,
            public_id=public_id,
            idempotency_key=key,
            subscription_version=sub.version,
            result=quote,
            decision=decision,
            now=now,
            lifetime=dt.timedelta(days=30),
        )
        db.session.add(order)
    if order.total_minor == 0:  # account credit covers the period: nothing to charge
        after = _renewed(sub, order, now)
        report.renewed += 1
        return after
    method = account.default_method  # loaded by _claim
    provider = deps.providers(method.provider) if method is not None else None
    if method is None or provider is None or not provider.charges_again(method.brand):
        # Nothing to charge off-session (a bank transfer or pay-by-link paid the period):
        # the order stays open for the customer to pay by hand (R10), with any provider.
        return _failed_attempt(sub, account, order, None, now, deps, report, code=BY_HAND)
    if payment is not None:
        # A payment left over is locked and read afresh, as a webhook may have settled it
        # since, and so is its order (a webhook changes an order only under its payment's
        # lock): the event handlers below take both as held (payments.Held).
        db.session.refresh(payment, with_for_update=True)
        db.session.refresh(order)
    else:
        # Added by _store once the order has its id (orders, then payments, each a batch's
        # in one statement).
        payment = Payment(
            public_id=public_id,
            account_id=account.id,
            method_id=method.id,
            provider=provider.name,
            idempotency_key=key,
            status=PaymentStatus.PENDING.value,
            amount_minor=order.total_minor,
            currency=order.currency,
            created_at=now,
        )
    base = deps.settings.public_url
    request = PaymentRequest(
        payment_id=payment.public_id,
        idempotency_key=key,
        amount=payment.amount,
        description=_description(sub, quote),
        customer_email=account.billing_info.invoice_email,
        language=mail.account_language(account),
        return_url=f"{base}/payments/{payment.public_id}/return",
        cancel_url=f"{base}/payments/{payment.public_id}/cancel",
        webhook_url=f"{base}/webhooks/{provider.name}",
        save_method=False,
        customer_ref=method.customer_ref,
    )
    return _Charge(sub, account, order, payment, provider, request, payments.saved(method), key)


@dataclass
class _Charge:
    """A renewal attempt to charge. No transaction stays open across the provider's call
    (security issue, point 8): the attempt's order and payment are committed first
    (:func:`_store`), and the subscription is leased to this runner (its next look moved
    past the charge's longest wait, a plain UPDATE that changes no version), so other
    runners pass it by. A runner killed during the call leaves the lease to expire: the
    next run finds the attempt by its key and asks the provider again with the same
    idempotency key (one charge)."""

    sub: Subscription
    account: Account
    order: Order
    payment: Payment
    provider: PaymentProvider
    request: PaymentRequest
    card: SavedMethod
    key: str
    claimed: _Claimed | None = None
    sub_id: int = field(init=False)  # read before the commit expires ``sub``

    def __post_init__(self) -> None:
        self.sub_id = self.sub.id


def _store(charges: list[_Charge]) -> None:
    """The charges' new orders, then their new payments, flushed (a batch's in one
    statement each), and what each one charges for noted (``claimed``)."""
    db.session.flush()
    for charge in charges:
        if charge.payment.id is None:
            charge.payment.order_id = charge.order.id
            db.session.add(charge.payment)
    db.session.flush()
    for charge in charges:
        sub = charge.sub
        charge.claimed = _Claimed(
            sub.id, sub.version, _sold(sub), charge.order.id, charge.payment.id
        )


def _charge(charge: _Charge) -> PaymentEvent:
    """The provider's call, with no transaction open."""
    provider = charge.provider
    return payments.provider_call(
        provider, "charge_saved", provider.charge_saved, charge.request, charge.card
    )


def _charged(
    charge: _Charge,
    rows: _Held,
    event: PaymentEvent,
    now: dt.datetime,
    deps: Deps,
    report: Report,
    *,
    alone: bool,
) -> list[Callable[[], object]]:
    """The charge's outcome, applied to its rows held locked again (``rows``). ``alone``:
    in its own transaction, so a webhook that came first (the event is on record: the
    transaction was rolled back) is read from the rows again; in a batch's transaction
    that ends the batch (the caller applies each on its own)."""
    assert charge.claimed is not None
    sub, order, payment = rows.sub, rows.order, rows.payment
    choice = sub.auto_renew  # the customer may have switched it during the call
    try:
        # The handlers work on these objects, which this transaction now holds locked.
        outcome, after = payments.apply_in_transaction(
            charge.provider.name, event, now=now, held=payments.Held(payment, order, sub)
        )
    except payments.DuplicateEvent:  # (rolled back) its webhook came first and applied it
        if not alone:
            raise
        again = _relock(charge.claimed)
        sub, order, payment = again.sub, again.order, again.payment
        if payment.status == PaymentStatus.PENDING:  # on record, yet applied to nothing
            db.session.rollback()
            raise RuntimeError(
                f"renewal {charge.key}: its charge is on record but not applied"
            ) from None
        outcome, after = payments.Outcome.DUPLICATE, []
    if payment.status == PaymentStatus.PAID and order.status == OrderStatus.PAID:
        sub.auto_renew = choice  # a renewal keeps the customer's latest choice
    log.info("renewal %s of subscription %s: %s (%s)", charge.key, sub.id, outcome, payment.status)
    if payment.status == PaymentStatus.PAID and order.status == OrderStatus.PAID:
        # _succeeded activated the next period; clear the schedule that applied to it.
        sub.next_period = sub.next_currency = None
        report.renewed += 1
        return after
    failure = _failure_code(event, payment)
    return after + _failed_attempt(
        sub, charge.account, order, payment, now, deps, report, code=failure
    )


@dataclass(frozen=True)
class _Claimed:
    """What a renewal attempt charged for, kept across the provider's call."""

    sub_id: int
    version: int
    sold: tuple[object, ...]
    order_id: int
    payment_id: int


def _sold(sub: Subscription) -> tuple[object, ...]:
    """What a renewal sells: a change to anything else (auto-renewal switched during the
    charge, say) leaves the renewal's order valid."""
    return (
        sub.package,
        sub.period,
        sub.agents,
        sub.conversations,
        sub.currency,
        sub.period_end,
        sub.status,
        sub.renewal_attempts,
    )


# The attempts' rows locked again after the provider's calls, built once (as the claim): the
# subscriptions first, as the claim took them (a webhook locks a payment, then its subscription:
# the order of the two statements is the order of the locks). The payment comes with its
# order and the method it was charged with, read afresh in the same statement: the event's
# handler compares the method with what the provider reports (payments.save_method), which
# would otherwise reload it, expired by the lease's commit.
RELOCK_SUBSCRIPTIONS = (
    select(Subscription)
    .where(Subscription.id.in_(bindparam("sub_ids", expanding=True)))
    .order_by(Subscription.id)
    .with_for_update()
    .execution_options(populate_existing=True)
)
RELOCK_PAYMENTS = (
    select(Payment, Order, PaymentMethod)
    .join(Order, Order.id == Payment.order_id)
    .outerjoin(PaymentMethod, PaymentMethod.id == Payment.method_id)
    .where(Payment.id.in_(bindparam("payment_ids", expanding=True)))
    .order_by(Payment.id)
    .with_for_update(of=Payment)
    .execution_options(populate_existing=True)
)


def _relock(claimed: _Claimed) -> _Held:
    """One attempt's rows locked again after the provider's call (:func:`_relock_all`)."""
    return _relock_all([claimed])[claimed.sub_id]


def _relock_all(claimed: list[_Claimed]) -> dict[int, _Held]:
    """The attempts' rows locked again after the provider's calls, read afresh, by
    subscription id: the subscriptions in one statement (in id order, as the claim took
    them), then the payments with their orders and methods in another."""
    if not claimed:
        return {}
    subs = {
        sub.id: sub
        for sub in db.session.scalars(
            RELOCK_SUBSCRIPTIONS, {"sub_ids": [c.sub_id for c in claimed]}
        )
    }
    rows = {
        row[0].id: row
        for row in db.session.execute(
            RELOCK_PAYMENTS, {"payment_ids": [c.payment_id for c in claimed]}
        )
    }
    return {c.sub_id: _held(c, subs[c.sub_id], *rows[c.payment_id]) for c in claimed}


@dataclass(frozen=True)
class _Held:
    """An attempt's rows, held locked by this transaction. The method is held too: the
    session keeps what nothing refers to only weakly, and the charge's handler compares it
    with the provider's report (payments.save_method), which would otherwise load it again."""

    sub: Subscription
    order: Order
    payment: Payment
    method: PaymentMethod | None


def _held(
    claimed: _Claimed,
    sub: Subscription,
    payment: Payment,
    order: Order,
    method: PaymentMethod | None,
) -> _Held:
    assert isinstance(sub, Subscription) and order.id == claimed.order_id
    if sub.version != claimed.version and _sold(sub) == claimed.sold:
        order.subscription_version = sub.version  # changed, but not what the order sells
    return _Held(sub, order, payment, method)


def _failure_code(event: PaymentEvent, payment: Payment) -> str:
    if event.kind == PaymentEventKind.REQUIRES_ACTION:
        return "authentication_required"
    return payment.failure_code or "failed"


def _description(sub: Subscription, quote: Quote) -> str:
    return (
        f"Pakiet {sub.package.title()} {quote.period_start.isoformat()}–"
        f"{quote.period_end.isoformat()}"
    )


def _close_earlier_attempts(sub: Subscription, attempt: int) -> None:
    """Payments of earlier attempts still waiting (3-D Secure never completed) are failed;
    if the customer completes one later, the state machine still accepts that money and
    refunds it as stale, since its order no longer holds."""
    assert sub.period_end is not None
    if attempt == 0:
        return  # the period's first attempt: there is no earlier one
    prefix = f"renewal-{sub.id}-{sub.period_end.isoformat()}-"
    for payment in db.session.scalars(
        select(Payment)
        .where(
            Payment.account_id == sub.account_id,
            Payment.idempotency_key.like(prefix + "%"),
            Payment.idempotency_key != prefix + str(attempt),
            Payment.status == PaymentStatus.PENDING,
        )
        .with_for_update()
    ):
        payments.payment_transition(payment, PaymentStatus.FAILED)
        payment.failure_code = "authentication_not_completed"
        payment.action_url = None
    # An earlier attempt's order left open to be paid by hand gives way to this one's.
    for order in db.session.scalars(
        select(Order)
        .where(
            Order.account_id == sub.account_id,
            Order.idempotency_key.like(prefix + "%"),
            Order.idempotency_key != prefix + str(attempt),
            Order.status == OrderStatus.PENDING,
        )
        .with_for_update()
    ):
        payments.order_transition(order, OrderStatus.SUPERSEDED)


def _renewed(sub: Subscription, order: Order, now: dt.datetime) -> list[Callable[[], object]]:
    """A renewal with nothing to charge (credit covers it): the next period at once."""
    payments.order_transition(order, OrderStatus.PAID)
    before = payments.state(sub)
    payments.activate(sub, order, now)
    sub.next_period = sub.next_currency = None
    return [_changed_hook(sub, before, now, "renewal")]


def _failed_attempt(
    sub: Subscription,
    account: Account,
    order: Order,
    payment: Payment | None,
    now: dt.datetime,
    deps: Deps,
    report: Report,
    *,
    code: str,
) -> list[Callable[[], object]]:
    """Count the failure; schedule the next try (e-mail and banner) or suspend."""
    assert sub.period_end is not None
    report.failed += 1
    by_hand = code == BY_HAND and payment is None
    if (
        order.status == OrderStatus.PENDING
        and not by_hand
        and (payment is None or payment.status == PaymentStatus.FAILED)
    ):
        payments.order_transition(order, OrderStatus.FAILED)
    sub.renewal_attempts += 1
    failures = sub.renewal_attempts
    retry_days = deps.settings.retry_days
    if failures > len(retry_days):
        return _suspend(sub, now, "payment_failed", deps, report)
    before = payments.state(sub)
    sub.status = SubscriptionStatus.PAST_DUE.value
    retry_day = sub.period_end + dt.timedelta(days=retry_days[failures - 1])
    # On schedule; a run that catches up after an outage still spaces its tries.
    sub.retry_at = max(deps.settings.day_start(retry_day), now + MIN_RETRY_SPACING)
    if order.status == OrderStatus.PENDING:
        # The charge waits for the customer's 3-D Secure, or for the customer to pay by
        # hand: keep its order valid for the version this change gives the subscription, so
        # completing it renews the period.
        db.session.flush()
        order.subscription_version = sub.version
    if by_hand:
        _queue(
            report,
            account.id,
            "renewal_pay",
            f"pay:{sub.id}:{sub.period_end.isoformat()}:{failures}",
            now,
            end=sub.period_end,
            amount=order.total,
            retry_on=deps.settings.day(sub.retry_at),
            last_try=failures == len(retry_days),
            pay_url=f"{deps.settings.public_url}/package/renewal",
            **_links(deps.settings),
        )
        return (
            [_changed_hook(sub, before, now, "renewal_failed")]
            if before.status != sub.status
            else []
        )
    _queue(
        report,
        account.id,
        "renewal_failed",
        f"failed:{sub.id}:{sub.period_end.isoformat()}:{failures}",
        now,
        end=sub.period_end,
        amount=order.total,
        reason=code,
        retry_on=deps.settings.day(sub.retry_at),
        last_try=failures == len(retry_days),
        method=_describe(payments.default_method(account.id)),
        **_links(deps.settings),
    )
    return (
        [_changed_hook(sub, before, now, "renewal_failed")] if before.status != sub.status else []
    )


def _suspend(
    sub: Subscription, now: dt.datetime, reason: str, deps: Deps, report: Report
) -> list[Callable[[], object]]:
    """R10: the period ended unpaid. The package stays on record for reactivation."""
    assert sub.period_end is not None
    before = payments.state(sub)
    sub.status = SubscriptionStatus.SUSPENDED.value
    sub.suspended_at = now
    sub.suspended_reason = reason
    sub.auto_renew = False
    sub.retry_at = None
    report.suspended += 1
    for order in db.session.scalars(
        select(Order).where(
            Order.account_id == sub.account_id,
            Order.status == OrderStatus.PENDING,
            Order.idempotency_key.like(f"renewal-{sub.id}-%"),
        )
    ):
        payments.order_transition(order, OrderStatus.SUPERSEDED)
    _queue(
        report,
        sub.account_id,
        "suspended",
        f"suspended:{sub.id}:{sub.period_end.isoformat()}",
        now,
        end=sub.period_end,
        reason=reason,
        **_links(deps.settings),
    )
    return [_changed_hook(sub, before, now, "suspension")]


def _changed_hook(
    sub: Subscription, before: Any, now: dt.datetime, reason: str
) -> Callable[[], object]:
    event = SubscriptionChanged(
        account_id=sub.account_id,
        subscription_id=sub.id,
        before=before,
        after=payments.state(sub),
        reason=reason,
        changed_at=now,
    )

    def call() -> object:
        from portal.plugin_api.registry import registry

        return registry().hook.subscription_changed(event=event)

    return call


# -- what the portal shows ------------------------------------------------------------------


@dataclass(frozen=True)
class Banner:
    kind: str  # "ending", "past_due", "suspended"
    day: dt.date | None
    days: int = 0
    reason: str | None = None
    #: past due with the renewal open to be paid by hand (``/package/renewal``)
    pay_by_hand: bool = False


def banner(sub: Subscription | None, now: dt.datetime, settings: Settings) -> Banner | None:
    """The lifecycle banner for the portal's pages (R10), or None."""
    if sub is None or not sub.is_paid:
        return None
    if sub.status == SubscriptionStatus.SUSPENDED:
        since = settings.day(sub.suspended_at) if sub.suspended_at else sub.period_end
        return Banner("suspended", since, reason=sub.suspended_reason)
    if sub.status == SubscriptionStatus.PAST_DUE:
        retry = settings.day(sub.retry_at) if sub.retry_at else None
        by_hand = open_renewal(sub.account_id, now) is not None
        return Banner("past_due", retry, pay_by_hand=by_hand)
    assert sub.period_end is not None
    days_left = (sub.period_end - settings.day(now)).days
    if not sub.auto_renew and 0 <= days_left <= BANNER_DAYS:
        return Banner("ending", sub.period_end, days=days_left)
    return None


def open_renewal(account_id: int, now: dt.datetime) -> Order | None:
    """The account's renewal order left open to be paid by hand (its method cannot be
    charged again), the latest attempt's, while it can still be paid; else ``None``."""
    order = db.session.scalar(
        select(Order)
        .where(
            Order.account_id == account_id,
            Order.idempotency_key.like("renewal-%"),
            Order.status == OrderStatus.PENDING.value,
            Order.expires_at > now,
        )
        .order_by(Order.id.desc())
        .limit(1)
    )
    return order if isinstance(order, Order) else None


# -- composition: what the app uses -----------------------------------------------------------


def deps_for(app: Any) -> Deps:
    from portal.plugin_api.registry import registry

    catalogue: Catalogue = app.extensions["pakiet.catalogue"]
    pricing = Pricing(
        catalogue=catalogue,
        vat_rates=app.extensions["pakiet.vat_rates"],
        seller_country=app.config["SELLER"]["country"],
    )
    return Deps(
        pricing=pricing,
        providers=registry().payment_providers.get,
        settings=settings_for(app),
    )


def run_now(
    now: dt.datetime | None = None,
    limit: int | None = None,
    threads: int | None = None,
    follow_ups: bool = True,
) -> Report:
    from flask import current_app

    if threads is None:
        threads = int(current_app.config.get("RENEWAL_THREADS", 1))
    return run(
        now=now or utcnow(),
        deps=deps_for(current_app),
        limit=limit,
        threads=threads,
        follow_ups=follow_ups,
    )
