"""Saving billing information (R12): the buyer's data on future invoices.

An edit is recorded as a :class:`BillingChange` with the data before and after, and
whether the customer asked for it to apply to the last invoice as well. That invoice
is never rewritten: the invoicing code issues a correcting invoice for it and marks
the change applied. A new VAT number is checked at once (R15).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select

from portal.infra.extensions import db
from portal.infra.models import BillingChange, BillingInfo, VatStatus
from portal.rules import vat

# The fields printed on an invoice, in the order of the form.
FIELDS = ("company_name", "street", "postcode", "city", "country", "vat_number", "invoice_email")


@dataclass(frozen=True)
class BillingData:
    """The form's values, already checked for length and characters."""

    company_name: str
    street: str
    postcode: str | None
    city: str
    country: str
    vat_number: str | None  # as typed
    invoice_email: str


class MalformedVatNumber(ValueError):
    """An offline validator found the number mistyped; nothing was saved."""

    def __init__(self, view: vat.VatView) -> None:
        super().__init__(view.reason or "malformed")
        self.view = view


@dataclass(frozen=True)
class Saved:
    changed: bool
    change: BillingChange | None
    view: vat.VatView


def snapshot(billing: BillingInfo) -> dict[str, Any]:
    return {name: getattr(billing, name) for name in FIELDS}


def find(account_id: int) -> BillingInfo | None:
    billing = db.session.scalar(select(BillingInfo).where(BillingInfo.account_id == account_id))
    return billing if isinstance(billing, BillingInfo) else None


def save(
    *,
    account_id: int,
    data: BillingData,
    apply_to_last_invoice: bool,
    user_id: int | None,
    settings: vat.VatSettings,
    now: dt.datetime,
) -> Saved:
    """Save the buyer's data for an account; raise :class:`vat.VatNumberError` or
    :class:`MalformedVatNumber` (nothing stored) for a number that cannot be used.

    The VAT number is checked when it changed or is not yet valid, before anything is
    written, so the network call holds no row. VIES being unavailable saves the number
    as pending (VAT is charged until a retry confirms it).
    """
    number = vat.parse_number(
        data.vat_number, data.country, settings.member_states, settings.foreign
    )
    billing = find(account_id)
    verdict = None
    if (
        number is not None
        and number.checked
        and (
            billing is None
            or number.full != billing.vat_number
            or billing.vat_status != VatStatus.VALID
        )
    ):
        # Nothing is written before the answer: vat.check ends the transaction before it
        # asks VIES, and the rest is written below in a new one.
        verdict = vat.check(account_id, number, settings, now)
        if verdict.malformed:
            db.session.rollback()
            raise MalformedVatNumber(vat.verdict_view(number, data.country, verdict))
        billing = find(account_id)  # as it is now, after the wait
    if billing is None:
        billing = BillingInfo(account_id=account_id, updated_at=now)
        db.session.add(billing)
    before = snapshot(billing)
    after = {**asdict(data), "vat_number": number.full if number else None}
    changed = before != after

    change = None
    if changed:
        for name, value in after.items():
            setattr(billing, name, value)
        billing.updated_at = now
        change = BillingChange(
            account_id=account_id,
            user_id=user_id,
            before=before,
            after=after,
            apply_to_last_invoice=apply_to_last_invoice,
            created_at=now,
        )
        db.session.add(change)
    if number is None or not number.checked:
        vat.clear(billing)
    elif verdict is not None:
        if number.full != before["vat_number"]:
            billing.vat_status = VatStatus.PENDING.value  # a new number starts unconfirmed
        vat.apply(billing, number, verdict, settings, now)
    db.session.commit()
    return Saved(
        changed, change, vat.billing_view(billing, settings.member_states, settings.foreign)
    )
