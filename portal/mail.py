"""E-mail to customers in their language (Flask-Mailman: console by default, SMTP when set).

Templates are ``templates/email/<name>.txt``; the first line is the subject.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app, render_template
from flask_babel import force_locale
from flask_mailman import EmailMessage
from sqlalchemy import select

from portal.extensions import db
from portal.models import Account, User

log = logging.getLogger(__name__)


def account_language(account: Account) -> str:
    language = db.session.scalar(
        select(User.language)
        .where(User.account_id == account.id, User.language.is_not(None))
        .order_by(User.id)
        .limit(1)
    )
    return str(language or current_app.config["BABEL_DEFAULT_LOCALE"])


def render(name: str, language: str, **context: Any) -> tuple[str, str]:
    """(subject, body) of ``templates/email/<name>.txt`` rendered in ``language``."""
    with force_locale(language):
        text = render_template(f"email/{name}.txt", language=language, **context)
    subject, _, body = text.strip().partition("\n")
    return subject.strip(), body.strip() + "\n"


def send_to_account(
    account_id: int,
    name: str,
    attachments: list[tuple[str, bytes, str]] | None = None,
    **context: Any,
) -> None:
    """Send to the account's invoice e-mail (Billing information), in its language."""
    account = db.session.get(Account, account_id)
    if account is None:
        return
    language = account_language(account)
    subject, body = render(name, language, account=account, **context)
    message = EmailMessage(
        subject=subject,
        body=body,
        from_email=current_app.config["MAIL_DEFAULT_SENDER"],
        to=[account.billing_info.invoice_email],
    )
    for filename, content, mimetype in attachments or []:
        message.attach(filename, content, mimetype)
    message.send()
    log.info("sent %s e-mail to account %s", name, account_id)
