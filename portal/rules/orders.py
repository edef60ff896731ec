"""Checkout orders: what the customer saw is what gets charged.

The live summary is a pure quote (nothing stored). "Pay" places an order only when
the quote recomputed on the server equals the one the customer saw (its digest came
back with the form); the payment step recomputes it again and supersedes an order
whose price no longer holds, so a customer is never charged an amount they were not
shown. Placing is idempotent per account and idempotency key (double submit).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.infra.extensions import db
from portal.infra.models import Account, BillingInfo, Order, OrderStatus, Subscription
from portal.rules.catalogue import Catalogue, PackageCode, Period
from portal.rules.pricing import ChangeRefused, Current, Quote, RefusalReason, Selection, quote
from portal.rules.tax import (
    BuyerCountryMissing,
    TaxDecision,
    VatRates,
    decide,
    missing_for_invoice,
)

ORDER_LIFETIME = dt.timedelta(minutes=30)


class QuoteChanged(Exception):
    """The price or the subscription changed since the customer's summary."""

    def __init__(self, new_quote: Quote) -> None:
        super().__init__("quote changed")
        self.quote = new_quote


class NothingToPay(Exception):
    """The selection equals the current subscription."""


@dataclass(frozen=True)
class Pricing:
    """Everything a quote depends on besides the selection and the date."""

    catalogue: Catalogue
    vat_rates: VatRates
    seller_country: str


def current_terms(sub: Subscription) -> Current:
    """The subscription as the pricing code sees it."""
    if not sub.is_paid:
        return Current(
            package=PackageCode.FREE,
            period=Period(sub.period),
            agents=sub.agents,
            conversations=sub.conversations,
            currency=sub.currency,
            period_start=None,
            period_end=None,
            period_net=None,
            credit=sub.credit,
        )
    return Current(
        package=PackageCode(sub.package),
        period=Period(sub.period),
        agents=sub.agents,
        conversations=sub.conversations,
        currency=sub.currency,
        period_start=sub.period_start,
        period_end=sub.period_end,
        period_net=sub.period_net,
        credit=sub.credit,
    )


def current_pricing() -> Pricing:
    """The running app's catalogue, VAT rates and seller country."""
    from flask import current_app

    return Pricing(
        catalogue=current_app.extensions["pakiet.catalogue"],
        vat_rates=current_app.extensions["pakiet.vat_rates"],
        seller_country=current_app.config["SELLER"]["country"],
    )


def is_renewal(order: Order) -> bool:
    """A renewal's order (the background run's; its tax is decided when it is charged)."""
    return order.idempotency_key.startswith("renewal-")


def tax_holds(pricing: Pricing, billing: BillingInfo | None, order: Order) -> bool:
    """Whether the buyer data in force now decide the VAT the order was placed with.

    Tax is decided from the buyer data when the payment starts (DESIGN.md section 2): an
    order placed as a US buyer (no VAT) is not paid as it was once the billing country is
    Poland, nor a reverse-charge order once the VAT number is gone. The decision is taken
    on the order's quote date, so only the buyer's data (country, VAT number and its
    validity) can change it, not a rate that changed since."""
    record = order.quote
    on = dt.date.fromisoformat(str(record["quoted_on"]))
    try:
        decision = tax_decision(pricing, billing, on)
    except BuyerCountryMissing:  # no country now: no VAT can be decided, nor the order paid
        return False
    return decision.treatment.value == order.tax_treatment and decision.rate == Decimal(
        str(record["vat_rate"])
    )


def tax_decision(pricing: Pricing, billing: BillingInfo | None, on: dt.date) -> TaxDecision:
    # Reverse charge only with a number VIES confirmed: pending and invalid pay VAT.
    return decide(
        seller_country=pricing.seller_country,
        buyer_country=billing.country if billing else None,
        vat_number_valid=billing.vat_valid if billing else False,
        on=on,
        rates=pricing.vat_rates,
    )


def quote_for(
    pricing: Pricing, account: Account, selection: Selection, today: dt.date
) -> tuple[Quote, TaxDecision]:
    """The quote for ``selection`` on ``today`` (raises ``pricing.ChangeRefused``, also
    when the billing data lack what an invoice needs: nothing is sold without them)."""
    if missing_for_invoice(account.billing_info):
        raise ChangeRefused(RefusalReason.BILLING_DATA_MISSING)
    decision = tax_decision(pricing, account.billing_info, today)
    result = quote(
        pricing.catalogue, current_terms(account.subscription), selection, today, decision.rate
    )
    return result, decision


def digest(result: Quote, subscription_version: int) -> str:
    """A fingerprint of the quote as shown and the subscription it was made against."""
    return digest_of(result.to_record(), subscription_version)


def digest_of(record: dict[str, object], subscription_version: int) -> str:
    """:func:`digest` of a quote's record (``Quote.to_record``), for a page that has it."""
    payload = json.dumps(
        {"quote": record, "version": subscription_version},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def new_idempotency_key() -> str:
    return secrets.token_urlsafe(24)


def find_order(account_id: int, public_id: str) -> Order | None:
    """An order of this account, or ``None`` (another account's order is not found)."""
    order = db.session.scalar(
        select(Order).where(Order.public_id == public_id, Order.account_id == account_id)
    )
    return order if isinstance(order, Order) else None


def new_order(
    *,
    account_id: int,
    public_id: str,
    idempotency_key: str,
    subscription_version: int,
    result: Quote,
    decision: TaxDecision,
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> Order:
    """A pending order freezing ``result`` (its selection, totals and the whole quote)."""
    selection = result.selection
    return Order(
        public_id=public_id,
        account_id=account_id,
        idempotency_key=idempotency_key,
        status=OrderStatus.PENDING.value,
        subscription_version=subscription_version,
        package=selection.package.value,
        period=selection.period.value,
        agents=selection.agents,
        conversations=selection.conversations,
        currency=selection.currency,
        subtotal_minor=result.subtotal.minor,
        net_minor=result.net_due.minor,
        vat_minor=result.vat.minor,
        total_minor=result.total_due.minor,
        tax_treatment=decision.treatment.value,
        quote=result.to_record(),
        created_at=now,
        expires_at=now + lifetime,
    )


def place_order(
    *,
    pricing: Pricing,
    account: Account,
    selection: Selection,
    shown_digest: str,
    idempotency_key: str,
    today: dt.date,
    now: dt.datetime,
) -> Order:
    """Place the order the customer saw, once per idempotency key.

    The key comes with the page: a second "Pay" of the same page (a double click, a reload)
    gets the order the first placed. After Back, the page may come with another choice and
    the key of an order already placed: that is a new order, under a new key."""
    existing = _by_key(account.id, idempotency_key)
    if existing is not None and order_selection(existing) != selection:
        # The same page after Back, with another choice: its own key, derived from the page's
        # and the choice, so that a double click on this Pay still places one order.
        choice = f"{idempotency_key}|{selection}".encode()
        idempotency_key = "b-" + hashlib.sha256(choice).hexdigest()[:40]
        existing = _by_key(account.id, idempotency_key)
    if existing is not None:
        return existing
    result, decision = quote_for(pricing, account, selection, today)
    if digest(result, account.subscription.version) != shown_digest:
        raise QuoteChanged(result)
    if not result.payable:
        raise NothingToPay()
    order = new_order(
        account_id=account.id,
        public_id=secrets.token_hex(16),
        idempotency_key=idempotency_key,
        subscription_version=account.subscription.version,
        result=result,
        decision=decision,
        now=now,
        lifetime=ORDER_LIFETIME,
    )
    db.session.add(order)
    try:
        db.session.commit()
    except IntegrityError:  # the same key placed concurrently: return that order
        db.session.rollback()
        again = db.session.scalar(
            select(Order).where(
                Order.account_id == account.id, Order.idempotency_key == idempotency_key
            )
        )
        if not isinstance(again, Order):
            raise
        return again
    return order


def _by_key(account_id: int, idempotency_key: str) -> Order | None:
    order = db.session.scalar(
        select(Order).where(
            Order.account_id == account_id, Order.idempotency_key == idempotency_key
        )
    )
    return order if isinstance(order, Order) else None


def order_selection(order: Order) -> Selection:
    return Selection(
        package=PackageCode(order.package),
        period=Period(order.period),
        agents=order.agents,
        conversations=order.conversations,
        currency=order.currency,
    )


def revalidate(
    *, pricing: Pricing, account: Account, order: Order, today: dt.date, now: dt.datetime
) -> Quote | None:
    """Recompute a pending order before payment.

    Returns ``None`` when the order still holds. Otherwise the order is marked
    superseded and the new quote (what the customer would pay now) is returned.
    """
    if order.status != OrderStatus.PENDING:
        return None
    result, _decision = quote_for(pricing, account, order_selection(order), today)
    stale = (
        now >= order.expires_at
        or order.subscription_version != account.subscription.version
        or result.to_record() != order.quote
    )
    if not stale:
        return None
    order.status = OrderStatus.SUPERSEDED.value
    db.session.commit()
    return result
