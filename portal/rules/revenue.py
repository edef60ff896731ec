"""Revenue over time for the staff dashboard: MRR per currency, gained and lost subscriptions.

The history is rebuilt from what is kept: every paid period is a paid order (a purchase, a
change, a renewal), with its package price for the period (net, before account credit) and
its dates in the order's quote. An account pays in a month when a paid period covers the
month's last day (today, for the month under way):

- a later paid order replaces an earlier one from its first day (a change starts a new
  period, R6), and a staff return to Free ends the periods paid before it on its day (R16);
  a refunded order (R14) never counts;
- MRR is the sum of the covering periods' net prices, a yearly one at a twelfth, per
  currency without conversion, rounded half-up once per currency (as the dashboard's
  current figure);
- *new* in a month: paying at its end and not at the previous month's end (a first
  purchase, or a return after a suspension); *churned*: the other way round.

Staff extensions of a period are not orders and are not counted. Money stays in integer
minor units; the twelfth is taken with Decimal.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select

from portal.infra.extensions import db
from portal.infra.models import AuditEntry, Order, OrderStatus
from portal.rules.catalogue import PackageCode, Period
from portal.rules.money import Money

# A period lasts at most a year (plus a leap day); orders ending this long before the
# window cannot cover any of its days, nor cut a period that does.
_REACH = dt.timedelta(days=400)


@dataclass(frozen=True)
class Paid:
    """One paid period of an account, as sold."""

    account_id: int
    order_id: int
    created_at: dt.datetime
    start: dt.date
    end: dt.date  # exclusive
    currency: str
    twelfths: int  # the period's net price as 12 x its monthly value, exact


@dataclass(frozen=True)
class Month:
    first: dt.date  # the month's first day
    day: dt.date  # the day it is measured on: its last day, or today
    mrr: dict[str, Money]
    paying: int
    new: int
    churned: int


def months_back(today: dt.date, count: int) -> list[dt.date]:
    """The first days of the ``count`` months ending with today's, oldest first."""
    firsts = []
    year, month = today.year, today.month
    for _ in range(count):
        firsts.append(dt.date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return firsts[::-1]


def _month_end(first: dt.date) -> dt.date:
    following = dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return following - dt.timedelta(days=1)


Span = tuple[dt.date, dt.date, str, int]  # [start, end), currency, twelfths


def coverage(
    paid: Iterable[Paid], cuts: dict[int, list[tuple[dt.datetime, dt.date]]]
) -> dict[int, list[Span]]:
    """Each account's periods as it really paid them: [start, effective end), currency,
    twelfths. A later order ends an earlier one on its first day; a staff return to Free
    (``cuts``: account -> [(when, local day)]) ends the orders created before it."""
    by_account: dict[int, list[Paid]] = defaultdict(list)
    for row in paid:
        by_account[row.account_id].append(row)
    result: dict[int, list[Span]] = {}
    for account_id, rows in by_account.items():
        rows.sort(key=lambda r: (r.start, r.order_id))
        spans: list[Span] = []
        for index, row in enumerate(rows):
            end = row.end
            if index + 1 < len(rows):
                end = min(end, rows[index + 1].start)
            for when, day in cuts.get(account_id, ()):
                if when > row.created_at:
                    end = min(end, max(day, row.start))
            if end > row.start:
                spans.append((row.start, end, row.currency, row.twelfths))
        result[account_id] = spans
    return result


def history(*, today: dt.date, timezone: str, months: int = 12) -> list[Month]:
    """MRR per currency, paying accounts, new and churned, for the ``months`` calendar
    months ending with today's (oldest first). Two queries, whatever the number of months."""
    firsts = months_back(today, months + 1)  # one more: the month before the first one
    days = [min(_month_end(first), today) for first in firsts]
    since = firsts[0] - _REACH
    start_col = Order.quote["period_start"].as_string()
    end_col = Order.quote["period_end"].as_string()
    rows = db.session.execute(
        select(
            Order.account_id,
            Order.id,
            Order.created_at,
            start_col,
            end_col,
            Order.currency,
            Order.period,
            Order.subtotal_minor,
        ).where(
            Order.status == OrderStatus.PAID.value,
            Order.package != PackageCode.FREE.value,
            end_col > since.isoformat(),
            start_col <= today.isoformat(),
        )
    ).all()
    paid = [
        Paid(
            account_id=int(account_id),
            order_id=int(order_id),
            created_at=created_at,
            start=dt.date.fromisoformat(str(start)),
            end=dt.date.fromisoformat(str(end)),
            currency=str(currency),
            twelfths=int(net) * (12 if period == Period.MONTH else 1),
        )
        for account_id, order_id, created_at, start, end, currency, period, net in rows
    ]
    zone = ZoneInfo(timezone)
    cuts: dict[int, list[tuple[dt.datetime, dt.date]]] = defaultdict(list)
    for account_id, when in db.session.execute(
        select(AuditEntry.account_id, AuditEntry.created_at).where(
            AuditEntry.action == "return_to_free",
            AuditEntry.account_id.is_not(None),
            AuditEntry.created_at >= dt.datetime.combine(since, dt.time(), zone),
        )
    ).all():
        if account_id is not None:
            cuts[account_id].append((when, when.astimezone(zone).date()))
    spans = coverage(paid, cuts)

    def paying_on(day: dt.date) -> dict[int, tuple[str, int]]:
        found = {}
        for account_id, periods in spans.items():
            for start, end, currency, twelfths in periods:
                if start <= day < end:
                    found[account_id] = (currency, twelfths)
                    break
        return found

    snapshots = [paying_on(day) for day in days]
    result = []
    for index in range(1, len(firsts)):
        now_paying, before = snapshots[index], snapshots[index - 1]
        totals: dict[str, int] = defaultdict(int)
        for currency, twelfths in now_paying.values():
            totals[currency] += twelfths
        result.append(
            Month(
                first=firsts[index],
                day=days[index],
                mrr={
                    currency: Money(
                        int((Decimal(total) / 12).to_integral_value(ROUND_HALF_UP)), currency
                    )
                    for currency, total in sorted(totals.items())
                },
                paying=len(now_paying),
                new=len(now_paying.keys() - before.keys()),
                churned=len(before.keys() - now_paying.keys()),
            )
        )
    return result
