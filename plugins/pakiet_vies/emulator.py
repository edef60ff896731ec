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

The server, the request log, the latency, the faults (``fail_next``) and the command line
are the plugin authors' kit, :mod:`portal.testing.emulator`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from portal.testing.emulator import (
    Emulator,
    EmulatorHandler,
    EmulatorState,
    run_from_command_line,
)

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
class _State(EmulatorState):
    numbers: dict[str, Entry]
    unavailable: set[str] = field(default_factory=set)
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


class _Handler(EmulatorHandler[_State]):
    garbage_page = b"<html><body>Service temporarily unavailable</body></html>"

    # -- routes --------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if self.begin():
            return
        if path == "/check-status":
            self._check_status()
            return
        match = _MS_PATH.match(path)
        if match is None:
            self.send_json(404, {"actionSucceed": False, "errorWrappers": [{"error": "NOT_FOUND"}]})
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
        if self.begin(body):
            return
        if path != "/check-vat-number":
            self.send_json(404, {"actionSucceed": False, "errorWrappers": [{"error": "NOT_FOUND"}]})
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
        self.send_json(200, {"vow": {"available": True}, "countries": countries})

    def _lookup(self, country: str, number: str) -> Entry:
        with self.state.lock:
            if country in self.state.unavailable:
                return Entry("MS_UNAVAILABLE")
            return self.state.numbers.get(country + number, Entry(INVALID))

    def _ms_vat(self, country: str, number: str) -> None:
        if country not in MEMBER_STATES or not number.isalnum():
            self.send_json(200, self._ms_body(False, "INVALID_INPUT", country, number))
            return
        entry = self._lookup(country, number)
        if self._misbehave(entry):
            return
        if entry.outcome in (VALID, INVALID):
            valid = entry.outcome == VALID
            body = self._ms_body(valid, entry.outcome, country, number)
            if valid:
                body.update(name=entry.name, address=entry.address)
            self.send_json(200, body)
            return
        # VIES's GET reports errors with HTTP 200, "isValid": false and the code.
        self.send_json(200, self._ms_body(False, entry.outcome, country, number))

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
        self.send_json(
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
            self.send_body(200, self.garbage_page, self.garbage_type)
            return True
        if entry.outcome == TRICKLE:
            body = json.dumps({"valid": True, "requestIdentifier": "SLOW"}).encode()
            self.send_trickle(200, body, "application/json")
            return True
        return False

    def _error(self, status: int, code: str) -> None:
        envelope = {"actionSucceed": False, "errorWrappers": [{"error": code, "message": None}]}
        self.send_json(status, envelope)


class ViesEmulator(Emulator[_State]):
    """The emulator as a server on ``127.0.0.1`` (``port=0`` picks a free port); see
    :class:`~portal.testing.emulator.Emulator` for ``start()``, ``stop()``, ``base_url``,
    ``requests``, ``latency`` and ``fail_next()``.

    :param latency: seconds to wait before every answer.
    :param numbers: the registry; default a copy of :data:`NUMBERS`.
    """

    name = "vies"
    title = "VIES"
    handler = _Handler

    def __init__(
        self, latency: float = 0.0, port: int = 0, numbers: dict[str, Entry] | None = None
    ) -> None:
        super().__init__(_State(numbers=dict(numbers or NUMBERS), latency=latency), port)

    # -- test controls ---------------------------------------------------------------------

    def set_outcome(
        self, number: str, outcome: str, name: str = "---", address: str = "---"
    ) -> None:
        """Make the registry answer ``outcome`` for ``number`` (with its prefix) from now
        on: ``VALID``, ``INVALID``, an error code, ``GARBAGE`` or ``TRICKLE``."""
        with self.state.lock:
            self.state.numbers[number.upper()] = Entry(outcome, name, address)

    def set_available(self, country: str, available: bool) -> None:
        """Take a member state's registry down (every number answers MS_UNAVAILABLE)."""
        with self.state.lock:
            if available:
                self.state.unavailable.discard(country.upper())
            else:
                self.state.unavailable.add(country.upper())


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def main(argv: list[str] | None = None) -> None:
    run_from_command_line(ViesEmulator, "VIES REST API emulator", port=12113, argv=argv)


if __name__ == "__main__":
    main()
