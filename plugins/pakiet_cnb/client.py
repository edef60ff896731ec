"""A small client of the Czech National Bank's (ČNB) daily exchange-rate fixing.

One call is used, the fixing as a text file::

    GET /en/financial-markets/foreign-exchange-market/central-bank-exchange-rate-fixing/
        central-bank-exchange-rate-fixing/daily.txt?date=DD.MM.YYYY

which answers the fixing in force on that date: the day's own on a working day (declared
after 14:30 Prague time), otherwise the last one declared before it, in both cases dated
in its first line::

    26 Nov 2026 #229
    Country|Currency|Amount|Code|Rate
    EMU|euro|1|EUR|24.305
    Hungary|forint|100|HUF|6.231

``Rate`` CZK buy ``Amount`` units (100 forints, 100 yen, 1000 rupiahs), so the rate of one
unit is ``Rate / Amount``, computed with Decimal from the digits ČNB wrote.

Why the text file and not ``api.cnb.cz/cnbapi/exrates/daily?date=...`` (JSON): the file is
ČNB's long-standing documented format that accounting software has read for decades, it
names the fixing it returns (its date and serial number) in one header line we can check
against the day asked for, and it carries the rate as text, so no float can creep in. The
JSON API would do as well; one request per day either way.

Published fixings never change: each one is cached in-process per day asked for.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from portal.plugin_api.contracts import ProviderError
from portal.plugin_api.http import checked_base_url, fetch, service_error, status_error

DEFAULT_BASE_URL = "https://www.cnb.cz"
DEFAULT_TIMEOUT = 5.0
DAILY_PATH = (
    "/en/financial-markets/foreign-exchange-market/central-bank-exchange-rate-fixing/"
    "central-bank-exchange-rate-fixing/daily.txt"
)
#: The longest gap between the day asked for and the fixing in force that is believed:
#: the Czech calendar never has more than five days in a row without a fixing.
MAX_GAP = dt.timedelta(days=10)
MAX_REPLY_BYTES = 64 * 1024  # the file is about 1.5 KiB
MAX_CACHE = 4_096

#: The currencies of ČNB's daily fixing, 2026 (BGN left it with Bulgaria's euro).
CURRENCIES = frozenset(
    "AUD BRL CAD CHF CNY DKK EUR GBP HKD HUF IDR ILS INR ISK JPY KRW MXN MYR NOK NZD PHP PLN "
    "RON SEK SGD THB TRY USD XDR ZAR".split()
)

_HEADERS = {"Accept": "text/plain", "User-Agent": "Pakiet-exchange-rates/1.0"}
_MONTHS = {
    name: number
    for number, name in enumerate(
        "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), start=1
    )
}
_HEADLINE = re.compile(r"^(\d{1,2}) ([A-Z][a-z]{2}) (\d{4}) #(\d{1,3})$")
_COLUMNS = ("Country|Currency|Amount|Code|Rate", "země|měna|množství|kód|kurz")
_CODE = re.compile(r"^[A-Z]{3}$")
try:
    _PRAGUE: dt.tzinfo = ZoneInfo("Europe/Prague")
except ZoneInfoNotFoundError:  # pragma: no cover - a system without tz data
    _PRAGUE = dt.UTC


def prague_today() -> dt.date:
    """The date in Prague now: ČNB declares the day's fixing after 14:30 there."""
    return dt.datetime.now(_PRAGUE).date()


@dataclass(frozen=True)
class Fixing:
    """One day's fixing: ``rows[code] = (amount, rate)``, ``amount`` units cost ``rate`` CZK."""

    date: dt.date
    serial: int
    rows: Mapping[str, tuple[int, Decimal]]


@dataclass(frozen=True)
class CnbRate:
    """``1 code = rate CZK`` (``per_amount`` for ``amount`` units, as published) in the
    fixing ``serial`` of ``effective_date``."""

    code: str
    rate: Decimal
    amount: int
    per_amount: Decimal
    effective_date: dt.date
    serial: int


def _error(message: str, code: str, *, retryable: bool = True) -> ProviderError:
    return service_error("ČNB", message, code, retryable=retryable)


class CnbClient:
    """Asks ČNB at ``base_url``; one lookup takes at most ``timeout`` seconds.
    ``today`` is the clock (Prague's date)."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        today: Callable[[], dt.date] = prague_today,
    ) -> None:
        self.base_url = checked_base_url("ČNB", base_url, timeout)
        self.timeout = timeout
        self.today = today
        self._cache: dict[dt.date, Fixing] = {}  # day asked for -> the fixing in force
        self._lock = threading.Lock()

    # -- rates ---------------------------------------------------------------------------

    def rate_on(self, code: str, tax_point: dt.date) -> CnbRate:
        """The rate of ``code`` in the fixing in force on ``tax_point`` (§ 4 odst. 5 ZDPH:
        the rate ČNB declared valid for the day the tax point falls on): the day's own
        fixing, or on a weekend or holiday the last one declared before it.

        Raises :class:`~portal.plugin_api.contracts.ProviderError`:
        ``retryable`` when ČNB could not be
        asked, gave no usable answer, or has not declared that day's fixing yet (before
        14:30 Prague time: the invoice waits for it); not retryable when the fixing lacks
        ``code``.
        """
        code = code.upper()
        if type(tax_point) is not dt.date:
            raise TypeError(f"tax_point must be a datetime.date, got {tax_point!r}")
        fixing = self.fixing_for(tax_point)
        row = fixing.rows.get(code)
        if row is None:
            raise _error(
                f"the fixing #{fixing.serial} of {fixing.date.isoformat()} has no {code}",
                "no_rate",
                retryable=False,
            )
        amount, per_amount = row
        return CnbRate(
            code=code,
            rate=per_unit(per_amount, amount),
            amount=amount,
            per_amount=per_amount,
            effective_date=fixing.date,
            serial=fixing.serial,
        )

    def fixing_for(self, day: dt.date) -> Fixing:
        """The fixing in force on ``day``: its own, or the last declared before it."""
        with self._lock:
            cached = self._cache.get(day)
        if cached is not None:
            return cached
        today = self.today()
        if day > today:
            raise _error(f"the fixing of {day.isoformat()} is not declared yet", "not_published")
        status, raw = fetch(
            "ČNB",
            self.base_url,
            f"{DAILY_PATH}?date={day:%d.%m.%Y}",
            deadline=time.monotonic() + self.timeout,
            headers=_HEADERS,
            max_bytes=MAX_REPLY_BYTES,
        )
        if status != 200:
            raise status_error("ČNB", status, raw, day.isoformat())
        fixing = parse_daily(raw)
        if fixing.date > day:
            raise _error(
                f"asked for {day.isoformat()}, got the fixing of {fixing.date.isoformat()}",
                "garbage",
            )
        if fixing.date < day:
            if day >= today:
                # Today's fixing comes after 14:30: an older one is not proof of a holiday.
                raise _error(
                    f"the fixing of {day.isoformat()} is not declared yet", "not_published"
                )
            if day - fixing.date > MAX_GAP:
                raise _error(
                    f"no fixing in the {MAX_GAP.days} days before {day.isoformat()}",
                    "no_table",
                    retryable=False,
                )
        with self._lock:
            if len(self._cache) >= MAX_CACHE:
                self._cache.clear()
            self._cache[day] = fixing
        return fixing

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()


def per_unit(rate: Decimal, amount: int) -> Decimal:
    """``rate`` CZK for ``amount`` units as CZK for one, keeping every published digit:
    ``6.231`` per 100 is ``0.06231``, ``1.270`` per 1000 is ``0.001270``."""
    digits = str(amount)
    if digits.startswith("1") and set(digits[1:]) <= {"0"}:  # 1, 10, 100, 1000: ČNB's
        return rate.scaleb(-(len(digits) - 1))
    return rate / amount


def parse_daily(raw: bytes) -> Fixing:
    """ČNB's ``daily.txt``, checked line by line; anything else is a retryable error."""

    def garbage(why: str) -> ProviderError:
        return _error(f"unusable fixing: {why}", "garbage")

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise garbage("not UTF-8 text") from None
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) < 3:
        raise garbage("too short")
    headline = _HEADLINE.match(lines[0])
    if headline is None or headline.group(2) not in _MONTHS:
        raise garbage(f"first line {lines[0][:40]!r}")
    try:
        date = dt.date(int(headline.group(3)), _MONTHS[headline.group(2)], int(headline.group(1)))
    except ValueError:
        raise garbage(f"first line {lines[0][:40]!r}") from None
    if lines[1] not in _COLUMNS:
        raise garbage(f"columns {lines[1][:60]!r}")
    rows: dict[str, tuple[int, Decimal]] = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) != 5:
            raise garbage(f"row {line[:60]!r}")
        _country, _currency, raw_amount, code, raw_rate = cells
        try:
            amount = int(raw_amount)
            rate = Decimal(raw_rate.replace(",", "."))
        except (ValueError, InvalidOperation):
            raise garbage(f"row {line[:60]!r}") from None
        if not _CODE.match(code) or amount <= 0 or not rate.is_finite() or rate <= 0:
            raise garbage(f"row {line[:60]!r}")
        rows[code] = (amount, rate)
    return Fixing(date=date, serial=int(headline.group(4)), rows=rows)
