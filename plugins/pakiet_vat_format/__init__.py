"""Offline VAT-number check: each EU member state's format and check digit (python-stdnum).

It runs first (order 10) and answers only when a number is certainly wrong, so that a
typo is reported at once without asking VIES. A well-formed number gets no opinion
(``None``): only a registry can say whether it is registered.
"""

from __future__ import annotations

import datetime as dt
import re

from stdnum.eu import vat as eu_vat
from stdnum.exceptions import InvalidChecksum, InvalidLength, ValidationError

from portal.plugin_api.contracts import PluginConfig, VatCheck, VatStatus, VatValidator
from portal.plugin_api.hookspecs import hookimpl

__version__ = "1.0.0"

#: VAT-number prefixes VIES knows: the member states (Greece as EL) and Northern Ireland.
PREFIXES = frozenset(
    {"EL" if code == "gr" else code.upper() for code in eu_vat.MEMBER_STATES} | {"XI"}
)

# Greek numbers are sometimes written with the ISO code instead of VIES's EL.
_ALIASES = {"EL": ("EL", "GR")}

# What people type between the parts of a number: spaces, dots, dashes, slashes.
_SEPARATORS = re.compile(r"[\s.\-/_,]+")


class Reason:
    """Reason codes of an ``INVALID`` answer (stored with the check, shown translated)."""

    CHECKSUM = "checksum"  # the check digit does not match: a typo
    LENGTH = "length"  # too short or too long for this country
    FORMAT = "format"  # characters where this country has none (letters, a bad part)
    WRONG_PREFIX = "wrong_prefix"  # a number of another member state


def normalise(number: str) -> str:
    """Upper case, without the separators people type."""
    return _SEPARATORS.sub("", number).upper()


def _reason(exc: ValidationError) -> str:
    if isinstance(exc, InvalidChecksum):
        return Reason.CHECKSUM
    if isinstance(exc, InvalidLength):
        return Reason.LENGTH
    return Reason.FORMAT  # InvalidFormat, InvalidComponent and anything stdnum adds later


def _problem(full: str) -> str | None:
    try:
        eu_vat.validate(full)
    except ValidationError as exc:
        return _reason(exc)
    return None


class VatFormat(VatValidator):
    """Format and check digit of EU VAT numbers, offline."""

    name = "vat_format"
    order = 10
    offline = True

    def check(
        self, *, country: str, number: str, now: dt.datetime, requester: str | None = None
    ) -> VatCheck | None:
        prefix = country.strip().upper()
        if prefix not in PREFIXES:
            return None  # not an EU VAT number: nothing to say (and no VIES call)
        compact = normalise(number)
        for typed in _ALIASES.get(prefix, (prefix,)):
            if compact.startswith(typed) and _problem(compact) is None:
                compact = compact[len(typed) :]  # the prefix typed as part of the number
                break
        problem = _problem(prefix + compact)
        if problem is None:
            return None  # well-formed: whether it is registered is for VIES to say
        other = compact[:2]
        if other != prefix and other in PREFIXES and _problem(compact) is None:
            problem = Reason.WRONG_PREFIX
        return VatCheck(
            status=VatStatus.INVALID,
            country=prefix,
            number=compact,
            validator=self.name,
            checked_at=now,
            reason=problem,
        )


@hookimpl
def register_vat_validators(plugin_config: PluginConfig) -> list[VatValidator]:
    return [VatFormat()]
