"""Issued documents through a national e-invoicing channel (KSeF), once each, never lost.

Issuing is unchanged (numbers stay gapless; the invoice is committed first). Then each
document gets one ``einvoice_submission`` row: the channel that covers it, or ``outside``
(B2C, OSS, a seller abroad). A covered document is rendered in the channel's format once,
stored with its hash, and sent with no transaction open; the channel's reference is kept,
so a later try asks the status instead of sending again (and a send that was lost in a
crash is answered by the channel as a duplicate carrying the first number). A channel that
is down leaves the document in offline mode: the customer's copy says so, and the
background run sends the same bytes when the channel is back.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.infra.extensions import db
from portal.infra.models import EInvoiceState, EInvoiceSubmission, Invoice
from portal.plugin_api import contracts
from portal.plugin_api.contracts import EInvoiceResult, EInvoicingChannel, ProviderError

log = logging.getLogger(__name__)

#: A runner's claim on a submission while it talks to the channel (another runner passes it
#: by; a runner that dies leaves it to run out).
LEASE = dt.timedelta(minutes=5)
#: How soon a channel that was down, or a correction waiting for its original's number,
#: is tried again; and how soon a document still being processed is asked about again.
RETRY = dt.timedelta(minutes=10)
STATUS_AGAIN = dt.timedelta(minutes=1)
#: The background run records the submissions of invoices issued this recently that have
#: none (their issuer stopped after the commit).
RECORD_WINDOW = dt.timedelta(days=3)

OPEN = (EInvoiceState.PENDING.value, EInvoiceState.OFFLINE.value, EInvoiceState.SENT.value)


def channels() -> dict[str, EInvoicingChannel]:
    from portal.plugin_api.registry import registry

    return registry().einvoicing_channels


def _document(invoice: Invoice) -> Any:
    from portal.rules.invoicing import from_content

    return from_content(invoice.content, None)


def record(invoice_id: int, *, now: dt.datetime) -> EInvoiceSubmission | None:
    """The invoice's submission, written once (``None`` when no channel is installed)."""
    found = channels()
    if not found:
        return None
    existing = _submission_of(invoice_id)
    if existing is not None:
        return existing
    invoice = db.session.get(Invoice, invoice_id)
    if invoice is None:
        return None
    document = _document(invoice)
    channel = next((c for c in found.values() if c.covers(document)), None)
    row = EInvoiceSubmission(
        public_id=secrets.token_hex(16),
        invoice_id=invoice_id,
        channel=channel.name if channel else None,
        state=(EInvoiceState.PENDING if channel else EInvoiceState.OUTSIDE).value,
        offline=False,
        attempts=0,
        next_try_at=now if channel else None,
        created_at=now,
        updated_at=now,
    )
    try:
        db.session.add(row)
        db.session.commit()
    except IntegrityError:  # recorded concurrently: keep theirs
        db.session.rollback()
        return _submission_of(invoice_id)
    return row


def _submission_of(invoice_id: int) -> EInvoiceSubmission | None:
    row = db.session.scalar(
        select(EInvoiceSubmission).where(EInvoiceSubmission.invoice_id == invoice_id)
    )
    return row if isinstance(row, EInvoiceSubmission) else None


def _corrected_number(invoice: Invoice) -> tuple[bool, str | None]:
    """(ready, KSeF number of the corrected invoice). Not ready while the corrected invoice
    is still on its way: the correction must name its number."""
    if invoice.corrects_id is None:
        return True, None
    original = _submission_of(invoice.corrects_id)
    if original is None or original.state in (
        EInvoiceState.OUTSIDE.value,
        EInvoiceState.REJECTED.value,
    ):
        return True, None  # issued outside KSeF
    if original.state == EInvoiceState.ACCEPTED.value:
        return True, original.national_number
    return False, None


def _hash(payload: bytes) -> str:
    return base64.b64encode(hashlib.sha256(payload).digest()).decode("ascii")


def _claim(submission_id: int, now: dt.datetime) -> EInvoiceSubmission | None:
    return db.session.scalar(
        select(EInvoiceSubmission)
        .where(
            EInvoiceSubmission.id == submission_id,
            EInvoiceSubmission.state.in_(OPEN),
            EInvoiceSubmission.next_try_at <= now,
        )
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )


def attempt(submission_id: int, *, now: dt.datetime) -> str | None:
    """One try of a due submission: send it, or ask the status of its send. The state it
    is left in; ``None`` when it was not due or another runner holds it."""
    row = _claim(submission_id, now)
    if row is None:
        db.session.rollback()
        return None
    channel = channels().get(row.channel or "")
    if channel is None:  # its plugin was removed: keep it for when it is back
        log.warning("e-invoice %s: no channel %r installed", row.id, row.channel)
        row.next_try_at = now + RETRY
        db.session.commit()
        return row.state
    invoice = db.session.get(Invoice, row.invoice_id)
    assert invoice is not None
    document = _document(invoice)
    ready, corrected = _corrected_number(invoice)
    if row.payload is None:
        if not ready:
            row.next_try_at = now + RETRY
            db.session.commit()
            return row.state
        row.payload = channel.render(
            document=document, corrected_national_number=corrected, generated_at=now
        )
        row.payload_hash = _hash(row.payload)
    row.attempts += 1
    row.next_try_at = now + LEASE  # the lease: no transaction stays open across the call
    row.updated_at = now
    submission = contracts.EInvoiceSubmission(
        submission_id=row.public_id,
        invoice_id=row.invoice_id,
        document=document,
        payload=row.payload,
        payload_hash=row.payload_hash or _hash(row.payload),
        reference=row.reference,
        offline=row.offline,
        corrected_national_number=corrected,
    )
    db.session.commit()

    result: EInvoiceResult | None = None
    failure: tuple[str, str] | None = None
    down = _down_until().get(channel.name)
    if down is not None and now < down:
        # Down a moment ago: offline at once, not one more timeout per invoice of the run.
        return _apply(submission_id, None, ("unavailable", f"{channel.name} is down"), now)
    try:
        if submission.reference:
            result = channel.status(submission)
        else:
            result = channel.submit(submission)
    except ProviderError as exc:
        failure = (exc.code or "unavailable", str(exc))
        if exc.retryable:
            _down_until()[channel.name] = now + RETRY
    except Exception as exc:  # a broken channel never loses the document
        log.exception("e-invoice %s: channel %s failed", submission_id, channel.name)
        failure = ("error", str(exc) or type(exc).__name__)
    if result is not None:
        _down_until().pop(channel.name, None)
    return _apply(submission_id, result, failure, now)


def _down_until() -> dict[str, dt.datetime]:
    """Channels that were down, and until when this process does not call them (per app:
    a run with a thousand invoices and KSeF down waits for one timeout, not a thousand)."""
    from flask import current_app

    down: dict[str, dt.datetime] = current_app.extensions.setdefault("pakiet.einvoicing_down", {})
    return down


def _apply(
    submission_id: int,
    result: EInvoiceResult | None,
    failure: tuple[str, str] | None,
    now: dt.datetime,
) -> str:
    row = db.session.get(
        EInvoiceSubmission, submission_id, with_for_update=True, populate_existing=True
    )
    assert row is not None
    row.updated_at = now
    if result is None:
        assert failure is not None
        # Down, slow, or answering garbage: the document is in offline mode; the same
        # bytes go again later. A document already sent keeps its reference and state.
        if row.state != EInvoiceState.SENT.value:
            row.state = EInvoiceState.OFFLINE.value
            row.offline = True
        row.error_code, row.error_message = failure[0][:32], failure[1][:500]
        row.next_try_at = now + RETRY
    else:
        if result.reference:
            row.reference = result.reference[:100]
        if result.receipt is not None:
            row.receipt = result.receipt
        if result.state is contracts.EInvoiceState.ACCEPTED and result.national_number:
            row.state = EInvoiceState.ACCEPTED.value
            row.national_number = result.national_number
            row.assigned_at = result.assigned_at or now
            row.error_code = row.error_message = None
            row.next_try_at = None
        elif result.state is contracts.EInvoiceState.REJECTED:
            row.state = EInvoiceState.REJECTED.value
            row.error_code = (result.error_code or "rejected")[:32]
            row.error_message = (result.error_message or "")[:500]
            row.next_try_at = None
            log.error(
                "e-invoice %s rejected by %s: %s %s",
                row.invoice_id,
                row.channel,
                row.error_code,
                row.error_message,
            )
        else:  # received, still processing
            row.state = EInvoiceState.SENT.value
            row.next_try_at = now + STATUS_AGAIN
    state = row.state
    db.session.commit()
    return state


def after_issue(invoice_id: int, *, now: dt.datetime) -> str | None:
    """Right after an invoice is committed: record its submission and try it once (and
    ask once more if the channel is still processing it). Never raises: whatever is left
    undone, the background run does."""
    try:
        row = record(invoice_id, now=now)
        if row is None or row.channel is None:
            return None
        state = attempt(row.id, now=now)
        if state == EInvoiceState.SENT.value:
            row.next_try_at = now
            db.session.commit()
            state = attempt(row.id, now=now)
        return state
    except Exception:
        db.session.rollback()
        log.exception("e-invoice of invoice %s: left for the background run", invoice_id)
        return None


def unrecorded(now: dt.datetime) -> list[int]:
    """Invoices issued within :data:`RECORD_WINDOW` that have no submission yet."""
    stmt = (
        select(Invoice.id)
        .outerjoin(EInvoiceSubmission, EInvoiceSubmission.invoice_id == Invoice.id)
        .where(EInvoiceSubmission.id.is_(None), Invoice.created_at >= now - RECORD_WINDOW)
        .order_by(Invoice.id)
    )
    return list(db.session.scalars(stmt))


def due(now: dt.datetime, *, limit: int = 500) -> list[int]:
    stmt = (
        select(EInvoiceSubmission.id)
        .where(EInvoiceSubmission.state.in_(OPEN), EInvoiceSubmission.next_try_at <= now)
        .order_by(EInvoiceSubmission.id)
        .limit(limit)
    )
    return list(db.session.scalars(stmt))


def run_due(*, now: dt.datetime, limit: int = 500) -> int:
    """The background run's part: record what an issuer left unrecorded, then try every
    due submission once. Returns how many were accepted in this run."""
    if not channels():
        return 0
    for invoice_id in unrecorded(now):
        record(invoice_id, now=now)
    accepted = 0
    for submission_id in due(now, limit=limit):
        try:
            if attempt(submission_id, now=now) == EInvoiceState.ACCEPTED.value:
                accepted += 1
        except Exception:  # one that fails must not hold up the others
            db.session.rollback()
            log.exception("e-invoice submission %s failed; tried again later", submission_id)
    return accepted


# -- what the customer's copy and the list show --------------------------------------------


@dataclass(frozen=True)
class Mark:
    """An invoice's national e-invoicing status as its copy and the list show it."""

    channel: str
    system: str  # the channel's title: "KSeF"
    state: str
    national_number: str | None
    assigned_at: dt.datetime | None
    offline: bool
    verification_url: str | None
    certificate_url: str | None = None  # KOD II of a document issued offline

    @property
    def waiting(self) -> bool:
        return self.state in OPEN


def mark(invoice: Invoice) -> Mark | None:
    """The mark of ``invoice``; ``None`` when it is not a channel's (or not recorded)."""
    return mark_of(invoice, _submission_of(invoice.id))


def mark_of(invoice: Invoice, row: EInvoiceSubmission | None) -> Mark | None:
    if row is None or row.channel is None:
        return None
    channel = channels().get(row.channel)
    url = certificate = None
    if channel is not None and row.payload_hash and row.state != EInvoiceState.REJECTED.value:
        document = _document(invoice)
        url = channel.verification_url(
            document=document,
            payload_hash=row.payload_hash,
            national_number=row.national_number,
        )
        if row.offline:  # issued offline: the copy carries KOD II as well, for good
            certificate = channel.certificate_url(document=document, payload_hash=row.payload_hash)
    return Mark(
        channel=row.channel,
        system=(channel.title if channel is not None else "") or row.channel,
        state=row.state,
        national_number=row.national_number,
        assigned_at=row.assigned_at,
        offline=row.offline,
        verification_url=url,
        certificate_url=certificate,
    )


def marks(invoice_ids: list[int]) -> dict[int, EInvoiceSubmission]:
    """The submissions of a page of invoices, in one query (for the list)."""
    if not invoice_ids:
        return {}
    rows = db.session.scalars(
        select(EInvoiceSubmission).where(EInvoiceSubmission.invoice_id.in_(invoice_ids))
    )
    return {row.invoice_id: row for row in rows}


def _local_day(moment: dt.datetime) -> dt.date:
    """The calendar day of ``moment`` in the portal's time zone (as invoice dates are)."""
    from portal.rules.invoicing import local_today

    return local_today(moment)


def customer_copy(invoice: Invoice, stored: bytes) -> bytes:
    """The PDF the customer gets: the stored rendering, or, for a document a channel
    covers, the same document rendered again with the channel's stamp (its number, or
    offline mode, and the QR code). The issued renderings and XML are never rewritten."""
    found = mark(invoice)
    if found is None or found.state == EInvoiceState.REJECTED.value:
        return stored
    from portal.documents.invoice import EInvoiceStamp
    from portal.documents.pdf import render, render_customer_copy
    from portal.rules.invoicing import from_content, issued_note

    stamp = EInvoiceStamp(
        system=found.system,
        number=found.national_number,
        offline=found.offline and found.national_number is None,
        verification_url=found.verification_url,
        certificate_url=found.certificate_url,
        assigned_on=_local_day(found.assigned_at) if found.assigned_at else None,
    )
    issued = issued_note(invoice)
    if invoice.note and invoice.note != issued:
        # A note saved after issue: the customer copy, marked so, with the issued XML.
        doc = from_content(invoice.content, invoice.note)
        return render_customer_copy(doc, bytes(invoice.xml), stamp)
    pdf, _xml = render(from_content(invoice.content, issued), stamp)
    return pdf
