"""Language choice: the user's preference, the switcher's cookie, Accept-Language, Polish."""

from __future__ import annotations

from sqlalchemy import select

from portal.extensions import db
from portal.models import User
from tests.conftest import csrf_token


def switch(client, language: str, next_path: str = "/login"):
    token = csrf_token(client, next_path)
    return client.post(
        "/language", data={"csrf_token": token, "language": language, "next": next_path}
    )


def heading(client, path: str = "/login", **headers) -> str:
    return client.get(path, headers=headers).get_data(as_text=True)


def test_default_is_polish(client):
    assert '<html lang="pl">' in heading(client)
    assert "Zaloguj się" in heading(client)


def test_accept_language_is_honoured(client):
    page = heading(client, **{"Accept-Language": "en-GB,en;q=0.9"})
    assert '<html lang="en">' in page
    assert "Log in" in page
    assert '<html lang="pl">' in heading(client, **{"Accept-Language": "de-DE,de;q=0.9"})


def test_switcher_sets_a_cookie_for_visitors(client):
    response = switch(client, "en")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    cookie = client.get_cookie("pakiet_lang")
    assert cookie is not None and cookie.value == "en"
    page = heading(client, **{"Accept-Language": "pl"})
    assert '<html lang="en">' in page  # the switcher beats the browser


def test_unknown_language_code_is_ignored(client):
    response = switch(client, "xx")
    assert response.status_code == 302
    assert client.get_cookie("pakiet_lang") is None
    assert '<html lang="pl">' in heading(client)


def test_switcher_refuses_foreign_redirects(client):
    token = csrf_token(client)
    response = client.post(
        "/language", data={"csrf_token": token, "language": "en", "next": "//evil.example/x"}
    )
    assert response.headers["Location"] == "/package"


def test_users_preference_is_remembered_and_wins(app, client, auth):
    auth.signup("a@example.com")
    switch(client, "en", "/package")
    with app.app_context():
        assert db.session.scalar(select(User.language)) == "en"
    client.delete_cookie("pakiet_lang")
    page = heading(client, "/package", **{"Accept-Language": "pl"})
    assert "My package" in page
    assert '<html lang="en">' in page
