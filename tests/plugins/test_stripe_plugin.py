"""The Stripe plugin through the official ``stripe`` SDK, against the emulator.

Everything here crosses a real socket: the SDK encodes its requests as it would for
api.stripe.com, the emulator answers in Stripe's shapes, and webhooks arrive signed over
HTTP. The emulator's own page and command line are tested at the end.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pluggy
import pytest
import stripe

import pakiet_stripe
from pakiet_stripe.client import StripeProvider, with_session_placeholder
from pakiet_stripe.emulator import StripeEmulator
from portal.plugin_api import hookspecs
from portal.plugin_api.contracts import (
    PaymentEvent,
    PaymentEventKind,
    PaymentRequest,
    ProviderError,
    SavedMethod,
    WebhookRejected,
)
from portal.rules.money import Money

API_KEY = "sk_test_pakiet_4eC39HqLyjWDarjtT1zdp7dc"
WEBHOOK_SECRET = "whsec_pakiet_test_secret"

VISA = "4242424242424242"
MASTERCARD = "5555555555554444"
AMEX = "378282246310005"
DECLINED = "4000000000000002"
INSUFFICIENT_FUNDS = "4000000000009995"
CHARGES_FAIL = "4000000000000341"
THREE_D_SECURE = "4000002500003155"
ALWAYS_AUTHENTICATE = "4000002760003184"


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Raw SDK clients made here must not write ~/.config/stripe either."""
    monkeypatch.setattr(stripe, "enable_telemetry", False)


def _client(emulator: StripeEmulator) -> stripe.StripeClient:
    """The SDK on its own, for what the plugin never does (expire, unrestricted sessions)."""
    return stripe.StripeClient(API_KEY, base_addresses={"api": emulator.base_url})


class _Sink(ThreadingHTTPServer):
    daemon_threads = False
    received: list[tuple[bytes, dict[str, str]]]
    statuses: list[int]


class _SinkHandler(BaseHTTPRequestHandler):
    server: _Sink

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((body, dict(self.headers.items())))
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the emulator's deliveries are asserted on, not logged."""


@pytest.fixture
def sink() -> Iterator[_Sink]:
    """The portal's webhook endpoint, stood in for by a server that records what arrives."""
    server = _Sink(("127.0.0.1", 0), _SinkHandler)
    server.received, server.statuses = [], []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def _sink_url(server: _Sink) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/webhooks/stripe"


@pytest.fixture
def emulator() -> Iterator[StripeEmulator]:
    with StripeEmulator(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET) as running:
        yield running


@pytest.fixture
def hooked(sink: _Sink) -> Iterator[StripeEmulator]:
    """An emulator that delivers webhooks to ``sink``."""
    with StripeEmulator(
        api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, webhook_url=_sink_url(sink)
    ) as running:
        yield running


def _provider(emulator: StripeEmulator, **config: Any) -> StripeProvider:
    settings = {
        "api_key": API_KEY,
        "webhook_secret": WEBHOOK_SECRET,
        "api_base": emulator.base_url,
        "timeout": 5,
        "max_network_retries": 0,
        **config,
    }
    return StripeProvider(settings)


@pytest.fixture
def provider(emulator: StripeEmulator) -> Iterator[StripeProvider]:
    made = _provider(emulator)
    yield made
    made.close()


@pytest.fixture
def hooked_provider(hooked: StripeEmulator) -> Iterator[StripeProvider]:
    made = _provider(hooked)
    yield made
    made.close()


_counter = iter(range(1, 1_000_000))


def _request(**overrides: Any) -> PaymentRequest:
    n = next(_counter)
    values: dict[str, Any] = {
        "payment_id": f"pay_{n}",
        "idempotency_key": f"payment-{n}-attempt-1",
        "amount": Money(12345, "PLN"),
        "description": "Pakiet Standard, 3 agentów, miesięcznie",
        "customer_email": "jan@firma.example",
        "language": "pl",
        "return_url": "https://portal.example/payments/return?lang=pl",
        "cancel_url": "https://portal.example/payments/cancel",
    }
    values.update(overrides)
    return PaymentRequest(**values)


def _paid(
    provider: StripeProvider, emulator: StripeEmulator, card: str = VISA, **overrides: Any
) -> PaymentEvent:
    """A completed Checkout payment; 3-D Secure cards are authenticated."""
    redirect = provider.start_payment(_request(**overrides))
    outcome = emulator.pay(redirect.provider_ref, card=card)
    if outcome.status == "requires_action":
        outcome = emulator.authenticate(redirect.provider_ref)
    assert outcome.status == "succeeded", outcome
    return provider.complete_return(provider_ref=redirect.provider_ref, params={})


def _saved(provider: StripeProvider, emulator: StripeEmulator, card: str) -> SavedMethod:
    """A card saved through a setup-mode Checkout Session, authenticated when asked."""
    redirect = provider.start_setup(
        customer_email="jan@firma.example",
        customer_ref=None,
        return_url="https://portal.example/methods/return",
        cancel_url="https://portal.example/methods",
        language="en",
        idempotency_key=f"setup-{next(_counter)}",
    )
    outcome = emulator.pay(redirect.provider_ref, card=card)
    if outcome.status == "requires_action":
        outcome = emulator.authenticate(redirect.provider_ref)
    assert outcome.status == "succeeded", outcome
    return provider.complete_setup(provider_ref=redirect.provider_ref, params={})


# -- registration ----------------------------------------------------------------------------------


def test_entry_point_registers_the_plugin_like_a_third_party() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="pakiet")}
    assert found["stripe"] == "pakiet_stripe"
    assert pakiet_stripe.__version__


def test_hook_offers_stripe_only_when_configured(emulator: StripeEmulator) -> None:
    pm = pluggy.PluginManager("pakiet")
    pm.add_hookspecs(hookspecs)
    pm.register(pakiet_stripe)
    settings: dict[str, dict[str, Any]] = {}

    def offered() -> list[Any]:
        results = pm.hook.register_payment_providers(plugin_config=lambda n: settings.get(n, {}))
        return [provider for result in results for provider in result]

    assert offered() == []
    settings["stripe"] = {"api_key": API_KEY, "api_base": emulator.base_url, "enabled": False}
    assert offered() == []
    settings["stripe"]["enabled"] = True
    [provider] = offered()
    assert isinstance(provider, StripeProvider)
    assert provider.name == "stripe"
    assert provider.currencies == {"PLN", "EUR", "USD", "CZK"}
    provider.close()


def test_labels_and_descriptions(provider: StripeProvider) -> None:
    assert provider.label("pl") == "Karta płatnicza (Visa, Mastercard)"
    assert provider.label("en") == "Card (Visa, Mastercard)"
    visa = SavedMethod("pm_1", "visa", "cus_1", "4242", 12, 2030)
    assert provider.describe(visa, "pl") == "Visa •••• 4242 (12/2030)"
    amex = SavedMethod("pm_2", "amex", "cus_1", "0005", 3, 2031)
    assert provider.describe(amex, "en") == "American Express •••• 0005 (03/2031)"


def test_success_url_keeps_stripes_placeholder_literal() -> None:
    assert (
        with_session_placeholder("https://p.example/r?lang=pl#top")
        == "https://p.example/r?lang=pl&session_id={CHECKOUT_SESSION_ID}#top"
    )


# -- Checkout --------------------------------------------------------------------------------------


def test_visa_payment_succeeds_with_exact_amount_and_a_saved_card(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    request = _request()
    redirect = provider.start_payment(request)
    assert redirect.url == f"{emulator.base_url}/c/pay/{redirect.provider_ref}"

    [session] = emulator.objects("checkout.session")
    assert session["metadata"] == {"payment_id": request.payment_id}
    assert session["client_reference_id"] == request.payment_id
    assert (session["amount_total"], session["currency"]) == (12345, "pln")
    assert session["locale"] == "pl"
    assert session["payment_method_options"]["card"]["restrictions"]["brands_blocked"] == [
        "american_express",
        "discover_global_network",
    ]
    [customer] = emulator.objects("customer")
    assert customer["email"] == request.customer_email

    outcome = emulator.pay(redirect.provider_ref, card=VISA, exp="12/34")
    assert outcome.redirect_url == (
        f"https://portal.example/payments/return?lang=pl&session_id={redirect.provider_ref}"
    )
    event = provider.complete_return(provider_ref=redirect.provider_ref, params={})

    assert event.kind is PaymentEventKind.SUCCEEDED
    assert event.amount == Money(12345, "PLN")
    assert event.payment_id == request.payment_id
    assert event.provider_ref == redirect.provider_ref
    assert event.charge_ref == outcome.payment_intent
    assert event.method is not None
    assert event.method.provider_ref.startswith("pm_")
    assert (event.method.brand, event.method.last4) == ("visa", "4242")
    assert (event.method.exp_month, event.method.exp_year) == (12, 2034)
    assert event.method.customer_ref == customer["id"]
    [intent] = emulator.objects("payment_intent")
    assert intent["setup_future_usage"] == "off_session"
    assert intent["metadata"] == {"payment_id": request.payment_id}
    # Asking again (a reload of the return page) reports the same event.
    assert provider.complete_return(provider_ref=redirect.provider_ref, params={}) == event


@pytest.mark.parametrize(
    "amount",
    [Money(4900, "PLN"), Money(1999, "EUR"), Money(2500, "USD"), Money(150000, "CZK")],
    ids=str,
)
def test_mastercard_in_every_currency_keeps_the_minor_units(
    provider: StripeProvider, emulator: StripeEmulator, amount: Money
) -> None:
    event = _paid(provider, emulator, MASTERCARD, amount=amount, language="en")
    assert event.amount == amount
    assert event.amount is not None and type(event.amount.minor) is int
    assert event.method is not None and event.method.brand == "mastercard"
    assert event.method.last4 == "4444"


def test_an_existing_customer_is_reused_and_nothing_saved_when_not_asked(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    first = _paid(provider, emulator)
    assert first.method is not None
    second = _paid(provider, emulator, customer_ref=first.method.customer_ref, save_method=False)
    assert len(emulator.objects("customer")) == 1
    assert second.method is not None and second.method.customer_ref is None
    assert emulator.objects("payment_intent")[-1]["setup_future_usage"] is None


def test_declined_card_reports_why_and_the_customer_may_try_another(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    redirect = provider.start_payment(_request())
    outcome = emulator.pay(redirect.provider_ref, card=DECLINED)
    assert outcome.status == "declined"
    assert (outcome.code, outcome.decline_code) == ("card_declined", "generic_decline")
    assert outcome.message == "Twoja karta została odrzucona."  # the page speaks Polish

    failed = provider.complete_return(provider_ref=redirect.provider_ref, params={})
    assert failed.kind is PaymentEventKind.FAILED
    assert failed.failure_code == "generic_decline"
    assert failed.failure_message == "Your card was declined."

    assert emulator.pay(redirect.provider_ref, card=VISA).status == "succeeded"
    paid = provider.complete_return(provider_ref=redirect.provider_ref, params={})
    assert paid.kind is PaymentEventKind.SUCCEEDED
    assert paid.event_id != failed.event_id
    assert len(emulator.objects("payment_intent")) == 1  # Checkout reuses the intent


def test_unsettled_session_is_pending_not_failed(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    redirect = provider.start_payment(_request())
    with pytest.raises(ProviderError) as raised:
        provider.complete_return(provider_ref=redirect.provider_ref, params={})
    assert raised.value.code == "pending" and raised.value.retryable


def test_amex_is_refused_on_the_checkout_page(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    redirect = provider.start_payment(_request())
    outcome = emulator.pay(redirect.provider_ref, card=AMEX, cvc="1234")
    assert outcome.status == "invalid"
    assert outcome.code == "card_brand_not_supported"
    assert emulator.objects("payment_intent") == []  # nothing was charged
    assert emulator.pay(redirect.provider_ref, card=VISA).status == "succeeded"


def test_amex_from_an_unrestricted_session_reaches_core_with_its_brand(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    """A session made elsewhere (the dashboard, an older release) without the block: the
    payment succeeds as it would at Stripe, and core's brand check can refund it."""
    session = _client(emulator).v1.checkout.sessions.create(
        {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "eur",
                        "unit_amount": 5000,
                        "product_data": {"name": "Pakiet Pro"},
                    },
                }
            ],
            "metadata": {"payment_id": "pay_amex"},
            "success_url": "https://portal.example/return",
        }
    )
    assert emulator.pay(session.id, card=AMEX, cvc="1234").status == "succeeded"
    event = provider.complete_return(provider_ref=session.id, params={})
    assert event.kind is PaymentEventKind.SUCCEEDED
    assert event.method is not None and event.method.brand == "amex"
    assert event.payment_id == "pay_amex"


def test_three_d_secure_at_checkout_then_renewals_without_it(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    redirect = provider.start_payment(_request())
    assert emulator.pay(redirect.provider_ref, card=THREE_D_SECURE).status == "requires_action"
    with pytest.raises(ProviderError, match="not settled"):
        provider.complete_return(provider_ref=redirect.provider_ref, params={})
    assert emulator.authenticate(redirect.provider_ref).status == "succeeded"
    event = provider.complete_return(provider_ref=redirect.provider_ref, params={})
    assert event.kind is PaymentEventKind.SUCCEEDED
    assert event.method is not None

    # As at Stripe, 4000002500003155 needs no authentication once saved for off-session use.
    renewal = provider.charge_saved(_request(amount=Money(5000, "PLN")), event.method)
    assert renewal.kind is PaymentEventKind.SUCCEEDED
    assert renewal.amount == Money(5000, "PLN")


def test_failed_three_d_secure_lets_the_customer_try_again(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    redirect = provider.start_payment(_request())
    emulator.pay(redirect.provider_ref, card=THREE_D_SECURE)
    outcome = emulator.authenticate(redirect.provider_ref, complete=False)
    assert outcome.status == "declined"
    assert outcome.code == "payment_intent_authentication_failure"
    failed = provider.complete_return(provider_ref=redirect.provider_ref, params={})
    assert failed.failure_code == "payment_intent_authentication_failure"
    assert emulator.pay(redirect.provider_ref, card=MASTERCARD).status == "succeeded"


def test_expired_session_fails(provider: StripeProvider, emulator: StripeEmulator) -> None:
    redirect = provider.start_payment(_request())
    _client(emulator).v1.checkout.sessions.expire(redirect.provider_ref)
    event = provider.complete_return(provider_ref=redirect.provider_ref, params={})
    assert (event.kind, event.failure_code) == (PaymentEventKind.FAILED, "expired")
    assert emulator.pay(redirect.provider_ref, card=VISA).status == "closed"


def test_cancelling_closes_the_session_unless_it_was_paid(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    left = provider.start_payment(_request())
    event = provider.cancel(provider_ref=left.provider_ref)
    assert (event.kind, event.failure_code) == (PaymentEventKind.FAILED, "expired")
    assert emulator.pay(left.provider_ref, card=VISA).status == "closed"

    raced = provider.start_payment(_request())
    emulator.pay(raced.provider_ref, card=VISA)  # paid in another tab before the cancel
    assert provider.cancel(provider_ref=raced.provider_ref).kind is PaymentEventKind.SUCCEEDED


def test_amounts_stripe_refuses_are_reported_not_retried(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    with pytest.raises(ProviderError) as too_small:
        provider.start_payment(_request(amount=Money(150, "PLN")))
    assert too_small.value.code == "amount_too_small" and not too_small.value.retryable
    with pytest.raises(ProviderError) as foreign:
        provider.start_payment(_request(amount=Money(1000, "GBP")))
    assert foreign.value.code == "currency_not_supported"
    assert emulator.objects("checkout.session") == []


# -- off-session charges ---------------------------------------------------------------------------


def test_saved_card_is_charged_off_session(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    method = _paid(provider, emulator).method
    assert method is not None
    request = _request(amount=Money(36900, "PLN"))
    event = provider.charge_saved(request, method)
    assert event.kind is PaymentEventKind.SUCCEEDED
    assert event.amount == Money(36900, "PLN")
    assert event.payment_id == request.payment_id
    assert event.charge_ref == event.provider_ref
    assert event.method is not None and event.method.provider_ref == method.provider_ref
    intent = next(i for i in emulator.objects("payment_intent") if i["id"] == event.charge_ref)
    assert (intent["customer"], intent["payment_method"]) == (
        method.customer_ref,
        method.provider_ref,
    )


def test_off_session_charge_asking_for_authentication_gets_a_page(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    method = _paid(provider, emulator, ALWAYS_AUTHENTICATE).method
    assert method is not None
    request = _request(return_url="https://portal.example/payments/authenticated")
    event = provider.charge_saved(request, method)
    assert event.kind is PaymentEventKind.REQUIRES_ACTION
    assert event.failure_code == "authentication_required"
    assert event.action_url is not None
    assert event.action_url.startswith(f"{emulator.base_url}/3d_secure_2/hosted?")
    with urllib.request.urlopen(event.action_url) as page:
        assert "Complete authentication" in page.read().decode()
    assert event.provider_ref is not None
    # Back without authenticating: the same event again, so applying it twice changes nothing.
    assert provider.complete_return(provider_ref=event.provider_ref, params={}) == event

    status, _, headers = _fetch(event.action_url, {"outcome": "complete"})  # the page's button
    assert status == 303
    back = headers["Location"]
    query = parse_qs(urlsplit(back).query)
    assert back.startswith(request.return_url)
    assert query["payment_intent"] == [event.provider_ref]
    assert query["redirect_status"] == ["succeeded"]
    done = provider.complete_return(provider_ref=event.provider_ref, params={})
    assert done.kind is PaymentEventKind.SUCCEEDED
    assert done.amount == request.amount
    assert done.payment_id == request.payment_id


def test_failed_authentication_of_an_off_session_charge(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    method = _paid(provider, emulator, ALWAYS_AUTHENTICATE).method
    assert method is not None
    event = provider.charge_saved(_request(), method)
    assert event.provider_ref is not None
    back = emulator.authenticate(event.provider_ref, complete=False)
    assert back.redirect_url is not None and "redirect_status=failed" in back.redirect_url
    failed = provider.complete_return(provider_ref=event.provider_ref, params={})
    assert failed.kind is PaymentEventKind.FAILED
    assert failed.failure_code == "payment_intent_authentication_failure"


@pytest.mark.parametrize(
    ("card", "code"),
    [(CHARGES_FAIL, "generic_decline"), (INSUFFICIENT_FUNDS, "insufficient_funds")],
)
def test_off_session_decline_says_why(
    provider: StripeProvider, emulator: StripeEmulator, card: str, code: str
) -> None:
    method = _saved(provider, emulator, card)  # saving works; taking money does not
    event = provider.charge_saved(_request(), method)
    assert event.kind is PaymentEventKind.FAILED
    assert event.failure_code == code
    assert event.failure_message


def test_charging_a_card_that_was_not_saved_is_refused(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    method = _paid(provider, emulator, save_method=False).method
    assert method is not None
    unsaved = dataclasses.replace(method, customer_ref=emulator.objects("customer")[0]["id"])
    with pytest.raises(ProviderError) as raised:
        provider.charge_saved(_request(), unsaved)
    assert not raised.value.retryable
    with pytest.raises(ProviderError, match="customer"):
        provider.charge_saved(_request(), method)


# -- saving a card ---------------------------------------------------------------------------------


def test_setup_saves_a_card_for_renewals(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    method = _saved(provider, emulator, MASTERCARD)
    assert (method.brand, method.last4, method.exp_month, method.exp_year) == (
        "mastercard",
        "4444",
        12,
        2034,
    )
    [customer] = emulator.objects("customer")
    assert method.customer_ref == customer["id"]
    assert emulator.objects("charge") == []  # saving takes no money
    assert provider.charge_saved(_request(), method).kind is PaymentEventKind.SUCCEEDED


def test_setup_with_three_d_secure_then_off_session(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    method = _saved(provider, emulator, THREE_D_SECURE)
    assert provider.charge_saved(_request(), method).kind is PaymentEventKind.SUCCEEDED


def test_setup_not_finished_is_pending(provider: StripeProvider, emulator: StripeEmulator) -> None:
    redirect = provider.start_setup(
        customer_email="jan@firma.example",
        customer_ref=None,
        return_url="https://portal.example/methods/return",
        cancel_url="https://portal.example/methods",
        language="pl",
        idempotency_key="setup-pending",
    )
    assert emulator.pay(redirect.provider_ref, card=DECLINED).status == "declined"
    with pytest.raises(ProviderError) as raised:
        provider.complete_setup(provider_ref=redirect.provider_ref, params={})
    assert raised.value.code == "pending" and raised.value.retryable


# -- refunds ---------------------------------------------------------------------------------------


def test_partial_then_full_refund_report_the_refunded_total(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    paid = _paid(provider, emulator)
    assert paid.charge_ref is not None
    part = provider.refund(
        charge_ref=paid.charge_ref, amount=Money(2345, "PLN"), idempotency_key="refund-1"
    )
    assert part.kind is PaymentEventKind.REFUNDED
    assert part.amount == Money(2345, "PLN")
    assert part.payment_id == paid.payment_id
    rest = provider.refund(
        charge_ref=paid.charge_ref, amount=Money(10000, "PLN"), idempotency_key="refund-2"
    )
    assert rest.amount == Money(12345, "PLN")
    assert [r["amount"] for r in emulator.objects("refund")] == [2345, 10000]

    with pytest.raises(ProviderError) as again:
        provider.refund(
            charge_ref=paid.charge_ref, amount=Money(1, "PLN"), idempotency_key="refund-3"
        )
    assert again.value.code == "charge_already_refunded" and not again.value.retryable


def test_refund_in_another_currency_is_refused_before_stripe_sees_it(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    paid = _paid(provider, emulator)
    assert paid.charge_ref is not None
    with pytest.raises(ProviderError) as raised:
        provider.refund(charge_ref=paid.charge_ref, amount=Money(100, "EUR"), idempotency_key="x")
    assert raised.value.code == "currency_mismatch"
    assert emulator.objects("refund") == []


# -- idempotency -----------------------------------------------------------------------------------


def test_every_post_carries_a_key_derived_from_cores(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    request = _request()
    paid = _paid(provider, emulator, idempotency_key=request.idempotency_key)
    assert paid.method is not None and paid.charge_ref is not None
    renewal = _request()
    provider.charge_saved(renewal, paid.method)
    provider.refund(charge_ref=paid.charge_ref, amount=Money(100, "PLN"), idempotency_key="rf-9")
    keys = [(c.path, c.idempotency_key) for c in emulator.api_calls if c.method == "POST"]
    assert keys == [
        ("/v1/customers", f"{request.idempotency_key}:customer"),
        ("/v1/checkout/sessions", f"{request.idempotency_key}:checkout"),
        ("/v1/payment_intents", renewal.idempotency_key),
        ("/v1/refunds", "rf-9"),
    ]


def test_the_same_request_twice_makes_one_session_and_one_charge(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    request = _request()
    first = provider.start_payment(request)
    assert provider.start_payment(request) == first
    assert len(emulator.objects("checkout.session")) == 1
    assert len(emulator.objects("customer")) == 1

    emulator.pay(first.provider_ref, card=VISA)
    method = provider.complete_return(provider_ref=first.provider_ref, params={}).method
    assert method is not None
    renewal = _request()
    once = provider.charge_saved(renewal, method)
    twice = provider.charge_saved(renewal, method)
    assert once == twice
    assert len(emulator.objects("payment_intent")) == 2  # the checkout's and the renewal's
    assert [c.replayed for c in emulator.api_calls if c.path == "/v1/payment_intents"] == [
        False,
        True,
    ]


def test_a_key_reused_for_another_amount_is_refused(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    request = _request()
    provider.start_payment(request)
    with pytest.raises(ProviderError) as raised:
        provider.start_payment(dataclasses.replace(request, amount=Money(99900, "PLN")))
    assert raised.value.code == "idempotency_error" and not raised.value.retryable
    assert len(emulator.objects("checkout.session")) == 1


def test_an_answer_lost_after_stripe_acted_is_replayed_on_retry(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    method = _saved(provider, emulator, VISA)
    request = _request()
    emulator.fail_next("close", processed=True)
    with pytest.raises(ProviderError) as raised:
        provider.charge_saved(request, method)
    assert raised.value.retryable
    [charged] = emulator.objects("charge")  # Stripe charged; only the answer was lost
    event = provider.charge_saved(request, method)
    assert event.kind is PaymentEventKind.SUCCEEDED
    assert event.charge_ref == charged["payment_intent"]
    assert len(emulator.objects("charge")) == 1
    assert emulator.api_calls[-1].replayed


def test_sdk_retries_a_server_error_with_the_same_key(emulator: StripeEmulator) -> None:
    retrying = _provider(emulator, max_network_retries=1)
    try:
        emulator.fail_next(500)
        request = _request()
        retrying.start_payment(request)
    finally:
        retrying.close()
    calls = [(c.status, c.idempotency_key) for c in emulator.api_calls if c.path == "/v1/customers"]
    key = f"{request.idempotency_key}:customer"
    assert calls == [(500, key), (200, key)]
    assert len(emulator.objects("customer")) == 1


# -- faults ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "code", "words"),
    [
        (500, "api_error", "Stripe failed with HTTP 500 while creating a customer"),
        (503, "api_error", "HTTP 503"),
        (429, "rate_limit", "limiting the request rate"),
        ("timeout", "timeout", "Stripe did not answer within 0.5 s while creating a customer"),
        ("close", "network", "could not reach Stripe"),
        ("garbage", "bad_response", "unreadable answer (HTTP 200)"),
    ],
)
def test_faults_are_retryable_and_a_retry_succeeds(
    emulator: StripeEmulator, fault: Any, code: str, words: str
) -> None:
    impatient = _provider(emulator, timeout=0.5)
    try:
        request = _request()
        emulator.fail_next(fault)
        started = time.monotonic()
        with pytest.raises(ProviderError) as raised:
            impatient.start_payment(request)
        assert time.monotonic() - started < 5
        assert raised.value.retryable
        assert raised.value.code == code
        assert words in str(raised.value)
        redirect = impatient.start_payment(request)
    finally:
        impatient.close()
    assert [s["id"] for s in emulator.objects("checkout.session")] == [redirect.provider_ref]


def test_a_wrong_api_key_is_not_retryable(emulator: StripeEmulator) -> None:
    wrong = _provider(emulator, api_key="sk_test_wrong_key_1234")
    try:
        with pytest.raises(ProviderError) as raised:
            wrong.start_payment(_request())
    finally:
        wrong.close()
    assert raised.value.code == "authentication" and not raised.value.retryable
    assert "Invalid API Key provided: sk_test_" in str(raised.value)
    assert "wrong_key" not in str(raised.value)  # Stripe masks the key it refuses
    assert emulator.api_calls[-1].status == 401


def test_unreachable_stripe_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = StripeProvider(
        {"api_key": API_KEY, "api_base": f"http://127.0.0.1:{port}", "max_network_retries": 0}
    )
    try:
        with pytest.raises(ProviderError) as raised:
            nowhere.start_payment(_request())
    finally:
        nowhere.close()
    assert raised.value.code == "network" and raised.value.retryable


# -- webhooks --------------------------------------------------------------------------------------


def test_signed_webhooks_arrive_and_parse(
    hooked_provider: StripeProvider, hooked: StripeEmulator, sink: _Sink
) -> None:
    paid = _paid(hooked_provider, hooked)
    completed = hooked.wait_for_delivery("checkout.session.completed")
    hooked.wait_for_delivery("payment_intent.succeeded")
    body, headers = next((b, h) for b, h in sink.received if b == completed.body)
    assert headers["Stripe-Signature"].startswith("t=")
    assert headers["Content-Type"] == "application/json; charset=utf-8"

    event = hooked_provider.parse_webhook(body=body, headers=headers)
    assert event is not None
    assert event.event_id == completed.payload["id"]
    assert event.event_id.startswith("evt_")
    assert dataclasses.replace(event, event_id=paid.event_id) == paid  # same facts as the return

    intent_delivery = hooked.wait_for_delivery("payment_intent.succeeded")
    by_intent = hooked_provider.parse_webhook(
        body=intent_delivery.body, headers=intent_delivery.headers
    )
    assert by_intent is not None and by_intent.kind is PaymentEventKind.SUCCEEDED
    assert (by_intent.payment_id, by_intent.amount) == (paid.payment_id, paid.amount)
    assert by_intent.method == paid.method


def test_webhook_signature_problems_are_rejected(
    hooked_provider: StripeProvider, hooked: StripeEmulator
) -> None:
    _paid(hooked_provider, hooked)
    good = hooked.wait_for_delivery("checkout.session.completed")
    header = good.headers["Stripe-Signature"]
    assert hooked_provider.parse_webhook(body=good.body, headers=good.headers) is not None

    tampered = good.body.replace(b'"amount_total": 12345', b'"amount_total": 1')
    assert tampered != good.body
    old = hooked.sign(good.body, timestamp=int(time.time()) - 301)
    wrong = hooked.sign(good.body, secret="whsec_someone_else")
    for body, headers in [
        (tampered, {"Stripe-Signature": header}),
        (good.body, {"Stripe-Signature": old}),
        (good.body, {"Stripe-Signature": wrong}),
        (good.body, {}),
        (good.body, {"Stripe-Signature": "garbage"}),
    ]:
        with pytest.raises(WebhookRejected):
            hooked_provider.parse_webhook(body=body, headers=headers)

    resigned = {"stripe-signature": hooked.sign(good.body)}  # any header case will do
    assert hooked_provider.parse_webhook(body=good.body, headers=resigned) is not None


def test_webhooks_need_a_secret(emulator: StripeEmulator) -> None:
    unset = _provider(emulator, webhook_secret=None)
    try:
        body = b'{"id": "evt_1", "object": "event"}'
        with pytest.raises(WebhookRejected, match="webhook_secret"):
            unset.parse_webhook(body=body, headers={"Stripe-Signature": emulator.sign(body)})
    finally:
        unset.close()


def test_a_signed_body_that_is_not_an_event_is_rejected(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    for body in (b"not json", b"\xff\xfe", b'{"object": "v2.core.event", "id": "x"}'):
        with pytest.raises(WebhookRejected):
            provider.parse_webhook(body=body, headers={"Stripe-Signature": emulator.sign(body)})


def test_event_types_the_portal_does_not_act_on_give_none(
    hooked_provider: StripeProvider, hooked: StripeEmulator
) -> None:
    _paid(hooked_provider, hooked)
    for event_type in ("payment_intent.created", "charge.succeeded", "payment_method.attached"):
        delivery = hooked.wait_for_delivery(event_type)
        assert hooked_provider.parse_webhook(body=delivery.body, headers=delivery.headers) is None
    setup = _saved(hooked_provider, hooked, VISA)
    assert setup.brand == "visa"
    deliveries = hooked.wait_for_deliveries(len(hooked.events))
    setup_completed = [
        d
        for d in deliveries
        if d.event_type == "checkout.session.completed"
        and d.payload["data"]["object"]["mode"] == "setup"
    ]
    assert (
        hooked_provider.parse_webhook(
            body=setup_completed[0].body, headers=setup_completed[0].headers
        )
        is None
    )


def test_webhooks_for_a_decline_an_expiry_and_a_refund(
    hooked_provider: StripeProvider, hooked: StripeEmulator
) -> None:
    declined = hooked_provider.start_payment(_request())
    hooked.pay(declined.provider_ref, card=DECLINED)
    failed = hooked.wait_for_delivery("payment_intent.payment_failed")
    event = hooked_provider.parse_webhook(body=failed.body, headers=failed.headers)
    assert event is not None and event.kind is PaymentEventKind.FAILED
    assert event.failure_code == "generic_decline"

    _client(hooked).v1.checkout.sessions.expire(declined.provider_ref)
    expired = hooked.wait_for_delivery("checkout.session.expired")
    event = hooked_provider.parse_webhook(body=expired.body, headers=expired.headers)
    assert event is not None
    assert (event.kind, event.failure_code) == (PaymentEventKind.FAILED, "expired")
    assert event.provider_ref == declined.provider_ref
    assert event.payment_id is not None and event.payment_id.startswith("pay_")

    paid = _paid(hooked_provider, hooked)
    assert paid.charge_ref is not None
    hooked_provider.refund(charge_ref=paid.charge_ref, amount=Money(45, "PLN"), idempotency_key="w")
    refunded = hooked.wait_for_delivery("charge.refunded")
    event = hooked_provider.parse_webhook(body=refunded.body, headers=refunded.headers)
    assert event is not None and event.kind is PaymentEventKind.REFUNDED
    assert (event.amount, event.charge_ref, event.payment_id) == (
        Money(45, "PLN"),
        paid.charge_ref,
        paid.payment_id,
    )


def test_off_session_authentication_failure_webhook_leaves_the_page_in_place(
    hooked_provider: StripeProvider, hooked: StripeEmulator
) -> None:
    method = _paid(hooked_provider, hooked, ALWAYS_AUTHENTICATE).method
    assert method is not None
    action = hooked_provider.charge_saved(_request(), method)
    assert action.kind is PaymentEventKind.REQUIRES_ACTION
    deliveries = hooked.wait_for_deliveries(len(hooked.events))
    [failure] = [
        d
        for d in deliveries
        if d.event_type == "payment_intent.payment_failed"
        and d.payload["data"]["object"]["id"] == action.provider_ref
    ]
    assert failure.payload["data"]["object"]["last_payment_error"]["code"] == (
        "authentication_required"
    )
    assert hooked_provider.parse_webhook(body=failure.body, headers=failure.headers) is None


def test_late_and_duplicate_webhooks(sink: _Sink) -> None:
    with StripeEmulator(
        api_key=API_KEY,
        webhook_secret=WEBHOOK_SECRET,
        webhook_url=_sink_url(sink),
        webhook_delay=0.3,
        webhook_duplicates=True,
    ) as emulator:
        late = _provider(emulator)
        try:
            redirect = late.start_payment(_request())
            emulator.pay(redirect.provider_ref, card=VISA)
            paid_at = time.monotonic()
            assert not [d for d in emulator.deliveries if d.event_type.startswith("checkout.")]
            emulator.wait_for_delivery("checkout.session.completed")
            assert time.monotonic() - paid_at > 0.2
            deliveries = emulator.wait_for_deliveries(2 * len(emulator.events))
            twice = [d for d in deliveries if d.event_type == "checkout.session.completed"]
            assert len(twice) == 2 and twice[0].event_id == twice[1].event_id
            parsed = [late.parse_webhook(body=d.body, headers=d.headers) for d in twice]
            assert parsed[0] == parsed[1]  # the same event_id: core applies it once
        finally:
            late.close()


def test_a_refused_webhook_is_sent_again(sink: _Sink) -> None:
    sink.statuses.extend([503])
    with StripeEmulator(
        api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, webhook_url=_sink_url(sink)
    ) as emulator:
        emulator.fail_next(500)  # an API fault does not touch webhooks
        client = _client(emulator)
        with pytest.raises(stripe.APIError):
            client.v1.customers.create({"email": "a@b.example"}, options={"max_network_retries": 0})
        customer = client.v1.customers.create({"email": "a@b.example"})
        client.v1.payment_intents.create(
            {"amount": 1000, "currency": "eur", "customer": customer.id}
        )
        deliveries = emulator.wait_for_deliveries(2, timeout=5)
    assert [(d.event_type, d.attempt, d.status) for d in deliveries] == [
        ("payment_intent.created", 1, 503),
        ("payment_intent.created", 2, 200),
    ]


# -- the emulator's pages and command line ---------------------------------------------------------


class _Inputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[dict[str, str | None]] = []
        self.label_for: set[str] = set()
        self.external: list[str] = []
        self.buttons = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "input" and values.get("type") != "hidden":
            self.inputs.append(values)
        if tag == "label" and values.get("for"):
            self.label_for.add(str(values["for"]))
        if tag in ("script", "img", "link", "iframe") or (tag == "form" and "//" in str(values)):
            self.external.append(tag)
        if tag == "button":
            self.buttons += 1


def _fetch(url: str, form: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    """GET or POST without following redirects, as a test browser's first hop."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    data = urlencode(form).encode() if form is not None else None
    try:
        with opener.open(url, data=data) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as answer:
        with answer:
            return answer.code, answer.read().decode(), dict(answer.headers)


def test_checkout_page_is_a_real_form_with_labelled_inputs(
    provider: StripeProvider, emulator: StripeEmulator
) -> None:
    redirect = provider.start_payment(_request())
    status, page, headers = _fetch(redirect.url)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    parsed = _Inputs()
    parsed.feed(page)
    ids = [str(i.get("id")) for i in parsed.inputs]
    assert ids == ["cardNumber", "cardExpiry", "cardCvc"]
    assert set(ids) <= parsed.label_for
    assert parsed.external == []
    assert '<html lang="pl">' in page
    assert "Zapłać 123,45\N{NO-BREAK SPACE}PLN" in page
    assert "Pakiet Standard, 3 agentów, miesięcznie" in page

    status, page, _ = _fetch(
        redirect.url, {"cardNumber": "4000 0000 0000 0002", "cardExpiry": "12 / 34", "cardCvc": "1"}
    )
    assert status == 200 and "Kod bezpieczeństwa karty jest niepełny." in page
    status, page, _ = _fetch(
        redirect.url, {"cardNumber": DECLINED, "cardExpiry": "12/34", "cardCvc": "123"}
    )
    assert status == 200 and 'role="alert"' in page and "Twoja karta została odrzucona." in page
    status, page, _ = _fetch(
        redirect.url, {"cardNumber": THREE_D_SECURE, "cardExpiry": "12/34", "cardCvc": "123"}
    )
    assert "Complete authentication" in page and "Fail authentication" in page
    status, _, headers = _fetch(f"{redirect.url}/authenticate", {"outcome": "complete"})
    assert status == 303
    assert headers["Location"] == (
        f"https://portal.example/payments/return?lang=pl&session_id={redirect.provider_ref}"
    )
    assert provider.complete_return(provider_ref=redirect.provider_ref, params={}).kind is (
        PaymentEventKind.SUCCEEDED
    )
    status, page, _ = _fetch(redirect.url)
    assert "Ta płatność została zakończona." in page


def test_emulator_answers_in_stripes_error_shapes(emulator: StripeEmulator) -> None:
    client = _client(emulator)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.payment_intents.retrieve("pi_nope")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
    # The SDK pins API version 2026-10-28.endive, where this parameter is gone.
    retired: dict[str, Any] = {
        "mode": "setup",
        "success_url": "https://x.example",
        "payment_method_types": ["card"],
    }
    with pytest.raises(stripe.InvalidRequestError) as old_param:
        client.v1.checkout.sessions.create(retired)  # type: ignore[arg-type]
    assert old_param.value.code == "payment_method_types_no_longer_supported"
    request = urllib.request.Request(f"{emulator.base_url}/v1/customers", data=b"email=a")
    status, body, _ = _fetch_request(request)
    assert status == 401
    assert json.loads(body)["error"]["type"] == "invalid_request_error"


def _fetch_request(request: urllib.request.Request) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as answer:
        with answer:
            return answer.code, answer.read().decode(), dict(answer.headers)


def test_command_line_serves_until_terminated() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "pakiet_stripe.emulator",
        "--port",
        str(port),
        "--api-key",
        API_KEY,
        "--webhook-secret",
        WEBHOOK_SECRET,
        "--quiet",
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"Stripe emulator at http://127.0.0.1:{port}"
        client = stripe.StripeClient(API_KEY, base_addresses={"api": f"http://127.0.0.1:{port}"})
        assert client.v1.customers.create({"email": "a@b.example"}).id.startswith("cus_")
        process.terminate()
        assert process.wait(timeout=10) == 0
