"""Money as an integer number of minor units plus an ISO 4217 currency code.

Floats are refused everywhere: an amount is built from an ``int`` of minor units, or
parsed from a ``Decimal``/``str`` that must be exact to the currency's minor unit.
Multiplying by a ``Decimal``, ``Fraction`` or ``int`` rounds once, half-up (away from
zero on a tie), to the minor unit. Adding or comparing two currencies is an error.
"""

from __future__ import annotations

import re
from copy import copy
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache, total_ordering

from babel import Locale


class CurrencyMismatch(ValueError):
    """Arithmetic or comparison between amounts in different currencies."""


# ISO 4217 minor units of the currencies that do not have two (list one, 2024). CLDR's
# "digits", which Babel reports, are display habits and drift between releases (Babel 2.19
# gives HUF 0 where ISO 4217 says 2), so money is never counted by them.
_ISO_MINOR_UNITS = {
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
}


def minor_units(currency: str) -> int:
    """Number of decimal digits of the currency's minor unit (ISO 4217)."""
    return _ISO_MINOR_UNITS.get(currency, 2)


@lru_cache(maxsize=4096)
def _format(minor: int, currency: str, locale: str) -> str:
    """Babel's currency formatting is slow and pure: pages list the same amounts often.
    Always with the currency's ISO minor units: every amount shown is the amount charged,
    never rounded to CLDR's display digits."""
    units = minor_units(currency)
    amount = Decimal(f"{minor}E-{units}")
    pattern = copy(Locale.parse(locale).currency_formats["standard"])
    pattern.frac_prec = (units, units)
    text = pattern.apply(amount, locale, currency=currency, currency_digits=False)
    text = _LETTER_THEN_DIGIT.sub("\N{NO-BREAK SPACE}", text)
    return _DIGIT_THEN_LETTER.sub("\N{NO-BREAK SPACE}", text)


def round_half_up(value: Fraction) -> int:
    """Round an exact rational to the nearest integer, ties away from zero."""
    sign = -1 if value < 0 else 1
    magnitude = abs(value)
    whole, remainder = divmod(magnitude.numerator, magnitude.denominator)
    if 2 * remainder >= magnitude.denominator:
        whole += 1
    return sign * whole


Factor = int | Decimal | Fraction

_CODE = re.compile(r"^[A-Z]{3}$")
# CLDR "currency spacing": a letter symbol touching a digit gets a no-break space.
_LETTER_THEN_DIGIT = re.compile(r"(?<=[^\W\d_])(?=[\d\-])")
_DIGIT_THEN_LETTER = re.compile(r"(?<=\d)(?=[^\W\d_])")


#: Money.of refuses a decimal exponent beyond this (``1e999999999``, ``0E-999999999``):
#: no real amount needs it, and exact arithmetic on one would run for hours.
MAX_EXPONENT = 30


@total_ordering
@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount: ``minor`` units (grosze, cents, haléře) of ``currency``."""

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.minor) is not int:  # bool and float are refused on purpose
            raise TypeError(f"Money needs an int of minor units, not {type(self.minor).__name__}")
        if not isinstance(self.currency, str) or not _CODE.fullmatch(self.currency):
            raise ValueError(f"not an ISO 4217 currency code: {self.currency!r}")

    # -- construction -------------------------------------------------------------

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def of(cls, amount: Decimal | str | int, currency: str) -> Money:
        """Parse major units (``Decimal('12.34')``, ``'12.34'``, ``12``) exactly."""
        if isinstance(amount, float | bool):
            raise TypeError("Money.of refuses floats; pass a Decimal or a string")
        value = Decimal(amount)
        if not value.is_finite():
            raise ValueError(f"{amount} is not a finite amount")
        exponent = value.as_tuple().exponent
        if not isinstance(exponent, int) or not -MAX_EXPONENT <= exponent <= MAX_EXPONENT:
            # 1e999999999 would make Fraction build a billion-digit integer: hours of CPU.
            raise ValueError(f"{amount} is out of range")
        scaled = Fraction(value) * 10 ** minor_units(currency)  # exact, unlike scaleb
        if scaled.denominator != 1:
            raise ValueError(f"{amount} has more decimals than {currency} allows")
        return cls(int(scaled), currency)

    # -- arithmetic ---------------------------------------------------------------

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(f"{self.currency} and {other.currency} do not mix")

    def _derived(self, minor: int) -> Money:
        """A result of arithmetic on checked amounts: ``minor`` is an int of this currency,
        already valid, so the checks of ``__post_init__`` are not run again (a quote makes
        some twenty of these per keystroke of the checkout form)."""
        result = object.__new__(Money)
        object.__setattr__(result, "minor", minor)
        object.__setattr__(result, "currency", self.currency)
        return result

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return self._derived(self.minor + other.minor)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return self._derived(self.minor - other.minor)

    def __neg__(self) -> Money:
        return self._derived(-self.minor)

    def __mul__(self, factor: Factor) -> Money:
        if type(factor) is int:  # exact as it is: nothing to round
            return self._derived(self.minor * factor)
        if isinstance(factor, float | bool) or not isinstance(factor, int | Decimal | Fraction):
            raise TypeError(f"Money can be multiplied by int, Decimal or Fraction, not {factor!r}")
        return self._derived(round_half_up(Fraction(self.minor) * Fraction(factor)))

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor < other.minor

    def __bool__(self) -> bool:
        return self.minor != 0

    def max(self, other: Money) -> Money:
        self._same(other)
        return self if self.minor >= other.minor else other

    def min(self, other: Money) -> Money:
        self._same(other)
        return self if self.minor <= other.minor else other

    # -- presentation -------------------------------------------------------------

    @property
    def amount(self) -> Decimal:
        """The amount in major units, exact."""
        return Decimal(f"{self.minor}E-{minor_units(self.currency)}")  # exact at any size

    def format(self, locale: str) -> str:
        """Format for a locale: ``pl`` gives ``1 234,56 zł``, ``en`` gives ``PLN 1,234.56``."""
        return _format(self.minor, self.currency, locale)

    def __str__(self) -> str:
        return f"{self.currency} {self.amount}"
