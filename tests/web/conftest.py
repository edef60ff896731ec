"""Fixtures and helpers shared by the web tests (the suite's own are in tests/conftest.py)."""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser
from typing import Any

import pytest
from markupsafe import Markup

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


# HTML printed in Python (portal/web/printing.py and its users), read as a browser would.
VOID = {"br", "input", "img", "meta", "link"}


class Balance(HTMLParser):
    """Fails on a closing tag that does not close the open element."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open.pop() == tag, f"</{tag}> closes nothing open"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def read(html: Markup) -> str:
    """The text of ``html``, after checking that its tags balance."""
    parser = Balance()
    parser.feed(str(html))
    parser.close()
    assert parser.open == [], f"left open: {parser.open}"
    return " ".join(" ".join(parser.text).split()).replace("\xa0", " ")
