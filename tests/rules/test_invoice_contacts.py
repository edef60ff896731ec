"""Invoice e-mails go to the billing contacts too (issue 25 point 3): the invoice of a
payment and the credit note of a refund reach the invoice e-mail and up to three more
addresses of Billing information, over a real SMTP server; other e-mails do not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from portal.infra import mail
from portal.infra.extensions import db
from portal.infra.models import BillingInfo, User, utcnow
from portal.rules.money import Money
from tests.conftest import Inbox
from tests.rules.test_invoicing import buy, config_overrides, invoices
from tests.rules.test_payments import standard, transfer24
from tests.rules.test_refunds import ask, subject, the_payment

__all__ = ["config_overrides", "standard", "transfer24"]  # fixtures reused

CONTACTS = ["ksiegowosc@szprycha.pl", "szef@szprycha.pl", "biuro@rachunki.example.com"]


class EnvelopeInbox(Inbox):
    """The SMTP server of the tests, keeping each message's envelope recipients as well."""

    def __init__(self) -> None:
        super().__init__()
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.recipients.append(sorted(envelope.rcpt_tos))
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smtp() -> Iterator[EnvelopeInbox]:
    inbox = EnvelopeInbox()
    inbox.start()
    yield inbox
    inbox.stop()


def set_contacts(app, contacts: list[str]) -> int:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "standard@demo.example.com"))
        billing = db.session.scalar(
            select(BillingInfo).where(BillingInfo.account_id == user.account_id)
        )
        billing.billing_contacts = contacts
        db.session.commit()
        return user.account_id


def test_the_invoice_and_the_credit_note_go_to_the_billing_contacts(
    app, standard, transfer24, smtp
):
    set_contacts(app, CONTACTS)
    smtp.messages.clear()

    buy(standard, transfer24)

    [invoice] = invoices(app)
    [message] = smtp.messages
    assert subject(message) == f"Faktura {invoice.number}"
    assert message["To"] == "standard@demo.example.com"
    assert [a.strip() for a in message["Cc"].split(",")] == CONTACTS
    assert smtp.recipients == [sorted(["standard@demo.example.com", *CONTACTS])]

    smtp.messages.clear()
    smtp.recipients.clear()
    assert ask(standard, the_payment(app)).status_code == 200

    [message] = smtp.messages
    assert subject(message).startswith("Zwrot ")
    assert [part.get_filename() for part in message.walk() if part.get_filename()]
    assert smtp.recipients == [sorted(["standard@demo.example.com", *CONTACTS])]


def test_without_contacts_the_invoice_goes_to_the_invoice_e_mail_only(
    app, standard, transfer24, smtp
):
    smtp.messages.clear()
    buy(standard, transfer24)
    [message] = smtp.messages
    assert message["Cc"] is None
    assert smtp.recipients == [["standard@demo.example.com"]]


def test_an_e_mail_without_a_document_goes_to_the_invoice_e_mail_only(app, standard, smtp):
    account_id = set_contacts(app, CONTACTS)
    smtp.messages.clear()
    with app.app_context():
        mail.queue(
            account_id,
            "payment_action",
            key="action-1",
            now=utcnow(),
            action_url="https://bank.example.com/3ds",
            amount=Money(21894, "PLN"),
        )
        db.session.commit()
        assert mail.deliver_pending(now=utcnow(), key="action-1") == (1, 0)
    assert smtp.recipients == [["standard@demo.example.com"]]
