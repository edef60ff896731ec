"""Refunds (issue 7, point 5; R14): the first payment for a package, within 15 days.

Driven through the third party's ``transfer24`` plugin and its emulator (which supports
refunds), the test client and a real SMTP server on loopback.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from email.header import decode_header, make_header

import pytest
from facturx import xml_check_xsd
from sqlalchemy import func, select, update

from portal.infra.extensions import db
from portal.infra.models import (
    Invoice,
    Order,
    OrderStatus,
    Payment,
    PaymentStatus,
    User,
)
from portal.plugin_api.registry import registry
from tests.conftest import csrf_token
from tests.rules.test_invoicing import (
    buy,
    config_overrides,
    invoices,
    pdf_text,
    text,
)
from tests.rules.test_payments import (
    back_from_bank,
    bank_token,
    only,
    place_and_pay,
    standard,
    subscription,
    transfer24,
)

__all__ = ["config_overrides", "standard", "transfer24"]  # fixtures reused

UTC = dt.UTC
# Settled at 10:00 in Warsaw (summer time, UTC+2); clocks go back on 25 October, so the
# last minute to ask is 09:59 CET on 4 November = 08:59 UTC, an hour past 15 x 24 h.
SETTLED = dt.datetime(2026, 10, 20, 8, 0, tzinfo=UTC)
LAST_MINUTE = dt.datetime(2026, 11, 4, 8, 59, tzinfo=UTC)
DEADLINE = dt.datetime(2026, 11, 4, 9, 0, tzinfo=UTC)
MINUTE_LATE = dt.datetime(2026, 11, 4, 9, 1, tzinfo=UTC)


def the_payment(app) -> Payment:
    [payment] = only(app, Payment)
    return payment


def clock(monkeypatch, at: dt.datetime) -> None:
    monkeypatch.setattr("portal.web.refunds.now", lambda: at)


def settled_at(app, payment: Payment, when: dt.datetime) -> None:
    with app.app_context():
        db.session.execute(update(Payment).where(Payment.id == payment.id).values(settled_at=when))
        db.session.commit()


def ask(client, payment: Payment):
    token = csrf_token(client, f"/refunds/{payment.public_id}")
    return client.post(f"/refunds/{payment.public_id}", data={"csrf_token": token})


def subject(message) -> str:
    return str(make_header(decode_header(message["Subject"]))).replace("\xa0", " ")


def refund_link(payment: Payment) -> str:
    return f'href="/refunds/{payment.public_id}"'


def test_happy_path_refunds_credits_returns_to_free_and_e_mails(app, standard, transfer24, smtp):
    buy(standard, transfer24)
    payment = the_payment(app)
    [invoice] = invoices(app)
    assert refund_link(payment) in text(standard.get("/package"))
    assert refund_link(payment) in text(standard.get("/invoices"))
    assert "Poproś o zwrot" in text(standard.get("/invoices"))
    page = text(standard.get(f"/refunds/{payment.public_id}"))
    assert "328,41 zł" in page and "Free" in page  # the amount and the consequence
    smtp.messages.clear()

    response = ask(standard, payment)

    assert response.status_code == 200, text(response)
    assert transfer24.transactions[payment.charge_ref]["refunded"] == 32841
    after = the_payment(app)
    assert (after.status, after.refunded_minor) == (PaymentStatus.REFUNDED, 32841)
    [order] = only(app, Order)
    assert order.status == OrderStatus.REFUNDED
    first, note = invoices(app)
    assert (first.id, first.content) == (invoice.id, invoice.content)  # the original stays
    assert note.kind == "credit_note" and note.corrects_id == invoice.id
    assert note.number.startswith("FVKN/") and note.number.endswith("/000001")
    assert (note.net_minor, note.vat_minor, note.total_minor) == (26700, 6141, 32841)
    assert note.content["kind"] == "credit_note" and note.content["corrects"][0] == invoice.number
    assert note.reason and "zwrot" in note.reason.lower()  # in the invoice's language (pl)
    assert xml_check_xsd(note.xml, flavor="factur-x", level="en16931")
    listed = text(standard.get("/invoices"))
    assert note.number in listed and f"koryguje {invoice.number}" in listed
    assert "Poproś o zwrot" not in listed
    assert "-328,41" in listed  # the credit note is money back: listed with a minus
    sub = subscription(app)
    assert (sub.package, sub.agents, sub.conversations) == ("free", 3, 0)
    assert (sub.period_start, sub.period_end, sub.auto_renew, sub.period_net_minor) == (
        None,
        None,
        False,
        0,
    )
    assert sub.currency == "PLN"
    [message] = smtp.messages
    assert message["To"] == "standard@demo.example.com"
    assert subject(message) == "Zwrot 328,41 zł"
    [attachment] = [part for part in message.walk() if part.get_filename()]
    assert attachment.get_filename() == note.number.replace("/", "-") + ".pdf"
    note_text = pdf_text(attachment.get_payload(decode=True))
    assert note.number in note_text and "Faktura korygująca" in note_text
    assert "Zapłacono" not in note_text and "Pozostało do zapłaty" not in note_text  # not paid
    assert refund_link(payment) not in text(standard.get("/package"))


def test_a_second_request_is_refused_and_changes_nothing(app, standard, transfer24, smtp):
    buy(standard, transfer24)
    payment = the_payment(app)
    assert ask(standard, payment).status_code == 200
    smtp.messages.clear()
    response = ask(standard, payment)
    assert response.status_code == 409
    assert "Ta płatność została już zwrócona." in text(response)
    assert [i.kind for i in invoices(app)] == ["invoice", "credit_note"]
    assert transfer24.transactions[payment.charge_ref]["refunded"] == 32841
    assert smtp.messages == []


def test_the_boundary_to_the_minute_across_the_dst_change(app, standard, transfer24, monkeypatch):
    buy(standard, transfer24)
    payment = the_payment(app)
    settled_at(app, payment, SETTLED)
    clock(monkeypatch, MINUTE_LATE)
    assert refund_link(payment) not in text(standard.get("/package"))
    response = ask(standard, payment)
    assert response.status_code == 409
    assert "w ciągu 15 dni" in text(response)
    clock(monkeypatch, DEADLINE)
    assert ask(standard, payment).status_code == 409
    assert transfer24.transactions[payment.charge_ref]["refunded"] == 0
    assert the_payment(app).status == PaymentStatus.PAID
    assert subscription(app).package == "standard"
    # One minute before: still on time (15 x 24 h would have ended an hour earlier).
    clock(monkeypatch, LAST_MINUTE)
    assert refund_link(payment) in text(standard.get("/package"))
    page = text(standard.get(f"/refunds/{payment.public_id}"))
    assert "4.11.2026, 10:00" in page or "04.11.2026, 10:00" in page
    assert ask(standard, payment).status_code == 200
    assert the_payment(app).status == PaymentStatus.REFUNDED


def test_the_boundary_follows_the_accounts_time_zone(app, standard, transfer24, monkeypatch):
    buy(standard, transfer24)
    payment = the_payment(app)
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "standard@demo.example.com"))
        user.account.timezone = "America/New_York"  # DST ends there on 1 November
        db.session.commit()
    settled_at(app, payment, dt.datetime(2026, 10, 25, 14, 0, tzinfo=UTC))  # 10:00 EDT
    clock(monkeypatch, dt.datetime(2026, 11, 9, 15, 1, tzinfo=UTC))  # 10:01 EST
    assert ask(standard, payment).status_code == 409
    clock(monkeypatch, dt.datetime(2026, 11, 9, 14, 59, tzinfo=UTC))  # 09:59 EST
    assert ask(standard, payment).status_code == 200


def test_a_later_payment_is_not_refundable(app, standard, transfer24):
    buy(standard, transfer24)
    back_from_bank(standard, transfer24, bank_token(place_and_pay(standard, agents="6")))
    with app.app_context():
        first, second = db.session.scalars(select(Payment).order_by(Payment.id)).all()
        db.session.expunge_all()
    assert "Poproś o zwrot" not in text(standard.get("/invoices"))
    assert "Poproś o zwrot" not in text(standard.get("/package"))
    response = ask(standard, second)
    assert response.status_code == 409
    assert "Zwrócić można tylko pierwszą płatność za pakiet." in text(response)
    assert ask(standard, first).status_code == 409  # paid again since: not any more
    assert transfer24.transactions[second.charge_ref]["refunded"] == 0
    assert transfer24.transactions[first.charge_ref]["refunded"] == 0
    assert [i.kind for i in invoices(app)] == ["invoice", "invoice"]
    assert subscription(app).agents == 6


def test_a_stale_second_checkout_refunded_automatically_keeps_the_refund_right(
    app, standard, transfer24
):
    """Two tabs: the customer pays one change, then the other, which no longer holds. Core
    refunds the second at once; it bought nothing, so the first is still refundable (R14)."""
    first_token = bank_token(place_and_pay(standard, agents="5"))
    second_token = bank_token(place_and_pay(standard, agents="6"))
    back_from_bank(standard, transfer24, first_token)
    back_from_bank(standard, transfer24, second_token)
    with app.app_context():
        first, second = db.session.scalars(select(Payment).order_by(Payment.id)).all()
        db.session.expunge_all()
    assert (first.status, first.failure_code) == (PaymentStatus.PAID, None)
    assert (second.status, second.failure_code) == (PaymentStatus.REFUNDED, "quote_stale")
    assert subscription(app).agents == 5
    assert refund_link(first) in text(standard.get("/package"))
    response = ask(standard, first)
    assert response.status_code == 200, text(response)
    assert transfer24.transactions[first.charge_ref]["refunded"] == 32841
    assert subscription(app).package == "free"


def test_another_accounts_payment_is_not_found(app, standard, auth, transfer24):
    buy(standard, transfer24)
    payment = the_payment(app)
    auth.logout()
    auth.login("free@demo.example.com", "pakiet-demo-2026")
    assert standard.get(f"/refunds/{payment.public_id}").status_code == 404
    token = csrf_token(standard, "/package")
    response = standard.post(f"/refunds/{payment.public_id}", data={"csrf_token": token})
    assert response.status_code == 404
    assert transfer24.transactions[payment.charge_ref]["refunded"] == 0
    assert the_payment(app).status == PaymentStatus.PAID


def test_without_the_csrf_token_nothing_happens(app, standard, transfer24):
    buy(standard, transfer24)
    payment = the_payment(app)
    assert standard.post(f"/refunds/{payment.public_id}").status_code == 400
    assert the_payment(app).status == PaymentStatus.PAID


def test_provider_down_changes_nothing_and_a_retry_works(
    app, standard, transfer24, smtp, monkeypatch
):
    buy(standard, transfer24)
    payment = the_payment(app)
    provider = registry(app).payment_providers["transfer24"]
    monkeypatch.setattr(provider, "base_url", "http://127.0.0.1:9")  # nothing listens
    smtp.messages.clear()
    response = ask(standard, payment)
    assert response.status_code == 503
    assert "nic nie zostało zwrócone" in text(response)
    assert the_payment(app).status == PaymentStatus.PAID
    assert [i.kind for i in invoices(app)] == ["invoice"]
    assert subscription(app).package == "standard"
    assert smtp.messages == []
    monkeypatch.setattr(provider, "base_url", transfer24.base_url)
    assert ask(standard, payment).status_code == 200
    assert transfer24.transactions[payment.charge_ref]["refunded"] == 32841
    assert [i.kind for i in invoices(app)] == ["invoice", "credit_note"]
    assert len(smtp.messages) == 1


def test_an_interrupted_refund_is_finished_by_the_next_request(app, standard, transfer24):
    """Refunded and applied, then the process died before the credit note: finish it."""
    from portal.rules import payments

    buy(standard, transfer24)
    payment = the_payment(app)
    with app.app_context():
        event = (
            registry(app)
            .payment_providers["transfer24"]
            .refund(
                charge_ref=payment.charge_ref,
                amount=payment.amount,
                idempotency_key=f"refund-{payment.public_id}-r14",
            )
        )
        payments.apply_event("transfer24", event, now=SETTLED)
    assert ask(standard, payment).status_code == 200
    assert [i.kind for i in invoices(app)] == ["invoice", "credit_note"]
    assert subscription(app).package == "free"
    assert ask(standard, payment).status_code == 409
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Invoice)) == 2


@pytest.mark.parametrize("language", ["en"])
def test_english_account_gets_english_texts(app, standard, transfer24, smtp, language):
    with app.app_context():
        db.session.execute(
            update(User).where(User.email == "standard@demo.example.com").values(language=language)
        )
        db.session.commit()
    buy(standard, transfer24)
    payment = the_payment(app)
    smtp.messages.clear()
    assert ask(standard, payment).status_code == 200
    _invoice, note = invoices(app)
    assert note.language == "en" and note.reason and "refund" in note.reason.lower()
    [message] = smtp.messages
    assert re.match(r"Refund of ", subject(message))


@pytest.mark.postgres
def test_two_requests_at_once_refund_once(app, standard, transfer24, smtp):
    buy(standard, transfer24)
    payment = the_payment(app)
    tokens = [csrf_token(standard, f"/refunds/{payment.public_id}") for _ in range(2)]
    cookie = standard.get_cookie("session")
    barrier = threading.Barrier(2, timeout=30)
    statuses: list[int] = []

    def press(token: str) -> None:
        client = app.test_client()
        client.set_cookie("session", cookie.value)
        barrier.wait()
        response = client.post(f"/refunds/{payment.public_id}", data={"csrf_token": token})
        statuses.append(response.status_code)

    threads = [threading.Thread(target=press, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The second waits for the first's lock, then sees the refund done: no error either way.
    assert set(statuses) <= {200, 409} and 200 in statuses
    assert transfer24.transactions[payment.charge_ref]["refunded"] == 32841
    assert [i.kind for i in invoices(app)] == ["invoice", "credit_note"]


def test_a_provider_that_cannot_refund_leaves_the_refund_to_staff(
    app, standard, transfer24, monkeypatch
):
    """A provider declaring ``can_refund = False`` (issue 24, point 3): R14's refund is not
    offered in the portal, asking anyway changes nothing and the provider is not asked; the
    customer is sent to support, whose staff refund it by hand."""
    buy(standard, transfer24)
    payment = the_payment(app)
    provider = registry(app).payment_providers["transfer24"]
    monkeypatch.setattr(provider, "can_refund", False, raising=False)
    assert refund_link(payment) not in text(standard.get("/invoices"))
    assert refund_link(payment) not in text(standard.get("/package"))
    response = ask(standard, payment)
    assert response.status_code == 409
    assert "zwrócimy je ręcznie" in text(response)
    assert transfer24.transactions[payment.charge_ref]["refunded"] == 0
    assert the_payment(app).status == PaymentStatus.PAID
    assert subscription(app).package == "standard"


def test_money_a_provider_cannot_refund_is_left_to_staff_by_the_background_run_and_the_admin(
    app, standard, transfer24, monkeypatch
):
    """The same provider (``can_refund = False``), for money that must go back: a second
    payment for an order that no longer holds. The background run does not ask the provider
    (not every minute, not ever), and the admin's refund says to refund it there."""
    from portal.infra.models import utcnow
    from portal.rules import accounts, payments
    from tests.conftest import Auth
    from tests.rules.test_payments import back_from_bank, bank_token, place_and_pay

    first_token = bank_token(place_and_pay(standard, agents="5"))
    second_token = bank_token(place_and_pay(standard, agents="6"))
    provider = registry(app).payment_providers["transfer24"]
    monkeypatch.setattr(provider, "can_refund", False, raising=False)
    asked: list[str] = []
    monkeypatch.setattr(provider, "refund", lambda **kwargs: asked.append(kwargs["charge_ref"]))
    back_from_bank(standard, transfer24, first_token)
    back_from_bank(standard, transfer24, second_token)
    with app.app_context():
        second = db.session.scalars(select(Payment).order_by(Payment.id)).all()[1]
        assert (second.status, second.failure_code) == ("paid", "quote_stale")
        second_id = second.id
        assert payments.refund_due() == 0
        assert payments.refund_stale(second_id) is False
        accounts.create_admin(email="boss@pakiet.example.com", password="x" * 12, now=utcnow())
    assert asked == []
    staff = app.test_client()
    assert Auth(staff).login("boss@pakiet.example.com", "x" * 12).status_code == 302
    path = f"/admin/actions/payment/{second_id}/refund"
    response = staff.post(
        path,
        data={"csrf_token": csrf_token(staff, path), "amount": "1.00", "refunded_seen": "0"},
    )
    assert response.status_code == 422
    assert "nie zwraca pieniędzy przez portal" in response.get_data(as_text=True)
    assert asked == []
    with app.app_context():
        assert db.session.get(Payment, second_id).refunded_minor == 0
