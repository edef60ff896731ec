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

From a shell: ``python -m pakiet_cnb.emulator --port 12115``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pakiet_cnb.client import DAILY_PATH, prague_today


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
FAULTS = ("timeout", "garbage")  # besides an HTTP status
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
_DATE = re.compile(r"^(\d{2})\.(\d{2})\.(\d{4})$")


def easter(year: int) -> dt.date:
    """Easter Sunday of ``year`` (the Gregorian computus)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    el = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * el) // 451
    month, day = divmod(h + el - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def czech_holidays(year: int) -> frozenset[dt.date]:
    """The Czech Republic's public holidays in ``year`` (no fixing on them)."""
    sunday = easter(year)
    fixed = [(1, 1), (5, 1), (5, 8), (7, 5), (7, 6), (9, 28), (10, 28), (11, 17)]
    fixed += [(12, 24), (12, 25), (12, 26)]
    days = {dt.date(year, month, day) for month, day in fixed}
    days |= {sunday - dt.timedelta(days=2), sunday + dt.timedelta(days=1)}  # Good Fri, Mon
    return frozenset(days)


@dataclass
class Seen:
    """One request the emulator answered (tests assert what the client asked)."""

    method: str
    path: str


@dataclass
class _State:
    rows: dict[str, Row]
    holidays: frozenset[dt.date] | None  # None: the Czech Republic's, every year
    exact: dict[tuple[str, dt.date], Decimal] = field(default_factory=dict)
    faults: deque[int | str] = field(default_factory=deque)
    requests: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def is_working_day(self, day: dt.date) -> bool:
        holidays = czech_holidays(day.year) if self.holidays is None else self.holidays
        return day.weekday() < 5 and day not in holidays

    def fixing_day(self, day: dt.date) -> dt.date:
        """The last working day on or before ``day``."""
        while not self.is_working_day(day):
            day -= dt.timedelta(days=1)
        return day

    def serial(self, day: dt.date) -> int:
        first = dt.date(day.year, 1, 1)
        return sum(
            self.is_working_day(first + dt.timedelta(days=n)) for n in range((day - first).days + 1)
        )

    def rate(self, code: str, day: dt.date) -> Decimal:
        """CZK for the row's amount of ``code`` on ``day``, a working day."""
        with self.lock:
            exact = self.exact.get((code, day))
            row = self.rows[code]
        if exact is not None:
            return exact
        # Up to ±0.5 % from day to day, the same every run.
        step = (day.toordinal() * 37 + sum(map(ord, code)) * 11) % 101 - 50
        varied = row.rate * (1 + Decimal(step) / 10_000)
        return varied.quantize(row.rate, rounding=ROUND_HALF_UP)

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


class CnbEmulator:
    """The emulator as a server on ``127.0.0.1`` (``port=0`` picks a free port).

    :param rates: currency -> its :class:`Row` (amount and the rate its days vary
        around); default :data:`DEMO_RATES`.
    :param holidays: the days without a fixing besides weekends; default the Czech public
        holidays of every year (28 October, 17 November, 24-26 December, Easter, ...).
    """

    def __init__(
        self,
        rates: Mapping[str, Row] | None = None,
        port: int = 0,
        holidays: Iterable[dt.date] | None = None,
    ) -> None:
        chosen = DEMO_RATES if rates is None else rates
        self._state = _State(
            rows={code.upper(): row for code, row in chosen.items()},
            holidays=None if holidays is None else frozenset(holidays),
        )
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------

    def start(self) -> CnbEmulator:
        state = self._state
        state.stopping.clear()

        class Handler(_Handler):
            pass

        Handler.state = state
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # so that stop() returns at once
            name="cnb-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._state.stopping.set()  # wakes handlers that are hanging ("timeout")
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> CnbEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[Seen]:
        with self._state.lock:
            return list(self._state.requests)

    def clear_requests(self) -> None:
        with self._state.lock:
            self._state.requests.clear()

    def fail_next(self, status: int | str = 500, count: int = 1) -> None:
        """Answer the next ``count`` requests with HTTP ``status``, or ``"timeout"`` (no
        answer until the client gives up) or ``"garbage"`` (HTTP 200 and an HTML page)."""
        if not isinstance(status, int) and status not in FAULTS:
            raise ValueError(f"a fault is an HTTP status or one of {FAULTS}: {status!r}")
        with self._state.lock:
            self._state.faults.extend([status] * count)

    def set_rate(self, code: str, day: dt.date, rate: Decimal | str) -> None:
        """Fix ``code`` at exactly ``rate`` CZK per its row's amount on ``day``."""
        with self._state.lock:
            self._state.exact[(code.upper(), day)] = Decimal(rate)

    # -- what it serves --------------------------------------------------------------------

    def is_working_day(self, day: dt.date) -> bool:
        return self._state.is_working_day(day)

    def daily_txt(self, day: dt.date) -> str:
        """The file served for ``?date=`` ``day``."""
        return self._state.daily_txt(day)


class _Handler(BaseHTTPRequestHandler):
    state: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read :attr:`CnbEmulator.requests` instead."""

    def do_GET(self) -> None:
        with self.state.lock:
            self.state.requests.append(Seen(self.command, self.path))
            fault = self.state.faults.popleft() if self.state.faults else None
        if fault is not None:
            self._fault(fault)
            return
        parts = urlsplit(self.path)
        if parts.path != DAILY_PATH:
            self._send(404, b"<html><body>Page not found</body></html>", "text/html")
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
                self._send(400, b"Invalid date", "text/plain; charset=UTF-8")
                return
        body = self.state.daily_txt(day).encode()
        self._send(200, body, "text/plain;charset=UTF-8")

    def _fault(self, fault: int | str) -> None:
        if fault == "timeout":
            self.state.stopping.wait(30)  # the client gives up long before
            self.close_connection = True
        elif fault == "garbage":
            page = b"<html><body><h1>Service unavailable</h1></body></html>"
            self._send(200, page, "text/html")
        else:
            status = int(fault)
            self._send(status, f"{status} Error".encode(), "text/plain; charset=UTF-8")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client timed out and closed the connection
            pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="ČNB daily exchange-rate fixing emulator")
    parser.add_argument("--port", type=int, default=12115)
    args = parser.parse_args(argv)
    emulator = CnbEmulator(port=args.port).start()
    print(f"ČNB emulator at {emulator.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
