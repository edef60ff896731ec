"""My package's card printed in Python (portal/web/package_card.py): the states a card can
show, in both languages, as well-formed HTML with every value escaped, a payment method's
description from a plugin included."""

from __future__ import annotations

import datetime as dt

import pytest

from portal.infra.models import Payment, Subscription
from portal.plugin_api.contracts import SavedMethod
from portal.rules.money import Money
from portal.rules.payments import Attempt
from portal.web import package_card as card_module
from tests.web.conftest import read

END = dt.date(2026, 12, 26)
VISA = SavedMethod(provider_ref="pm_1", brand="visa", last4="4242", exp_month=11, exp_year=2026)


def subscription(**fields) -> Subscription:
    values = {
        "account_id": 1,
        "package": "standard",
        "period": "month",
        "agents": 3,
        "conversations": 200,
        "currency": "PLN",
        "status": "active",
        "period_start": dt.date(2026, 11, 26),
        "period_end": END,
        "auto_renew": True,
        "credit_minor": 0,
        "next_period": None,
        "next_currency": None,
    }
    return Subscription(**{**values, **fields})


@pytest.fixture
def card(app, catalogue):
    def print_card(language: str, sub: Subscription, **facts):
        arguments = {
            "currency": None,
            "attempt": None,
            "method": None,
            "method_provider": None,
            "method_expires": False,
            "refundable": None,
            **facts,
        }
        with app.test_request_context(headers={"Accept-Language": language}):
            html = card_module.package_card(sub, catalogue.package(sub.package), **arguments)
            return str(html), read(html)

    return print_card


def test_a_paid_package_with_everything_to_say_in_polish(card):
    sub = subscription(auto_renew=False, credit_minor=1250, next_period="year", next_currency="EUR")
    failed = Attempt(
        pending=False,
        failure_code="card_declined",
        amount=Money(17917, "PLN"),
        order_public_id="ord_1",
        order_payable=True,
    )
    html, text = card(
        "pl",
        sub,
        attempt=failed,
        method=VISA,
        method_provider="stripe",
        method_expires=True,
        refundable=Payment(public_id="pay_1"),
    )
    assert "Twoja ostatnia płatność (179,17 zł) nie doszła do skutku. Twój bank" in text
    assert 'href="/package/orders/ord_1"' in html  # its order can still be paid
    assert "wygasa przed odnowieniem 26 grudnia 2026" in text
    assert "200 rozmów miesięcznie (100 w cenie pakietu)" in text
    assert "3 agentów" in text
    assert "Zaplanowana zmiana Okres rozliczeniowy: Roczny od odnowienia 26 grudnia" in text
    assert "Zaplanowana zmiana Waluta EUR od odnowienia 26 grudnia 2026" in text
    assert "Wygasa 26 grudnia 2026" in text  # auto-renewal off: it ends
    assert "Twoje konto zostanie zawieszone 26 grudnia 2026." in text  # auto-renewal off
    assert "Saldo na koncie 12,50 zł zostanie wykorzystane" in text
    assert 'href="/refunds/pay_1"' in html
    assert 'datetime="2026-12-26"' in html
    assert "hx-get" not in html  # nothing pending: no refresh


def test_pending_free_and_suspended_cards_in_english(card, catalogue):
    pending = Attempt(
        pending=True,
        failure_code=None,
        amount=Money(100, "PLN"),
        order_public_id="ord_2",
        order_payable=True,
    )
    html, text = card("en", subscription(), attempt=pending)
    assert 'hx-get="/package" hx-trigger="every 2s"' in html
    assert "Payment pending" in text and "this page updates itself" in text
    assert "Switch auto-renewal off" in text

    free = subscription(package="free", period=None, currency=None, agents=1, conversations=0)
    html, text = card("en", free)
    assert "Agents up to 3 agents Chatbot conversations Not included" in text
    assert "The Free package does not expire" in text and "Buy a package" in text
    assert "Customer support is available on paid packages only." in text
    assert "None saved yet" in text

    html, text = card("en", subscription(status="suspended", auto_renew=False))
    assert "Ended on December 26, 2026" in text and "Reactivate" in text
    assert "will be suspended" not in text and "Switch auto-renewal off" not in text


def test_what_a_plugin_says_of_a_method_is_shown_as_text(card, monkeypatch):
    monkeypatch.setattr(
        card_module, "describe_saved_method", lambda provider, saved: '<img src=x> "Visa" & co'
    )
    html, text = card(
        "en", subscription(), method=VISA, method_provider="stripe", method_expires=True
    )
    assert "<img" not in html
    assert "&lt;img src=x&gt; &#34;Visa&#34; &amp; co expires before your renewal" in html
    assert text.count('<img src=x> "Visa" & co') == 2  # the warning and the method's line
