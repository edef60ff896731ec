"""A small PayPal for tests and the demo: the part of PayPal's REST API this plugin uses.

It speaks PayPal's paths, field names, status codes and error shapes: OAuth client
credentials, Orders v2 (create, get, capture; single-step orders from a vault id),
Payments v2 refunds, Vault v3 setup and payment tokens, ``PayPal-Request-Id`` replays,
signed webhooks and ``/v1/notifications/verify-webhook-signature``. The buyer's pages
(``/checkoutnow`` and ``/agreements/approve``) are plain HTML forms: log in with any
e-mail address and password; an address containing ``declined`` is declined at capture.

Webhook transmissions are signed with an HMAC known only to the emulator (PayPal signs
with a certificate): verification succeeds only for a transmission this emulator sent,
for its webhook id, with the event unchanged.

Tests use :class:`PayPalEmulator`; the demo runs
``python -m pakiet_paypal.emulator --port 12112 --webhook-url http://127.0.0.1:5000/webhooks/paypal``.

The server, the latency, the faults (``fail_next``) and their answers are the plugin
authors' kit, :mod:`portal.testing.emulator`; PayPal routes its requests itself and sends
its webhooks from a thread of its own.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import hashlib
import hmac
import html
import json
import re
import secrets
import signal
import string
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Self
from urllib.error import HTTPError, URLError
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit
from urllib.request import Request, urlopen

from portal.testing.emulator import Emulator, EmulatorHandler, EmulatorState, Fault, Seen

__all__ = ["Delivery", "Fault", "PayPalEmulator", "RecordedRequest", "main"]

JSON = dict[str, Any]

AUTH_ALGO = "SHA256withRSA"
DECLINED_MARKER = "declined"
MERCHANT_ID = "PAKIETMERCH01"
MERCHANT_EMAIL = "merchant@pakiet.test"
# PayPal's currencies without a minor unit; every other one takes two decimals.
_NO_DECIMALS = frozenset({"HUF", "JPY", "TWD"})
_CURRENCIES = frozenset(
    {"AUD", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD", "HUF", "ILS", "JPY"}
    | {"MXN", "MYR", "NOK", "NZD", "PHP", "PLN", "SEK", "SGD", "THB", "TWD", "USD"}
)
_AMOUNT = re.compile(r"^\d{1,10}(\.\d+)?$")
_TOKEN_TTL = 32400
_WEBHOOK_ATTEMPTS = 3
_ALNUM = string.ascii_uppercase + string.digits


def _id(length: int = 17, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _info(issue: str) -> JSON:
    return {
        "href": f"https://developer.paypal.com/api/rest/reference/orders/v2/errors/#{issue}",
        "rel": "information_link",
        "method": "GET",
    }


class _Error(Exception):
    """A PayPal error response: ``{"name", "message", "debug_id", "details", "links"}``."""

    MESSAGES = {
        400: (
            "INVALID_REQUEST",
            "Request is not well-formed, syntactically incorrect, or violates schema.",
        ),
        401: (
            "AUTHENTICATION_FAILURE",
            "Authentication failed due to invalid authentication "
            "credentials or a missing Authorization header.",
        ),
        404: ("RESOURCE_NOT_FOUND", "The specified resource does not exist."),
        429: ("RATE_LIMIT_REACHED", "Too many requests. Blocked due to rate limiting."),
        500: ("INTERNAL_SERVER_ERROR", "An internal server error has occurred."),
        422: (
            "UNPROCESSABLE_ENTITY",
            "The requested action could not be performed, "
            "semantically incorrect, or failed business validation.",
        ),
    }

    def __init__(
        self,
        status: int,
        issue: str | None = None,
        description: str | None = None,
        *,
        field: str | None = None,
        links: list[JSON] | None = None,
    ) -> None:
        super().__init__(issue or str(status))
        self.status = status
        self.issue = issue
        self.description = description
        self.field = field
        self.links = links

    def body(self) -> JSON:
        name, message = self.MESSAGES.get(
            self.status, (HTTPStatus(self.status).name, HTTPStatus(self.status).phrase)
        )
        body: JSON = {"name": name, "message": message, "debug_id": _id(13, "0123456789abcdef")}
        if self.issue:
            detail: JSON = {"issue": self.issue, "description": self.description or self.issue}
            if self.field:
                detail = {"field": self.field, "location": "body", **detail}
            body["details"] = [detail]
            body["links"] = [_info(self.issue), *(self.links or [])]
        return body


@dataclass(frozen=True)
class Delivery:
    """One attempt to deliver a webhook to ``webhook_url``."""

    event_id: str
    event_type: str
    transmission_id: str
    attempt: int
    status: int | None  # the receiver's HTTP status; None when it could not be reached
    error: str | None
    body: bytes
    headers: Mapping[str, str]


@dataclass(kw_only=True)
class RecordedRequest(Seen):
    """A request the emulator received (the approval pages included): the kit's
    :class:`~portal.testing.emulator.Seen` (``method``, ``path`` without the query,
    ``body``: parsed JSON, a form as a dict, or None) with the query and the headers."""

    query: Mapping[str, str]
    headers: Mapping[str, str]  # names in lower case


@dataclass
class _Payer:
    email: str
    payer_id: str
    given_name: str

    @classmethod
    def of(cls, email: str) -> _Payer:
        digest = hashlib.sha256(email.lower().encode()).digest()
        payer_id = base64.b32encode(digest).decode()[:13]
        given = email.split("@", 1)[0].split(".")[0].split("+")[0] or "Buyer"
        return cls(email=email, payer_id=payer_id, given_name=given.capitalize())

    @property
    def declined(self) -> bool:
        return DECLINED_MARKER in self.email.lower()

    def wallet(self) -> JSON:
        return {
            "email_address": self.email,
            "account_id": self.payer_id,
            "account_status": "VERIFIED",
            "name": {"given_name": self.given_name, "surname": "Buyer"},
            "address": {"country_code": "PL"},
        }

    def payer(self) -> JSON:
        return {
            "name": {"given_name": self.given_name, "surname": "Buyer"},
            "email_address": self.email,
            "payer_id": self.payer_id,
            "address": {"country_code": "PL"},
        }


@dataclass
class _Order:
    id: str
    status: str
    currency: str
    value: str
    description: str | None
    custom_id: str | None
    invoice_id: str | None
    return_url: str | None
    cancel_url: str | None
    locale: str
    brand_name: str
    vault_requested: bool
    customer_id: str | None
    create_time: str
    update_time: str
    payer: _Payer | None = None
    capture_id: str | None = None
    vault_id: str | None = None


@dataclass
class _Capture:
    id: str
    order_id: str
    currency: str
    value: Decimal
    custom_id: str | None
    invoice_id: str | None
    create_time: str
    update_time: str
    status: str = "COMPLETED"
    refunded: Decimal = Decimal(0)


@dataclass
class _PaymentToken:
    id: str
    customer_id: str
    payer: _Payer
    create_time: str


@dataclass
class _SetupToken:
    id: str
    customer_id: str
    return_url: str | None
    cancel_url: str | None
    locale: str
    brand_name: str
    usage_pattern: str | None
    status: str = "PAYER_ACTION_REQUIRED"
    payer: _Payer | None = None
    payment_token_id: str | None = None


@dataclass(order=True)
class _Queued:
    due: float
    seq: int
    event: JSON = field(compare=False)
    attempt: int = field(compare=False, default=1)


@dataclass
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class PayPalState(EmulatorState):
    """The kit's state (requests, faults, latency, ``stopping``). PayPal's own data (orders,
    captures, tokens, webhooks) stays on :class:`PayPalEmulator`, under its ``_lock``."""


class _Handler(EmulatorHandler[PayPalState]):
    emulator: PayPalEmulator
    # PayPal's answers as before the kit: HTTP/1.0 (one request a connection), its server
    # header, a ``Paypal-Debug-Id`` on every answer and its error body on a status fault.
    protocol_version = "HTTP/1.0"
    server_version = "PayPal-Emulator/1.0"
    garbage_page = b'{"id": "5O190127TN36'  # JSON cut short
    garbage_type = "application/json"

    def do_GET(self) -> None:
        self.emulator._handle(self, "GET")

    def do_POST(self) -> None:
        self.emulator._handle(self, "POST")

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        if self.command in ("GET", "POST"):
            self.send_header("Paypal-Debug-Id", _id(13, "0123456789abcdef"))

    def fault_body(self, status: int) -> tuple[bytes, str]:
        return json.dumps(_Error(status).body()).encode(), "application/json"

    def log_message(self, format: str, *args: Any) -> None:
        if self.emulator.verbose:
            BaseHTTPRequestHandler.log_message(self, format, *args)


class PayPalEmulator(Emulator[PayPalState]):
    """PayPal on ``127.0.0.1``: start it, point the plugin's ``base_url`` at it.

    ``webhook_url`` receives signed notifications (after ``webhook_delay`` seconds, twice
    when ``webhook_duplicates``); without it events are only recorded in :attr:`events`.
    ``start()``, ``stop()``, ``with``, ``latency`` and the faults are the kit's
    :class:`~portal.testing.emulator.Emulator`.
    """

    name, title, handler = "paypal", "PayPal", _Handler
    #: Request threads are joined on stop(), so nothing outlives it.
    join_requests = True

    def __init__(
        self,
        *,
        client_id: str = "pakiet-demo-client",
        client_secret: str = "pakiet-demo-secret",
        webhook_id: str = "WH-PAKIET-DEMO",
        webhook_url: str | None = None,
        webhook_delay: float = 0.0,
        webhook_duplicates: bool = False,
        port: int = 0,
        host: str = "127.0.0.1",
        verbose: bool = False,
    ) -> None:
        super().__init__(PayPalState(), port, host)
        self.client_id = client_id
        self.client_secret = client_secret
        self.webhook_id = webhook_id
        self.webhook_url = webhook_url
        self.webhook_delay = webhook_delay
        self.webhook_duplicates = webhook_duplicates
        self.verbose = verbose
        self._signing_key = secrets.token_bytes(32)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._base_url: str | None = None
        self._webhooks: threading.Thread | None = None
        self._tokens: dict[str, float] = {}
        self._orders: dict[str, _Order] = {}
        self._captures: dict[str, _Capture] = {}
        self._refunds: dict[str, JSON] = {}
        self._payment_tokens: dict[str, _PaymentToken] = {}
        self._setup_tokens: dict[str, _SetupToken] = {}
        self._replays: dict[tuple[str, str], _Response] = {}
        self._transmissions: dict[str, str] = {}
        self._events: list[JSON] = []
        self._deliveries: list[Delivery] = []
        self._queue: list[_Queued] = []
        self._seq = 0
        self.errors: list[str] = []  # unexpected exceptions inside the emulator

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> Self:
        super().start()
        self._base_url = super().base_url  # still known after stop(), as links are
        self._webhooks = threading.Thread(target=self._deliver_loop, name="paypal-webhooks")
        self._webhooks.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        with self._changed:
            self._changed.notify_all()
        super().stop()  # joins the request threads (join_requests)
        if self._webhooks is not None:
            self._webhooks.join()
            self._webhooks = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the PayPal emulator has not been started")
        return self._base_url

    # -- what tests drive ---------------------------------------------------------------

    def approve(self, order_id: str, email: str = "buyer@example.com") -> str:
        """Log in as ``email`` and approve the order, as the approval page does.

        :returns: the return URL PayPal sends the buyer to (``token``, ``PayerID`` added).
        """
        with self._lock, _public():
            return self._approve_order(order_id, email)

    def cancel(self, order_id: str) -> str:
        """The buyer clicks Cancel. :returns: the cancel URL with ``token`` added."""
        with self._lock, _public():
            return self._cancel_order(order_id)

    def approve_setup(self, setup_token_id: str, email: str = "buyer@example.com") -> str:
        """Approve a vault setup token. :returns: the return URL with the token ids."""
        with self._lock, _public():
            return self._approve_setup(setup_token_id, email)

    def fail_next(
        self,
        status: int | str = 500,
        count: int = 1,
        *,
        path: str | None = None,
        processed: bool = False,
    ) -> None:
        """Make the next ``count`` API requests (whose path starts with ``path``) fail.

        ``status`` is an HTTP status answered with PayPal's error body, ``"timeout"`` (hold
        the request, then drop it), ``"close"`` (close the connection unanswered) or
        ``"garbage"`` (200 with malformed JSON). With ``processed`` the request is carried
        out first, so only the answer is lost. Only API requests (``/v1/``, ``/v2/``,
        ``/v3/``) fail; the buyer's pages never do.
        """
        super().fail_next(status, count, path=path, processed=processed)

    def forget_request_ids(self) -> None:
        """Drop stored ``PayPal-Request-Id`` answers, as PayPal does after 6 hours."""
        with self._lock:
            self._replays.clear()

    def signed_notification(self, event_type: str, resource: JSON) -> tuple[bytes, dict[str, str]]:
        """A signed webhook for ``resource`` (recorded in :attr:`events`, not delivered)."""
        with self._lock:
            event = self._new_event(event_type, resource)
            return self._transmission(event)

    def wait_for_deliveries(self, count: int, timeout: float = 5.0) -> list[Delivery]:
        """Wait until ``count`` webhook delivery attempts were made; return them all."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._deliveries) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{len(self._deliveries)} of {count} PayPal webhooks delivered"
                    )
                self._changed.wait(left)
            return list(self._deliveries)

    @property
    def events(self) -> list[JSON]:
        """Every webhook event created, delivered or not, oldest first."""
        with self._lock:
            return copy.deepcopy(self._events)

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    @property
    def orders(self) -> dict[str, JSON]:
        with self._lock:
            return {key: self._order_json(order) for key, order in self._orders.items()}

    @property
    def captures(self) -> dict[str, JSON]:
        with self._lock:
            return {key: self._capture_json(capture) for key, capture in self._captures.items()}

    @property
    def refunds(self) -> dict[str, JSON]:
        with self._lock:
            return dict(self._refunds)

    @property
    def payment_tokens(self) -> dict[str, JSON]:
        with self._lock:
            return {key: self._payment_token_json(t) for key, t in self._payment_tokens.items()}

    # -- HTTP -------------------------------------------------------------------------------

    def _handle(self, handler: _Handler, method: str) -> None:
        url = urlsplit(handler.path)
        raw = handler.read_body()
        headers = {key.lower(): value for key, value in handler.headers.items()}
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        body = _parse_body(headers, raw)
        with self.state.lock:
            self.state.requests.append(
                RecordedRequest(method, url.path, body, query=query, headers=headers)
            )
            latency = self.state.latency
        if handler.pause(latency):
            return
        is_api = url.path.startswith(("/v1/", "/v2/", "/v3/"))
        plan = handler.take_fault() if is_api else None
        if plan is not None and not plan.processed:
            handler.answer_fault(plan.fault)
            return
        handler.lost_answer = plan  # a processed fault answers in place of the response
        try:
            response = self._route(method, url.path, query, headers, raw)
        except Exception as exc:  # an emulator bug must not look like a dropped connection
            self.errors.append(f"{method} {url.path}: {exc!r}")
            response = _json_response(500, _Error(500).body())
        handler.send_body(response.status, response.body, response.content_type, response.headers)

    def _route(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        raw: bytes,
    ) -> _Response:
        if method == "GET" and path == "/checkoutnow":
            return self._checkout_page(query.get("token", ""))
        if method == "POST" and path == "/checkoutnow":
            return self._checkout_form(_form(raw))
        if method == "GET" and path == "/agreements/approve":
            return self._setup_page(query.get("approval_session_id", ""))
        if method == "POST" and path == "/agreements/approve":
            return self._setup_form(_form(raw))
        if method == "POST" and path == "/v1/oauth2/token":
            return self._oauth(headers, _form(raw))
        try:
            self._authenticate(headers)
            body = _json_body(raw)
            request_id = headers.get("paypal-request-id")
            if method == "POST" and request_id:
                with self._lock:
                    stored = self._replays.get((path, request_id))
                    if stored is not None:
                        return _Response(200 if stored.status < 300 else stored.status, stored.body)
                    response = self._api(method, path, headers, body)
                    if response.status < 500:
                        self._replays[(path, request_id)] = response
                    return response
            with self._lock:
                return self._api(method, path, headers, body)
        except _Error as error:
            return _json_response(error.status, error.body())

    def _api(self, method: str, path: str, headers: Mapping[str, str], body: JSON) -> _Response:
        try:
            return self._api_call(method, path, headers, body)
        except _Error as error:
            return _json_response(error.status, error.body())

    def _api_call(
        self, method: str, path: str, headers: Mapping[str, str], body: JSON
    ) -> _Response:
        parts = path.strip("/").split("/")
        match method, parts:
            case "POST", ["v2", "checkout", "orders"]:
                return self._create_order(body, headers)
            case "GET", ["v2", "checkout", "orders", order_id]:
                return _json_response(200, self._order_json(self._order(order_id)))
            case "POST", ["v2", "checkout", "orders", order_id, "capture"]:
                return self._capture_order(order_id)
            case "GET", ["v2", "payments", "captures", capture_id]:
                return _json_response(200, self._capture_json(self._capture(capture_id)))
            case "POST", ["v2", "payments", "captures", capture_id, "refund"]:
                return self._refund(capture_id, body)
            case "GET", ["v2", "payments", "refunds", refund_id]:
                if refund_id not in self._refunds:
                    raise _Error(
                        404, "INVALID_RESOURCE_ID", "Specified resource ID does not exist."
                    )
                return _json_response(200, self._refunds[refund_id])
            case "POST", ["v3", "vault", "setup-tokens"]:
                return self._create_setup_token(body)
            case "GET", ["v3", "vault", "setup-tokens", token_id]:
                return _json_response(200, self._setup_token_json(self._setup_token(token_id)))
            case "POST", ["v3", "vault", "payment-tokens"]:
                return self._create_payment_token(body)
            case "GET", ["v3", "vault", "payment-tokens", token_id]:
                token = self._payment_tokens.get(token_id)
                if token is None:
                    raise _Error(
                        404, "INVALID_RESOURCE_ID", "Specified resource ID does not exist."
                    )
                return _json_response(200, self._payment_token_json(token))
            case "POST", ["v1", "notifications", "verify-webhook-signature"]:
                return self._verify_signature(body)
        raise _Error(404, "INVALID_RESOURCE_ID", f"No such resource: {method} {path}")

    # -- OAuth --------------------------------------------------------------------------------

    def _oauth(self, headers: Mapping[str, str], form: Mapping[str, str]) -> _Response:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        given = headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Basic {expected}".encode()):
            return _json_response(
                401,
                {"error": "invalid_client", "error_description": "Client Authentication failed"},
            )
        if form.get("grant_type") != "client_credentials":
            return _json_response(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": "Grant Type is NULL or not supported",
                },
            )
        token = "A21AA" + secrets.token_urlsafe(48)
        with self._lock:
            self._tokens[token] = time.monotonic() + _TOKEN_TTL
        return _json_response(
            200,
            {
                "scope": "https://uri.paypal.com/services/payments/payment "
                "https://uri.paypal.com/services/payments/refund "
                "https://uri.paypal.com/services/vault/payment-tokens/readwrite "
                "https://uri.paypal.com/services/applications/webhooks",
                "access_token": token,
                "token_type": "Bearer",
                "app_id": "APP-80W284485P519543T",
                "expires_in": _TOKEN_TTL,
                "nonce": f"{_now()}{secrets.token_urlsafe(16)}",
            },
        )

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        with self._lock:
            expires = self._tokens.get(token) if scheme.lower() == "bearer" else None
        if expires is None or expires < time.monotonic():
            raise _Error(401)

    # -- orders ---------------------------------------------------------------------------------

    def _create_order(self, body: JSON, headers: Mapping[str, str]) -> _Response:
        if body.get("intent") != "CAPTURE":
            raise _Error(
                400,
                "INVALID_PARAMETER_VALUE",
                "The emulator supports intent CAPTURE.",
                field="/intent",
            )
        units = body.get("purchase_units")
        if not isinstance(units, list) or len(units) != 1 or not isinstance(units[0], dict):
            raise _Error(
                400,
                "INVALID_ARRAY_MAX_ITEMS",
                "Send exactly one purchase unit.",
                field="/purchase_units",
            )
        unit: JSON = units[0]
        currency, value = _amount(
            unit.get("amount"), "/purchase_units/@reference_id=='default'/amount"
        )
        wallet = _dig(body, "payment_source", "paypal")
        context = _dig(wallet, "experience_context") or _dig(body, "application_context") or {}
        vault = _dig(wallet, "attributes", "vault")
        order = _Order(
            id=_id(),
            status="PAYER_ACTION_REQUIRED" if isinstance(wallet, dict) else "CREATED",
            currency=currency,
            value=value,
            description=_text(unit.get("description")),
            custom_id=_text(unit.get("custom_id")),
            invoice_id=_text(unit.get("invoice_id")),
            return_url=_text(context.get("return_url")),
            cancel_url=_text(context.get("cancel_url")),
            locale=_text(context.get("locale")) or "en-US",
            brand_name=_text(context.get("brand_name")) or "Merchant",
            vault_requested=isinstance(vault, dict) and vault.get("store_in_vault") == "ON_SUCCESS",
            customer_id=_text(_dig(wallet, "attributes", "customer", "id")),
            create_time=_now(),
            update_time=_now(),
        )
        vault_id = _text(_dig(wallet, "vault_id"))
        if vault_id is not None:
            return self._charge_vault(order, vault_id, headers)
        self._orders[order.id] = order
        return _json_response(201, self._order_json(order))

    def _charge_vault(self, order: _Order, vault_id: str, headers: Mapping[str, str]) -> _Response:
        if not headers.get("paypal-request-id"):
            raise _Error(
                400,
                "PAYPAL_REQUEST_ID_REQUIRED",
                "A PayPal-Request-Id is required if you are trying to process payment "
                "for an Order.",
            )
        token = self._payment_tokens.get(vault_id)
        if token is None:
            raise _Error(
                404,
                "INVALID_RESOURCE_ID",
                "Specified resource ID does not exist.",
                field="/payment_source/paypal/vault_id",
            )
        if token.payer.declined:
            raise _Error(
                422,
                "INSTRUMENT_DECLINED",
                "The instrument presented was either declined by the processor or "
                "bank, or it can't be used for this payment.",
            )
        order.payer = token.payer
        order.vault_id = token.id
        order.customer_id = token.customer_id
        self._orders[order.id] = order
        self._complete(order)
        return _json_response(201, self._order_json(order))

    def _capture_order(self, order_id: str) -> _Response:
        order = self._order(order_id)
        if order.status == "COMPLETED":
            raise _Error(
                422,
                "ORDER_ALREADY_CAPTURED",
                "Order already captured. If 'intent=CAPTURE' only one capture per "
                "order is allowed.",
            )
        if order.status != "APPROVED" or order.payer is None:
            raise _Error(
                422,
                "ORDER_NOT_APPROVED",
                "Payer has not yet approved the Order for payment. Please redirect "
                "the payer to the 'rel':'payer-action' url returned as part of the "
                "HATEOAS links within the Create Order call.",
            )
        if order.payer.declined:
            redirect = {"href": self._approval_url(order), "rel": "redirect", "method": "GET"}
            raise _Error(
                422,
                "INSTRUMENT_DECLINED",
                "The instrument presented was either declined by the processor or "
                "bank, or it can't be used for this payment.",
                links=[redirect],
            )
        if order.vault_requested:
            customer_id = order.customer_id or _id(10, string.ascii_letters + string.digits)
            token = _PaymentToken(
                _id(7, string.ascii_lowercase + string.digits), customer_id, order.payer, _now()
            )
            self._payment_tokens[token.id] = token
            order.vault_id, order.customer_id = token.id, customer_id
        self._complete(order)
        if order.vault_id and order.vault_requested:
            self._emit(
                "VAULT.PAYMENT-TOKEN.CREATED",
                self._payment_token_json(self._payment_tokens[order.vault_id]),
            )
        return _json_response(201, self._order_json(order))

    def _complete(self, order: _Order) -> None:
        capture = _Capture(
            id=_id(),
            order_id=order.id,
            currency=order.currency,
            value=Decimal(order.value),
            custom_id=order.custom_id,
            invoice_id=order.invoice_id,
            create_time=_now(),
            update_time=_now(),
        )
        self._captures[capture.id] = capture
        order.capture_id = capture.id
        order.status = "COMPLETED"
        order.update_time = _now()
        resource = self._capture_json(capture)
        resource["supplementary_data"] = {"related_ids": {"order_id": order.id}}
        self._emit("PAYMENT.CAPTURE.COMPLETED", resource)

    def _approve_order(self, order_id: str, email: str) -> str:
        order = self._order(order_id)
        if order.status not in ("PAYER_ACTION_REQUIRED", "CREATED"):
            raise _Error(422, "ORDER_NOT_APPROVABLE", f"The order is {order.status}.")
        order.payer = _Payer.of(email)
        order.status = "APPROVED"
        order.update_time = _now()
        self._emit("CHECKOUT.ORDER.APPROVED", self._order_json(order))
        return _with_query(
            order.return_url or self.base_url, token=order.id, PayerID=order.payer.payer_id
        )

    def _cancel_order(self, order_id: str) -> str:
        order = self._order(order_id)
        return _with_query(order.cancel_url or self.base_url, token=order.id)

    def _order(self, order_id: str) -> _Order:
        order = self._orders.get(order_id)
        if order is None:
            raise _Error(
                404,
                "INVALID_RESOURCE_ID",
                "Specified resource ID does not exist. Please check the resource ID and try again.",
            )
        return order

    def _approval_url(self, order: _Order) -> str:
        return f"{self.base_url}/checkoutnow?token={order.id}"

    def _order_json(self, order: _Order) -> JSON:
        api = f"{self.base_url}/v2/checkout/orders/{order.id}"
        unit: JSON = {
            "reference_id": "default",
            "amount": {"currency_code": order.currency, "value": order.value},
            "payee": {"email_address": MERCHANT_EMAIL, "merchant_id": MERCHANT_ID},
        }
        for key in ("description", "custom_id", "invoice_id"):
            if getattr(order, key):
                unit[key] = getattr(order, key)
        if order.capture_id:
            unit["payments"] = {"captures": [self._capture_json(self._captures[order.capture_id])]}
        wallet: JSON = order.payer.wallet() if order.payer else {}
        if order.vault_id:
            token = self._payment_tokens[order.vault_id]
            wallet["attributes"] = {
                "vault": {
                    "id": token.id,
                    "status": "VAULTED",
                    "customer": {"id": token.customer_id},
                    "links": [
                        {
                            "href": f"{self.base_url}/v3/vault/payment-tokens/{token.id}",
                            "rel": "self",
                            "method": "GET",
                        }
                    ],
                }
            }
        links = [{"href": api, "rel": "self", "method": "GET"}]
        if order.status == "PAYER_ACTION_REQUIRED":
            links.append(
                {"href": self._approval_url(order), "rel": "payer-action", "method": "GET"}
            )
        elif order.status == "CREATED":
            links.append({"href": self._approval_url(order), "rel": "approve", "method": "GET"})
        if order.status in ("CREATED", "APPROVED"):
            links.append({"href": f"{api}/capture", "rel": "capture", "method": "POST"})
        result: JSON = {
            "id": order.id,
            "intent": "CAPTURE",
            "status": order.status,
            "payment_source": {"paypal": wallet},
            "purchase_units": [unit],
            "create_time": order.create_time,
            "update_time": order.update_time,
            "links": links,
        }
        if order.payer:
            result["payer"] = order.payer.payer()
        return result

    # -- captures and refunds --------------------------------------------------------------

    def _capture(self, capture_id: str) -> _Capture:
        capture = self._captures.get(capture_id)
        if capture is None:
            raise _Error(404, "INVALID_RESOURCE_ID", "Specified resource ID does not exist.")
        return capture

    def _capture_json(self, capture: _Capture) -> JSON:
        api = f"{self.base_url}/v2/payments/captures/{capture.id}"
        gross = _minor(capture.value, capture.currency)
        fee = min(gross, gross * 29 // 1000 + 35)  # 2.9 % + 0.35, in minor units
        result: JSON = {
            "id": capture.id,
            "status": capture.status,
            "amount": {
                "currency_code": capture.currency,
                "value": _text_amount(capture.value, capture.currency),
            },
            "final_capture": True,
            "seller_protection": {
                "status": "ELIGIBLE",
                "dispute_categories": ["ITEM_NOT_RECEIVED", "UNAUTHORIZED_TRANSACTION"],
            },
            "seller_receivable_breakdown": {
                "gross_amount": _major(gross, capture.currency),
                "paypal_fee": _major(fee, capture.currency),
                "net_amount": _major(gross - fee, capture.currency),
            },
            "links": [
                {"href": api, "rel": "self", "method": "GET"},
                {"href": f"{api}/refund", "rel": "refund", "method": "POST"},
                {
                    "href": f"{self.base_url}/v2/checkout/orders/{capture.order_id}",
                    "rel": "up",
                    "method": "GET",
                },
            ],
            "create_time": capture.create_time,
            "update_time": capture.update_time,
        }
        if capture.custom_id:
            result["custom_id"] = capture.custom_id
        if capture.invoice_id:
            result["invoice_id"] = capture.invoice_id
        return result

    def _refund(self, capture_id: str, body: JSON) -> _Response:
        capture = self._capture(capture_id)
        if capture.status == "REFUNDED":
            raise _Error(
                422, "CAPTURE_FULLY_REFUNDED", "The capture has already been fully refunded."
            )
        remaining = capture.value - capture.refunded
        if body.get("amount") is None:
            amount = remaining
        else:
            currency, value = _amount(body.get("amount"), "/amount")
            if currency != capture.currency:
                raise _Error(
                    422,
                    "REFUND_CAPTURE_CURRENCY_MISMATCH",
                    "Refund must be in the same currency as the capture.",
                )
            amount = Decimal(value)
            if amount > remaining:
                raise _Error(
                    422,
                    "REFUND_AMOUNT_EXCEEDED",
                    "The refund amount must be less "
                    "than or equal to the capture amount that has not yet been "
                    "refunded.",
                )
        capture.refunded += amount
        capture.status = "REFUNDED" if capture.refunded == capture.value else "PARTIALLY_REFUNDED"
        capture.update_time = _now()
        refund_id = _id()
        money = {"currency_code": capture.currency, "value": _text_amount(amount, capture.currency)}
        refund: JSON = {
            "id": refund_id,
            "amount": money,
            "seller_payable_breakdown": {
                "gross_amount": money,
                "paypal_fee": {
                    "currency_code": capture.currency,
                    "value": _text_amount(Decimal(0), capture.currency),
                },
                "net_amount": money,
                "total_refunded_amount": {
                    "currency_code": capture.currency,
                    "value": _text_amount(capture.refunded, capture.currency),
                },
            },
            "status": "COMPLETED",
            "create_time": _now(),
            "update_time": _now(),
            "links": [
                {
                    "href": f"{self.base_url}/v2/payments/refunds/{refund_id}",
                    "rel": "self",
                    "method": "GET",
                },
                {
                    "href": f"{self.base_url}/v2/payments/captures/{capture.id}",
                    "rel": "up",
                    "method": "GET",
                },
            ],
        }
        for key in ("custom_id", "invoice_id"):
            if getattr(capture, key):
                refund[key] = getattr(capture, key)
        self._refunds[refund_id] = refund
        self._emit("PAYMENT.CAPTURE.REFUNDED", refund)
        return _json_response(201, refund)

    # -- vault ------------------------------------------------------------------------------

    def _create_setup_token(self, body: JSON) -> _Response:
        wallet = _dig(body, "payment_source", "paypal")
        if not isinstance(wallet, dict):
            raise _Error(
                400,
                "MISSING_REQUIRED_PARAMETER",
                "The emulator vaults PayPal wallets only.",
                field="/payment_source/paypal",
            )
        context = wallet.get("experience_context") or {}
        token = _SetupToken(
            id=_id(),
            customer_id=_text(_dig(body, "customer", "id"))
            or _id(10, string.ascii_letters + string.digits),
            return_url=_text(context.get("return_url")),
            cancel_url=_text(context.get("cancel_url")),
            locale=_text(context.get("locale")) or "en-US",
            brand_name=_text(context.get("brand_name")) or "Merchant",
            usage_pattern=_text(wallet.get("usage_pattern")),
        )
        self._setup_tokens[token.id] = token
        return _json_response(201, self._setup_token_json(token))

    def _setup_token(self, token_id: str) -> _SetupToken:
        token = self._setup_tokens.get(token_id)
        if token is None:
            raise _Error(404, "INVALID_RESOURCE_ID", "Specified resource ID does not exist.")
        return token

    def _setup_token_json(self, token: _SetupToken) -> JSON:
        wallet: JSON = {
            "usage_type": "MERCHANT",
            "customer_type": "CONSUMER",
            "permit_multiple_payment_tokens": False,
        }
        if token.usage_pattern:
            wallet["usage_pattern"] = token.usage_pattern
        if token.payer:
            wallet.update(email_address=token.payer.email, payer_id=token.payer.payer_id)
        links = [
            {
                "href": f"{self.base_url}/v3/vault/setup-tokens/{token.id}",
                "rel": "self",
                "method": "GET",
                "encType": "application/json",
            }
        ]
        if token.status == "PAYER_ACTION_REQUIRED":
            links.append(
                {
                    "href": f"{self.base_url}/agreements/approve?approval_session_id={token.id}",
                    "rel": "approve",
                    "method": "GET",
                }
            )
        else:
            links.append(
                {
                    "href": f"{self.base_url}/v3/vault/payment-tokens",
                    "rel": "confirm",
                    "method": "POST",
                    "encType": "application/json",
                }
            )
        return {
            "id": token.id,
            "customer": {"id": token.customer_id},
            "status": token.status,
            "payment_source": {"paypal": wallet},
            "links": links,
        }

    def _approve_setup(self, token_id: str, email: str) -> str:
        token = self._setup_token(token_id)
        if token.status != "PAYER_ACTION_REQUIRED":
            raise _Error(422, "SETUP_TOKEN_NOT_APPROVABLE", f"The setup token is {token.status}.")
        token.payer = _Payer.of(email)
        token.status = "APPROVED"
        return _with_query(
            token.return_url or self.base_url,
            approval_token_id=token.id,
            approval_session_id=token.id,
        )

    def _create_payment_token(self, body: JSON) -> _Response:
        source = _dig(body, "payment_source", "token")
        if not isinstance(source, dict) or source.get("type") != "SETUP_TOKEN":
            raise _Error(
                400,
                "MISSING_REQUIRED_PARAMETER",
                "Send a SETUP_TOKEN.",
                field="/payment_source/token",
            )
        setup = self._setup_token(str(source.get("id")))
        if setup.payment_token_id is not None:
            token = self._payment_tokens[setup.payment_token_id]
            return _json_response(201, self._payment_token_json(token))
        if setup.status != "APPROVED" or setup.payer is None:
            raise _Error(
                422, "SETUP_TOKEN_NOT_APPROVED", "The payer has not approved the setup token."
            )
        token = _PaymentToken(
            _id(7, string.ascii_lowercase + string.digits), setup.customer_id, setup.payer, _now()
        )
        self._payment_tokens[token.id] = token
        setup.payment_token_id = token.id
        setup.status = "VAULTED"
        resource = self._payment_token_json(token)
        self._emit("VAULT.PAYMENT-TOKEN.CREATED", resource)
        return _json_response(201, resource)

    def _payment_token_json(self, token: _PaymentToken) -> JSON:
        api = f"{self.base_url}/v3/vault/payment-tokens/{token.id}"
        return {
            "id": token.id,
            "customer": {"id": token.customer_id},
            "payment_source": {
                "paypal": {
                    "usage_type": "MERCHANT",
                    "customer_type": "CONSUMER",
                    "email_address": token.payer.email,
                    "payer_id": token.payer.payer_id,
                    "name": {"given_name": token.payer.given_name, "surname": "Buyer"},
                }
            },
            "links": [
                {"href": api, "rel": "self", "method": "GET"},
                {"href": api, "rel": "delete", "method": "DELETE"},
            ],
        }

    # -- webhooks ---------------------------------------------------------------------------

    _RESOURCE_TYPES = {
        "CHECKOUT.ORDER.APPROVED": "checkout-order",
        "PAYMENT.CAPTURE.COMPLETED": "capture",
        "PAYMENT.CAPTURE.DENIED": "capture",
        "PAYMENT.CAPTURE.REFUNDED": "refund",
        "VAULT.PAYMENT-TOKEN.CREATED": "payment_token",
    }

    def _new_event(self, event_type: str, resource: JSON) -> JSON:
        event_id = f"WH-{_id(17)}-{_id(17)}"
        event = {
            "id": event_id,
            "event_version": "1.0",
            "create_time": _now(),
            "resource_type": self._RESOURCE_TYPES.get(event_type, "resource"),
            "resource_version": "2.0",
            "event_type": event_type,
            "summary": f"{event_type} (PayPal emulator)",
            "resource": resource,
            "links": [
                {
                    "href": f"{self.base_url}/v1/notifications/webhooks-events/{event_id}",
                    "rel": "self",
                    "method": "GET",
                },
                {
                    "href": f"{self.base_url}/v1/notifications/webhooks-events/{event_id}/resend",
                    "rel": "resend",
                    "method": "POST",
                },
            ],
        }
        self._events.append(event)
        return event

    def _emit(self, event_type: str, resource: JSON) -> None:
        event = self._new_event(event_type, resource)
        if self.webhook_url is None:
            return
        due = time.monotonic() + self.webhook_delay
        self._enqueue(_Queued(due, 0, event))
        if self.webhook_duplicates:
            self._enqueue(_Queued(due + 0.05, 0, event))

    def _enqueue(self, item: _Queued) -> None:
        with self._changed:
            self._seq += 1
            item.seq = self._seq
            self._queue.append(item)
            self._queue.sort()
            self._changed.notify_all()

    def _transmission(self, event: JSON) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(event, indent=1).encode()
        transmission_id = f"{_id(8)}-{_id(4)}-{_id(4)}-{_id(4)}-{_id(12)}".lower()
        transmission_time = _now()
        signature = self._sign(transmission_id, transmission_time, self.webhook_id, event)
        self._transmissions[transmission_id] = signature
        headers = {
            "Content-Type": "application/json",
            "PAYPAL-TRANSMISSION-ID": transmission_id,
            "PAYPAL-TRANSMISSION-TIME": transmission_time,
            "PAYPAL-TRANSMISSION-SIG": signature,
            "PAYPAL-CERT-URL": self._cert_url,
            "PAYPAL-AUTH-ALGO": AUTH_ALGO,
        }
        return body, headers

    @property
    def _cert_url(self) -> str:
        return f"{self.base_url}/v1/notifications/certs/CERT-pakiet-emulator"

    def _sign(self, transmission_id: str, when: str, webhook_id: str, event: Any) -> str:
        # PayPal signs "<transmission id>|<time>|<webhook id>|<crc32 of the body>". The
        # CRC here is of a canonical form, so a verifier may re-serialise the event.
        canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        crc = zlib.crc32(canonical.encode())
        message = f"{transmission_id}|{when}|{webhook_id}|{crc}".encode()
        digest = hmac.new(self._signing_key, message, hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    def _verify_signature(self, body: JSON) -> _Response:
        names = (
            "auth_algo",
            "cert_url",
            "transmission_id",
            "transmission_sig",
            "transmission_time",
            "webhook_id",
            "webhook_event",
        )
        missing = [name for name in names if not body.get(name)]
        if missing:
            return _json_response(
                400,
                {
                    "name": "VALIDATION_ERROR",
                    "message": "Invalid request - see details",
                    "debug_id": _id(13, "0123456789abcdef"),
                    "details": [
                        {
                            "field": name,
                            "location": "body",
                            "issue": "Required field cannot be blank",
                        }
                        for name in missing
                    ],
                },
            )
        sent = self._transmissions.get(str(body["transmission_id"]))
        expected = self._sign(
            str(body["transmission_id"]),
            str(body["transmission_time"]),
            str(body["webhook_id"]),
            body["webhook_event"],
        )
        genuine = (
            sent is not None
            and body["webhook_id"] == self.webhook_id
            and body["auth_algo"] == AUTH_ALGO
            and body["cert_url"] == self._cert_url
            and hmac.compare_digest(sent, str(body["transmission_sig"]))
            and hmac.compare_digest(expected, str(body["transmission_sig"]))
        )
        return _json_response(200, {"verification_status": "SUCCESS" if genuine else "FAILURE"})

    def _deliver_loop(self) -> None:
        while True:
            with self._changed:
                while not self.stopping.is_set() and (
                    not self._queue or self._queue[0].due > time.monotonic()
                ):
                    wait = self._queue[0].due - time.monotonic() if self._queue else None
                    self._changed.wait(wait)
                if self.stopping.is_set():
                    return
                item = self._queue.pop(0)
                body, headers = self._transmission(item.event)
            delivery = self._post(item, body, headers)
            with self._changed:
                self._deliveries.append(delivery)
                self._changed.notify_all()
            ok = delivery.status is not None and 200 <= delivery.status < 300
            if not ok and item.attempt < _WEBHOOK_ATTEMPTS:
                retry_in = 0.5 * 2 ** (item.attempt - 1)
                self._enqueue(_Queued(time.monotonic() + retry_in, 0, item.event, item.attempt + 1))

    def _post(self, item: _Queued, body: bytes, headers: dict[str, str]) -> Delivery:
        assert self.webhook_url is not None
        status: int | None = None
        error: str | None = None
        request = Request(self.webhook_url, data=body, headers=headers, method="POST")
        try:
            with urlopen(request, timeout=10) as response:
                status = response.status
        except HTTPError as exc:
            status, error = exc.code, exc.reason
            exc.close()
        except (URLError, OSError) as exc:
            error = str(exc)
        if self.verbose:
            print(f"webhook {item.event['event_type']} -> {status or error}", flush=True)
        return Delivery(
            event_id=item.event["id"],
            event_type=item.event["event_type"],
            transmission_id=headers["PAYPAL-TRANSMISSION-ID"],
            attempt=item.attempt,
            status=status,
            error=error,
            body=body,
            headers=headers,
        )

    # -- the buyer's pages ------------------------------------------------------------------

    def _checkout_page(self, order_id: str, error: str | None = None) -> _Response:
        with self._lock:
            order = self._orders.get(order_id)
            if order is None:
                return _page(404, "en", "PayPal", "<p>This order does not exist.</p>")
            text = _TEXTS["pl" if order.locale.lower().startswith("pl") else "en"]
            if order.status not in ("PAYER_ACTION_REQUIRED", "CREATED"):
                return _page(
                    409,
                    text["lang"],
                    text["title"],
                    f"<p>{html.escape(text['done'].format(status=order.status))}</p>",
                )
            amount = f"{order.value} {order.currency}"
            if text["lang"] == "pl":
                amount = amount.replace(".", ",")
            summary = (
                f"<p>{html.escape(text['pay_to'].format(brand=order.brand_name))}</p>"
                f"<p class=amount><strong>{html.escape(amount)}</strong></p>"
                + (f"<p>{html.escape(order.description)}</p>" if order.description else "")
            )
            form = _login_form("/checkoutnow", "token", order.id, text, text["pay"], error)
            return _page(200 if error is None else 400, text["lang"], text["title"], summary + form)

    def _checkout_form(self, form: Mapping[str, str]) -> _Response:
        order_id = form.get("token", "")
        try:
            with self._lock:
                if form.get("action") == "cancel":
                    return _redirect(self._cancel_order(order_id))
                email = form.get("email", "").strip()
                if "@" not in email:
                    return self._checkout_page(order_id, error="email")
                return _redirect(self._approve_order(order_id, email))
        except _Error:
            return self._checkout_page(order_id)

    def _setup_page(self, token_id: str, error: str | None = None) -> _Response:
        with self._lock:
            token = self._setup_tokens.get(token_id)
            if token is None:
                return _page(404, "en", "PayPal", "<p>This agreement does not exist.</p>")
            text = _TEXTS["pl" if token.locale.lower().startswith("pl") else "en"]
            if token.status != "PAYER_ACTION_REQUIRED":
                return _page(
                    409,
                    text["lang"],
                    text["title"],
                    f"<p>{html.escape(text['done'].format(status=token.status))}</p>",
                )
            summary = f"<p>{html.escape(text['save_for'].format(brand=token.brand_name))}</p>"
            form = _login_form(
                "/agreements/approve", "approval_session_id", token.id, text, text["agree"], error
            )
            return _page(200 if error is None else 400, text["lang"], text["title"], summary + form)

    def _setup_form(self, form: Mapping[str, str]) -> _Response:
        token_id = form.get("approval_session_id", "")
        try:
            with self._lock:
                token = self._setup_token(token_id)
                if form.get("action") == "cancel":
                    return _redirect(
                        _with_query(token.cancel_url or self.base_url, approval_token_id=token.id)
                    )
                email = form.get("email", "").strip()
                if "@" not in email:
                    return self._setup_page(token_id, error="email")
                return _redirect(self._approve_setup(token_id, email))
        except _Error:
            return self._setup_page(token_id)


_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "lang": "en",
        "title": "Pay with PayPal",
        "pay_to": "Log in to pay {brand}",
        "save_for": "Log in to save PayPal for future payments to {brand}",
        "email": "E-mail address",
        "password": "Password",
        "pay": "Pay Now",
        "agree": "Agree and Continue",
        "cancel": "Cancel",
        "bad_email": "Enter the e-mail address of your PayPal account.",
        "hint": "PayPal emulator: any password works; an address containing “declined” "
        "is declined.",
        "done": "This payment can no longer be approved (status {status}).",
    },
    "pl": {
        "lang": "pl",
        "title": "Zapłać przez PayPal",
        "pay_to": "Zaloguj się, aby zapłacić: {brand}",
        "save_for": "Zaloguj się, aby zapisać PayPal do przyszłych płatności: {brand}",
        "email": "Adres e-mail",
        "password": "Hasło",
        "pay": "Zapłać teraz",
        "agree": "Zgadzam się i kontynuuję",
        "cancel": "Anuluj",
        "bad_email": "Podaj adres e-mail swojego konta PayPal.",
        "hint": "Emulator PayPal: dowolne hasło; adres zawierający „declined” zostanie odrzucony.",
        "done": "Tej płatności nie można już zatwierdzić (status {status}).",
    },
}

_STYLE = (
    "body{font-family:system-ui,sans-serif;background:#f5f7fa;margin:0;padding:2rem}"
    "main{max-width:26rem;margin:auto;background:#fff;padding:2rem;border-radius:.5rem;"
    "box-shadow:0 1px 4px rgba(0,0,0,.15)}h1{color:#003087;font-size:1.4rem}"
    "label{display:block;margin-top:1rem;font-weight:600}"
    "input{width:100%;box-sizing:border-box;padding:.6rem;margin-top:.3rem;font-size:1rem}"
    "button{margin-top:1.2rem;width:100%;padding:.7rem;font-size:1rem;border-radius:2rem;"
    "border:0;cursor:pointer}button[value=approve]{background:#0070ba;color:#fff}"
    "button[value=cancel]{background:#e9ecef}.amount{font-size:1.5rem}"
    ".error{color:#b00020}.hint{color:#555;font-size:.85rem}"
)


def _login_form(
    action: str, key: str, value: str, text: Mapping[str, str], submit: str, error: str | None
) -> str:
    problem = (
        f"<p class=error role=alert id=email-error>{html.escape(text['bad_email'])}</p>"
        if error
        else ""
    )
    described = ' aria-describedby="email-error" aria-invalid="true"' if error else ""
    return (
        f'<form method=post action="{action}">'
        f'<input type=hidden name="{key}" value="{html.escape(value)}">'
        f"{problem}<label for=email>{html.escape(text['email'])}</label>"
        f"<input id=email name=email type=email autocomplete=username required{described}>"
        f"<label for=password>{html.escape(text['password'])}</label>"
        f"<input id=password name=password type=password autocomplete=current-password>"
        f"<button type=submit name=action value=approve>{html.escape(submit)}</button>"
        f"<button type=submit name=action value=cancel formnovalidate>"
        f"{html.escape(text['cancel'])}</button></form>"
        f"<p class=hint>{html.escape(text['hint'])}</p>"
    )


def _page(status: int, lang: str, title: str, content: str) -> _Response:
    document = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>PayPal</h1>{content}</main></body></html>"
    )
    return _Response(status, document.encode(), "text/html; charset=utf-8")


@contextlib.contextmanager
def _public() -> Iterator[None]:
    """PayPal's refusal, as a ValueError for Python callers."""
    try:
        yield
    except _Error as error:
        raise ValueError(f"PayPal emulator: {error.issue}: {error.description}") from error


def _redirect(location: str) -> _Response:
    return _Response(303, b"", "text/plain", {"Location": location})


# -- small helpers --------------------------------------------------------------------------


def _json_response(status: int, body: JSON) -> _Response:
    return _Response(status, json.dumps(body).encode())


def _json_body(raw: bytes) -> JSON:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise _Error(400, "MALFORMED_REQUEST_JSON", "The request JSON is not well formed.") from exc
    if not isinstance(body, dict):
        raise _Error(400, "MALFORMED_REQUEST_JSON", "The request JSON is not an object.")
    return body


def _parse_body(headers: Mapping[str, str], raw: bytes) -> Any:
    if not raw:
        return None
    if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return _form(raw)
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _form(raw: bytes) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(raw.decode("utf-8", "replace")).items()}


def _amount(value: Any, field: str) -> tuple[str, str]:
    if not isinstance(value, dict):
        raise _Error(400, "MISSING_REQUIRED_PARAMETER", "A required field is missing.", field=field)
    currency, amount = value.get("currency_code"), value.get("value")
    if not isinstance(currency, str) or currency not in _CURRENCIES:
        raise _Error(
            422,
            "CURRENCY_NOT_SUPPORTED",
            "Currency code is not supported.",
            field=f"{field}/currency_code",
        )
    if not isinstance(amount, str) or not _AMOUNT.match(amount):
        raise _Error(
            400,
            "INVALID_PARAMETER_SYNTAX",
            "The value of a field does not conform to the expected format.",
            field=f"{field}/value",
        )
    if len(amount.partition(".")[2]) > (0 if currency in _NO_DECIMALS else 2):
        raise _Error(
            422,
            "DECIMAL_PRECISION",
            "If the currency supports decimals, only two decimal place precision is supported.",
            field=f"{field}/value",
        )
    try:
        if Decimal(amount) <= 0:
            raise _Error(
                422,
                "CANNOT_BE_ZERO_OR_NEGATIVE",
                "Must be greater than zero.",
                field=f"{field}/value",
            )
    except InvalidOperation as exc:
        raise _Error(400, "INVALID_PARAMETER_SYNTAX", "Not a number.", field=field) from exc
    return currency, amount


def _text_amount(value: Decimal, currency: str) -> str:
    places = Decimal(1) if currency in _NO_DECIMALS else Decimal("0.01")
    return str(value.quantize(places))


def _minor(value: Decimal, currency: str) -> int:
    return int(value if currency in _NO_DECIMALS else value * 100)


def _major(minor: int, currency: str) -> JSON:
    value = Decimal(minor) if currency in _NO_DECIMALS else Decimal(minor).scaleb(-2)
    return {"currency_code": currency, "value": _text_amount(value, currency)}


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = "&".join(filter(None, [parts.query, urlencode(params)]))
    return urlunsplit(parts._replace(query=query))


def main(
    argv: list[str] | None = None, *, serve: Callable[[PayPalEmulator], None] | None = None
) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12112)
    parser.add_argument("--client-id", default="pakiet-demo-client")
    parser.add_argument("--client-secret", default="pakiet-demo-secret")
    parser.add_argument("--webhook-id", default="WH-PAKIET-DEMO")
    parser.add_argument("--webhook-url", help="where to POST signed webhook notifications")
    parser.add_argument("--webhook-delay", type=float, default=0.0, help="seconds")
    parser.add_argument(
        "--webhook-duplicates", action="store_true", help="deliver every webhook twice"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    emulator = PayPalEmulator(
        client_id=args.client_id,
        client_secret=args.client_secret,
        webhook_id=args.webhook_id,
        webhook_url=args.webhook_url,
        webhook_delay=args.webhook_delay,
        webhook_duplicates=args.webhook_duplicates,
        port=args.port,
        host=args.host,
        verbose=not args.quiet,
    )
    emulator.latency = args.latency
    with emulator:
        print(
            f"PayPal emulator on {emulator.base_url} (webhooks to {args.webhook_url})", flush=True
        )
        if serve is not None:
            serve(emulator)
            return
        signal.signal(signal.SIGTERM, _exit)
        try:
            threading.Event().wait()
        except (KeyboardInterrupt, SystemExit):
            pass


def _exit(signum: int, frame: Any) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    main()
