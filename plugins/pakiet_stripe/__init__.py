"""Built-in payment provider: Visa and Mastercard through Stripe (rule R8).

Settings (``PLUGIN_CONFIG["stripe"]``): ``api_key`` (``sk_test_...``), ``webhook_secret``
(``whsec_...``), ``api_base`` (default ``https://api.stripe.com``; point it at
:mod:`pakiet_stripe.emulator` for tests and the demo), ``timeout`` in seconds (10),
``max_network_retries`` (2), ``webhook_tolerance`` in seconds (300) and ``enabled``.
Without an ``api_key`` the provider is not offered.
"""

from __future__ import annotations

from pakiet_stripe.client import StripeProvider
from portal.plugin_api.contracts import PaymentProvider, PluginConfig
from portal.plugin_api.hookspecs import hookimpl

__version__ = "1.0.0"

__all__ = ["StripeProvider", "register_payment_providers"]


@hookimpl
def register_payment_providers(plugin_config: PluginConfig) -> list[PaymentProvider]:
    config = plugin_config("stripe")
    if config.get("enabled") is False or not config.get("api_key"):
        return []
    return [StripeProvider(config)]
