"""Money: exact integer arithmetic, one half-up rounding, no floats, no mixed currencies."""

from __future__ import annotations

import operator
from collections.abc import Callable
from decimal import ROUND_DOWN, ROUND_HALF_UP, Context, Decimal, InvalidOperation, localcontext
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portal.rules.money import CurrencyMismatch, Money, minor_units, round_half_up

FAST = settings(max_examples=60, deadline=None)

# The demo currencies plus one with no minor unit and one with three decimals.
CURRENCIES = ["PLN", "EUR", "USD", "CZK", "JPY", "BHD"]
currencies = st.sampled_from(CURRENCIES)
# Mostly realistic amounts, sometimes far beyond Decimal's default 28-digit precision.
minors = st.integers(-(10**15), 10**15) | st.integers(-(10**40), 10**40)


@st.composite
def moneys(draw: st.DrawFn, currency: str | None = None) -> Money:
    return Money(draw(minors), currency or draw(currencies))


@st.composite
def same_currency(draw: st.DrawFn, n: int) -> list[Money]:
    currency = draw(currencies)
    return [draw(moneys(currency)) for _ in range(n)]


# Factors: rates like 0.23, 1.08 or 0.005, scaled decimals, proration fractions.
decimal_factors = st.decimals(
    min_value=Decimal("-1000"), max_value=Decimal("1000"), places=6, allow_nan=False
) | st.sampled_from([Decimal("0.5"), Decimal("-0.5"), Decimal("0.23"), Decimal("0.005")])
fraction_factors = st.fractions(min_value=-1000, max_value=1000, max_denominator=10_000)


def reference(money: Money, factor: Decimal | Fraction) -> Decimal:
    """``money * factor`` in major units, by ``decimal`` alone: exact product, then one quantize.

    A Fraction is expanded to 300 significant digits, truncated: with denominators up to
    10^4 that can neither create nor hide a tie at the minor unit.
    """
    exponent = Decimal(1).scaleb(-minor_units(money.currency))
    with localcontext(Context(prec=300)) as ctx:
        if isinstance(factor, Fraction):
            ctx.rounding = ROUND_DOWN
            exact = money.amount * factor.numerator / factor.denominator
        else:
            exact = money.amount * factor
        return exact.quantize(exponent, rounding=ROUND_HALF_UP)


# -- addition, subtraction, negation ------------------------------------------------


@FAST
@given(same_currency(2))
def test_addition_commutes(pair: list[Money]) -> None:
    a, b = pair
    assert a + b == b + a


@FAST
@given(same_currency(3))
def test_addition_associates(triple: list[Money]) -> None:
    a, b, c = triple
    assert (a + b) + c == a + (b + c)


@FAST
@given(moneys())
def test_zero_is_the_identity(a: Money) -> None:
    zero = Money.zero(a.currency)
    assert a + zero == a == zero + a
    assert a - zero == a
    assert zero - a == -a
    assert a - a == zero
    assert not zero
    assert bool(a) is (a.minor != 0)


@FAST
@given(same_currency(3))
def test_subtraction_is_adding_the_negation(triple: list[Money]) -> None:
    a, b, c = triple
    assert a - b == a + (-b)
    assert a - b == -(b - a)
    assert (a - b) - c == a - (b + c)
    assert (a + b) - b == a


@FAST
@given(moneys())
def test_negation(a: Money) -> None:
    negated = -a
    assert -negated == a
    assert (-a).minor == -a.minor
    assert (-a).currency == a.currency
    assert a + (-a) == Money.zero(a.currency)


@FAST
@given(same_currency(2))
def test_results_keep_the_currency_and_the_minor_units(pair: list[Money]) -> None:
    a, b = pair
    assert (a + b).minor == a.minor + b.minor
    assert (a - b).minor == a.minor - b.minor
    assert {(a + b).currency, (a - b).currency, (-a).currency} == {a.currency}


# -- multiplication -------------------------------------------------------------------


@FAST
@given(moneys(), st.integers(0, 25))
def test_multiplying_by_an_int_is_repeated_addition(a: Money, n: int) -> None:
    repeated = sum([a] * n, Money.zero(a.currency))
    assert a * n == repeated
    assert n * a == repeated
    assert a * -n == -repeated


@FAST
@given(moneys(), st.integers(-(10**6), 10**6))
def test_multiplying_by_an_int_is_exact(a: Money, n: int) -> None:
    assert (a * n).minor == a.minor * n
    assert a * Decimal(n) == a * n == a * Fraction(n)


@FAST
@given(moneys(), decimal_factors)
def test_multiplying_by_a_decimal_rounds_half_up_once(a: Money, factor: Decimal) -> None:
    result = a * factor
    assert result.currency == a.currency
    assert result.amount == reference(a, factor)
    assert factor * a == result


@FAST
@given(moneys(), fraction_factors)
def test_multiplying_by_a_fraction_rounds_half_up_once(a: Money, factor: Fraction) -> None:
    result = a * factor
    assert result.currency == a.currency
    assert result.amount == reference(a, factor)
    assert factor * a == result


@FAST
@given(st.fractions(max_denominator=10**6))
def test_round_half_up_is_nearest_with_ties_away_from_zero(value: Fraction) -> None:
    rounded = round_half_up(value)
    assert abs(rounded - value) <= Fraction(1, 2)
    if abs(rounded - value) == Fraction(1, 2):
        assert abs(rounded) > abs(value)
    assert round_half_up(-value) == -rounded


@pytest.mark.parametrize(
    ("minor", "factor", "expected"),
    [
        (5, Decimal("0.5"), 3),  # 2.5 -> 3
        (-5, Decimal("0.5"), -3),  # -2.5 -> -3, away from zero
        (1, Decimal("0.5"), 1),
        (-1, Decimal("0.5"), -1),
        (3, Fraction(1, 2), 2),
        (-3, Fraction(1, 2), -2),
        (25, Decimal("0.1"), 3),
        (24, Decimal("0.1"), 2),
        (-24, Decimal("0.1"), -2),
        (1, Decimal("0.45"), 0),  # once: 0.45 -> 0, never 0.45 -> 0.5 -> 1
        (1, Decimal("0.4999999"), 0),
        (1, Decimal("0.5000001"), 1),
        (8900, Decimal("0.23"), 2047),  # 20.47
        (12900, Decimal("0.23"), 2967),  # 29.67
        (4500, Decimal("0.21"), 945),
        (8900, Fraction(17, 31), 4881),  # 4880.645... -> 4881
        (100, Fraction(1, 3), 33),
        (200, Fraction(1, 3), 67),
        (-200, Fraction(1, 3), -67),
        (7, Decimal("-0.5"), -4),
        (0, Decimal("0.5"), 0),
    ],
)
def test_multiplication_rounding_table(
    minor: int, factor: Decimal | Fraction, expected: int
) -> None:
    assert Money(minor, "PLN") * factor == Money(expected, "PLN")
    assert factor * Money(minor, "PLN") == Money(expected, "PLN")


def test_multiplication_rounds_to_the_currency_minor_unit() -> None:
    # JPY has no minor unit, BHD three decimals: the unit of rounding is always one minor unit.
    assert Money.of("5", "JPY") * Decimal("0.5") == Money.of("3", "JPY")
    assert Money.of("0.005", "BHD") * Decimal("0.5") == Money.of("0.003", "BHD")


# -- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize("minor", [1.0, 0.0, float("nan"), True, False, Decimal(1), "1", None])
def test_constructor_needs_an_int(minor: Any) -> None:
    with pytest.raises(TypeError):
        Money(minor, "PLN")


@pytest.mark.parametrize("amount", [1.0, 0.1, 89.0, float("inf"), True, False])
def test_of_refuses_floats_and_bools(amount: Any) -> None:
    with pytest.raises(TypeError):
        Money.of(amount, "PLN")


@pytest.mark.parametrize("factor", [1.0, 0.23, float("nan"), True, False, "2", None, [2]])
def test_multiplication_refuses_floats_bools_and_others(factor: Any) -> None:
    a = Money(100, "PLN")
    with pytest.raises(TypeError):
        a * factor
    with pytest.raises(TypeError):
        factor * a


def test_money_times_money_is_refused() -> None:
    with pytest.raises(TypeError):
        Money(100, "PLN") * Money(2, "PLN")  # type: ignore[operator]


MIXED: list[tuple[str, Callable[[Money, Money], Any]]] = [
    ("+", operator.add),
    ("-", operator.sub),
    ("<", operator.lt),
    ("<=", operator.le),
    (">", operator.gt),
    (">=", operator.ge),
    ("min", Money.min),
    ("max", Money.max),
    ("builtin max", max),
    ("builtin min", min),
]


@pytest.mark.parametrize(("name", "op"), MIXED, ids=[name for name, _ in MIXED])
@pytest.mark.parametrize(("left", "right"), [("PLN", "EUR"), ("EUR", "PLN"), ("USD", "CZK")])
def test_mixed_currencies_are_refused(
    name: str, op: Callable[[Money, Money], Any], left: str, right: str
) -> None:
    with pytest.raises(CurrencyMismatch, match=f"{left} and {right}|{right} and {left}"):
        op(Money(100, left), Money(100, right))


def test_currency_mismatch_is_a_value_error() -> None:
    assert issubclass(CurrencyMismatch, ValueError)


def test_equality_across_currencies_is_false_not_an_error() -> None:
    # == stays total (sets, dict keys); ordering and arithmetic raise instead.
    assert Money(100, "PLN") != Money(100, "EUR")
    assert Money(100, "PLN") == Money(100, "PLN")
    assert hash(Money(100, "PLN")) == hash(Money(100, "PLN"))
    assert len({Money(100, "PLN"), Money(100, "EUR"), Money(100, "PLN")}) == 2


@pytest.mark.parametrize("other", [0, 1, Decimal(1), "1"])
def test_combining_with_non_money_is_refused(other: Any) -> None:
    a = Money(100, "PLN")
    with pytest.raises(TypeError):
        a + other
    with pytest.raises(TypeError):
        a - other
    with pytest.raises(TypeError):
        a < other  # noqa: B015


@pytest.mark.parametrize(
    "code", ["pln", "Pln", "PL", "PLNN", "", "P1N", "PL N", " PLN", "PLN ", "PLN\n", "ZŁO"]
)
def test_invalid_currency_codes_are_refused(code: str) -> None:
    with pytest.raises(ValueError, match="ISO 4217"):
        Money(1, code)
    with pytest.raises(ValueError, match="ISO 4217"):
        Money.zero(code)
    with pytest.raises(ValueError):
        Money.of("1", code)


@pytest.mark.parametrize("code", [None, 985, b"PLN", ("PLN",)])
def test_non_string_currency_codes_are_refused(code: Any) -> None:
    with pytest.raises(ValueError, match="ISO 4217"):
        Money(1, code)


def test_money_is_immutable() -> None:
    a = Money(100, "PLN")
    with pytest.raises(AttributeError):
        a.minor = 5  # type: ignore[misc]


# -- Money.of and .amount ---------------------------------------------------------------


@FAST
@given(moneys())
def test_of_round_trips_with_amount(a: Money) -> None:
    assert Money.of(a.amount, a.currency) == a
    assert Money.of(str(a.amount), a.currency) == a
    assert a.amount.as_tuple().exponent == -minor_units(a.currency)


@FAST
@given(st.integers(-(10**40), 10**40), currencies)
def test_of_an_int_is_whole_major_units(major: int, currency: str) -> None:
    money = Money.of(major, currency)
    assert money.minor == major * 10 ** minor_units(currency)
    assert money.amount == major


@pytest.mark.parametrize(
    "amount", ["1e999999999", "-1E+31", "1e-999999999", "0E-999999999", Decimal("5E-31")]
)
def test_of_refuses_absurd_exponents_at_once(amount: Any) -> None:
    """A staff refund form once sent "1e999999999" here: exact arithmetic on it would have
    built a billion-digit integer (hours of CPU, gigabytes). It is refused up front."""
    with pytest.raises(ValueError, match="out of range"):
        Money.of(amount, "PLN")
    assert Money.of("1E+30", "PLN").minor == 10**32  # the largest exponent still taken
    assert Money.of("1.20000000000000000000000000000", "PLN").minor == 120


@FAST
@given(moneys(), st.integers(1, 9))
def test_of_refuses_more_decimals_than_the_currency_has(a: Money, digit: int) -> None:
    with localcontext(Context(prec=100)):
        one_more = a.amount + Decimal(digit).scaleb(-minor_units(a.currency) - 1)
    with pytest.raises(ValueError, match="more decimals"):
        Money.of(one_more, a.currency)
    with pytest.raises(ValueError, match="more decimals"):
        Money.of(str(one_more), a.currency)


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("89", "PLN", 8900),
        ("89.01", "PLN", 8901),
        (Decimal("89.1"), "PLN", 8910),
        ("89.000", "PLN", 8900),  # trailing zeros are still exact
        ("-0.01", "EUR", -1),
        ("-0", "EUR", 0),
        ("1E3", "USD", 100000),
        (500, "CZK", 50000),
        (-7, "PLN", -700),
        ("1234", "JPY", 1234),
        ("1.234", "BHD", 1234),
        ("0.001", "BHD", 1),
        # beyond the default 28-digit decimal context: still exact
        (10**28 + 1, "PLN", (10**28 + 1) * 100),
        ("12345678901234567890123456789.01", "PLN", 1234567890123456789012345678901),
    ],
)
def test_of_table(amount: Any, currency: str, minor: int) -> None:
    assert Money.of(amount, currency) == Money(minor, currency)


@pytest.mark.parametrize(
    ("amount", "currency"),
    [("89.001", "PLN"), ("0.001", "EUR"), ("0.5", "JPY"), ("0.0001", "BHD"), ("1E-3", "USD")],
)
def test_of_refuses_excess_decimals_table(amount: str, currency: str) -> None:
    with pytest.raises(ValueError, match="more decimals"):
        Money.of(amount, currency)


@pytest.mark.parametrize("amount", ["NaN", "sNaN", "Infinity", "-Infinity", "inf"])
def test_of_refuses_non_finite_amounts(amount: str) -> None:
    with pytest.raises(ValueError, match="not a finite amount"):
        Money.of(amount, "PLN")
    with pytest.raises(ValueError, match="not a finite amount"):
        Money.of(Decimal(amount), "PLN")


@pytest.mark.parametrize("amount", ["", "abc", "1,50", "PLN 1"])
def test_of_refuses_garbage(amount: str) -> None:
    with pytest.raises(InvalidOperation):
        Money.of(amount, "PLN")


def test_amount_and_str() -> None:
    assert Money(123456, "PLN").amount == Decimal("1234.56")
    assert str(Money(123456, "PLN")) == "PLN 1234.56"
    assert str(Money(-5, "EUR")) == "EUR -0.05"
    assert str(Money(0, "USD")) == "USD 0.00"
    assert str(Money(5, "JPY")) == "JPY 5"
    assert Money(10**30 + 1, "PLN").amount == Decimal("10000000000000000000000000000.01")


# -- ordering ---------------------------------------------------------------------------


@FAST
@given(same_currency(2))
def test_ordering_follows_minor_units(pair: list[Money]) -> None:
    a, b = pair
    assert (a < b) is (a.minor < b.minor)
    assert (a <= b) is (a.minor <= b.minor)
    assert (a > b) is (a.minor > b.minor)
    assert (a >= b) is (a.minor >= b.minor)
    assert (a == b) is (a.minor == b.minor)
    assert a.max(b).minor == max(a.minor, b.minor)
    assert a.min(b).minor == min(a.minor, b.minor)
    assert max(a, b) == a.max(b)
    assert min(a, b) == a.min(b)


@FAST
@given(st.lists(st.integers(-(10**9), 10**9), max_size=12), currencies)
def test_sorting_sorts_by_minor_units(values: list[int], currency: str) -> None:
    assert [m.minor for m in sorted(Money(v, currency) for v in values)] == sorted(values)


# -- formatting -------------------------------------------------------------------------

NBSP = "\N{NO-BREAK SPACE}"


@pytest.mark.parametrize(
    ("minor", "currency", "pl", "en"),
    [
        (123456, "PLN", "1 234,56 zł", "PLN 1,234.56"),
        (-123456, "PLN", "-1 234,56 zł", "-PLN 1,234.56"),
        (0, "PLN", "0,00 zł", "PLN 0.00"),
        (5, "PLN", "0,05 zł", "PLN 0.05"),
        (10**12, "PLN", "10 000 000 000,00 zł", "PLN 10,000,000,000.00"),
        (123456, "EUR", "1 234,56 €", "€1,234.56"),
        (-123456, "EUR", "-1 234,56 €", "-€1,234.56"),
        (0, "EUR", "0,00 €", "€0.00"),
        (10**12, "EUR", "10 000 000 000,00 €", "€10,000,000,000.00"),
        (123456, "USD", "1 234,56 USD", "$1,234.56"),
        (-123456, "USD", "-1 234,56 USD", "-$1,234.56"),
        (0, "USD", "0,00 USD", "$0.00"),
        (10**12, "USD", "10 000 000 000,00 USD", "$10,000,000,000.00"),
        (123456, "CZK", "1 234,56 CZK", "CZK 1,234.56"),
        (-123456, "CZK", "-1 234,56 CZK", "-CZK 1,234.56"),
        (0, "CZK", "0,00 CZK", "CZK 0.00"),
        (10**12, "CZK", "10 000 000 000,00 CZK", "CZK 10,000,000,000.00"),
        # ISO 4217 minor units, whatever CLDR's display digits say (Babel 2.19: HUF 0).
        (123456, "HUF", "1 234,56 HUF", "HUF 1,234.56"),
        (123456, "JPY", "123 456 JPY", "¥123,456"),
        (123456, "KWD", "123,456 KWD", "KWD 123.456"),
    ],
)
def test_format_table(minor: int, currency: str, pl: str, en: str) -> None:
    # The table is written with plain spaces for readability; every one must be a no-break space.
    money = Money(minor, currency)
    assert money.format("pl") == pl.replace(" ", NBSP)
    assert money.format("en") == en.replace(" ", NBSP)
    assert " " not in money.format("pl") + money.format("en")


def test_format_the_documented_examples_literally() -> None:
    assert Money(123456, "PLN").format("pl") == "1\xa0234,56\xa0zł"
    assert Money(123456, "PLN").format("en") == "PLN\xa01,234.56"


@pytest.mark.parametrize(
    ("currency", "units"),
    [("PLN", 2), ("EUR", 2), ("USD", 2), ("CZK", 2), ("HUF", 2), ("JPY", 0), ("KWD", 3)],
)
def test_minor_units_are_iso_4217s_not_cldrs_display_digits(currency: str, units: int) -> None:
    assert minor_units(currency) == units


@FAST
@given(moneys(), st.integers(min_value=-(10**6), max_value=10**6))
def test_arithmetic_results_are_amounts_like_any_other(a: Money, n: int) -> None:
    """Results skip the constructor's checks (their parts are checked already): each is
    the same amount, equal and hashed alike, as the one the constructor makes; an int
    factor gives what the exact Fraction path gives."""
    for result, minor in (
        (a * n, a.minor * n),
        (a + a, 2 * a.minor),
        (a - a, 0),
        (-a, -a.minor),
        (a * Fraction(n, 7), round_half_up(Fraction(a.minor * n, 7))),
    ):
        built = Money(minor, a.currency)
        assert result == built and hash(result) == hash(built)
        assert type(result.minor) is int and result.currency == a.currency
    assert a * n == a * Fraction(n) == a * Decimal(n)
