"""Built-in PayPal payments (rule R8): Orders v2 through PayPal's ``paypal-server-sdk``.

Settings (``PLUGIN_CONFIG["paypal"]``): ``client_id``, ``client_secret``, ``base_url``
(default PayPal live, ``https://api-m.paypal.com``; the emulator in
:mod:`pakiet_paypal.emulator` for tests and the demo), ``webhook_id``, ``timeout``
(seconds, default 10), ``brand_name`` (shown on PayPal's page, default ``Pakiet``) and
``enabled``. Without a ``client_id`` the plugin offers nothing.
"""

from __future__ import annotations

from pakiet_paypal.client import PayPalProvider
from portal.plugin_api.contracts import PaymentProvider, PluginConfig
from portal.plugin_api.hookspecs import hookimpl

__version__ = "1.0.0"
__all__ = ["PayPalProvider", "register_payment_providers"]


@hookimpl
def register_payment_providers(plugin_config: PluginConfig) -> list[PaymentProvider]:
    config = plugin_config("paypal")
    if not config.get("enabled", True) or not config.get("client_id"):
        return []
    return [PayPalProvider(config)]
