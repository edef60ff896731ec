"""An NBP Web API emulator for the tests, the browser tests and the demo.

It speaks the one call the plugin uses, ``GET /api/exchangerates/rates/a/{code}/{date}/``,
with NBP's JSON (the rate written as a JSON number with NBP's digits) and NBP's
``404 NotFound - Not Found - Brak danych`` for a weekend, a holiday (the Polish public
holidays of every year by default) or a currency it does not quote. Table numbers count
the working days of the year (``001/A/NBP/2026`` is the first); rates are deterministic,
varying slightly from day to day around :data:`DEMO_RATES`.

In Python::

    with NbpEmulator() as nbp:                    # or NbpEmulator().start() ... .stop()
        PLUGIN_CONFIG = {"nbp": {"base_url": nbp.base_url, "timeout": 2}}
        nbp.set_rate("EUR", dt.date(2026, 11, 25), "4.2345")   # an exact rate for a day
        nbp.fail_next(500)                        # or "timeout", "garbage"; count=n

From a shell: ``python -m pakiet_nbp.emulator --port 12114 [--latency 0.2]``.

The server, the request log, the faults and the command line are the plugin authors' kit,
:mod:`portal.testing.emulator`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import urlsplit

from portal.testing.emulator import (
    Emulator,
    EmulatorHandler,
    EmulatorState,
    run_from_command_line,
)
from portal.testing.rates import daily_rate, easter, working_day_number

#: Rates around which the emulator's days vary (1 unit in PLN, NBP's precision).
DEMO_RATES: dict[str, Decimal] = {
    "EUR": Decimal("4.2300"),
    "USD": Decimal("3.9500"),
    "CZK": Decimal("0.1740"),
    "GBP": Decimal("4.9800"),
    "CHF": Decimal("4.5200"),
    "SEK": Decimal("0.3870"),
    "HUF": Decimal("0.011050"),
    "JPY": Decimal("0.025800"),
}
#: NBP's names of the currencies (the ``currency`` field).
NAMES = {
    "EUR": "euro",
    "USD": "dolar amerykański",
    "CZK": "korona czeska",
    "GBP": "funt szterling",
    "CHF": "frank szwajcarski",
    "SEK": "korona szwedzka",
    "HUF": "forint (Węgry)",
    "JPY": "jen (Japonia)",
}
_MID = "@mid@"  # stands for the rate until the JSON is written
NO_DATA = "404 NotFound - Not Found - Brak danych"
_PATH = re.compile(r"^/api/exchangerates/rates/([A-Za-z])/([A-Za-z]{3})/([0-9-]{10})/?$")
_STATUS_TEXT = {400: "BadRequest", 404: "NotFound", 429: "TooManyRequests"}


def polish_holidays(year: int) -> frozenset[dt.date]:
    """Poland's public holidays (days off work) in ``year``; 24 December since 2025."""
    sunday = easter(year)
    fixed = [(1, 1), (1, 6), (5, 1), (5, 3), (8, 15), (11, 1), (11, 11), (12, 25), (12, 26)]
    if year >= 2025:
        fixed.append((12, 24))
    days = {dt.date(year, month, day) for month, day in fixed}
    days |= {sunday, sunday + dt.timedelta(days=1), sunday + dt.timedelta(days=49)}
    days.add(sunday + dt.timedelta(days=60))  # Corpus Christi
    return frozenset(days)


@dataclass
class _State(EmulatorState):
    rates: dict[str, Decimal]
    holidays: frozenset[dt.date] | None  # None: Poland's, every year
    exact: dict[tuple[str, dt.date], Decimal] = field(default_factory=dict)

    def is_holiday(self, day: dt.date) -> bool:
        if self.holidays is None:
            return day in polish_holidays(day.year)
        return day in self.holidays

    def is_working_day(self, day: dt.date) -> bool:
        return day.weekday() < 5 and not self.is_holiday(day)

    def table_no(self, day: dt.date) -> str:
        return f"{working_day_number(day, self.is_working_day):03d}/A/NBP/{day.year}"

    def mid(self, code: str, day: dt.date) -> Decimal | None:
        with self.lock:
            exact = self.exact.get((code, day))
            around = self.rates.get(code)
        if exact is not None:
            return exact
        if around is None:
            return None
        return daily_rate(around, code, day)


class _Handler(EmulatorHandler[_State]):
    garbage_page = b"<html><body><h1>Przerwa techniczna</h1></body></html>"
    garbage_type = "text/html; charset=utf-8"

    def fault_text(self, status: int) -> str:
        return f"{status} {_STATUS_TEXT.get(status, 'Error')}"

    def do_GET(self) -> None:
        if self.begin():
            return
        match = _PATH.match(urlsplit(self.path).path)
        if match is None:
            self.send_text(404, "404 NotFound")
            return
        table, code, raw_day = match.group(1).upper(), match.group(2).upper(), match.group(3)
        try:
            day = dt.date.fromisoformat(raw_day)
        except ValueError:
            self.send_text(400, "400 BadRequest - Błędny zakres dat / Invalid date range")
            return
        mid = self.state.mid(code, day) if table == "A" else None
        if mid is None or not self.state.is_working_day(day):
            self.send_text(404, NO_DATA)
            return
        answer = {
            "table": "A",
            "currency": NAMES.get(code, code.lower()),
            "code": code,
            "rates": [{"no": self.state.table_no(day), "effectiveDate": str(day), "mid": _MID}],
        }
        # The rate goes in as a JSON number with exactly its digits, never through a float.
        body = json.dumps(answer, ensure_ascii=False, separators=(",", ":")).replace(
            f'"{_MID}"', format(mid, "f")
        )
        self.send_body(200, body.encode(), "application/json; charset=utf-8")


class NbpEmulator(Emulator[_State]):
    """The emulator as a server on ``127.0.0.1`` (``port=0`` picks a free port); see
    :class:`~portal.testing.emulator.Emulator` for ``start()``, ``stop()``, ``base_url``,
    ``requests``, ``fail_next()`` and ``latency``.

    :param rates: currency -> the rate its days vary around; default :data:`DEMO_RATES`.
    :param holidays: the days without a table besides weekends; default Poland's public
        holidays of every year (11 November, 24-26 December, Easter Monday, ...).
    """

    name = "nbp"
    title = "NBP"
    handler = _Handler

    def __init__(
        self,
        rates: Mapping[str, Decimal | str] | None = None,
        port: int = 0,
        holidays: Iterable[dt.date] | None = None,
    ) -> None:
        chosen = DEMO_RATES if rates is None else rates
        state = _State(
            rates={code.upper(): Decimal(value) for code, value in chosen.items()},
            holidays=None if holidays is None else frozenset(holidays),
        )
        super().__init__(state, port)

    # -- test controls ---------------------------------------------------------------------

    def set_rate(self, code: str, day: dt.date, mid: Decimal | str) -> None:
        """Serve exactly ``mid`` for ``code`` on ``day`` (a working day)."""
        with self.state.lock:
            self.state.exact[(code.upper(), day)] = Decimal(mid)

    # -- what it serves --------------------------------------------------------------------

    def is_working_day(self, day: dt.date) -> bool:
        return self.state.is_working_day(day)

    def table_no(self, day: dt.date) -> str:
        """The number of the table of ``day``, a working day: ``231/A/NBP/2026``."""
        return self.state.table_no(day)

    def mid(self, code: str, day: dt.date) -> Decimal | None:
        """The rate served for ``code`` on ``day``; ``None`` when there is no table."""
        if not self.is_working_day(day):
            return None
        return self.state.mid(code.upper(), day)


def main(argv: list[str] | None = None) -> None:
    run_from_command_line(
        NbpEmulator, "NBP Web API emulator (table A mid rates)", port=12114, argv=argv
    )


if __name__ == "__main__":
    main()
