"""The back office (issue 8): staff only, read-only lists, audited actions with a
confirmation step, refusals that change nothing, the dashboard."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from portal import demo
from portal.infra.extensions import db
from portal.infra.models import AuditEntry, Invoice, Payment, Subscription, User
from tests.conftest import csrf_token
from tests.rules.test_lifecycle import at, rows, subscribe

TODAY = dt.date(2026, 11, 26)


def login(auth, who: str) -> None:
    assert auth.login(f"{who}@demo.example.com", demo.PASSWORD).status_code == 302


def text(response) -> str:
    return response.get_data(as_text=True).replace("\xa0", " ")


def sub_of(app, email: str) -> Subscription:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        sub = user.account.subscription
        db.session.expunge(sub)
        return sub


def audit(app) -> list[AuditEntry]:
    with app.app_context():
        entries = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        db.session.expunge_all()
        return entries


ADMIN_PAGES = [
    "/admin/",
    "/admin/accounts/",
    "/admin/users/",
    "/admin/subscriptions/",
    "/admin/orders/",
    "/admin/payments/",
    "/admin/refunds/",
    "/admin/invoices/",
    "/admin/support/",
    "/admin/vies/",
    "/admin/renewal-off/",
    "/admin/audit/",
    "/admin/webhooks/",
    "/admin/actions/account/2",
]


def test_a_customer_is_refused_and_a_visitor_sent_to_log_in(client, auth, demo_accounts):
    for path in ADMIN_PAGES:
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path
    login(auth, "standard")
    for path in ADMIN_PAGES:
        assert client.get(path).status_code == 403, path
    token = csrf_token(client, "/package")
    response = client.post(
        "/admin/actions/subscription/2/free", data={"csrf_token": token, "version": "1"}
    )
    assert response.status_code == 403


@pytest.mark.parametrize("language", ["pl", "en"])
def test_staff_see_every_list_in_their_language(client, auth, demo_accounts, language):
    login(auth, "admin")
    client.post(
        "/language",
        data={"csrf_token": csrf_token(client, "/package/edit"), "language": language},
    )
    for path in ADMIN_PAGES:
        assert client.get(path).status_code == 200, path
    page = text(client.get("/admin/subscriptions/"))
    if language == "pl":
        assert "Subskrypcje" in page and "Automatyczne odnawianie" in page
    else:
        assert "Subscriptions" in page and "Auto-renewal" in page
    # Lists are read-only: no create, edit or delete anywhere.
    assert client.get("/admin/subscriptions/new/").status_code in (302, 403, 404)
    assert client.get("/admin/payments/edit/?id=1").status_code in (302, 403, 404)


def test_switching_yearly_to_monthly_needs_confirmation_and_is_audited(
    app, client, auth, demo_accounts
):
    login(auth, "admin")
    sub = sub_of(app, "pro@demo.example.com")
    path = f"/admin/actions/subscription/{sub.id}/monthly"
    page = text(client.get(path))
    assert "monthly period" in page or "miesięczny" in page
    assert sub_of(app, "pro@demo.example.com").next_period is None  # GET changes nothing

    token = csrf_token(client, path)
    response = client.post(path, data={"csrf_token": token, "version": str(sub.version)})
    assert response.status_code == 302

    after = sub_of(app, "pro@demo.example.com")
    assert (after.period, after.next_period) == ("year", "month")
    [entry] = audit(app)
    assert (entry.action, entry.actor_email, entry.account_id) == (
        "schedule_monthly",
        "admin@demo.example.com",
        sub.account_id,
    )
    assert entry.before["next_period"] is None and entry.after["next_period"] == "month"

    # A double submit (the old version) is refused with a message and changes nothing.
    again = client.post(path, data={"csrf_token": token, "version": str(sub.version)})
    assert again.status_code == 422
    assert len(audit(app)) == 1


def test_return_to_free_extend_and_currency(app, client, auth, demo_accounts):
    login(auth, "admin")
    sub = sub_of(app, "standard@demo.example.com")
    token = csrf_token(client, f"/admin/actions/subscription/{sub.id}/extend")
    end = sub.period_end

    extend = f"/admin/actions/subscription/{sub.id}/extend"
    bad = client.post(extend, data={"csrf_token": token, "version": sub.version, "days": "0"})
    assert bad.status_code == 422 and sub_of(app, "standard@demo.example.com").period_end == end
    ok = client.post(
        extend,
        data={"csrf_token": token, "version": sub.version, "days": "10", "note": "outage"},
    )
    assert ok.status_code == 302
    sub = sub_of(app, "standard@demo.example.com")
    assert sub.period_end == end + dt.timedelta(days=10)

    currency = f"/admin/actions/subscription/{sub.id}/currency"
    assert (
        client.post(
            currency, data={"csrf_token": token, "version": sub.version, "currency": "XXX"}
        ).status_code
        == 422
    )
    assert (
        client.post(
            currency, data={"csrf_token": token, "version": sub.version, "currency": "EUR"}
        ).status_code
        == 302
    )
    sub = sub_of(app, "standard@demo.example.com")
    assert sub.next_currency == "EUR"

    free = f"/admin/actions/subscription/{sub.id}/free"
    assert client.post(free, data={"csrf_token": token, "version": sub.version}).status_code == 302
    sub = sub_of(app, "standard@demo.example.com")
    assert (sub.package, sub.period_end, sub.next_currency) == ("free", None, None)
    assert [e.action for e in audit(app)] == [
        "extend_period",
        "schedule_currency",
        "return_to_free",
    ]
    assert audit(app)[0].note == "outage"
    # On a missing object: 404, nothing happens.
    missing = client.post(
        "/admin/actions/subscription/999/free", data={"csrf_token": token, "version": "1"}
    )
    assert missing.status_code == 404


def test_a_partial_then_full_refund_with_credit_notes(app, client, auth, stripe_emulator, smtp):
    account_id = subscribe(app, stripe_emulator)
    from tests.rules.test_lifecycle import run

    run(app, at(dt.date(2026, 12, 1)))  # a renewal: a payment of PLN 328.41 and its invoice
    with app.app_context():
        from portal.rules import accounts

        accounts.create_admin(email="boss@pakiet.example.com", password="x" * 12, now=at(TODAY))
    assert auth.login("boss@pakiet.example.com", "x" * 12).status_code == 302
    [payment] = rows(app, Payment, Payment.account_id == account_id)
    path = f"/admin/actions/payment/{payment.id}/refund"
    page = text(client.get(path))
    assert "328,41 zł" in page or "PLN 328.41" in page
    token = csrf_token(client, path)

    def refund(amount: str, seen: int):
        return client.post(
            path, data={"csrf_token": token, "amount": amount, "refunded_seen": str(seen)}
        )

    too_much = refund("400.00", 0)
    assert too_much.status_code == 422
    assert refund("abc", 0).status_code == 422
    assert refund("100.00", 0).status_code == 302
    stale = refund("100.00", 0)  # a double submit
    assert stale.status_code == 422
    assert refund("228.41", 10000).status_code == 302

    [payment] = rows(app, Payment, Payment.account_id == account_id)
    assert (payment.status, payment.refunded_minor) == ("refunded", 32841)
    notes = rows(app, Invoice, Invoice.kind == "credit_note")
    assert [n.total_minor for n in notes] == [10000, 22841]
    assert all(n.corrects_id is not None for n in notes)
    assert sum(n.net_minor + n.vat_minor for n in notes) == 32841
    refunds = [r for r in stripe_emulator.objects("refund")]
    assert sorted(r["amount"] for r in refunds) == [10000, 22841]
    assert [e.action for e in audit(app)] == ["refund", "refund"]
    pdf = client.get(f"/admin/actions/invoice/{notes[0].id}.pdf")  # downloadable by staff
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert pdf.data.startswith(b"%PDF")


def test_the_dashboard_shows_mrr_and_subscriptions_by_package_and_currency(
    app, client, auth, demo_accounts
):
    login(auth, "admin")
    page = text(client.get("/admin/"))
    # Standard monthly 3 x PLN 89; Pro yearly EUR: (8 x 300 + 10 packs x 100) / 12
    assert "267,00 zł" in page or "PLN 267.00" in page
    assert re.search(r"283[.,]33", page)
    assert "<svg" in page and "<title" in page


def test_customer_actions_on_money_and_billing_data_are_audited(app, client, auth, demo_accounts):
    login(auth, "standard")
    token = csrf_token(client, "/payment-methods")
    client.post("/payment-methods/auto-renew", data={"csrf_token": token, "auto_renew": "off"})
    entries = audit(app)
    assert [(e.action, e.actor_role, e.before, e.after) for e in entries] == [
        ("auto_renew", "customer", {"auto_renew": True}, {"auto_renew": False})
    ]
    assert entries[0].actor_email == "standard@demo.example.com"
    auth.logout()
    login(auth, "admin")
    page = text(client.get("/admin/audit/"))
    assert "auto_renew" in page and "standard@demo.example.com" in page


def test_staff_resend_an_invoice_and_reply_to_support(
    app, client, auth, stripe_emulator, smtp, monkeypatch
):
    # One clock for the whole story: the staff pages act on 2 December 2026, as the queue
    # is delivered (the wall clock would make this pass only until that day).
    monkeypatch.setattr("portal.staff.admin.utcnow", lambda: at(dt.date(2026, 12, 2)))
    account_id = subscribe(app, stripe_emulator, language="en")
    from tests.rules.test_lifecycle import run

    run(app, at(dt.date(2026, 12, 1)))
    [invoice] = rows(app, Invoice, Invoice.account_id == account_id)
    with app.app_context():
        from portal.rules import accounts, support

        accounts.create_admin(email="boss@pakiet.example.com", password="x" * 12, now=at(TODAY))
        customer = db.session.scalar(select(User).where(User.account_id == account_id))
        thread = support.open_thread(
            account=customer.account,
            user=customer,
            subject="Seats",
            body="How many?",
            staff_email="staff@pakiet.example.com",
            now=at(dt.date(2026, 12, 2)),
        )
        thread_id = thread.id
    assert auth.login("boss@pakiet.example.com", "x" * 12).status_code == 302
    smtp.messages.clear()

    path = f"/admin/actions/invoice/{invoice.id}/resend"
    assert "anna@firma.example.com" not in text(client.get(path))  # a confirmation page
    token = csrf_token(client, path)
    assert client.post(path, data={"csrf_token": token}).status_code == 302
    assert client.post(path, data={"csrf_token": token}).status_code == 302  # double submit
    resent = [m for m in smtp.messages if m["To"] == "anna@firma.example.com"]
    assert len(resent) == 1 and resent[0].get_payload()[1].get_content_type() == "application/pdf"

    thread_path = f"/admin/actions/thread/{thread_id}"
    assert client.post(thread_path, data={"csrf_token": token, "body": " "}).status_code == 422
    response = client.post(thread_path, data={"csrf_token": token, "body": "Up to 200."})
    assert response.status_code == 302
    assert "Up to 200." in text(client.get(thread_path))
    assert [e.action for e in audit(app)] == ["resend_invoice", "support_reply"]
    with app.app_context():
        from portal.infra import mail

        mail.deliver_pending(now=at(dt.date(2026, 12, 2)))
    assert any(m["Subject"] == "Re: Seats" for m in smtp.messages)


def test_a_staff_refund_asks_the_provider_outside_any_transaction(
    app, client, auth, stripe_emulator, smtp, monkeypatch
):
    """Security issue, point 8 (fails on the old code: the payment stayed locked across the
    provider's call); a double submit at once refunds once."""
    from portal.infra.extensions import db
    from portal.plugin_api.registry import registry
    from tests.conftest import at_once
    from tests.rules.test_lifecycle import run

    account_id = subscribe(app, stripe_emulator)
    run(app, at(dt.date(2026, 12, 1)))
    with app.app_context():
        from portal.rules import accounts

        accounts.create_admin(email="boss@pakiet.example.com", password="x" * 12, now=at(TODAY))
        provider = registry(app).payment_providers["stripe"]
    assert auth.login("boss@pakiet.example.com", "x" * 12).status_code == 302
    [payment] = rows(app, Payment, Payment.account_id == account_id)
    path = f"/admin/actions/payment/{payment.id}/refund"
    tokens = [csrf_token(client, path) for _ in range(2)]
    seen: list[bool] = []
    original = provider.refund

    def watched(*args, **kwargs):
        seen.append(db.session().in_transaction())
        return original(*args, **kwargs)

    monkeypatch.setattr(provider, "refund", watched)
    cookie = client.get_cookie("session").value
    statuses: list[int] = []

    def press() -> None:
        other = app.test_client()
        other.set_cookie("session", cookie)
        token = tokens[len(statuses) % 2]
        response = other.post(
            path, data={"csrf_token": token, "amount": "100.00", "refunded_seen": "0"}
        )
        statuses.append(response.status_code)

    at_once(2, press)
    assert seen and not any(seen)
    assert sorted(statuses) in ([302, 302], [302, 422])
    [payment] = rows(app, Payment, Payment.account_id == account_id)
    assert payment.refunded_minor == 10000
    assert [r["amount"] for r in stripe_emulator.objects("refund")] == [10000]
    assert [n.total_minor for n in rows(app, Invoice, Invoice.kind == "credit_note")] == [10000]
