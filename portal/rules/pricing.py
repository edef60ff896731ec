"""Pricing and proration of a package change (rules R2, R3, R5-R7).

Plain functions of the catalogue, today's subscription, the customer's selection and a
date: no Flask, no database. A paid change starts a new period today; the customer pays
the new package's full price for that period, less a credit for the unused part of the
current one, less account credit. Every amount is :class:`~portal.rules.money.Money` in the
selection's currency, each computed (and rounded half-up) once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

from portal.rules.catalogue import Catalogue, Package, PackageCode, Period
from portal.rules.money import Money
from portal.rules.periods import add_period


@dataclass(frozen=True)
class Selection:
    """What the customer asks for: target numbers, not increments (R5)."""

    package: PackageCode
    period: Period
    agents: int
    conversations: int
    currency: str


@dataclass(frozen=True)
class Current:
    """The subscription today; money fields are in ``currency`` (None until the first purchase)."""

    package: PackageCode
    period: Period
    agents: int
    conversations: int
    currency: str | None
    period_start: date | None
    period_end: date | None  # exclusive: the renewal date
    period_net: Money | None  # net amount paid for the current period
    credit: Money | None  # account credit left over from earlier downgrades

    def __post_init__(self) -> None:
        for amount in (self.period_net, self.credit):
            if amount is not None and amount.currency != self.currency:
                raise ValueError(f"{amount} is not in the subscription currency {self.currency}")
        if self.is_paid and (
            self.currency is None
            or self.period_net is None
            or self.period_start is None
            or self.period_end is None
            or self.period_end <= self.period_start
        ):
            raise ValueError("a paid subscription needs a currency, a period and its net amount")

    @classmethod
    def free(cls) -> Current:
        """A Free account that has never paid: no currency, no period, no credit."""
        return cls(
            package=PackageCode.FREE,
            period=Period.MONTH,
            agents=1,
            conversations=0,
            currency=None,
            period_start=None,
            period_end=None,
            period_net=None,
            credit=None,
        )

    @property
    def is_paid(self) -> bool:
        return self.package != PackageCode.FREE


class RefusalReason(StrEnum):
    FREE_NOT_SELECTABLE = "free_not_selectable"
    YEARLY_TO_MONTHLY = "yearly_to_monthly"
    AGENTS_OUT_OF_RANGE = "agents_out_of_range"
    CONVERSATIONS_OUT_OF_RANGE = "conversations_out_of_range"
    CONVERSATIONS_NOT_WHOLE_PACKS = "conversations_not_whole_packs"
    CURRENCY_FIXED = "currency_fixed"
    UNKNOWN_CURRENCY = "unknown_currency"
    BILLING_DATA_MISSING = "billing_data_missing"  # no country or address for the invoice


class ChangeRefused(Exception):
    """The selection cannot be bought self-service; ``params`` fill the user's message."""

    def __init__(self, reason: RefusalReason, **params: int | str) -> None:
        super().__init__(reason.value, params)
        self.reason = reason
        self.params: dict[str, int | str] = params


class LineKind(StrEnum):
    PACKAGE = "package"  # quantity = agents
    CONVERSATION_PACKS = "conversation_packs"  # quantity = extra packs above the included ones


@dataclass(frozen=True)
class QuoteLine:
    kind: LineKind
    quantity: int
    unit_price: Money
    amount: Money


class ChangeField(StrEnum):
    PACKAGE = "package"
    PERIOD = "period"
    AGENTS = "agents"
    CONVERSATIONS = "conversations"


@dataclass(frozen=True)
class Change:
    """One difference from today's subscription, e.g. agents 3 -> 5, delta +2."""

    field: ChangeField
    before: str | int
    after: str | int
    delta: int | None  # for numbers only


@dataclass(frozen=True)
class Quote:
    """The order summary: what is bought, what it costs and the arithmetic behind it.

    ``period_days == 0`` means no credit for unused time applies (a Free account, or
    nothing to change); otherwise ``unused_credit`` is exactly
    ``credit_base * unused_days / period_days``, rounded once.
    """

    quoted_on: date
    selection: Selection
    period_start: date
    period_end: date
    included_conversations: int
    conversation_pack: int
    lines: tuple[QuoteLine, ...]
    subtotal: Money
    unused_days: int
    period_days: int
    credit_base: Money
    unused_credit: Money
    account_credit_used: Money
    net_due: Money
    vat_rate: Decimal
    vat: Money
    total_due: Money
    credit_after: Money
    renewal_date: date
    renewal_net: Money
    renewal_vat: Money
    renewal_total: Money
    changes: tuple[Change, ...]
    is_first_purchase: bool
    nothing_to_change: bool

    @property
    def payable(self) -> bool:
        """Whether Pay is offered: a real change (a downgrade with 0 due is still one)."""
        return not self.nothing_to_change

    def to_record(self) -> dict[str, object]:
        """The quote as plain ints, strings and bools, for the order record."""
        return {
            "quoted_on": self.quoted_on.isoformat(),
            "currency": self.selection.currency,
            "package": self.selection.package.value,
            "period": self.selection.period.value,
            "agents": self.selection.agents,
            "conversations": self.selection.conversations,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "included_conversations": self.included_conversations,
            "conversation_pack": self.conversation_pack,
            "lines": [
                {
                    "kind": line.kind.value,
                    "quantity": line.quantity,
                    "unit_price_minor": line.unit_price.minor,
                    "amount_minor": line.amount.minor,
                }
                for line in self.lines
            ],
            "subtotal_minor": self.subtotal.minor,
            "unused_days": self.unused_days,
            "period_days": self.period_days,
            "credit_base_minor": self.credit_base.minor,
            "unused_credit_minor": self.unused_credit.minor,
            "account_credit_used_minor": self.account_credit_used.minor,
            "net_due_minor": self.net_due.minor,
            "vat_rate": str(self.vat_rate),
            "vat_minor": self.vat.minor,
            "total_due_minor": self.total_due.minor,
            "credit_after_minor": self.credit_after.minor,
            "renewal_date": self.renewal_date.isoformat(),
            "renewal_net_minor": self.renewal_net.minor,
            "renewal_vat_minor": self.renewal_vat.minor,
            "renewal_total_minor": self.renewal_total.minor,
            "changes": [_change_record(change) for change in self.changes],
            "is_first_purchase": self.is_first_purchase,
            "nothing_to_change": self.nothing_to_change,
        }


def _change_record(change: Change) -> dict[str, object]:
    record: dict[str, object] = {
        "field": change.field.value,
        "before": change.before,
        "after": change.after,
    }
    if change.delta is not None:
        record["delta"] = change.delta
    return record


# -- validation ---------------------------------------------------------------------


def validate(catalogue: Catalogue, current: Current, selection: Selection) -> None:
    """Refuse what the portal may not sell self-service; see :class:`RefusalReason`."""
    package = catalogue.package(selection.package)
    if not package.paid:
        raise ChangeRefused(RefusalReason.FREE_NOT_SELECTABLE)
    if current.is_paid and current.period == Period.YEAR and selection.period == Period.MONTH:
        raise ChangeRefused(RefusalReason.YEARLY_TO_MONTHLY)
    if selection.currency not in catalogue.currencies:
        raise ChangeRefused(RefusalReason.UNKNOWN_CURRENCY, currency=selection.currency)
    if current.currency is not None and selection.currency != current.currency:
        raise ChangeRefused(RefusalReason.CURRENCY_FIXED, currency=current.currency)
    if not package.min_agents <= selection.agents <= package.max_agents:
        raise ChangeRefused(
            RefusalReason.AGENTS_OUT_OF_RANGE, min=package.min_agents, max=package.max_agents
        )
    if not package.included_conversations <= selection.conversations <= package.max_conversations:
        raise ChangeRefused(
            RefusalReason.CONVERSATIONS_OUT_OF_RANGE,
            min=package.included_conversations,
            max=package.max_conversations,
        )
    if (selection.conversations - package.included_conversations) % package.conversation_pack:
        raise ChangeRefused(
            RefusalReason.CONVERSATIONS_NOT_WHOLE_PACKS, pack=package.conversation_pack
        )


def fit_conversations(package: Package, conversations: int) -> int:
    """``conversations`` brought into ``package``'s range: its included amount at least, its
    maximum at most, in whole packs (a change Standard <-> Pro keeps what fits, R5)."""
    packs = (conversations - package.included_conversations) // package.conversation_pack
    fitted = package.included_conversations + max(packs, 0) * package.conversation_pack
    return min(fitted, package.max_conversations)


# -- quoting ------------------------------------------------------------------------


def quote(
    catalogue: Catalogue,
    current: Current,
    selection: Selection,
    today: date,
    vat_rate: Decimal,
) -> Quote:
    """Price ``selection`` bought ``today`` over ``current``; raise :class:`ChangeRefused`."""
    validate(catalogue, current, selection)
    if not Decimal(0) <= vat_rate < Decimal(1):
        raise ValueError(f"vat_rate is a fraction in [0, 1), got {vat_rate}")
    package = catalogue.package(selection.package)
    currency = selection.currency
    lines = _lines(catalogue, package, selection)
    subtotal = sum((line.amount for line in lines), Money.zero(currency))
    credit = current.credit or Money.zero(currency)
    unchanged = _nothing_to_change(current, selection, today)

    if unchanged:
        assert current.period_start is not None and current.period_end is not None
        period_start, period_end = current.period_start, current.period_end
        unused_days, period_days, credit_base = 0, 0, Money.zero(currency)
        charged = Money.zero(currency)
    else:
        period_start, period_end = today, add_period(today, selection.period)
        unused_days, period_days, credit_base = _unused_period(current, today, currency)
        charged = subtotal
    unused_credit = (
        credit_base * Fraction(unused_days, period_days) if period_days else Money.zero(currency)
    )

    applied_unused = unused_credit.min(charged)
    account_credit_used = credit.min(charged - applied_unused)
    net_due = charged - applied_unused - account_credit_used
    vat = net_due * vat_rate
    credit_after = credit - account_credit_used + (unused_credit - applied_unused)
    renewal_net, renewal_vat = _renewal_after(subtotal, credit_after, vat_rate)
    return Quote(
        quoted_on=today,
        selection=selection,
        period_start=period_start,
        period_end=period_end,
        included_conversations=package.included_conversations,
        conversation_pack=package.conversation_pack,
        lines=lines,
        subtotal=subtotal,
        unused_days=unused_days,
        period_days=period_days,
        credit_base=credit_base,
        unused_credit=unused_credit,
        account_credit_used=account_credit_used,
        net_due=net_due,
        vat_rate=vat_rate,
        vat=vat,
        total_due=net_due + vat,
        credit_after=credit_after,
        renewal_date=period_end,
        renewal_net=renewal_net,
        renewal_vat=renewal_vat,
        renewal_total=renewal_net + renewal_vat,
        changes=_changes(current, selection),
        is_first_purchase=not current.is_paid,
        nothing_to_change=unchanged,
    )


def renewal(
    catalogue: Catalogue, current: Current, selection: Selection, vat_rate: Decimal
) -> Quote:
    """The next period of a paid subscription, from its period end (R10).

    The full price of ``selection`` (the subscription with any change staff scheduled for
    the renewal, R7) less account credit; no credit for unused time, since none is left.
    Credit in another currency than the new period's is not carried over: staff only
    schedule a currency change once the credit is used up.
    """
    if not current.is_paid or current.period_end is None:
        raise ValueError("only a paid subscription renews")
    if not Decimal(0) <= vat_rate < Decimal(1):
        raise ValueError(f"vat_rate is a fraction in [0, 1), got {vat_rate}")
    package = catalogue.package(selection.package)
    currency = selection.currency
    lines = _lines(catalogue, package, selection)
    subtotal = sum((line.amount for line in lines), Money.zero(currency))
    credit = current.credit if current.currency == currency and current.credit else None
    credit = credit or Money.zero(currency)
    used = credit.min(subtotal)
    net_due = subtotal - used
    vat = net_due * vat_rate
    start = current.period_end
    end = add_period(start, selection.period)
    zero = Money.zero(currency)
    renewal_net, renewal_vat = _renewal_after(subtotal, credit - used, vat_rate)
    return Quote(
        quoted_on=start,
        selection=selection,
        period_start=start,
        period_end=end,
        included_conversations=package.included_conversations,
        conversation_pack=package.conversation_pack,
        lines=lines,
        subtotal=subtotal,
        unused_days=0,
        period_days=0,
        credit_base=zero,
        unused_credit=zero,
        account_credit_used=used,
        net_due=net_due,
        vat_rate=vat_rate,
        vat=vat,
        total_due=net_due + vat,
        credit_after=credit - used,
        renewal_date=end,
        renewal_net=renewal_net,
        renewal_vat=renewal_vat,
        renewal_total=renewal_net + renewal_vat,
        changes=_changes(current, selection),
        is_first_purchase=False,
        nothing_to_change=False,
    )


def _renewal_after(subtotal: Money, credit: Money, vat_rate: Decimal) -> tuple[Money, Money]:
    """(net, VAT) of the renewal that follows: the same price less the account credit left
    then, exactly as :func:`renewal` will charge it (today's VAT rate)."""
    net = subtotal - credit.min(subtotal)
    return net, net * vat_rate


def _lines(catalogue: Catalogue, package: Package, selection: Selection) -> tuple[QuoteLine, ...]:
    """The package per agent, then any conversation packs above the included amount."""
    agent_price = package.agent_price(selection.period, selection.currency)
    lines = [
        QuoteLine(LineKind.PACKAGE, selection.agents, agent_price, agent_price * selection.agents)
    ]
    packs = (selection.conversations - package.included_conversations) // package.conversation_pack
    if packs:
        pack_price = catalogue.pack_price(selection.period, selection.currency)
        lines.append(QuoteLine(LineKind.CONVERSATION_PACKS, packs, pack_price, pack_price * packs))
    return tuple(lines)


def _unused_period(current: Current, today: date, currency: str) -> tuple[int, int, Money]:
    """(unused days, days in period, net paid) of the current paid period; zeros if none."""
    if not current.is_paid:
        return 0, 0, Money.zero(currency)
    assert current.period_start is not None and current.period_end is not None
    assert current.period_net is not None
    period_days = (current.period_end - current.period_start).days
    unused = (current.period_end - today).days
    return max(0, min(unused, period_days)), period_days, current.period_net


def _nothing_to_change(current: Current, selection: Selection, today: date) -> bool:
    """Same paid subscription, still running: buying it again would only restart the period."""
    return (
        current.is_paid
        and current.period_end is not None
        and today < current.period_end
        and (current.package, current.period, current.agents, current.conversations)
        == (selection.package, selection.period, selection.agents, selection.conversations)
        and current.currency == selection.currency
    )


def _changes(current: Current, selection: Selection) -> tuple[Change, ...]:
    changes: list[Change] = []
    if current.package != selection.package:
        changes.append(
            Change(ChangeField.PACKAGE, current.package.value, selection.package.value, None)
        )
    if current.period != selection.period:
        changes.append(
            Change(ChangeField.PERIOD, current.period.value, selection.period.value, None)
        )
    for name, before, after in (
        (ChangeField.AGENTS, current.agents, selection.agents),
        (ChangeField.CONVERSATIONS, current.conversations, selection.conversations),
    ):
        if before != after:
            changes.append(Change(name, before, after, after - before))
    return tuple(changes)
