"""Demo data for ``make run``: one account per kind of customer, and an admin.

Two steps. :func:`load` (``flask demo-data``) creates the accounts: Free, Standard (monthly,
3 agents, PLN, started 10 days ago) and Pro (yearly, 8 agents, 1,500 conversations, EUR,
started 100 days ago), with their subscriptions as they stand; the tests build on exactly
that, and with the billing country and address (no VAT number yet: it needs VIES).
:func:`complete` (run by ``scripts/devserver.py`` once the emulators are up, so the
VIES check and the NBP rate of an invoice can be had) makes the demo tell the truth: every
account gets its billing information (country, address; Pro a VAT number VIES confirms),
and every paid account the purchase that started its current period: a Visa saved at
Stripe, the paid order and payment, and the invoice, all through the portal's own
operations, dated the day the period started. :func:`stripe_seeds` lists what the Stripe
emulator must hold for that (the customer, the card, the PaymentIntent of the payment),
under fixed ids, since the emulator forgets everything when it stops. Both steps are
idempotent: a second run changes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import select

from portal.infra.extensions import db
from portal.infra.models import (
    Account,
    Invoice,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Role,
    SubscriptionStatus,
    User,
    utcnow,
)
from portal.plugin_api.contracts import PaymentEvent, PaymentEventKind, SavedMethod
from portal.rules import accounts, billing_info, invoicing, orders, payments, vat
from portal.rules.catalogue import Catalogue, PackageCode, Period
from portal.rules.periods import add_period
from portal.rules.pricing import Current, Selection, quote

log = logging.getLogger(__name__)

PASSWORD = "pakiet-demo-2026"


@dataclass(frozen=True)
class DemoBilling:
    """What a demo customer entered in Billing information."""

    company_name: str
    street: str
    postcode: str
    city: str
    country: str
    vat_number: str | None = None


@dataclass(frozen=True)
class DemoCard:
    """A Stripe test card a demo customer saved at their first payment (fixed ids)."""

    customer_ref: str
    method_ref: str
    number: str
    brand: str
    exp_month: int = 12
    exp_year: int = 2034

    @property
    def last4(self) -> str:
        return self.number[-4:]

    @property
    def intent_ref(self) -> str:
        """The PaymentIntent of the payment that started the current period."""
        return self.method_ref.replace("pm_", "pi_", 1)

    @property
    def charge_ref(self) -> str:
        return self.method_ref.replace("pm_", "ch_", 1)


@dataclass(frozen=True)
class DemoLogin:
    email: str
    company: str
    description: str
    language: str | None = None
    billing: DemoBilling | None = None
    card: DemoCard | None = None


VISA = "4242424242424242"

LOGINS = (
    DemoLogin(
        "free@demo.example.com",
        "Kwiaciarnia Bratek",
        "Free",
        "pl",
        billing=DemoBilling("Kwiaciarnia Bratek", "ul. Kwiatowa 7", "31-150", "Kraków", "PL"),
    ),
    DemoLogin(
        "standard@demo.example.com",
        "Sklep Rowerowy Szprycha",
        "Standard, monthly, 3 agents, PLN",
        "pl",
        billing=DemoBilling(
            "Sklep Rowerowy Szprycha Sp. z o.o.",
            "ul. Długa 5",
            "80-831",
            "Gdańsk",
            "PL",
            "PL9574890682",
        ),
        card=DemoCard("cus_demo_standard", "pm_demo_standard", VISA, "visa"),
    ),
    DemoLogin(
        "pro@demo.example.com",
        "Alpine Tours GmbH",
        "Pro, yearly, EUR",
        "en",
        # Germany's VIES confirms DE812415868 (the emulator's table): reverse charge.
        billing=DemoBilling(
            "Alpine Tours GmbH", "Leopoldstraße 12", "80802", "München", "DE", "DE812415868"
        ),
        card=DemoCard("cus_demo_pro", "pm_demo_pro", VISA, "visa"),
    ),
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
            confirmed=True,
        )
        if login.billing is not None:
            _address(user.account, login.billing)
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


# -- the demo tells the truth (devserver, with the emulators up) -----------------------------


@dataclass(frozen=True)
class StripeSeed:
    """What the Stripe emulator must hold for one demo customer: the saved card and, if
    the customer paid with it, the PaymentIntent of that payment (a refund needs it)."""

    email: str
    name: str
    card: DemoCard
    payment_public_id: str | None = None
    amount_minor: int = 0
    currency: str = ""
    refunded_minor: int = 0
    created: dt.datetime | None = None


def _demo_users() -> list[tuple[DemoLogin, User]]:
    found = []
    for login in LOGINS:
        user = accounts.find_user(login.email) if login.description != "admin" else None
        if user is not None and user.account is not None:
            found.append((login, user))
    return found


def _fixed_id(text: str) -> str:
    """A public id (32 hex digits) that is the same in every demo database."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _purchase_time(day: dt.date) -> dt.datetime:
    """09:00 in the portal's time zone on ``day``: when the demo customer paid."""
    zone = ZoneInfo(current_app.config["BABEL_DEFAULT_TIMEZONE"])
    return dt.datetime.combine(day, dt.time(9, 0), tzinfo=zone).astimezone(dt.UTC)


def _address(account: Account | None, data: DemoBilling) -> None:
    """The buyer's country and address, without the VAT number (which :func:`complete`
    saves once VIES can check it): nothing is sold without them (issue 23, point 5)."""
    assert account is not None and account.billing_info is not None
    billing = account.billing_info
    billing.company_name, billing.street = data.company_name, data.street
    billing.postcode, billing.city, billing.country = data.postcode, data.city, data.country


def _billing(account: Account, data: DemoBilling, now: dt.datetime) -> bool:
    """Billing information as the customer would have saved it (VAT number checked)."""
    billing = account.billing_info
    if billing is not None and billing.country and billing.vat_number == data.vat_number:
        return False
    billing_info.save(
        account_id=account.id,
        data=billing_info.BillingData(
            company_name=data.company_name,
            street=data.street,
            postcode=data.postcode,
            city=data.city,
            country=data.country,
            vat_number=data.vat_number,
            invoice_email=account.billing_info.invoice_email,
        ),
        apply_to_last_invoice=False,
        user_id=None,
        settings=vat.settings_for(current_app),
        now=now,
    )
    return True


def _purchase(account: Account, card: DemoCard, catalogue: Catalogue) -> bool:
    """The payment that started the current period, if the account has none: the quote of
    buying today's subscription from Free on the period's first day, paid with ``card``
    (saved by that payment), settled and invoiced by the portal's payment operation."""
    sub = account.subscription
    if not sub.is_paid or sub.period_start is None or sub.currency is None:
        return False
    if db.session.scalar(select(Payment.id).where(Payment.account_id == account.id).limit(1)):
        return False
    paid_at = _purchase_time(sub.period_start)
    pricing = orders.Pricing(
        catalogue=catalogue,
        vat_rates=current_app.extensions["pakiet.vat_rates"],
        seller_country=current_app.config["SELLER"]["country"],
    )
    decision = orders.tax_decision(pricing, account.billing_info, sub.period_start)
    selection = Selection(
        package=PackageCode(sub.package),
        period=Period(sub.period),
        agents=sub.agents,
        conversations=sub.conversations,
        currency=sub.currency,
    )
    result = quote(catalogue, Current.free(), selection, sub.period_start, decision.rate)
    order = orders.new_order(
        account_id=account.id,
        public_id=_fixed_id(f"order {card.method_ref}"),
        idempotency_key=f"demo-{card.method_ref}",
        subscription_version=sub.version,
        result=result,
        decision=decision,
        now=paid_at,
        lifetime=orders.ORDER_LIFETIME,
    )
    db.session.add(order)
    db.session.flush()
    payment = Payment(
        public_id=_fixed_id(f"payment {card.method_ref}"),
        account_id=account.id,
        order_id=order.id,
        provider="stripe",
        provider_ref=card.intent_ref,
        idempotency_key=f"{order.public_id}-0",  # as payments.start names the first attempt
        status=PaymentStatus.PENDING.value,
        amount_minor=order.total_minor,
        currency=order.currency,
        created_at=paid_at,
    )
    db.session.add(payment)
    db.session.commit()

    def no_refund(payment: Payment, reason: str) -> None:
        raise RuntimeError(f"the demo payment {payment.public_id} was refused: {reason}")

    event = PaymentEvent(
        event_id=f"evt_demo_{card.method_ref.removeprefix('pm_demo_')}",
        kind=PaymentEventKind.SUCCEEDED,
        payment_id=payment.public_id,
        provider_ref=card.intent_ref,
        amount=payment.amount,
        charge_ref=card.intent_ref,
        method=SavedMethod(
            provider_ref=card.method_ref,
            brand=card.brand,
            customer_ref=card.customer_ref,
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
        ),
    )
    outcome = payments.apply_event("stripe", event, now=paid_at, refund=no_refund)
    if outcome is not payments.Outcome.APPLIED:
        raise RuntimeError(f"the demo payment of {account.name} was not applied: {outcome}")
    return True


def complete(catalogue: Catalogue, *, now: dt.datetime) -> int:
    """Make the demo accounts true (see the module's docs); return how many were changed.

    Needs the VIES and NBP emulators (or services) the app's plugins point at: a VAT
    number is checked when saved, and an EUR invoice shows its VAT in PLN at NBP's rate."""
    users = _demo_users()
    changed: set[str] = set()
    for login, user in users:
        account = user.account
        assert account is not None
        if login.billing is not None:
            # Entered just before the purchase (its tax depends on it), or now on Free.
            start = account.subscription.period_start
            entered = _purchase_time(start) - dt.timedelta(minutes=5) if start else now
            if _billing(account, login.billing, min(entered, now)):
                changed.add(login.email)
    # The oldest purchase first: invoice numbers follow the dates of issue.
    for login, user in sorted(users, key=lambda pair: _started(pair[1])):
        account = user.account
        if login.card is None or account is None:
            continue
        if _purchase(account, login.card, catalogue):
            changed.add(login.email)
        # An invoice postponed by an exchange-rate source that did not answer.
        for payment in db.session.scalars(
            select(Payment)
            .outerjoin(Invoice, Invoice.payment_id == Payment.id)
            .where(
                Payment.account_id == account.id,
                Payment.charge_ref == login.card.intent_ref,
                Payment.status == PaymentStatus.PAID,
                Invoice.id.is_(None),
            )
        ).all():
            if invoicing.issue_now(payment.id, now=payment.settled_at or now) is not None:
                changed.add(login.email)
    return len(changed)


def _started(user: User) -> dt.date:
    account = user.account
    start = account.subscription.period_start if account is not None else None
    return start or dt.date.max


def stripe_seeds() -> list[StripeSeed]:
    """The Stripe objects the demo's database names (see :class:`StripeSeed`)."""
    seeds = []
    for login, user in _demo_users():
        if login.card is None:
            continue
        account = user.account
        assert account is not None
        saved = db.session.scalar(
            select(PaymentMethod.id).where(
                PaymentMethod.provider == "stripe",
                PaymentMethod.provider_ref == login.card.method_ref,
            )
        )
        if saved is None:
            continue
        payment = db.session.scalar(
            select(Payment).where(
                Payment.provider == "stripe", Payment.charge_ref == login.card.intent_ref
            )
        )
        seed = StripeSeed(email=user.email, name=account.name, card=login.card)
        if payment is not None:
            seed = StripeSeed(
                email=user.email,
                name=account.name,
                card=login.card,
                payment_public_id=payment.public_id,
                amount_minor=payment.amount_minor,
                currency=payment.currency,
                refunded_minor=payment.refunded_minor,
                created=payment.created_at,
            )
        seeds.append(seed)
    return seeds
