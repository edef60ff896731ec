"""Every string a customer sees exists in Polish, with the same placeholders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from babel.support import Translations

ROOT = Path(__file__).resolve().parents[2]
PL = ROOT / "translations" / "pl" / "LC_MESSAGES" / "messages.po"
KEYWORDS = {"_": None, "gettext": None, "lazy_gettext": None, "ngettext": (1, 2)}
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|\{(\w+)\}")


def source_messages() -> set[str]:
    """Every msgid in the code and templates, extracted as `make translations-extract` does."""
    found: set[str] = set()
    for folder in ("portal", "plugins", "templates"):
        for _file, _line, message, _comments, _ctx in extract_from_dir(
            ROOT / folder,
            method_map=[("**.py", "python"), ("**.html", "jinja2"), ("**.txt", "jinja2")],
            keywords=KEYWORDS,
        ):
            found.add(message[0] if isinstance(message, tuple) else message)
    return found


def polish_catalog():
    with PL.open("rb") as fh:
        return read_po(fh, locale="pl")


def placeholders(text: str) -> set[str]:
    return {a or b for a, b in PLACEHOLDER.findall(text)}


def test_every_source_string_is_in_the_polish_catalogue():
    catalog = polish_catalog()
    known = {m.id[0] if isinstance(m.id, tuple) else m.id for m in catalog if m.id}
    missing = sorted(source_messages() - known)
    assert not missing, f"run `make translations-extract` and translate: {missing}"


def test_polish_translations_are_complete_not_fuzzy_and_keep_placeholders():
    problems = []
    for message in polish_catalog():
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy:
            problems.append(f"fuzzy: {ids[0]!r}")
        if not all(strings):
            problems.append(f"untranslated: {ids[0]!r}")
            continue
        if isinstance(message.id, tuple) and len(strings) != 3:
            problems.append(f"needs three Polish plural forms: {ids[0]!r}")
        expected = placeholders(ids[0]) | placeholders(ids[-1])
        for string in strings:
            if placeholders(string) != expected:
                problems.append(f"placeholders differ: {ids[0]!r} -> {string!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("n", "conversations", "agents"),
    [
        (1, "1 rozmowa miesięcznie", "1 agent"),
        (2, "2 rozmowy miesięcznie", "2 agentów"),
        (4, "4 rozmowy miesięcznie", "4 agentów"),
        (5, "5 rozmów miesięcznie", "5 agentów"),
        (12, "12 rozmów miesięcznie", "12 agentów"),
        (22, "22 rozmowy miesięcznie", "22 agentów"),
        (25, "25 rozmów miesięcznie", "25 agentów"),
        (100, "100 rozmów miesięcznie", "100 agentów"),
        (102, "102 rozmowy miesięcznie", "102 agentów"),
    ],
)
def test_polish_plural_forms(n, conversations, agents):
    translations = Translations.load(ROOT / "translations", ["pl"])
    conv = translations.ungettext(
        "%(num)d conversation per month", "%(num)d conversations per month", n
    )
    agent = translations.ungettext("%(num)d agent", "%(num)d agents", n)
    assert conv % {"num": n} == conversations
    assert agent % {"num": n} == agents
