"""Issue #25 point 4: the chat product opens the portal for its customer, without a second
password (``POST /api/v1/portal-sessions``, then the single-use link)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from portal.infra.extensions import db
from portal.infra.models import PortalSession
from portal.rules import accounts
from tests.conftest import CSRF_RE, PASSWORD, at_once

TOKEN = "chat-service-token"
CHAT = "https://chat.example.com/app"


@pytest.fixture
def config_overrides():
    return {
        "ENTITLEMENTS_TOKENS": [TOKEN],
        "PORTAL_RETURN_URLS": [CHAT],
        "PUBLIC_URL": "https://portal.example.com",
        "CHAT_PRODUCT_NAME": "Czatownik",
    }


def customer(app, email: str = "anna@firma.example.com", confirmed: bool = True) -> int:
    with app.app_context():
        user = accounts.register_account(
            catalogue=app.extensions["pakiet.catalogue"],
            company="Firma",
            email=email,
            password=PASSWORD,
            language="en",
            now=dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC),
            confirmed=confirmed,
        )
        assert user.account_id is not None
        return user.account_id


def english(app):
    """A browser reading the portal in English (a cookie of the language switch)."""
    browser = app.test_client()
    browser.set_cookie("pakiet_lang", "en")
    return browser


def create(client, body, token: str | None = TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/api/v1/portal-sessions", json=body, headers=headers)


def path_of(response) -> str:
    url = response.json["url"]
    assert url.startswith("https://portal.example.com/portal-session/")
    return url.removeprefix("https://portal.example.com")


def post_from(client, path: str, page) -> object:
    """POST ``path`` with the CSRF token of ``page`` (every page carries one)."""
    token = CSRF_RE.search(page.get_data(as_text=True))
    assert token
    return client.post(path, data={"csrf_token": token.group(1)})


def open_and_continue(client, path: str):
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)
    token = CSRF_RE.search(page.get_data(as_text=True))
    assert token
    return client.post(path, data={"csrf_token": token.group(1)})


def test_a_link_signs_the_user_in_once_and_lands_on_the_chosen_page(app, client):
    account_id = customer(app)
    response = create(client, {"account": account_id, "page": "invoices", "return_url": CHAT})
    assert response.status_code == 201
    assert set(response.json) == {"id", "url", "expires_at"}
    assert response.headers["Cache-Control"] == "no-store"
    path = path_of(response)

    # Following the link (a scanner does) signs nobody in and spends nothing.
    browser = english(app)
    assert browser.get(path).status_code == 200
    assert browser.get("/package").status_code == 302  # to the log-in page

    landed = open_and_continue(browser, path)
    assert landed.status_code == 302 and landed.headers["Location"] == "/invoices"
    invoices = browser.get("/invoices")
    assert invoices.status_code == 200
    html = invoices.get_data(as_text=True)
    assert f'href="{CHAT}"' in html and "Back to Czatownik" in html

    # The token is stored only as its hash.
    token = path.rsplit("/", 1)[1]
    with app.app_context():
        row = db.session.scalar(select(PortalSession))
        assert row is not None and token not in (row.token_hash, row.public_id)
        assert row.used_at is not None

    # Used twice: a clear page, no log-in.
    again = english(app)
    second = again.get(path)
    assert second.status_code == 410
    assert "used already" in second.get_data(as_text=True)
    assert post_from(again, path, second).status_code == 410
    assert again.get("/package").status_code == 302


def test_the_landing_pages_and_no_return_url(app, client):
    account_id = customer(app)
    for page, target in (
        ("package", "/package"),
        ("checkout", "/package/edit"),
        (None, "/package"),
    ):
        body = {"account": account_id} if page is None else {"account": account_id, "page": page}
        browser = english(app)
        landed = open_and_continue(browser, path_of(create(client, body)))
        assert landed.headers["Location"] == target
        assert "Back to" not in browser.get("/package").get_data(as_text=True)


@pytest.mark.parametrize(
    "config_overrides", [{"ENTITLEMENTS_TOKENS": [TOKEN], "PORTAL_SESSION_MAX_AGE": 0}]
)
def test_an_expired_link_signs_nobody_in(app, client):
    account_id = customer(app)
    response = create(client, {"account": account_id})
    assert response.status_code == 201
    path = "/" + response.json["url"].split("://", 1)[1].split("/", 1)[1]
    browser = english(app)
    page = browser.get(path)
    assert page.status_code == 410 and "expired" in page.get_data(as_text=True)
    assert post_from(browser, path, page).status_code == 410
    assert browser.get("/package").status_code == 302


def test_a_link_of_a_user_whose_sessions_were_revoked_signs_nobody_in(app, client):
    account_id = customer(app)
    path = path_of(create(client, {"account": account_id}))
    with app.app_context():
        accounts.revoke_sessions(account_id=account_id)  # staff ended the sessions
        db.session.commit()
    browser = english(app)
    page = browser.get(path)
    assert page.status_code == 410 and "sessions have ended" in page.get_data(as_text=True)
    assert browser.get("/package").status_code == 302


def test_an_unknown_link_is_404_and_speaks_polish(app, client):
    customer(app)
    browser = app.test_client()
    browser.set_cookie("pakiet_lang", "pl")
    page = browser.get("/portal-session/not-a-real-token")
    assert page.status_code == 404
    assert "Ten link nie działa" in page.get_data(as_text=True)


def test_the_csrf_token_is_required(app, client):
    account_id = customer(app)
    path = path_of(create(client, {"account": account_id}))
    browser = english(app)
    browser.get(path)
    assert browser.post(path, data={}).status_code in (200, 400)
    assert browser.get("/package").status_code == 302
    # The link is still good: the refused POST spent nothing.
    assert open_and_continue(browser, path).status_code == 302


def test_the_api_refuses_bad_requests_and_stores_nothing(app, client):
    account_id = customer(app)
    unconfirmed = customer(app, email="b@firma.example.com", confirmed=False)
    cases = [
        (None, {"account": account_id}, 401, "unauthorized"),
        ("wrong", {"account": account_id}, 401, "unauthorized"),
        (TOKEN, {"account": "7"}, 422, "invalid_account"),
        (TOKEN, {"account": True}, 422, "invalid_account"),
        (TOKEN, {"account": account_id, "page": "admin"}, 422, "invalid_page"),
        (
            TOKEN,
            {"account": account_id, "return_url": "https://evil.example.com/app"},
            422,
            "return_url_not_allowed",
        ),
        (
            TOKEN,
            {"account": account_id, "return_url": "https://chat.example.com/apple"},
            422,
            "return_url_not_allowed",
        ),
        (
            TOKEN,
            {"account": account_id, "return_url": "http://chat.example.com/app"},
            422,
            "return_url_not_allowed",
        ),
        (
            TOKEN,
            {"account": account_id, "return_url": "https://u@chat.example.com/app"},
            422,
            "return_url_not_allowed",
        ),
        (
            TOKEN,
            {"account": account_id, "return_url": "javascript:alert(1)"},
            422,
            "return_url_not_allowed",
        ),
        (TOKEN, {"account": 99999}, 404, "not_found"),
        (TOKEN, {"account": 2**40}, 404, "not_found"),
        (TOKEN, {"account": unconfirmed}, 409, "no_user"),
    ]
    for token, body, status, code in cases:
        response = create(client, body, token=token)
        assert response.status_code == status, (body, response.json)
        assert response.json["error"]["code"] == code
        assert response.json["error"]["message"]
    not_json = client.post(
        "/api/v1/portal-sessions",
        data="account=1",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"},
    )
    assert not_json.status_code == 400 and not_json.json["error"]["code"] == "invalid_json"
    with app.app_context():
        assert db.session.scalar(select(PortalSession)) is None
    # A path below the allowed one is fine.
    ok = create(client, {"account": account_id, "return_url": CHAT + "/billing?x=1"})
    assert ok.status_code == 201


def test_a_customer_session_is_not_a_service_token(app, client, auth):
    account_id = customer(app)
    auth.login("anna@firma.example.com")
    assert create(client, {"account": account_id}, token=None).status_code == 401


def test_the_link_replaces_whoever_was_signed_in(app, client, auth):
    customer(app, email="other@firma.example.com")
    account_id = customer(app)
    auth.login("other@firma.example.com")
    path = path_of(create(app.test_client(), {"account": account_id}))
    open_and_continue(client, path)
    with app.app_context():
        row = db.session.scalar(select(PortalSession))
        assert row is not None and row.account_id == account_id
        user_id = row.user_id
    with client.session_transaction() as session:
        assert session["_user_id"].split(":")[0] == str(user_id)


def test_two_clicks_at_once_sign_in_once(app, client):
    account_id = customer(app)
    path = path_of(create(client, {"account": account_id}))
    browsers = [english(app) for _ in range(2)]
    tokens = []
    for browser in browsers:
        match = CSRF_RE.search(browser.get(path).get_data(as_text=True))
        assert match
        tokens.append(match.group(1))
    pending = list(zip(browsers, tokens, strict=True))

    def click() -> int:
        browser, token = pending.pop()
        return int(browser.post(path, data={"csrf_token": token}).status_code)

    assert sorted(at_once(2, click)) == [302, 410]
