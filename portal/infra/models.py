"""Database tables (SQLAlchemy 2, typed). Money is integer minor units plus a currency code.

Only migrations create the schema; these classes describe it for the ORM. Business
rules live in the domain modules; the CHECK constraints here are the last line of
defence against a bug writing nonsense.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    TypeDecorator,
    UniqueConstraint,
    event,
    select,
    text,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, column_property, mapped_column, relationship

from portal.infra.extensions import db
from portal.rules.catalogue import PackageCode, Period
from portal.rules.money import Money


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; pass an aware UTC datetime")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class OrderStatus(StrEnum):
    PENDING = "pending"  # placed at "Pay", awaiting the payment step
    PAID = "paid"
    FAILED = "failed"
    REFUNDED = "refunded"
    SUPERSEDED = "superseded"  # prices or the subscription changed before payment


class Role(StrEnum):
    CUSTOMER = "customer"
    ADMIN = "admin"


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    PAST_DUE = "past_due"  # a renewal charge failed; retries are under way
    SUSPENDED = "suspended"


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Account(db.Model):  # type: ignore[name-defined]
    """The customer company: owns users, billing information and one subscription."""

    __tablename__ = "account"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Warsaw")
    # A note the customer wants on every future invoice (a PO number, say).
    invoice_note: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    users: Mapped[list[User]] = relationship(back_populates="account")
    billing_info: Mapped[BillingInfo] = relationship(back_populates="account", uselist=False)
    subscription: Mapped[Subscription] = relationship(back_populates="account", uselist=False)
    # The method renewals charge (read-only here: portal.rules.payments changes it).
    default_method: Mapped[PaymentMethod | None] = relationship(
        primaryjoin="and_(PaymentMethod.account_id == Account.id, "
        "PaymentMethod.removed_at.is_(None), PaymentMethod.is_default.is_(True))",
        viewonly=True,
        uselist=False,
    )
    if TYPE_CHECKING:
        language: Mapped[str | None]  # the language of its e-mails and documents (below User)


class User(UserMixin, db.Model):  # type: ignore[name-defined]
    __tablename__ = "user_account"
    __table_args__ = (
        CheckConstraint(_in("role", Role), name="role_known"),
        CheckConstraint("role = 'admin' OR account_id IS NOT NULL", name="customer_has_account"),
        CheckConstraint("email = lower(email)", name="email_lowercase"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"), index=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.CUSTOMER.value)
    language: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Sessions carry the version they were opened with (see get_id); bumping it (log-out,
    # a new password, staff revoking) makes every other session's cookie worthless.
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")
    # When the owner of the address proved it (the link of the sign-up e-mail); a user who
    # has not cannot log in. Staff and the users of the demo are created confirmed.
    email_confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    account: Mapped[Account | None] = relationship(back_populates="users")

    def get_id(self) -> str:
        """What Flask-Login keeps in the session: the id and the session version."""
        return f"{self.id}:{self.session_version}"


# An account's language is its first user's that has one (loaded when first read, or with
# the account where a query asks for it: the renewal run's claim).
Account.language = column_property(
    select(User.language)
    .where(User.account_id == Account.id, User.language.is_not(None))
    .order_by(User.id)
    .limit(1)
    .correlate_except(User)
    .scalar_subquery(),
    deferred=True,
)


class VatStatus(StrEnum):
    """Where the account's VAT number stands; only ``valid`` allows reverse charge."""

    PENDING = "pending"  # not checked yet, or the registry was unavailable: retried later
    VALID = "valid"
    INVALID = "invalid"


class BillingInfo(db.Model):  # type: ignore[name-defined]
    """What goes on the buyer side of an invoice; edited in "Billing information"."""

    __tablename__ = "billing_info"
    __table_args__ = (
        CheckConstraint(f"vat_status IS NULL OR {_in('vat_status', VatStatus)}", name="vat_status"),
        CheckConstraint("vat_number IS NOT NULL OR vat_status IS NULL", name="status_needs_number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), unique=True)
    company_name: Mapped[str] = mapped_column(String(200))
    street: Mapped[str | None] = mapped_column(String(200))
    postcode: Mapped[str | None] = mapped_column(String(20))
    city: Mapped[str | None] = mapped_column(String(100))
    country: Mapped[str | None] = mapped_column(String(2))
    vat_number: Mapped[str | None] = mapped_column(String(20))
    invoice_email: Mapped[str] = mapped_column(String(254))
    # Up to 3 more addresses (lower case, none twice) that get the invoice e-mails too.
    billing_contacts: Mapped[list[str]] = mapped_column(
        JSON, default=list, server_default=text("'[]'")
    )
    # The outcome of the latest check of ``vat_number`` (see VatCheck for the proof).
    vat_status: Mapped[str | None] = mapped_column(String(16))
    vat_checked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    vat_next_check_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    account: Mapped[Account] = relationship(back_populates="billing_info")

    @property
    def vat_valid(self) -> bool:
        return self.vat_number is not None and self.vat_status == VatStatus.VALID


class BillingChange(db.Model):  # type: ignore[name-defined]
    """A saved edit of billing information: before/after snapshots and whether the customer
    asked for it to apply to the last invoice (carried out by a correcting invoice)."""

    __tablename__ = "billing_change"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    before: Mapped[dict[str, Any]] = mapped_column(JSON)
    after: Mapped[dict[str, Any]] = mapped_column(JSON)
    apply_to_last_invoice: Mapped[bool] = mapped_column(default=False)
    applied_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class VatCheck(db.Model):  # type: ignore[name-defined]
    """Proof of one VAT-number check: who answered, what, when (and VIES's consultation
    number, which shows the seller checked the buyer's number)."""

    __tablename__ = "vat_check"
    __table_args__ = (
        CheckConstraint("status IN ('valid', 'invalid', 'unavailable')", name="status_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    country: Mapped[str] = mapped_column(String(2))
    number: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16))
    validator: Mapped[str] = mapped_column(String(40))
    consultation_number: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(300))
    address: Mapped[str | None] = mapped_column(String(500))
    reason: Mapped[str | None] = mapped_column(String(200))
    checked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    #: the plugin whose validator answered, and the registry it asked (VIES, HMRC), if any:
    #: only a registry's VALID confirms a number
    plugin: Mapped[str | None] = mapped_column(String(100))
    source_registry: Mapped[str | None] = mapped_column(String(60))


class Subscription(db.Model):  # type: ignore[name-defined]
    """The account's package. ``period_end`` is the renewal date (exclusive end)."""

    __tablename__ = "subscription"
    __table_args__ = (
        CheckConstraint(_in("package", PackageCode), name="package_known"),
        CheckConstraint(_in("period", Period), name="period_known"),
        CheckConstraint(_in("status", SubscriptionStatus), name="status_known"),
        CheckConstraint("agents BETWEEN 1 AND 200", name="agents_range"),
        CheckConstraint("conversations >= 0", name="conversations_nonneg"),
        CheckConstraint("credit_minor >= 0", name="credit_nonneg"),
        CheckConstraint("period_net_minor >= 0", name="period_net_nonneg"),
        CheckConstraint("renewal_attempts >= 0", name="renewal_attempts_nonneg"),
        CheckConstraint(f"next_period IS NULL OR {_in('next_period', Period)}", name="next_period"),
        CheckConstraint(
            "currency IS NULL OR (length(currency) = 3 AND currency = upper(currency))",
            name="currency_code",
        ),
        CheckConstraint(
            "currency IS NOT NULL OR (credit_minor = 0 AND period_net_minor = 0)",
            name="money_has_currency",
        ),
        CheckConstraint(
            "package = 'free' OR (currency IS NOT NULL AND period_start IS NOT NULL "
            "AND period_end IS NOT NULL AND period_end > period_start)",
            name="paid_has_period",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), unique=True)
    package: Mapped[str] = mapped_column(String(16), default=PackageCode.FREE.value)
    period: Mapped[str] = mapped_column(String(8), default=Period.MONTH.value)
    agents: Mapped[int] = mapped_column(Integer, default=1)
    conversations: Mapped[int] = mapped_column(Integer, default=0)
    currency: Mapped[str | None] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default=SubscriptionStatus.ACTIVE.value)
    period_start: Mapped[dt.date | None] = mapped_column(Date)
    period_end: Mapped[dt.date | None] = mapped_column(Date)
    auto_renew: Mapped[bool] = mapped_column(default=False)
    # Net amount paid for the current period: the base of the credit for unused time (R6).
    period_net_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    # Account credit left over from downgrades, used up by later invoices (R6).
    credit_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    # Changes staff scheduled from the next renewal (R7: yearly -> monthly; a new currency).
    next_period: Mapped[str | None] = mapped_column(String(8))
    next_currency: Mapped[str | None] = mapped_column(String(3))
    # Renewal charges that failed for the current period, and when the next try is due.
    renewal_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    retry_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    suspended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    suspended_reason: Mapped[str | None] = mapped_column(String(32))
    # When the background run must look at this subscription again (None: at once). Written
    # by the run with a plain UPDATE, so it does not bump ``version`` (a customer's order
    # made meanwhile stays valid); any change of the period, status or auto-renewal resets it.
    next_check_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)

    account: Mapped[Account] = relationship(back_populates="subscription")

    __mapper_args__ = {"version_id_col": version}

    @property
    def package_code(self) -> PackageCode:
        return PackageCode(self.package)

    @property
    def is_paid(self) -> bool:
        return self.package != PackageCode.FREE

    @property
    def credit(self) -> Money | None:
        return Money(self.credit_minor, self.currency) if self.currency else None

    @property
    def period_net(self) -> Money | None:
        return Money(self.period_net_minor, self.currency) if self.currency else None


# What the background run's timetable depends on: a change of any resets it (see next_check_at).
_SCHEDULE_FIELDS = ("package", "period", "status", "period_end", "auto_renew", "retry_at")


@event.listens_for(Subscription, "before_update")
def _reschedule(mapper: Any, connection: Any, target: Subscription) -> None:
    state: Any = sa_inspect(target)
    if state.attrs.next_check_at.history.has_changes():
        return
    if any(state.attrs[name].history.has_changes() for name in _SCHEDULE_FIELDS):
        target.next_check_at = None


class Order(db.Model):  # type: ignore[name-defined]
    """A quote the customer chose to pay: its selection, lines and totals, frozen.

    Placed when the customer presses "Pay" on the summary they saw; the payment step
    recomputes the quote and refuses to charge an order whose price no longer holds.
    """

    __tablename__ = "checkout_order"
    __table_args__ = (
        UniqueConstraint("account_id", "idempotency_key", name="uq_checkout_order_idempotency"),
        CheckConstraint(_in("status", OrderStatus), name="status_known"),
        CheckConstraint(_in("package", PackageCode), name="package_known"),
        CheckConstraint(_in("period", Period), name="period_known"),
        CheckConstraint("length(currency) = 3 AND currency = upper(currency)", name="currency"),
        CheckConstraint(
            "subtotal_minor >= 0 AND net_minor >= 0 AND vat_minor >= 0 AND total_minor >= 0",
            name="amounts_nonneg",
        ),
        CheckConstraint("total_minor = net_minor + vat_minor", name="total_adds_up"),
        CheckConstraint("expires_at > created_at", name="expires_after_created"),
        # My package reads the account's checkout attempt of the last day (R9): from its
        # orders of that day, whatever the number of its payments (issue 26, point 2).
        Index("ix_checkout_order_account_created", "account_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=OrderStatus.PENDING.value)
    subscription_version: Mapped[int] = mapped_column(Integer)
    package: Mapped[str] = mapped_column(String(16))
    period: Mapped[str] = mapped_column(String(8))
    agents: Mapped[int] = mapped_column(Integer)
    conversations: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    subtotal_minor: Mapped[int] = mapped_column(BigInteger)
    net_minor: Mapped[int] = mapped_column(BigInteger)
    vat_minor: Mapped[int] = mapped_column(BigInteger)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    tax_treatment: Mapped[str] = mapped_column(String(32))
    # The whole quote as shown (lines, credit arithmetic, renewal): see pricing.Quote.to_record.
    quote: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    @property
    def total(self) -> Money:
        return Money(self.total_minor, self.currency)


class PaymentStatus(StrEnum):
    PENDING = "pending"  # started; awaiting the provider's confirmation
    PAID = "paid"
    FAILED = "failed"
    REFUNDED = "refunded"  # in full; a partial refund keeps "paid" with refunded_minor > 0


class PaymentMethod(db.Model):  # type: ignore[name-defined]
    """A method saved at a provider for off-session charges (a card, a PayPal vault)."""

    __tablename__ = "payment_method"
    __table_args__ = (
        UniqueConstraint("provider", "provider_ref", name="uq_payment_method_provider_ref"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    provider: Mapped[str] = mapped_column(String(40))
    provider_ref: Mapped[str] = mapped_column(String(255))
    customer_ref: Mapped[str | None] = mapped_column(String(255))
    brand: Mapped[str] = mapped_column(String(20))  # visa, mastercard, paypal, ...
    last4: Mapped[str | None] = mapped_column(String(4))
    exp_month: Mapped[int | None] = mapped_column(Integer)
    exp_year: Mapped[int | None] = mapped_column(Integer)
    email: Mapped[str | None] = mapped_column(String(254))
    is_default: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    removed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Payment(db.Model):  # type: ignore[name-defined]
    """One attempt to collect an order's total through a provider.

    Only :mod:`portal.rules.payments` writes these rows; it owns their state machine.
    """

    __tablename__ = "payment"
    __table_args__ = (
        UniqueConstraint("provider", "provider_ref", name="uq_payment_provider_ref"),
        CheckConstraint(_in("status", PaymentStatus), name="status_known"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint(
            "refunded_minor >= 0 AND refunded_minor <= amount_minor", name="refund_within_amount"
        ),
        CheckConstraint("length(currency) = 3 AND currency = upper(currency)", name="currency"),
        # The refund offer (R14) reads an account's first two settled payments on My package
        # and the invoices list: in order, without sorting all of them (issue 26, point 2).
        Index("ix_payment_account_settled", "account_id", "settled_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("checkout_order.id"), index=True)
    method_id: Mapped[int | None] = mapped_column(ForeignKey("payment_method.id"))
    provider: Mapped[str] = mapped_column(String(40))
    provider_ref: Mapped[str | None] = mapped_column(String(255))
    # What a refund needs: the PaymentIntent id at Stripe, the capture id at PayPal.
    charge_ref: Mapped[str | None] = mapped_column(String(255))
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=PaymentStatus.PENDING.value, index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_message: Mapped[str | None] = mapped_column(String(500))
    # Where the customer authenticates when the provider asks for it (3-D Secure).
    action_url: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    settled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)


class ProviderEvent(db.Model):  # type: ignore[name-defined]
    """A provider event (webhook or return) applied once: the key of idempotency."""

    __tablename__ = "provider_event"
    __table_args__ = (
        UniqueConstraint("provider", "event_id", name="uq_provider_event_provider_event"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(80))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payment.id"), index=True)
    outcome: Mapped[str] = mapped_column(String(40))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class InvoiceKind(StrEnum):
    INVOICE = "invoice"
    CORRECTION = "correction"  # new buyer data, or a corrected amount; points at the original
    CREDIT_NOTE = "credit_note"  # money back on a refund; points at the original


class InvoiceSequence(db.Model):  # type: ignore[name-defined]
    """The last number used per seller, series and year: gapless, one row per counter."""

    __tablename__ = "invoice_sequence"

    seller_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    series: Mapped[str] = mapped_column(String(16), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_value: Mapped[int] = mapped_column(Integer, default=0)


#: An invoice is issued in two steps: its number (the gapless counter is locked only for
#: that), then its PDF and XML. Between them its ``xml`` is empty.
UNRENDERED = b""
UNRENDERED_SQL = "length(xml) = 0"


class Invoice(db.Model):  # type: ignore[name-defined]
    """An issued document. Immutable once issued: snapshots, typed lines, stored renderings.

    Corrections are new rows pointing at the original (``corrects_id``); only the
    customer's note may change, and it only re-renders the document.
    """

    __tablename__ = "invoice"
    __table_args__ = (
        UniqueConstraint("seller_key", "series", "year", "seq", name="uq_invoice_number_parts"),
        CheckConstraint(_in("kind", InvoiceKind), name="kind_known"),
        CheckConstraint("total_minor = net_minor + vat_minor", name="total_adds_up"),
        CheckConstraint("seq > 0", name="seq_positive"),
        CheckConstraint("kind = 'invoice' OR corrects_id IS NOT NULL", name="correction_links"),
        CheckConstraint("length(currency) = 3 AND currency = upper(currency)", name="currency"),
        # The few invoices whose number is taken but whose documents are not stored yet (an
        # issuer stopped between the two: see portal.rules.invoicing.issue_for_payment).
        Index(
            "ix_invoice_unrendered",
            "id",
            postgresql_where=text(UNRENDERED_SQL),
            sqlite_where=text(UNRENDERED_SQL),
        ),
        # The invoices list: an account's newest first (50 a page), by year and its years,
        # without reading every invoice of the account (issue 26, point 2).
        Index("ix_invoice_account_newest", "account_id", "id"),
        Index("ix_invoice_account_year", "account_id", "year", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    seller_key: Mapped[str] = mapped_column(String(32))
    series: Mapped[str] = mapped_column(String(16))
    year: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    number: Mapped[str] = mapped_column(String(48), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default=InvoiceKind.INVOICE.value)
    corrects_id: Mapped[int | None] = mapped_column(ForeignKey("invoice.id"), index=True)
    # One invoice per payment: a second issue for the same payment is refused by the database.
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payment.id"), unique=True)
    issue_date: Mapped[dt.date] = mapped_column(Date)
    sale_date: Mapped[dt.date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    language: Mapped[str] = mapped_column(String(8))
    net_minor: Mapped[int] = mapped_column(BigInteger)
    vat_minor: Mapped[int] = mapped_column(BigInteger)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    # The document as issued (parties, lines, tax, rates): see portal.rules.invoicing.document().
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The EN 16931 XML; empty (UNRENDERED) while the invoice's documents are not stored yet.
    xml: Mapped[bytes] = mapped_column(LargeBinary)
    note: Mapped[str | None] = mapped_column(String(1000))
    reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: the plugin that gave the exchange rate printed on it (VAT in PLN), if one did
    rate_plugin: Mapped[str | None] = mapped_column(String(100))

    @property
    def total(self) -> Money:
        return Money(self.total_minor, self.currency)


class InvoiceRendering(db.Model):  # type: ignore[name-defined]
    """A stored PDF of an invoice: the issued one and, once a note is set, the latest with
    its note (a new note replaces that one; the issued one is kept)."""

    __tablename__ = "invoice_rendering"

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"), index=True)
    pdf: Mapped[bytes] = mapped_column(LargeBinary)
    note: Mapped[str | None] = mapped_column(String(1000))
    rendered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EInvoiceState(StrEnum):
    """Where an issued document stands in a national e-invoicing system (KSeF)."""

    PENDING = "pending"  # to be sent (or waiting for the corrected invoice's number)
    OFFLINE = "offline"  # the system was down: issued in offline mode, sent when it is back
    SENT = "sent"  # received by the system, being processed
    ACCEPTED = "accepted"  # the system's number assigned
    REJECTED = "rejected"  # refused, with the system's error code
    OUTSIDE = "outside"  # no channel covers it (B2C, OSS, a seller abroad)


class EInvoiceSubmission(db.Model):  # type: ignore[name-defined]
    """An issued document's way through a national e-invoicing channel, once per invoice.

    Written after the invoice is committed (issuing is unchanged). ``payload`` is the
    document in the channel's format, made once before the first send, so every retry sends
    the same bytes (and the offline QR code's hash stays true); ``reference`` is the
    channel's id of a send, kept before the answer is awaited, so a retry asks its status
    instead of sending again. ``next_try_at`` is both the retry time and a runner's lease.
    """

    __tablename__ = "einvoice_submission"
    __table_args__ = (
        CheckConstraint(_in("state", EInvoiceState), name="state_known"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        CheckConstraint(
            "state <> 'accepted' OR (national_number IS NOT NULL AND assigned_at IS NOT NULL)",
            name="accepted_has_number",
        ),
        Index("ix_einvoice_submission_due", "state", "next_try_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"), unique=True)
    channel: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    offline: Mapped[bool] = mapped_column(Boolean, default=False)
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    payload_hash: Mapped[str | None] = mapped_column(String(64))  # SHA-256, base64
    reference: Mapped[str | None] = mapped_column(String(100))
    national_number: Mapped[str | None] = mapped_column(String(64), unique=True)
    assigned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(String(500))
    receipt: Mapped[bytes | None] = mapped_column(LargeBinary)  # KSeF's UPO
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_try_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Notice(db.Model):  # type: ignore[name-defined]
    """An e-mail to an account, written in the same transaction as what it reports.

    ``key`` makes each notice once (e.g. per subscription, kind and period). The run sends
    what is unsent; an SMTP failure leaves it here for the next try, so none is lost.
    ``context`` is JSON (see :func:`portal.infra.mail.encode`); it is rendered at sending time
    in the account's language.
    """

    __tablename__ = "notice"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    template: Mapped[str] = mapped_column(String(64))
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    send_after: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), index=True)
    # Another recipient than the account's invoice e-mail (staff, the user who wrote).
    to_email: Mapped[str | None] = mapped_column(String(254))
    language: Mapped[str | None] = mapped_column(String(8))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))


class SupportStatus(StrEnum):
    OPEN = "open"  # waiting for staff
    ANSWERED = "answered"  # staff replied; waiting for the customer
    CLOSED = "closed"


class SupportThread(db.Model):  # type: ignore[name-defined]
    """A customer's support request (R17) and its conversation with staff."""

    __tablename__ = "support_thread"
    __table_args__ = (CheckConstraint(_in("status", SupportStatus), name="status_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    subject: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=SupportStatus.OPEN.value)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    account: Mapped[Account] = relationship()
    messages: Mapped[list[SupportMessage]] = relationship(
        back_populates="thread", order_by="SupportMessage.id"
    )


class SupportMessage(db.Model):  # type: ignore[name-defined]
    __tablename__ = "support_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("support_thread.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    from_staff: Mapped[bool] = mapped_column(default=False)
    body: Mapped[str] = mapped_column(String(5000))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    thread: Mapped[SupportThread] = relationship(back_populates="messages")
    user: Mapped[User | None] = relationship()


class AuditEntry(db.Model):  # type: ignore[name-defined]
    """Who did what, when, to which object, with the state before and after.

    Written for every staff action (in the action's transaction) and for every customer
    action that affects money or billing data.
    """

    __tablename__ = "audit_entry"

    id: Mapped[int] = mapped_column(primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"), index=True)
    actor_email: Mapped[str | None] = mapped_column(String(254))
    actor_role: Mapped[str] = mapped_column(String(16))  # customer, admin, system
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"), index=True)
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str | None] = mapped_column(String(40))
    object_id: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class RenewalOffReason(StrEnum):
    """Why a customer switched auto-renewal off (the optional question, issue 25)."""

    TOO_EXPENSIVE = "too_expensive"
    MISSING_FEATURES = "missing_features"
    OTHER_PRODUCT = "other_product"
    TEMPORARY = "temporary"
    OTHER = "other"


class RenewalOff(db.Model):  # type: ignore[name-defined]
    """A customer's answer to "why?" when switching auto-renewal off: shown to staff only."""

    __tablename__ = "renewal_off"
    __table_args__ = (
        CheckConstraint(_in("reason", RenewalOffReason), name="reason_known"),
        CheckConstraint("detail IS NULL OR length(detail) <= 500", name="detail_length"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


def latest_pdf(invoice_id: int) -> bytes | None:
    """The PDF of an invoice's latest rendering (a note printed on it makes a new one)."""
    pdf = db.session.scalar(
        select(InvoiceRendering.pdf)
        .where(InvoiceRendering.invoice_id == invoice_id)
        .order_by(InvoiceRendering.id.desc())
        .limit(1)
    )
    return bytes(pdf) if pdf is not None else None


class PortalSession(db.Model):  # type: ignore[name-defined]
    """A link the chat product asked for (``POST /api/v1/portal-sessions``): it signs the
    account's user in once, within minutes, and lands on ``page``. Only the SHA-256 of the
    token is kept; ``session_version`` is the user's when the link was made, so revoking the
    user's sessions (log-out, a new password, staff) ends the link too."""

    __tablename__ = "portal_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    session_version: Mapped[int] = mapped_column(Integer)
    page: Mapped[str] = mapped_column(String(16))
    return_url: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class WebhookDelivery(db.Model):  # type: ignore[name-defined]
    """An event for the chat product, one row per configured URL (the outbox).

    Written in the transaction of the change it reports (``portal.rules.webhooks``); the
    background run posts it, retries with backoff and gives up after a number of tries.
    ``event_id`` is the same for every URL: the receiver de-duplicates by it.
    """

    __tablename__ = "webhook_delivery"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36))
    url: Mapped[str] = mapped_column(String(2000))
    type: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # None: due at once; otherwise the next try (a runner's lease while it posts).
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    gave_up_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500))
    # The pending rows the run looks at (partial index: delivered rows are not in it).
    __table_args__ = (
        UniqueConstraint("event_id", "url"),
        Index(
            "ix_webhook_delivery_pending",
            "next_attempt_at",
            postgresql_where=text("delivered_at IS NULL AND gave_up_at IS NULL"),
            sqlite_where=text("delivered_at IS NULL AND gave_up_at IS NULL"),
        ),
    )
