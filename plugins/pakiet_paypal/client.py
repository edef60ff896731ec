"""PayPal as a :class:`~portal.plugin_api.contracts.PaymentProvider`, through PayPal's official
``paypal-server-sdk`` (Orders v2, Payments v2, Vault v3).

Requests are built from the SDK's models and sent by its controllers, which also fetch
and cache the OAuth client-credentials token. Answers are read from the JSON PayPal
sent, with PayPal's own field names: webhooks carry the same resources as raw JSON, so
one set of parsers serves both. Amounts travel as decimal strings and are read back
through :class:`~decimal.Decimal` into :class:`~portal.rules.money.Money`, never through float.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import requests
from apimatic_core.authentication.multiple.single_auth import Single
from apimatic_core.exceptions.auth_validation_exception import AuthValidationException
from apimatic_core.request_builder import RequestBuilder
from apimatic_core.response_handler import ResponseHandler
from apimatic_core.types.parameter import Parameter
from paypalserversdk.api_helper import APIHelper
from paypalserversdk.configuration import Configuration, Server
from paypalserversdk.controllers.base_controller import BaseController
from paypalserversdk.exceptions.api_exception import ApiException
from paypalserversdk.exceptions.error_exception import ErrorException
from paypalserversdk.http.auth.o_auth_2 import ClientCredentialsAuthCredentials
from paypalserversdk.http.http_method_enum import HttpMethodEnum
from paypalserversdk.models.amount_with_breakdown import AmountWithBreakdown
from paypalserversdk.models.checkout_payment_intent import CheckoutPaymentIntent
from paypalserversdk.models.money import Money as SdkMoney
from paypalserversdk.models.order_request import OrderRequest
from paypalserversdk.models.payment_source import PaymentSource
from paypalserversdk.models.payment_token_request import PaymentTokenRequest
from paypalserversdk.models.payment_token_request_payment_source import (
    PaymentTokenRequestPaymentSource,
)
from paypalserversdk.models.paypal_experience_user_action import PaypalExperienceUserAction
from paypalserversdk.models.paypal_payment_token_usage_type import PaypalPaymentTokenUsageType
from paypalserversdk.models.paypal_wallet import PaypalWallet
from paypalserversdk.models.paypal_wallet_attributes import PaypalWalletAttributes
from paypalserversdk.models.paypal_wallet_context_shipping_preference import (
    PaypalWalletContextShippingPreference,
)
from paypalserversdk.models.paypal_wallet_customer_request import PaypalWalletCustomerRequest
from paypalserversdk.models.paypal_wallet_experience_context import (
    PaypalWalletExperienceContext,
)
from paypalserversdk.models.paypal_wallet_vault_instruction import PaypalWalletVaultInstruction
from paypalserversdk.models.purchase_unit_request import PurchaseUnitRequest
from paypalserversdk.models.refund_request import RefundRequest
from paypalserversdk.models.setup_token_request import SetupTokenRequest
from paypalserversdk.models.setup_token_request_payment_source import (
    SetupTokenRequestPaymentSource,
)
from paypalserversdk.models.store_in_vault_instruction import StoreInVaultInstruction
from paypalserversdk.models.usage_pattern import UsagePattern
from paypalserversdk.models.vault_customer import VaultCustomer
from paypalserversdk.models.vault_experience_context import VaultExperienceContext
from paypalserversdk.models.vault_paypal_wallet_request import VaultPaypalWalletRequest
from paypalserversdk.models.vault_token_request import VaultTokenRequest
from paypalserversdk.models.vault_token_request_type import VaultTokenRequestType
from paypalserversdk.paypal_serversdk_client import PaypalServersdkClient

from portal.plugin_api.contracts import (
    PaymentEvent,
    PaymentEventKind,
    PaymentProvider,
    PaymentRequest,
    ProviderError,
    Redirect,
    SavedMethod,
    WebhookRejected,
)
from portal.rules.money import Money

LIVE_BASE_URL = "https://api-m.paypal.com"
SANDBOX_BASE_URL = "https://api-m.sandbox.paypal.com"
# Where PayPal's approval links (rel "payer-action" and "approve") lead, per API base.
APPROVAL_ORIGINS = {
    LIVE_BASE_URL: frozenset({"https://www.paypal.com"}),
    SANDBOX_BASE_URL: frozenset({"https://www.sandbox.paypal.com"}),
}


def hosted_origins(base_url: str) -> frozenset[str]:
    """The origin of PayPal's approval pages for ``base_url``; an emulator serves them
    itself."""
    if base_url in APPROVAL_ORIGINS:
        return APPROVAL_ORIGINS[base_url]
    parts = urlsplit(base_url)
    return frozenset({f"{parts.scheme}://{parts.netloc}".lower()})


#: the headers PayPal signs a webhook transmission with (compared case-insensitively)
TRANSMISSION_HEADERS = (
    "paypal-transmission-id",
    "paypal-transmission-time",
    "paypal-transmission-sig",
    "paypal-cert-url",
    "paypal-auth-algo",
)

_REPRESENTATION = "return=representation"
_TEXT_LIMIT = 127  # PayPal's limit for description, custom_id and brand_name

JSON = dict[str, Any]


class PayPalApiError(ProviderError):
    """PayPal answered with an error (``name`` and the first ``details[].issue``)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        name: str | None,
        issue: str | None,
        description: str | None,
        debug_id: str | None,
    ) -> None:
        retryable = status >= 500 or status in (408, 429)
        super().__init__(message, code=issue or name or f"http_{status}", retryable=retryable)
        self.status = status
        self.name = name
        self.issue = issue
        self.description = description
        self.debug_id = debug_id


class _BaseUrlConfiguration(Configuration):
    """The SDK's configuration with any base URL.

    The SDK only knows its two ``Environment`` values (live and sandbox) and looks the
    URL up in ``Configuration.environments``; every controller gets it from
    ``get_base_uri``, so overriding that one method points the whole client at the
    emulator, a proxy, or PayPal itself.
    """

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        self._base_url = base_url
        super().__init__(**kwargs)

    def get_base_uri(self, server: Any = Server.DEFAULT) -> str:
        return self._base_url


class _NotificationsController(BaseController):
    """``POST /v1/notifications/verify-webhook-signature``, which the SDK lacks.

    Built exactly like the SDK's own controllers, so it shares their base URL, OAuth
    token, timeout and error classes.
    """

    def verify_webhook_signature(self, body: str) -> Any:
        return (
            super()
            .new_api_call_builder.request(
                RequestBuilder()
                .server(Server.DEFAULT)
                .path("/v1/notifications/verify-webhook-signature")
                .http_method(HttpMethodEnum.POST)
                .header_param(Parameter().key("Content-Type").value("application/json"))
                .body_param(Parameter().value(body))
                .header_param(Parameter().key("accept").value("application/json"))
                .body_serializer(APIHelper.json_serialize)
                .auth(Single("Oauth2"))
            )
            .response(
                ResponseHandler()
                .deserializer(APIHelper.json_deserialize)
                .is_api_response(True)
                .local_error("default", "The error response.", ErrorException)
            )
            .execute()
        )


class PayPalProvider(PaymentProvider):
    """Pay with a PayPal account; the account is vaulted for renewals (rule R8, R10)."""

    name = "paypal"
    saves_methods = True
    renewable_brands = frozenset({"paypal"})
    currencies = frozenset({"PLN", "EUR", "USD", "CZK"})

    def __init__(self, config: Mapping[str, Any]) -> None:
        client_id = config.get("client_id")
        client_secret = config.get("client_secret")
        if not client_id or not client_secret:
            raise ValueError("the paypal plugin needs client_id and client_secret")
        self.base_url = str(config.get("base_url") or LIVE_BASE_URL).rstrip("/")
        self.hosted_origins = hosted_origins(self.base_url)
        self.webhook_id: str | None = config.get("webhook_id") or None
        self.brand_name = str(config.get("brand_name") or "Pakiet")[:_TEXT_LIMIT]
        self.timeout = float(config.get("timeout", 10))
        credentials = ClientCredentialsAuthCredentials(
            o_auth_client_id=str(client_id),
            o_auth_client_secret=str(client_secret),
            # Fetching the token ourselves lets its errors through: the SDK's default
            # provider swallows them and reports only "OAuthToken is undefined".
            o_auth_token_provider=lambda _last, auth: auth.fetch_token(),
        )
        self._sdk = PaypalServersdkClient(
            config=_BaseUrlConfiguration(
                self.base_url,
                timeout=self.timeout,
                max_retries=0,  # core retries, with the same PayPal-Request-Id
                client_credentials_auth_credentials=credentials,
            )
        )
        self._notifications = _NotificationsController(self._sdk.global_configuration)

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        self._sdk.config.http_client.session.close()

    def label(self, language: str) -> str:
        return "PayPal"

    # -- paying --------------------------------------------------------------------------

    def start_payment(self, request: PaymentRequest) -> Redirect:
        self._check_currency(request.amount)
        attributes = PaypalWalletAttributes(
            customer=(
                PaypalWalletCustomerRequest(id=request.customer_ref)
                if request.customer_ref
                else APIHelper.SKIP
            ),
            vault=(
                PaypalWalletVaultInstruction(
                    usage_type=PaypalPaymentTokenUsageType.MERCHANT,
                    store_in_vault=StoreInVaultInstruction.ON_SUCCESS,
                )
                if request.save_method
                else APIHelper.SKIP
            ),
        )
        wallet = PaypalWallet(
            experience_context=PaypalWalletExperienceContext(
                brand_name=self.brand_name,
                locale=_locale(request.language),
                shipping_preference=PaypalWalletContextShippingPreference.NO_SHIPPING,
                return_url=request.return_url,
                cancel_url=request.cancel_url,
                user_action=PaypalExperienceUserAction.PAY_NOW,
            ),
            attributes=(
                attributes if request.save_method or request.customer_ref else APIHelper.SKIP
            ),
        )
        body = OrderRequest(
            intent=CheckoutPaymentIntent.CAPTURE,
            purchase_units=[_purchase_unit(request)],
            payment_source=PaymentSource(paypal=wallet),
        )
        order = self._call(
            "create order",
            lambda: self._sdk.orders.create_order(
                {
                    "body": body,
                    "paypal_request_id": request.idempotency_key,
                    "prefer": _REPRESENTATION,
                }
            ),
        )
        return Redirect(
            url=_link(order, "payer-action", "approve", what="the order"),
            provider_ref=_required_str(order, "id", what="the order"),
        )

    def complete_return(self, *, provider_ref: str, params: Mapping[str, str]) -> PaymentEvent:
        # PayPal appends token=<order id>&PayerID=...; the order id core stored is what
        # counts, so a tampered query string cannot capture somebody else's order.
        return self._capture(provider_ref)

    def charge_saved(self, request: PaymentRequest, method: SavedMethod) -> PaymentEvent:
        self._check_currency(request.amount)
        failure_id = f"charge:{request.idempotency_key}:failed"
        body = OrderRequest(
            intent=CheckoutPaymentIntent.CAPTURE,
            purchase_units=[_purchase_unit(request)],
            payment_source=PaymentSource(paypal=PaypalWallet(vault_id=method.provider_ref)),
        )
        try:
            # With a vault_id PayPal creates and captures in one step; PayPal-Request-Id
            # is mandatory for such single-step orders.
            order = self._call(
                "charge saved method",
                lambda: self._sdk.orders.create_order(
                    {
                        "body": body,
                        "paypal_request_id": request.idempotency_key,
                        "prefer": _REPRESENTATION,
                    }
                ),
            )
        except PayPalApiError as exc:
            if exc.status in (404, 422):  # declined, or the vault token is gone
                return _failed(failure_id, exc, payment_id=request.payment_id, order_id=None)
            raise
        status = order.get("status")
        if status == "APPROVED":
            order_id = _required_str(order, "id", what="the order")
            return self._capture(order_id, payment_id=request.payment_id, expected=request)
        if status != "COMPLETED":
            return PaymentEvent(
                event_id=failure_id,
                kind=PaymentEventKind.FAILED,
                payment_id=request.payment_id,
                provider_ref=_str(order, "id"),
                failure_code=str(status),
                failure_message=f"PayPal left the order {status}",
            )
        return _order_outcome(order, failure_id=failure_id, expected=request, method=method)

    def refund(self, *, charge_ref: str, amount: Money, idempotency_key: str) -> PaymentEvent:
        self._check_currency(amount)
        body = RefundRequest(amount=SdkMoney(currency_code=amount.currency, value=_value(amount)))
        refund = self._call(
            "refund",
            lambda: self._sdk.payments.refund_captured_payment(
                {
                    "capture_id": charge_ref,
                    "body": body,
                    "paypal_request_id": idempotency_key,
                    "prefer": _REPRESENTATION,
                }
            ),
        )
        status = refund.get("status")
        if status not in ("COMPLETED", "PENDING"):
            raise ProviderError(f"PayPal refund of {charge_ref} is {status}", code=str(status))
        total = _refunded_total(refund)
        if total.currency != amount.currency:
            raise ProviderError(
                f"PayPal refunded {total} for a refund in {amount.currency}",
                code="currency_mismatch",
            )
        return PaymentEvent(
            event_id=f"refund:{_required_str(refund, 'id', what='the refund')}",
            kind=PaymentEventKind.REFUNDED,
            payment_id=_str(refund, "custom_id"),
            provider_ref=None,
            amount=total,
            charge_ref=charge_ref,
        )

    # -- webhooks ------------------------------------------------------------------------

    def parse_webhook(self, *, body: bytes, headers: Mapping[str, str]) -> PaymentEvent | None:
        lowered = {key.lower(): value for key, value in headers.items()}
        missing = [name for name in TRANSMISSION_HEADERS if not lowered.get(name)]
        if missing:
            raise WebhookRejected(f"PayPal webhook without {', '.join(missing)}")
        if not self.webhook_id:
            raise WebhookRejected("no PayPal webhook_id is configured to verify against")
        try:
            text = body.decode("utf-8")
            event = json.loads(text, parse_float=Decimal)
        except ValueError as exc:
            raise WebhookRejected("PayPal webhook body is not JSON") from exc
        if not isinstance(event, dict):
            raise WebhookRejected("PayPal webhook body is not a JSON object")
        if not isinstance(event.get("resource"), dict) or not isinstance(event.get("id"), str):
            # Not an event at all: refused before asking PayPal to verify it.
            raise WebhookRejected("PayPal webhook without id or resource")
        self._verify(text, lowered)
        return self._event(event)

    def _verify(self, event_text: str, headers: Mapping[str, str]) -> None:
        fields = {
            "auth_algo": headers["paypal-auth-algo"],
            "cert_url": headers["paypal-cert-url"],
            "transmission_id": headers["paypal-transmission-id"],
            "transmission_sig": headers["paypal-transmission-sig"],
            "transmission_time": headers["paypal-transmission-time"],
            "webhook_id": self.webhook_id,
        }
        # The event goes back byte for byte: PayPal checks the signature against a CRC
        # of the body it sent, which re-serialising could change.
        request_body = json.dumps(fields)[:-1] + f', "webhook_event": {event_text}}}'
        answer = self._call(
            "verify webhook signature",
            lambda: self._notifications.verify_webhook_signature(request_body),
        )
        status = answer.get("verification_status")
        if status != "SUCCESS":
            raise WebhookRejected(f"PayPal says the webhook signature is {status}")

    def _event(self, event: JSON) -> PaymentEvent | None:
        event_type = event.get("event_type")
        resource = event.get("resource")
        event_id = event.get("id")
        if not isinstance(resource, dict) or not isinstance(event_id, str):
            raise WebhookRejected("PayPal webhook without id or resource")
        if event_type == "CHECKOUT.ORDER.APPROVED":
            # Capture now rather than wait for the customer's return; both ask PayPal
            # with the same PayPal-Request-Id and so report the same capture.
            order_id = _required_str(resource, "id", what="the approved order")
            units = resource.get("purchase_units")
            unit = units[0] if isinstance(units, list) and units else None
            return self._capture(order_id, payment_id=_str(unit, "custom_id"))
        if event_type == "PAYMENT.CAPTURE.COMPLETED":
            return PaymentEvent(
                event_id=event_id,
                kind=PaymentEventKind.SUCCEEDED,
                payment_id=_str(resource, "custom_id"),
                provider_ref=_dig(resource, "supplementary_data", "related_ids", "order_id"),
                amount=_money(resource.get("amount"), what="the capture"),
                charge_ref=_required_str(resource, "id", what="the capture"),
            )
        if event_type == "PAYMENT.CAPTURE.DENIED":
            return PaymentEvent(
                event_id=event_id,
                kind=PaymentEventKind.FAILED,
                payment_id=_str(resource, "custom_id"),
                provider_ref=_dig(resource, "supplementary_data", "related_ids", "order_id"),
                charge_ref=_str(resource, "id"),
                failure_code=_dig(resource, "status_details", "reason") or "DENIED",
                failure_message=_str(event, "summary"),
            )
        if event_type == "PAYMENT.CAPTURE.REFUNDED":
            return PaymentEvent(
                event_id=event_id,
                kind=PaymentEventKind.REFUNDED,
                payment_id=_str(resource, "custom_id"),
                provider_ref=None,
                amount=_refunded_total(resource),
                charge_ref=_capture_of_refund(resource),
            )
        return None

    # -- saving a method without paying -----------------------------------------------

    def start_setup(
        self,
        *,
        customer_email: str,
        customer_ref: str | None,
        return_url: str,
        cancel_url: str,
        language: str,
        idempotency_key: str,
    ) -> Redirect:
        body = SetupTokenRequest(
            payment_source=SetupTokenRequestPaymentSource(
                paypal=VaultPaypalWalletRequest(
                    usage_type=PaypalPaymentTokenUsageType.MERCHANT,
                    usage_pattern=UsagePattern.SUBSCRIPTION_PREPAID,
                    customer_type="CONSUMER",
                    experience_context=VaultExperienceContext(
                        brand_name=self.brand_name,
                        locale=_locale(language),
                        return_url=return_url,
                        cancel_url=cancel_url,
                        shipping_preference=PaypalWalletContextShippingPreference.NO_SHIPPING,
                    ),
                )
            ),
            customer=VaultCustomer(id=customer_ref) if customer_ref else APIHelper.SKIP,
        )
        token = self._call(
            "create setup token",
            lambda: self._sdk.vault.create_setup_token(
                {"body": body, "paypal_request_id": idempotency_key}
            ),
        )
        return Redirect(
            url=_link(token, "approve", what="the setup token"),
            provider_ref=_required_str(token, "id", what="the setup token"),
        )

    def complete_setup(self, *, provider_ref: str, params: Mapping[str, str]) -> SavedMethod:
        body = PaymentTokenRequest(
            payment_source=PaymentTokenRequestPaymentSource(
                token=VaultTokenRequest(id=provider_ref, mtype=VaultTokenRequestType.SETUP_TOKEN)
            )
        )
        token = self._call(
            "create payment token",
            lambda: self._sdk.vault.create_payment_token(
                {"body": body, "paypal_request_id": f"pakiet-vault-{provider_ref}"}
            ),
        )
        return SavedMethod(
            provider_ref=_required_str(token, "id", what="the payment token"),
            brand="paypal",
            customer_ref=_dig(token, "customer", "id"),
            email=_dig(token, "payment_source", "paypal", "email_address"),
        )

    # -- plumbing ------------------------------------------------------------------------

    def _capture(
        self,
        order_id: str,
        *,
        payment_id: str | None = None,
        expected: PaymentRequest | None = None,
    ) -> PaymentEvent:
        """Capture an approved order, or report the capture it already has."""
        failure_id = f"return:{order_id}:failed"
        try:
            order = self._call(
                "capture order",
                lambda: self._sdk.orders.capture_order(
                    {
                        "id": order_id,
                        "paypal_request_id": f"pakiet-capture-{order_id}",
                        "prefer": _REPRESENTATION,
                    }
                ),
            )
        except PayPalApiError as exc:
            if exc.issue == "ORDER_ALREADY_CAPTURED":  # our request id has expired at PayPal
                order = self._call(
                    "get order", lambda: self._sdk.orders.get_order({"id": order_id})
                )
            elif exc.status in (404, 422):  # not approved, declined, expired, unknown
                return _failed(failure_id, exc, payment_id=payment_id, order_id=order_id)
            else:
                raise
        return _order_outcome(order, failure_id=failure_id, expected=expected)

    def _check_currency(self, amount: Money) -> None:
        if amount.currency not in self.currencies:
            raise ProviderError(
                f"PayPal is not offered in {amount.currency} here", code="currency_not_supported"
            )

    def _call(self, what: str, call: Callable[[], Any]) -> JSON:
        """Run one SDK call and return PayPal's JSON answer, or raise ProviderError."""
        try:
            response = call()
        except requests.Timeout as exc:
            raise ProviderError(
                f"PayPal did not answer '{what}' within {self.timeout:g} s",
                code="timeout",
                retryable=True,
            ) from exc
        except requests.RequestException as exc:
            raise ProviderError(
                f"PayPal could not be reached for '{what}' at {self.base_url}: {exc}",
                code="connection_error",
                retryable=True,
            ) from exc
        except ApiException as exc:
            raise _api_error(what, exc) from exc
        except AuthValidationException as exc:
            raise ProviderError(
                f"PayPal gave no access token for '{what}': {exc.message}",
                code="AUTHENTICATION_FAILURE",
            ) from exc
        return _json_object(what, response.text)


# -- reading PayPal's answers --------------------------------------------------------------


def _api_error(what: str, exc: ApiException) -> PayPalApiError:
    status = int(exc.response_code)
    text = exc.response.text or ""
    try:
        body = json.loads(text, parse_float=Decimal)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return PayPalApiError(
            f"PayPal answered '{what}' with HTTP {status} and no JSON error: {text[:80]!r}",
            status=status,
            name=None,
            issue=None,
            description=None,
            debug_id=None,
        )
    details = body.get("details")
    first = details[0] if isinstance(details, list) and details else {}
    first = first if isinstance(first, dict) else {}
    name = _str(body, "name") or _str(body, "error")  # OAuth errors use "error"
    issue = _str(first, "issue")
    description = (
        _str(first, "description") or _str(body, "message") or _str(body, "error_description")
    )
    debug_id = _str(body, "debug_id")
    message = f"PayPal refused '{what}': HTTP {status} {name or ''}".rstrip()
    if issue:
        message += f" {issue}"
    if description:
        message += f": {description}"
    if debug_id:
        message += f" (debug_id {debug_id})"
    return PayPalApiError(
        message, status=status, name=name, issue=issue, description=description, debug_id=debug_id
    )


def _json_object(what: str, text: str | None) -> JSON:
    try:
        value = json.loads(text or "", parse_float=Decimal)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ProviderError(
            f"PayPal answered '{what}' with malformed JSON: {(text or '')[:80]!r}",
            code="malformed_response",
            retryable=True,
        )
    return value


def _order_outcome(
    order: JSON,
    *,
    failure_id: str,
    expected: PaymentRequest | None = None,
    method: SavedMethod | None = None,
) -> PaymentEvent:
    order_id = _required_str(order, "id", what="the order")
    units = order.get("purchase_units")
    unit = units[0] if isinstance(units, list) and units and isinstance(units[0], dict) else {}
    payment_id = _str(unit, "custom_id") or (expected.payment_id if expected else None)
    captures = _dig(unit, "payments", "captures")
    if not isinstance(captures, list) or not captures or not isinstance(captures[-1], dict):
        return PaymentEvent(
            event_id=failure_id,
            kind=PaymentEventKind.FAILED,
            payment_id=payment_id,
            provider_ref=order_id,
            failure_code=f"ORDER_{order.get('status')}",
            failure_message="PayPal reports no capture for the order",
        )
    capture: JSON = captures[-1]
    capture_id = _required_str(capture, "id", what="the capture")
    status = capture.get("status")
    if status == "PENDING":
        raise ProviderError(
            f"PayPal holds capture {capture_id} as pending "
            f"({_dig(capture, 'status_details', 'reason')}); a webhook will settle it",
            code="CAPTURE_PENDING",
            retryable=True,
        )
    if status != "COMPLETED":
        return PaymentEvent(
            event_id=failure_id,
            kind=PaymentEventKind.FAILED,
            payment_id=payment_id,
            provider_ref=order_id,
            charge_ref=capture_id,
            failure_code=_dig(capture, "processor_response", "response_code")
            or _dig(capture, "status_details", "reason")
            or str(status),
            failure_message=f"PayPal capture {capture_id} is {status}",
        )
    amount = _money(capture.get("amount"), what="the capture")
    ordered = _money(unit.get("amount"), what="the order") if unit.get("amount") else amount
    wanted = expected.amount if expected else ordered
    if amount != wanted or ordered != wanted:
        raise ProviderError(
            f"PayPal captured {amount} for order {order_id} of {ordered}, expected {wanted}",
            code="amount_mismatch",
        )
    return PaymentEvent(
        event_id=f"capture:{capture_id}",
        kind=PaymentEventKind.SUCCEEDED,
        payment_id=payment_id,
        provider_ref=order_id,
        amount=amount,
        method=method or _vaulted_method(order),
        charge_ref=capture_id,
    )


def _vaulted_method(order: JSON) -> SavedMethod | None:
    wallet = _dig(order, "payment_source", "paypal")
    vault = _dig(wallet, "attributes", "vault")
    # APPROVED means PayPal has not finished vaulting; only a VAULTED token can be charged.
    if not isinstance(vault, dict) or vault.get("status") != "VAULTED" or not vault.get("id"):
        return None
    return SavedMethod(
        provider_ref=str(vault["id"]),
        brand="paypal",
        customer_ref=_dig(vault, "customer", "id"),
        email=_dig(wallet, "email_address") or _dig(order, "payer", "email_address"),
    )


def _failed(
    event_id: str, exc: PayPalApiError, *, payment_id: str | None, order_id: str | None
) -> PaymentEvent:
    return PaymentEvent(
        event_id=event_id,
        kind=PaymentEventKind.FAILED,
        payment_id=payment_id,
        provider_ref=order_id,
        failure_code=exc.issue or exc.name or f"http_{exc.status}",
        failure_message=exc.description,
    )


def _refunded_total(refund: JSON) -> Money:
    total = _dig(refund, "seller_payable_breakdown", "total_refunded_amount")
    # Without the breakdown, this refund's amount is all PayPal tells us.
    return _money(total or refund.get("amount"), what="the refund")


def _capture_of_refund(refund: JSON) -> str | None:
    links = refund.get("links")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("rel") == "up" and isinstance(link.get("href"), str):
            return str(link["href"]).rstrip("/").rsplit("/", 1)[-1]
    return None


def _money(value: Any, *, what: str) -> Money:
    """``{"currency_code": "PLN", "value": "328.41"}`` → ``Money(32841, "PLN")``."""
    if not isinstance(value, dict):
        raise ProviderError(f"PayPal sent no amount for {what}", code="malformed_response")
    currency, amount = value.get("currency_code"), value.get("value")
    if not isinstance(currency, str) or not isinstance(amount, str):
        raise ProviderError(
            f"PayPal sent a malformed amount for {what}: {value!r}", code="bad_amount"
        )
    try:
        return Money.of(Decimal(amount), currency)
    except (ArithmeticError, ValueError) as exc:
        raise ProviderError(
            f"PayPal sent {amount} {currency} for {what}: {exc}", code="bad_amount"
        ) from exc


def _link(resource: JSON, *rels: str, what: str) -> str:
    links = resource.get("links")
    by_rel = {
        link.get("rel"): link.get("href")
        for link in (links if isinstance(links, list) else [])
        if isinstance(link, dict)
    }
    for rel in rels:
        href = by_rel.get(rel)
        if isinstance(href, str) and href:
            return href
    raise ProviderError(f"PayPal sent no {' or '.join(rels)} link for {what}", code="no_link")


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _str(value: Any, key: str) -> str | None:
    found = _dig(value, key)
    return found if isinstance(found, str) and found else None


def _required_str(value: JSON, key: str, *, what: str) -> str:
    found = _str(value, key)
    if found is None:
        raise ProviderError(f"PayPal sent no {key} for {what}", code="malformed_response")
    return found


# -- building requests ---------------------------------------------------------------------


def _value(amount: Money) -> str:
    """The amount as PayPal's decimal string, with the currency's decimals: ``"328.41"``."""
    return format(amount.amount, "f")


def _locale(language: str) -> str:
    return "pl-PL" if language.lower().startswith("pl") else "en-US"


def _purchase_unit(request: PaymentRequest) -> Any:
    return PurchaseUnitRequest(
        amount=AmountWithBreakdown(
            currency_code=request.amount.currency, value=_value(request.amount)
        ),
        description=request.description[:_TEXT_LIMIT],
        custom_id=request.payment_id,
    )
