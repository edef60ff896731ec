"""A small client of the EU VIES REST API, bounded by one deadline per check.

Two calls are used:

* ``POST /check-vat-number`` with ``{"countryCode", "vatNumber", "requesterMemberStateCode",
  "requesterNumber"}``: with the requester's own VAT number VIES answers with a
  consultation number (``requestIdentifier``), the proof that the seller checked the buyer.
  Its answer is ``{"countryCode", "vatNumber", "requestDate", "valid", "requestIdentifier",
  "name", "address", ...}``; a failure is ``{"actionSucceed": false, "errorWrappers":
  [{"error": "MS_UNAVAILABLE", "message": ...}]}``, with HTTP 200 as well as 4xx/5xx.
* ``GET /ms/{countryCode}/vat/{vatNumber}``: without a requester. Its answer is
  ``{"isValid", "requestDate", "userError", "name", "address", "requestIdentifier", ...}``
  and it reports a failure with HTTP 200, ``isValid: false`` and ``userError`` set to the
  error code, so ``userError`` must be read before ``isValid``.

Anything that is not a clear yes or no from VIES (its error codes, network errors, a
timeout, a reply that is not the JSON above) is ``UNAVAILABLE``: VIES being down must
never make a number "invalid".
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from portal.plugin_api.contracts import ProviderError
from portal.plugin_api.http import checked_base_url, fetch

DEFAULT_BASE_URL = "https://ec.europa.eu/taxation_customs/vies/rest-api"
DEFAULT_TIMEOUT = 5.0
MAX_REPLY_BYTES = 64 * 1024  # a real answer is well under 2 KiB

#: VIES error codes that mean "try again later".
UNAVAILABLE_CODES = frozenset(
    {
        "MS_UNAVAILABLE",
        "TIMEOUT",
        "SERVICE_UNAVAILABLE",
        "MS_MAX_CONCURRENT_REQ",
        "GLOBAL_MAX_CONCURRENT_REQ",
    }
)
#: VIES refuses the number itself. Other codes (INVALID_REQUESTER_INFO, VAT_BLOCKED,
#: IP_BLOCKED, ...) are about the asker, not the buyer, so they count as unavailable.
INVALID_CODES = frozenset({"INVALID_INPUT"})
# VIES writes this where a member state does not disclose the name or address.
_UNDISCLOSED = {"", "---"}


class Outcome(StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class ViesAnswer:
    """What VIES said about one number. ``reason`` is VIES's code (``MS_UNAVAILABLE``,
    ``INVALID``) or ours for what went wrong on the way (``network``, ``timeout``,
    ``garbage``, ``http_503``)."""

    outcome: Outcome
    reason: str | None = None
    request_identifier: str | None = None
    request_date: dt.datetime | None = None
    name: str | None = None
    address: str | None = None


class ViesUnavailable(Exception):
    """VIES could not be asked or gave no usable answer; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ViesClient:
    """Checks numbers against VIES at ``base_url``; each check takes at most ``timeout``
    seconds in total (connecting, sending, waiting and reading together)."""

    def __init__(self, base_url: str = DEFAULT_BASE_URL, timeout: float = DEFAULT_TIMEOUT):
        self.base_url = checked_base_url("VIES", base_url, timeout)
        self.timeout = timeout

    # -- checks --------------------------------------------------------------------------

    def check(
        self, country: str, number: str, *, requester: tuple[str, str] | None = None
    ) -> ViesAnswer:
        """Check ``number`` (without its prefix) of member state ``country`` (EL, XI, ...).

        ``requester`` is the asker's own ``(member state, number)``: it makes VIES return
        a consultation number. Should VIES refuse it, the check is repeated without it.
        """
        deadline = time.monotonic() + self.timeout
        if requester is not None:
            answer = self._check_post(country, number, requester, deadline)
            if answer.reason != "INVALID_REQUESTER_INFO":
                return answer
        return self._check_get(country, number, deadline)

    def _check_post(
        self, country: str, number: str, requester: tuple[str, str], deadline: float
    ) -> ViesAnswer:
        body = {
            "countryCode": country,
            "vatNumber": number,
            "requesterMemberStateCode": requester[0],
            "requesterNumber": requester[1],
        }
        try:
            status, data = self._json("POST", "/check-vat-number", body, deadline)
        except ViesUnavailable as exc:
            return ViesAnswer(Outcome.UNAVAILABLE, exc.reason)
        error = _error_code(data)
        if error is not None:
            return _from_code(error)
        if status != 200:
            return ViesAnswer(Outcome.UNAVAILABLE, f"http_{status}")
        valid = data.get("valid")
        if not isinstance(valid, bool):
            return ViesAnswer(Outcome.UNAVAILABLE, "garbage")
        return _answer(valid, data)

    def _check_get(self, country: str, number: str, deadline: float) -> ViesAnswer:
        path = f"/ms/{quote(country, safe='')}/vat/{quote(number, safe='')}"
        try:
            status, data = self._json("GET", path, None, deadline)
        except ViesUnavailable as exc:
            return ViesAnswer(Outcome.UNAVAILABLE, exc.reason)
        error = _error_code(data)
        if error is not None:
            return _from_code(error)
        if status != 200:
            return ViesAnswer(Outcome.UNAVAILABLE, f"http_{status}")
        valid = data.get("isValid")
        user_error = data.get("userError")
        if not isinstance(valid, bool) or not isinstance(user_error, str | None):
            return ViesAnswer(Outcome.UNAVAILABLE, "garbage")
        expected = "VALID" if valid else "INVALID"
        if user_error not in (None, expected):
            # HTTP 200 carrying an error code (MS_UNAVAILABLE, ...); "isValid" means nothing.
            if user_error in ("VALID", "INVALID"):
                return ViesAnswer(Outcome.UNAVAILABLE, "garbage")
            return _from_code(user_error)
        return _answer(valid, data)

    def check_status(self) -> dict[str, bool]:
        """``GET /check-status``: whether each member state's registry answers now."""
        deadline = time.monotonic() + self.timeout
        _status, data = self._json("GET", "/check-status", None, deadline)
        countries = data.get("countries")
        if not isinstance(countries, list):
            raise ViesUnavailable("garbage")
        return {
            str(item.get("countryCode")): item.get("availability") == "Available"
            for item in countries
            if isinstance(item, dict)
        }

    # -- HTTP ------------------------------------------------------------------------------

    def _json(
        self, method: str, path: str, body: Mapping[str, Any] | None, deadline: float
    ) -> tuple[int, dict[str, Any]]:
        payload = json.dumps(body).encode() if body is not None else None
        status, raw = self._exchange(method, path, payload, deadline)
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            if status != 200:
                raise ViesUnavailable(f"http_{status}") from None
            raise ViesUnavailable("garbage") from None
        if not isinstance(data, dict):
            raise ViesUnavailable("garbage")
        return status, data

    def _exchange(
        self, method: str, path: str, payload: bytes | None, deadline: float
    ) -> tuple[int, bytes]:
        """One request, bounded by ``deadline`` (see :func:`portal.plugin_api.http.fetch`);
        what goes wrong on the way is :class:`ViesUnavailable`, ``timeout``, ``network``
        or ``garbage`` (a reply too long to be VIES's)."""
        headers = {"Accept": "application/json", "User-Agent": "Pakiet-VAT-check/1.0"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        try:
            return fetch(
                "VIES",
                self.base_url,
                path,
                deadline=deadline,
                headers=headers,
                method=method,
                body=payload,
                max_bytes=MAX_REPLY_BYTES,
            )
        except ProviderError as exc:
            raise ViesUnavailable(exc.code or "network") from None


def _error_code(data: Mapping[str, Any]) -> str | None:
    wrappers = data.get("errorWrappers")
    if isinstance(wrappers, list) and wrappers:
        first = wrappers[0]
        code = first.get("error") if isinstance(first, dict) else None
        return code if isinstance(code, str) and code else "garbage"
    if data.get("actionSucceed") is False:
        return "garbage"
    return None


def _from_code(code: str) -> ViesAnswer:
    if code in INVALID_CODES:
        return ViesAnswer(Outcome.INVALID, code)
    # The known "try later" codes, the asker's own problems and unknown codes alike:
    # only a clear answer about the number may make it invalid.
    return ViesAnswer(Outcome.UNAVAILABLE, code[:64])


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    # VIES writes addresses on several lines; one line reads better in a sentence.
    lines = [" ".join(line.split()) for line in value.splitlines()]
    text = ", ".join(line for line in lines if line)
    return None if text in _UNDISCLOSED else text


def _date(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _answer(valid: bool, data: Mapping[str, Any]) -> ViesAnswer:
    identifier = data.get("requestIdentifier")
    # A consultation number proves the check either way, so it is kept for "invalid" too.
    return ViesAnswer(
        Outcome.VALID if valid else Outcome.INVALID,
        reason=None if valid else "INVALID",
        request_identifier=identifier[:64] if isinstance(identifier, str) and identifier else None,
        request_date=_date(data.get("requestDate")),
        name=_text(data.get("name")) if valid else None,
        address=_text(data.get("address")) if valid else None,
    )
