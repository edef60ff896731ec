"""Access (issue 10.4): other accounts' ids, CSRF on every POST, the session at log-in,
the log-in rate limit, cookie flags, security headers on every page, and no secrets in
the logs.

Admin and support routes are added once issue 8 lands (see docs/reliability.md).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from portal import demo
from portal.extensions import db
from portal.models import Invoice, Order, Payment, ProviderEvent
from tests.conftest import PASSWORD, Auth, csrf_token
from tests.test_payments import (
    back_from_bank,
    bank_token,
    config_overrides,
    place_and_pay,
    standard,
    transfer24,
)

__all__ = ["config_overrides", "standard", "transfer24"]  # fixtures reused

# Every POST route of the portal with a body it would accept (but for the CSRF token).
POSTS: list[tuple[str, dict[str, str]]] = [
    ("/login", {"email": "standard@demo.example.com", "password": demo.PASSWORD}),
    ("/signup", {"company": "A", "email": "new@example.com", "password": PASSWORD}),
    ("/language", {"language": "en"}),
    ("/logout", {}),
    ("/billing", {"company": "X", "country": "PL", "invoice_email": "x@example.com"}),
    ("/billing/vat-check", {"country": "PL", "vat_id": "PL5260250274"}),
    ("/package/summary", {"package": "pro", "period": "month", "agents": "4"}),
    ("/package/edit", {"package": "pro", "period": "month", "agents": "4", "action": "pay"}),
    ("/payment-methods/auto-renew", {"auto_renew": "off"}),
    ("/payment-methods/new", {"provider": "transfer24"}),
]


def text(response) -> str:
    return response.get_data(as_text=True).replace("\xa0", " ")


def bought(app: Flask, client: FlaskClient, transfer24: Any) -> dict[str, str]:
    """The standard account's paid order, payment and invoice: their public ids."""
    back_from_bank(client, transfer24, bank_token(place_and_pay(client, agents="5")))
    with app.app_context():
        payment = db.session.scalar(select(Payment))
        order = db.session.get(Order, payment.order_id)
        invoice = db.session.scalar(select(Invoice))
        ids = {"payment": payment.public_id, "order": order.public_id, "invoice": invoice.public_id}
        db.session.remove()
    return ids


def counts(app: Flask) -> tuple[int, ...]:
    with app.app_context():
        result = tuple(
            int(db.session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Order, Payment, Invoice, ProviderEvent)
        )
        db.session.remove()
        return result


# -- another account's ids ------------------------------------------------------------------


def test_every_customer_route_with_another_accounts_ids_is_not_found(
    app, standard, auth, transfer24
):
    ids = bought(app, standard, transfer24)
    auth.logout()
    assert auth.login("pro@demo.example.com", demo.PASSWORD).status_code == 302
    before = counts(app)
    token = csrf_token(standard, "/package")
    gets = [
        f"/package/orders/{ids['order']}",
        f"/invoices/{ids['invoice']}.pdf",
        f"/invoices/{ids['invoice']}.xml",
        f"/payments/{ids['payment']}/return",
        f"/payments/{ids['payment']}/cancel",
        f"/refunds/{ids['payment']}",
    ]
    posts = [
        (f"/package/orders/{ids['order']}/pay", {"provider": "transfer24"}),
        (f"/invoices/{ids['invoice']}/note", {"note": "mine now"}),
        (f"/refunds/{ids['payment']}", {}),
    ]
    for path in gets:
        assert standard.get(path).status_code == 404, path
    for path, data in posts:
        assert standard.post(path, data={"csrf_token": token, **data}).status_code == 404, path
    assert counts(app) == before
    with app.app_context():
        assert db.session.scalar(select(Invoice.note)) is None
        assert db.session.scalar(select(Payment.status)) == "paid"
        db.session.remove()
    # The owner still sees them.
    auth.logout()
    auth.login("standard@demo.example.com", demo.PASSWORD)
    assert standard.get(f"/invoices/{ids['invoice']}.pdf").status_code == 200


def test_every_customer_page_needs_a_login(client):
    for path in ["/package", "/package/edit", "/billing", "/invoices", "/payment-methods"]:
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path


# -- CSRF -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "data"), POSTS, ids=[p for p, _ in POSTS])
@pytest.mark.parametrize("token", ["none", "wrong", "another session's"])
def test_every_post_without_or_with_a_wrong_csrf_token_is_refused(
    app, standard, client, path, data, token
):
    if token == "wrong":
        data = {**data, "csrf_token": "IjBhZGMifQ.forged.token"}
    elif token == "another session's":
        other = app.test_client()
        data = {**data, "csrf_token": csrf_token(other, "/login")}
    before = counts(app)
    response = standard.post(path, data=data)
    assert response.status_code == 400, (path, response.status_code)
    assert "Ten formularz wygasł" in text(response)
    assert counts(app) == before
    assert standard.get("/package").status_code == 200  # still logged in, nothing changed


def test_invoice_note_and_refund_posts_need_the_csrf_token(app, standard, transfer24):
    ids = bought(app, standard, transfer24)
    for path in [f"/invoices/{ids['invoice']}/note", f"/refunds/{ids['payment']}"]:
        assert standard.post(path, data={"note": "x"}).status_code == 400, path
    pay = f"/package/orders/{ids['order']}/pay"
    assert standard.post(pay, data={"provider": "transfer24"}).status_code == 400
    with app.app_context():
        assert db.session.scalar(select(Invoice.note)) is None
        assert db.session.scalar(select(Payment.status)) == "paid"
        db.session.remove()


# -- the session ----------------------------------------------------------------------------


def test_log_in_starts_a_new_session_so_a_planted_one_is_useless(app, client, auth):
    auth.signup("a@example.com")
    auth.logout()
    planted = csrf_token(client, "/login")  # what an attacker could know before log-in
    cookie_before = client.get_cookie("session")
    auth.login("a@example.com")
    assert client.get_cookie("session").value != cookie_before.value
    response = client.post("/language", data={"csrf_token": planted, "language": "en"})
    assert response.status_code == 400  # the pre-login session's token died with it


@pytest.mark.parametrize("config_overrides", [{"LOGIN_RATE_LIMIT": "3 per minute"}])
def test_log_in_is_rate_limited(app, client, auth, config_overrides):
    auth.signup("a@example.com")
    auth.logout()
    codes = [auth.login("a@example.com", "wrong password").status_code for _ in range(3)]
    assert 429 not in codes
    refused = auth.login("a@example.com")  # even the right password waits
    assert refused.status_code == 429
    assert "Zbyt wiele prób" in text(refused)


@pytest.mark.parametrize(
    "config_overrides",
    [{"SESSION_COOKIE_SECURE": True, "REMEMBER_COOKIE_SECURE": True}],
)
def test_cookies_are_secure_http_only_and_same_site(app, config_overrides):
    client = app.test_client()
    auth = Auth(client)
    client.get("/login", base_url="https://portal.test")
    auth.client.environ_base["wsgi.url_scheme"] = "https"
    token = csrf_token(client, "/signup")
    response = client.post(
        "/signup",
        base_url="https://portal.test",
        data={
            "csrf_token": token,
            "company": "A",
            "email": "a@example.com",
            "password": PASSWORD,
            "confirm": PASSWORD,
        },
    )
    cookies = response.headers.getlist("Set-Cookie")
    session = [c for c in cookies if c.startswith("session=")]
    assert session, cookies
    for cookie in session:
        flags = {part.strip().lower() for part in cookie.split(";")}
        assert "secure" in flags and "httponly" in flags and "samesite=lax" in flags, cookie


def test_the_default_config_marks_cookies_http_only_and_same_site(app):
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert app.config["REMEMBER_COOKIE_HTTPONLY"] is True


# -- headers on every page ------------------------------------------------------------------


def pages(app: Flask, ids: dict[str, str]) -> list[str]:
    """Every GET route, with the ids of the logged-in account's rows filled in."""
    values = {"public_id": ids["order"], "payment_id": ids["payment"], "name": "htmx.min.js"}
    out = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint in ("static", "entitlements.show"):
            continue
        path = rule.rule
        if "invoices/" in path:
            path = path.replace("<public_id>", ids["invoice"])
        if "refunds/" in path:
            path = path.replace("<public_id>", ids["payment"])
        for name, value in values.items():
            path = path.replace(f"<{name}>", value)
        path = re.sub(r"<(?:[a-z_]+:)?provider_name>", "transfer24", path)
        out.append(path)
    return out


def check_headers(response, *, https: bool) -> None:
    csp = response.headers.get("Content-Security-Policy", "")
    directives = dict(
        (part.strip().split(" ", 1) + [""])[:2] for part in csp.split(";") if part.strip()
    )
    assert "'unsafe-inline'" not in directives.get("script-src", "x"), csp
    assert directives.get("script-src", "").strip() == "'self'", csp
    assert directives.get("frame-ancestors", "").strip() == "'none'", csp
    assert directives.get("object-src", "").strip() == "'none'", csp
    assert response.headers.get("Referrer-Policy") in ("same-origin", "no-referrer")
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    hsts = response.headers.get("Strict-Transport-Security")
    if https:
        assert hsts is not None and int(re.search(r"max-age=(\d+)", hsts).group(1)) >= 31536000
    else:
        assert hsts is None  # HSTS only behind HTTPS


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_security_headers_on_every_page_and_no_inline_script(app, standard, transfer24, https):
    ids = bought(app, standard, transfer24)
    base = "https://portal.test" if https else "http://localhost"
    seen = 0
    for path in pages(app, ids) + ["/no-such-page", "/login?next=x"]:
        response = standard.get(path, base_url=base)
        check_headers(response, https=https)
        if response.mimetype == "text/html":
            body = text(response)
            assert not INLINE_SCRIPT.search(body), path
            assert not INLINE_HANDLER.search(body), path
        response.close()  # files (assets, PDFs) are streamed
        seen += 1
    error = standard.post("/language", data={}, base_url=base)  # a 400 page too
    check_headers(error, https=https)
    assert seen >= 15


# -- logs -----------------------------------------------------------------------------------


def test_no_secret_token_or_card_data_in_the_logs(app, standard, auth, transfer24, caplog):
    caplog.set_level(logging.DEBUG)
    ids = bought(app, standard, transfer24)
    standard.post("/language", data={"csrf_token": "forged", "language": "en"})
    token = csrf_token(standard, "/package")
    standard.post(f"/invoices/{ids['invoice']}/note", data={"csrf_token": token, "note": "n"})
    auth.logout()
    auth.login("standard@demo.example.com", "wrong password 4242424242424242")
    auth.login("standard@demo.example.com", demo.PASSWORD)
    session_cookie = standard.get_cookie("session").value
    logged = "\n".join(
        [record.getMessage() for record in caplog.records]
        + [str(record.args) for record in caplog.records]
        + [caplog.text]
    )
    secrets = {
        "the password": demo.PASSWORD,
        "a password tried": "wrong password",
        "a card number": "4242424242424242",
        "the CSRF token": token,
        "the session cookie": session_cookie,
        "the app secret": app.config["SECRET_KEY"],
        "the provider's API key": "t24-key",
        "the webhook secret": "t24-secret",
    }
    for what, value in secrets.items():
        assert value not in logged, f"{what} is in the logs"
    assert caplog.records  # the flow did log something, so the scan saw real output
