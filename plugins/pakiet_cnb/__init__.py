"""Exchange rates into CZK from the Czech National Bank (ČNB), for a Czech seller.

Answers ``get_exchange_rate(base, quote="CZK", ...)`` for every currency of ČNB's daily
fixing with the rate of one unit (``Rate / Amount``: HUF, JPY and others are fixed per 100)
in the fixing in force on the sale date, the tax-point day (§ 4 odst. 5 ZDPH): that day's
own fixing (declared after 14:30 Prague time; until then the invoice waits), or on a
weekend or holiday the last one declared before it. Any other pair
(including ``CZK`` to ``CZK``) it passes with ``None``.

Settings (``PLUGIN_CONFIG["cnb"]``):

``enabled``
    ``True`` (default) or ``False`` to pass every pair.
``base_url``
    ČNB's web site; default the real one, ``https://www.cnb.cz``. The emulator in
    :mod:`pakiet_cnb.emulator` serves the same file for tests and the demo.
``timeout``
    seconds one rate may take in total; default 5.

ČNB unreachable, answering 5xx or garbage, or the fixing not declared yet: a retryable
:class:`~portal.plugin_api.contracts.ProviderError`. A currency missing from the fixing: a
non-retryable one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pakiet_cnb.client import CURRENCIES, DEFAULT_BASE_URL, DEFAULT_TIMEOUT, CnbClient
from portal.plugin_api.contracts import ExchangeRate, PluginConfig
from portal.plugin_api.hookspecs import hookimpl
from portal.plugin_api.http import Clients, enabled_setting, service_settings

__version__ = "1.0.0"

SOURCE = "ČNB"
QUOTE = "CZK"

# One client per (base_url, timeout), kept for the process: its cache of published fixings
# outlives a single hook call.
_clients = Clients(CnbClient)


def settings(config: Mapping[str, Any]) -> tuple[bool, str, float]:
    """``(enabled, base_url, timeout)`` from the plugin's settings, checked."""
    enabled = enabled_setting("cnb", config)
    base_url, timeout = service_settings(
        "cnb", config, default_base_url=DEFAULT_BASE_URL, default_timeout=DEFAULT_TIMEOUT
    )
    return enabled, base_url, timeout


def client(base_url: str = DEFAULT_BASE_URL, timeout: float = DEFAULT_TIMEOUT) -> CnbClient:
    """The process's client for ``base_url`` (created on first use)."""
    return _clients.get(base_url, timeout)


def forget_clients() -> None:
    """Drop every client and so its cache (tests whose emulators reuse a port)."""
    _clients.clear()


def rate_on(cnb: CnbClient, base: str, on_date: dt.date) -> ExchangeRate:
    """``1 base = rate CZK`` from the fixing in force on ``on_date`` (the tax-point day);
    ``table`` is the fixing's serial number of its year (``"229"``)."""
    found = cnb.rate_on(base, on_date)
    return ExchangeRate(
        base=base,
        quote=QUOTE,
        rate=found.rate,
        effective_date=found.effective_date,
        source=SOURCE,
        table=str(found.serial),
    )


@hookimpl
def get_exchange_rate(
    base: str, quote: str, on_date: dt.date, plugin_config: PluginConfig
) -> ExchangeRate | None:
    if quote != QUOTE or base not in CURRENCIES:
        return None
    enabled, base_url, timeout = settings(plugin_config("cnb"))
    if not enabled:
        return None
    return rate_on(client(base_url, timeout), base, on_date)
