"""Demo data for ``make run``: one account per kind of customer, and an admin."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from portal import accounts
from portal.catalogue import Catalogue, PackageCode, Period
from portal.extensions import db
from portal.models import Role, SubscriptionStatus, User, utcnow
from portal.periods import add_period

PASSWORD = "pakiet-demo-2026"


@dataclass(frozen=True)
class DemoLogin:
    email: str
    company: str
    description: str
    language: str | None = None


LOGINS = (
    DemoLogin("free@demo.example.com", "Kwiaciarnia Bratek", "Free", "pl"),
    DemoLogin(
        "standard@demo.example.com",
        "Sklep Rowerowy Szprycha",
        "Standard, monthly, 3 agents, PLN",
        "pl",
    ),
    DemoLogin("pro@demo.example.com", "Alpine Tours GmbH", "Pro, yearly, EUR", "en"),
    DemoLogin("admin@demo.example.com", "", "admin"),
)


def _paid(
    user: User,
    catalogue: Catalogue,
    *,
    package: PackageCode,
    period: Period,
    agents: int,
    conversations: int,
    currency: str,
    start: dt.date,
) -> None:
    assert user.account is not None
    sub = user.account.subscription
    pkg = catalogue.package(package)
    extra_packs = (conversations - pkg.included_conversations) // pkg.conversation_pack
    net = (
        pkg.agent_price(period, currency) * agents
        + catalogue.pack_price(period, currency) * extra_packs
    )
    sub.package = package.value
    sub.period = period.value
    sub.agents = agents
    sub.conversations = conversations
    sub.currency = currency
    sub.status = SubscriptionStatus.ACTIVE.value
    sub.period_start = start
    sub.period_end = add_period(start, period)
    sub.auto_renew = True
    sub.period_net_minor = net.minor


def load(catalogue: Catalogue, *, today: dt.date) -> int:
    """Create whichever demo accounts are missing; return how many were created."""
    created = 0
    now = utcnow()
    for login in LOGINS:
        if accounts.find_user(login.email) is not None:
            continue
        created += 1
        if login.description == "admin":
            accounts.create_admin(email=login.email, password=PASSWORD, now=now)
            continue
        user = accounts.register_account(
            catalogue=catalogue,
            company=login.company,
            email=login.email,
            password=PASSWORD,
            language=login.language,
            now=now,
            role=Role.CUSTOMER,
        )
        if login.email.startswith("standard@"):
            _paid(
                user,
                catalogue,
                package=PackageCode.STANDARD,
                period=Period.MONTH,
                agents=3,
                conversations=100,
                currency="PLN",
                start=today - dt.timedelta(days=10),
            )
        elif login.email.startswith("pro@"):
            _paid(
                user,
                catalogue,
                package=PackageCode.PRO,
                period=Period.YEAR,
                agents=8,
                conversations=1500,
                currency="EUR",
                start=today - dt.timedelta(days=100),
            )
        db.session.commit()
    return created
