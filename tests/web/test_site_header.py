"""The page header every portal page carries is rendered once per what it shows and kept
(helpers.site_header, issue 26): these pages are read with the kept header in use, and each
must still show its own user, section, language, return link, CSRF token and return path."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from sqlalchemy import select

from portal.infra.extensions import db
from portal.infra.models import Role, User
from portal.web.helpers import HEADERS
from portal.web.portal_sessions import RETURN_URL
from tests.web.conftest import login, text

HEADER = re.compile(r'<a class="skip-link".*?</header>', re.S)


def header(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    match = HEADER.search(text(response))
    assert match, f"no header on {path}"
    return match.group(0)


def current_link(html: str) -> list[str]:
    return re.findall(r'<a href="([^"]+)" aria-current="page">', html)


def test_each_page_gets_its_own_token_return_path_and_current_section(
    app, client, auth, demo_accounts
):
    login(auth, "standard")
    first = header(client, "/invoices?year=2026")
    second = header(client, "/invoices?kind=invoice")
    package = header(client, "/package")
    kept = [key for key in app.extensions[HEADERS] if key[1] == "invoices.page"]
    assert len(kept) == 1  # the list's second page took the kept header

    assert 'name="next" value="/invoices?year=2026"' in first
    assert 'name="next" value="/invoices?kind=invoice"' in second
    assert 'name="next" value="/package?"' in package
    assert current_link(first) == current_link(second) == ["/invoices"]
    assert current_link(package) == ["/package"]
    # The forms carry the page's own token (the one its hx-headers send), and it works.
    page = text(client.get("/invoices?year=2026"))
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    assert (
        HEADER.search(page).group(0).count(f'name="csrf_token" value="{token}"') == 2
    )  # language switch, log-out
    switched = client.post(
        "/language", data={"csrf_token": token, "language": "en", "next": "/invoices?year=2026"}
    )
    assert switched.status_code == 302
    assert switched.headers["Location"].endswith("/invoices?year=2026")
    english = header(client, "/invoices?year=2026")
    assert "My package" in english and "Mój pakiet" in first
    assert 'aria-pressed="true">English' in english


def test_one_persons_header_is_never_anothers(app, demo_accounts):
    customer, admin, other = app.test_client(), app.test_client(), app.test_client()
    login(_auth(customer), "standard")
    login(_auth(admin), "admin")
    login(_auth(other), "free")  # Polish, as the first: the same page in the same language
    with customer.session_transaction() as session:
        session[RETURN_URL] = "https://chat.example.com/app?from=portal"

    mine = header(customer, "/package")
    staff = header(admin, "/package")  # no account: a 404 page, with the same header layout
    theirs = header(other, "/package")

    assert 'href="https://chat.example.com/app?from=portal"' in mine
    assert "chat.example.com" not in theirs and "chat.example.com" not in staff
    assert 'href="/admin/"' in staff
    assert 'href="/admin/"' not in mine and 'href="/admin/"' not in theirs
    assert 'href="/invoices"' in mine and 'href="/invoices"' not in staff  # customer links
    assert len([key for key in app.extensions[HEADERS] if key[1] == "account.package"]) == 3

    with app.app_context():  # a customer made an admin: the Admin link, for them only
        user = db.session.scalar(select(User).where(User.email == "free@demo.example.com"))
        user.role = Role.ADMIN
        db.session.commit()
    assert 'href="/admin/"' in header(other, "/package")
    assert 'href="/admin/"' not in header(customer, "/package")


def _auth(client: FlaskClient):
    from portal.testing.pytest_plugin import Auth

    return Auth(client)
