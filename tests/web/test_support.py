"""Contact support (issue 8, R17): threads for paid accounts, e-mails both ways."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from portal.infra.extensions import db
from portal.infra.models import AuditEntry, Notice, SupportMessage, SupportThread, User, utcnow
from portal.rules import support
from tests.conftest import csrf_token, decoded_subject, smtp_config
from tests.web.conftest import login, text


@pytest.fixture
def config_overrides(smtp):
    return {**smtp_config(smtp), "SUPPORT_STAFF_EMAIL": "staff@pakiet.example.com"}


def deliver(app) -> None:
    with app.app_context():
        from portal.infra import mail

        mail.deliver_pending(now=utcnow() + dt.timedelta(seconds=1))


def threads(app) -> list[SupportThread]:
    with app.app_context():
        rows = db.session.scalars(select(SupportThread)).all()
        for row in rows:
            _ = row.messages
        db.session.expunge_all()
        return rows


def test_a_free_account_is_told_support_comes_with_paid_packages(app, client, auth, demo_accounts):
    login(auth, "free")
    page = text(client.get("/support"))
    assert "Obsługa klienta jest dostępna w płatnych pakietach" in page
    assert 'href="/package/edit"' in page
    response = client.post(
        "/support",
        data={"csrf_token": csrf_token(client, "/support"), "subject": "Hi", "body": "Help"},
    )
    assert response.status_code == 403
    assert threads(app) == []


def test_a_paid_account_opens_a_request_without_js_and_staff_get_an_e_mail(
    app, client, auth, demo_accounts, smtp
):
    login(auth, "standard")
    response = client.post(
        "/support",
        data={
            "csrf_token": csrf_token(client, "/support"),
            "subject": "Faktura",
            "body": "Proszę o <b>kontakt</b>.",
        },
    )
    assert response.status_code == 303
    [thread] = threads(app)
    assert response.headers["Location"] == f"/support/{thread.public_id}"
    page = text(client.get(response.headers["Location"]))
    assert "Proszę o &lt;b&gt;kontakt&lt;/b&gt;." in page  # shown as text
    deliver(app)
    [message] = smtp.messages
    assert message["To"] == "staff@pakiet.example.com"
    assert decoded_subject(message) == "New support request: Faktura"
    assert "Proszę o <b>kontakt</b>." in message.get_payload(decode=True).decode()


def test_htmx_sends_swap_the_list_and_the_thread(app, client, auth, demo_accounts):
    login(auth, "standard")
    token = csrf_token(client, "/support")
    response = client.post(
        "/support",
        data={"csrf_token": token, "subject": "Agenci", "body": "Ilu agentów?"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    body = text(response)
    assert body.startswith('<section id="support"') and "Agenci" in body
    [thread] = threads(app)
    reply = client.post(
        f"/support/{thread.public_id}",
        data={"csrf_token": token, "body": "Jeszcze jedno pytanie."},
        headers={"HX-Request": "true"},
    )
    assert reply.status_code == 200
    assert text(reply).startswith('<section id="thread"') and "Jeszcze jedno pytanie." in text(
        reply
    )
    assert [m.body for m in threads(app)[0].messages] == ["Ilu agentów?", "Jeszcze jedno pytanie."]


@pytest.mark.parametrize(
    ("subject", "body", "message"),
    [
        ("", "x", "Napisz wiadomość."),
        ("Temat", "   ", "Napisz wiadomość."),
        ("x" * 201, "ok", "To za długo"),
        ("Temat", "x" * 5001, "To za długo"),
    ],
)
def test_bad_requests_are_refused_with_a_message_and_nothing_stored(
    app, client, auth, demo_accounts, subject, body, message
):
    login(auth, "standard")
    response = client.post(
        "/support",
        data={"csrf_token": csrf_token(client, "/support"), "subject": subject, "body": body},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    assert message in text(response)
    assert threads(app) == []


def test_another_accounts_thread_is_not_found(app, client, auth, demo_accounts):
    login(auth, "standard")
    client.post(
        "/support",
        data={"csrf_token": csrf_token(client, "/support"), "subject": "Moje", "body": "Tajne"},
    )
    [thread] = threads(app)
    auth.logout()
    login(auth, "pro")
    assert client.get(f"/support/{thread.public_id}").status_code == 404
    token = csrf_token(client, "/support")
    response = client.post(f"/support/{thread.public_id}", data={"csrf_token": token, "body": "x"})
    assert response.status_code == 404
    assert len(threads(app)[0].messages) == 1


def test_a_staff_reply_shows_in_the_thread_and_is_e_mailed_to_the_customer(
    app, client, auth, demo_accounts, smtp
):
    login(auth, "pro")  # an English-speaking account
    client.post(
        "/support",
        data={"csrf_token": csrf_token(client, "/support"), "subject": "Seats", "body": "Help"},
    )
    [thread] = threads(app)
    with app.app_context():
        admin = db.session.scalar(select(User).where(User.email == "admin@demo.example.com"))
        row = db.session.get(SupportThread, thread.id)
        support.staff_reply(thread=row, staff=admin, body="Done: 8 seats.", now=utcnow())
    deliver(app)
    page = text(client.get(f"/support/{thread.public_id}"))
    assert "Done: 8 seats." in page and "Pakiet support" in page and "Answered" in page
    to_customer = [m for m in smtp.messages if m["To"] == "pro@demo.example.com"]
    assert [decoded_subject(m) for m in to_customer] == ["Re: Seats"]
    assert "Done: 8 seats." in to_customer[0].get_payload(decode=True).decode()
    with app.app_context():
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "support_reply"))
        assert entry is not None and entry.actor_email == "admin@demo.example.com"
        assert db.session.scalar(select(Notice).where(Notice.sent_at.is_(None))) is None
        assert len(db.session.scalars(select(SupportMessage)).all()) == 2
