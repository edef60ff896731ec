"""The "We accept ..." sentence names the providers the portal has loaded, and only them."""

from __future__ import annotations

import pytest

from tests.rules.test_payments import standard, transfer24
from tests.web.test_hosted_origins import providers_app

__all__ = ["providers_app", "standard", "transfer24"]  # fixtures reused

# R8: core refuses American Express whatever the plugins, and says so after the sentence.
R8 = {
    "en": " American Express and cryptocurrencies are not accepted.",
    "pl": " Nie obsługujemy kart American Express ani kryptowalut.",
}


@pytest.fixture
def config_overrides(transfer24):
    """Only the third party's provider: Stripe and PayPal are not loaded."""
    from tests.conftest import BUILTIN_PLUGINS

    others = [p for p in BUILTIN_PLUGINS if "stripe" not in p and "paypal" not in p]
    return {
        "PLUGINS": [*others, "pakiet_transfer24"],
        "PLUGIN_CONFIG": {
            "transfer24": {
                "base_url": transfer24.base_url,
                "api_key": "t24-key",
                "notify_secret": "t24-secret",
            }
        },
    }


def _accepted(html: str) -> str:
    return html.split("<main", 1)[-1].split("</hgroup>", 1)[0]


def test_with_only_a_third_party_provider_the_page_names_only_it(app, standard):
    from portal.plugin_api.registry import registry

    assert set(registry(app).payment_providers) == {"transfer24"}
    page = standard.get("/payment-methods")  # the demo customer reads Polish
    assert page.status_code == 200
    head = _accepted(page.get_data(as_text=True))
    assert "Przyjmujemy: Przelew online (Transfer24)." in head
    assert "Visa" not in head and "PayPal" not in head


@pytest.mark.parametrize(
    ("language", "sentence"),
    [
        ("en", "We accept: Online bank transfer." + R8["en"]),
        ("pl", "Przyjmujemy: Przelew online (Transfer24)." + R8["pl"]),
    ],
)
def test_the_sentence_is_built_from_the_loaded_providers_labels(app, language, sentence):
    from portal.web.pay import accepted_methods

    with app.test_request_context("/", headers={"Accept-Language": language}):
        assert accepted_methods() == sentence


def test_with_the_built_in_providers_both_are_named(providers_app):
    from portal.web.pay import accepted_methods

    with providers_app.test_request_context("/", headers={"Accept-Language": "en"}):
        assert accepted_methods() == "We accept: Card (Visa, Mastercard) and PayPal." + R8["en"]
    with providers_app.test_request_context("/", headers={"Accept-Language": "pl"}):
        assert (
            accepted_methods()
            == "Przyjmujemy: Karta płatnicza (Visa, Mastercard) i PayPal." + R8["pl"]
        )


def test_with_no_provider_the_page_says_so(database_url):
    from portal import create_app
    from tests.conftest import base_config

    app = create_app(base_config(database_url))  # no provider is configured
    from portal.web.pay import accepted_methods

    with app.test_request_context("/", headers={"Accept-Language": "en"}):
        assert accepted_methods().startswith("No payment method is available right now.")
