"""Support requests (R17): a thread per request between a paid account and staff.

Domain operations only; the customer's pages are in :mod:`portal.web.support`, staff
reply from the admin area. New requests and customer replies are e-mailed to the staff
address (``SUPPORT_STAFF_EMAIL``); staff replies to the customer who wrote. Both go
through the notice outbox, so an SMTP outage loses none.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets

from sqlalchemy import select

from portal.infra import audit, mail
from portal.infra.extensions import db
from portal.infra.models import (
    Account,
    SupportMessage,
    SupportStatus,
    SupportThread,
    User,
)

SUBJECT_LIMIT = 200
BODY_LIMIT = 5000


class SupportRefused(Exception):
    """``code``: ``free_package``, ``empty``, ``too_long``, ``closed``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def available(account: Account) -> bool:
    """R17: support comes with paid packages (also while a renewal is being retried or the
    account is suspended, so a paying customer can always reach staff)."""
    return account.subscription.is_paid


def clean(text: str | None, limit: int) -> str:
    """Trimmed text with the control characters a browser should never send removed."""
    cleaned = "".join(
        ch for ch in (text or "") if ch in "\n\t" or (ord(ch) >= 32 and ord(ch) != 127)
    )
    cleaned = cleaned.replace("\r\n", "\n").strip()
    if not cleaned:
        raise SupportRefused("empty")
    if len(cleaned) > limit:
        raise SupportRefused("too_long")
    return cleaned


# Line breaks of every kind: a subject is one line (it heads the staff e-mail).
LINE_BREAKS = re.compile("[ ]*[\r\n\t\v\f\x1c\x1d\x1e\x85\u2028\u2029]+[ ]*")


def clean_subject(text: str | None) -> str:
    """A subject on one line: each run of line breaks becomes one space, so a subject
    cannot add lines (or headers) to the e-mail that carries it."""
    return clean(LINE_BREAKS.sub(" ", text or ""), SUBJECT_LIMIT)


def threads(account_id: int) -> list[SupportThread]:
    return list(
        db.session.scalars(
            select(SupportThread)
            .where(SupportThread.account_id == account_id)
            .order_by(SupportThread.updated_at.desc(), SupportThread.id.desc())
        )
    )


def find(account_id: int, public_id: str) -> SupportThread | None:
    """A thread of this account, or None (another account's thread is not found)."""
    thread = db.session.scalar(
        select(SupportThread).where(
            SupportThread.public_id == public_id, SupportThread.account_id == account_id
        )
    )
    return thread if isinstance(thread, SupportThread) else None


def open_thread(
    *, account: Account, user: User, subject: str, body: str, staff_email: str, now: dt.datetime
) -> SupportThread:
    if not available(account):
        raise SupportRefused("free_package")
    thread = SupportThread(
        public_id=secrets.token_hex(16),
        account_id=account.id,
        user_id=user.id,
        subject=clean_subject(subject),
        status=SupportStatus.OPEN.value,
        created_at=now,
        updated_at=now,
    )
    text = clean(body, BODY_LIMIT)
    db.session.add(thread)
    db.session.flush()
    message = SupportMessage(
        thread_id=thread.id, user_id=user.id, from_staff=False, body=text, created_at=now
    )
    db.session.add(message)
    db.session.flush()
    _tell_staff(thread, message, account, user, staff_email, now, new=True)
    db.session.commit()
    return thread


def customer_reply(
    *, thread: SupportThread, user: User, body: str, staff_email: str, now: dt.datetime
) -> SupportMessage:
    account = thread.account
    if not available(account):
        raise SupportRefused("free_package")
    text = clean(body, BODY_LIMIT)
    message = SupportMessage(
        thread_id=thread.id, user_id=user.id, from_staff=False, body=text, created_at=now
    )
    db.session.add(message)
    thread.status = SupportStatus.OPEN.value
    thread.updated_at = now
    db.session.flush()
    _tell_staff(thread, message, account, user, staff_email, now, new=False)
    db.session.commit()
    return message


def staff_reply(
    *, thread: SupportThread, staff: User, body: str, now: dt.datetime
) -> SupportMessage:
    """A staff answer: shown in the thread, e-mailed to the customer who wrote (audited)."""
    text = clean(body, BODY_LIMIT)
    before = {"status": thread.status}
    message = SupportMessage(
        thread_id=thread.id, user_id=staff.id, from_staff=True, body=text, created_at=now
    )
    db.session.add(message)
    thread.status = SupportStatus.ANSWERED.value
    thread.updated_at = now
    db.session.flush()
    customer = db.session.get(User, thread.user_id) if thread.user_id else None
    mail.queue(
        thread.account_id,
        "support_reply",
        key=f"support-reply:{message.id}",
        now=now,
        to_email=customer.email if customer is not None else None,
        language=mail.account_language(thread.account) if customer is not None else None,
        subject=thread.subject,
        body=text,
        thread_id=thread.public_id,
    )
    audit.record(
        actor=staff,
        action="support_reply",
        account_id=thread.account_id,
        object_type="support_thread",
        object_id=thread.public_id,
        before=before,
        after={"status": thread.status, "message_id": message.id},
        now=now,
    )
    db.session.commit()
    return message


def _tell_staff(
    thread: SupportThread,
    message: SupportMessage,
    account: Account,
    user: User,
    staff_email: str,
    now: dt.datetime,
    *,
    new: bool,
) -> None:
    from flask import current_app

    mail.queue(
        account.id,
        "support_staff",
        key=f"support-staff:{message.id}",
        now=now,
        to_email=staff_email,
        language=str(current_app.config.get("STAFF_LANGUAGE", "en")),
        new=new,
        subject=thread.subject,
        body=message.body,
        company=account.name,
        package=account.subscription.package,
        customer=user.email,
        thread_id=thread.public_id,
        account_number=account.id,
    )
