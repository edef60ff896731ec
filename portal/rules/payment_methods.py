"""Saved payment methods (R8, R10): the default one renewals charge, removal, expiry.

A renewal holds the account's subscription locked while it charges (lifecycle); removal locks
the method and then the subscription with ``FOR UPDATE NOWAIT`` on PostgreSQL, so removing a
method under a charge answers :class:`MethodBusy` at once instead of waiting or racing it.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from portal.infra.extensions import db
from portal.infra.models import PaymentMethod, Subscription


class MethodBusy(Exception):
    """Another request holds the method (a charge is under way): try again in a moment."""


class MethodRefused(Exception):
    """The change cannot be made; ``code`` names why (translated by the view)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def active(account_id: int) -> list[PaymentMethod]:
    """The account's saved methods, the default first, then the newest."""
    return list(
        db.session.scalars(
            select(PaymentMethod)
            .where(PaymentMethod.account_id == account_id, PaymentMethod.removed_at.is_(None))
            .order_by(PaymentMethod.is_default.desc(), PaymentMethod.id.desc())
        )
    )


class Expiring(Protocol):
    """A saved method's expiry: a :class:`PaymentMethod` row or a plugin's ``SavedMethod``."""

    @property
    def exp_month(self) -> int | None: ...

    @property
    def exp_year(self) -> int | None: ...


def valid_through(method: Expiring) -> dt.date | None:
    """The last day a card can be charged (the end of its expiry month); None: no expiry."""
    if method.exp_year is None or method.exp_month is None:
        return None
    last = calendar.monthrange(method.exp_year, method.exp_month)[1]
    return dt.date(method.exp_year, method.exp_month, last)


def expires_before(method: Expiring | None, day: dt.date | None) -> bool:
    """Whether ``method`` can no longer be charged on ``day`` (a renewal date)."""
    if method is None or day is None:
        return False
    through = valid_through(method)
    return through is not None and through < day


def _lock(account_id: int, method_id: int) -> PaymentMethod:
    """The customer's own live method, locked without waiting; another's is not found."""
    stmt = (
        select(PaymentMethod)
        .where(
            PaymentMethod.id == method_id,
            PaymentMethod.account_id == account_id,
            PaymentMethod.removed_at.is_(None),
        )
        .with_for_update(nowait=True)
        .execution_options(populate_existing=True)
    )
    try:
        method = db.session.scalar(stmt)
    except OperationalError as exc:  # PostgreSQL: lock_not_available (55P03)
        db.session.rollback()
        raise MethodBusy from exc
    if not isinstance(method, PaymentMethod):
        raise MethodRefused("unknown_method")
    return method


def _subscription(account_id: int) -> Subscription:
    """The subscription, locked without waiting: a renewal holds it while it charges."""
    try:
        sub = db.session.scalar(
            select(Subscription)
            .where(Subscription.account_id == account_id)
            .with_for_update(nowait=True)
            .execution_options(populate_existing=True)
        )
    except OperationalError as exc:
        db.session.rollback()
        raise MethodBusy from exc
    assert isinstance(sub, Subscription)
    return sub


def make_default(*, account_id: int, method_id: int) -> PaymentMethod:
    """Renewals charge this method from now on; the others stay saved."""
    method = _lock(account_id, method_id)
    for other in active(account_id):
        other.is_default = other.id == method.id
    db.session.commit()
    return method


def removal_switches_auto_renew_off(*, account_id: int, method_id: int) -> bool:
    """Whether removing it leaves a paid package renewing automatically with nothing to charge."""
    methods = active(account_id)
    if [m.id for m in methods] != [method_id]:
        return False
    sub = db.session.scalar(select(Subscription).where(Subscription.account_id == account_id))
    return sub is not None and sub.is_paid and sub.auto_renew


def remove(
    *, account_id: int, method_id: int, switch_auto_renew_off: bool, now: dt.datetime
) -> bool:
    """Remove a saved method; returns whether auto-renewal was switched off with it.

    Removing the last method while auto-renewal is on needs ``switch_auto_renew_off``
    (the customer confirmed it); without it nothing changes (``last_method_auto_renew``).
    The newest remaining method becomes the default when the default one goes.
    """
    method = _lock(account_id, method_id)
    sub = _subscription(account_id)
    others = [m for m in active(account_id) if m.id != method.id]
    switched_off = False
    if not others and sub.is_paid and sub.auto_renew:
        if not switch_auto_renew_off:
            db.session.rollback()
            raise MethodRefused("last_method_auto_renew")
        sub.auto_renew = False
        switched_off = True
    was_default = method.is_default
    method.removed_at = now
    method.is_default = False
    if was_default and others:
        newest = max(others, key=lambda m: m.id)
        newest.is_default = True
    db.session.commit()
    return switched_off
