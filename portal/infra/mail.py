"""E-mail to customers in their language (Flask-Mailman: console by default, SMTP when set).

Templates are ``templates/email/<name>.txt``; the first line is the subject.

Notices of the lifecycle go through an outbox (:class:`~portal.infra.models.Notice`): written in
the transaction of what they report, once per key, and sent by :func:`deliver_pending`;
when the SMTP server is down they stay queued and are sent by a later run.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

from flask import current_app, render_template
from flask_babel import force_locale
from flask_mailman import EmailMessage
from sqlalchemy import select, true

from portal.infra.extensions import db
from portal.infra.models import Account, Notice
from portal.rules.money import Money

log = logging.getLogger(__name__)


def account_language(account: Account) -> str:
    return str(account.language or current_app.config["BABEL_DEFAULT_LOCALE"])


def render(name: str, language: str, **context: Any) -> tuple[str, str]:
    """(subject, body) of ``templates/email/<name>.txt`` rendered in ``language``."""
    with force_locale(language):
        text = render_template(f"email/{name}.txt", language=language, **context)
    subject, _, body = text.strip().partition("\n")
    return one_line(subject), body.strip() + "\n"


HEADER_BREAKS = re.compile("[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]+")


def one_line(subject: str) -> str:
    """A header value on one line, whatever a template or a customer's text put in it."""
    return HEADER_BREAKS.sub(" ", subject).strip()


def send_to_account(
    account_id: int,
    name: str,
    attachments: list[tuple[str, bytes, str]] | None = None,
    **context: Any,
) -> None:
    """Send to the account's invoice e-mail (Billing information), in its language; an
    e-mail that carries an invoice or a credit note goes to the billing contacts too (Cc)."""
    account = db.session.get(Account, account_id)
    if account is None:
        return
    language = account_language(account)
    context, documents = _documents(context)
    subject, body = render(name, language, account=account, **context)
    billing = account.billing_info
    message = EmailMessage(
        subject=subject,
        body=body,
        from_email=current_app.config["MAIL_DEFAULT_SENDER"],
        to=[billing.invoice_email],
        cc=list(billing.billing_contacts or []) if documents else None,
    )
    for filename, content, mimetype in [*(attachments or []), *documents]:
        message.attach(filename, content, mimetype)
    message.send()
    log.info("sent %s e-mail to account %s", name, account_id)


#: Context fields of a queued e-mail naming an invoice by id: the invoice is loaded when
#: the e-mail is sent (as ``invoice`` / ``credit_note``) and its latest PDF attached.
DOCUMENT_FIELDS = ("invoice", "credit_note")


def _documents(context: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, bytes, str]]]:
    from portal.infra.models import Invoice, latest_pdf

    context = dict(context)
    attachments: list[tuple[str, bytes, str]] = []
    for field in DOCUMENT_FIELDS:
        invoice_id = context.pop(f"{field}_id", None)
        if invoice_id is None:
            continue
        invoice = db.session.get(Invoice, int(invoice_id))
        pdf = latest_pdf(int(invoice_id))
        if invoice is None or pdf is None:
            raise LookupError(f"no invoice {invoice_id} with a PDF to send")
        copy = current_app.extensions.get("pakiet.customer_copy")
        if copy is not None:  # the copy with KSeF's number (portal.rules.einvoicing)
            pdf = copy(invoice, pdf)
        context[field] = invoice
        attachments.append((f"{invoice.number.replace('/', '-')}.pdf", pdf, "application/pdf"))
    return context, attachments


# -- the outbox -------------------------------------------------------------------------------

#: Waits before another try after a failed send (the last one repeats).
RETRY_DELAYS = (dt.timedelta(minutes=1), dt.timedelta(minutes=5), dt.timedelta(minutes=30))


def encode(value: Any) -> Any:
    """Template context as JSON: Money and dates are tagged so they come back typed."""
    if isinstance(value, Money):
        return {"$money": [value.minor, value.currency]}
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return {"$date": value.isoformat()}
    if isinstance(value, str | int | bool) or value is None:
        return value
    raise TypeError(f"a notice cannot carry {type(value).__name__}")


def decode(value: Any) -> Any:
    if isinstance(value, dict) and "$money" in value:
        minor, currency = value["$money"]
        return Money(int(minor), str(currency))
    if isinstance(value, dict) and "$date" in value:
        return dt.date.fromisoformat(value["$date"])
    return value


def send_to_address(to: str, name: str, language: str, **context: Any) -> None:
    """Send ``templates/email/<name>.txt`` to one address (staff, a user) in ``language``."""
    subject, body = render(name, language, **context)
    EmailMessage(
        subject=subject,
        body=body,
        from_email=current_app.config["MAIL_DEFAULT_SENDER"],
        to=[to],
    ).send()
    log.info("sent %s e-mail", name)


def queue(
    account_id: int,
    name: str,
    *,
    key: str,
    now: dt.datetime,
    to_email: str | None = None,
    language: str | None = None,
    **context: Any,
) -> bool:
    """Add the notice ``key`` in the caller's transaction; False when it exists already.
    It goes to the account's invoice e-mail, or to ``to_email`` in ``language``.

    Call with the caller's rows locked, so two runners cannot both add it (the unique key
    is the last line of defence: a duplicate would abort the caller's transaction).
    """
    if db.session.scalar(select(Notice.id).where(Notice.key == key)) is not None:
        return False
    db.session.add(
        Notice(
            key=key,
            account_id=account_id,
            template=name,
            to_email=to_email,
            language=language,
            context={field: encode(value) for field, value in context.items()},
            created_at=now,
            send_after=now,
        )
    )
    return True


def deliver_pending(
    *, now: dt.datetime, limit: int = 500, key: str | None = None
) -> tuple[int, int]:
    """Send unsent notices whose time has come (only ``key`` when given): (sent, failed).
    Safe on many nodes: each is claimed with ``FOR UPDATE SKIP LOCKED`` and committed
    before the next."""
    sent = failed = 0
    last_id = 0
    only = Notice.key == key if key is not None else true()
    for _ in range(limit):
        notice = db.session.scalar(
            select(Notice)
            .where(Notice.sent_at.is_(None), Notice.send_after <= now, Notice.id > last_id)
            .where(only)
            .order_by(Notice.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
        if not isinstance(notice, Notice):
            break
        last_id = notice.id
        context = {field: decode(value) for field, value in notice.context.items()}
        try:
            if notice.to_email:
                language = notice.language or current_app.config["BABEL_DEFAULT_LOCALE"]
                send_to_address(notice.to_email, notice.template, language, **context)
            else:
                send_to_account(notice.account_id, notice.template, **context)
        except Exception as exc:  # SMTP down or refusing (smtplib's errors are OSErrors)
            if not isinstance(exc, OSError):
                log.exception("notice %s could not be rendered or sent", notice.key)
            delay = RETRY_DELAYS[min(notice.attempts, len(RETRY_DELAYS) - 1)]
            notice.attempts += 1
            notice.send_after = now + delay
            notice.last_error = f"{type(exc).__name__}: {exc}"[:500]
            log.warning(
                "notice %s not sent (%s); next try at %s", notice.key, exc, notice.send_after
            )
            failed += 1
        else:
            notice.attempts += 1
            notice.sent_at = now
            sent += 1
        db.session.commit()
    return sent, failed
