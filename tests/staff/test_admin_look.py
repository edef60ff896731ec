"""The back office belongs to the portal (issue 25, point 5): staff sign out and switch the
language there, lists show translated names instead of stored codes, moments in the portal's
time zone to the second, and the portal's look."""

from __future__ import annotations

import datetime as dt
import html
import re
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from portal.infra.extensions import db
from portal.infra.models import Account, AuditEntry
from tests.conftest import csrf_token
from tests.staff.test_admin import ADMIN_PAGES, login, text

RAW_CODES = {
    "free", "standard", "pro", "month", "year", "active", "past_due", "suspended", "pending",
    "paid", "failed", "refunded", "superseded", "invoice", "correction", "credit_note", "open",
    "answered", "closed", "valid", "invalid", "customer", "admin", "refund_request",
    "place_order", "auto_renew", "billing_info", "True", "False", "pl", "en", "stripe",
    "paypal",
}  # fmt: skip


def cells(page: str) -> list[str]:
    found = re.findall(r"<td[^>]*>(.*?)</td>", page, flags=re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in found]


def choose(client, language: str, next_path: str = "/admin/"):
    token = csrf_token(client, "/admin/")
    return client.post(
        "/language", data={"csrf_token": token, "language": language, "next": next_path}
    )


@pytest.mark.parametrize("language", ["pl", "en"])
def test_lists_show_names_not_stored_codes(app, client, auth, demo_accounts, language):
    login(auth, "admin")
    with app.app_context():  # an audit entry of a customer's own action
        db.session.add(
            AuditEntry(
                actor_email="standard@demo.example.com",
                actor_role="customer",
                action="refund_request",
                object_type="payment",
                object_id="x",
                created_at=dt.datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=dt.UTC),
            )
        )
        db.session.commit()
    assert choose(client, language).status_code == 302
    shown: list[str] = []
    for path in ADMIN_PAGES[1:-1]:
        page = text(client.get(path))
        assert not re.search(r"\d{2}:\d{2}:\d{2}\.\d", page), path  # no microseconds
        shown += cells(page)
    raw = sorted({cell for cell in shown if cell in RAW_CODES})
    assert raw == []
    expected = {
        "pl": ["Miesięczny", "Aktywny", "Prośba klienta o zwrot"],
        "en": ["Monthly", "Active", "Refund requested by the customer"],
    }[language]
    for name in expected:
        assert name in shown, name


def test_moments_are_in_the_portals_time_zone_to_the_second(app, client, auth, demo_accounts):
    login(auth, "admin")
    with app.app_context():
        account = db.session.scalar(select(Account).order_by(Account.id))
        account.created_at = dt.datetime(
            2026, 7, 1, 22, 30, 15, 987654, tzinfo=dt.UTC
        )  # UTC, summer time
        db.session.commit()
    page = text(client.get("/admin/accounts/"))
    moment = dt.datetime(2026, 7, 1, 22, 30, 15, tzinfo=dt.UTC)
    local = moment.astimezone(ZoneInfo("Europe/Warsaw"))
    assert local.strftime("%Y-%m-%d %H:%M:%S") == "2026-07-02 00:30:15"
    assert "2026-07-02 00:30:15" in cells(page)
    assert "2026-07-01 22:30:15" not in page and ".987654" not in page


def test_staff_switch_language_and_sign_out_from_the_admin(client, auth, demo_accounts):
    login(auth, "admin")
    page = text(client.get("/admin/subscriptions/"))
    assert 'action="/language"' in page and 'action="/logout"' in page
    response = choose(client, "pl", "/admin/subscriptions/")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/admin/subscriptions/")
    assert "Wyloguj" in text(client.get("/admin/subscriptions/"))
    response = choose(client, "en", "/admin/subscriptions/")
    assert "Log out" in text(client.get("/admin/subscriptions/"))
    token = csrf_token(client, "/admin/")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    response = client.get("/admin/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_the_admin_uses_the_portals_look(client, auth, demo_accounts):
    login(auth, "admin")
    page = text(client.get("/admin/"))
    assert "/assets/admin.css" in page
    with client.get("/assets/admin.css") as css:
        assert css.status_code == 200
        body = css.get_data(as_text=True)
    assert "#0172ad" in body and "system-ui" in body and "overflow-x: auto" in body


def test_the_dashboard_counts_failed_renewals_and_open_support_requests(
    app, client, auth, demo_accounts
):
    from portal.infra.models import Subscription, SubscriptionStatus, SupportThread

    login(auth, "admin")
    choose(client, "en")
    with app.app_context():
        retrying = db.session.scalar(
            select(func.count())
            .select_from(Subscription)
            .where(Subscription.status == SubscriptionStatus.PAST_DUE.value)
        )
        waiting = db.session.scalar(
            select(func.count()).select_from(SupportThread).where(SupportThread.status == "open")
        )
    page = text(client.get("/admin/"))
    failed = "failed renewal waiting" if retrying == 1 else "failed renewals waiting"
    requests = "support request waiting" if waiting == 1 else "support requests waiting"
    assert f"{retrying} {failed} for a retry" in page
    assert f"{waiting} {requests} for our answer" in page
    with app.app_context():  # one more past-due subscription shows at once
        sub = db.session.scalar(
            select(Subscription).where(Subscription.status == SubscriptionStatus.ACTIVE.value)
        )
        sub.status = SubscriptionStatus.PAST_DUE.value
        db.session.commit()
    failed = "failed renewal waiting" if retrying + 1 == 1 else "failed renewals waiting"
    assert f"{retrying + 1} {failed} for a retry" in text(client.get("/admin/"))


@pytest.mark.parametrize("language", ["pl", "en"])
def test_the_payments_list_names_the_provider_as_customers_see_it(
    app, client, auth, demo_accounts, language
):
    from portal.infra.models import Payment

    with app.app_context():
        account_id = db.session.scalar(select(func.min(Account.id)))
        for n, provider in enumerate(["stripe", "gone24"]):  # gone24: switched off since
            db.session.add(
                Payment(
                    public_id=f"p-admin-{n}",
                    account_id=account_id,
                    provider=provider,
                    idempotency_key=f"k-admin-{n}",
                    status="paid",
                    amount_minor=10947,
                    currency="PLN",
                )
            )
        db.session.commit()
    login(auth, "admin")
    assert choose(client, language).status_code == 302
    page = client.get("/admin/payments/").get_data(as_text=True)
    card = {"pl": "Karta płatnicza (Visa, Mastercard)", "en": "Card (Visa, Mastercard)"}
    assert f'<span title="stripe">{card[language]}</span>' in page
    shown = cells(page)
    assert "gone24" in shown and "stripe" not in shown
