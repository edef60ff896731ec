"""Sign-up, log-in, log-out: the happy paths and the bad input of issue 2."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from portal.infra.extensions import db
from portal.infra.models import Account, BillingInfo, Subscription, User
from tests.conftest import PASSWORD, csrf_token


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def test_signup_creates_free_account_and_logs_in(app, client, auth):
    response = auth.signup("Owner@Example.com", company="Kwiaciarnia Bratek")
    assert response.status_code == 302
    page = client.get("/package").get_data(as_text=True)
    assert "Free" in page
    with app.app_context():
        user = db.session.scalar(select(User))
        assert user.email == "owner@example.com"  # stored lower-case
        assert user.password_hash.startswith("pbkdf2:sha256:1000$")  # the suite's fast hash
        assert user.account.name == "Kwiaciarnia Bratek"
        assert user.account.billing_info.invoice_email == "owner@example.com"
        sub = user.account.subscription
        assert (sub.package, sub.agents, sub.conversations, sub.currency) == ("free", 3, 0, None)


@pytest.mark.parametrize(
    ("email", "password", "confirm", "message"),
    [
        ("not-an-email", PASSWORD, PASSWORD, "Podaj prawidłowy adres e-mail."),
        ("a@example.com", "short", "short", "Wybierz hasło o długości co najmniej 10 znaków"),
        ("a@example.com", "1234567890", "1234567890", "nie jest łatwe do odgadnięcia"),
        ("a@example.com", "aaaaaaaaaaaa", "aaaaaaaaaaaa", "nie jest łatwe do odgadnięcia"),
        ("a@example.com", PASSWORD, PASSWORD + "x", "Hasła nie są takie same."),
        ("", PASSWORD, PASSWORD, "To pole jest wymagane."),
    ],
    ids=["malformed-email", "short", "common", "repetitive", "mismatch", "missing"],
)
def test_signup_rejects_bad_input_and_writes_nothing(
    app, client, email, password, confirm, message
):
    token = csrf_token(client, "/signup")
    response = client.post(
        "/signup",
        data={
            "csrf_token": token,
            "company": "Acme",
            "email": email,
            "password": password,
            "confirm": confirm,
        },
    )
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert count(app, Account) == count(app, User) == count(app, Subscription) == 0


def test_signup_with_taken_email_is_refused_without_saying_so(app, client, auth):
    """Security issue, point 6: no "already exists" on the page; the owner of the address
    learns it by e-mail. Fails on the old code (a field error)."""
    auth.signup("taken@example.com")
    auth.logout()
    response = auth.signup("TAKEN@example.com", company="Other")
    assert response.status_code == 302 and response.headers["Location"] == "/signup/sent"
    page = client.get("/signup/sent").get_data(as_text=True)
    assert "Wysłaliśmy Ci e-mail" in page
    assert "już istnieje" not in page
    assert count(app, Account) == 1
    assert count(app, BillingInfo) == 1


def test_wrong_login_does_not_reveal_whether_the_email_exists(client, auth):
    auth.signup("known@example.com")
    auth.logout()
    wrong_password = auth.login("known@example.com", "wrong password 123")
    unknown_email = auth.login("nobody@example.com", "wrong password 123")
    assert wrong_password.status_code == unknown_email.status_code == 400
    for response in (wrong_password, unknown_email):
        assert "Nieprawidłowy e-mail lub hasło." in response.get_data(as_text=True)
    assert client.get("/package").status_code == 302


def test_login_renews_the_session(client, auth):
    auth.signup("a@example.com")
    auth.logout()
    client.get("/login")
    before = client.get_cookie("session")
    auth.login("a@example.com")
    after = client.get_cookie("session")
    assert before is not None and after is not None and before.value != after.value
    assert client.get("/package").status_code == 200


def test_logout_requires_post_with_csrf(client, auth):
    auth.signup("a@example.com")
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400  # no CSRF token
    assert client.get("/package").status_code == 200
    auth.logout()
    assert client.get("/package").status_code == 302


def test_every_post_without_csrf_is_refused(client):
    for path, data in [
        ("/login", {"email": "a@example.com", "password": PASSWORD}),
        ("/signup", {"company": "A", "email": "a@example.com", "password": PASSWORD}),
        ("/language", {"language": "en"}),
    ]:
        response = client.post(path, data=data)
        assert response.status_code == 400, path
        assert "Ten formularz wygasł" in response.get_data(as_text=True)


def test_login_redirects_only_to_local_pages(client, auth):
    auth.signup("a@example.com")
    auth.logout()
    token = csrf_token(client, "/login")
    response = client.post(
        "/login?next=https://evil.example/",
        data={"csrf_token": token, "email": "a@example.com", "password": PASSWORD},
    )
    assert response.headers["Location"] == "/package"


@pytest.fixture
def config_overrides():
    return {}


class TestRateLimit:
    @pytest.fixture
    def config_overrides(self):
        return {"LOGIN_RATE_LIMIT": "3 per minute"}

    def test_login_attempts_are_rate_limited(self, client, auth):
        statuses = [auth.login("a@example.com", "wrong password 1").status_code for _ in range(4)]
        assert statuses == [400, 400, 400, 429]
        assert "Zbyt wiele prób" in auth.login("a@example.com").get_data(as_text=True)


def test_staff_land_on_the_admin_dashboard(app, client, auth, catalogue):
    """Issue 20: logging in as staff used to land on a 404 whose link led to the 404 again."""
    from portal import demo

    with app.app_context():
        demo.load(catalogue, today=dt.date(2026, 11, 26))
    response = auth.login("admin@demo.example.com", demo.PASSWORD)
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert client.get("/").headers["Location"] == "/admin/"
    assert client.get("/login").headers["Location"] == "/admin/"  # already signed in
    missing = client.get("/package")  # a customer page: staff have no account
    assert missing.status_code == 404
    page = missing.get_data(as_text=True)
    assert 'href="/admin/"' in page and 'href="/package"' not in page.split("<main", 1)[1]


@pytest.mark.parametrize("config_overrides", [{"PASSWORD_HASH_METHOD": None}])
def test_passwords_are_hashed_with_scrypt_unless_configured(app, client, auth, config_overrides):
    assert auth.signup("owner@example.com").status_code == 302
    with app.app_context():
        assert db.session.scalar(select(User.password_hash)).startswith("scrypt:")
    auth.logout()
    assert auth.login("owner@example.com").status_code == 302
