"""Exchange rates into PLN from the National Bank of Poland (NBP), for a Polish seller.

Answers ``get_exchange_rate(base, quote="PLN", ...)`` for every currency of NBP's table A
with the mid rate of the last working day before the sale date (the rule of Polish VAT):
it asks for the day before and steps back over each day NBP has no table for. Any other
pair (including ``PLN`` to ``PLN``) it passes with ``None``.

Settings (``PLUGIN_CONFIG["nbp"]``):

``enabled``
    ``True`` (default) or ``False`` to pass every pair.
``base_url``
    the NBP Web API; default the real one, ``https://api.nbp.pl``. The emulator in
    :mod:`pakiet_nbp.emulator` speaks the same API for tests and the demo.
``timeout``
    seconds one rate may take in total, however many days it steps back; default 5.

NBP unreachable, answering 5xx or garbage, or the table not out yet: a retryable
:class:`~portal.plugin_api.contracts.ProviderError`. No table in ten days: a non-retryable one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pakiet_nbp.client import DEFAULT_BASE_URL, DEFAULT_TIMEOUT, TABLE_A, NbpClient
from portal.plugin_api.contracts import ExchangeRate, PluginConfig
from portal.plugin_api.hookspecs import hookimpl
from portal.plugin_api.http import Clients, enabled_setting, service_settings

__version__ = "1.0.0"

SOURCE = "NBP"
QUOTE = "PLN"

# One client per (base_url, timeout), kept for the process: its cache of published rates
# outlives a single hook call.
_clients = Clients(NbpClient)


def settings(config: Mapping[str, Any]) -> tuple[bool, str, float]:
    """``(enabled, base_url, timeout)`` from the plugin's settings, checked."""
    enabled = enabled_setting("nbp", config)
    base_url, timeout = service_settings(
        "nbp", config, default_base_url=DEFAULT_BASE_URL, default_timeout=DEFAULT_TIMEOUT
    )
    return enabled, base_url, timeout


def client(base_url: str = DEFAULT_BASE_URL, timeout: float = DEFAULT_TIMEOUT) -> NbpClient:
    """The process's client for ``base_url`` (created on first use)."""
    return _clients.get(base_url, timeout)


def forget_clients() -> None:
    """Drop every client and so its cache (tests whose emulators reuse a port)."""
    _clients.clear()


def rate_before(nbp: NbpClient, base: str, on_date: dt.date) -> ExchangeRate:
    """``1 base = rate PLN`` from the table of the last working day before ``on_date``."""
    found = nbp.rate_before(base, on_date)
    return ExchangeRate(
        base=base,
        quote=QUOTE,
        rate=found.mid,
        effective_date=found.effective_date,
        source=SOURCE,
        table=found.table_no,
    )


@hookimpl
def get_exchange_rate(
    base: str, quote: str, on_date: dt.date, plugin_config: PluginConfig
) -> ExchangeRate | None:
    if quote != QUOTE or base not in TABLE_A:
        return None
    enabled, base_url, timeout = settings(plugin_config("nbp"))
    if not enabled:
        return None
    return rate_before(client(base_url, timeout), base, on_date)
