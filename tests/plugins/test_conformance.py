"""The bundled plugins pass the kit's conformance checks (portal.testing.conformance)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pakiet_currencies import CURRENCIES
from pakiet_vat_format import VatFormat
from portal.plugin_api.contracts import CurrencySpec
from portal.testing.conformance import (
    PROVIDER_CHECKS,
    ProviderHarness,
    currency_checks,
    provider_checks,
    vat_validator_checks,
)

CURRENCY_CHECKS = [
    pytest.param(check, id=f"{spec.code}-{name}")
    for spec in CURRENCIES
    for name, check in currency_checks(spec)
]


@pytest.mark.parametrize("check", CURRENCY_CHECKS)
def test_bundled_currencies_conform(check: Callable[[], None]) -> None:
    check()


@pytest.mark.parametrize(
    ("name", "check"),
    list(vat_validator_checks(VatFormat(), country="PL", valid="5260250274", invalid="5260250275")),
)
def test_the_offline_vat_validator_conforms(name: str, check: Callable[[], None]) -> None:
    check()


def test_a_currency_that_breaks_iso_4217_fails_its_check() -> None:
    wrong = CurrencySpec("HUF", 0, {"pl": "forint", "en": "forint"})  # CLDR's, not ISO's
    checks = dict(currency_checks(wrong))
    checks["code_is_iso"]()
    with pytest.raises(AssertionError, match="HUF: minor_units 0, ISO 4217 says 2"):
        checks["minor_units_agree_with_iso"]()


# -- payment providers: the third party's pay-by-link (tests/thirdparty) -------------------

THIRD_PARTY = Path(__file__).resolve().parent.parent / "thirdparty"


@pytest.fixture(scope="module")
def paybylink() -> Iterator[Any]:
    sys.path.insert(0, str(THIRD_PARTY))
    try:
        from pakiet_paybylink.emulator import PayByLinkEmulator

        with PayByLinkEmulator(merchant_id="m-1", secret="pbl-secret") as emulator:
            yield emulator
    finally:
        sys.path.remove(str(THIRD_PARTY))


def paybylink_harness(emulator: Any, **config: Any) -> ProviderHarness:
    from pakiet_paybylink.provider import PayByLinkProvider

    settings = {"base_url": emulator.base_url, "merchant_id": "m-1", "secret": "pbl-secret"}
    provider = PayByLinkProvider({**settings, **config})
    return ProviderHarness(
        provider=provider,
        pay=lambda redirect: emulator.pay(redirect.provider_ref),
        notification=lambda redirect: emulator.notification(redirect.provider_ref),
    )


@pytest.mark.parametrize("name", PROVIDER_CHECKS)
def test_the_third_party_pay_by_link_provider_conforms(paybylink: Any, name: str) -> None:
    checks = dict(provider_checks(paybylink_harness(paybylink)))
    checks[name]()


@pytest.fixture(scope="module")
def transfer24() -> Iterator[Any]:
    sys.path.insert(0, str(THIRD_PARTY))
    try:
        from pakiet_transfer24.emulator import Transfer24Emulator

        with Transfer24Emulator(api_key="t24-key", notify_secret="t24-secret") as emulator:
            yield emulator
    finally:
        sys.path.remove(str(THIRD_PARTY))


@pytest.mark.parametrize("name", PROVIDER_CHECKS)
def test_the_third_party_bank_transfer_provider_conforms(transfer24: Any, name: str) -> None:
    """pakiet-transfer24, the docs' worked example of a payment plugin."""
    from pakiet_transfer24.provider import Transfer24Provider

    provider = Transfer24Provider(
        {"base_url": transfer24.base_url, "api_key": "t24-key", "notify_secret": "t24-secret"}
    )
    harness = ProviderHarness(
        provider=provider,
        pay=lambda redirect: transfer24.decide(redirect.provider_ref, "pay"),
        notification=lambda redirect: transfer24.notification(redirect.provider_ref),
    )
    dict(provider_checks(harness))[name]()


def test_a_provider_that_takes_a_forged_notification_fails_its_check(paybylink: Any) -> None:
    harness = paybylink_harness(paybylink)
    careless = harness.provider
    verified = careless.parse_webhook

    def unverified(*, body: bytes, headers: Any) -> Any:
        real = paybylink.notification(body_link_id(body))
        return verified(body=real[0], headers=real[1])

    def body_link_id(body: bytes) -> str:
        return str(json.loads(body)["link"]["id"])

    careless.parse_webhook = unverified  # type: ignore[method-assign]
    checks = dict(provider_checks(harness))
    with pytest.raises(AssertionError, match="forged notification was not rejected"):
        checks["a_forged_signature_is_rejected"]()


# -- exchange-rate sources -------------------------------------------------------------------

# A past Thursday both emulators know (the day before is a working day in PL and CZ).
RATE_DAY = dt.date(2026, 11, 26)
RATE_CHECKS = [
    "answers_the_pair_it_was_asked",
    "the_rate_is_an_exact_positive_decimal",
    "the_rate_is_not_from_the_future",
    "names_its_source",
    "the_same_day_gives_the_same_rate",
    "passes_on_a_pair_it_does_not_publish",
]


def rate_asker(module: Any, name: str, base_url: str) -> Callable[..., Any]:
    from portal.plugin_api.registry import make_plugin_config

    config = make_plugin_config({name: {"base_url": base_url, "timeout": 5}})

    def ask(base: str, quote: str, on_date: Any) -> Any:
        return module.get_exchange_rate(
            base=base, quote=quote, on_date=on_date, plugin_config=config
        )

    return ask


@pytest.mark.parametrize("name", RATE_CHECKS)
def test_the_nbp_and_cnb_rate_sources_conform(name: str) -> None:
    import pakiet_cnb
    import pakiet_nbp
    from pakiet_cnb.emulator import CnbEmulator
    from pakiet_nbp.emulator import NbpEmulator
    from portal.testing.conformance import rate_source_checks

    pakiet_nbp.forget_clients()
    pakiet_cnb.forget_clients()
    with NbpEmulator() as nbp, CnbEmulator() as cnb:
        for module, key, url, published in (
            (pakiet_nbp, "nbp", nbp.base_url, ("EUR", "PLN")),
            (pakiet_cnb, "cnb", cnb.base_url, ("EUR", "CZK")),
        ):
            checks = dict(
                rate_source_checks(
                    rate_asker(module, key, url),
                    published=published,
                    unpublished=("EUR", "USD"),
                    on_date=RATE_DAY,
                )
            )
            assert list(checks) == RATE_CHECKS
            checks[name]()
    pakiet_nbp.forget_clients()
    pakiet_cnb.forget_clients()


def test_a_rate_source_that_answers_a_float_or_the_future_fails_its_checks() -> None:
    from decimal import Decimal

    from portal.plugin_api.contracts import ExchangeRate
    from portal.testing.conformance import rate_source_checks

    def careless(base: str, quote: str, on_date: dt.date) -> ExchangeRate | None:
        if quote != "PLN":
            return ExchangeRate(base, quote, Decimal(1), on_date, "Everything")  # answers all
        late = on_date + dt.timedelta(days=1)
        return ExchangeRate(base, quote, 4.2, late, "Careless")  # type: ignore[arg-type]

    checks = dict(
        rate_source_checks(
            careless, published=("EUR", "PLN"), unpublished=("EUR", "USD"), on_date=RATE_DAY
        )
    )
    for name in (
        "the_rate_is_an_exact_positive_decimal",
        "the_rate_is_not_from_the_future",
        "passes_on_a_pair_it_does_not_publish",
    ):
        with pytest.raises(AssertionError):
            checks[name]()
    checks["answers_the_pair_it_was_asked"]()
