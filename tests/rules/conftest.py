"""Fixtures shared by the rules' tests (the suite's own are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from portal import demo


@pytest.fixture
def login(app, client, auth, catalogue, today) -> Callable[[str], FlaskClient]:
    """The demo data, loaded on ``today``; ``login("standard")`` logs that demo user
    (``standard@demo.example.com``) in and returns the client."""
    with app.app_context():
        demo.load(catalogue, today=today)

    def as_(who: str):
        assert auth.login(f"{who}@demo.example.com", demo.PASSWORD).status_code == 302
        return client

    return as_
