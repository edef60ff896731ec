"""The staff area's tests share the demo accounts, the Stripe emulator and SMTP."""

from __future__ import annotations

import datetime as dt

import pytest

from pakiet_stripe.emulator import StripeEmulator
from portal import demo
from tests.conftest import smtp_config
from tests.rules.test_lifecycle import stripe_config

TODAY = dt.date(2026, 11, 26)


@pytest.fixture
def stripe_emulator():
    with StripeEmulator(api_key="sk_test_pakiet_lifecycle", webhook_secret="whsec_x") as emulator:
        yield emulator


@pytest.fixture
def config_overrides(stripe_emulator, smtp):
    return {**smtp_config(smtp), "PLUGIN_CONFIG": {"stripe": stripe_config(stripe_emulator)}}


@pytest.fixture
def demo_accounts(app, catalogue, monkeypatch):
    monkeypatch.setattr("portal.web.checkout.today", lambda: TODAY)
    with app.app_context():
        demo.load(catalogue, today=TODAY)
