"""The dashboard's 12 months (issue 25): MRR per currency, new and churned, from paid orders."""

from __future__ import annotations

import datetime as dt
from itertools import count

import pytest

from portal.infra.extensions import db
from portal.infra.models import Account, AuditEntry, Order, OrderStatus
from portal.rules import revenue
from portal.rules.money import Money

TODAY = dt.date(2026, 11, 26)
WARSAW = "Europe/Warsaw"
_ids = count(1)


def moment(day: dt.date, hour: int = 10) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)


def paid(
    account: Account,
    start: dt.date,
    end: dt.date,
    net: int,
    *,
    currency: str = "PLN",
    period: str = "month",
    status: str = OrderStatus.PAID.value,
    created: dt.datetime | None = None,
) -> None:
    n = next(_ids)
    created = created or moment(start, 8)
    db.session.add(
        Order(
            public_id=f"ord{n}",
            account_id=account.id,
            idempotency_key=f"key{n}",
            status=status,
            subscription_version=1,
            package="standard",
            period=period,
            agents=1,
            conversations=100,
            currency=currency,
            subtotal_minor=net,
            net_minor=net,
            vat_minor=0,
            total_minor=net,
            tax_treatment="domestic",
            quote={"period_start": start.isoformat(), "period_end": end.isoformat()},
            created_at=created,
            expires_at=created + dt.timedelta(days=1),
        )
    )


def monthly(first: dt.date, months: int) -> list[tuple[dt.date, dt.date]]:
    days = []
    for i in range(months + 1):
        year, month = divmod(first.month - 1 + i, 12)
        days.append(dt.date(first.year + year, month + 1, first.day))
    return list(zip(days, days[1:], strict=False))


@pytest.fixture
def history(app):
    with app.app_context():
        a, b, c, d = (Account(name=name) for name in "ABCD")
        db.session.add_all([a, b, c, d])
        db.session.flush()
        # A: Standard monthly PLN 89.00 from 10 January 2026, renewed every month.
        for start, end in monthly(dt.date(2026, 1, 10), 11):
            paid(a, start, end, 8900)
        # B: a year in EUR (1,200.00 = 100.00 a month), not renewed: churned in June.
        paid(b, dt.date(2025, 6, 1), dt.date(2026, 6, 1), 120000, currency="EUR", period="year")
        # C: PLN 100.00 from 5 March, changed on 20 March to 200.00 (a new period, R6),
        # renewed, then returned to Free by staff on 2 May.
        paid(c, dt.date(2026, 3, 5), dt.date(2026, 4, 5), 10000)
        paid(c, dt.date(2026, 3, 20), dt.date(2026, 4, 20), 20000)
        paid(c, dt.date(2026, 4, 20), dt.date(2026, 5, 20), 20000)
        db.session.add(
            AuditEntry(
                actor_role="admin",
                account_id=c.id,
                action="return_to_free",
                created_at=moment(dt.date(2026, 5, 2)),
            )
        )
        # D: refunded within 15 days (R14): never revenue.
        paid(d, dt.date(2026, 8, 1), dt.date(2026, 9, 1), 50000, status="refunded")
        db.session.commit()
        yield revenue.history(today=TODAY, timezone=WARSAW, months=12)


def test_twelve_months_end_with_today_measured_at_month_ends(history):
    assert [m.first for m in history] == [dt.date(2025, 12, 1)] + [
        dt.date(2026, month, 1) for month in range(1, 12)
    ]
    assert history[0].day == dt.date(2025, 12, 31)
    assert history[-1].day == TODAY  # the month under way: today


def test_mrr_per_currency_follows_changes_refunds_and_returns_to_free(history):
    pln = [m.mrr.get("PLN") for m in history]
    eur = [m.mrr.get("EUR") for m in history]
    assert pln == [
        None,  # December 2025: nothing in PLN
        Money(8900, "PLN"),
        Money(8900, "PLN"),
        Money(28900, "PLN"),  # March: A, and C's changed period replaces its first one
        Money(28900, "PLN"),
        Money(8900, "PLN"),  # May: C back on Free since the 2nd
        *[Money(8900, "PLN")] * 6,  # the refunded August order never counts
    ]
    assert eur == [Money(10000, "EUR")] * 6 + [None] * 6


def test_new_and_churned_per_month(history):
    assert [m.new for m in history] == [0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert [m.churned for m in history] == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    assert [m.paying for m in history] == [1, 2, 2, 3, 3, 2, 1, 1, 1, 1, 1, 1]


def test_a_yearly_twelfth_is_rounded_half_up_once_per_currency(app):
    with app.app_context():
        e, f = Account(name="E"), Account(name="F")
        db.session.add_all([e, f])
        db.session.flush()
        # 1,000.01 and 1,000.01 a year: 2,000.02 / 12 = 166.668333... -> 166.67 (not 2 x 83.33)
        paid(e, dt.date(2026, 2, 1), dt.date(2027, 2, 1), 100001, period="year")
        paid(f, dt.date(2026, 2, 1), dt.date(2027, 2, 1), 100001, period="year")
        db.session.commit()
        months = revenue.history(today=TODAY, timezone=WARSAW, months=12)
    assert months[-1].mrr == {"PLN": Money(16667, "PLN")}
    assert months[1].mrr == {}  # January 2026


def test_two_queries_whatever_the_months(app, history):
    from sqlalchemy import event

    statements = []
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        revenue.history(today=TODAY, timezone=WARSAW, months=24)
    assert len(statements) == 2
