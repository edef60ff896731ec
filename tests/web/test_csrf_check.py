"""The portal's CSRF check (``portal/infra/csrf.py``) refuses and accepts exactly what
Flask-WTF's ``validate_csrf`` does, for the same reasons, with the header as well as the form
field, an expiry when one is configured, and a referrer over HTTPS."""

from __future__ import annotations

import time

import pytest
from flask import session
from flask_wtf.csrf import generate_csrf, validate_csrf
from itsdangerous import URLSafeTimedSerializer
from wtforms import ValidationError

from portal.infra.extensions import csrf
from tests.conftest import csrf_token


def library_reason(token: str | None) -> str | None:
    try:
        validate_csrf(token)
    except ValidationError as refused:
        return str(refused.args[0])
    return None


@pytest.mark.parametrize("config_overrides", [{"WTF_CSRF_TIME_LIMIT": 60}])
def test_every_reason_is_flask_wtfs(app, config_overrides):
    with app.test_request_context("/", method="POST"):
        assert csrf._reason_to_refuse("x", app.config) == library_reason("x")  # no session token
        good = generate_csrf()
        signer = URLSafeTimedSerializer(app.secret_key, salt="wtf-csrf-token")
        old = signer.dumps(session["csrf_token"])
        another_key = URLSafeTimedSerializer("another key", salt="wtf-csrf-token")
        tokens = {
            "none": None,
            "empty": "",
            "garbage": "IjBhZGMifQ.forged.token",
            "another key's": another_key.dumps(session["csrf_token"]),
            "another session's": signer.dumps("f" * 40),
            "good": good,
        }
        reasons = {name: csrf._reason_to_refuse(t, app.config) for name, t in tokens.items()}
        assert reasons == {name: library_reason(t) for name, t in tokens.items()}
        assert reasons["good"] is None
        assert reasons["another session's"] == "The CSRF tokens do not match."
        # A minute later (the configured limit) the token signed then has expired.
        later = time.time() + 61
        with pytest.MonkeyPatch.context() as clock:
            clock.setattr("itsdangerous.timed.time.time", lambda: later)
            assert csrf._reason_to_refuse(old, app.config) == "The CSRF token has expired."
            assert library_reason(old) == "The CSRF token has expired."


def test_the_token_is_also_read_from_the_header(client, auth):
    assert auth.signup("anna@firma.example.com").status_code == 302
    token = csrf_token(client, "/billing")
    without = client.post("/logout")
    assert without.status_code == 400
    with_header = client.post("/logout", headers={"X-CSRFToken": token})
    assert with_header.status_code == 302
    assert client.get("/package").status_code == 302  # logged out: sent to log in


def test_over_https_the_referrer_must_be_this_site(client, auth):
    assert auth.signup("anna@firma.example.com").status_code == 302
    token = csrf_token(client, "/billing")
    https = {"base_url": "https://localhost"}
    data = {"csrf_token": token}
    assert client.post("/logout", data=data, **https).status_code == 400  # no referrer
    elsewhere = {"Referer": "https://evil.example.com/"}
    assert client.post("/logout", data=data, headers=elsewhere, **https).status_code == 400
    here = {"Referer": "https://localhost/package"}
    assert client.post("/logout", data=data, headers=here, **https).status_code == 302


def test_an_exempt_view_is_not_checked_and_a_new_exemption_counts(app, client):
    """The entitlements API is exempt (a service token guards it); an exemption added
    after requests were checked is seen too (the per-endpoint answers are dropped)."""
    assert client.post("/api/v1/portal-sessions").status_code == 401  # its own guard
    assert client.post("/logout").status_code == 400
    csrf.exempt("portal.web.auth.logout")
    try:
        assert client.post("/logout").status_code != 400
    finally:
        csrf._exempt_views.discard("portal.web.auth.logout")
        csrf._exempt_endpoints.clear()
