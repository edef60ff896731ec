"""Providers declare where they send customers; the pages' policy allows exactly that.

Browsers apply ``form-action`` to the redirect that follows a POST, so a page whose form
ends at a provider's hosted page needs the provider's origin there (issue 20). The origins
come from the providers' contract and are checked at start-up; the policy stays strict
everywhere else, and core refuses to send a customer to an origin nobody declared.
"""

from __future__ import annotations

import re

import pytest

from portal import create_app
from portal.infra.extensions import db
from portal.plugin_api.registry import PluginError, origin, registry
from tests.conftest import Auth, base_config
from tests.rules.test_payments import config_overrides, place_and_pay, standard, transfer24

STRIPE = {"api_key": "sk_test_x", "webhook_secret": "whsec_x", "api_base": "http://127.0.0.1:9"}
PAYPAL = {"client_id": "id", "client_secret": "secret", "base_url": "http://127.0.0.1:8"}

__all__ = ["config_overrides", "standard", "transfer24"]  # fixtures reused


def directives(response) -> dict[str, str]:
    csp = response.headers["Content-Security-Policy"]
    return dict((part.strip().split(" ", 1) + [""])[:2] for part in csp.split(";"))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://checkout.stripe.com/c/pay/cs_1#x", "https://checkout.stripe.com"),
        ("HTTPS://Checkout.Stripe.com:443/", "https://checkout.stripe.com"),
        ("http://127.0.0.1:12111/c/pay", "http://127.0.0.1:12111"),
        ("http://[::1]:8080/x", "http://[::1]:8080"),
        ("https://*.stripe.com", None),
        ("javascript:alert(1)", None),
        ("//evil.example/x", None),
        ("https://a b.example", None),
        ("https://example.com:99999", None),
    ],
)
def test_origin_of_a_url(url, expected):
    assert origin(url) == expected


def test_the_built_in_providers_declare_their_pages():
    from pakiet_paypal.client import PayPalProvider
    from pakiet_stripe.client import StripeProvider

    live_stripe = StripeProvider({"api_key": "sk_live_x"})
    assert live_stripe.hosted_origins == {"https://checkout.stripe.com", "https://hooks.stripe.com"}
    assert StripeProvider(STRIPE).hosted_origins == {"http://127.0.0.1:9"}
    live_paypal = PayPalProvider({"client_id": "a", "client_secret": "b"})
    assert live_paypal.hosted_origins == {"https://www.paypal.com"}
    sandbox = PayPalProvider(
        {"client_id": "a", "client_secret": "b", "base_url": "https://api-m.sandbox.paypal.com"}
    )
    assert sandbox.hosted_origins == {"https://www.sandbox.paypal.com"}


@pytest.fixture
def providers_app(database_url):
    app = create_app(base_config(database_url, PLUGIN_CONFIG={"stripe": STRIPE, "paypal": PAYPAL}))
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_pages_that_lead_to_a_provider_allow_its_origins_and_no_other(providers_app):
    app = providers_app
    assert registry(app).hosted_origins == ("http://127.0.0.1:8", "http://127.0.0.1:9")
    client = app.test_client()
    assert directives(client.get("/login"))["form-action"] == "'self'"
    Auth(client).signup("a@example.com", password="correct horse battery")
    for path in ("/package/edit", "/payment-methods"):
        policy = directives(client.get(path))
        assert policy["form-action"] == "'self' http://127.0.0.1:8 http://127.0.0.1:9", path
        assert policy["script-src"] == "'self'" and policy["default-src"] == "'self'"
        assert "unsafe-inline" not in " ".join(policy.values()) and "*" not in policy["form-action"]
    for path in ("/package", "/invoices", "/billing"):
        assert directives(client.get(path))["form-action"] == "'self'", path


class _Provider:
    pass


@pytest.mark.parametrize(
    "declared",
    [
        frozenset({"https://*.bank.example"}),
        frozenset({"https://bank.example/pay"}),
        frozenset({"https://bank.example/"}),
        frozenset({"HTTPS://BANK.EXAMPLE"}),
        frozenset({"https://bank.example 'unsafe-inline'"}),
        "https://bank.example",
    ],
)
def test_a_provider_declaring_anything_but_origins_stops_the_app(
    database_url, transfer24, declared
):
    from pakiet_transfer24.provider import Transfer24Provider

    from portal.plugin_api.hookspecs import hookimpl

    class Sloppy(Transfer24Provider):
        def __init__(self, config):
            super().__init__(config)
            self.hosted_origins = declared

    class Plugin:
        @hookimpl
        def register_payment_providers(self, plugin_config):
            return [
                Sloppy({"base_url": "https://bank.example", "api_key": "k", "notify_secret": "s"})
            ]

    config = base_config(database_url)
    config["PLUGINS"] = [*config["PLUGINS"], Plugin()]
    with pytest.raises(PluginError, match="transfer24.*hosted_origins"):
        create_app(config)


def test_a_redirect_to_an_undeclared_origin_is_refused_with_a_message(
    app, standard, transfer24, monkeypatch, caplog
):
    provider = registry(app).payment_providers["transfer24"]
    monkeypatch.setattr(provider, "hosted_origins", frozenset({"https://elsewhere.example"}))
    response = place_and_pay(standard, agents="5")
    assert response.status_code == 303
    assert re.fullmatch(r"/package/orders/[0-9a-f]+", response.headers["Location"])
    page = standard.get(response.headers["Location"]).get_data(as_text=True)
    assert "Operator płatności nie odpowiedział" in page
    assert "transfer24" in caplog.text and "hosted_origins" in caplog.text
