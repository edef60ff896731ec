"""Bounded input, errors that do not cascade, and cache headers (security issue, points 7, 8
and 10): too-large bodies, echoed values, huge ids, odd Host headers, support subjects, a
database lost in the middle of a request, and what signed-in pages let caches keep."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event, func, select

from portal.infra.extensions import db
from portal.infra.models import Notice, SupportThread
from tests.conftest import csrf_token, decoded_subject, smtp_config
from tests.web.conftest import login, text

HUGE_IDS = ["2147483648", "99999999999999999999"]


@pytest.fixture
def config_overrides(smtp) -> dict[str, Any]:
    return {
        **smtp_config(smtp),
        "SUPPORT_STAFF_EMAIL": "staff@pakiet.example.com",
        "ENTITLEMENTS_TOKENS": ["chat-token"],
    }


# -- 7. bounded input ------------------------------------------------------------------------


def test_a_too_large_form_body_is_413_with_the_translated_page(app, client):
    token = csrf_token(client, "/login")
    body = {"csrf_token": token, "email": "a@example.com", "password": "x" * 600_000}
    response = client.post("/login", data=body, headers={"Accept-Language": "pl"})
    assert response.status_code == 413
    assert "Błąd 413" in text(response) and "za duże" in text(response)
    english = client.post("/login", data=body, headers={"Accept-Language": "en"})
    assert english.status_code == 413 and "too large" in text(english)


def test_a_refused_agents_value_is_not_echoed_in_full(app, client, auth, demo_accounts):
    login(auth, "standard")
    token = csrf_token(client, "/package/edit")
    value = "7" * 100_000
    response = client.post(
        "/package/summary",
        data={
            "csrf_token": token,
            "package": "standard",
            "period": "month",
            "agents": value,
            "conversations": "500",
            "currency": "PLN",
        },
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    assert "Enter the number of agents" in text(response) or "liczbę agentów" in text(response)
    assert "7" * 1_000 not in text(response)
    page = client.post(
        "/package/edit",
        data={"csrf_token": token, "package": "standard", "period": "month", "agents": value},
    )
    assert page.status_code < 500 and "7" * 1_000 not in text(page)


def test_a_refused_billing_field_is_not_echoed_in_full(app, client, auth, demo_accounts):
    login(auth, "standard")
    response = client.post(
        "/billing",
        data={
            "csrf_token": csrf_token(client, "/billing"),
            "company_name": "Q" * 100_000,
            "street": "ul. Długa 5",
            "city": "Gdańsk",
            "country": "PL",
            "invoice_email": "faktury@szprycha.pl",
        },
    )
    assert response.status_code == 400
    assert "Q" * 1_000 not in text(response)


@pytest.mark.parametrize("huge", HUGE_IDS)
def test_huge_integer_ids_are_not_found(app, client, auth, demo_accounts, huge):
    assert (
        client.get(
            f"/api/v1/accounts/{huge}/entitlements",
            headers={"Authorization": "Bearer chat-token"},
        ).status_code
        == 404
    )
    login(auth, "admin")
    for path in (
        f"/admin/account/{huge}",
        f"/admin/subscription/{huge}/extend",
        f"/admin/payment/{huge}/refund",
        f"/admin/invoice/{huge}/resend",
        f"/admin/invoice/{huge}.pdf",
        f"/admin/thread/{huge}",
    ):
        response = client.get(path, headers={"Accept-Language": "pl"})
        assert response.status_code == 404, path


def test_a_malformed_host_is_400_with_the_error_page(app, client):
    for host in ("a..b", ".example.com", "-a.example.com", "a.example.com:port"):
        response = client.get("/login", headers={"Host": host, "Accept-Language": "en"})
        assert response.status_code == 400, host
        assert "Error 400" in text(response)
    assert client.get("/login", headers={"Host": "portal.example.com:8080"}).status_code == 200
    assert client.get("/login", headers={"Host": "127.0.0.1"}).status_code == 200
    assert client.get("/login", headers={"Host": "[::1]:5000"}).status_code == 200


def test_a_newline_in_a_support_subject_cannot_add_lines_to_the_staff_e_mail(
    app, client, auth, demo_accounts, smtp
):
    login(auth, "standard")
    response = client.post(
        "/support",
        data={
            "csrf_token": csrf_token(client, "/support"),
            "subject": "Faktura\r\nBcc: evil@example.com\n\nFake body\u2028X",
            "body": "Proszę o kontakt.",
        },
    )
    assert response.status_code == 303
    with app.app_context():
        subject = db.session.scalar(select(SupportThread.subject))
    assert subject == "Faktura Bcc: evil@example.com Fake body X"
    with app.app_context():
        from portal.infra import mail
        from portal.infra.models import utcnow

        mail.deliver_pending(now=utcnow() + dt.timedelta(seconds=1))
        assert db.session.scalar(select(func.count()).select_from(Notice)) >= 0
    [message] = smtp.messages
    assert message["Bcc"] is None
    assert decoded_subject(message) == f"New support request: {subject}"
    body = message.get_payload(decode=True).decode()
    assert "\nBcc:" not in body and "\nFake body" not in body


def test_a_subject_of_line_breaks_only_is_refused_with_a_message(app, client, auth, demo_accounts):
    login(auth, "standard")
    response = client.post(
        "/support",
        data={"csrf_token": csrf_token(client, "/support"), "subject": "\r\n\n", "body": "Hej"},
    )
    assert response.status_code == 422
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SupportThread)) == 0


# -- 8. errors never cascade -----------------------------------------------------------------


@pytest.fixture
def database_lost(app) -> Iterator[Any]:
    """``lose()`` makes every statement from then on fail as a dead connection does."""
    state = {"lost": False}

    def fail(conn, cursor, statement, parameters, context, executemany):
        if state["lost"]:
            raise sa.exc.OperationalError(statement, parameters, Exception("connection lost"))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", fail)

    class Switch:
        def lose(self) -> None:
            state["lost"] = True

    yield Switch()
    state["lost"] = False
    event.remove(engine, "before_cursor_execute", fail)


@pytest.mark.parametrize("config_overrides", [{"PROPAGATE_EXCEPTIONS": False}])
@pytest.mark.parametrize(
    ("language", "words"), [("pl", "Coś poszło nie tak"), ("en", "went wrong")]
)
def test_the_database_lost_mid_request_still_gives_the_translated_error_page(
    app, client, auth, demo_accounts, database_lost, language, words, config_overrides
):
    login(auth, "standard")
    database_lost.lose()
    response = client.get("/package", headers={"Accept-Language": language})
    assert response.status_code == 500
    assert words in text(response)
    assert "<html" in text(response)


@pytest.mark.parametrize("config_overrides", [{"PROPAGATE_EXCEPTIONS": False}])
def test_the_database_lost_inside_a_view_still_gives_the_error_page(
    app, client, auth, demo_accounts, database_lost, monkeypatch, config_overrides
):
    """The user is loaded, the view then commits and reads: the page still renders."""
    login(auth, "standard")

    def broken(*args: Any, **kwargs: Any) -> Any:
        db.session.commit()  # what a view does before it reads again
        database_lost.lose()
        db.session.execute(sa.text("SELECT 1"))

    monkeypatch.setattr("portal.web.invoices.einvoice_texts", broken)
    response = client.get("/invoices", headers={"Accept-Language": "pl"})
    assert response.status_code == 500
    assert "Coś poszło nie tak" in text(response)


# -- 10. cache headers -----------------------------------------------------------------------


def test_signed_in_pages_are_not_stored_and_assets_stay_cacheable(app, client, auth, demo_accounts):
    login(auth, "standard")
    for path in ("/package", "/invoices", "/billing", "/package/edit", "/support"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["Cache-Control"] == "no-store", path
    page = text(client.get("/package"))
    asset = page.split('href="/assets/', 1)[1].split('"', 1)[0]
    with client.get(f"/assets/{asset}") as cached:
        assert cached.status_code == 200
        assert "no-store" not in cached.headers.get("Cache-Control", "")
    auth.logout()
    login(auth, "admin")
    admin = client.get("/admin/")
    assert admin.status_code == 200 and admin.headers["Cache-Control"] == "no-store"


def test_a_visitor_s_log_in_page_is_not_marked_private(app, client):
    assert "no-store" not in client.get("/login").headers.get("Cache-Control", "")
