"""The package catalogue: packages, limits and per-currency prices from a TOML file.

The file is read and validated once, at start-up; any mistake stops the app with a
message naming the key at fault. Everything else reads it through :class:`Catalogue`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any

from portal.rules.money import Money

DEFAULT_PATH = Path(__file__).parent / "data" / "catalogue.toml"


class PackageCode(StrEnum):
    FREE = "free"
    STANDARD = "standard"
    PRO = "pro"


class Period(StrEnum):
    MONTH = "month"
    YEAR = "year"


class CatalogueError(ValueError):
    """The catalogue file is malformed; the message names the key."""


@dataclass(frozen=True)
class Package:
    code: PackageCode
    paid: bool
    min_agents: int
    max_agents: int
    included_conversations: int
    max_conversations: int
    conversation_pack: int
    support: bool
    agent_prices: dict[tuple[Period, str], Money] = field(default_factory=dict)

    def agent_price(self, period: Period, currency: str) -> Money:
        """Net price of one agent for one ``period`` in ``currency``."""
        return self.agent_prices[(period, currency)]


@dataclass(frozen=True)
class Catalogue:
    currencies: tuple[str, ...]
    packages: dict[PackageCode, Package]
    pack_prices: dict[tuple[Period, str], Money]

    def package(self, code: PackageCode | str) -> Package:
        return self.packages[PackageCode(code)]

    def paid_packages(self) -> list[Package]:
        return [p for p in self.packages.values() if p.paid]

    def pack_price(self, period: Period, currency: str) -> Money:
        """Net price of one extra pack of conversations for one ``period``."""
        return self.pack_prices[(period, currency)]


def _int(data: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = data.get(key, default)
    if type(value) is not int or value < 0:
        raise CatalogueError(f"{where}.{key}: expected a whole number >= 0, got {value!r}")
    return value


def _prices(table: Any, currencies: tuple[str, ...], where: str) -> dict[tuple[Period, str], Money]:
    if not isinstance(table, dict):
        raise CatalogueError(f"{where}: missing price table")
    prices: dict[tuple[Period, str], Money] = {}
    for period in Period:
        row = table.get(period.value)
        if not isinstance(row, dict):
            raise CatalogueError(f"{where}.{period.value}: missing")
        unknown = set(row) - set(currencies)
        if unknown:
            raise CatalogueError(f"{where}.{period.value}: unknown currency {sorted(unknown)}")
        for currency in currencies:
            raw = row.get(currency)
            if not isinstance(raw, str):
                raise CatalogueError(
                    f"{where}.{period.value}.{currency}: expected a price as a string, got {raw!r}"
                )
            try:
                price = Money.of(Decimal(raw), currency)
            except (InvalidOperation, ValueError) as exc:
                raise CatalogueError(f"{where}.{period.value}.{currency}: {exc}") from None
            if price.minor <= 0:
                raise CatalogueError(f"{where}.{period.value}.{currency}: must be above zero")
            prices[(period, currency)] = price
    return prices


def parse_catalogue(data: dict[str, Any]) -> Catalogue:
    """Build and validate a catalogue from parsed TOML."""
    raw_currencies = data.get("currencies")
    if not isinstance(raw_currencies, list) or not raw_currencies:
        raise CatalogueError("currencies: expected a non-empty list of ISO codes")
    currencies = tuple(str(c) for c in raw_currencies)
    for code in currencies:
        try:
            Money.zero(code)
        except ValueError as exc:
            raise CatalogueError(f"currencies: {exc}") from None

    raw_packages = data.get("packages")
    if not isinstance(raw_packages, dict):
        raise CatalogueError("packages: missing")
    unknown = set(raw_packages) - {p.value for p in PackageCode}
    if unknown:
        raise CatalogueError(f"packages: unknown package {sorted(unknown)}")

    packages: dict[PackageCode, Package] = {}
    for code in PackageCode:
        where = f"packages.{code.value}"
        entry = raw_packages.get(code.value)
        if not isinstance(entry, dict):
            raise CatalogueError(f"{where}: missing")
        paid = entry.get("paid")
        if not isinstance(paid, bool):
            raise CatalogueError(f"{where}.paid: expected true or false")
        support = entry.get("support", False)
        if not isinstance(support, bool):
            raise CatalogueError(f"{where}.support: expected true or false")
        package = Package(
            code=code,
            paid=paid,
            min_agents=_int(entry, "min_agents", where, default=1),
            max_agents=_int(entry, "max_agents", where),
            included_conversations=_int(entry, "included_conversations", where),
            max_conversations=_int(entry, "max_conversations", where),
            conversation_pack=_int(entry, "conversation_pack", where, default=100),
            support=support,
            agent_prices=_prices(entry.get("agent_price"), currencies, f"{where}.agent_price")
            if paid
            else {},
        )
        if not 1 <= package.min_agents <= package.max_agents:
            raise CatalogueError(f"{where}: need 1 <= min_agents <= max_agents")
        if package.included_conversations > package.max_conversations:
            raise CatalogueError(f"{where}: included_conversations exceeds max_conversations")
        if paid and (
            package.conversation_pack <= 0
            or (package.max_conversations - package.included_conversations)
            % package.conversation_pack
        ):
            raise CatalogueError(
                f"{where}: max_conversations - included_conversations must be whole packs"
            )
        packages[code] = package

    pack_prices = _prices(
        data.get("conversation_pack_price"), currencies, "conversation_pack_price"
    )
    return Catalogue(currencies=currencies, packages=packages, pack_prices=pack_prices)


def load_catalogue(path: str | Path = DEFAULT_PATH) -> Catalogue:
    """Read and validate the catalogue file; raise :class:`CatalogueError` naming the file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{path}: not valid TOML ({exc})") from None
    try:
        return parse_catalogue(data)
    except CatalogueError as exc:
        raise CatalogueError(f"{path}: {exc}") from None
