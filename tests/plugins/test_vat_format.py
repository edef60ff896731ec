"""The offline VAT-number check (pakiet_vat_format, python-stdnum): typos are caught at
once, well-formed numbers are left to VIES, and numbers outside the EU are not judged."""

from __future__ import annotations

import datetime as dt

import pytest

from pakiet_vat_format import PREFIXES, VatFormat, normalise
from portal.plugin_api.contracts import VatStatus

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def check(country: str, number: str):
    return VatFormat().check(country=country, number=number, now=NOW)


@pytest.mark.parametrize(
    ("country", "number"),
    [
        ("PL", "5260250274"),  # NIP, weighted mod 11
        ("CZ", "86756508"),  # DIČ of a legal person, 8 digits
        ("DE", "812415868"),  # USt-IdNr., ISO 7064 mod 11,10
        ("EL", "435189991"),  # Greece is EL in VIES, not GR
        ("XI", "980780684"),  # Northern Ireland, UK check digits
        ("FR", "40303265045"),
        ("AT", "U13585627"),
    ],
)
def test_well_formed_numbers_get_no_opinion_so_that_vies_decides(country, number):
    assert check(country, number) is None


@pytest.mark.parametrize(
    ("country", "number", "reason"),
    [
        ("PL", "5260250275", "checksum"),  # last digit changed
        ("CZ", "86756509", "checksum"),
        ("DE", "812415869", "checksum"),
        ("EL", "435189992", "checksum"),
        ("XI", "980780685", "checksum"),
        ("PL", "526025027", "length"),  # one digit short
        ("DE", "8124158680", "length"),
        ("CZ", "1234567890123", "length"),
        ("PL", "52602502A4", "format"),  # a letter where Poland has digits
        ("PL", "DE812415868", "wrong_prefix"),  # a German number for a Polish buyer
        ("CZ", "PL5260250274", "wrong_prefix"),
    ],
)
def test_mistyped_numbers_are_invalid_with_a_reason(country, number, reason):
    answer = check(country, number)
    assert answer is not None
    assert (answer.status, answer.reason, answer.validator) == (
        VatStatus.INVALID,
        reason,
        "vat_format",
    )
    assert answer.country == country and answer.checked_at == NOW


@pytest.mark.parametrize(
    "typed",
    ["pl 526 025 02 74", "526-025-02-74", "526.025.02.74", "PL-526-025-02-74", "pl5260250274"],
)
def test_spaces_dots_dashes_and_lower_case_are_normalised(typed):
    assert check("PL", typed) is None
    assert normalise(typed).removeprefix("PL") == "5260250274"


def test_greek_numbers_may_be_typed_with_el_or_gr():
    assert check("EL", "EL435189991") is None
    assert check("EL", "GR435189991") is None


def test_vies_prefixes_are_the_member_states_with_el_and_xi():
    assert len(PREFIXES) == 28
    assert {"EL", "XI", "PL", "DE", "CZ"} <= PREFIXES
    assert "GR" not in PREFIXES and "GB" not in PREFIXES


@pytest.mark.parametrize(
    ("country", "number"),
    [("GB", "980780684"), ("US", "123456789"), ("CH", "E123456789"), ("NO", "123456785")],
)
def test_numbers_outside_the_eu_get_no_opinion(country, number):
    assert check(country, number) is None


def test_the_plugin_is_an_offline_validator_that_runs_first(app):
    from portal.plugin_api.registry import registry

    validators = registry(app).vat_validators
    names = [v.name for v in validators]
    assert names[:2] == ["vat_format", "vies"]
    assert validators[0].offline and not validators[1].offline
