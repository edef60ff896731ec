"""The bundled plugins pass the kit's conformance checks (portal.testing.conformance)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pakiet_currencies import CURRENCIES
from pakiet_vat_format import VatFormat
from portal.plugin_api.contracts import CurrencySpec
from portal.testing.conformance import currency_checks, vat_validator_checks

CURRENCY_CHECKS = [
    pytest.param(check, id=f"{spec.code}-{name}")
    for spec in CURRENCIES
    for name, check in currency_checks(spec)
]


@pytest.mark.parametrize("check", CURRENCY_CHECKS)
def test_bundled_currencies_conform(check: Callable[[], None]) -> None:
    check()


@pytest.mark.parametrize(
    ("name", "check"),
    list(vat_validator_checks(VatFormat(), country="PL", valid="5260250274", invalid="5260250275")),
)
def test_the_offline_vat_validator_conforms(name: str, check: Callable[[], None]) -> None:
    check()


def test_a_currency_that_breaks_iso_4217_fails_its_check() -> None:
    wrong = CurrencySpec("HUF", 0, {"pl": "forint", "en": "forint"})  # CLDR's, not ISO's
    checks = dict(currency_checks(wrong))
    checks["code_is_iso"]()
    with pytest.raises(AssertionError, match="HUF: minor_units 0, ISO 4217 says 2"):
        checks["minor_units_agree_with_iso"]()
