"""Saving billing information (R12): the buyer's data on future invoices.

An edit is recorded as a :class:`BillingChange` with the data before and after, and
whether the customer asked for it to apply to the last invoice as well. That invoice
is never rewritten: the invoicing code issues a correcting invoice for it and marks
the change applied. A new VAT number is checked at once (R15).

Up to :data:`MAX_CONTACTS` billing contacts get the invoice e-mails besides the invoice
e-mail; they are not printed, so changing only them corrects no invoice.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select

from portal.infra.extensions import db
from portal.infra.models import BillingChange, BillingInfo, VatStatus
from portal.rules import vat

# The fields printed on an invoice, in the order of the form.
FIELDS = ("company_name", "street", "postcode", "city", "country", "vat_number", "invoice_email")
CONTACTS = "billing_contacts"
MAX_CONTACTS = 3
# Addresses are typed one a line, or separated by commas, semicolons or spaces.
CONTACT_SEPARATORS = re.compile(r"[\s,;]+")


class ContactsRefused(ValueError):
    """The billing contacts as typed cannot be saved: ``reason`` is ``"too_many"`` or
    ``"invalid"`` (then ``address`` is the first one that is not an e-mail address)."""

    def __init__(self, reason: str, address: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.address = address


def clean_contacts(text: str | None, invoice_email: str | None = None) -> tuple[str, ...]:
    """The billing contacts in ``text``: lower case, each once, in the order typed, without
    the invoice e-mail itself (it gets every invoice anyway); at most MAX_CONTACTS."""
    found: list[str] = []
    main = (invoice_email or "").strip().lower()
    for word in CONTACT_SEPARATORS.split(text or ""):
        if not word:
            continue
        address = word.lower()
        if len(address) > 254:
            raise ContactsRefused("invalid", word[:60] + "…")
        try:
            validate_email(address, check_deliverability=False)
        except EmailNotValidError:
            raise ContactsRefused("invalid", word[:60]) from None
        if address != main and address not in found:
            found.append(address)
    if len(found) > MAX_CONTACTS:
        raise ContactsRefused("too_many")
    return tuple(found)


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
    billing_contacts: tuple[str, ...] = ()  # as clean_contacts gives them


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
    printed = {name: getattr(billing, name) for name in FIELDS}
    return {**printed, CONTACTS: list(billing.billing_contacts or [])}


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
    after = {
        **asdict(data),
        "vat_number": number.full if number else None,
        CONTACTS: list(data.billing_contacts),
    }
    changed = before != after
    # Only the printed data make a correcting invoice: new contacts change no document.
    printed_changed = any(before[name] != after[name] for name in FIELDS)

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
            apply_to_last_invoice=apply_to_last_invoice and printed_changed,
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
