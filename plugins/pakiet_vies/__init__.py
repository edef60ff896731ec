"""VAT numbers checked in the EU's VIES (its REST API), rule R15.

Settings (``PLUGIN_CONFIG["vies"]``):

``base_url``
    the VIES REST API; default the real one. The emulator in :mod:`pakiet_vies.emulator`
    speaks the same API for tests and the demo.
``timeout``
    seconds one check may take in total, default 5. The billing page waits for it, so
    keep it short: a number VIES cannot confirm in time is retried later.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pakiet_vies.client import (
    DEFAULT_BASE_URL,
    DEFAULT_TIMEOUT,
    Outcome,
    ViesAnswer,
    ViesClient,
)
from portal.plugin_api.contracts import PluginConfig, VatCheck, VatStatus, VatValidator
from portal.plugin_api.hookspecs import hookimpl
from portal.plugin_api.http import service_settings

PAKIET_API = (1, 2)  # VatCheck.registry: VIES names itself on every answer

__version__ = "1.0.0"

#: The prefixes VIES answers for: the 27 member states (Greece as EL) and Northern Ireland.
PREFIXES = frozenset(
    "AT BE BG CY CZ DE DK EE EL ES FI FR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK XI".split()
)
_STATUS = {
    Outcome.VALID: VatStatus.VALID,
    Outcome.INVALID: VatStatus.INVALID,
    Outcome.UNAVAILABLE: VatStatus.UNAVAILABLE,
}
# VIES dates its answers; a date this far from core's clock is not trusted as the proof's.
_CLOCK_TOLERANCE = dt.timedelta(days=1)


def requester_parts(requester: str | None) -> tuple[str, str] | None:
    """``"PL5260250274"`` -> ``("PL", "5260250274")``; ``None`` unless VIES knows the prefix."""
    if not requester:
        return None
    compact = "".join(requester.split()).upper()
    prefix, number = compact[:2], compact[2:]
    if prefix == "GR":
        prefix = "EL"
    return (prefix, number) if prefix in PREFIXES and number else None


class ViesValidator(VatValidator):
    """Asks VIES; answers for EU numbers only (other numbers are not VIES's to judge)."""

    name = "vies"
    order = 50

    def __init__(self, client: ViesClient) -> None:
        self.client = client

    def check(
        self, *, country: str, number: str, now: dt.datetime, requester: str | None = None
    ) -> VatCheck | None:
        prefix = country.strip().upper()
        if prefix not in PREFIXES:
            return None
        national = "".join(number.split()).upper()
        answer = self.client.check(prefix, national, requester=requester_parts(requester))
        return VatCheck(
            status=_STATUS[answer.outcome],
            country=prefix,
            number=national,
            validator=self.name,
            checked_at=_checked_at(answer, now),
            consultation_number=answer.request_identifier,
            name=answer.name,
            address=answer.address,
            reason=answer.reason,
            registry="VIES",
        )


def _checked_at(answer: ViesAnswer, now: dt.datetime) -> dt.datetime:
    date = answer.request_date
    if date is not None and abs(date - now) <= _CLOCK_TOLERANCE:
        return date.astimezone(dt.UTC)
    return now


def settings(config: Mapping[str, Any]) -> tuple[str, float]:
    """``(base_url, timeout)`` from the plugin's settings, checked."""
    return service_settings(
        "vies", config, default_base_url=DEFAULT_BASE_URL, default_timeout=DEFAULT_TIMEOUT
    )


@hookimpl
def register_vat_validators(plugin_config: PluginConfig) -> list[VatValidator]:
    base_url, timeout = settings(plugin_config("vies"))
    return [ViesValidator(ViesClient(base_url, timeout))]
