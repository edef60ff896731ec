"""Language choice: the user's preference, the switcher's cookie, Accept-Language, Polish."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.infra.extensions import db
from portal.infra.models import User
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


@pytest.mark.parametrize(
    "asks", ["de-DE,de;q=0.9", "cs-CZ,cs;q=0.9,sk;q=0.8", "fr", "uk-UA,ru;q=0.7"]
)
def test_a_browser_asking_for_neither_language_reads_english(client, asks):
    """R18: any other language gets English, not Polish."""
    page = heading(client, **{"Accept-Language": asks})
    assert '<html lang="en">' in page and "Log in" in page


def test_a_polish_browser_reads_polish(client):
    page = heading(client, **{"Accept-Language": "pl-PL,pl;q=0.9,en-US;q=0.8,en;q=0.7"})
    assert '<html lang="pl">' in page and "Zaloguj się" in page
    # A browser preferring German but also reading Polish gets Polish.
    assert '<html lang="pl">' in heading(client, **{"Accept-Language": "de,pl;q=0.5"})


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
    assert response.headers["Location"] == "/login"  # a visitor's home: the log-in page


def test_users_preference_is_remembered_and_wins(app, client, auth):
    auth.signup("a@example.com")
    switch(client, "en", "/package")
    with app.app_context():
        assert db.session.scalar(select(User.language)) == "en"
    client.delete_cookie("pakiet_lang")
    page = heading(client, "/package", **{"Accept-Language": "pl"})
    assert "My package" in page
    assert '<html lang="en">' in page


@pytest.mark.parametrize(
    ("language", "written"),
    [("pl", "26 sierpnia 2026, 08:55"), ("en", "August 26, 2026, 08:55")],
)
def test_a_moment_is_written_as_days_are_with_the_time_after(app, language, written):
    """Issue 25, point 6: one way per language. The consultation number's time, an order's
    expiry and a support message were '8/26/26, 8:55 AM' or '26 August 2026, 08:55' beside
    pages that write 'August 26, 2026'; the ``moment`` filter writes the day as they do."""
    import datetime as dt

    from portal.rules.dates import long_day

    moment = dt.datetime(2026, 8, 26, 6, 55, tzinfo=dt.UTC)  # 08:55 in Warsaw (summer)
    with app.test_request_context(headers={"Accept-Language": language}):
        rendered = app.jinja_env.from_string("{{ when | moment }}").render(when=moment)
    assert rendered == written
    assert rendered.startswith(long_day(moment.date(), language))


def test_a_bound_gettext_translates_as_flask_babels_own(app):
    """portal.infra.i18n.bound_gettext (the invoice list's strings, bound to the request's
    catalogue once): the same text as Flask-Babel's gettext, formatted alike, and bound
    inside force_locale, that language's."""
    from flask_babel import force_locale, gettext

    from portal.infra.i18n import bound_gettext

    with app.test_request_context("/", headers={"Accept-Language": "pl"}):
        bound = bound_gettext()
        assert bound("Paid") == gettext("Paid") == "Opłacone"
        assert bound("The list has no page %(num)d.", num=3) == "Lista nie ma strony 3."
        assert bound("100%% sure") == gettext("100%% sure")  # no variables: not %-formatted
        with force_locale("en"):
            assert bound_gettext()("Paid") == "Paid"
        assert bound_gettext()("Paid") == "Opłacone"
