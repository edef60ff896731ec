"""Security issue, point 6: a sign-up that does not tell whether an address is registered.

A new address and a registered one get the same answer (the same redirect and page); each
gets an e-mail: the new one a confirmation link, the registered one "you already have an
account". The new user logs in only after following the link (24 hours, single-use, a
button, not the GET, confirms)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select

from portal.infra.extensions import db
from portal.infra.models import Account, User
from tests.conftest import PASSWORD, Auth, csrf_token, decoded_subject, smtp_config


@pytest.fixture
def config_overrides(smtp):
    return smtp_config(smtp)


def _link(message) -> str:
    body = message.get_payload(decode=True).decode()
    return re.search(r"https?://[^/\s]+(/signup/confirm/\S+)", body).group(1)


def _without_csrf_token(page: str) -> str:
    """The page with its CSRF token (in the form and in hx-headers) replaced: the token
    carries the second it was signed in, so two pages a second apart differ only there."""
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    assert page.count(token) >= 2  # the form's field and the page's hx-headers
    return page.replace(token, "CSRF")


def _resend(client, address: str):
    token = csrf_token(client, "/signup/sent")
    return client.post("/signup/resend", data={"csrf_token": token, "email": address})


def test_the_answer_is_the_same_for_a_new_and_a_registered_address(app, client, auth, smtp):
    """Fails on the old code: a new address was signed in at once (a redirect to /package),
    a registered one was sent to /login."""
    auth.signup("taken@example.com")
    auth.logout()
    smtp.messages.clear()

    new = auth.signup("new@example.com", confirm=False)
    new_page = client.get(new.headers["Location"]).text
    taken = auth.signup("taken@example.com", company="Someone else", confirm=False)
    taken_page = client.get(taken.headers["Location"]).text

    assert (new.status_code, new.headers["Location"]) == (302, "/signup/sent")
    assert (taken.status_code, taken.headers["Location"]) == (302, "/signup/sent")
    assert _without_csrf_token(new_page) == _without_csrf_token(taken_page)
    assert "Sprawdź skrzynkę" in new_page
    assert client.get("/package").status_code == 302  # nobody is signed in

    by_address = {m["To"]: decoded_subject(m) for m in smtp.messages}
    assert by_address == {
        "new@example.com": "Potwierdź adres e-mail w Pakiecie",
        "taken@example.com": "Masz już konto w Pakiecie",
    }
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Account)) == 2


def test_the_link_of_the_email_confirms_with_a_button_and_logs_in(app, client, auth, smtp):
    auth.signup("new@example.com", confirm=False)
    [message] = smtp.messages
    path = _link(message)

    page = client.get(path)  # what a mail scanner does: it confirms nothing
    assert page.status_code == 200 and "Potwierdź i zaloguj się" in page.text
    assert "new@example.com" in page.text
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "new@example.com"))
        assert user.email_confirmed_at is None
    assert client.post(path, data={}).status_code == 400  # CSRF

    done = client.post(path, data={"csrf_token": csrf_token(client, path)})
    assert done.status_code == 302 and done.headers["Location"] == "/package"
    assert client.get("/package").status_code == 200
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "new@example.com"))
        assert user.email_confirmed_at is not None

    auth.logout()
    again = client.get(path)  # single-use
    assert again.status_code == 400 and "Ten link nie działa" in again.text
    assert auth.login("new@example.com").status_code == 302


def test_login_before_confirmation_is_refused_and_the_link_can_be_sent_again(client, auth, smtp):
    auth.signup("new@example.com", confirm=False)
    refused = auth.login("new@example.com")
    assert refused.status_code == 400
    assert "Najpierw potwierdź adres e-mail" in refused.text
    assert 'action="/signup/resend"' in refused.text
    assert client.get("/package").status_code == 302
    # A wrong password says nothing about the confirmation.
    wrong = auth.login("new@example.com", "wrong password 123")
    assert "Nieprawidłowy e-mail lub hasło." in wrong.text
    assert "potwierdź" not in wrong.text

    smtp.messages.clear()
    assert _resend(client, "new@example.com").headers["Location"] == "/signup/sent"
    assert _resend(client, "nobody@example.com").headers["Location"] == "/signup/sent"
    [message] = smtp.messages  # only the unconfirmed address gets one
    assert message["To"] == "new@example.com"
    path = _link(message)
    assert client.post(path, data={"csrf_token": csrf_token(client, path)}).status_code == 302
    assert client.get("/package").status_code == 200


def test_the_link_works_for_24_hours(client, auth, smtp, monkeypatch):
    issued = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    monkeypatch.setattr("portal.web.auth.utcnow", lambda: issued)
    auth.signup("new@example.com", confirm=False)
    path = _link(smtp.messages[-1])
    monkeypatch.setattr(
        "portal.web.auth.utcnow", lambda: issued + dt.timedelta(hours=24, seconds=1)
    )
    assert client.get(path).status_code == 400
    assert client.post(path, data={"csrf_token": csrf_token(client, "/login")}).status_code == 400
    monkeypatch.setattr("portal.web.auth.utcnow", lambda: issued + dt.timedelta(hours=23))
    assert client.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/signup/confirm/x", "/signup/confirm/e30.bad"])
def test_a_forged_link_is_refused(client, path):
    assert client.get(path).status_code == 400


def test_the_pages_and_email_in_english(client, auth, smtp):
    client.set_cookie("pakiet_lang", "en")
    response = auth.signup("new@example.com", confirm=False)
    assert "Check your inbox" in client.get(response.headers["Location"]).text
    assert decoded_subject(smtp.messages[-1]) == "Confirm your e-mail address for Pakiet"
    assert "Confirm and log in" in client.get(_link(smtp.messages[-1])).text


class TestLimits:
    @pytest.fixture
    def config_overrides(self, smtp):
        return {**smtp_config(smtp), "LOGIN_RATE_LIMIT": "3 per minute"}

    def test_one_address_cannot_be_flooded_from_many_clients(self, app, smtp):
        """Per address as well as per client: four clients, one address."""
        statuses = []
        for number in range(4):
            client = app.test_client()
            client.environ_base["REMOTE_ADDR"] = f"10.0.0.{number + 1}"
            statuses.append(Auth(client).signup("victim@example.com", confirm=False).status_code)
        assert statuses == [302, 302, 302, 429]
        assert len(smtp.messages) == 3

    def test_resending_is_rate_limited(self, client, auth):
        statuses = [_resend(client, f"r{i}@example.com").status_code for i in range(4)]
        assert statuses == [302, 302, 302, 429]


def test_confirmation_needs_the_password_it_was_sent_for(app, client, auth, smtp):
    """A new password (a reset) ends an unused confirmation link."""
    from portal.rules import accounts

    auth.signup("new@example.com", confirm=False)
    path = _link(smtp.messages[-1])
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "new@example.com"))
        user.password_hash = accounts.hash_password(PASSWORD + "!")
        db.session.commit()
    assert client.get(path).status_code == 400
