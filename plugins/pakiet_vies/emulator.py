"""A VIES REST API emulator for the tests, the browser tests and the demo.

It speaks the subset of the API the plugin uses, with VIES's field names and error
shapes: ``POST /check-vat-number``, ``GET /ms/{countryCode}/vat/{vatNumber}`` and
``GET /check-status``. Its registry is the fixed table :data:`NUMBERS` (every number
in it passes its country's check digit, so the offline check lets it through); a
number it does not know is "not valid", as in VIES.

In Python::

    with ViesEmulator(latency=0.0) as vies:      # or ViesEmulator().start() ... .stop()
        PLUGIN_CONFIG = {"vies": {"base_url": vies.base_url, "timeout": 2}}
        vies.set_outcome("PL6351396937", VALID)  # MS_UNAVAILABLE until now

From a shell: ``python -m pakiet_vies.emulator --port 12113 [--latency 0.2]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

VALID = "VALID"
INVALID = "INVALID"
GARBAGE = "GARBAGE"  # HTTP 200 with a body that is not JSON
TRICKLE = "TRICKLE"  # the reply comes one byte at a time, far slower than any timeout
ERROR_CODES = (
    "MS_UNAVAILABLE",
    "TIMEOUT",
    "SERVICE_UNAVAILABLE",
    "MS_MAX_CONCURRENT_REQ",
    "GLOBAL_MAX_CONCURRENT_REQ",
)
# How POST /check-vat-number reports each error: VIES answers overload and member-state
# outages with HTTP 200 and an error envelope, its own failures and bad input with 5xx/4xx.
POST_ERROR_STATUS = {
    "MS_UNAVAILABLE": 200,
    "TIMEOUT": 200,
    "MS_MAX_CONCURRENT_REQ": 200,
    "GLOBAL_MAX_CONCURRENT_REQ": 200,
    "SERVICE_UNAVAILABLE": 500,
    "INVALID_INPUT": 400,
    "INVALID_REQUESTER_INFO": 400,
}
MEMBER_STATES = tuple(
    "AT BE BG CY CZ DE DK EE EL ES FI FR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK XI".split()
)


@dataclass
class Entry:
    """What the registry says about one number: an outcome and, if valid, who it is."""

    outcome: str
    name: str = "---"
    address: str = "---"


NUMBERS: dict[str, Entry] = {
    # valid
    "PL5260250274": Entry(
        VALID,
        "PAKIET SPÓŁKA Z OGRANICZONĄ ODPOWIEDZIALNOŚCIĄ",
        "UL. PRZYKŁADOWA 1\n00-001 WARSZAWA",
    ),
    "PL9574890682": Entry(
        VALID, "SKLEP ROWEROWY SZPRYCHA SP. Z O.O.", "UL. DŁUGA 5\n80-831 GDAŃSK"
    ),
    "DE812415868": Entry(VALID),  # Germany discloses neither name nor address
    "CZ86756508": Entry(VALID, "Horská chata s.r.o.", "Masarykova 12\n602 00 Brno"),
    "EL435189991": Entry(VALID, "ΑΘΗΝΑΪΚΗ ΕΜΠΟΡΙΚΗ Α.Ε.", "ΕΡΜΟΥ 10\n10563 ΑΘΗΝΑ"),
    "XI980780684": Entry(VALID, "BELFAST WIDGETS LTD", "1 HIGH STREET\nBELFAST BT1 2AA"),
    # not registered for intra-EU transactions
    "PL3960306202": Entry(INVALID),
    "DE304114426": Entry(INVALID),
    # one number per error code
    "PL6351396937": Entry("MS_UNAVAILABLE"),
    "PL6115971439": Entry("TIMEOUT"),
    "PL3493096563": Entry("SERVICE_UNAVAILABLE"),
    "PL7762334789": Entry("MS_MAX_CONCURRENT_REQ"),
    "PL6174876197": Entry("GLOBAL_MAX_CONCURRENT_REQ"),
    "DE870596402": Entry("MS_UNAVAILABLE"),
    # misbehaving replies
    "PL3622436890": Entry(GARBAGE),
    "DE845551439": Entry(TRICKLE),
}

_MS_PATH = re.compile(r"^/ms/([A-Za-z]{2})/vat/([^/]+)$")


@dataclass
class Seen:
    """One request the emulator answered (tests assert what the client sent)."""

    method: str
    path: str
    body: Any = None


@dataclass
class _State:
    numbers: dict[str, Entry]
    latency: float
    unavailable: set[str] = field(default_factory=set)
    requests: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


class ViesEmulator:
    """The emulator as a server on ``127.0.0.1`` (``port=0`` picks a free port).

    :param latency: seconds to wait before every answer.
    :param numbers: the registry; default a copy of :data:`NUMBERS`.
    """

    def __init__(
        self, latency: float = 0.0, port: int = 0, numbers: dict[str, Entry] | None = None
    ) -> None:
        self._state = _State(numbers=dict(numbers or NUMBERS), latency=latency)
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------

    def start(self) -> ViesEmulator:
        state = self._state

        class Handler(_Handler):
            pass

        Handler.state = state
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # so that stop() returns at once
            name="vies-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._state.stopping.set()  # wakes handlers that are sleeping or trickling
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> ViesEmulator:
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

    @property
    def latency(self) -> float:
        return self._state.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._state.latency = seconds

    def set_outcome(
        self, number: str, outcome: str, name: str = "---", address: str = "---"
    ) -> None:
        """Make the registry answer ``outcome`` for ``number`` (with its prefix) from now
        on: ``VALID``, ``INVALID``, an error code, ``GARBAGE`` or ``TRICKLE``."""
        with self._state.lock:
            self._state.numbers[number.upper()] = Entry(outcome, name, address)

    def set_available(self, country: str, available: bool) -> None:
        """Take a member state's registry down (every number answers MS_UNAVAILABLE)."""
        with self._state.lock:
            if available:
                self._state.unavailable.discard(country.upper())
            else:
                self._state.unavailable.add(country.upper())

    def clear_requests(self) -> None:
        with self._state.lock:
            self._state.requests.clear()


class _Handler(BaseHTTPRequestHandler):
    state: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read :attr:`ViesEmulator.requests` instead."""

    # -- routes --------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        self._record(None)
        if self._wait(self.state.latency):
            return
        if path == "/check-status":
            self._check_status()
            return
        match = _MS_PATH.match(path)
        if match is None:
            self._send(404, {"actionSucceed": False, "errorWrappers": [{"error": "NOT_FOUND"}]})
            return
        country, number = match.group(1).upper(), unquote(match.group(2)).upper()
        self._ms_vat(country, number)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(min(length, 64 * 1024))
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        self._record(body)
        if self._wait(self.state.latency):
            return
        if path != "/check-vat-number":
            self._send(404, {"actionSucceed": False, "errorWrappers": [{"error": "NOT_FOUND"}]})
            return
        if not isinstance(body, dict) or not all(
            isinstance(body.get(key), str) and body.get(key) for key in ("countryCode", "vatNumber")
        ):
            self._error(400, "INVALID_INPUT")
            return
        self._check_vat_number(body)

    # -- answers -------------------------------------------------------------------------

    def _check_status(self) -> None:
        with self.state.lock:
            down = set(self.state.unavailable)
        countries = [
            {"countryCode": code, "availability": "Unavailable" if code in down else "Available"}
            for code in MEMBER_STATES
        ]
        self._send(200, {"vow": {"available": True}, "countries": countries})

    def _lookup(self, country: str, number: str) -> Entry:
        with self.state.lock:
            if country in self.state.unavailable:
                return Entry("MS_UNAVAILABLE")
            return self.state.numbers.get(country + number, Entry(INVALID))

    def _ms_vat(self, country: str, number: str) -> None:
        if country not in MEMBER_STATES or not number.isalnum():
            self._send(200, self._ms_body(False, "INVALID_INPUT", country, number))
            return
        entry = self._lookup(country, number)
        if self._misbehave(entry):
            return
        if entry.outcome in (VALID, INVALID):
            valid = entry.outcome == VALID
            body = self._ms_body(valid, entry.outcome, country, number)
            if valid:
                body.update(name=entry.name, address=entry.address)
            self._send(200, body)
            return
        # VIES's GET reports errors with HTTP 200, "isValid": false and the code.
        self._send(200, self._ms_body(False, entry.outcome, country, number))

    def _check_vat_number(self, body: dict[str, Any]) -> None:
        country, number = str(body["countryCode"]).upper(), str(body["vatNumber"]).upper()
        if country not in MEMBER_STATES or not number.isalnum():
            self._error(400, "INVALID_INPUT")
            return
        requester = None
        req_country, req_number = body.get("requesterMemberStateCode"), body.get("requesterNumber")
        if req_country or req_number:
            known = self.state.numbers.get(f"{req_country}{req_number}".upper())
            if known is None or known.outcome != VALID:
                self._error(400, "INVALID_REQUESTER_INFO")
                return
            requester = f"{req_country}{req_number}"
        entry = self._lookup(country, number)
        if self._misbehave(entry):
            return
        if entry.outcome not in (VALID, INVALID):
            self._error(POST_ERROR_STATUS.get(entry.outcome, 500), entry.outcome)
            return
        valid = entry.outcome == VALID
        self._send(
            200,
            {
                "countryCode": country,
                "vatNumber": number,
                "requestDate": _now(),
                "valid": valid,
                # VIES hands out a consultation number only to a requester it knows.
                "requestIdentifier": self._identifier() if requester else "",
                "name": entry.name if valid else "---",
                "address": entry.address if valid else "---",
                "traderName": None,
                "traderStreet": None,
                "traderPostalCode": None,
                "traderCity": None,
                "traderCompanyType": None,
                "traderNameMatch": "NOT_PROCESSED",
                "traderStreetMatch": "NOT_PROCESSED",
                "traderPostalCodeMatch": "NOT_PROCESSED",
                "traderCityMatch": "NOT_PROCESSED",
                "traderCompanyTypeMatch": "NOT_PROCESSED",
            },
        )

    def _ms_body(self, valid: bool, user_error: str, country: str, number: str) -> dict[str, Any]:
        return {
            "isValid": valid,
            "requestDate": _now(),
            "userError": user_error,
            "name": "---",
            "address": "---",
            "requestIdentifier": "",
            "originalVatNumber": number,
            "vatNumber": number,
            "viesApproximate": {
                "name": "---",
                "street": "---",
                "postalCode": "---",
                "city": "---",
                "companyType": "---",
                "matchName": 3,
                "matchStreet": 3,
                "matchPostalCode": 3,
                "matchCity": 3,
                "matchCompanyType": 3,
            },
        }

    def _identifier(self) -> str:
        with self.state.lock:
            serial = next(self.state.counter)
        return f"WAPIAAAA{serial:08d}"

    def _misbehave(self, entry: Entry) -> bool:
        if entry.outcome == GARBAGE:
            self._send_raw(200, b"<html><body>Service temporarily unavailable</body></html>")
            return True
        if entry.outcome == TRICKLE:
            body = json.dumps({"valid": True, "requestIdentifier": "SLOW"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for byte in body:
                if self._wait(0.5):
                    return True
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:  # the client gave up, as it should
                    return True
            return True
        return False

    # -- plumbing ------------------------------------------------------------------------

    def _wait(self, seconds: float) -> bool:
        """Sleep; ``True`` when the emulator is stopping (then answer nothing)."""
        return seconds > 0 and self.state.stopping.wait(seconds)

    def _record(self, body: Any) -> None:
        with self.state.lock:
            self.state.requests.append(Seen(self.command, self.path, body))

    def _error(self, status: int, code: str) -> None:
        envelope = {"actionSucceed": False, "errorWrappers": [{"error": code, "message": None}]}
        self._send(status, envelope)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        self._send_raw(status, json.dumps(body, ensure_ascii=False).encode(), "application/json")

    def _send_raw(self, status: int, body: bytes, content_type: str = "text/html") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client timed out and closed the connection
            pass


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="VIES REST API emulator")
    parser.add_argument("--port", type=int, default=12113)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)
    emulator = ViesEmulator(latency=args.latency, port=args.port).start()
    print(f"VIES emulator at {emulator.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
