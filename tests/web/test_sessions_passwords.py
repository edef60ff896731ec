"""Security issue, points 2-6: safe ``next``, revocable sessions, password reset and change,
no known secret in production, rate limits shared by the workers, a sign-up that does not
tell whether an address is registered."""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid

import pytest
import redis
from sqlalchemy import select

from portal import create_app
from portal.infra.config import InsecureConfig
from portal.infra.extensions import db
from portal.infra.models import AuditEntry, User
from tests.conftest import PASSWORD, Auth, base_config, csrf_token, decoded_subject, smtp_config

NEW_PASSWORD = "a brand new passphrase 42"
EVIL_NEXT = [
    "/%09/evil.example",
    "//evil.example",
    "/\\evil.example",
    "https://evil.example",
    "/%0d%0aLocation:%20https://evil.example",
    "/%0a/evil.example",
    "%2F%2Fevil.example",
    "/%7f/evil.example",
]


# -- 2. next= stays on this site -----------------------------------------------------------


@pytest.mark.parametrize("target", EVIL_NEXT)
def test_login_next_goes_nowhere_but_this_site(client, auth, target):
    """Fails on the old code for /%09/evil.example (a redirect to //evil.example in a
    browser) and the newline ones (500)."""
    auth.signup("a@example.com")
    auth.logout()
    token = csrf_token(client, "/login")
    response = client.post(
        f"/login?next={target}",
        data={"csrf_token": token, "email": "a@example.com", "password": PASSWORD},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/package"


@pytest.mark.parametrize("target", [*EVIL_NEXT, "/\t/evil.example", "/\n/evil.example"])
def test_language_switch_next_goes_nowhere_but_this_site(client, target):
    token = csrf_token(client, "/login")
    response = client.post(
        "/language", data={"csrf_token": token, "language": "en", "next": target}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"


def test_a_local_next_is_kept(client, auth):
    auth.signup("a@example.com")
    auth.logout()
    token = csrf_token(client, "/login")
    response = client.post(
        "/login?next=/invoices%3Fpage%3D2",
        data={"csrf_token": token, "email": "a@example.com", "password": PASSWORD},
    )
    assert response.headers["Location"] == "/invoices?page=2"


# -- 3. sessions can be revoked -----------------------------------------------------------


def _copy_session(source, target) -> None:
    cookie = source.get_cookie("session")
    assert cookie is not None
    target.set_cookie("session", cookie.value)


def test_a_copied_cookie_is_refused_after_logout(app, client, auth):
    """Fails on the old code: Flask's cookie session stayed valid after log-out."""
    auth.signup("a@example.com")
    thief = app.test_client()
    _copy_session(client, thief)
    assert thief.get("/package").status_code == 200
    auth.logout()
    assert thief.get("/package").status_code == 302
    assert client.get("/package").status_code == 302


def test_logout_ends_the_users_other_sessions(app, client, auth):
    auth.signup("a@example.com")
    other = app.test_client()
    Auth(other).login("a@example.com")
    auth.logout()
    assert other.get("/package").status_code == 302


def test_session_is_not_bound_to_a_forged_x_forwarded_for(app, client, auth):
    """Fails on the old code: Flask-Login bound the session to X-Forwarded-For, which any
    client sets, so a stolen cookie replayed with the victim's address in it passed."""
    client.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    auth.signup("a@example.com")
    thief = app.test_client()
    thief.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    _copy_session(client, thief)
    response = thief.get("/package", headers={"X-Forwarded-For": "198.51.100.7"})
    assert response.status_code == 302
    assert client.get("/package").status_code == 200


@pytest.mark.parametrize("config_overrides", [{"PROXY_HOPS": 1}])
def test_behind_a_proxy_the_forwarded_address_counts(app, client, auth, config_overrides):
    client.environ_base["REMOTE_ADDR"] = "10.0.0.1"  # the proxy
    headers = {"X-Forwarded-For": "198.51.100.7"}
    auth.signup("a@example.com")
    auth.logout()
    token = csrf_token(client, "/login")
    client.post(
        "/login",
        headers=headers,
        data={"csrf_token": token, "email": "a@example.com", "password": PASSWORD},
    )
    assert client.get("/package", headers=headers).status_code == 200
    moved = {**headers, "X-Forwarded-For": "203.0.113.9"}
    assert client.get("/package", headers=moved).status_code == 302


# -- 4. password reset and change ----------------------------------------------------------


@pytest.fixture
def config_overrides(smtp):
    return smtp_config(smtp)


def _link(message) -> str:
    body = message.get_payload(decode=True).decode()
    match = re.search(r"^http://127\.0\.0\.1:5000(/password/reset/\S+)", body, re.M)
    assert match, body
    return match.group(1)


def _forgot(client, email: str, host: str = "localhost"):
    page = client.get("/password/forgot", headers={"Host": host}).text
    token = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page).group(1)
    return client.post(
        "/password/forgot",
        data={"csrf_token": token, "email": email},
        headers={"Host": host},  # the link in the e-mail is on PUBLIC_URL, whatever this says
    )


def _reset(client, path: str, password: str = NEW_PASSWORD):
    page = client.get(path)
    match = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page.text)
    token = match.group(1) if match else csrf_token(client, "/login")
    return client.post(path, data={"csrf_token": token, "password": password, "confirm": password})


def test_login_page_links_to_forgotten_password(client):
    assert 'href="/password/forgot"' in client.get("/login").text


def test_password_reset_by_email_works_once(app, client, auth, smtp):
    """Fails on the old code (no such page)."""
    auth.signup("a@example.com")
    other = app.test_client()
    Auth(other).login("a@example.com")
    auth.logout()
    smtp.messages.clear()
    known = _forgot(client, "a@example.com", host="evil.example")
    unknown = _forgot(client, "nobody@example.com")
    assert known.status_code == unknown.status_code == 302
    assert known.headers["Location"] == unknown.headers["Location"] == "/login"
    [message] = smtp.messages  # none for the unknown address
    assert message["To"] == "a@example.com"
    assert decoded_subject(message) == "Ustaw nowe hasło do Pakietu"
    path = _link(message)

    weak = _reset(client, path, password="short")
    assert weak.status_code == 400 and "co najmniej 10 znaków" in weak.text
    done = _reset(client, path)
    assert done.status_code == 302 and done.headers["Location"] == "/login"
    assert auth.login("a@example.com").status_code == 400  # the old password
    assert auth.login("a@example.com", NEW_PASSWORD).status_code == 302
    auth.logout()

    again = client.get(path)
    assert again.status_code == 400 and "wygasł lub został już użyty" in again.text
    assert _reset(client, path, password="yet another passphrase 7").status_code == 400
    assert auth.login("a@example.com", NEW_PASSWORD).status_code == 302


def test_signing_up_with_a_registered_address_sends_the_owner_an_email(client, auth, smtp):
    """Fails on the old code (a field error on the page, no e-mail)."""
    auth.signup("a@example.com")
    auth.logout()
    smtp.messages.clear()
    response = auth.signup("A@example.com", company="Someone else")
    assert response.status_code == 302 and response.headers["Location"] == "/signup/sent"
    [message] = smtp.messages
    assert message["To"] == "a@example.com"
    assert decoded_subject(message) == "Masz już konto w Pakiecie"
    assert _reset(client, _link(message)).status_code == 302
    assert auth.login("a@example.com", NEW_PASSWORD).status_code == 302


def test_an_expired_reset_link_is_refused(app, client, auth, smtp, monkeypatch):
    issued = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    monkeypatch.setattr("portal.web.auth.utcnow", lambda: issued)
    auth.signup("a@example.com")
    auth.logout()
    smtp.messages.clear()
    _forgot(client, "a@example.com")
    path = _link(smtp.messages[-1])
    later = issued + dt.timedelta(hours=1, seconds=1)
    monkeypatch.setattr("portal.web.auth.utcnow", lambda: later)
    assert client.get(path).status_code == 400
    assert _reset(client, path).status_code == 400
    monkeypatch.setattr("portal.web.auth.utcnow", lambda: issued + dt.timedelta(minutes=59))
    assert client.get(path).status_code == 200


@pytest.mark.parametrize(
    "path", ["/password/reset/x", "/password/reset/e30.bad", "/password/reset/%00"]
)
def test_a_forged_reset_link_is_refused(client, path):
    assert client.get(path).status_code == 400


def test_password_change_needs_the_current_one_and_ends_other_sessions(app, client, auth):
    """Fails on the old code (no such page)."""
    auth.signup("a@example.com")
    assert 'href="/password"' in client.get("/billing").text
    other = app.test_client()
    Auth(other).login("a@example.com")
    token = csrf_token(client, "/password")
    wrong = client.post(
        "/password",
        data={
            "csrf_token": token,
            "current": "not my password",
            "password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
        },
    )
    assert wrong.status_code == 400 and "Obecne hasło jest nieprawidłowe." in wrong.text
    done = client.post(
        "/password",
        data={
            "csrf_token": token,
            "current": PASSWORD,
            "password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
        },
    )
    assert done.status_code == 302
    assert client.get("/package").status_code == 200  # this session goes on
    assert other.get("/package").status_code == 302  # the other one ended
    auth.logout()
    assert auth.login("a@example.com", NEW_PASSWORD).status_code == 302


def test_password_pages_in_english(client, auth):
    client.set_cookie("pakiet_lang", "en")
    assert "Forgot your password?" in client.get("/password/forgot").text
    auth.signup("a@example.com")
    assert "Current password" in client.get("/password").text


class TestPasswordLimits:
    @pytest.fixture
    def config_overrides(self, smtp):
        return {**smtp_config(smtp), "LOGIN_RATE_LIMIT": "3 per minute"}

    def test_forgotten_password_and_signup_are_rate_limited(self, client, auth):
        statuses = [_forgot(client, "x@example.com").status_code for _ in range(4)]
        assert statuses == [302, 302, 302, 429]
        signups = [auth.signup(f"s{i}@example.com", password="x").status_code for i in range(4)]
        assert signups == [400, 400, 400, 429]


# -- staff revoke sessions ----------------------------------------------------------------


def test_staff_revoke_an_accounts_sessions(app, client, auth, catalogue):
    from portal import demo

    with app.app_context():
        demo.load(catalogue, today=dt.date(2026, 11, 26))
        customer = db.session.scalar(select(User).where(User.email == "standard@demo.example.com"))
        account_id = customer.account_id
    victim = app.test_client()
    Auth(victim).login("standard@demo.example.com", demo.PASSWORD)
    assert victim.get("/package").status_code == 200

    auth.login("admin@demo.example.com", demo.PASSWORD)
    path = f"/admin/actions/account/{account_id}/sessions"
    assert path in client.get(f"/admin/actions/account/{account_id}").text
    confirm = client.get(path)
    assert confirm.status_code == 200
    assert client.post(path, data={}).status_code == 400  # CSRF
    assert victim.get("/package").status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', confirm.text).group(1)
    done = client.post(path, data={"csrf_token": token})
    assert done.status_code == 302
    assert victim.get("/package").status_code == 302
    assert client.get("/admin/").status_code == 200  # staff's own session goes on
    with app.app_context():
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "revoke_sessions"))
        assert entry is not None and entry.account_id == account_id
        assert entry.actor_email == "admin@demo.example.com"


# -- 5. no known secret in production ------------------------------------------------------


@pytest.mark.parametrize("secret", ["dev-only-secret-change-me", "short", "x" * 31, "", None])
def test_production_refuses_a_known_or_short_secret(database_url, secret):
    """Fails on the old code (it started with the shipped key)."""
    config = base_config(database_url, DEVELOPMENT=False, SECRET_KEY=secret)
    with pytest.raises(InsecureConfig) as excinfo:
        create_app(config)
    assert "PAKIET_SECRET_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')" in str(
        excinfo.value
    )


def test_production_starts_with_a_real_secret_and_development_with_any(database_url):
    for config in (
        base_config(database_url, DEVELOPMENT=False, SECRET_KEY="k" * 32),
        base_config(database_url, DEVELOPMENT=True, SECRET_KEY="dev-only-secret-change-me"),
    ):
        app = create_app(config)
        with app.app_context():
            db.engine.dispose()


def test_the_environment_switches_development_mode(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("PAKIET_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("PAKIET_DATABASE_URL", database_url)
    monkeypatch.delenv("PAKIET_SECRET_KEY", raising=False)
    monkeypatch.delenv("PAKIET_DEVELOPMENT", raising=False)
    with pytest.raises(InsecureConfig):
        create_app()
    monkeypatch.setenv("PAKIET_DEVELOPMENT", "1")
    app = create_app()
    with app.app_context():
        db.engine.dispose()


# -- 6. limits shared by all workers ------------------------------------------------------


def test_production_warns_about_per_process_limits(database_url, caplog):
    """Fails on the old code (no warning)."""
    config = base_config(database_url, DEVELOPMENT=False, SECRET_KEY="k" * 32)
    with caplog.at_level(logging.WARNING):
        app = create_app(config)
    with app.app_context():
        db.engine.dispose()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("RATELIMIT_STORAGE_URI" in m and "redis://127.0.0.1:6379" in m for m in warnings), (
        warnings
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        app = create_app({**config, "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/15"})
    with app.app_context():
        db.engine.dispose()
    assert not [r for r in caplog.records if "RATELIMIT_STORAGE_URI" in r.getMessage()]


def test_two_workers_share_the_login_limit_through_redis(database_url):
    """Two app instances (two workers) on one Redis: the second refuses once the limit
    was reached through the first. Fails with memory:// (each counts alone)."""
    # A client address of its own: no other run on this Redis counts with it.
    address = "fd00::" + ":".join(uuid.uuid4().hex[i : i + 4] for i in range(0, 16, 4))
    config = base_config(
        database_url,
        LOGIN_RATE_LIMIT="3 per minute",
        RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379/15",
    )
    # The extension's storage is set up per app (the worker's start-up): with memory://
    # the second worker would start counting from zero.
    apps = [create_app(config)]
    try:
        one = Auth(apps[0].test_client())
        one.client.environ_base["REMOTE_ADDR"] = address
        assert [one.login("a@example.com", "wrong").status_code for _ in range(3)] == [400] * 3
        apps.append(create_app(config))
        two = Auth(apps[1].test_client())
        two.client.environ_base["REMOTE_ADDR"] = address
        assert two.login("a@example.com", "wrong").status_code == 429
    finally:
        keys = redis.Redis.from_url("redis://127.0.0.1:6379/15")
        for key in keys.scan_iter(f"*{address}*"):
            keys.delete(key)
        for app in apps:
            with app.app_context():
                db.engine.dispose()
