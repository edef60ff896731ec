"""Country names in the page's language (CLDR, through Babel) and the country picker's order."""

from __future__ import annotations

import unicodedata
from collections.abc import Collection
from functools import cache

from babel import Locale

# CLDR territories that are not countries a company can be registered in: groupings
# (EU, EZ, UN), placeholders (QO, XA, XB, ZZ) and reserved codes for places that share
# another country's VAT and post (AC, CP, CQ, DG, EA, IC, TA).
_NOT_COUNTRIES = frozenset(
    {"AC", "CP", "CQ", "DG", "EA", "IC", "TA", "EU", "EZ", "UN", "QO", "XA", "XB", "ZZ"}
)
# Letters that Polish sorts as letters of their own, right after their base letter.
_OWN_LETTERS = {"pl": frozenset("ąćęłńóśźż")}
# Letters NFD does not decompose but people read as a base letter with a mark.
_BASE = {"ł": "l", "ø": "o", "đ": "d", "ß": "s", "æ": "a", "œ": "o"}


@cache
def names(language: str) -> dict[str, str]:
    """ISO code -> country name in ``language``, countries only."""
    territories = Locale.parse(language).territories
    return {
        code: name
        for code, name in territories.items()
        if len(code) == 2 and code.isalpha() and code not in _NOT_COUNTRIES
    }


def name(code: str | None, language: str) -> str:
    """The country's name in ``language``; an unknown code is shown as it is."""
    if not code:
        return ""
    return names(language).get(code, code)


def is_country(code: str | None) -> bool:
    return bool(code) and code in names("en")


def sort_key(text: str, language: str) -> tuple[tuple[tuple[str, int], ...], str]:
    """Alphabetical order as readers of ``language`` expect it, without a collation library:
    accents only break ties, except letters the language treats as letters of their own
    (Polish "Ł" comes after every "L")."""
    own = _OWN_LETTERS.get(language, frozenset())
    primary = []
    for char in text.casefold():
        if not char.isalnum():
            continue
        base = _BASE.get(char) or unicodedata.normalize("NFD", char)[0]
        primary.append((base, 1 if char in own else 0))
    return tuple(primary), text


def choices(
    language: str, first: Collection[str]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The picker's two groups, each sorted by name: the ``first`` countries (the EU
    member states), then all the others."""
    all_names = names(language)
    ordered = sorted(all_names.items(), key=lambda item: sort_key(item[1], language))
    return (
        [(code, label) for code, label in ordered if code in first],
        [(code, label) for code, label in ordered if code not in first],
    )
