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

From a shell: ``python -m pakiet_nbp.emulator --port 12114``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

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
FAULTS = ("timeout", "garbage")  # besides an HTTP status
_MID = "@mid@"  # stands for the rate until the JSON is written
NO_DATA = "404 NotFound - Not Found - Brak danych"
_PATH = re.compile(r"^/api/exchangerates/rates/([A-Za-z])/([A-Za-z]{3})/([0-9-]{10})/?$")
_STATUS_TEXT = {400: "BadRequest", 404: "NotFound", 429: "TooManyRequests"}


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
class Seen:
    """One request the emulator answered (tests assert what the client asked)."""

    method: str
    path: str


@dataclass
class _State:
    rates: dict[str, Decimal]
    holidays: frozenset[dt.date] | None  # None: Poland's, every year
    exact: dict[tuple[str, dt.date], Decimal] = field(default_factory=dict)
    faults: deque[int | str] = field(default_factory=deque)
    requests: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def is_holiday(self, day: dt.date) -> bool:
        if self.holidays is None:
            return day in polish_holidays(day.year)
        return day in self.holidays

    def is_working_day(self, day: dt.date) -> bool:
        return day.weekday() < 5 and not self.is_holiday(day)

    def table_no(self, day: dt.date) -> str:
        first = dt.date(day.year, 1, 1)
        count = sum(
            self.is_working_day(first + dt.timedelta(days=n)) for n in range((day - first).days + 1)
        )
        return f"{count:03d}/A/NBP/{day.year}"

    def mid(self, code: str, day: dt.date) -> Decimal | None:
        with self.lock:
            exact = self.exact.get((code, day))
            around = self.rates.get(code)
        if exact is not None:
            return exact
        if around is None:
            return None
        # Up to ±0.5 % from day to day, the same every run.
        step = (day.toordinal() * 37 + sum(map(ord, code)) * 11) % 101 - 50
        varied = around * (1 + Decimal(step) / 10_000)
        return varied.quantize(around, rounding=ROUND_HALF_UP)


class NbpEmulator:
    """The emulator as a server on ``127.0.0.1`` (``port=0`` picks a free port).

    :param rates: currency -> the rate its days vary around; default :data:`DEMO_RATES`.
    :param holidays: the days without a table besides weekends; default Poland's public
        holidays of every year (11 November, 24-26 December, Easter Monday, ...).
    """

    def __init__(
        self,
        rates: Mapping[str, Decimal | str] | None = None,
        port: int = 0,
        holidays: Iterable[dt.date] | None = None,
    ) -> None:
        chosen = DEMO_RATES if rates is None else rates
        self._state = _State(
            rates={code.upper(): Decimal(value) for code, value in chosen.items()},
            holidays=None if holidays is None else frozenset(holidays),
        )
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------

    def start(self) -> NbpEmulator:
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
            name="nbp-emulator",
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

    def __enter__(self) -> NbpEmulator:
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

    def set_rate(self, code: str, day: dt.date, mid: Decimal | str) -> None:
        """Serve exactly ``mid`` for ``code`` on ``day`` (a working day)."""
        with self._state.lock:
            self._state.exact[(code.upper(), day)] = Decimal(mid)

    # -- what it serves --------------------------------------------------------------------

    def is_working_day(self, day: dt.date) -> bool:
        return self._state.is_working_day(day)

    def table_no(self, day: dt.date) -> str:
        """The number of the table of ``day``, a working day: ``231/A/NBP/2026``."""
        return self._state.table_no(day)

    def mid(self, code: str, day: dt.date) -> Decimal | None:
        """The rate served for ``code`` on ``day``; ``None`` when there is no table."""
        if not self.is_working_day(day):
            return None
        return self._state.mid(code.upper(), day)


class _Handler(BaseHTTPRequestHandler):
    state: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read :attr:`NbpEmulator.requests` instead."""

    def do_GET(self) -> None:
        with self.state.lock:
            self.state.requests.append(Seen(self.command, self.path))
            fault = self.state.faults.popleft() if self.state.faults else None
        if fault is not None:
            self._fault(fault)
            return
        match = _PATH.match(urlsplit(self.path).path)
        if match is None:
            self._text(404, "404 NotFound")
            return
        table, code, raw_day = match.group(1).upper(), match.group(2).upper(), match.group(3)
        try:
            day = dt.date.fromisoformat(raw_day)
        except ValueError:
            self._text(400, "400 BadRequest - Błędny zakres dat / Invalid date range")
            return
        mid = self.state.mid(code, day) if table == "A" else None
        if mid is None or not self.state.is_working_day(day):
            self._text(404, NO_DATA)
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
        self._send(200, body.encode(), "application/json; charset=utf-8")

    def _fault(self, fault: int | str) -> None:
        if fault == "timeout":
            self.state.stopping.wait(30)  # the client gives up long before
            self.close_connection = True
        elif fault == "garbage":
            page = b"<html><body><h1>Przerwa techniczna</h1></body></html>"
            self._send(200, page, "text/html; charset=utf-8")
        else:
            status = int(fault)
            self._text(status, f"{status} {_STATUS_TEXT.get(status, 'Error')}")

    def _text(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")

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
    parser = argparse.ArgumentParser(description="NBP Web API emulator (table A mid rates)")
    parser.add_argument("--port", type=int, default=12114)
    args = parser.parse_args(argv)
    emulator = NbpEmulator(port=args.port).start()
    print(f"NBP emulator at {emulator.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
