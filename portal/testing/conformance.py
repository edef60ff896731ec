"""Conformance checks a currency or a VAT validator runs against itself.

Each function yields ``(name, check)`` pairs; a check is a function of no arguments that
raises :class:`AssertionError` with a message when the object breaks the contract. Use them
in a parametrised test of your own distribution::

    @pytest.mark.parametrize(("name", "check"), list(currency_checks(MY_SPEC)))
    def test_my_currency_conforms(name, check):
        check()
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

from babel.numbers import is_currency

from portal.plugin_api.contracts import CurrencySpec, VatCheck, VatStatus, VatValidator
from portal.rules.money import minor_units

Check = tuple[str, Callable[[], None]]


def currency_checks(spec: CurrencySpec) -> Iterator[Check]:
    """What every :class:`CurrencySpec` must satisfy for the registry to accept it."""

    def code_is_iso() -> None:
        assert spec.code.isupper() and is_currency(spec.code), f"{spec.code!r} is not ISO 4217"

    def minor_units_agree_with_iso() -> None:
        expected = minor_units(spec.code)  # ISO 4217's table, not CLDR's (HUF: 2, not 0)
        assert spec.minor_units == expected, (
            f"{spec.code}: minor_units {spec.minor_units}, ISO 4217 says {expected}"
        )

    def named_in_both_languages() -> None:
        missing = {"pl", "en"} - {k for k, v in spec.names.items() if v}
        assert not missing, f"{spec.code}: no name in {sorted(missing)}"

    yield "code_is_iso", code_is_iso
    yield "minor_units_agree_with_iso", minor_units_agree_with_iso
    yield "named_in_both_languages", named_in_both_languages


def vat_validator_checks(
    validator: VatValidator, *, country: str, valid: str, invalid: str
) -> Iterator[Check]:
    """What every :class:`VatValidator` must do, given one number of ``country`` it should
    accept (``valid``) and one it should refuse (``invalid``)."""
    now = dt.datetime(2026, 5, 4, 10, 30, tzinfo=dt.UTC)

    def answer(number: str) -> VatCheck | None:
        result = validator.check(country=country, number=number, now=now)
        assert result is None or isinstance(result, VatCheck), f"returned {result!r}"
        return result

    def has_a_name() -> None:
        assert isinstance(validator.name, str) and validator.name, "no name"
        assert isinstance(validator.order, int), "order is not an int"

    def accepts_the_valid_number() -> None:
        result = answer(valid)
        if validator.offline and result is None:
            return  # a form check may only say "not mistyped": no opinion
        assert result is not None and result.status == VatStatus.VALID, result
        assert (result.country, result.number) == (country, valid), result
        assert result.validator == validator.name, result

    def refuses_the_invalid_number() -> None:
        result = answer(invalid)
        assert result is not None and result.status == VatStatus.INVALID, result

    def passes_on_a_country_it_does_not_know() -> None:
        result = validator.check(country="QQ", number="123", now=now)
        assert result is None or result.status == VatStatus.UNAVAILABLE, result

    yield "has_a_name", has_a_name
    yield "accepts_the_valid_number", accepts_the_valid_number
    yield "refuses_the_invalid_number", refuses_the_invalid_number
    yield "passes_on_a_country_it_does_not_know", passes_on_a_country_it_does_not_know
