"""Transfer24: online bank transfers (redirect and notify, like BLIK or Przelewy24).

A third party's plugin, kept under tests/ as a real distribution
(``pakiet_transfer24-0.3.0.dist-info`` beside it) to prove that the payment contract
is enough for an outsider. It uses nothing of Pakiet but ``portal.plugin_api.contracts``,
``portal.plugin_api.hookspecs`` and ``portal.rules.money``.
"""

from __future__ import annotations

from portal.plugin_api.contracts import PaymentProvider, PluginConfig
from portal.plugin_api.hookspecs import hookimpl

from .provider import Transfer24Provider

__version__ = "0.3.0"


@hookimpl
def register_payment_providers(plugin_config: PluginConfig) -> list[PaymentProvider]:
    config = plugin_config("transfer24")
    if not config.get("api_key") or config.get("enabled") is False:
        return []
    return [Transfer24Provider(config)]
