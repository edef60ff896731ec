"""The signed session cookie opened once per process (``site.KeptSerializerSessions``): a
cookie verified before is not verified again, and nothing else changes: a forged, expired
or re-keyed cookie is refused as Flask refuses it, and no request sees another's changes."""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from portal.web.site import KeptSerializerSessions


def signed(app: Flask, data: dict, at: float | None = None, monkeypatch=None) -> str:
    """A session cookie of ``data`` as Flask signs it (at the time ``at``)."""
    serializer = SecureCookieSessionInterface().get_signing_serializer(app)
    assert serializer is not None
    if at is not None and monkeypatch is not None:
        with monkeypatch.context() as clock:
            clock.setattr("itsdangerous.timed.time.time", lambda: at)
            return serializer.dumps(data)
    return serializer.dumps(data)


def opened(app: Flask, cookie: str) -> dict:
    with app.test_request_context(headers={"Cookie": f"session={cookie}"}) as ctx:
        return dict(ctx.session)


def test_the_portal_uses_it(app):
    assert isinstance(app.session_interface, KeptSerializerSessions)


def test_a_cookie_is_verified_once_and_opened_the_same(app, monkeypatch):
    cookie = signed(app, {"_user_id": "7:1", "csrf_token": "a" * 40, "_fresh": True})
    serializer = app.session_interface.get_signing_serializer(app)
    verified: list[str] = []
    loads = serializer.loads

    def counting(value, *args, **kwargs):
        verified.append(value)
        return loads(value, *args, **kwargs)

    monkeypatch.setattr(serializer, "loads", counting)
    first, second = opened(app, cookie), opened(app, cookie)
    assert first == second == {"_user_id": "7:1", "csrf_token": "a" * 40, "_fresh": True}
    assert verified == [cookie]


def test_a_forged_cookie_is_refused_after_the_real_one_was_kept(app):
    cookie = signed(app, {"_user_id": "7:1"})
    assert opened(app, cookie) == {"_user_id": "7:1"}
    payload, _, signature = cookie.rpartition(".")
    forged = payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    assert opened(app, forged) == {}
    other_payload = signed(app, {"_user_id": "1:1"}).rpartition(".")[0]
    assert opened(app, other_payload + "." + signature) == {}


def test_an_expired_cookie_is_refused_though_it_was_kept(app, monkeypatch):
    lifetime = app.permanent_session_lifetime.total_seconds()
    now = 2_000_000_000.0
    cookie = signed(app, {"_user_id": "7:1"}, at=now, monkeypatch=monkeypatch)
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: now + 10)
    monkeypatch.setattr("portal.web.site.time.time", lambda: now + 10)
    assert opened(app, cookie) == {"_user_id": "7:1"}
    later = now + lifetime + 1
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: later)
    monkeypatch.setattr("portal.web.site.time.time", lambda: later)
    assert opened(app, cookie) == {}
    # Signed "in the future" (a clock set back): refused too, as itsdangerous refuses it.
    monkeypatch.setattr("portal.web.site.time.time", lambda: now - 60)
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: now - 60)
    assert opened(app, cookie) == {}


def test_a_new_secret_key_refuses_the_cookies_kept_under_the_old(app):
    cookie = signed(app, {"_user_id": "7:1"})
    assert opened(app, cookie) == {"_user_id": "7:1"}
    app.secret_key = "another secret key, long enough: " + "y" * 32
    assert opened(app, cookie) == {}


def test_no_request_sees_what_another_changed(app):
    cookie = signed(app, {"_user_id": "7:1"})
    with app.test_request_context(headers={"Cookie": f"session={cookie}"}) as ctx:
        ctx.session["csrf_token"] = "changed in this request"
        ctx.session.pop("_user_id")
    assert opened(app, cookie) == {"_user_id": "7:1"}


@pytest.mark.parametrize(
    "value", [["a", "list"], {"a": "dict"}, dt.datetime(2026, 1, 1, tzinfo=dt.UTC)]
)
def test_a_session_holding_more_than_plain_values_is_verified_each_time(app, value):
    cookie = signed(app, {"_user_id": "7:1", "more": value})
    assert opened(app, cookie)["more"] == value
    assert cookie not in app.session_interface._opened
