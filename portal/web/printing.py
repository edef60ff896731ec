"""What HTML printed in Python (rather than by a template) shares: translations as Jinja's
"newstyle" gettext gives them, so a page reads the same whichever printed it.

A translation is markup, as in a template: its variables are escaped, it is not. Every
other value a printer places goes through ``escape`` once.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask_babel import get_translations
from flask_babel import gettext as lazy_target  # what lazy_gettext's strings call
from flask_babel.speaklater import LazyString
from markupsafe import Markup, escape

from portal.infra.i18n import bound_gettext, current_language
from portal.rules.money import Money
from portal.web.helpers import ListPage, format_day, format_minor, format_money


class Texts:
    """The request's translations (bound to its catalogue once) and its language, for one
    printing."""

    def __init__(self) -> None:
        translations = get_translations()
        self._gettext = translations.ugettext
        self._ngettext = translations.ungettext
        # Plain text, for a printer that escapes what it places itself (invoices.RowPrinter).
        self.plain = bound_gettext(translations)
        self.language = current_language()

    def gettext(self, string: str, **variables: Any) -> str:
        """A translation, as markup, with its variables escaped."""
        text: str = self._gettext(string)
        return text % self._escaped(variables) if variables else text

    def ngettext(self, singular: str, plural: str, num: int, **variables: Any) -> str:
        """A translation in the plural form of ``num`` (Polish has three), as markup."""
        text: str = self._ngettext(singular, plural, num)
        return text % {"num": num, **self._escaped(variables)}

    def _escaped(self, variables: dict[str, Any]) -> dict[str, Any]:
        return {k: v if isinstance(v, int) else escape(self._text(v)) for k, v in variables.items()}

    def _text(self, value: Any) -> Any:
        """A lazy translation (``PACKAGE_NAMES``' values) from this catalogue: escaping
        one otherwise looks it up twice through Flask-Babel, 4 µs each."""
        if (
            type(value) is LazyString
            and getattr(value, "_func", None) is lazy_target
            and not getattr(value, "_kwargs", True)
        ):  # (read defensively: should Flask-Babel change it, the lazy string is escaped)
            return self._gettext(*value._args)
        return value

    def money(self, minor: int, currency: str) -> Markup:
        """An amount in minor units, escaped (markup: a translation's variable as it is)."""
        return escape(format_minor(minor, currency, self.language))

    def day(self, value: dt.date | str | None) -> Markup:
        return escape(format_day(value, self.language))

    def amount(self, value: Money | None) -> Markup:
        return escape(format_money(value, self.language))


def pager(
    paging: ListPage, previous_url: str | None, next_url: str | None, t: Texts | None = None
) -> Markup:
    """Previous / next links of a paged list, or nothing when it has one page. Also the
    template global ``pager``."""
    if not previous_url and not next_url:
        return Markup("")
    t = t or Texts()
    _ = t.gettext
    label, number = _("Pages"), _("Page %(num)d", num=paging.number)
    previous = next_link = ""
    if previous_url:
        older = _("← Previous")
        previous = f'<a href="{escape(previous_url)}" rel="prev">{older}</a>'
    if next_url:
        newer = _("Next →")
        next_link = f'<a href="{escape(next_url)}" rel="next">{newer}</a>'
    return Markup(
        f'<nav class="pager" aria-label="{label}">\n  <ul>\n'
        f"    <li>{previous}</li>\n    <li>{number}</li>\n    <li>{next_link}</li>\n"
        "  </ul>\n</nav>\n"
    )
