"""A ČNB daily-fixing emulator for the tests, the browser tests and the demo.

It serves ``daily.txt?date=DD.MM.YYYY`` at ČNB's path (:data:`pakiet_cnb.client.DAILY_PATH`)
in ČNB's English text format: the fixing in force on that date, i.e. the day's own on a
working day, otherwise the last one before it (a weekend, a Czech public holiday), dated
and numbered in its first line (``26 Nov 2026 #229``; the serial counts the year's working
days). The ``Amount`` column is ČNB's: 100 for HUF and JPY. Rates are deterministic,
varying slightly from day to day around :data:`DEMO_RATES`.

In Python::

    with CnbEmulator() as cnb:                    # or CnbEmulator().start() ... .stop()
        PLUGIN_CONFIG = {"cnb": {"base_url": cnb.base_url, "timeout": 2}}
        cnb.set_rate("HUF", dt.date(2026, 11, 25), "6.231")   # CZK per 100 HUF that day
        cnb.fail_next(503)                        # or "timeout", "garbage"; count=n

From a shell: ``python -m pakiet_cnb.emulator --port 12115 [--latency 0.2]``.

The server, the request log, the faults and the command line are the plugin authors' kit,
:mod:`portal.testing.emulator`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

from pakiet_cnb.client import DAILY_PATH, prague_today
from portal.testing.emulator import (
    Emulator,
    EmulatorHandler,
    EmulatorState,
    run_from_command_line,
)
from portal.testing.rates import daily_rate, easter, working_day_number


@dataclass(frozen=True)
class Row:
    """One line of the fixing: ``amount`` units cost about ``rate`` CZK."""

    country: str
    currency: str
    amount: int
    rate: Decimal


#: What the emulator's days vary around (ČNB's precision: three decimals).
DEMO_RATES: dict[str, Row] = {
    "EUR": Row("EMU", "euro", 1, Decimal("24.300")),
    "USD": Row("USA", "dollar", 1, Decimal("20.950")),
    "PLN": Row("Poland", "zloty", 1, Decimal("5.740")),
    "GBP": Row("United Kingdom", "pound", 1, Decimal("27.600")),
    "CHF": Row("Switzerland", "franc", 1, Decimal("26.100")),
    "HUF": Row("Hungary", "forint", 100, Decimal("6.230")),
    "JPY": Row("Japan", "yen", 100, Decimal("13.650")),
    "IDR": Row("Indonesia", "rupiah", 1000, Decimal("1.270")),
}
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
_DATE = re.compile(r"^(\d{2})\.(\d{2})\.(\d{4})$")


def czech_holidays(year: int) -> frozenset[dt.date]:
    """The Czech Republic's public holidays in ``year`` (no fixing on them)."""
    sunday = easter(year)
    fixed = [(1, 1), (5, 1), (5, 8), (7, 5), (7, 6), (9, 28), (10, 28), (11, 17)]
    fixed += [(12, 24), (12, 25), (12, 26)]
    days = {dt.date(year, month, day) for month, day in fixed}
    days |= {sunday - dt.timedelta(days=2), sunday + dt.timedelta(days=1)}  # Good Fri, Mon
    return frozenset(days)


@dataclass
class _State(EmulatorState):
    rows: dict[str, Row]
    holidays: frozenset[dt.date] | None  # None: the Czech Republic's, every year
    exact: dict[tuple[str, dt.date], Decimal] = field(default_factory=dict)

    def is_working_day(self, day: dt.date) -> bool:
        holidays = czech_holidays(day.year) if self.holidays is None else self.holidays
        return day.weekday() < 5 and day not in holidays

    def fixing_day(self, day: dt.date) -> dt.date:
        """The last working day on or before ``day``."""
        while not self.is_working_day(day):
            day -= dt.timedelta(days=1)
        return day

    def serial(self, day: dt.date) -> int:
        return working_day_number(day, self.is_working_day)

    def rate(self, code: str, day: dt.date) -> Decimal:
        """CZK for the row's amount of ``code`` on ``day``, a working day."""
        with self.lock:
            exact = self.exact.get((code, day))
            row = self.rows[code]
        if exact is not None:
            return exact
        return daily_rate(row.rate, code, day)

    def daily_txt(self, day: dt.date) -> str:
        fixing = self.fixing_day(day)
        lines = [
            f"{fixing.day:02d} {_MONTHS[fixing.month - 1]} {fixing.year} #{self.serial(fixing)}",
            "Country|Currency|Amount|Code|Rate",
        ]
        with self.lock:
            rows = sorted(self.rows.items(), key=lambda item: item[1].country)
        for code, row in rows:
            rate = format(self.rate(code, fixing), "f")
            lines.append(f"{row.country}|{row.currency}|{row.amount}|{code}|{rate}")
        return "\n".join(lines) + "\n"


class _Handler(EmulatorHandler[_State]):
    text_type = "text/plain; charset=UTF-8"

    def do_GET(self) -> None:
        if self.begin():
            return
        parts = urlsplit(self.path)
        if parts.path != DAILY_PATH:
            self.send_body(404, b"<html><body>Page not found</body></html>", "text/html")
            return
        dates = parse_qs(parts.query).get("date")
        if not dates:
            day = prague_today()
        else:
            match = _DATE.match(dates[0])
            try:
                if match is None:
                    raise ValueError(dates[0])
                day = dt.date(int(match.group(3)), int(match.group(2)), int(match.group(1)))
            except ValueError:
                self.send_text(400, "Invalid date")
                return
        body = self.state.daily_txt(day).encode()
        self.send_body(200, body, "text/plain;charset=UTF-8")


class CnbEmulator(Emulator[_State]):
    """The emulator as a server on ``127.0.0.1`` (``port=0`` picks a free port); see
    :class:`~portal.testing.emulator.Emulator` for ``start()``, ``stop()``, ``base_url``,
    ``requests``, ``fail_next()`` and ``latency``.

    :param rates: currency -> its :class:`Row` (amount and the rate its days vary
        around); default :data:`DEMO_RATES`.
    :param holidays: the days without a fixing besides weekends; default the Czech public
        holidays of every year (28 October, 17 November, 24-26 December, Easter, ...).
    """

    name = "cnb"
    title = "ČNB"
    handler = _Handler

    def __init__(
        self,
        rates: Mapping[str, Row] | None = None,
        port: int = 0,
        holidays: Iterable[dt.date] | None = None,
    ) -> None:
        chosen = DEMO_RATES if rates is None else rates
        state = _State(
            rows={code.upper(): row for code, row in chosen.items()},
            holidays=None if holidays is None else frozenset(holidays),
        )
        super().__init__(state, port)

    # -- test controls ---------------------------------------------------------------------

    def set_rate(self, code: str, day: dt.date, rate: Decimal | str) -> None:
        """Fix ``code`` at exactly ``rate`` CZK per its row's amount on ``day``."""
        with self.state.lock:
            self.state.exact[(code.upper(), day)] = Decimal(rate)

    # -- what it serves --------------------------------------------------------------------

    def is_working_day(self, day: dt.date) -> bool:
        return self.state.is_working_day(day)

    def daily_txt(self, day: dt.date) -> str:
        """The file served for ``?date=`` ``day``."""
        return self.state.daily_txt(day)


def main(argv: list[str] | None = None) -> None:
    run_from_command_line(
        CnbEmulator, "ČNB daily exchange-rate fixing emulator", port=12115, argv=argv
    )


if __name__ == "__main__":
    main()
