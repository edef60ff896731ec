"""The PayPal plugin through PayPal's real ``paypal-server-sdk``, against the emulator.

Every call below crosses HTTP: OAuth, Orders v2, refunds, the vault, webhook signature
verification and the buyer's approval pages.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

import pakiet_paypal
from pakiet_paypal.client import PayPalProvider
from pakiet_paypal.emulator import PayPalEmulator, main
from portal.plugin_api.contracts import (
    PaymentEvent,
    PaymentEventKind,
    PaymentRequest,
    PluginConfig,
    ProviderError,
    SavedMethod,
    WebhookRejected,
)
from portal.rules.money import Money

CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret"
WEBHOOK_ID = "WH-TEST-1"
RETURN_URL = "https://portal.test/payments/p-1/return?lang=pl"
CANCEL_URL = "https://portal.test/payments/p-1/cancel"


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., PayPalEmulator]]:
    started: list[PayPalEmulator] = []

    def make(**options: Any) -> PayPalEmulator:
        settings: dict[str, Any] = {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "webhook_id": WEBHOOK_ID,
        }
        emulator = PayPalEmulator(**{**settings, **options}).start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()
        assert emulator.errors == []


@pytest.fixture
def emulator(make_emulator: Callable[..., PayPalEmulator]) -> PayPalEmulator:
    return make_emulator()


@pytest.fixture
def make_provider(emulator: PayPalEmulator) -> Iterator[Callable[..., PayPalProvider]]:
    providers: list[PayPalProvider] = []

    def make(on: PayPalEmulator | None = None, **overrides: Any) -> PayPalProvider:
        config = {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "base_url": (on or emulator).base_url,
            "webhook_id": WEBHOOK_ID,
            "brand_name": "Pakiet Test",
            "timeout": 2,
            **overrides,
        }
        provider = PayPalProvider(config)
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        provider.close()


@pytest.fixture
def provider(make_provider: Callable[..., PayPalProvider]) -> PayPalProvider:
    return make_provider()


def payment(**overrides: Any) -> PaymentRequest:
    fields: dict[str, Any] = {
        "payment_id": "pay_7Hq2",
        "idempotency_key": "attempt-1",
        "amount": Money(32841, "PLN"),
        "description": "Pakiet Pro, 5 agentów, rok",
        "customer_email": "ksiegowosc@firma.pl",
        "language": "pl",
        "return_url": RETURN_URL,
        "cancel_url": CANCEL_URL,
    }
    return PaymentRequest(**{**fields, **overrides})


def pay(
    provider: PayPalProvider,
    emulator: PayPalEmulator,
    email: str = "jan.kowalski@example.com",
    **overrides: Any,
) -> PaymentEvent:
    redirect = provider.start_payment(payment(**overrides))
    back = emulator.approve(redirect.provider_ref, email)
    params = {key: values[0] for key, values in parse_qs(urlsplit(back).query).items()}
    return provider.complete_return(provider_ref=redirect.provider_ref, params=params)


def sent(emulator: PayPalEmulator, method: str, path: str) -> list[Any]:
    """Requests to ``path``; a path ending in ``/`` matches everything below it."""
    return [
        r
        for r in emulator.requests
        if r.method == method and (r.path == path or path.endswith("/") and r.path.startswith(path))
    ]


# -- the hook ---------------------------------------------------------------------------------


def test_hook_offers_paypal_only_when_configured_and_enabled() -> None:
    def config_of(settings: Mapping[str, Any]) -> PluginConfig:
        def plugin_config(name: str) -> Mapping[str, Any]:
            return settings if name == "paypal" else {}

        return plugin_config

    hook = pakiet_paypal.register_payment_providers
    assert hook(plugin_config=config_of({})) == []
    assert (
        hook(plugin_config=config_of({"client_id": "x", "client_secret": "y", "enabled": False}))
        == []
    )
    [provider] = hook(plugin_config=config_of({"client_id": "x", "client_secret": "y"}))
    assert isinstance(provider, PayPalProvider)
    try:
        assert provider.name == "paypal"
        assert provider.base_url == "https://api-m.paypal.com"  # live PayPal unless told
        assert provider.currencies == {"PLN", "EUR", "USD", "CZK"}
        assert provider.label("pl") == provider.label("en") == "PayPal"
        method = SavedMethod(provider_ref="v1", brand="paypal", email="jan@example.com")
        assert provider.describe(method, "pl") == "PayPal (jan@example.com)"
    finally:
        provider.close()


# -- paying -------------------------------------------------------------------------------------


def test_approved_payment_is_captured_with_exact_amount_vault_and_payer(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    redirect = provider.start_payment(payment())
    assert redirect.url == f"{emulator.base_url}/checkoutnow?token={redirect.provider_ref}"

    back = emulator.approve(redirect.provider_ref, "jan.kowalski@example.com")
    query = parse_qs(urlsplit(back).query)
    assert back.startswith(RETURN_URL + "&")
    assert query["token"] == [redirect.provider_ref] and query["PayerID"]

    event = provider.complete_return(provider_ref=redirect.provider_ref, params={})
    [capture_id] = emulator.captures
    assert event.kind is PaymentEventKind.SUCCEEDED
    assert event.amount == Money(32841, "PLN")
    assert event.event_id == f"capture:{capture_id}"
    assert (event.payment_id, event.provider_ref, event.charge_ref) == (
        "pay_7Hq2",
        redirect.provider_ref,
        capture_id,
    )
    [vault_id] = emulator.payment_tokens
    assert event.method == SavedMethod(
        provider_ref=vault_id,
        brand="paypal",
        customer_ref=emulator.payment_tokens[vault_id]["customer"]["id"],
        email="jan.kowalski@example.com",
    )


def test_order_sent_to_paypal_uses_decimal_strings_and_the_checkout_experience(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    provider.start_payment(payment())

    [create] = sent(emulator, "POST", "/v2/checkout/orders")
    assert create.headers["paypal-request-id"] == "attempt-1"
    assert create.headers["prefer"] == "return=representation"
    assert create.body["intent"] == "CAPTURE"
    [unit] = create.body["purchase_units"]
    assert unit["amount"] == {"currency_code": "PLN", "value": "328.41"}
    assert unit["custom_id"] == "pay_7Hq2"
    assert unit["description"] == "Pakiet Pro, 5 agentów, rok"
    wallet = create.body["payment_source"]["paypal"]
    context = wallet["experience_context"]
    assert context["locale"] == "pl-PL"
    assert context["brand_name"] == "Pakiet Test"
    assert context["user_action"] == "PAY_NOW"
    assert context["shipping_preference"] == "NO_SHIPPING"
    assert (context["return_url"], context["cancel_url"]) == (RETURN_URL, CANCEL_URL)
    assert wallet["attributes"]["vault"]["store_in_vault"] == "ON_SUCCESS"
    assert wallet["attributes"]["vault"]["usage_type"] == "MERCHANT"


def test_payment_without_saving_asks_for_no_vault_and_speaks_english(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    event = pay(provider, emulator, save_method=False, language="en")

    [create] = sent(emulator, "POST", "/v2/checkout/orders")
    assert "attributes" not in create.body["payment_source"]["paypal"]
    assert create.body["payment_source"]["paypal"]["experience_context"]["locale"] == "en-US"
    assert event.kind is PaymentEventKind.SUCCEEDED and event.method is None


def test_known_customer_is_passed_to_the_vault(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    event = pay(provider, emulator, customer_ref="CUSTOMER7")

    assert event.method is not None and event.method.customer_ref == "CUSTOMER7"


@pytest.mark.parametrize(
    ("amount", "value"),
    [
        (Money(10, "EUR"), "0.10"),
        (Money(100, "USD"), "1.00"),
        (Money(123456789, "CZK"), "1234567.89"),
    ],
)
def test_amounts_travel_exactly(
    provider: PayPalProvider, emulator: PayPalEmulator, amount: Money, value: str
) -> None:
    event = pay(provider, emulator, amount=amount)

    [create] = sent(emulator, "POST", "/v2/checkout/orders")
    assert create.body["purchase_units"][0]["amount"]["value"] == value
    assert event.amount == amount


def test_currency_paypal_is_not_offered_in_is_refused(provider: PayPalProvider) -> None:
    with pytest.raises(ProviderError) as caught:
        provider.start_payment(payment(amount=Money(500, "GBP")))

    assert caught.value.code == "currency_not_supported"


def test_declined_buyer_fails_with_instrument_declined(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    redirect = provider.start_payment(payment())
    emulator.approve(redirect.provider_ref, "declined@buyer.test")

    event = provider.complete_return(provider_ref=redirect.provider_ref, params={})

    assert event.kind is PaymentEventKind.FAILED
    assert event.failure_code == "INSTRUMENT_DECLINED"
    assert event.event_id == f"return:{redirect.provider_ref}:failed"
    assert event.provider_ref == redirect.provider_ref
    assert emulator.captures == {}


def test_return_without_approval_fails_order_not_approved(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    redirect = provider.start_payment(payment())
    back = emulator.cancel(redirect.provider_ref)
    assert back == f"{CANCEL_URL}?token={redirect.provider_ref}"

    event = provider.complete_return(provider_ref=redirect.provider_ref, params={})

    assert event.kind is PaymentEventKind.FAILED
    assert event.failure_code == "ORDER_NOT_APPROVED"


def test_unknown_order_fails(provider: PayPalProvider) -> None:
    event = provider.complete_return(provider_ref="5O190127TN364715T", params={})

    assert event.kind is PaymentEventKind.FAILED
    assert event.failure_code == "INVALID_RESOURCE_ID"


def test_complete_return_twice_captures_once(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    redirect = provider.start_payment(payment())
    emulator.approve(redirect.provider_ref)

    first = provider.complete_return(provider_ref=redirect.provider_ref, params={})
    second = provider.complete_return(provider_ref=redirect.provider_ref, params={})

    assert first == second and first.kind is PaymentEventKind.SUCCEEDED
    assert len(emulator.captures) == 1
    request_ids = {r.headers["paypal-request-id"] for r in sent(emulator, "POST", "/v2/checkout/")}
    assert f"pakiet-capture-{redirect.provider_ref}" in request_ids


def test_capture_after_paypal_forgot_the_request_id_reads_the_order(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    redirect = provider.start_payment(payment())
    emulator.approve(redirect.provider_ref)
    first = provider.complete_return(provider_ref=redirect.provider_ref, params={})
    emulator.forget_request_ids()

    again = provider.complete_return(provider_ref=redirect.provider_ref, params={})

    assert again == first
    assert len(emulator.captures) == 1
    assert sent(emulator, "GET", f"/v2/checkout/orders/{redirect.provider_ref}")


def test_same_paypal_request_id_makes_one_order(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    first = provider.start_payment(payment())
    second = provider.start_payment(payment())
    other = provider.start_payment(payment(idempotency_key="attempt-2"))

    assert first == second
    assert other.provider_ref != first.provider_ref
    assert set(emulator.orders) == {first.provider_ref, other.provider_ref}


# -- charging a saved method ---------------------------------------------------------------------


def test_saved_paypal_is_charged_in_one_step(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    first = pay(provider, emulator)
    assert first.method is not None
    renewal = payment(payment_id="pay_renew", idempotency_key="renew-1", amount=Money(65682, "PLN"))

    event = provider.charge_saved(renewal, first.method)
    again = provider.charge_saved(renewal, first.method)

    assert event.kind is PaymentEventKind.SUCCEEDED
    assert event.amount == Money(65682, "PLN")
    assert event.payment_id == "pay_renew"
    assert event.charge_ref in emulator.captures and event.charge_ref != first.charge_ref
    assert event.event_id == f"capture:{event.charge_ref}"
    assert event.method == first.method
    assert again == event and len(emulator.captures) == 2
    charge = sent(emulator, "POST", "/v2/checkout/orders")[-1]
    assert charge.headers["paypal-request-id"] == "renew-1"
    assert charge.body["payment_source"] == {"paypal": {"vault_id": first.method.provider_ref}}


def test_declined_saved_paypal_fails(provider: PayPalProvider, emulator: PayPalEmulator) -> None:
    redirect = provider.start_setup(
        customer_email="a@firma.pl",
        customer_ref=None,
        return_url=RETURN_URL,
        cancel_url=CANCEL_URL,
        language="pl",
        idempotency_key="setup-1",
    )
    emulator.approve_setup(redirect.provider_ref, "declined@buyer.test")
    method = provider.complete_setup(provider_ref=redirect.provider_ref, params={})

    event = provider.charge_saved(payment(idempotency_key="renew-9"), method)

    assert event.kind is PaymentEventKind.FAILED
    assert event.failure_code == "INSTRUMENT_DECLINED"
    assert (event.event_id, event.payment_id) == ("charge:renew-9:failed", "pay_7Hq2")
    assert emulator.captures == {}


def test_charging_a_vault_id_paypal_does_not_know_fails(provider: PayPalProvider) -> None:
    gone = SavedMethod(provider_ref="nosuch1", brand="paypal")

    event = provider.charge_saved(payment(), gone)

    assert event.kind is PaymentEventKind.FAILED
    assert event.failure_code == "INVALID_RESOURCE_ID"


# -- refunds -----------------------------------------------------------------------------------


def test_partial_refunds_report_the_refunded_total(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    paid = pay(provider, emulator)
    assert paid.charge_ref is not None

    first = provider.refund(
        charge_ref=paid.charge_ref, amount=Money(10000, "PLN"), idempotency_key="r1"
    )
    rest = provider.refund(
        charge_ref=paid.charge_ref, amount=Money(22841, "PLN"), idempotency_key="r2"
    )

    assert first.kind is rest.kind is PaymentEventKind.REFUNDED
    assert first.amount == Money(10000, "PLN")
    assert rest.amount == Money(32841, "PLN")
    assert first.charge_ref == rest.charge_ref == paid.charge_ref
    assert first.event_id.startswith("refund:") and first.event_id != rest.event_id
    assert emulator.captures[paid.charge_ref]["status"] == "REFUNDED"
    with pytest.raises(ProviderError) as caught:
        provider.refund(charge_ref=paid.charge_ref, amount=Money(1, "PLN"), idempotency_key="r3")
    assert caught.value.code == "CAPTURE_FULLY_REFUNDED" and not caught.value.retryable


def test_full_refund_replayed_refunds_once(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    paid = pay(provider, emulator)
    assert paid.charge_ref is not None and paid.amount is not None

    event = provider.refund(charge_ref=paid.charge_ref, amount=paid.amount, idempotency_key="r1")
    again = provider.refund(charge_ref=paid.charge_ref, amount=paid.amount, idempotency_key="r1")

    assert event == again
    assert event.amount == Money(32841, "PLN")
    assert len(emulator.refunds) == 1
    [refund] = sent(emulator, "POST", f"/v2/payments/captures/{paid.charge_ref}/refund")[:1]
    assert refund.body == {"amount": {"currency_code": "PLN", "value": "328.41"}}
    assert refund.headers["paypal-request-id"] == "r1"


def test_refund_above_the_capture_is_refused(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    paid = pay(provider, emulator)
    assert paid.charge_ref is not None

    with pytest.raises(ProviderError) as caught:
        provider.refund(charge_ref=paid.charge_ref, amount=Money(32842, "PLN"), idempotency_key="r")

    assert caught.value.code == "REFUND_AMOUNT_EXCEEDED"
    assert "REFUND_AMOUNT_EXCEEDED" in str(caught.value)


# -- saving PayPal without paying ----------------------------------------------------------


def test_setup_saves_paypal_for_later_charges(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    redirect = provider.start_setup(
        customer_email="a@firma.pl",
        customer_ref="CUSTOMER7",
        return_url=RETURN_URL,
        cancel_url=CANCEL_URL,
        language="en",
        idempotency_key="setup-1",
    )
    assert redirect.url == (
        f"{emulator.base_url}/agreements/approve?approval_session_id={redirect.provider_ref}"
    )
    back = emulator.approve_setup(redirect.provider_ref, "anna@example.com")
    assert parse_qs(urlsplit(back).query)["approval_token_id"] == [redirect.provider_ref]

    method = provider.complete_setup(provider_ref=redirect.provider_ref, params={})
    again = provider.complete_setup(provider_ref=redirect.provider_ref, params={})

    assert method == again
    assert method == SavedMethod(
        provider_ref=method.provider_ref,
        brand="paypal",
        customer_ref="CUSTOMER7",
        email="anna@example.com",
    )
    assert list(emulator.payment_tokens) == [method.provider_ref]
    charged = provider.charge_saved(payment(idempotency_key="first-renewal"), method)
    assert charged.kind is PaymentEventKind.SUCCEEDED


def test_setup_not_approved_cannot_be_completed(provider: PayPalProvider) -> None:
    redirect = provider.start_setup(
        customer_email="a@firma.pl",
        customer_ref=None,
        return_url=RETURN_URL,
        cancel_url=CANCEL_URL,
        language="pl",
        idempotency_key="setup-1",
    )

    with pytest.raises(ProviderError) as caught:
        provider.complete_setup(provider_ref=redirect.provider_ref, params={})

    assert caught.value.code == "SETUP_TOKEN_NOT_APPROVED" and not caught.value.retryable


# -- webhooks ----------------------------------------------------------------------------------


class Receiver:
    """A webhook endpoint: records what arrives and answers the statuses it is given."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.received: list[tuple[float, bytes, dict[str, str]]] = []
        self.statuses = statuses or []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((time.monotonic(), body, dict(self.headers.items())))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/paypal"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def make_receiver() -> Iterator[Callable[..., Receiver]]:
    receivers: list[Receiver] = []

    def make(statuses: list[int] | None = None) -> Receiver:
        receivers.append(Receiver(statuses))
        return receivers[-1]

    yield make
    for receiver in receivers:
        receiver.close()


def test_delivered_capture_webhook_is_verified_and_parsed(
    make_emulator: Callable[..., PayPalEmulator],
    make_provider: Callable[..., PayPalProvider],
    make_receiver: Callable[..., Receiver],
) -> None:
    receiver = make_receiver()
    emulator = make_emulator(webhook_url=receiver.url, webhook_delay=0.2, webhook_duplicates=True)
    provider = make_provider(on=emulator)
    before = time.monotonic()

    paid = pay(provider, emulator)

    # approval, capture and vault token: each delivered twice
    deliveries = emulator.wait_for_deliveries(6)
    captured = [d for d in deliveries if d.event_type == "PAYMENT.CAPTURE.COMPLETED"]
    assert len(captured) == 2 and all(d.status == 200 for d in deliveries)
    assert captured[0].event_id == captured[1].event_id
    assert captured[0].transmission_id != captured[1].transmission_id
    assert min(arrived for arrived, _, _ in receiver.received) >= before + 0.2
    events = {
        provider.parse_webhook(body=body, headers=headers)
        for _, body, headers in receiver.received
        if json.loads(body)["event_type"] == "PAYMENT.CAPTURE.COMPLETED"
    }
    [event] = events
    assert event is not None
    assert event.event_id == captured[0].event_id and event.event_id.startswith("WH-")
    assert event.kind is PaymentEventKind.SUCCEEDED
    assert (event.payment_id, event.provider_ref, event.charge_ref, event.amount) == (
        "pay_7Hq2",
        paid.provider_ref,
        paid.charge_ref,
        Money(32841, "PLN"),
    )


def test_webhooks_are_redelivered_until_accepted(
    make_emulator: Callable[..., PayPalEmulator],
    make_provider: Callable[..., PayPalProvider],
    make_receiver: Callable[..., Receiver],
) -> None:
    receiver = make_receiver(statuses=[503])
    emulator = make_emulator(webhook_url=receiver.url)
    provider = make_provider(on=emulator)
    redirect = provider.start_payment(payment())

    emulator.approve(redirect.provider_ref)
    first, second = emulator.wait_for_deliveries(2)

    assert (first.status, second.status) == (503, 200)
    assert first.event_type == second.event_type == "CHECKOUT.ORDER.APPROVED"
    assert first.event_id == second.event_id and (first.attempt, second.attempt) == (1, 2)
    body, headers = receiver.received[-1][1:]
    event = provider.parse_webhook(body=body, headers=headers)
    assert event is not None and event.kind is PaymentEventKind.SUCCEEDED


def test_approval_webhook_captures_once_with_the_return(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    redirect = provider.start_payment(payment())
    emulator.approve(redirect.provider_ref)
    [approved] = [e for e in emulator.events if e["event_type"] == "CHECKOUT.ORDER.APPROVED"]
    body, headers = emulator.signed_notification("CHECKOUT.ORDER.APPROVED", approved["resource"])

    from_webhook = provider.parse_webhook(body=body, headers=headers)
    from_return = provider.complete_return(provider_ref=redirect.provider_ref, params={})

    assert from_webhook == from_return
    assert from_webhook is not None and from_webhook.kind is PaymentEventKind.SUCCEEDED
    assert len(emulator.captures) == 1


def test_approval_webhook_for_a_declined_buyer_reports_the_failure(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    redirect = provider.start_payment(payment())
    emulator.approve(redirect.provider_ref, "declined@buyer.test")
    [approved] = emulator.events
    body, headers = emulator.signed_notification("CHECKOUT.ORDER.APPROVED", approved["resource"])

    event = provider.parse_webhook(body=body, headers=headers)

    assert event is not None and event.kind is PaymentEventKind.FAILED
    assert (event.payment_id, event.failure_code) == ("pay_7Hq2", "INSTRUMENT_DECLINED")
    from_return = provider.complete_return(provider_ref=redirect.provider_ref, params={})
    assert (from_return.event_id, from_return.kind) == (event.event_id, event.kind)


def test_denied_capture_webhook_is_a_failure(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    resource = {
        "id": "7NW873794T343360M",
        "status": "DECLINED",
        "status_details": {"reason": "DECLINED_BY_RISK_FRAUD_FILTERS"},
        "amount": {"currency_code": "PLN", "value": "328.41"},
        "custom_id": "pay_7Hq2",
        "supplementary_data": {"related_ids": {"order_id": "5O190127TN364715T"}},
    }
    body, headers = emulator.signed_notification("PAYMENT.CAPTURE.DENIED", resource)

    event = provider.parse_webhook(body=body, headers=headers)

    assert event is not None and event.kind is PaymentEventKind.FAILED
    assert event.failure_code == "DECLINED_BY_RISK_FRAUD_FILTERS"
    assert (event.payment_id, event.provider_ref) == ("pay_7Hq2", "5O190127TN364715T")
    assert event.event_id == json.loads(body)["id"]


def test_refund_webhook_reports_the_refunded_total(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    paid = pay(provider, emulator)
    assert paid.charge_ref is not None
    provider.refund(charge_ref=paid.charge_ref, amount=Money(1000, "PLN"), idempotency_key="r1")
    provider.refund(charge_ref=paid.charge_ref, amount=Money(2000, "PLN"), idempotency_key="r2")
    refunded = [e for e in emulator.events if e["event_type"] == "PAYMENT.CAPTURE.REFUNDED"]
    body, headers = emulator.signed_notification(
        "PAYMENT.CAPTURE.REFUNDED", refunded[-1]["resource"]
    )

    event = provider.parse_webhook(body=body, headers=headers)

    assert event is not None and event.kind is PaymentEventKind.REFUNDED
    assert event.amount == Money(3000, "PLN")
    assert (event.charge_ref, event.payment_id) == (paid.charge_ref, "pay_7Hq2")


@pytest.mark.parametrize("event_type", ["VAULT.PAYMENT-TOKEN.CREATED", "CUSTOMER.DISPUTE.CREATED"])
def test_other_webhook_types_are_ignored(
    provider: PayPalProvider, emulator: PayPalEmulator, event_type: str
) -> None:
    body, headers = emulator.signed_notification(event_type, {"id": "X1"})

    assert provider.parse_webhook(body=body, headers=headers) is None


def tampered(body: bytes, headers: dict[str, str], part: str) -> tuple[bytes, dict[str, str]]:
    if part == "body":
        return body.replace(b'"328.41"', b'"3284.10"'), headers
    changed = dict(headers)
    if part == "signature":
        signature = headers["PAYPAL-TRANSMISSION-SIG"]
        changed["PAYPAL-TRANSMISSION-SIG"] = ("B" if signature[0] == "A" else "A") + signature[1:]
    elif part == "time":
        changed["PAYPAL-TRANSMISSION-TIME"] = "2020-01-01T00:00:00Z"
    else:
        changed["PAYPAL-TRANSMISSION-ID"] = "0f0f0f0f-aaaa-bbbb-cccc-0123456789ab"
    return body, changed


@pytest.mark.parametrize("part", ["body", "signature", "time", "transmission id"])
def test_tampered_webhook_is_rejected(
    provider: PayPalProvider, emulator: PayPalEmulator, part: str
) -> None:
    capture = {
        "id": "C1",
        "status": "COMPLETED",
        "amount": {"currency_code": "PLN", "value": "328.41"},
    }
    body, headers = tampered(
        *emulator.signed_notification("PAYMENT.CAPTURE.COMPLETED", capture), part
    )

    with pytest.raises(WebhookRejected, match="FAILURE"):
        provider.parse_webhook(body=body, headers=headers)


@pytest.mark.parametrize(
    "header",
    [
        "PAYPAL-TRANSMISSION-ID",
        "PAYPAL-TRANSMISSION-TIME",
        "PAYPAL-TRANSMISSION-SIG",
        "PAYPAL-CERT-URL",
        "PAYPAL-AUTH-ALGO",
    ],
)
def test_webhook_without_a_transmission_header_is_rejected_unasked(
    provider: PayPalProvider, emulator: PayPalEmulator, header: str
) -> None:
    body, headers = emulator.signed_notification("PAYMENT.CAPTURE.COMPLETED", {"id": "C1"})
    del headers[header]

    with pytest.raises(WebhookRejected, match=header.lower()):
        provider.parse_webhook(body=body, headers=headers)
    assert not sent(emulator, "POST", "/v1/notifications/")


def test_webhook_for_another_webhook_id_is_rejected(
    make_provider: Callable[..., PayPalProvider], emulator: PayPalEmulator
) -> None:
    provider = make_provider(webhook_id="WH-SOMEONE-ELSE")
    body, headers = emulator.signed_notification("PAYMENT.CAPTURE.COMPLETED", {"id": "C1"})

    with pytest.raises(WebhookRejected):
        provider.parse_webhook(body=body, headers=headers)
    [verify] = sent(emulator, "POST", "/v1/notifications/verify-webhook-signature")
    assert verify.body["webhook_id"] == "WH-SOMEONE-ELSE"


def test_webhook_is_rejected_without_a_configured_webhook_id(
    make_provider: Callable[..., PayPalProvider], emulator: PayPalEmulator
) -> None:
    provider = make_provider(webhook_id=None)
    body, headers = emulator.signed_notification("PAYMENT.CAPTURE.COMPLETED", {"id": "C1"})

    with pytest.raises(WebhookRejected, match="webhook_id"):
        provider.parse_webhook(body=body, headers=headers)


def test_webhook_that_is_not_json_is_rejected(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    _, headers = emulator.signed_notification("PAYMENT.CAPTURE.COMPLETED", {"id": "C1"})

    with pytest.raises(WebhookRejected, match="JSON"):
        provider.parse_webhook(body=b"<html>", headers=headers)


def test_webhook_verification_outage_is_retryable(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    body, headers = emulator.signed_notification("VAULT.PAYMENT-TOKEN.CREATED", {"id": "X1"})
    emulator.fail_next(503, path="/v1/notifications")

    with pytest.raises(ProviderError) as caught:
        provider.parse_webhook(body=body, headers=headers)

    assert caught.value.retryable  # answer 5xx so that PayPal delivers it again
    assert provider.parse_webhook(body=body, headers=headers) is None


def test_verified_webhook_with_an_impossible_amount_is_refused(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    capture = {
        "id": "C1",
        "status": "COMPLETED",
        "amount": {"currency_code": "PLN", "value": "1.234"},
    }
    body, headers = emulator.signed_notification("PAYMENT.CAPTURE.COMPLETED", capture)

    with pytest.raises(ProviderError) as caught:
        provider.parse_webhook(body=body, headers=headers)

    assert caught.value.code == "bad_amount"


# -- failures on the way ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        (500, "HTTP 500 INTERNAL_SERVER_ERROR"),
        (503, "HTTP 503"),
        ("timeout", "did not answer 'create order' within 1 s"),
        ("close", "could not be reached for 'create order'"),
        ("garbage", "malformed JSON"),
    ],
)
def test_faults_are_retryable_and_a_retry_succeeds(
    make_provider: Callable[..., PayPalProvider],
    emulator: PayPalEmulator,
    fault: int | str,
    words: str,
) -> None:
    provider = make_provider(timeout=1)
    emulator.fail_next(fault, path="/v2/checkout/orders")  # type: ignore[arg-type]

    with pytest.raises(ProviderError) as caught:
        provider.start_payment(payment())

    assert caught.value.retryable
    assert words in str(caught.value)
    redirect = provider.start_payment(payment())
    assert list(emulator.orders) == [redirect.provider_ref]


def test_lost_answer_then_retry_makes_one_order(
    make_provider: Callable[..., PayPalProvider], emulator: PayPalEmulator
) -> None:
    provider = make_provider(timeout=1)
    emulator.fail_next("timeout", path="/v2/checkout/orders", processed=True)

    with pytest.raises(ProviderError):
        provider.start_payment(payment())
    redirect = provider.start_payment(payment())

    assert list(emulator.orders) == [redirect.provider_ref]


def test_capture_fault_then_retry_captures_once(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    redirect = provider.start_payment(payment())
    emulator.approve(redirect.provider_ref)
    emulator.fail_next("close", path="/v2/checkout/orders", processed=True)

    with pytest.raises(ProviderError) as caught:
        provider.complete_return(provider_ref=redirect.provider_ref, params={})
    event = provider.complete_return(provider_ref=redirect.provider_ref, params={})

    assert caught.value.retryable
    assert event.kind is PaymentEventKind.SUCCEEDED and len(emulator.captures) == 1


def test_wrong_credentials_are_not_retryable(
    make_provider: Callable[..., PayPalProvider],
) -> None:
    provider = make_provider(client_secret="not-the-secret")

    with pytest.raises(ProviderError) as caught:
        provider.start_payment(payment())

    assert caught.value.code == "invalid_client" and not caught.value.retryable
    assert "Client Authentication failed" in str(caught.value)


def test_token_endpoint_outage_is_retryable(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    emulator.fail_next(500, path="/v1/oauth2/token")

    with pytest.raises(ProviderError) as caught:
        provider.start_payment(payment())

    assert caught.value.retryable
    assert provider.start_payment(payment()).provider_ref in emulator.orders


def test_emulator_refuses_to_approve_what_cannot_be_approved(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    redirect = provider.start_payment(payment())
    emulator.approve(redirect.provider_ref)

    with pytest.raises(ValueError, match="ORDER_NOT_APPROVABLE"):
        emulator.approve(redirect.provider_ref)
    with pytest.raises(ValueError, match="INVALID_RESOURCE_ID"):
        emulator.approve("NOSUCHORDER")


def test_emulator_refuses_a_bad_access_token(emulator: PayPalEmulator) -> None:
    status, _, body = request(
        emulator, "GET", "/v2/checkout/orders/X", {"Authorization": "Bearer nope"}
    )

    assert status == 401
    assert json.loads(body)["name"] == "AUTHENTICATION_FAILURE"


def test_emulator_error_shape_for_a_declined_capture(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    redirect = provider.start_payment(payment())
    emulator.approve(redirect.provider_ref, "declined@buyer.test")
    _, _, token = request(
        emulator,
        "POST",
        "/v1/oauth2/token",
        {
            "Authorization": "Basic dGVzdC1jbGllbnQ6dGVzdC1zZWNyZXQ=",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        b"grant_type=client_credentials",
    )
    access = json.loads(token)["access_token"]

    status, _, body = request(
        emulator,
        "POST",
        f"/v2/checkout/orders/{redirect.provider_ref}/capture",
        {"Authorization": f"Bearer {access}", "Content-Type": "application/json"},
    )

    error = json.loads(body)
    assert status == 422
    assert error["name"] == "UNPROCESSABLE_ENTITY" and error["debug_id"]
    assert error["details"][0]["issue"] == "INSTRUMENT_DECLINED"
    assert {link["rel"] for link in error["links"]} == {"information_link", "redirect"}


# -- the buyer's pages -----------------------------------------------------------------------


def request(
    emulator: PayPalEmulator,
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], str]:
    url = urlsplit(emulator.base_url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=5)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        connection.close()


def submit(
    emulator: PayPalEmulator, path: str, form: Mapping[str, str]
) -> tuple[int, dict[str, str], str]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return request(emulator, "POST", path, headers, urlencode(form).encode())


class Form(HTMLParser):
    """The inputs and labels of a page."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.inputs: list[dict[str, str | None]] = []
        self.labels: list[str | None] = []
        self.buttons: list[dict[str, str | None]] = []
        self.external: list[str] = []
        self.lang: str | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "html":
            self.lang = found.get("lang")
        if tag == "input":
            self.inputs.append(found)
        if tag == "label":
            self.labels.append(found.get("for"))
        if tag == "button":
            self.buttons.append(found)
        if tag in ("script", "link", "img", "iframe") or found.get("src"):
            self.external.append(tag)


def test_approval_page_is_a_labelled_form_in_the_buyers_language(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    redirect = provider.start_payment(payment())
    path = urlsplit(redirect.url)
    status, headers, page = request(emulator, "GET", f"{path.path}?{path.query}")

    form = Form(page)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert form.lang == "pl"
    visible = [field for field in form.inputs if field.get("type") != "hidden"]
    assert {field.get("name") for field in visible} == {"email", "password"}
    assert all(field.get("id") in form.labels for field in visible)
    assert {b.get("value") for b in form.buttons} == {"approve", "cancel"}
    assert "Zapłać teraz" in page and "Anuluj" in page and "328,41 PLN" in page
    assert "Pakiet Test" in page
    assert form.external == []


def test_approval_page_pays_and_returns_the_buyer(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    redirect = provider.start_payment(payment(language="en"))
    _, _, page = request(emulator, "GET", f"/checkoutnow?token={redirect.provider_ref}")
    assert "Pay Now" in page and "Cancel" in page

    status, headers, _ = submit(
        emulator,
        "/checkoutnow",
        {
            "token": redirect.provider_ref,
            "email": "ewa@example.com",
            "password": "x",
            "action": "approve",
        },
    )

    assert status == 303
    back = parse_qs(urlsplit(headers["Location"]).query)
    assert back["token"] == [redirect.provider_ref]
    event = provider.complete_return(provider_ref=back["token"][0], params={})
    assert event.kind is PaymentEventKind.SUCCEEDED
    assert event.method is not None and event.method.email == "ewa@example.com"
    _, _, done = request(emulator, "GET", f"/checkoutnow?token={redirect.provider_ref}")
    assert "COMPLETED" in done


def test_approval_page_cancel_returns_to_the_cancel_url(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    redirect = provider.start_payment(payment())

    status, headers, _ = submit(
        emulator, "/checkoutnow", {"token": redirect.provider_ref, "action": "cancel"}
    )

    assert status == 303 and headers["Location"] == f"{CANCEL_URL}?token={redirect.provider_ref}"
    assert emulator.orders[redirect.provider_ref]["status"] == "PAYER_ACTION_REQUIRED"


def test_approval_page_asks_again_without_an_email(
    provider: PayPalProvider, emulator: PayPalEmulator
) -> None:
    redirect = provider.start_payment(payment())

    status, _, page = submit(
        emulator, "/checkoutnow", {"token": redirect.provider_ref, "email": "", "action": "approve"}
    )

    assert status == 400 and "role=alert" in page and "Podaj adres e-mail" in page


def test_setup_page_is_a_labelled_form(provider: PayPalProvider, emulator: PayPalEmulator) -> None:
    redirect = provider.start_setup(
        customer_email="a@firma.pl",
        customer_ref=None,
        return_url=RETURN_URL,
        cancel_url=CANCEL_URL,
        language="pl",
        idempotency_key="setup-1",
    )
    path = urlsplit(redirect.url)
    _, _, page = request(emulator, "GET", f"{path.path}?{path.query}")
    form = Form(page)
    assert all(f.get("id") in form.labels for f in form.inputs if f.get("type") != "hidden")
    assert "Zgadzam się i kontynuuję" in page

    status, headers, _ = submit(
        emulator,
        "/agreements/approve",
        {
            "approval_session_id": redirect.provider_ref,
            "email": "ola@example.com",
            "action": "approve",
        },
    )

    assert status == 303
    assert parse_qs(urlsplit(headers["Location"]).query)["approval_token_id"] == [
        redirect.provider_ref
    ]
    method = provider.complete_setup(provider_ref=redirect.provider_ref, params={})
    assert method.email == "ola@example.com"


def test_emulator_command_line_serves_paypal() -> None:
    seen: list[int] = []

    def check(emulator: PayPalEmulator) -> None:
        status, _, _ = request(emulator, "GET", "/v2/checkout/orders/X")
        seen.append(status)

    main(["--port", "0", "--quiet", "--webhook-id", "WH-CLI"], serve=check)

    assert seen == [401]
