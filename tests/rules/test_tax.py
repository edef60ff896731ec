"""VAT treatment (DESIGN.md section 2) and the dated rates file it reads."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from portal.rules.tax import (
    BuyerCountryMissing,
    TaxDecision,
    TaxTreatment,
    VatRatesError,
    decide,
    load_vat_rates,
)

RATES = load_vat_rates()
ON = date(2025, 3, 1)

DOMESTIC, REVERSE, CONSUMER, OUTSIDE = (
    TaxTreatment.DOMESTIC,
    TaxTreatment.REVERSE_CHARGE,
    TaxTreatment.EU_CONSUMER,
    TaxTreatment.OUTSIDE_EU,
)

EU_MEMBERS = (
    "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split()
)


@pytest.mark.parametrize(
    ("seller", "buyer", "vat_valid", "on", "expected"),
    [
        pytest.param("PL", "PL", False, ON, TaxDecision(DOMESTIC, Decimal("0.23"), "PL"), id="pl"),
        pytest.param(
            "PL", "PL", True, ON, TaxDecision(DOMESTIC, Decimal("0.23"), "PL"), id="pl-vat-id"
        ),
        pytest.param(
            "PL", " pl ", False, ON, TaxDecision(DOMESTIC, Decimal("0.23"), "PL"), id="pl-lower"
        ),
        pytest.param("PL", "DE", True, ON, TaxDecision(REVERSE, Decimal(0), "DE"), id="de-vat-id"),
        pytest.param(
            "PL", "DE", False, ON, TaxDecision(CONSUMER, Decimal("0.19"), "DE"), id="de-consumer"
        ),
        pytest.param(
            "PL", "EL", False, ON, TaxDecision(CONSUMER, Decimal("0.24"), "GR"), id="el-consumer"
        ),
        pytest.param(
            "PL", "GR", False, ON, TaxDecision(CONSUMER, Decimal("0.24"), "GR"), id="gr-consumer"
        ),
        pytest.param("PL", "EL", True, ON, TaxDecision(REVERSE, Decimal(0), "GR"), id="el-vat-id"),
        pytest.param("PL", "US", False, ON, TaxDecision(OUTSIDE, Decimal(0), None), id="us"),
        pytest.param("PL", "US", True, ON, TaxDecision(OUTSIDE, Decimal(0), None), id="us-tax-id"),
        # Northern Ireland is in the EU VAT area for goods only; this portal sells services.
        pytest.param("PL", "XI", True, ON, TaxDecision(OUTSIDE, Decimal(0), None), id="xi"),
        pytest.param("PL", "GB", False, ON, TaxDecision(OUTSIDE, Decimal(0), None), id="gb"),
        pytest.param(
            "PL",
            "FI",
            False,
            date(2024, 8, 31),
            TaxDecision(CONSUMER, Decimal("0.24"), "FI"),
            id="fi-consumer-before-rise",
        ),
        pytest.param(
            "PL",
            "FI",
            False,
            date(2024, 9, 1),
            TaxDecision(CONSUMER, Decimal("0.255"), "FI"),
            id="fi-consumer-after-rise",
        ),
        pytest.param("CZ", "CZ", False, ON, TaxDecision(DOMESTIC, Decimal("0.21"), "CZ"), id="cz"),
        pytest.param(
            "CZ", "PL", False, ON, TaxDecision(CONSUMER, Decimal("0.23"), "PL"), id="cz-seller-pl"
        ),
        pytest.param(
            "EL", "GR", True, ON, TaxDecision(DOMESTIC, Decimal("0.24"), "GR"), id="el-seller-gr"
        ),
        pytest.param(
            "SK",
            "SK",
            False,
            date(2025, 1, 1),
            TaxDecision(DOMESTIC, Decimal("0.23"), "SK"),
            id="sk-seller-after-rise",
        ),
    ],
)
def test_decide(
    seller: str, buyer: str | None, vat_valid: bool, on: date, expected: TaxDecision
) -> None:
    decision = decide(
        seller_country=seller, buyer_country=buyer, vat_number_valid=vat_valid, on=on, rates=RATES
    )
    assert decision == expected


@pytest.mark.parametrize("buyer", [None, "", " "])
def test_a_buyer_without_a_country_is_never_taxed_as_the_sellers(buyer: str | None) -> None:
    """Issue 23, point 5: no VAT is decided, and so nothing sold, without the country."""
    with pytest.raises(BuyerCountryMissing):
        decide(seller_country="PL", buyer_country=buyer, vat_number_valid=False, on=ON, rates=RATES)


def test_seller_outside_the_eu_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="GB is not an EU member state"):
        decide(seller_country="GB", buyer_country="PL", vat_number_valid=False, on=ON, rates=RATES)


def test_country_must_be_a_two_letter_code() -> None:
    with pytest.raises(ValueError, match="two-letter country code"):
        decide(
            seller_country="PL",
            buyer_country="Poland",
            vat_number_valid=False,
            on=ON,
            rates=RATES,
        )


@pytest.mark.parametrize(
    ("country", "on", "rate"),
    [
        pytest.param("EE", date(2025, 6, 30), "0.22", id="ee-before"),
        pytest.param("EE", date(2025, 7, 1), "0.24", id="ee-from"),
        pytest.param("FI", date(2024, 8, 31), "0.24", id="fi-before"),
        pytest.param("FI", date(2024, 9, 1), "0.255", id="fi-from"),
        pytest.param("RO", date(2025, 7, 31), "0.19", id="ro-before"),
        pytest.param("RO", date(2025, 8, 1), "0.21", id="ro-from"),
        pytest.param("SK", date(2024, 12, 31), "0.20", id="sk-before"),
        pytest.param("SK", date(2025, 1, 1), "0.23", id="sk-from"),
        pytest.param("PL", date(2024, 1, 1), "0.23", id="pl-first-day-of-data"),
        pytest.param("EL", ON, "0.24", id="el-is-greece"),
    ],
)
def test_rate_in_force_on_a_date(country: str, on: date, rate: str) -> None:
    assert RATES.rate(country, on) == Decimal(rate)


def test_all_member_states_and_only_them() -> None:
    assert sorted(RATES.history) == sorted(EU_MEMBERS)
    assert RATES.is_member("EL") and not RATES.is_member("XI")


def test_no_rate_before_the_data_starts() -> None:
    with pytest.raises(LookupError, match="no VAT rate for PL before 2024-01-01"):
        RATES.rate("PL", date(2023, 12, 31))


def test_no_rate_outside_the_eu() -> None:
    with pytest.raises(LookupError, match="US is not an EU member state"):
        RATES.rate("US", ON)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("standard = [", "not valid TOML", id="not-toml"),
        pytest.param("[other]\n", "standard: expected a table of country codes", id="no-table"),
        pytest.param(
            'PL = { 2024-01-01 = "23" }\n',
            "standard: expected a table of country codes",
            id="no-standard-header",
        ),
        pytest.param(
            "[standard]\nPL = { 2024-01-01 = 23.0 }\n",
            "standard.PL.2024-01-01: expected a percentage as a string, got 23.0",
            id="float-rate",
        ),
        pytest.param(
            '[standard]\nPL = { 2024-01-01 = "23%" }\n',
            "standard.PL.2024-01-01: not a number",
            id="not-a-number",
        ),
        pytest.param(
            '[standard]\nPL = { 2024-01-01 = "100" }\n',
            "standard.PL.2024-01-01: expected a percentage from 0 to below 100",
            id="rate-too-high",
        ),
        pytest.param(
            '[standard]\nPL = { 2024-01-01 = "NaN" }\n',
            "standard.PL.2024-01-01: expected a percentage from 0 to below 100",
            id="rate-nan",
        ),
        pytest.param(
            '[standard]\nPL = { 2024-13-01 = "23" }\n',
            "standard.PL.2024-13-01: expected a date as YYYY-MM-DD",
            id="bad-month",
        ),
        pytest.param(
            '[standard]\nPL = { 20240101 = "23" }\n',
            "standard.PL.20240101: expected a date as YYYY-MM-DD",
            id="compact-date",
        ),
        pytest.param(
            '[standard]\nEL = { 2024-01-01 = "24" }\n',
            "standard.EL: EL is a VAT-number prefix; use the ISO code GR",
            id="el-instead-of-gr",
        ),
        pytest.param(
            '[standard]\nPOL = { 2024-01-01 = "23" }\n',
            "standard.POL: expected a two-letter ISO country code",
            id="three-letter-code",
        ),
        pytest.param("[standard]\nPL = {}\n", "standard.PL: expected a table", id="empty-history"),
        pytest.param('[standard]\nPL = "23"\n', "standard.PL: expected a table", id="bare-rate"),
    ],
)
def test_load_errors_name_the_file_and_key(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "vat_rates.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(VatRatesError, match=re.escape(f"{path}: {message}")):
        load_vat_rates(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    with pytest.raises(VatRatesError, match=re.escape(f"{path}: cannot be read")):
        load_vat_rates(path)


def test_history_may_be_written_in_any_order(tmp_path: Path) -> None:
    path = tmp_path / "vat_rates.toml"
    path.write_text('[standard]\nSK = { 2025-01-01 = "23", 2024-01-01 = "20" }\n', "utf-8")
    rates = load_vat_rates(path)
    assert (rates.rate("SK", date(2024, 6, 1)), rates.rate("SK", ON)) == (
        Decimal("0.20"),
        Decimal("0.23"),
    )
