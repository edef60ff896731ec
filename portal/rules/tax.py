"""Which VAT applies to a sale, and at what rate (DESIGN.md section 2).

The rates come from a TOML file with effective dates, read and validated once at
start-up; the countries it lists are the EU member states. :func:`decide` is a plain
function of the seller's and buyer's countries, the VIES verdict and the sale date.
"""

from __future__ import annotations

import re
import tomllib
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path(__file__).parent / "data" / "vat_rates.toml"

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# VAT-number prefixes that are not ISO 3166 codes: Greece uses EL, Northern Ireland XI.
_VAT_PREFIXES = {"EL": "GR", "XI": "GB"}


class VatRatesError(ValueError):
    """The VAT rates file is malformed; the message names the key."""


class BuyerCountryMissing(ValueError):
    """The buyer has no country: no VAT can be decided, and no invoice issued."""


class TaxTreatment(StrEnum):
    DOMESTIC = "domestic"  # the seller's rate
    REVERSE_CHARGE = "reverse_charge"  # EU business buyer with a VIES-valid VAT id: 0 %
    EU_CONSUMER = "eu_consumer"  # EU buyer without a valid VAT id: the buyer country's rate
    OUTSIDE_EU = "outside_eu"  # no VAT


@dataclass(frozen=True)
class TaxDecision:
    """``rate`` is a fraction (``Decimal('0.23')``); ``country`` is the member state whose
    VAT applies (the seller's, or the buyer's), None outside the EU."""

    treatment: TaxTreatment
    rate: Decimal
    country: str | None


# What an invoice cannot be issued without (DESIGN.md section 2): the buyer's country and
# address, a consumer's too. The postcode is not among them: some countries have none.
REQUIRED_FOR_INVOICE = ("company_name", "street", "city", "country")


def missing_for_invoice(billing: Any) -> tuple[str, ...]:
    """The fields of :data:`REQUIRED_FOR_INVOICE` that ``billing`` (the account's billing
    information, or None) lacks: all of them without it."""
    if billing is None:
        return REQUIRED_FOR_INVOICE
    return tuple(
        name for name in REQUIRED_FOR_INVOICE if not (getattr(billing, name) or "").strip()
    )


def new_taxable_person(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """Whether a change of billing data names another taxable person or may change the tax
    treatment: another country, or a VAT number added, removed or replaced. That is no
    correction of the buyer's data (art. 106j ust. 2): the last invoice is corrected to
    zero and issued again to the new buyer."""
    return any(
        (before.get(name) or None) != (after.get(name) or None)
        for name in ("country", "vat_number")
    )


def country_code(code: str) -> str:
    """The ISO 3166 code for a country code or VAT-number prefix (EL -> GR, XI -> GB)."""
    normalised = code.strip().upper()
    if not _COUNTRY.match(normalised):
        raise ValueError(f"not a two-letter country code: {code!r}")
    return _VAT_PREFIXES.get(normalised, normalised)


@dataclass(frozen=True)
class VatRates:
    """Standard rates per member state: ``(effective date, fraction)`` in date order."""

    history: Mapping[str, tuple[tuple[date, Decimal], ...]]

    def is_member(self, country: str) -> bool:
        return country_code(country) in self.history

    def rate(self, country: str, on: date) -> Decimal:
        """The standard rate in force in ``country`` on ``on``, as a fraction."""
        code = country_code(country)
        if code not in self.history:
            raise LookupError(f"{code} is not an EU member state; it has no EU VAT rate")
        entries = self.history[code]
        index = bisect_right([start for start, _ in entries], on)
        if index == 0:
            raise LookupError(f"no VAT rate for {code} before {entries[0][0].isoformat()}")
        return entries[index - 1][1]


def decide(
    *,
    seller_country: str,
    buyer_country: str | None,
    vat_number_valid: bool,
    on: date,
    rates: VatRates,
) -> TaxDecision:
    """The VAT treatment of a sale of services on ``on``.

    A buyer of unknown country (None or blank) raises :class:`BuyerCountryMissing`: the
    seller's country is never assumed (DESIGN.md section 2, no invoice without the buyer's
    country), so the checkout asks for it before Pay.
    """
    seller = country_code(seller_country)
    if not rates.is_member(seller):
        raise ValueError(f"the seller's country {seller} is not an EU member state")
    if not buyer_country or not buyer_country.strip():
        raise BuyerCountryMissing("the buyer's country is not known")
    buyer = country_code(buyer_country)
    if buyer == seller:
        return TaxDecision(TaxTreatment.DOMESTIC, rates.rate(seller, on), seller)
    if not rates.is_member(buyer):
        return TaxDecision(TaxTreatment.OUTSIDE_EU, Decimal(0), None)
    if vat_number_valid:
        return TaxDecision(TaxTreatment.REVERSE_CHARGE, Decimal(0), buyer)
    return TaxDecision(TaxTreatment.EU_CONSUMER, rates.rate(buyer, on), buyer)


# -- loading ------------------------------------------------------------------------


def _percentage(raw: Any, where: str) -> Decimal:
    if not isinstance(raw, str):
        raise VatRatesError(f"{where}: expected a percentage as a string, got {raw!r}")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise VatRatesError(f"{where}: not a number: {raw!r}") from None
    if not value.is_finite() or not Decimal(0) <= value < Decimal(100):
        raise VatRatesError(f"{where}: expected a percentage from 0 to below 100, got {raw!r}")
    return value.scaleb(-2)


def _effective_date(raw: str, where: str) -> date:
    problem = f"{where}: expected a date as YYYY-MM-DD, got {raw!r}"
    if not _ISO_DATE.match(raw):
        raise VatRatesError(problem)
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise VatRatesError(problem) from None


def _country_history(code: str, table: Any) -> tuple[tuple[date, Decimal], ...]:
    where = f"standard.{code}"
    if code in _VAT_PREFIXES:
        iso = _VAT_PREFIXES[code]
        raise VatRatesError(f"{where}: {code} is a VAT-number prefix; use the ISO code {iso}")
    if not _COUNTRY.match(code):
        raise VatRatesError(f"{where}: expected a two-letter ISO country code")
    if not isinstance(table, dict) or not table:
        raise VatRatesError(f'{where}: expected a table of {{ YYYY-MM-DD = "rate" }}')
    entries = [
        (_effective_date(key, f"{where}.{key}"), _percentage(raw, f"{where}.{key}"))
        for key, raw in table.items()
    ]
    return tuple(sorted(entries))


def parse_vat_rates(data: dict[str, Any]) -> VatRates:
    """Build and validate the rates from parsed TOML."""
    standard = data.get("standard")
    if not isinstance(standard, dict) or not standard:
        raise VatRatesError("standard: expected a table of country codes")
    return VatRates({code: _country_history(code, table) for code, table in standard.items()})


def load_vat_rates(path: str | Path = DEFAULT_PATH) -> VatRates:
    """Read and validate the rates file; raise :class:`VatRatesError` naming the file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise VatRatesError(f"{path}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise VatRatesError(f"{path}: not valid TOML ({exc})") from None
    try:
        return parse_vat_rates(data)
    except VatRatesError as exc:
        raise VatRatesError(f"{path}: {exc}") from None
