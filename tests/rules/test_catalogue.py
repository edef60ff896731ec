"""The package catalogue: the shipped prices and limits, and start-up validation errors."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from portal import create_app
from portal.infra.extensions import db
from portal.rules.catalogue import (
    DEFAULT_PATH,
    Catalogue,
    CatalogueError,
    PackageCode,
    Period,
    load_catalogue,
)
from portal.rules.money import Money
from tests.conftest import base_config

SHIPPED = DEFAULT_PATH.read_text(encoding="utf-8")
CURRENCIES = ("PLN", "EUR", "USD", "CZK")

# -- the shipped catalogue ----------------------------------------------------------------

AGENT_PRICES = {
    PackageCode.STANDARD: {
        Period.MONTH: {"PLN": "89", "EUR": "20", "USD": "22", "CZK": "500"},
        Period.YEAR: {"PLN": "890", "EUR": "200", "USD": "220", "CZK": "5000"},
    },
    PackageCode.PRO: {
        Period.MONTH: {"PLN": "129", "EUR": "30", "USD": "33", "CZK": "750"},
        Period.YEAR: {"PLN": "1290", "EUR": "300", "USD": "330", "CZK": "7500"},
    },
}
PACK_MONTH = {"PLN": "45", "EUR": "10", "USD": "11", "CZK": "250"}


@pytest.fixture(scope="module")
def shipped() -> Catalogue:
    return load_catalogue()


def test_shipped_currencies(shipped: Catalogue) -> None:
    assert shipped.currencies == CURRENCIES


@pytest.mark.parametrize("code", [PackageCode.STANDARD, PackageCode.PRO])
@pytest.mark.parametrize("period", list(Period))
@pytest.mark.parametrize("currency", CURRENCIES)
def test_shipped_agent_prices(
    shipped: Catalogue, code: PackageCode, period: Period, currency: str
) -> None:
    expected = Money.of(AGENT_PRICES[code][period][currency], currency)
    assert shipped.package(code).agent_price(period, currency) == expected
    assert shipped.package(code.value).agent_price(period.value, currency) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("code", [PackageCode.STANDARD, PackageCode.PRO])
def test_shipped_price_tables_hold_nothing_else(shipped: Catalogue, code: PackageCode) -> None:
    assert set(shipped.package(code).agent_prices) == {(p, c) for p in Period for c in CURRENCIES}


@pytest.mark.parametrize("currency", CURRENCIES)
def test_shipped_pack_prices(shipped: Catalogue, currency: str) -> None:
    month = Money.of(PACK_MONTH[currency], currency)
    assert shipped.pack_price(Period.MONTH, currency) == month
    assert shipped.pack_price(Period.YEAR, currency) == month * 10
    assert set(shipped.pack_prices) == {(p, c) for p in Period for c in CURRENCIES}


def test_shipped_exact_minor_units(shipped: Catalogue) -> None:
    standard = shipped.package(PackageCode.STANDARD)
    assert standard.agent_price(Period.MONTH, "PLN") == Money(8900, "PLN")
    assert standard.agent_price(Period.YEAR, "CZK") == Money(500000, "CZK")
    assert shipped.pack_price(Period.MONTH, "USD") == Money(1100, "USD")


@pytest.mark.parametrize(
    ("code", "paid", "agents", "included", "maximum", "support"),
    [
        (PackageCode.FREE, False, (1, 3), 0, 0, False),
        (PackageCode.STANDARD, True, (1, 200), 100, 500, True),
        (PackageCode.PRO, True, (1, 200), 500, 10000, True),
    ],
)
def test_shipped_limits(
    shipped: Catalogue,
    code: PackageCode,
    paid: bool,
    agents: tuple[int, int],
    included: int,
    maximum: int,
    support: bool,
) -> None:
    package = shipped.package(code)
    assert package.code is code
    assert package.paid is paid
    assert (package.min_agents, package.max_agents) == agents
    assert package.included_conversations == included
    assert package.max_conversations == maximum
    assert package.support is support
    if paid:
        assert package.conversation_pack == 100
    else:
        assert package.agent_prices == {}


def test_shipped_package_lookup(shipped: Catalogue) -> None:
    assert [p.code for p in shipped.paid_packages()] == [PackageCode.STANDARD, PackageCode.PRO]
    assert list(shipped.packages) == list(PackageCode)
    with pytest.raises(ValueError):
        shipped.package("gold")
    with pytest.raises(KeyError):
        shipped.package(PackageCode.PRO).agent_price(Period.MONTH, "GBP")


def test_the_app_serves_the_shipped_catalogue(catalogue: Catalogue, shipped: Catalogue) -> None:
    assert catalogue == shipped


# -- validation errors --------------------------------------------------------------------


def replace(old: str, new: str, count: int = 1) -> Callable[[str], str]:
    """Replace the ``count``-th occurrence of ``old`` (which must exist)."""

    def edit(text: str) -> str:
        index = -1
        for _ in range(count):
            index = text.index(old, index + 1)
        return text[:index] + new + text[index + len(old) :]

    return edit


def drop_table(header: str) -> Callable[[str], str]:
    """Remove a ``[table]`` and its keys, up to the next table header or comment."""

    def edit(text: str) -> str:
        pattern = re.compile(rf"^\[{re.escape(header)}\]\n(?:(?!\[|#).*\n)*", re.MULTILINE)
        edited, n = pattern.subn("", text)
        assert n == 1, header
        return edited

    return edit


def drop_package(code: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        for header in (f"packages.{code}.agent_price.year", f"packages.{code}.agent_price.month"):
            if f"[{header}]" in text:
                text = drop_table(header)(text)
        return drop_table(f"packages.{code}")(text)

    return edit


def append(extra: str) -> Callable[[str], str]:
    return lambda text: text + "\n" + extra


STANDARD_MONTH_PLN = 'PLN = "89"'

INVALID: list[tuple[str, Callable[[str], str], list[str]]] = [
    # (id, edit of the shipped file, fragments the message must contain)
    ("missing package", drop_package("pro"), ["packages.pro: missing"]),
    ("missing free package", drop_package("free"), ["packages.free: missing"]),
    (
        "unknown package",
        append("[packages.gold]\npaid = true\n"),
        ["packages: unknown package ['gold']"],
    ),
    (
        "too many decimals",
        replace(STANDARD_MONTH_PLN, 'PLN = "89.001"'),
        ["packages.standard.agent_price.month.PLN", "more decimals than PLN allows"],
    ),
    (
        "float price",
        replace(STANDARD_MONTH_PLN, "PLN = 89.0"),
        ["packages.standard.agent_price.month.PLN", "expected a price as a string, got 89.0"],
    ),
    (
        "integer price",
        replace('CZK = "7500"', "CZK = 7500"),
        ["packages.pro.agent_price.year.CZK", "expected a price as a string, got 7500"],
    ),
    (
        "negative price",
        replace('EUR = "20"', 'EUR = "-20"'),
        ["packages.standard.agent_price.month.EUR", "must be above zero"],
    ),
    (
        "zero price",
        replace('USD = "330"', 'USD = "0.00"'),
        ["packages.pro.agent_price.year.USD", "must be above zero"],
    ),
    (
        "zero pack price",
        replace('PLN = "45"', 'PLN = "0"'),
        ["conversation_pack_price.month.PLN", "must be above zero"],
    ),
    (
        "non-numeric price",
        replace('PLN = "129"', 'PLN = "129 zł"'),
        ["packages.pro.agent_price.month.PLN"],
    ),
    (
        "infinite price",
        replace('PLN = "890"', 'PLN = "Infinity"'),
        ["packages.standard.agent_price.year.PLN", "not a finite amount"],
    ),
    (
        "missing currency in a row",
        replace('CZK = "750"\n', ""),
        ["packages.pro.agent_price.month.CZK", "got None"],
    ),
    (
        "missing currency in the pack price row",
        replace('USD = "110"\n', ""),
        ["conversation_pack_price.year.USD", "got None"],
    ),
    (
        "unknown currency in a row",
        replace('CZK = "250"', 'CZK = "250"\nGBP = "9"'),
        ["conversation_pack_price.month: unknown currency ['GBP']"],
    ),
    (
        "unknown currency in an agent price row",
        replace('CZK = "5000"', 'CZK = "5000"\nHUF = "9000"'),
        ["packages.standard.agent_price.year: unknown currency ['HUF']"],
    ),
    (
        "missing price period",
        drop_table("packages.standard.agent_price.year"),
        ["packages.standard.agent_price.year: missing"],
    ),
    (
        "missing price table",
        lambda t: drop_table("packages.pro.agent_price.year")(
            drop_table("packages.pro.agent_price.month")(t)
        ),
        ["packages.pro.agent_price: missing price table"],
    ),
    (
        "missing pack prices",
        lambda t: drop_table("conversation_pack_price.year")(
            drop_table("conversation_pack_price.month")(t)
        ),
        ["conversation_pack_price: missing price table"],
    ),
    (
        "included above max conversations",
        replace("included_conversations = 100", "included_conversations = 600"),
        ["packages.standard", "included_conversations exceeds max_conversations"],
    ),
    (
        "max minus included not whole packs",
        replace("max_conversations = 10000", "max_conversations = 10050"),
        ["packages.pro", "max_conversations - included_conversations must be whole packs"],
    ),
    (
        "zero-sized pack",
        replace("conversation_pack = 100", "conversation_pack = 0"),
        ["packages.standard", "whole packs"],
    ),
    (
        "min agents above max agents",
        replace("min_agents = 1", "min_agents = 201"),
        ["packages.standard", "min_agents <= max_agents"],
    ),
    (
        "zero min agents",
        replace("min_agents = 1", "min_agents = 0", count=2),
        ["packages.pro", "1 <= min_agents"],
    ),
    (
        "negative max agents",
        replace("max_agents = 3", "max_agents = -3"),
        ["packages.free.max_agents", "whole number"],
    ),
    (
        "boolean max agents",
        replace("max_agents = 3", "max_agents = true"),
        ["packages.free.max_agents", "whole number"],
    ),
    (
        "string limit",
        replace("max_conversations = 500", 'max_conversations = "500"'),
        ["packages.standard.max_conversations", "whole number"],
    ),
    (
        "missing limit",
        replace("max_conversations = 0\n", ""),
        ["packages.free.max_conversations", "got None"],
    ),
    (
        "paid not a boolean",
        replace("paid = true", 'paid = "yes"'),
        ["packages.standard.paid", "true or false"],
    ),
    (
        "support not a boolean",
        replace("support = false", 'support = "false"'),
        ["packages.free.support", "true or false"],
    ),
    ("no currencies", replace('currencies = ["PLN", "EUR", "USD", "CZK"]', ""), ["currencies"]),
    (
        "empty currencies",
        replace('currencies = ["PLN", "EUR", "USD", "CZK"]', "currencies = []"),
        ["currencies: expected a non-empty list"],
    ),
    (
        "invalid currency code",
        replace('currencies = ["PLN", "EUR", "USD", "CZK"]', 'currencies = ["PLN", "eur"]'),
        ["currencies", "'eur'"],
    ),
]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalogue.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_edits_keep_the_shipped_file_valid_toml_otherwise(tmp_path: Path) -> None:
    # Sanity check of the helpers: an unedited copy loads, and equals the shipped catalogue.
    assert load_catalogue(write(tmp_path, SHIPPED)) == load_catalogue()


@pytest.mark.parametrize(
    ("edit", "fragments"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_catalogue(
    tmp_path: Path, edit: Callable[[str], str], fragments: list[str]
) -> None:
    edited = edit(SHIPPED)
    assert edited != SHIPPED
    path = write(tmp_path, edited)
    with pytest.raises(CatalogueError) as info:
        load_catalogue(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, SHIPPED.replace("[packages.pro]", "[packages.pro", 1))
    with pytest.raises(CatalogueError, match="not valid TOML") as info:
        load_catalogue(path)
    assert str(info.value).startswith(f"{path}: ")


def test_duplicate_key_is_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, SHIPPED.replace('PLN = "89"', 'PLN = "89"\nPLN = "99"', 1))
    with pytest.raises(CatalogueError, match="not valid TOML"):
        load_catalogue(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(CatalogueError, match="cannot be read") as info:
        load_catalogue(path)
    assert str(info.value).startswith(f"{path}: ")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="cannot be read"):
        load_catalogue(tmp_path)


def test_catalogue_error_is_a_value_error() -> None:
    assert issubclass(CatalogueError, ValueError)


# -- start-up -----------------------------------------------------------------------------


def test_app_refuses_to_start_with_a_broken_catalogue(database_url: str, tmp_path: Path) -> None:
    bad = write(tmp_path, SHIPPED.replace('PLN = "89"', 'PLN = "89.001"', 1))
    with pytest.raises(CatalogueError, match=r"packages\.standard\.agent_price\.month\.PLN"):
        create_app(base_config(database_url, CATALOGUE_PATH=str(bad)))


def test_app_refuses_to_start_without_its_catalogue(database_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(CatalogueError, match="cannot be read"):
        create_app(base_config(database_url, CATALOGUE_PATH=str(missing)))


def test_app_starts_with_a_custom_catalogue(database_url: str, tmp_path: Path) -> None:
    cheaper = write(tmp_path, SHIPPED.replace('PLN = "89"', 'PLN = "79.99"', 1))
    app = create_app(base_config(database_url, CATALOGUE_PATH=str(cheaper)))
    catalogue = app.extensions["pakiet.catalogue"]
    assert catalogue.package("standard").agent_price(Period.MONTH, "PLN") == Money(7999, "PLN")
    with app.app_context():
        db.engine.dispose()
