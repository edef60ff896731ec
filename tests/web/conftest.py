"""Fixtures and helpers shared by the web tests (the suite's own are in tests/conftest.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from portal import demo

TODAY = dt.date(2026, 11, 26)


@pytest.fixture
def demo_accounts(app, catalogue, monkeypatch) -> None:
    """The demo data, loaded on ``TODAY``, the checkout's day too."""
    monkeypatch.setattr("portal.web.checkout.today", lambda: TODAY)
    with app.app_context():
        demo.load(catalogue, today=TODAY)


def login(auth, who: str) -> None:
    assert auth.login(f"{who}@demo.example.com", demo.PASSWORD).status_code == 302


def text(response) -> str:
    return response.get_data(as_text=True).replace("\xa0", " ")
