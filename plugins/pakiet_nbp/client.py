"""A small client of the NBP Web API (api.nbp.pl): table A mid rates against the złoty.

One call is used: ``GET /api/exchangerates/rates/a/{code}/{date}/?format=json``. For a day
with a table NBP answers::

    {"table": "A", "currency": "euro", "code": "EUR",
     "rates": [{"no": "231/A/NBP/2026", "effectiveDate": "2026-11-25", "mid": 4.2345}]}

and for a day without one (a weekend, a holiday, a day whose table is not out yet) HTTP 404
with the text ``404 NotFound - Not Found - Brak danych``.

Polish VAT (art. 31a of the VAT act) converts at the NBP average rate of the last working
day *before* the day the tax arises, so :meth:`NbpClient.rate_before` starts at the day
before the sale and steps back over every day NBP answers "Brak danych" for.

The JSON is parsed with ``parse_float=Decimal``: the rate is the digits NBP wrote, never a
float. Published tables never change, so answers are cached in-process per currency and
day; so is "no table" for a day that is over in Warsaw.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from portal.plugin_api.contracts import ProviderError
from portal.plugin_api.http import checked_base_url, fetch, service_error, status_error

DEFAULT_BASE_URL = "https://api.nbp.pl"
DEFAULT_TIMEOUT = 5.0
#: Days to step back from the day before the sale. Poland's longest run without a table is
#: five days (24-26 December next to a weekend); ten is a wide margin, not a guess.
MAX_STEPS = 10
MAX_REPLY_BYTES = 64 * 1024  # one rate is about 150 bytes
MAX_CACHE = 10_000

#: The currencies of NBP's table A (mid rates of the common currencies), 2026. BGN left
#: it when Bulgaria adopted the euro; the rest of the world is in table B, which a Polish
#: invoice does not use for these.
TABLE_A = frozenset(
    "AUD BRL CAD CHF CLP CNY CZK DKK EUR GBP HKD HUF IDR ILS INR ISK JPY KRW MXN MYR NOK NZD "
    "PHP RON SEK SGD THB TRY UAH USD XDR ZAR".split()
)

_HEADERS = {"Accept": "application/json", "User-Agent": "Pakiet-exchange-rates/1.0"}
_TABLE_NO = re.compile(r"^\d{1,3}/A/NBP/\d{4}$")
try:
    _WARSAW: dt.tzinfo = ZoneInfo("Europe/Warsaw")
except ZoneInfoNotFoundError:  # pragma: no cover - a system without tz data
    _WARSAW = dt.UTC


def warsaw_today() -> dt.date:
    """The date in Warsaw now: NBP publishes the day's table around noon there."""
    return dt.datetime.now(_WARSAW).date()


@dataclass(frozen=True)
class NbpRate:
    """One table A mid rate: ``1 code = mid PLN``, in table ``table_no`` of ``effective_date``."""

    code: str
    mid: Decimal
    effective_date: dt.date
    table_no: str


def _error(message: str, code: str, *, retryable: bool = True) -> ProviderError:
    return service_error("NBP", message, code, retryable=retryable)


class NbpClient:
    """Asks NBP at ``base_url``; one :meth:`rate_before` takes at most ``timeout`` seconds in
    total, however many days it steps back. ``today`` is the clock (Warsaw's date)."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        today: Callable[[], dt.date] = warsaw_today,
    ) -> None:
        self.base_url = checked_base_url("NBP", base_url, timeout)
        self.timeout = timeout
        self.today = today
        # (code, day) -> the day's rate, or None: NBP published no table that day.
        self._cache: dict[tuple[str, dt.date], NbpRate | None] = {}
        self._lock = threading.Lock()

    # -- rates ---------------------------------------------------------------------------

    def rate_before(self, code: str, sale_date: dt.date) -> NbpRate:
        """The mid rate of ``code`` in table A of the last working day before ``sale_date``.

        Raises :class:`~portal.plugin_api.contracts.ProviderError`:
        ``retryable`` when NBP could not be
        asked, gave no usable answer, or has not published that day's table yet; not
        retryable when it published no table for ``code`` in :data:`MAX_STEPS` days.
        """
        code = code.upper()
        if code not in TABLE_A:
            raise ValueError(f"{code!r} is not a currency of NBP table A")
        if type(sale_date) is not dt.date:
            raise TypeError(f"sale_date must be a datetime.date, got {sale_date!r}")
        deadline = time.monotonic() + self.timeout
        day = sale_date - dt.timedelta(days=1)
        for _ in range(MAX_STEPS):
            rate = self.rate_on(code, day, deadline=deadline)
            if rate is not None:
                return rate
            day -= dt.timedelta(days=1)
        raise _error(
            f"no table A rate of {code} in the {MAX_STEPS} days before {sale_date.isoformat()}",
            "no_table",
            retryable=False,
        )

    def rate_on(self, code: str, day: dt.date, *, deadline: float | None = None) -> NbpRate | None:
        """The rate of ``code`` in the table of ``day``, or ``None`` when NBP published none
        that day (a weekend or a holiday)."""
        code = code.upper()
        key = (code, day)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        today = self.today()
        if day > today:
            raise _error(f"the table of {day.isoformat()} is not published yet", "not_published")
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        path = f"/api/exchangerates/rates/a/{code.lower()}/{day.isoformat()}/?format=json"
        status, raw = fetch(
            "NBP",
            self.base_url,
            path,
            deadline=deadline,
            headers=_HEADERS,
            max_bytes=MAX_REPLY_BYTES,
        )
        if status == 404 and b"Brak danych" in raw:
            if day >= today:
                # Today's table comes out around noon: no table *yet* is not "no table".
                raise _error(
                    f"the table of {day.isoformat()} is not published yet", "not_published"
                )
            rate = None
        elif status == 200:
            rate = _parse(raw, code, day)
        else:
            # 5xx and 429 are retryable; our request is wrong for any other status (400, a
            # 404 that is not NBP's "no data"): no retry helps.
            raise status_error("NBP", status, raw, f"{code} on {day.isoformat()}")
        with self._lock:
            if len(self._cache) >= MAX_CACHE:
                self._cache.clear()
            self._cache[key] = rate
        return rate

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()


def _parse(raw: bytes, code: str, day: dt.date) -> NbpRate:
    """NBP's JSON for one rate, checked: the currency and day asked for, a table A number
    and a positive mid rate, as a Decimal of the digits NBP wrote."""

    def garbage(why: str) -> ProviderError:
        return _error(f"unusable answer for {code} on {day.isoformat()}: {why}", "garbage")

    try:
        data: Any = json.loads(raw, parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise garbage("not JSON") from None
    if not isinstance(data, dict) or data.get("table") != "A":
        raise garbage("not a table A answer")
    if str(data.get("code", "")).upper() != code:
        raise garbage(f"the answer is about {data.get('code')!r}")
    rates = data.get("rates")
    if not isinstance(rates, list) or len(rates) != 1 or not isinstance(rates[0], dict):
        raise garbage("no single rate")
    entry = rates[0]
    if entry.get("effectiveDate") != day.isoformat():
        raise garbage(f"the rate is of {entry.get('effectiveDate')!r}")
    table_no = entry.get("no")
    if not isinstance(table_no, str) or not _TABLE_NO.match(table_no):
        raise garbage(f"table number {table_no!r}")
    mid = entry.get("mid")
    if isinstance(mid, int) and not isinstance(mid, bool):
        mid = Decimal(mid)
    if not isinstance(mid, Decimal) or not mid.is_finite() or mid <= 0:
        raise garbage(f"mid rate {mid!r}")
    return NbpRate(code=code, mid=mid, effective_date=day, table_no=table_no)
