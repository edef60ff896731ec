"""Conformance checks a currency, a VAT validator, an exchange-rate source or a payment
provider runs against itself.

Each function yields ``(name, check)`` pairs; a check is a function of no arguments that
raises :class:`AssertionError` with a message when the object breaks the contract. Use them
in a parametrised test of your own distribution::

    @pytest.mark.parametrize(("name", "check"), list(currency_checks(MY_SPEC)))
    def test_my_currency_conforms(name, check):
        check()
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal

from babel.numbers import is_currency

from portal.plugin_api.contracts import (
    CurrencySpec,
    ExchangeRate,
    PaymentEvent,
    PaymentEventKind,
    PaymentProvider,
    PaymentRequest,
    ProviderError,
    Redirect,
    SavedMethod,
    VatCheck,
    VatStatus,
    VatValidator,
    WebhookRejected,
)
from portal.plugin_api.registry import origin
from portal.rules.money import Money, minor_units

Check = tuple[str, Callable[[], None]]


def currency_checks(spec: CurrencySpec) -> Iterator[Check]:
    """What every :class:`CurrencySpec` must satisfy for the registry to accept it."""

    def code_is_iso() -> None:
        assert spec.code.isupper() and is_currency(spec.code), f"{spec.code!r} is not ISO 4217"

    def minor_units_agree_with_iso() -> None:
        expected = minor_units(spec.code)  # ISO 4217's table, not CLDR's (HUF: 2, not 0)
        assert spec.minor_units == expected, (
            f"{spec.code}: minor_units {spec.minor_units}, ISO 4217 says {expected}"
        )

    def named_in_both_languages() -> None:
        missing = {"pl", "en"} - {k for k, v in spec.names.items() if v}
        assert not missing, f"{spec.code}: no name in {sorted(missing)}"

    yield "code_is_iso", code_is_iso
    yield "minor_units_agree_with_iso", minor_units_agree_with_iso
    yield "named_in_both_languages", named_in_both_languages


#: ``ask(base, quote, on_date)``: the source's answer, as ``get_exchange_rate`` gives it.
RateAsk = Callable[[str, str, dt.date], ExchangeRate | None]


def rate_source_checks(
    ask: RateAsk,
    *,
    published: tuple[str, str],
    unpublished: tuple[str, str],
    on_date: dt.date,
) -> Iterator[Check]:
    """What every exchange-rate source must do. ``published`` is a pair it answers on
    ``on_date`` (a past working day its emulator or service knows), ``unpublished`` one it
    must pass on with ``None`` (another source may know it)."""

    def answer() -> ExchangeRate:
        found = ask(*published, on_date)
        assert isinstance(found, ExchangeRate), f"{published} on {on_date}: got {found!r}"
        return found

    def answers_the_pair_it_was_asked() -> None:
        found = answer()
        assert (found.base, found.quote) == published, f"asked {published}, got {found}"

    def the_rate_is_an_exact_positive_decimal() -> None:
        rate = answer().rate
        assert type(rate) is Decimal, f"the rate is {type(rate).__name__}, not Decimal"
        assert rate.is_finite() and rate > 0, f"the rate is {rate}"

    def the_rate_is_not_from_the_future() -> None:
        found = answer()
        assert found.effective_date <= on_date, f"{found.effective_date} is after {on_date}"

    def names_its_source() -> None:
        found = answer()
        assert found.source.strip(), "an invoice prints the source: it needs a name"
        assert found.table is None or found.table.strip(), "an empty table number"

    def the_same_day_gives_the_same_rate() -> None:
        assert answer() == answer(), "an invoice of the same day must get the same rate"

    def passes_on_a_pair_it_does_not_publish() -> None:
        assert ask(*unpublished, on_date) is None, f"answered {unpublished}: pass with None"

    yield "answers_the_pair_it_was_asked", answers_the_pair_it_was_asked
    yield "the_rate_is_an_exact_positive_decimal", the_rate_is_an_exact_positive_decimal
    yield "the_rate_is_not_from_the_future", the_rate_is_not_from_the_future
    yield "names_its_source", names_its_source
    yield "the_same_day_gives_the_same_rate", the_same_day_gives_the_same_rate
    yield "passes_on_a_pair_it_does_not_publish", passes_on_a_pair_it_does_not_publish


def vat_validator_checks(
    validator: VatValidator, *, country: str, valid: str, invalid: str
) -> Iterator[Check]:
    """What every :class:`VatValidator` must do, given one number of ``country`` it should
    accept (``valid``) and one it should refuse (``invalid``)."""
    now = dt.datetime(2026, 5, 4, 10, 30, tzinfo=dt.UTC)

    def answer(number: str) -> VatCheck | None:
        result = validator.check(country=country, number=number, now=now)
        assert result is None or isinstance(result, VatCheck), f"returned {result!r}"
        return result

    def has_a_name() -> None:
        assert isinstance(validator.name, str) and validator.name, "no name"
        assert isinstance(validator.order, int), "order is not an int"

    def accepts_the_valid_number() -> None:
        result = answer(valid)
        if validator.offline and result is None:
            return  # a form check may only say "not mistyped": no opinion
        assert result is not None and result.status == VatStatus.VALID, result
        assert (result.country, result.number) == (country, valid), result
        assert result.validator == validator.name, result

    def refuses_the_invalid_number() -> None:
        result = answer(invalid)
        assert result is not None and result.status == VatStatus.INVALID, result

    def a_registrys_valid_names_the_registry() -> None:
        # Plugin API 1.2: a VALID without VatCheck.registry confirms nothing (a checksum).
        result = answer(valid)
        if validator.offline or result is None or result.status != VatStatus.VALID:
            return
        assert isinstance(result.registry, str) and result.registry.strip(), (
            f"VALID without the registry that answered: it confirms nothing ({result!r})"
        )

    def passes_on_a_country_it_does_not_know() -> None:
        result = validator.check(country="QQ", number="123", now=now)
        assert result is None or result.status == VatStatus.UNAVAILABLE, result

    yield "has_a_name", has_a_name
    yield "accepts_the_valid_number", accepts_the_valid_number
    yield "refuses_the_invalid_number", refuses_the_invalid_number
    yield "a_registrys_valid_names_the_registry", a_registrys_valid_names_the_registry
    yield "passes_on_a_country_it_does_not_know", passes_on_a_country_it_does_not_know


# -- payment providers ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderHarness:
    """What the provider checks need besides the provider: how a customer pays on its page,
    and the signed notification its service sends. Build it on your emulator.

    :param provider: the provider, configured against the emulator.
    :param pay: the customer pays the attempt behind a :class:`Redirect` on the hosted page.
    :param notification: ``(body, headers)`` of the signed notification the service sends
        about that attempt as it stands now.
    :param saved_method: for a provider that renews (``renewable_brands``), the method a paid
        attempt saved; ``None`` for one that declares it cannot.
    :param currency: the currency to pay in; by default the first the provider takes.
    """

    provider: PaymentProvider
    pay: Callable[[Redirect], None]
    notification: Callable[[Redirect], tuple[bytes, Mapping[str, str]]]
    saved_method: Callable[[Redirect], SavedMethod] | None = None
    currency: str | None = None


#: The names of :func:`provider_checks`, in order: parametrise a test with them and build
#: the harness inside it (an emulator is a fixture).
PROVIDER_CHECKS = (
    "declares_its_capabilities",
    "labels_in_both_languages",
    "start_sends_to_a_declared_origin_once_per_key",
    "a_paid_attempt_is_reported_by_a_verified_webhook",
    "the_return_reports_the_payment",
    "a_forged_signature_is_rejected",
    "a_replayed_notification_is_the_same_event",
    "refunds_or_declares_it_cannot",
    "renews_or_declares_it_cannot",
)


def tampered(body: bytes) -> bytes:
    """``body`` with its content changed after signing.

    A JSON object gets one more member: only that changes what was signed for every
    provider. A signature may cover the event rather than its bytes (PayPal's verification
    API is sent the event as JSON, where whitespace means nothing), so a space added to the
    body would be the same notification, not a forgery. Any other body gets a space added.
    """
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        return body + b" "
    name = "forged"
    while name in parsed:
        name += "_"
    start = body.index(b"{") + 1
    member = f'"{name}": true'.encode() + (b", " if parsed else b"")
    return body[:start] + member + body[start:]


def provider_checks(harness: ProviderHarness) -> Iterator[Check]:
    """What every payment provider must do: declare its capabilities, start a payment on a
    declared origin (once per idempotency key), report it by a verified webhook and on the
    return, refuse a forged signature, report a replayed notification as the same event,
    refund (or declare it cannot), and charge a saved method again (or declare it cannot)."""
    provider = harness.provider
    currencies = sorted(getattr(provider, "currencies", None) or ())
    currency = harness.currency or (currencies[0] if currencies else "PLN")
    amount = Money(12300, currency)
    counter = itertools.count(1)

    def request(key: str | None = None) -> PaymentRequest:
        serial = next(counter)
        return PaymentRequest(
            payment_id=f"conformance-{uuid.uuid4().hex}",
            idempotency_key=key or f"conformance-key-{uuid.uuid4().hex}-{serial}",
            amount=amount,
            description="Pakiet Standard",
            customer_email="customer@example.com",
            language="en",
            return_url="https://portal.example/payments/p/return",
            cancel_url="https://portal.example/payments/p/cancel",
            webhook_url=f"https://portal.example/webhooks/{provider.name}",
        )

    def paid() -> tuple[PaymentRequest, Redirect]:
        asked = request()
        redirect = provider.start_payment(asked)
        harness.pay(redirect)
        return asked, redirect

    def reports_payment(event: PaymentEvent | None, asked: PaymentRequest) -> PaymentEvent:
        assert isinstance(event, PaymentEvent), f"expected a PaymentEvent, got {event!r}"
        assert event.kind is PaymentEventKind.SUCCEEDED, event
        assert event.payment_id == asked.payment_id, "core's payment id is not echoed back"
        assert event.amount == asked.amount, f"reports {event.amount}, asked {asked.amount}"
        assert event.event_id, "no event_id"
        assert event.charge_ref, "no charge_ref: core could not refund it"
        return event

    def declares_its_capabilities() -> None:
        assert isinstance(provider.name, str) and provider.name, "no name"
        assert currencies, "currencies: declare the ISO codes it takes"
        for code in currencies:
            assert code.isupper() and is_currency(code), f"{code!r} is not ISO 4217"
        origins = provider.hosted_origins
        assert origins and not isinstance(origins, str), "hosted_origins: declare its pages"
        for value in origins:
            assert origin(value) == value, f"{value!r} in hosted_origins is not an origin"
        brands = provider.renewable_brands
        assert brands is not None, "renewable_brands: declare what it charges again (or none)"
        assert all(b == b.lower() for b in brands), f"brands are lower case: {brands!r}"
        assert not brands or provider.saves_methods, "renews but saves_methods is False"
        assert isinstance(provider.can_refund, bool), "can_refund is not a bool"

    def labels_in_both_languages() -> None:
        for language in ("pl", "en"):
            label = provider.label(language)
            assert isinstance(label, str) and label, f"no label in {language!r}"

    def start_sends_to_a_declared_origin_once_per_key() -> None:
        asked = request()
        first = provider.start_payment(asked)
        assert isinstance(first, Redirect), first
        assert origin(first.url) in provider.hosted_origins, f"{first.url} is not declared"
        assert first.provider_ref, "no provider_ref"
        again = provider.start_payment(asked)
        assert again.provider_ref == first.provider_ref, "one idempotency key, two payments"

    def a_paid_attempt_is_reported_by_a_verified_webhook() -> None:
        asked, redirect = paid()
        body, headers = harness.notification(redirect)
        reports_payment(provider.parse_webhook(body=body, headers=headers), asked)

    def the_return_reports_the_payment() -> None:
        asked, redirect = paid()
        event = provider.complete_return(provider_ref=redirect.provider_ref, params={})
        reports_payment(event, asked)

    def a_forged_signature_is_rejected() -> None:
        _asked, redirect = paid()
        body, headers = harness.notification(redirect)
        for forged_body, forged_headers in (
            (tampered(body), headers),  # the body changed after signing
            (body, {"Content-Type": "application/json"}),  # no signature at all
        ):
            try:
                provider.parse_webhook(body=forged_body, headers=forged_headers)
            except WebhookRejected:
                continue
            raise AssertionError("a forged notification was not rejected (WebhookRejected)")

    def a_replayed_notification_is_the_same_event() -> None:
        asked, redirect = paid()
        body, headers = harness.notification(redirect)
        first = reports_payment(provider.parse_webhook(body=body, headers=headers), asked)
        again = reports_payment(provider.parse_webhook(body=body, headers=headers), asked)
        assert first.event_id == again.event_id, "a replay must carry the same event_id"

    def refunds_or_declares_it_cannot() -> None:
        asked, redirect = paid()
        body, headers = harness.notification(redirect)
        event = reports_payment(provider.parse_webhook(body=body, headers=headers), asked)
        assert event.charge_ref is not None
        key = f"refund-{asked.payment_id}"
        if not provider.can_refund:
            try:
                provider.refund(charge_ref=event.charge_ref, amount=amount, idempotency_key=key)
            except ProviderError:
                return
            raise AssertionError("can_refund is False, yet refund() did not raise")
        refunded = provider.refund(charge_ref=event.charge_ref, amount=amount, idempotency_key=key)
        assert refunded.kind is PaymentEventKind.REFUNDED, refunded
        assert refunded.amount == amount, f"refunded {refunded.amount} of {amount}"
        again = provider.refund(charge_ref=event.charge_ref, amount=amount, idempotency_key=key)
        assert again.amount == amount, "the same refund asked twice gave back more"

    def renews_or_declares_it_cannot() -> None:
        brands = provider.renewable_brands or frozenset()
        if not brands:
            assert harness.saved_method is None, "a saved method given, but no renewable_brands"
            try:
                provider.charge_saved(request(), SavedMethod(provider_ref="x", brand="visa"))
            except ProviderError:
                return
            raise AssertionError("declares it cannot renew, yet charge_saved() did not raise")
        assert harness.saved_method is not None, "renews: give the harness a saved_method"
        _asked, redirect = paid()
        method = harness.saved_method(redirect)
        assert provider.charges_again(method.brand), f"cannot charge {method.brand!r} again"
        renewal = request()
        event = provider.charge_saved(renewal, method)
        assert event.kind in (PaymentEventKind.SUCCEEDED, PaymentEventKind.REQUIRES_ACTION)
        if event.kind is PaymentEventKind.SUCCEEDED:
            reports_payment(event, renewal)

    checks = {
        "declares_its_capabilities": declares_its_capabilities,
        "labels_in_both_languages": labels_in_both_languages,
        "start_sends_to_a_declared_origin_once_per_key": (
            start_sends_to_a_declared_origin_once_per_key
        ),
        "a_paid_attempt_is_reported_by_a_verified_webhook": (
            a_paid_attempt_is_reported_by_a_verified_webhook
        ),
        "the_return_reports_the_payment": the_return_reports_the_payment,
        "a_forged_signature_is_rejected": a_forged_signature_is_rejected,
        "a_replayed_notification_is_the_same_event": a_replayed_notification_is_the_same_event,
        "refunds_or_declares_it_cannot": refunds_or_declares_it_cannot,
        "renews_or_declares_it_cannot": renews_or_declares_it_cannot,
    }
    for name in PROVIDER_CHECKS:
        yield name, checks[name]
