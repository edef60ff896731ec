"""The built-in exchange-rate plugins, NBP (into PLN) and ČNB (into CZK), against their
emulators over real HTTP: the rate of the last working day before the sale, stepping back
over weekends and holidays; the table number and date kept; Decimal digits exactly as
published; faults as retryable errors; published rates cached; and both answering
``get_exchange_rate`` through pluggy, each for its own quote currency."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pluggy
import pytest
from flask import Flask

import pakiet_cnb
import pakiet_nbp
from pakiet_cnb.client import DAILY_PATH, CnbClient
from pakiet_cnb.emulator import DEMO_RATES as CNB_DEMO_RATES
from pakiet_cnb.emulator import CnbEmulator, Row
from pakiet_nbp.client import MAX_STEPS, NbpClient
from pakiet_nbp.emulator import NbpEmulator, polish_holidays
from portal.plugin_api import hookspecs
from portal.plugin_api.contracts import ExchangeRate, PluginConfig, ProviderError
from portal.plugin_api.hookspecs import hookimpl
from portal.plugin_api.registry import exchange_rate, make_plugin_config, registry

# A Thursday; the day before is an ordinary Wednesday in Poland and in the Czech Republic.
THURSDAY = dt.date(2026, 11, 26)
WEDNESDAY = dt.date(2026, 11, 25)
MONDAY = dt.date(2026, 11, 23)
FRIDAY = dt.date(2026, 11, 20)
FAULTS: list[int | str] = [500, 502, 503, "timeout", "garbage"]


def nbp_path(code: str, day: dt.date) -> str:
    return f"/api/exchangerates/rates/a/{code}/{day.isoformat()}/?format=json"


def cnb_path(day: dt.date) -> str:
    return f"{DAILY_PATH}?date={day:%d.%m.%Y}"


def fixed_today(day: dt.date) -> Callable[[], dt.date]:
    return lambda: day


@pytest.fixture(autouse=True)
def fresh_clients() -> Iterator[None]:
    """The plugins keep a client (and its cache) per URL; emulators may reuse a port."""
    pakiet_nbp.forget_clients()
    pakiet_cnb.forget_clients()
    yield
    pakiet_nbp.forget_clients()
    pakiet_cnb.forget_clients()


@pytest.fixture
def nbp() -> Iterator[NbpEmulator]:
    with NbpEmulator() as emulator:
        yield emulator


@pytest.fixture
def cnb() -> Iterator[CnbEmulator]:
    with CnbEmulator() as emulator:
        yield emulator


def config_for(
    nbp: NbpEmulator | None = None, cnb: CnbEmulator | None = None, timeout: float = 2
) -> PluginConfig:
    settings: dict[str, Any] = {}
    if nbp is not None:
        settings["nbp"] = {"base_url": nbp.base_url, "timeout": timeout}
    if cnb is not None:
        settings["cnb"] = {"base_url": cnb.base_url, "timeout": timeout}
    return make_plugin_config(settings)


def nbp_rate(nbp: NbpEmulator, base: str, on_date: dt.date, quote: str = "PLN") -> Any:
    return pakiet_nbp.get_exchange_rate(
        base=base, quote=quote, on_date=on_date, plugin_config=config_for(nbp=nbp)
    )


def cnb_rate(cnb: CnbEmulator, base: str, on_date: dt.date, quote: str = "CZK") -> Any:
    return pakiet_cnb.get_exchange_rate(
        base=base, quote=quote, on_date=on_date, plugin_config=config_for(cnb=cnb)
    )


# -- NBP -----------------------------------------------------------------------------------


def test_nbp_a_weekday_sale_takes_the_table_of_the_day_before(nbp: NbpEmulator) -> None:
    nbp.set_rate("EUR", WEDNESDAY, "4.2345")

    rate = nbp_rate(nbp, "EUR", THURSDAY)

    assert rate == ExchangeRate(
        base="EUR",
        quote="PLN",
        rate=Decimal("4.2345"),
        effective_date=WEDNESDAY,
        source="NBP",
        table=nbp.table_no(WEDNESDAY),
    )
    assert [seen.path for seen in nbp.requests] == [nbp_path("eur", WEDNESDAY)]


def test_nbp_table_numbers_count_the_working_days_of_the_year(nbp: NbpEmulator) -> None:
    # 1 January is a holiday: the year's first table is of Friday 2 January.
    rate = nbp_rate(nbp, "USD", dt.date(2026, 1, 5))
    assert (rate.effective_date, rate.table) == (dt.date(2026, 1, 2), "001/A/NBP/2026")
    assert nbp_rate(nbp, "USD", THURSDAY).table == "229/A/NBP/2026"


def test_nbp_a_monday_sale_takes_fridays_table(nbp: NbpEmulator) -> None:
    nbp.set_rate("USD", FRIDAY, "3.9876")

    rate = nbp_rate(nbp, "USD", MONDAY)

    assert (rate.rate, rate.effective_date) == (Decimal("3.9876"), FRIDAY)
    assert rate.table == nbp.table_no(FRIDAY)
    assert [seen.path for seen in nbp.requests] == [
        nbp_path("usd", dt.date(2026, 11, 22)),  # Sunday: Brak danych
        nbp_path("usd", dt.date(2026, 11, 21)),  # Saturday: Brak danych
        nbp_path("usd", FRIDAY),
    ]


@pytest.mark.parametrize(
    ("sale", "table_day", "asked"),
    [
        # Independence Day, a Wednesday: back over it to Tuesday.
        (dt.date(2026, 11, 12), dt.date(2026, 11, 10), 2),
        # Easter Monday, and the weekend before it: back to Friday 3 April.
        (dt.date(2026, 4, 7), dt.date(2026, 4, 3), 4),
        # 3 May (a Sunday), 2 May, and 1 May (a Friday holiday): back to Thursday.
        (dt.date(2026, 5, 4), dt.date(2026, 4, 30), 4),
    ],
    ids=["independence-day", "easter-monday", "may-holidays"],
)
def test_nbp_steps_back_over_holidays_and_the_weekend_before_them(
    nbp: NbpEmulator, sale: dt.date, table_day: dt.date, asked: int
) -> None:
    rate = nbp_rate(nbp, "EUR", sale)

    assert rate.effective_date == table_day
    assert rate.rate == nbp.mid("EUR", table_day)
    assert rate.table == nbp.table_no(table_day)
    assert len(nbp.requests) == asked


def test_nbp_steps_back_over_christmas(nbp: NbpEmulator) -> None:
    # 24-26 December (Thursday to Saturday) and a Sunday: five days without a table.
    client = NbpClient(nbp.base_url, 2, today=fixed_today(dt.date(2027, 1, 4)))
    rate = client.rate_before("CZK", dt.date(2026, 12, 28))
    assert rate.effective_date == dt.date(2026, 12, 23)
    assert len(nbp.requests) == 5
    assert {dt.date(2026, 12, 24), dt.date(2026, 12, 25)} < polish_holidays(2026)


def test_nbp_rates_are_the_published_digits_never_a_float(nbp: NbpEmulator) -> None:
    # Trailing zeros kept, and more digits than a float holds.
    nbp.set_rate("EUR", WEDNESDAY, "4.2300")
    nbp.set_rate("USD", WEDNESDAY, "3.95000000000000000001")
    nbp.set_rate("CZK", WEDNESDAY, "0.1742")

    eur, usd, czk = (nbp_rate(nbp, code, THURSDAY) for code in ("EUR", "USD", "CZK"))

    for rate in (eur, usd, czk):
        assert type(rate.rate) is Decimal
    assert str(eur.rate) == "4.2300"
    assert usd.rate == Decimal("3.95000000000000000001")
    assert str(czk.rate) == "0.1742"


@pytest.mark.parametrize(
    ("base", "quote"),
    [("PLN", "PLN"), ("EUR", "EUR"), ("EUR", "CZK"), ("EUR", "USD"), ("XYZ", "PLN")],
    ids=["pln-pln", "same", "other-quote", "cross", "unknown-currency"],
)
def test_nbp_passes_what_it_does_not_publish(nbp: NbpEmulator, base: str, quote: str) -> None:
    assert nbp_rate(nbp, base, THURSDAY, quote=quote) is None
    assert nbp.requests == [], "decided without asking NBP"


def test_nbp_passes_everything_when_disabled(nbp: NbpEmulator) -> None:
    config = make_plugin_config({"nbp": {"base_url": nbp.base_url, "enabled": False}})
    answer = pakiet_nbp.get_exchange_rate(
        base="EUR", quote="PLN", on_date=THURSDAY, plugin_config=config
    )
    assert answer is None
    assert nbp.requests == []


@pytest.mark.parametrize("fault", FAULTS, ids=str)
def test_nbp_faults_are_retryable_and_a_retry_succeeds(nbp: NbpEmulator, fault: int | str) -> None:
    config = make_plugin_config({"nbp": {"base_url": nbp.base_url, "timeout": 0.5}})

    def ask() -> Any:
        return pakiet_nbp.get_exchange_rate(
            base="EUR", quote="PLN", on_date=THURSDAY, plugin_config=config
        )

    nbp.fail_next(fault)
    with pytest.raises(ProviderError) as excinfo:
        ask()
    assert excinfo.value.retryable
    assert str(excinfo.value).startswith("NBP: ")

    rate = ask()
    assert rate.effective_date == WEDNESDAY
    assert rate.rate == nbp.mid("EUR", WEDNESDAY)


def test_nbp_unreachable_is_retryable(nbp: NbpEmulator) -> None:
    base_url = nbp.base_url
    nbp.stop()
    with pytest.raises(ProviderError) as excinfo:
        NbpClient(base_url, 1).rate_before("EUR", THURSDAY)
    assert excinfo.value.retryable
    assert excinfo.value.code == "network"


def test_nbp_a_request_nbp_does_not_understand_is_not_retried(nbp: NbpEmulator) -> None:
    # A wrong base URL: a plain 404, not NBP's "Brak danych", so not a day without a table.
    with pytest.raises(ProviderError) as excinfo:
        NbpClient(nbp.base_url + "/wrong", 1).rate_before("EUR", THURSDAY)
    assert not excinfo.value.retryable
    assert excinfo.value.code == "http_404"
    assert len(nbp.requests) == 1


def test_nbp_gives_up_after_ten_days_without_a_table() -> None:
    # Weeks of "holidays": the limit, not an endless walk back.
    fortnight = {WEDNESDAY - dt.timedelta(days=n) for n in range(14)}
    with NbpEmulator(holidays=fortnight) as nbp:
        with pytest.raises(ProviderError) as excinfo:
            nbp_rate(nbp, "EUR", THURSDAY)
        assert len(nbp.requests) == MAX_STEPS
    assert not excinfo.value.retryable
    assert excinfo.value.code == "no_table"
    assert "EUR" in str(excinfo.value) and "2026-11-26" in str(excinfo.value)


def test_nbp_a_table_not_out_yet_is_not_taken_for_a_holiday() -> None:
    # The sale is on 12 November; it is still the 11th in Warsaw and NBP has no table for
    # the 11th: that is a holiday, but the client cannot tell it from "not yet" today.
    with NbpEmulator() as nbp:
        early = NbpClient(nbp.base_url, 2, today=fixed_today(dt.date(2026, 11, 11)))
        with pytest.raises(ProviderError) as excinfo:
            early.rate_before("EUR", dt.date(2026, 11, 12))
        assert excinfo.value.retryable
        assert excinfo.value.code == "not_published"
        # A sale further ahead is refused without asking.
        with pytest.raises(ProviderError):
            early.rate_before("EUR", dt.date(2026, 11, 20))
        assert len(nbp.requests) == 1

        # The next day the 11th is over: step back over it.
        early.today = fixed_today(dt.date(2026, 11, 12))
        rate = early.rate_before("EUR", dt.date(2026, 11, 12))
        assert rate.effective_date == dt.date(2026, 11, 10)


def test_nbp_answers_are_cached(nbp: NbpEmulator) -> None:
    first = nbp_rate(nbp, "EUR", MONDAY)
    asked = len(nbp.requests)
    assert asked == 3

    assert nbp_rate(nbp, "EUR", MONDAY) == first
    assert nbp_rate(nbp, "EUR", dt.date(2026, 11, 22)) == first  # Sunday's sale: Friday too
    assert len(nbp.requests) == asked, "Friday's rate and the weekend's 404s were cached"

    nbp_rate(nbp, "USD", MONDAY)
    assert len(nbp.requests) == asked + 3, "per currency"


def test_nbp_faults_are_not_cached(nbp: NbpEmulator) -> None:
    nbp.fail_next(503)
    with pytest.raises(ProviderError):
        nbp_rate(nbp, "EUR", THURSDAY)
    assert nbp_rate(nbp, "EUR", THURSDAY).effective_date == WEDNESDAY
    assert len(nbp.requests) == 2


# -- ČNB -----------------------------------------------------------------------------------


def test_cnb_a_weekday_sale_takes_the_fixing_of_that_day(cnb: CnbEmulator) -> None:
    """§ 4 odst. 5 ZDPH: the rate ČNB declared for the tax-point day (not the day before,
    which is the Polish rule of NBP)."""
    cnb.set_rate("EUR", WEDNESDAY, "24.305")
    cnb.set_rate("EUR", dt.date(2026, 11, 24), "24.999")

    rate = cnb_rate(cnb, "EUR", WEDNESDAY)

    assert rate == ExchangeRate(
        base="EUR",
        quote="CZK",
        rate=Decimal("24.305"),
        effective_date=WEDNESDAY,
        source="ČNB",
        table=cnb.daily_txt(WEDNESDAY).split("#")[1].split()[0],
    )
    assert type(rate.rate) is Decimal and str(rate.rate) == "24.305"
    assert [seen.path for seen in cnb.requests] == [cnb_path(WEDNESDAY)]
    assert cnb.daily_txt(WEDNESDAY).startswith("25 Nov 2026 #")


def test_cnb_divides_by_the_amount_column(cnb: CnbEmulator) -> None:
    cnb.set_rate("HUF", WEDNESDAY, "6.231")  # CZK per 100 forints
    cnb.set_rate("IDR", WEDNESDAY, "1.270")  # CZK per 1000 rupiahs
    assert "|100|HUF|6.231" in cnb.daily_txt(WEDNESDAY)

    huf = cnb_rate(cnb, "HUF", WEDNESDAY)
    idr = cnb_rate(cnb, "IDR", WEDNESDAY)

    assert type(huf.rate) is Decimal and str(huf.rate) == "0.06231"
    assert type(idr.rate) is Decimal and str(idr.rate) == "0.001270"
    assert CNB_DEMO_RATES["JPY"].amount == 100


def test_cnb_a_sunday_sale_takes_fridays_fixing_in_one_request(cnb: CnbEmulator) -> None:
    cnb.set_rate("USD", FRIDAY, "20.987")

    rate = cnb_rate(cnb, "USD", dt.date(2026, 11, 22))

    assert (rate.rate, rate.effective_date) == (Decimal("20.987"), FRIDAY)
    # ČNB answers Sunday's date with the fixing in force then, Friday's, dated in the file.
    assert [seen.path for seen in cnb.requests] == [cnb_path(dt.date(2026, 11, 22))]


@pytest.mark.parametrize(
    ("sale", "fixing_day"),
    [
        # 17 November (a Tuesday), Struggle for Freedom and Democracy Day.
        (dt.date(2026, 11, 17), dt.date(2026, 11, 16)),
        # Easter Monday, the weekend and Good Friday: back to Thursday 2 April.
        (dt.date(2026, 4, 6), dt.date(2026, 4, 2)),
        # 28 September, a Monday holiday, and the weekend before it.
        (dt.date(2026, 9, 28), dt.date(2026, 9, 25)),
    ],
    ids=["17-november", "easter", "28-september"],
)
def test_cnb_steps_back_over_holidays_and_the_weekend_before_them(
    cnb: CnbEmulator, sale: dt.date, fixing_day: dt.date
) -> None:
    rate = cnb_rate(cnb, "PLN", sale)
    assert rate.effective_date == fixing_day
    header = cnb.daily_txt(fixing_day).splitlines()[0]
    assert header.endswith(f"#{rate.table}")
    assert len(cnb.requests) == 1


@pytest.mark.parametrize(
    ("base", "quote"),
    [("CZK", "CZK"), ("EUR", "EUR"), ("EUR", "PLN"), ("EUR", "USD"), ("XYZ", "CZK")],
    ids=["czk-czk", "same", "other-quote", "cross", "unknown-currency"],
)
def test_cnb_passes_what_it_does_not_publish(cnb: CnbEmulator, base: str, quote: str) -> None:
    assert cnb_rate(cnb, base, THURSDAY, quote=quote) is None
    assert cnb.requests == [], "decided without asking ČNB"


def test_cnb_a_currency_missing_from_the_fixing_is_an_error() -> None:
    with CnbEmulator(rates={"EUR": Row("EMU", "euro", 1, Decimal("24.300"))}) as cnb:
        with pytest.raises(ProviderError) as excinfo:
            cnb_rate(cnb, "USD", THURSDAY)
    assert not excinfo.value.retryable
    assert excinfo.value.code == "no_rate"


@pytest.mark.parametrize("fault", FAULTS, ids=str)
def test_cnb_faults_are_retryable_and_a_retry_succeeds(cnb: CnbEmulator, fault: int | str) -> None:
    config = make_plugin_config({"cnb": {"base_url": cnb.base_url, "timeout": 0.5}})

    def ask() -> Any:
        return pakiet_cnb.get_exchange_rate(
            base="EUR", quote="CZK", on_date=THURSDAY, plugin_config=config
        )

    cnb.fail_next(fault)
    with pytest.raises(ProviderError) as excinfo:
        ask()
    assert excinfo.value.retryable
    assert str(excinfo.value).startswith("ČNB: ")

    assert ask().effective_date == THURSDAY


def test_cnb_a_fixing_not_declared_yet_is_not_taken_for_a_holiday() -> None:
    # It is the 26th in Prague; the file for the 26th still carries the 25th's fixing (as
    # before 14:30): not proof that the 26th has none.
    with CnbEmulator(holidays={THURSDAY}) as cnb:
        client = CnbClient(cnb.base_url, 2, today=fixed_today(THURSDAY))
        with pytest.raises(ProviderError) as excinfo:
            client.rate_on("EUR", THURSDAY)
        assert excinfo.value.retryable
        assert excinfo.value.code == "not_published"

        client.today = fixed_today(dt.date(2026, 11, 27))
        assert client.rate_on("EUR", THURSDAY).effective_date == WEDNESDAY


def test_cnb_fixings_are_cached_for_every_currency(cnb: CnbEmulator) -> None:
    eur = cnb_rate(cnb, "EUR", MONDAY)
    assert cnb_rate(cnb, "EUR", MONDAY) == eur
    assert cnb_rate(cnb, "HUF", MONDAY).effective_date == MONDAY
    assert len(cnb.requests) == 1, "one file holds every currency of the day"


# -- through the hook ------------------------------------------------------------------------


def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("pakiet")
    pm.add_hookspecs(hookspecs)
    pm.register(pakiet_nbp)
    pm.register(pakiet_cnb)
    pm.check_pending()
    return pm


def test_hook_get_exchange_rate_from_the_built_in_plugins(
    nbp: NbpEmulator, cnb: CnbEmulator
) -> None:
    pm = plugin_manager()
    config = config_for(nbp=nbp, cnb=cnb)

    def rate(base: str, quote: str) -> Any:
        return pm.hook.get_exchange_rate(
            base=base, quote=quote, on_date=THURSDAY, plugin_config=config
        )

    eur_pln, eur_czk = rate("EUR", "PLN"), rate("EUR", "CZK")
    assert isinstance(eur_pln, ExchangeRate) and isinstance(eur_czk, ExchangeRate)
    assert (eur_pln.source, eur_pln.quote, eur_pln.rate) == (
        "NBP",
        "PLN",
        nbp.mid("EUR", WEDNESDAY),
    )
    assert (eur_czk.source, eur_czk.quote, eur_czk.effective_date) == ("ČNB", "CZK", THURSDAY)
    assert rate("CZK", "PLN").source == "NBP"
    assert rate("PLN", "CZK").source == "ČNB"
    assert rate("EUR", "USD") is None
    assert rate("PLN", "PLN") is None
    assert len(nbp.requests) == 2 and len(cnb.requests) == 1


@pytest.fixture
def config_overrides(nbp: NbpEmulator, cnb: CnbEmulator) -> dict[str, Any]:
    """The app of this module: the built-in plugins (its entry points) at the emulators."""
    return {
        "PLUGIN_CONFIG": {
            "nbp": {"base_url": nbp.base_url, "timeout": 2},
            "cnb": {"base_url": cnb.base_url, "timeout": 2},
        }
    }


def test_the_app_loads_both_as_built_ins(app: Flask, nbp: NbpEmulator) -> None:
    reg = registry(app)
    nbp.set_rate("USD", FRIDAY, "3.9021")
    answer = reg.hook.get_exchange_rate(
        base="USD", quote="PLN", on_date=MONDAY, plugin_config=reg.plugin_config
    )
    assert answer == ExchangeRate(
        "USD", "PLN", Decimal("3.9021"), FRIDAY, "NBP", nbp.table_no(FRIDAY)
    )
    czk = reg.hook.get_exchange_rate(
        base="USD", quote="CZK", on_date=MONDAY, plugin_config=reg.plugin_config
    )
    assert czk.source == "ČNB" and czk.effective_date == MONDAY


# -- isolation and provenance (issue 24, point 5) ------------------------------------------


class BrokenSource:
    """A rate source with a bug, asked before the built-ins (tryfirst)."""

    @hookimpl(tryfirst=True)
    def get_exchange_rate(self, base: str, quote: str, on_date: dt.date) -> Any:
        raise KeyError("a bug in the plugin")


class Overrider:
    """A wrapper that would replace whatever rate the sources gave."""

    @hookimpl(wrapper=True)
    def get_exchange_rate(self, base: str, quote: str, on_date: dt.date) -> Any:
        yield
        return ExchangeRate(base, quote, Decimal("9.9999"), on_date, "made up")


def test_a_rate_source_that_raises_is_left_out_and_the_answer_names_its_plugin(
    database_url: str, nbp: NbpEmulator, cnb: CnbEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    from portal import create_app
    from tests.conftest import base_config

    app = create_app(
        base_config(
            database_url,
            PLUGINS=[
                "pakiet_currencies",
                "pakiet_nbp",
                "pakiet_cnb",
                BrokenSource(),
                Overrider(),
            ],
            PLUGIN_CONFIG={
                "nbp": {"base_url": nbp.base_url, "timeout": 2},
                "cnb": {"base_url": cnb.base_url, "timeout": 2},
            },
        )
    )
    nbp.set_rate("EUR", FRIDAY, "4.2693")
    with caplog.at_level(logging.ERROR, logger="portal.plugin_api.registry"):
        answer = exchange_rate(registry(app), "EUR", "PLN", MONDAY)
    assert answer is not None
    assert answer.plugin == "pakiet_nbp"  # who gave the rate printed on the invoice
    assert answer.rate.rate == Decimal("4.2693")  # the wrapper changed nothing
    [logged] = [r for r in caplog.records if "failed on EUR/PLN" in r.getMessage()]
    assert "BrokenSource" in logged.getMessage()
    assert exchange_rate(registry(app), "EUR", "USD", MONDAY) is None
