"""The bundled plugins pass the kit's conformance checks (portal.testing.conformance)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from pakiet_currencies import CURRENCIES
from pakiet_vat_format import VatFormat
from portal.plugin_api.contracts import CurrencySpec, VatCheck, VatStatus, VatValidator
from portal.testing.conformance import (
    PROVIDER_CHECKS,
    ProviderHarness,
    currency_checks,
    provider_checks,
    vat_validator_checks,
)
from tests.conftest import module_emulator, third_party_config

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


@pytest.fixture(scope="module")
def vies_emulator() -> Iterator[Any]:
    from pakiet_vies.emulator import ViesEmulator

    with ViesEmulator() as emulator:
        yield emulator


@pytest.mark.parametrize(
    "name",
    [n for n, _ in vat_validator_checks(VatFormat(), country="PL", valid="", invalid="")],
)
def test_the_vies_validator_conforms(vies_emulator: Any, name: str) -> None:
    """The bundled registry validator, on its emulator (the valid and the invalid number
    are two of the emulator's)."""
    from pakiet_vies import ViesValidator
    from pakiet_vies.client import ViesClient

    validator = ViesValidator(ViesClient(vies_emulator.base_url, 2.0))
    checks = dict(
        vat_validator_checks(validator, country="PL", valid="9574890682", invalid="3960306202")
    )
    checks[name]()


def test_a_registry_validator_without_its_registry_fails_its_check() -> None:
    class Nameless(VatValidator):
        name, order = "nameless", 50

        def check(self, *, country: str, number: str, now: Any) -> VatCheck | None:
            status = VatStatus.VALID if number == "1" else VatStatus.INVALID
            return VatCheck(status, country, number, self.name, now)  # no registry

    checks = dict(vat_validator_checks(Nameless(), country="GB", valid="1", invalid="2"))
    with pytest.raises(AssertionError, match="VALID without the registry"):
        checks["a_registrys_valid_names_the_registry"]()


def test_a_currency_that_breaks_iso_4217_fails_its_check() -> None:
    wrong = CurrencySpec("HUF", 0, {"pl": "forint", "en": "forint"})  # CLDR's, not ISO's
    checks = dict(currency_checks(wrong))
    checks["code_is_iso"]()
    with pytest.raises(AssertionError, match="HUF: minor_units 0, ISO 4217 says 2"):
        checks["minor_units_agree_with_iso"]()


# -- payment providers: the third party's pay-by-link (tests/thirdparty) -------------------

paybylink = module_emulator("paybylink")
transfer24 = module_emulator("transfer24")


def paybylink_harness(emulator: Any, **config: Any) -> ProviderHarness:
    from pakiet_paybylink.provider import PayByLinkProvider

    provider = PayByLinkProvider({**third_party_config("paybylink", emulator), **config})
    return ProviderHarness(
        provider=provider,
        pay=lambda redirect: emulator.pay(redirect.provider_ref),
        notification=lambda redirect: emulator.notification(redirect.provider_ref),
    )


@pytest.mark.parametrize("name", PROVIDER_CHECKS)
def test_the_third_party_pay_by_link_provider_conforms(paybylink: Any, name: str) -> None:
    checks = dict(provider_checks(paybylink_harness(paybylink)))
    checks[name]()


@pytest.mark.parametrize("name", PROVIDER_CHECKS)
def test_the_third_party_bank_transfer_provider_conforms(transfer24: Any, name: str) -> None:
    """pakiet-transfer24, the docs' worked example of a payment plugin."""
    from pakiet_transfer24.provider import Transfer24Provider

    provider = Transfer24Provider(third_party_config("transfer24", transfer24))
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


def test_a_forged_json_notification_says_something_else() -> None:
    """The forgery changes what was signed, not only bytes a JSON parser skips (PayPal's
    verification API checks the event, so a space added to the body is no forgery)."""
    from portal.testing.conformance import tampered

    for body in (b'{"id": "E1", "link": {"id": "L1"}}', b" {}", b'{"forged": 1}'):
        forged = tampered(body)
        assert json.loads(forged) != json.loads(body), forged
        assert forged != body
    assert tampered(b"a=1&b=2") == b"a=1&b=2 "


# -- payment providers: the bundled Stripe and PayPal plugins -----------------------------------

STRIPE_KEY = "sk_test_pakiet_conformance"
STRIPE_WEBHOOK_SECRET = "whsec_pakiet_conformance"
VISA = "4242424242424242"


@pytest.fixture(scope="module")
def stripe_emulator() -> Iterator[Any]:
    from pakiet_stripe.emulator import StripeEmulator

    with StripeEmulator(api_key=STRIPE_KEY, webhook_secret=STRIPE_WEBHOOK_SECRET) as emulator:
        yield emulator


def stripe_notification(emulator: Any, session_id: str) -> tuple[bytes, dict[str, str]]:
    """The latest event about the Checkout Session, signed as Stripe sends it."""
    about = [
        event
        for event in emulator.events
        if event["type"].startswith("checkout.session.")
        and event["data"]["object"]["id"] == session_id
    ]
    assert about, f"Stripe sent no event about {session_id}"
    body = json.dumps(about[-1], indent=2).encode()
    return body, {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": emulator.sign(body),
    }


def stripe_saved_method(emulator: Any, session_id: str) -> Any:
    """The card the paid session saved for off-session use, as Stripe keeps it."""
    from portal.plugin_api.contracts import SavedMethod

    [session] = [s for s in emulator.objects("checkout.session") if s["id"] == session_id]
    [intent] = [
        i for i in emulator.objects("payment_intent") if i["id"] == session["payment_intent"]
    ]
    assert intent["setup_future_usage"] == "off_session", "the card was not saved"
    [method] = [
        m for m in emulator.objects("payment_method") if m["id"] == intent["payment_method"]
    ]
    assert method["customer"] == session["customer"], "the card is not on the customer"
    card = method["card"]
    return SavedMethod(
        provider_ref=method["id"],
        brand=card["brand"],
        customer_ref=method["customer"],
        last4=card["last4"],
        exp_month=card["exp_month"],
        exp_year=card["exp_year"],
    )


@pytest.mark.parametrize("name", PROVIDER_CHECKS)
def test_the_bundled_stripe_provider_conforms(stripe_emulator: Any, name: str) -> None:
    from pakiet_stripe.client import StripeProvider

    emulator = stripe_emulator
    provider = StripeProvider(
        {
            "api_key": STRIPE_KEY,
            "webhook_secret": STRIPE_WEBHOOK_SECRET,
            "api_base": emulator.base_url,
            "timeout": 5,
            "max_network_retries": 0,
        }
    )

    def pay(redirect: Any) -> None:
        outcome = emulator.pay(redirect.provider_ref, card=VISA)
        assert outcome.status == "succeeded", outcome

    harness = ProviderHarness(
        provider=provider,
        pay=pay,
        notification=lambda redirect: stripe_notification(emulator, redirect.provider_ref),
        saved_method=lambda redirect: stripe_saved_method(emulator, redirect.provider_ref),
    )
    try:
        dict(provider_checks(harness))[name]()
    finally:
        provider.close()


PAYPAL_CLIENT_ID = "conformance-client"
PAYPAL_CLIENT_SECRET = "conformance-secret"
PAYPAL_WEBHOOK_ID = "WH-CONFORMANCE"


@pytest.fixture(scope="module")
def paypal_emulator() -> Iterator[Any]:
    from pakiet_paypal.emulator import PayPalEmulator

    emulator = PayPalEmulator(
        client_id=PAYPAL_CLIENT_ID,
        client_secret=PAYPAL_CLIENT_SECRET,
        webhook_id=PAYPAL_WEBHOOK_ID,
    ).start()
    try:
        yield emulator
    finally:
        emulator.stop()
    assert emulator.errors == []


def paypal_order_of(resource: Mapping[str, Any]) -> str | None:
    """The order an event's resource is about (an order, or a capture of one)."""
    related = resource.get("supplementary_data", {}).get("related_ids", {})
    return related.get("order_id") or resource.get("id")


def paypal_notification(emulator: Any, order_id: str) -> tuple[bytes, dict[str, str]]:
    """The latest event about the order, signed as PayPal sends it."""
    about = [
        event
        for event in emulator.events
        if event["event_type"].startswith(("CHECKOUT.ORDER.", "PAYMENT.CAPTURE."))
        and paypal_order_of(event["resource"]) == order_id
    ]
    assert about, f"PayPal sent no event about {order_id}"
    latest = about[-1]
    body, headers = emulator.signed_notification(latest["event_type"], latest["resource"])
    return body, dict(headers)


@pytest.mark.parametrize("name", PROVIDER_CHECKS)
def test_the_bundled_paypal_provider_conforms(paypal_emulator: Any, name: str) -> None:
    from pakiet_paypal.client import PayPalProvider

    emulator = paypal_emulator
    provider = PayPalProvider(
        {
            "client_id": PAYPAL_CLIENT_ID,
            "client_secret": PAYPAL_CLIENT_SECRET,
            "base_url": emulator.base_url,
            "webhook_id": PAYPAL_WEBHOOK_ID,
            "timeout": 5,
        }
    )

    def saved_method(redirect: Any) -> Any:
        """The vault token the paid order saved: PayPal vaults the account when the approved
        order is captured, which the return does (the webhook would do the same)."""
        event = provider.complete_return(provider_ref=redirect.provider_ref, params={})
        assert event.method is not None, f"{redirect.provider_ref} saved no PayPal account"
        vaulted = emulator.payment_tokens.get(event.method.provider_ref)
        assert vaulted is not None, f"{event.method.provider_ref} is not in PayPal's vault"
        return event.method

    harness = ProviderHarness(
        provider=provider,
        pay=lambda redirect: emulator.approve(redirect.provider_ref, "jan.kowalski@example.com"),
        notification=lambda redirect: paypal_notification(emulator, redirect.provider_ref),
        saved_method=saved_method,
    )
    try:
        dict(provider_checks(harness))[name]()
    finally:
        provider.close()


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
