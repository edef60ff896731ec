"""What My package shows besides the account, read in one statement (issue 26).

The page needs three small facts: the default saved method (R7), the customer's latest
checkout attempt of the last day (R9: pending or failed) and whether a refund may be
offered (R14: the account has exactly one paid package payment). The method and the
attempt are derived tables of at most one row, the count a scalar subquery, none of them
correlated (the account is a parameter), joined to a one-row base: one round trip, the same
SQL on PostgreSQL and SQLite, and each part a short index walk whatever the number of
accounts, payments or orders (the attempt through ``ix_checkout_order_account_created``).

Only the rare account with exactly one paid payment goes on to :func:`refunds.offer`, which
checks the rest of R14 (the deadline, the provider, the invoice) with its own statements.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, bindparam, func, literal_column, select, true
from sqlalchemy.orm import aliased

from portal.infra.extensions import db
from portal.infra.models import Account, Order, Payment, PaymentMethod, PaymentStatus
from portal.plugin_api.contracts import SavedMethod
from portal.rules import payments, refunds
from portal.rules.money import Money

# A pending checkout shows for a day at most (its order expires sooner): see payments.Attempt.
ATTEMPT_WINDOW = dt.timedelta(days=1)

# Short names for the tables: My package's statement (these facts with the user's row) stays
# under psycopg's 4 KB, the longest it keeps parsed between executions.
_MET = aliased(PaymentMethod, name="pm")
_PAY = aliased(Payment, name="p")
_ORD = aliased(Order, name="o")

_METHOD = (
    select(
        _MET.provider.label("method_provider"),
        _MET.provider_ref,
        _MET.customer_ref,
        _MET.brand,
        _MET.last4,
        _MET.exp_month,
        _MET.exp_year,
        _MET.email,
    )
    .where(
        _MET.account_id == bindparam("account_id"),
        _MET.removed_at.is_(None),
        _MET.is_default.is_(True),
    )
    .order_by(_MET.id)
    .limit(1)
    .subquery("method")
)

# The newest payment on the account's newest checkout orders of the last day (usually none):
# found from those orders, each one's newest payment by its index, never by walking the
# payments newest first (which a planner picks for ORDER BY id DESC LIMIT 1, and which costs
# an account with years of renewals, or the whole table, a scan). Ten orders at most: a
# customer retries the attempt My package shows, on its own order, and an account that
# placed a hundred orders today costs what one with ten does.
RECENT_ORDERS = 10
_PAYMENT = aliased(Payment, name="p2")
_OF_ORDER = aliased(Order, name="ro")
_RECENT = (
    select(_OF_ORDER.id)
    .where(
        _OF_ORDER.account_id == bindparam("account_id"),
        _OF_ORDER.created_at > bindparam("since"),
        _OF_ORDER.idempotency_key.not_like("renewal-%"),
    )
    .order_by(_OF_ORDER.created_at.desc())
    .limit(RECENT_ORDERS)
    .subquery("recent")
)
_NEWEST = (
    select(
        func.max(
            select(func.max(_PAYMENT.id)).where(_PAYMENT.order_id == _RECENT.c.id).scalar_subquery()
        )
    )
    .select_from(_RECENT)
    .scalar_subquery()
)
_ATTEMPT = (
    select(
        _PAY.status.label("payment_status"),
        _PAY.failure_code,
        _PAY.amount_minor,
        _PAY.currency,
        _ORD.status.label("order_status"),
        _ORD.public_id.label("order_public_id"),
        _ORD.expires_at,
    )
    .join(_ORD, _PAY.order_id == _ORD.id)
    .where(_PAY.id == _NEWEST, _PAY.account_id == bindparam("account_id"))
    .subquery("attempt")
)

_BASE = select(literal_column("1").label("one")).subquery("base")

PACKAGE_FACTS = (
    select(
        bindparam("account_id", type_=Integer).label("account_id"),
        _METHOD,
        _ATTEMPT,
        refunds.FIRST_PAID_PACKAGE_COUNT.label("paid"),
    )
    .select_from(_BASE)
    .outerjoin(_METHOD, true())
    .outerjoin(_ATTEMPT, true())
)


@dataclass(frozen=True)
class PackageFacts:
    method_provider: str | None  # the default method's provider, None without one
    method: SavedMethod | None
    attempt: payments.Attempt | None
    refundable: Payment | None  # the payment a refund may be asked for now (R14)


def facts_params(now: dt.datetime) -> dict[str, Any]:
    """PACKAGE_FACTS' parameters besides the account: the attempts it looks at."""
    return {"since": now - ATTEMPT_WINDOW}


def package_facts(
    account: Account, now: dt.datetime, refund_now: dt.datetime, row: Any = None
) -> PackageFacts:
    """``refund_now``: the refund pages' clock (R14's deadline), ``now`` the checkout's;
    ``row``: PACKAGE_FACTS' row for the account when it came already (My package reads it
    with the user's, ``session_user.along_with_user``), else it is read here."""
    if row is None:
        row = db.session.execute(
            PACKAGE_FACTS, {"account_id": account.id, **facts_params(now)}
        ).one()
    method = payments.saved(row) if row.method_provider is not None else None
    attempt = None
    if row.payment_status is not None:
        attempt = payments.attempt_of(
            PaymentStatus(row.payment_status),
            row.failure_code,
            Money(row.amount_minor, row.currency),
            row.order_status,
            row.order_public_id,
            row.expires_at,
            now,
        )
    refundable = refunds.offer(account, refund_now) if row.paid == 1 else None
    return PackageFacts(row.method_provider, method, attempt, refundable)
