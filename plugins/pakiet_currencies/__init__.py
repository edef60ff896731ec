"""Built-in currencies: PLN, EUR, USD and CZK (rule R3)."""

from __future__ import annotations

from portal.plugin_api.contracts import CurrencySpec, PluginConfig
from portal.plugin_api.hookspecs import hookimpl

__version__ = "1.0.0"

CURRENCIES = (
    CurrencySpec("PLN", 2, {"pl": "złoty polski", "en": "Polish złoty"}),
    CurrencySpec("EUR", 2, {"pl": "euro", "en": "euro"}),
    CurrencySpec("USD", 2, {"pl": "dolar amerykański", "en": "US dollar"}),
    CurrencySpec("CZK", 2, {"pl": "korona czeska", "en": "Czech koruna"}),
)


@hookimpl
def register_currencies(plugin_config: PluginConfig) -> list[CurrencySpec]:
    enabled = plugin_config("currencies").get("enabled")
    return [c for c in CURRENCIES if enabled is None or c.code in enabled]
