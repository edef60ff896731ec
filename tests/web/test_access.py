"""Access (issue 10.4): other accounts' ids, CSRF on every POST, the session at log-in,
the log-in rate limit, cookie flags, security headers on every page, and no secrets in
the logs. Support threads and the back office (``/admin``) included: every admin route,
GET and POST, refuses customers (403) and sends visitors to log in, writing nothing.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from portal import demo
from portal.infra.extensions import db
from portal.infra.models import (
    Invoice,
    Order,
    Payment,
    ProviderEvent,
    Subscription,
    SupportMessage,
    SupportThread,
    User,
)
from tests.conftest import PASSWORD, Auth, csrf_token
from tests.rules.test_payments import (
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


def database(app: Flask) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: a request that must write nothing leaves this equal."""
    with app.app_context():
        state = {
            table.name: [
                tuple(row)
                for row in db.session.execute(
                    sa.select(table).order_by(*table.primary_key.columns)
                ).all()
            ]
            for table in db.metadata.sorted_tables
        }
        db.session.remove()
    return state


def open_thread(client: FlaskClient, subject: str = "Faktura", body: str = "Pytanie") -> str:
    """A support request of the logged-in (paid) account: its public id."""
    token = csrf_token(client, "/support")
    response = client.post("/support", data={"csrf_token": token, "subject": subject, "body": body})
    assert response.status_code == 303, response.status_code
    return str(response.headers["Location"].rsplit("/", 1)[1])


def staff_client(app: Flask) -> FlaskClient:
    """A second browser, logged in as the demo member of staff."""
    client = app.test_client()
    assert Auth(client).login("admin@demo.example.com", demo.PASSWORD).status_code == 302
    return client


ADMIN_ACTIONS = ("monthly", "free", "extend", "currency")


def admin_values(app: Flask, ids: dict[str, str]) -> dict[str, int]:
    """Integer ids of the standard account's rows, as the back office names them."""
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "standard@demo.example.com"))
        account_id = user.account_id
        values = {
            "account_id": account_id,
            "user_id": user.id,
            "sub_id": db.session.scalar(
                select(Subscription.id).where(Subscription.account_id == account_id)
            ),
            "payment_id": db.session.scalar(
                select(Payment.id).where(Payment.public_id == ids["payment"])
            ),
            "order_id": db.session.scalar(select(Order.id).where(Order.public_id == ids["order"])),
            "invoice_id": db.session.scalar(
                select(Invoice.id).where(Invoice.public_id == ids["invoice"])
            ),
        }
        if "thread" in ids:
            values["thread_id"] = db.session.scalar(
                select(SupportThread.id).where(SupportThread.public_id == ids["thread"])
            )
        db.session.remove()
    return values


# The row a list's details and edit pages are opened with (``?id=``).
DETAILS_ID = {
    "accounts": "account_id",
    "users": "user_id",
    "subscriptions": "sub_id",
    "orders": "order_id",
    "payments": "payment_id",
    "refunds": "payment_id",
    "invoices": "invoice_id",
    "support": "thread_id",
}


def admin_routes(app: Flask, ids: dict[str, str]) -> list[tuple[str, str]]:
    """(method, path) of every back-office route (Flask-Admin's lists with their generic
    create/edit/delete/ajax routes, and the staff actions), with real ids filled in."""
    values: dict[str, Any] = {**admin_values(app, ids), "export_type": "csv"}
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin") or rule.endpoint.endswith(".static"):
            continue
        variants = [rule.rule]
        if "<action>" in rule.rule:
            variants = [rule.rule.replace("<action>", action) for action in ADMIN_ACTIONS]
        for variant in variants:
            path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", lambda m: str(values[m.group(1)]), variant)
            slug = path.split("/")[2]
            if path.endswith(("/details/", "/edit/")):
                path += f"?id={values.get(DETAILS_ID.get(slug, ''), 1)}"
            for method in sorted(rule.methods & {"GET", "POST"}):
                out.append((method, path))
    return out


def admin_form(app: Flask, ids: dict[str, str]) -> dict[str, str]:
    """A body every admin action would accept (the subscription's current version, a
    small refund, a reply): refusals below are then about who sends it, not what."""
    with app.app_context():
        sub = db.session.get(Subscription, admin_values(app, ids)["sub_id"])
        version = str(sub.version)
        db.session.remove()
    return {
        "version": version,
        "days": "5",
        "currency": "EUR",
        "amount": "1.00",
        "refunded_seen": "0",
        "note": "goodwill",
        "body": "Odpowiedź",
        "id": "1",
        "rowid": "1",
        "action": "delete",
        "name": "package",
        "list_form_pk": "1",
        "package": "pro",
    }


# -- another account's ids ------------------------------------------------------------------


def test_every_customer_route_with_another_accounts_ids_is_not_found(
    app, standard, auth, transfer24
):
    ids = bought(app, standard, transfer24)
    thread = open_thread(standard, "Moje", "Tajne")
    auth.logout()
    assert auth.login("pro@demo.example.com", demo.PASSWORD).status_code == 302
    open_thread(standard, "Pro", "Pytanie Pro")  # pro has threads of its own
    before = counts(app)
    state = database(app)
    token = csrf_token(standard, "/package")
    gets = [
        f"/package/orders/{ids['order']}",
        f"/invoices/{ids['invoice']}.pdf",
        f"/invoices/{ids['invoice']}.xml",
        f"/invoices/{ids['invoice']}/note",
        f"/invoices/{ids['invoice']}/row",
        f"/payments/{ids['payment']}/return",
        f"/payments/{ids['payment']}/cancel",
        f"/refunds/{ids['payment']}",
        f"/support/{thread}",
    ]
    posts = [
        (f"/package/orders/{ids['order']}/pay", {"provider": "transfer24"}),
        (f"/invoices/{ids['invoice']}/note", {"note": "mine now"}),
        (f"/refunds/{ids['payment']}", {}),
        (f"/support/{thread}", {"body": "mine now"}),
    ]
    for path in gets:
        assert standard.get(path).status_code == 404, path
    for path, data in posts:
        for headers in ({}, {"HX-Request": "true"}):
            response = standard.post(path, data={"csrf_token": token, **data}, headers=headers)
            assert response.status_code == 404, path
    assert counts(app) == before
    assert database(app) == state
    assert "Moje" not in text(standard.get("/support"))  # not listed either
    with app.app_context():
        assert db.session.scalar(select(Invoice.note)) is None
        assert db.session.scalar(select(Payment.status)) == "paid"
        db.session.remove()
    # The owner still sees them.
    auth.logout()
    auth.login("standard@demo.example.com", demo.PASSWORD)
    assert standard.get(f"/invoices/{ids['invoice']}.pdf").status_code == 200
    assert "Tajne" in text(standard.get(f"/support/{thread}"))
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SupportMessage)) == 2
        db.session.remove()


def test_every_customer_page_needs_a_login(client):
    pages = ["/package", "/package/edit", "/billing", "/invoices", "/payment-methods", "/support"]
    more = ["/payments", "/invoices/year/2026.zip", "/support/0123456789abcdef0123456789abcdef"]
    for path in [*pages, *more]:
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path


# -- the back office --------------------------------------------------------------------------


def test_every_admin_route_refuses_customers_and_sends_visitors_to_log_in(
    app, standard, transfer24
):
    ids = bought(app, standard, transfer24)
    ids["thread"] = open_thread(standard)
    routes = admin_routes(app, ids)
    assert len(routes) >= 100  # ten lists with their generic routes, and the actions
    form = admin_form(app, ids)
    visitor = app.test_client()
    state = database(app)
    for client, who in ((standard, "customer"), (visitor, "visitor")):
        token = csrf_token(client, "/package" if who == "customer" else "/login")
        for method, path in routes:
            if method == "GET":
                response = client.get(path)
            else:
                response = client.post(path, data={"csrf_token": token, **form})
            if who == "customer":
                assert response.status_code == 403, (method, path, response.status_code)
            else:
                assert response.status_code == 302, (method, path, response.status_code)
                assert response.headers["Location"].startswith("/login"), (method, path)
            response.close()
    assert database(app) == state
    # The same requests from staff do act (so the refusals above were about who asked).
    staff = staff_client(app)
    extend = f"/admin/actions/subscription/{admin_values(app, ids)['sub_id']}/extend"
    token = csrf_token(staff, extend)
    assert staff.post(extend, data={"csrf_token": token, **form}).status_code == 302
    assert database(app) != state


def test_staff_cannot_create_edit_or_delete_through_the_generic_admin_routes(
    app, standard, transfer24
):
    """The lists are read-only: Flask-Admin's create, edit, delete, bulk-action and inline
    edit routes change nothing even for staff."""
    ids = bought(app, standard, transfer24)
    ids["thread"] = open_thread(standard)
    staff = staff_client(app)
    token = csrf_token(staff, f"/admin/actions/thread/{admin_values(app, ids)['thread_id']}")
    generic = [
        path
        for method, path in admin_routes(app, ids)
        if method == "POST" and "/admin/actions/" not in path
    ]
    assert len(generic) >= 40
    state = database(app)
    for path in generic:
        response = staff.post(path, data={"csrf_token": token, **admin_form(app, ids)})
        assert response.status_code in (302, 403, 404), (path, response.status_code)
    assert database(app) == state


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


CSRF_REFUSED = ("Ten formularz wygasł", "This form has expired")


@pytest.mark.parametrize("token", ["none", "wrong", "another session's"])
def test_every_admin_and_support_post_without_or_with_a_wrong_csrf_token_is_refused(
    app, standard, transfer24, token
):
    ids = bought(app, standard, transfer24)
    ids["thread"] = open_thread(standard)
    staff = staff_client(app)
    form = admin_form(app, ids)
    if token == "wrong":
        form["csrf_token"] = "IjBhZGMifQ.forged.token"
    elif token == "another session's":
        form["csrf_token"] = csrf_token(app.test_client(), "/login")
    admin_posts = [path for method, path in admin_routes(app, ids) if method == "POST"]
    assert len(admin_posts) >= 45  # 4 subscription actions, refund, resend, reply, generic
    support_posts = ["/support", f"/support/{ids['thread']}"]
    support_form = {k: v for k, v in form.items() if k == "csrf_token"}
    support_form.update(subject="Temat", body="Treść")
    state = database(app)
    senders = ((staff, admin_posts, form), (standard, support_posts, support_form))
    for client, paths, data in senders:
        for path in paths:
            for headers in ({}, {"HX-Request": "true"}):
                response = client.post(path, data=data, headers=headers)
                assert response.status_code == 400, (path, response.status_code)
                assert any(message in text(response) for message in CSRF_REFUSED), path
    assert database(app) == state
    # With the session's own token the same bodies go through.
    staff_token = csrf_token(staff, f"/admin/actions/thread/{admin_values(app, ids)['thread_id']}")
    reply = f"/admin/actions/thread/{admin_values(app, ids)['thread_id']}"
    assert staff.post(reply, data={**form, "csrf_token": staff_token}).status_code == 302
    own = csrf_token(standard, "/support")
    assert standard.post("/support", data={**support_form, "csrf_token": own}).status_code == 303
    assert database(app) != state


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
    response = auth.signup("a@example.com", company="A")  # confirms: the log-in sets it
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
        if rule.rule.startswith("/admin"):
            continue  # staff pages: test_security_headers_on_every_admin_page...
        path = rule.rule
        if path.startswith("/support/"):
            path = path.replace("<public_id>", ids["thread"])
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
    ids["thread"] = open_thread(standard, "<script>alert(1)</script>", "<script>alert(2)</script>")
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
    assert seen >= 17


# Whatever a page makes the browser load: scripts, styles, images, frames, fonts.
LOADS = re.compile(
    r"<(?:script|link|img|iframe|frame|source|video|audio|embed|object|input)\b[^>]*?"
    r"\s(?:src|href|data|srcset|poster)\s*=\s*[\"']?([^\"'\s>]+)",
    re.I,
)
CSS_LOADS = re.compile(r"(?:@import\s+(?:url\()?|url\()\s*[\"']?([^\"')\s;]+)", re.I)


def foreign(url: str) -> bool:
    """True for a URL on another host (absolute, protocol-relative or a data: script)."""
    return bool(re.match(r"(?:[a-z][a-z0-9+.-]*:)?//", url, re.I)) and not url.startswith(
        ("http://localhost/", "https://localhost/")
    )


# Flask-Admin's filter menu carries this one handler (to stop the javascript:void(0) link):
# the CSP blocks it, nothing depends on it (bs4_filters.js binds the click itself), so it is
# inert. Any other inline handler on a staff page fails the test.
FLASK_ADMIN_FILTER_HANDLER = 'class="dropdown-item filter" onclick="return false;"'


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_security_headers_on_every_admin_page_and_nothing_from_another_host(
    app, standard, transfer24, https
):
    """Staff pages (Flask-Admin's lists and details, the dashboard, the action pages, a
    thread): the same headers, no inline script, and every file they load comes from
    ``/admin/static/`` or the portal itself, never another host."""
    ids = bought(app, standard, transfer24)
    ids["thread"] = open_thread(standard, "<script>alert(1)</script>", "<script>alert(2)</script>")
    base = "https://localhost" if https else "http://localhost"  # where staff logged in
    staff = staff_client(app)
    loaded: set[str] = set()
    html_pages = 0
    for method, path in admin_routes(app, ids):
        if method != "GET":
            continue
        response = staff.get(path, base_url=base)
        expected = (404,) if "/ajax/lookup/" in path else (200, 302)  # no ajax fields
        assert response.status_code in expected, (path, response.status_code)
        check_headers(response, https=https)
        if response.mimetype == "text/html" and response.status_code == 200:
            body = text(response).replace(FLASK_ADMIN_FILTER_HANDLER, 'class="dropdown-item"')
            assert not INLINE_SCRIPT.search(body), (path, INLINE_SCRIPT.search(body))
            assert not INLINE_HANDLER.search(body), (path, INLINE_HANDLER.search(body))
            assert "<script>alert" not in body, path  # the subject is escaped in lists too
            for url in LOADS.findall(body):
                assert not foreign(url), (path, url)
                loaded.add(url.split("?")[0])
            html_pages += 1
        response.close()
    assert html_pages >= 25  # dashboard, 10 lists, 8 details, account, 4 confirmations...
    assert any(url.startswith("/admin/static/") for url in loaded)
    for url in sorted(loaded):  # each file is there, with the same headers
        asset = staff.get(url, base_url=base)
        assert asset.status_code == 200, url
        check_headers(asset, https=https)
        if asset.mimetype == "text/css":
            for ref in CSS_LOADS.findall(asset.get_data(as_text=True)):
                assert not foreign(ref), (url, ref)
        asset.close()
    error = staff.post("/admin/actions/thread/0", data={}, base_url=base)  # a 400 page too
    check_headers(error, https=https)


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
