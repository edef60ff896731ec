"""PayByLink: a payment link the customer opens and pays at the bank (redirect only).

A second third party's plugin, kept under tests/ as a real distribution
(``pakiet_paybylink-0.1.0.dist-info`` beside it). Unlike a card provider it cannot keep a
method for renewals: it declares that (``renewable_brands`` empty), and its customers pay
each renewal by hand on the portal's renewal page. It uses nothing of Pakiet but the
plugin API, ``portal.rules.money`` and the emulator kit ``portal.testing.emulator``.
"""

from __future__ import annotations

from portal.plugin_api.contracts import PaymentProvider, PluginConfig
from portal.plugin_api.hookspecs import hookimpl

from .provider import PayByLinkProvider

__version__ = "0.1.0"
PAKIET_API = (1, 2)  # declared capabilities (renewable_brands, can_refund)


@hookimpl
def register_payment_providers(plugin_config: PluginConfig) -> list[PaymentProvider]:
    config = plugin_config("paybylink")
    if not config.get("merchant_id") or config.get("enabled") is False:
        return []
    return [PayByLinkProvider(config)]
