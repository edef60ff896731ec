"""A small Stripe on 127.0.0.1: the part of the API that :mod:`pakiet_stripe` uses.

It speaks Stripe's wire format for API version ``2026-10-28.endive`` (the one the SDK
pins): form-encoded requests in bracket notation, JSON answers with ``object`` fields and
prefixed ids, Stripe's error shapes and status codes, ``Idempotency-Key`` replay, and
webhooks signed as ``Stripe-Signature: t=...,v1=...``. It also serves the pages a customer
sees: Checkout at ``/c/pay/{session}`` and the 3-D Secure test page. Test cards behave as
in Stripe's test mode (docs.stripe.com/testing)::

    4242424242424242  Visa, succeeds          5555555555554444  Mastercard, succeeds
    378282246310005   American Express        4000000000000002  declined (generic_decline)
    4000000000009995  insufficient_funds      4000000000000341  saves, then every charge fails
    4000002500003155  3-D Secure unless set up for off-session use
    4000002760003184  3-D Secure on every payment, off-session ones included

In tests::

    with StripeEmulator(api_key="sk_test_x", webhook_secret="whsec_x") as stripe_emulator:
        ...  # point the plugin's api_base at stripe_emulator.base_url
        stripe_emulator.pay(session_id, card="4242424242424242")

From the command line (``make run``)::

    python -m pakiet_stripe.emulator --port 12111 --api-key sk_test_... \\
        --webhook-secret whsec_... --webhook-url http://127.0.0.1:5000/webhooks/stripe
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import heapq
import hmac
import html
import json
import logging
import re
import secrets
import signal
import string
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, Self
from urllib.parse import parse_qsl, urlencode, urlsplit

from portal.testing.emulator import (
    Emulator,
    EmulatorHandler,
    EmulatorState,
    Fault,
    FaultPlan,
    Seen,
)

log = logging.getLogger(__name__)

Json = dict[str, Any]

API_VERSION = "2026-10-28.endive"
SESSION_PLACEHOLDER = "{CHECKOUT_SESSION_ID}"
SESSION_LIFETIME = 24 * 3600
MAX_AMOUNT = 99_999_999

# Stripe's minimum charge per currency, in the currency's minor unit.
MINIMUM_AMOUNTS = {"pln": 200, "eur": 50, "usd": 50, "czk": 1500, "gbp": 30, "chf": 50}
ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())

# PaymentMethod.card.brand -> the value Checkout's brands_blocked uses for it.
BLOCKABLE = {
    "visa": "visa",
    "mastercard": "mastercard",
    "amex": "american_express",
    "discover": "discover_global_network",
    "diners": "discover_global_network",
}

MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "authentication_required": "Your card was declined. This transaction requires authentication.",
    "payment_intent_authentication_failure": (
        "We are unable to authenticate your payment method. Please choose a different payment"
        " method and try again."
    ),
    "setup_intent_authentication_failure": (
        "We are unable to authenticate your payment method. Please choose a different payment"
        " method and try again."
    ),
    "test_mode_live_card": (
        "Your card was declined. Your request was in test mode, but used a non test (live)"
        " card. For a list of valid test cards, visit: https://stripe.com/docs/testing."
    ),
}

Authentication = Literal["none", "on_session", "unless_set_up", "always"]


@dataclass(frozen=True)
class CardBehaviour:
    """How a test card acts.

    ``authentication``: ``on_session`` asks for 3-D Secure whenever the customer is present;
    ``unless_set_up`` also off-session until the card was saved with authentication;
    ``always`` on every payment.
    """

    brand: str
    decline: tuple[str, str] | None = None  # (code, decline_code), even when only saving it
    charge_decline: tuple[str, str] | None = None  # saving works, taking money does not
    authentication: Authentication = "none"
    funding: str = "credit"


TEST_CARDS = {
    "4242424242424242": CardBehaviour("visa"),
    "4000056655665556": CardBehaviour("visa", funding="debit"),
    "5555555555554444": CardBehaviour("mastercard"),
    "5200828282828210": CardBehaviour("mastercard", funding="debit"),
    "378282246310005": CardBehaviour("amex"),
    "6011111111111117": CardBehaviour("discover"),
    "4000000000000002": CardBehaviour("visa", decline=("card_declined", "generic_decline")),
    "4000000000000069": CardBehaviour("visa", decline=("expired_card", "expired_card")),
    "4000000000009995": CardBehaviour(
        "visa", charge_decline=("card_declined", "insufficient_funds")
    ),
    "4000000000000341": CardBehaviour("visa", charge_decline=("card_declined", "generic_decline")),
    "4000002500003155": CardBehaviour("visa", authentication="unless_set_up"),
    "4000002760003184": CardBehaviour("visa", authentication="always"),
    "4000003800000446": CardBehaviour("visa", authentication="on_session"),
}

OutcomeStatus = Literal["succeeded", "requires_action", "declined", "invalid", "closed"]

HTML = "text/html; charset=utf-8"

_ALPHABET = string.ascii_letters + string.digits
_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_INTEGER = re.compile(r"^-?\d+$")

_PREFIXES = {
    "cus_": "customer",
    "cs_": "checkout.session",
    "pi_": "payment_intent",
    "pm_": "payment_method",
    "ch_": "charge",
    "re_": "refund",
    "seti_": "setup_intent",
}
_NOUNS = {
    "customer": "customer",
    "checkout.session": "checkout.session",
    "payment_intent": "payment_intent",
    "payment_method": "PaymentMethod",
    "charge": "charge",
    "refund": "refund",
    "setup_intent": "setup_intent",
}
_EXPANDABLE = {
    "checkout.session": {"customer", "payment_intent", "setup_intent"},
    "payment_intent": {"customer", "payment_method", "latest_charge"},
    "setup_intent": {"customer", "payment_method"},
    "charge": {"customer", "payment_intent", "payment_method"},
    "refund": {"charge", "payment_intent"},
    "payment_method": {"customer"},
    "customer": set(),
}


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """``Stripe-Signature`` for ``payload``: HMAC-SHA256 of ``"{t}.{payload}"``."""
    stamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{stamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


class ApiError(Exception):
    """An error answer in Stripe's shape: ``{"error": {"type": ..., ...}}``."""

    def __init__(self, status: int, type_: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: Json = {"type": type_, "message": message}
        self.body.update({k: v for k, v in fields.items() if v is not None})
        code = fields.get("code")
        if code:
            self.body["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"

    @classmethod
    def invalid(
        cls, message: str, *, param: str | None = None, code: str | None = None
    ) -> ApiError:
        return cls(400, "invalid_request_error", message, param=param, code=code)

    @classmethod
    def missing(cls, kind: str, object_id: str) -> ApiError:
        return cls(
            404,
            "invalid_request_error",
            f"No such {_NOUNS.get(kind, kind)}: '{object_id}'",
            code="resource_missing",
            param="id",
        )


# -- wire format -----------------------------------------------------------------------------------


def decode_form(pairs: Iterable[tuple[str, str]]) -> Json:
    """Stripe's bracket notation (``a[b][0][c]=v``) as nested dicts and lists."""
    root: Json = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            raise ApiError.invalid(f"Invalid parameter name: {key}", param=key)
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part or str(len(node)), {})
            if not isinstance(child, dict):
                raise ApiError.invalid(f"Invalid hash for {key}", param=key)
            node = child
        last = parts[-1] or str(len(node))
        if isinstance(node.get(last), dict):
            raise ApiError.invalid(f"Invalid value for {key}: expected a hash", param=key)
        node[last] = value
    result = _listify(root)
    assert isinstance(result, dict)
    return result


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


class Params:
    """Typed reads of one request's (or one nested hash's) parameters, with Stripe's errors."""

    def __init__(self, values: Json, prefix: str = "") -> None:
        self.values = values
        self.prefix = prefix

    def name(self, key: str) -> str:
        return f"{self.prefix}[{key}]" if self.prefix else key

    def only(self, allowed: Iterable[str]) -> None:
        known = set(allowed)
        for key in self.values:
            if key == "payment_method_types" and not self.prefix:
                raise ApiError.invalid(
                    "payment_method_types is no longer supported; use"
                    " allowed_payment_method_types.",
                    param=key,
                    code="payment_method_types_no_longer_supported",
                )
            if key not in known:
                raise ApiError.invalid(
                    f"Received unknown parameter: {self.name(key)}",
                    param=self.name(key),
                    code="parameter_unknown",
                )

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self.values.get(key)
        if value is None or value == "":
            if required:
                raise ApiError.invalid(
                    f"Missing required param: {self.name(key)}.",
                    param=self.name(key),
                    code="parameter_missing",
                )
            return None
        if not isinstance(value, str):
            raise ApiError.invalid(f"Invalid string: {self.name(key)}", param=self.name(key))
        return value

    def required(self, key: str) -> str:
        value = self.text(key, required=True)
        assert value is not None
        return value

    def integer(self, key: str, *, required: bool = False) -> int | None:
        value = self.text(key, required=required)
        if value is None:
            return None
        if not _INTEGER.match(value):
            raise ApiError.invalid(f"Invalid integer: {value}", param=self.name(key))
        return int(value)

    def flag(self, key: str) -> bool:
        value = self.text(key)
        if value is None:
            return False
        if value not in ("true", "false"):
            raise ApiError.invalid(f"Invalid boolean: {value}", param=self.name(key))
        return value == "true"

    def nested(self, key: str) -> Params:
        value = self.values.get(key)
        if value is None or value == "":
            return Params({}, self.name(key))
        if not isinstance(value, dict):
            raise ApiError.invalid(f"Invalid hash: {self.name(key)}", param=self.name(key))
        return Params(value, self.name(key))

    def array(self, key: str) -> list[Any]:
        value = self.values.get(key)
        if value is None or value == "":
            return []
        if not isinstance(value, list):
            raise ApiError.invalid(f"Invalid array: {self.name(key)}", param=self.name(key))
        return value

    def texts(self, key: str) -> list[str]:
        items = self.array(key)
        if not all(isinstance(item, str) for item in items):
            raise ApiError.invalid(f"Invalid array of strings: {self.name(key)}")
        return items

    def metadata(self) -> dict[str, str]:
        values = self.nested("metadata").values
        if not all(isinstance(v, str) for v in values.values()):
            raise ApiError.invalid("Invalid metadata: values must be strings", param="metadata")
        return {k: v for k, v in values.items() if v != ""}


def _format_amount(minor: int, currency: str, language: str = "en") -> str:
    """An amount for the hosted page, from integers only."""
    code = currency.upper()
    sign = "-" if minor < 0 else ""
    major, cents = divmod(abs(minor), 1 if currency in ZERO_DECIMAL else 100)
    whole = f"{major:,}"
    if language == "pl":
        whole = whole.replace(",", "\N{NO-BREAK SPACE}")
        fraction = "" if currency in ZERO_DECIMAL else f",{cents:02d}"
        return f"{sign}{whole}{fraction}\N{NO-BREAK SPACE}{code}"
    fraction = "" if currency in ZERO_DECIMAL else f".{cents:02d}"
    return f"{code}\N{NO-BREAK SPACE}{sign}{whole}{fraction}"


def _luhn(number: str) -> bool:
    total = 0
    for i, digit in enumerate(reversed(number)):
        value = int(digit) * (2 if i % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _brand_of(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in ("34", "37"):
        return "amex"
    if number[:2] in ("51", "52", "53", "54", "55") or 2221 <= int(number[:4]) <= 2720:
        return "mastercard"
    if number.startswith(("6011", "65")):
        return "discover"
    return "unknown"


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    extra = urlencode(params)
    return parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra).geturl()


# -- results the Python API hands to tests ---------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What submitting a hosted page did, as the person (or the browser) sees it.

    ``succeeded``: go to ``redirect_url``. ``requires_action``: the 3-D Secure step is shown;
    call :meth:`StripeEmulator.authenticate`. ``declined``: the page shows ``message`` and
    the person may try another card. ``invalid``: the form was not accepted (bad number,
    blocked brand). ``closed``: the session is no longer open.
    """

    status: OutcomeStatus
    redirect_url: str | None = None
    message: str | None = None
    code: str | None = None
    decline_code: str | None = None
    payment_intent: str | None = None
    setup_intent: str | None = None


@dataclass(frozen=True)
class Delivery:
    """One attempt to deliver a webhook."""

    event_id: str
    event_type: str
    attempt: int
    body: bytes
    headers: dict[str, str]
    status: int | None  # the receiver's HTTP status; None when it could not be reached
    error: str | None = None

    @property
    def payload(self) -> Json:
        result = json.loads(self.body)
        assert isinstance(result, dict)
        return result


@dataclass(frozen=True)
class ApiCall:
    """One request to ``/v1``: what the emulator saw and answered."""

    method: str
    path: str
    params: Json
    idempotency_key: str | None
    status: int  # 0 when no answer was sent (an injected timeout or closed connection)
    replayed: bool = False
    fault: Fault | None = None  # injected by fail_next()


@dataclass(order=True)
class _Queued:
    due: float
    seq: int
    event: Json = field(compare=False)
    attempt: int = field(compare=False, default=1)


@dataclass
class _SessionSetup:
    """What a Checkout Session was created with that its API object does not show."""

    name: str = ""
    brands_blocked: tuple[str, ...] = ()
    intent_metadata: dict[str, str] = field(default_factory=dict)
    intent_description: str | None = None
    setup_future_usage: str | None = None
    setup_metadata: dict[str, str] = field(default_factory=dict)
    pending_method: str | None = None  # a card waiting for 3-D Secure


@dataclass(frozen=True)
class _Stored:
    method: str
    path: str
    params: Json
    status: int
    payload: Json
    request_id: str


# -- HTTP plumbing ---------------------------------------------------------------------------------


@dataclass
class _State(EmulatorState):
    """The kit's part (latency, queued faults, requests seen, ``stopping``); Stripe's objects,
    events and deliveries stay on :class:`StripeEmulator`, under its own lock."""


class _Handler(EmulatorHandler[_State]):
    """Hands every request to :meth:`StripeEmulator._handle`; answers as Stripe's servers do."""

    emulator: StripeEmulator
    server_version = "stripe-emulator"
    sys_version = ""
    # HTTP/1.0: one request per connection, so no client keeps a socket open between tests.
    protocol_version = "HTTP/1.0"
    # A "garbage" fault: HTTP 200 and JSON cut short.
    garbage_page = b'{"id": "cs_test_'
    garbage_type = "application/json"

    def do_GET(self) -> None:
        self.emulator._handle(self, "GET")

    def do_POST(self) -> None:
        self.emulator._handle(self, "POST")

    def do_DELETE(self) -> None:
        self.emulator._handle(self, "DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def fault_body(self, status: int) -> tuple[bytes, str]:
        """A status fault answers Stripe's ``api_error``."""
        message = "An unknown error occurred (injected by the emulator)."
        body = {"error": {"type": "api_error", "message": message}}
        return json.dumps(body, indent=2).encode(), "application/json"

    def send_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        """JSON as Stripe writes it (indented by two spaces)."""
        self.send_body(status, json.dumps(data, indent=2).encode(), "application/json", headers)

    def read_form(self) -> dict[str, str]:
        """The request's form-encoded body, flat (``a[b]`` stays one key)."""
        return dict(parse_qsl(self.read_body().decode(), keep_blank_values=True))


# -- the emulator ----------------------------------------------------------------------------------


class StripeEmulator(Emulator[_State]):
    """Stripe's API and hosted pages on ``127.0.0.1``, for tests and the demo.

    The server, the latency and the faults (:meth:`fail_next`) are the emulator kit's
    (:class:`~portal.testing.emulator.Emulator`); webhooks are sent by a thread of its own.

    :param api_key: the secret key requests must carry (``Authorization: Bearer ...``).
    :param webhook_secret: signs webhooks (``whsec_...``).
    :param webhook_url: where webhooks go; ``None`` records events without sending them.
    :param webhook_delay: seconds before each webhook is sent.
    :param webhook_duplicates: send every webhook twice, as Stripe may.
    :param port: ``0`` picks a free port.
    :param latency: seconds every API call takes before it is handled (a slow network or
        Stripe); :attr:`latency` changes it later.
    """

    name, title, handler = "stripe", "Stripe", _Handler
    # Request threads are joined on stop(), so it leaves none behind.
    join_requests = True

    def __init__(
        self,
        *,
        api_key: str = "sk_test_emulator",
        webhook_secret: str = "whsec_emulator",
        webhook_url: str | None = None,
        webhook_delay: float = 0.0,
        webhook_duplicates: bool = False,
        webhook_attempts: int = 3,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
    ) -> None:
        super().__init__(_State(latency=latency), port, host)
        self.api_key = api_key
        # Set when an API call arrives (before its latency): tests wait on it.
        self.call_started = threading.Event()
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.webhook_delay = webhook_delay
        self.webhook_duplicates = webhook_duplicates
        self.webhook_attempts = webhook_attempts
        self._lock = threading.RLock()
        self._objects: dict[str, dict[str, Json]] = {kind: {} for kind in _NOUNS}
        self._setups: dict[str, _SessionSetup] = {}
        self._cards: dict[str, CardBehaviour] = {}
        self._set_up: set[str] = set()
        self._idempotent: dict[tuple[str, str], _Stored] = {}
        self._calls: list[ApiCall] = []
        self._events: list[Json] = []
        self._deliveries: list[Delivery] = []
        self._queue: list[_Queued] = []
        self._seq = 0
        self._deliveries_changed = threading.Condition()
        self._context = threading.local()
        self._deliverer: threading.Thread | None = None

    # -- life cycle --------------------------------------------------------------------------------

    def start(self) -> Self:
        super().start()
        # The port asked for, from now on the one served (port=0 picked a free one).
        self._port = int(self.base_url.rsplit(":", 1)[1])
        self._deliverer = threading.Thread(
            target=self._deliver_loop, name="stripe-webhooks", daemon=True
        )
        self._deliverer.start()
        log.info("Stripe emulator listening at %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and delivering; undelivered webhooks are dropped."""
        self.stopping.set()
        with self._deliveries_changed:
            self._deliveries_changed.notify_all()
        super().stop()
        if self._deliverer is not None:
            self._deliverer.join()
            self._deliverer = None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The port served (once started; before, the one asked for: 0 picks a free one)."""
        return self._port

    # -- the Python API for tests ------------------------------------------------------------------

    def pay(self, session_id: str, *, card: str, exp: str = "12/34", cvc: str = "123") -> Outcome:
        """Submit the Checkout page of ``session_id`` as a person would."""
        with self._lock:
            return self._submit_card(session_id, card, exp, cvc)

    def authenticate(self, reference: str, *, complete: bool = True) -> Outcome:
        """Press "Complete" (or "Fail") on the 3-D Secure page.

        ``reference`` is a Checkout Session waiting for it, or a PaymentIntent whose
        ``next_action`` is ``redirect_to_url`` (an off-session charge brought back on-session).
        """
        with self._lock:
            if reference.startswith("cs_"):
                return self._authenticate_session(reference, complete)
            return self._authenticate_intent(reference, complete)

    def save_card(
        self, card: str, *, email: str | None = None, exp: str = "12/34"
    ) -> tuple[str, str]:
        """A card a customer saved earlier (as Stripe's ``pm_card_*`` test methods):
        ``(customer id, payment method id)``, attached and set up for off-session use."""
        with self._lock:
            behaviour = TEST_CARDS.get(card)
            if behaviour is None:
                raise ValueError(f"not a test card: {card}")
            expiry = _parse_expiry(exp)
            if expiry is None:
                raise ValueError(f"not an expiry date: {exp}")
            customer = self._add(
                {
                    "id": new_id("cus_", 14),
                    "object": "customer",
                    "balance": 0,
                    "created": int(time.time()),
                    "currency": None,
                    "delinquent": False,
                    "description": None,
                    "email": email,
                    "invoice_settings": {"default_payment_method": None},
                    "livemode": False,
                    "metadata": {},
                    "name": None,
                    "preferred_locales": [],
                }
            )
            session = {"customer_details": {"email": email}}
            method = self._new_method(behaviour, card, expiry, session)
            self._attach(method, customer["id"])
            return customer["id"], method["id"]

    def seed_card(
        self,
        *,
        customer_id: str,
        method_id: str,
        card: str,
        email: str | None = None,
        name: str | None = None,
        exp: str = "12/34",
        created: int | None = None,
    ) -> None:
        """A customer with a card saved earlier for off-session use, under ids of the
        caller's choosing (the demo's, which its database names). No events are sent: it
        happened in the past. Seeding the same ids again changes nothing."""
        with self._lock:
            if method_id in self._objects["payment_method"]:
                return
            behaviour = TEST_CARDS.get(card)
            expiry = _parse_expiry(exp)
            if behaviour is None or expiry is None:
                raise ValueError(f"not a test card with an expiry date: {card} {exp}")
            stamp = int(time.time()) if created is None else created
            self._objects["customer"].setdefault(
                customer_id,
                {
                    "id": customer_id,
                    "object": "customer",
                    "balance": 0,
                    "created": stamp,
                    "currency": None,
                    "delinquent": False,
                    "description": None,
                    "email": email,
                    "invoice_settings": {"default_payment_method": method_id},
                    "livemode": False,
                    "metadata": {},
                    "name": name,
                    "preferred_locales": [],
                },
            )
            method = self._new_method(
                behaviour, card, expiry, {"customer_details": {"email": email}}
            )
            del self._objects["payment_method"][method["id"]]
            self._cards[method_id] = self._cards.pop(method["id"])
            method.update({"id": method_id, "customer": customer_id, "created": stamp})
            method["billing_details"]["name"] = name
            self._objects["payment_method"][method_id] = method
            self._set_up.add(method_id)

    def seed_payment(
        self,
        *,
        intent_id: str,
        charge_id: str,
        customer_id: str,
        method_id: str,
        amount: int,
        currency: str,
        created: int,
        metadata: dict[str, str] | None = None,
        description: str | None = None,
        refunded: int = 0,
    ) -> None:
        """A PaymentIntent that succeeded in the past (its charge captured, ``refunded`` of it
        given back), charged to a seeded card: what a refund of it needs. No events are sent.
        Seeding the same ids again changes nothing."""
        with self._lock:
            if intent_id in self._objects["payment_intent"]:
                return
            method = self._get("payment_method", method_id)
            intent = self._new_intent(
                amount=amount,
                currency=currency.lower(),
                customer=customer_id,
                metadata=dict(metadata or {}),
                description=description,
                setup_future_usage="off_session",
            )
            charge = self._new_charge(intent, method, None)
            del self._objects["charge"][charge["id"]]
            charge.update(
                {
                    "id": charge_id,
                    "created": created,
                    "payment_intent": intent_id,
                    "amount_refunded": refunded,
                    "refunded": refunded == amount,
                }
            )
            self._objects["charge"][charge_id] = charge
            intent.update(
                {
                    "id": intent_id,
                    "client_secret": f"{intent_id}_secret_{new_id('', 25)}",
                    "created": created,
                    "payment_method": method_id,
                    "latest_charge": charge_id,
                    "amount_received": amount,
                    "status": "succeeded",
                }
            )
            self._objects["payment_intent"][intent_id] = intent

    def fail_next(
        self,
        status: int | str = 500,
        count: int = 1,
        *,
        path: str | None = None,
        processed: bool = False,
    ) -> None:
        """Make the next ``count`` API calls fail (none when it is below 1). Hosted pages and
        test controls are never failed.

        :param status: an HTTP status (answered with an ``api_error`` body), ``"timeout"`` (no
            answer until the client gives up), ``"close"`` (the connection is closed without
            an answer) or ``"garbage"`` (HTTP 200 with a body that is not JSON).
        :param path: only calls whose path starts with it (``/v1/refunds``).
        :param processed: carry the call out first and lose only the answer, as when a
            network fails after Stripe acted; a retry with the same idempotency key then
            gets the stored answer.
        """
        if count >= 1:
            super().fail_next(status, count, path=path, processed=processed)

    @property
    def events(self) -> list[Json]:
        """Every event created so far (sent as a webhook when ``webhook_url`` is set)."""
        with self._lock:
            return copy.deepcopy(self._events)

    @property
    def deliveries(self) -> list[Delivery]:
        with self._deliveries_changed:
            return list(self._deliveries)

    def wait_for_deliveries(self, count: int, timeout: float = 5.0) -> list[Delivery]:
        """Block until ``count`` webhook deliveries were attempted; return them all."""
        with self._deliveries_changed:
            if not self._deliveries_changed.wait_for(
                lambda: len(self._deliveries) >= count, timeout
            ):
                seen = [d.event_type for d in self._deliveries]
                raise TimeoutError(
                    f"{count} webhook deliveries expected in {timeout} s, got {seen}"
                )
            return list(self._deliveries)

    def wait_for_delivery(self, event_type: str, timeout: float = 5.0) -> Delivery:
        """Block until a webhook of ``event_type`` was delivered; return the first such."""

        def found() -> Delivery | None:
            return next((d for d in self._deliveries if d.event_type == event_type), None)

        with self._deliveries_changed:
            if not self._deliveries_changed.wait_for(lambda: found() is not None, timeout):
                seen = [d.event_type for d in self._deliveries]
                raise TimeoutError(f"no {event_type} webhook in {timeout} s, got {seen}")
            delivery = found()
            assert delivery is not None
            return delivery

    @property
    def api_calls(self) -> list[ApiCall]:
        with self._lock:
            return list(self._calls)

    def objects(self, kind: str) -> list[Json]:
        """Copies of every object of ``kind`` (``"checkout.session"``, ``"refund"``, ...)."""
        with self._lock:
            return copy.deepcopy(list(self._objects[kind].values()))

    def sign(
        self, payload: bytes, *, timestamp: int | None = None, secret: str | None = None
    ) -> str:
        """A ``Stripe-Signature`` header for ``payload`` (with another secret, to test refusal)."""
        return signature_header(payload, secret or self.webhook_secret, timestamp)

    # -- HTTP entry points -------------------------------------------------------------------------

    def _handle(self, handler: _Handler, method: str) -> None:
        url = urlsplit(handler.path)
        path = url.path
        if path.startswith("/v1/"):
            self._handle_api(handler, method, path, url.query)
            return
        with self.state.lock:  # an API call is recorded with its body, in _handle_api
            self.state.requests.append(Seen(method, handler.path))
        if path.startswith("/c/pay/"):
            self._handle_checkout_page(handler, method, path.removeprefix("/c/pay/"))
        elif path == "/3d_secure_2/hosted":
            self._handle_3ds_page(handler, method, dict(parse_qsl(url.query)))
        elif path.startswith("/_emulator/") and method == "POST":
            self._handle_control(handler, path.removeprefix("/_emulator/"))
        else:
            handler.send_text(404, _page("Not found", "<p>Nothing here.</p>"), HTML)

    def _handle_control(self, handler: _Handler, action: str) -> None:
        """Test controls for a process that runs the emulator (``scripts/devserver.py``):
        not Stripe's API. ``POST /_emulator/fail_next`` (``status``, ``times``) and
        ``POST /_emulator/webhook_delay`` (``seconds``) do what the Python API does."""
        form = handler.read_form()
        try:
            if action == "fail_next":
                # The kit's check_fault reads the status: "503", "timeout", "close", "garbage".
                self.fail_next(form.get("status", "500"), int(form.get("times", "1")))
            elif action == "webhook_delay":
                self.webhook_delay = float(form["seconds"])
            else:
                handler.send_json(404, {"error": f"no control {action!r}"})
                return
        except (KeyError, ValueError) as exc:
            handler.send_json(400, {"error": str(exc)})
            return
        handler.send_json(200, {"ok": True})

    def _handle_api(self, handler: _Handler, method: str, path: str, query: str) -> None:
        # Read the body even when failing: closing a socket with unread input resets it, and
        # the client would see a reset instead of the injected fault.
        body = handler.read_body().decode()
        with self.state.lock:
            self.state.requests.append(Seen(method, handler.path, body or None))
        self.call_started.set()
        if handler.pause(self.latency):  # the emulator is stopping: no answer
            return
        plan = handler.take_fault()
        if plan is not None and not plan.processed:
            self._answer_fault(handler, plan, path, body or query)
            return
        status, payload, headers = self._api(method, path, body or query, handler.headers)
        if plan is not None:
            self._answer_fault(handler, plan, path, body or query)
            return
        handler.send_json(status, payload, headers)

    def _answer_fault(self, handler: _Handler, plan: FaultPlan, path: str, raw: str) -> None:
        """Record the faulted call (``status`` 0 when nothing is answered), then let the kit
        answer the fault."""
        fault = plan.fault
        log.info("injecting fault %r into %s %s", fault, handler.command, path)
        status = fault if isinstance(fault, int) else 200 if fault == "garbage" else 0
        key = handler.headers.get("Idempotency-Key") if handler.command == "POST" else None
        params = dict(parse_qsl(raw, keep_blank_values=True))
        with self._lock:
            self._calls.append(ApiCall(handler.command, path, params, key, status, fault=fault))
        handler.answer_fault(fault)

    def _api(
        self, method: str, path: str, raw: str, headers: Any
    ) -> tuple[int, Json, dict[str, str]]:
        request_id = new_id("req_", 14)
        key = headers.get("Idempotency-Key") if method == "POST" else None
        out = {"Request-Id": request_id, "Stripe-Version": headers.get("Stripe-Version") or ""}
        params: Json = {}
        with self._lock:
            try:
                self._check_key(headers.get("Authorization"))
                params = decode_form(parse_qsl(raw, keep_blank_values=True))
                route, args = self._route(method, path)
                stored = self._idempotent.get((self.api_key, key)) if key else None
                if stored is not None:
                    if stored.method != method or stored.path != path:
                        raise ApiError.invalid(
                            "Keys for idempotent requests can only be used for the same endpoint"
                            f" they were first used for ('{stored.method} {stored.path}')."
                            f" Try using a key other than '{key}' if you meant to execute a"
                            " different request.",
                        )
                    if stored.params != params:
                        raise ApiError(
                            400,
                            "idempotency_error",
                            "Keys for idempotent requests can only be used with the same"
                            " parameters they were first used with. Try using a key other than"
                            f" '{key}' if you meant to execute a different request.",
                        )
                    out.update(
                        {"Idempotent-Replayed": "true", "Original-Request": stored.request_id}
                    )
                    self._record(method, path, params, key, stored.status, replayed=True)
                    return stored.status, copy.deepcopy(stored.payload), out
                self._context.request = {"id": request_id, "idempotency_key": key}
                try:
                    status, payload = 200, route(Params(params), *args)
                finally:
                    self._context.request = None
            except ApiError as error:
                status, payload = error.status, {"error": error.body}
            # Stripe keeps the answer of every request that started executing, declines
            # included; a request refused before that (bad key, bad parameters) is not kept.
            if key and status in (200, 402):
                self._idempotent[(self.api_key, key)] = _Stored(
                    method, path, params, status, copy.deepcopy(payload), request_id
                )
                out["Idempotency-Key"] = key
            self._record(method, path, params, key, status)
            if status == 401:
                out["WWW-Authenticate"] = 'Bearer realm="Stripe"'
            return status, payload, out

    def _record(
        self,
        method: str,
        path: str,
        params: Json,
        key: str | None,
        status: int,
        replayed: bool = False,
    ) -> None:
        self._calls.append(ApiCall(method, path, params, key, status, replayed))
        log.info("%s %s -> %s%s", method, path, status, " (replayed)" if replayed else "")

    def _check_key(self, authorization: str | None) -> None:
        if not authorization:
            raise ApiError(
                401,
                "invalid_request_error",
                "You did not provide an API key. You need to provide your API key in the"
                " Authorization header, using Bearer auth (e.g. 'Authorization: Bearer"
                " YOUR_SECRET_KEY').",
            )
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip(), self.api_key):
            shown = key.strip()
            masked = shown[:8] + "*" * max(len(shown) - 12, 0) + shown[-4:]
            raise ApiError(401, "invalid_request_error", f"Invalid API Key provided: {masked}")

    def _route(self, method: str, path: str) -> tuple[Callable[..., Json], tuple[str, ...]]:
        routes: list[tuple[str, str, Callable[..., Json]]] = [
            ("POST", r"/v1/customers", self._create_customer),
            ("GET", r"/v1/customers", self._list("customer", "email")),
            ("GET", r"/v1/customers/([^/]+)", self._retrieve("customer")),
            ("GET", r"/v1/checkout/sessions", self._list("checkout.session", "customer")),
            ("GET", r"/v1/payment_intents", self._list("payment_intent", "customer")),
            ("GET", r"/v1/charges", self._list("charge", "customer", "payment_intent")),
            ("GET", r"/v1/refunds", self._list("refund", "charge", "payment_intent")),
            ("POST", r"/v1/checkout/sessions", self._create_session),
            ("GET", r"/v1/checkout/sessions/([^/]+)", self._retrieve("checkout.session")),
            ("POST", r"/v1/checkout/sessions/([^/]+)/expire", self._expire_session),
            ("POST", r"/v1/payment_intents", self._create_intent),
            ("GET", r"/v1/payment_intents/([^/]+)", self._retrieve("payment_intent")),
            ("POST", r"/v1/payment_intents/([^/]+)/confirm", self._confirm_intent),
            ("GET", r"/v1/payment_methods/([^/]+)", self._retrieve("payment_method")),
            ("GET", r"/v1/setup_intents/([^/]+)", self._retrieve("setup_intent")),
            ("GET", r"/v1/charges/([^/]+)", self._retrieve("charge")),
            ("POST", r"/v1/refunds", self._create_refund),
            ("GET", r"/v1/refunds/([^/]+)", self._retrieve("refund")),
        ]
        for verb, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if match and verb == method:
                return handler, match.groups()
        raise ApiError(
            404,
            "invalid_request_error",
            f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs"
            " or we can help at https://support.stripe.com/.",
        )

    # -- objects -----------------------------------------------------------------------------------

    def _get(self, kind: str, object_id: str) -> Json:
        found = self._objects[kind].get(object_id)
        if found is None:
            raise ApiError.missing(kind, object_id)
        if kind == "checkout.session":
            self._expire_if_due(found)
        return found

    def _lookup(self, object_id: str) -> Json:
        for prefix, kind in _PREFIXES.items():
            if object_id.startswith(prefix):
                return self._get(kind, object_id)
        raise ApiError.invalid(f"No such object: '{object_id}'", code="resource_missing")

    def _add(self, obj: Json) -> Json:
        self._objects[obj["object"]][obj["id"]] = obj
        return obj

    def _render(self, obj: Json, params: Params) -> Json:
        """A copy of ``obj`` with the fields named in ``expand`` replaced by their objects."""
        out = copy.deepcopy(obj)
        for path in params.texts("expand"):
            self._expand(out, path.split("."), path)
        return out

    def _expand(self, node: Json, parts: list[str], path: str) -> None:
        name = parts[0]
        if name not in _EXPANDABLE.get(node.get("object", ""), set()):
            raise ApiError.invalid(f"This property cannot be expanded ({path}).", param="expand")
        value = node.get(name)
        if isinstance(value, str):
            value = node[name] = copy.deepcopy(self._lookup(value))
        if isinstance(value, dict) and len(parts) > 1:
            self._expand(value, parts[1:], path)

    def _retrieve(self, kind: str) -> Callable[[Params, str], Json]:
        def retrieve(params: Params, object_id: str) -> Json:
            params.only({"expand", "client_secret"})
            return self._render(self._get(kind, object_id), params)

        return retrieve

    def _list(self, kind: str, *filters: str) -> Callable[[Params], Json]:
        """``GET /v1/{objects}``: Stripe's list object, newest first, ``limit`` (1-100, default
        10) and ``starting_after`` for the next page, and the filters Stripe offers there."""

        def list_objects(params: Params) -> Json:
            params.only({"limit", "starting_after", *filters})
            limit = params.integer("limit")
            limit = 10 if limit is None else limit
            if not 1 <= limit <= 100:
                raise ApiError.invalid(
                    "This value must be greater than or equal to 1.", param="limit"
                )
            wanted = {name: params.text(name) for name in filters}
            found = [
                obj
                for obj in self._objects[kind].values()
                if all(value is None or obj.get(name) == value for name, value in wanted.items())
            ]
            # Newest first; objects made in the same second keep their reverse creation order.
            order = {object_id: n for n, object_id in enumerate(self._objects[kind])}
            found.sort(key=lambda obj: (obj["created"], order[obj["id"]]), reverse=True)
            after = params.text("starting_after")
            if after is not None:
                ids = [obj["id"] for obj in found]
                if after not in ids:
                    raise ApiError.missing(kind, after)
                found = found[ids.index(after) + 1 :]
            data = [copy.deepcopy(obj) for obj in found[:limit]]
            url = "/v1/" + {"checkout.session": "checkout/sessions"}.get(kind, f"{kind}s")
            return {"object": "list", "data": data, "has_more": len(found) > limit, "url": url}

        return list_objects

    # -- customers and Checkout Sessions -----------------------------------------------------------

    def _create_customer(self, params: Params) -> Json:
        params.only({"email", "name", "description", "metadata", "preferred_locales", "expand"})
        customer = self._add(
            {
                "id": new_id("cus_", 14),
                "object": "customer",
                "balance": 0,
                "created": int(time.time()),
                "currency": None,
                "delinquent": False,
                "description": params.text("description"),
                "email": params.text("email"),
                "invoice_settings": {"default_payment_method": None},
                "livemode": False,
                "metadata": params.metadata(),
                "name": params.text("name"),
                "preferred_locales": params.texts("preferred_locales"),
            }
        )
        return self._render(customer, params)

    def _create_session(self, params: Params) -> Json:
        params.only(
            {
                "mode", "customer", "customer_email", "client_reference_id", "metadata",
                "line_items", "payment_intent_data", "setup_intent_data",
                "allowed_payment_method_types", "payment_method_options", "success_url",
                "cancel_url", "locale", "currency", "expires_at", "expand",
            }
        )  # fmt: skip
        mode = params.required("mode")
        if mode not in ("payment", "setup"):
            raise ApiError.invalid(
                f"The emulator does not support mode={mode}.",
                param="mode",
                code="parameter_invalid_string",
            )
        success_url = params.required("success_url")
        customer = params.text("customer")
        if customer is not None:
            self._get("customer", customer)
            if params.text("customer_email"):
                raise ApiError.invalid(
                    "You may only specify one of these parameters: customer, customer_email.",
                    param="customer_email",
                )
        types = params.texts("allowed_payment_method_types") or ["card"]
        if types != ["card"]:
            raise ApiError.invalid(
                "The emulator only offers card payments.", param="allowed_payment_method_types"
            )
        restrictions = params.nested("payment_method_options").nested("card").nested("restrictions")
        blocked = tuple(restrictions.texts("brands_blocked"))
        for brand in blocked:
            if brand not in BLOCKABLE.values():
                raise ApiError.invalid(
                    f"Invalid brands_blocked value: {brand}",
                    param="payment_method_options[card][restrictions][brands_blocked]",
                )
        now = int(time.time())
        expires_at = params.integer("expires_at") or now + SESSION_LIFETIME
        if not now + 1800 <= expires_at <= now + SESSION_LIFETIME:
            raise ApiError.invalid(
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from now.",
                param="expires_at",
            )
        setup = _SessionSetup(brands_blocked=blocked)
        session: Json = {
            "id": new_id("cs_test_", 58),
            "object": "checkout.session",
            "allowed_payment_method_types": ["card"],
            "amount_subtotal": None,
            "amount_total": None,
            "cancel_url": params.text("cancel_url"),
            "client_reference_id": params.text("client_reference_id"),
            "created": now,
            "currency": params.text("currency"),
            "customer": customer,
            "customer_details": None,
            "customer_email": params.text("customer_email"),
            "expires_at": expires_at,
            "livemode": False,
            "locale": params.text("locale"),
            "metadata": params.metadata(),
            "mode": mode,
            "payment_intent": None,
            "payment_method_options": {"card": {"restrictions": {"brands_blocked": list(blocked)}}}
            if blocked
            else {},
            "payment_method_types": ["card"],
            "payment_status": "unpaid" if mode == "payment" else "no_payment_required",
            "setup_intent": None,
            "status": "open",
            "success_url": success_url,
            "ui_mode": "hosted",
            "url": None,
        }
        if mode == "payment":
            self._price_session(session, setup, params)
        else:
            setup.setup_metadata = params.nested("setup_intent_data").metadata()
        session["url"] = f"{self.base_url}/c/pay/{session['id']}"
        self._setups[session["id"]] = setup
        return self._render(self._add(session), params)

    def _price_session(self, session: Json, setup: _SessionSetup, params: Params) -> None:
        items = params.array("line_items")
        if not items:
            raise ApiError.invalid(
                "You must specify `line_items` in `payment` mode.", param="line_items"
            )
        total, currency, names = 0, None, []
        for index, raw in enumerate(items):
            item = Params(raw if isinstance(raw, dict) else {}, f"line_items[{index}]")
            item.only({"quantity", "price_data"})
            price = item.nested("price_data")
            price.only({"currency", "unit_amount", "product_data"})
            product = price.nested("product_data")
            product.only({"name", "description", "metadata"})
            unit_amount = price.integer("unit_amount", required=True)
            quantity = item.integer("quantity", required=True)
            assert unit_amount is not None and quantity is not None
            if unit_amount < 0 or quantity < 1:
                raise ApiError.invalid("Invalid amount or quantity.", param=item.name("price_data"))
            line_currency = price.required("currency")
            if currency not in (None, line_currency):
                raise ApiError.invalid(
                    "All line items must use the same currency.", param="line_items"
                )
            currency = line_currency
            names.append(product.required("name"))
            total += unit_amount * quantity
        assert currency is not None
        self._check_amount(total, currency, param="line_items")
        intent_data = params.nested("payment_intent_data")
        intent_data.only({"metadata", "description", "setup_future_usage"})
        usage = intent_data.text("setup_future_usage")
        if usage not in (None, "on_session", "off_session"):
            raise ApiError.invalid(
                f"Invalid setup_future_usage: {usage}",
                param="payment_intent_data[setup_future_usage]",
            )
        setup.name = ", ".join(names)
        setup.intent_metadata = intent_data.metadata()
        setup.intent_description = intent_data.text("description")
        setup.setup_future_usage = usage
        session.update({"amount_subtotal": total, "amount_total": total, "currency": currency})

    def _check_amount(self, amount: int, currency: str, *, param: str) -> None:
        minimum = MINIMUM_AMOUNTS.get(currency, 50)
        if amount < minimum:
            shown = _format_amount(minimum, currency)
            raise ApiError.invalid(
                f"Amount must be at least {shown}", param=param, code="amount_too_small"
            )
        if amount > MAX_AMOUNT:
            shown = _format_amount(MAX_AMOUNT, currency)
            raise ApiError.invalid(
                f"Amount must be no more than {shown}", param=param, code="amount_too_large"
            )

    def _expire_session(self, params: Params, session_id: str) -> Json:
        params.only({"expand"})
        session = self._get("checkout.session", session_id)
        if session["status"] != "open":
            raise ApiError.invalid(
                f'Only Checkout Sessions with a status in ["open"] can be expired. This'
                f' Checkout Session has a status of "{session["status"]}".',
                code="checkout_session_not_open",
            )
        self._expire(session)
        return self._render(session, params)

    def _expire_if_due(self, session: Json) -> None:
        if session["status"] == "open" and session["expires_at"] <= time.time():
            self._expire(session)

    def _expire(self, session: Json) -> None:
        session.update({"status": "expired", "url": None})
        intent_id = session.get("payment_intent")
        if intent_id:
            intent = self._objects["payment_intent"][intent_id]
            if intent["status"] != "succeeded":
                intent.update(
                    {"status": "canceled", "canceled_at": int(time.time()), "next_action": None}
                )
                intent["cancellation_reason"] = "abandoned"
                self._emit("payment_intent.canceled", intent)
        self._emit("checkout.session.expired", session)

    # -- PaymentIntents ----------------------------------------------------------------------------

    def _create_intent(self, params: Params) -> Json:
        params.only(
            {
                "amount", "currency", "customer", "payment_method", "allowed_payment_method_types",
                "off_session", "confirm", "metadata", "description", "return_url", "expand",
                "setup_future_usage", "receipt_email",
            }
        )  # fmt: skip
        amount = params.integer("amount", required=True)
        currency = params.required("currency")
        assert amount is not None
        self._check_amount(amount, currency, param="amount")
        if (params.texts("allowed_payment_method_types") or ["card"]) != ["card"]:
            raise ApiError.invalid(
                "The emulator only offers card payments.", param="allowed_payment_method_types"
            )
        customer = params.text("customer")
        if customer is not None:
            self._get("customer", customer)
        confirm = params.flag("confirm")
        off_session = params.flag("off_session")
        if off_session and not confirm:
            raise ApiError.invalid(
                "You may only specify `off_session` when `confirm` is true.", param="off_session"
            )
        intent = self._new_intent(
            amount=amount,
            currency=currency,
            customer=customer,
            metadata=params.metadata(),
            description=params.text("description"),
            setup_future_usage=params.text("setup_future_usage"),
        )
        self._add(intent)
        self._emit("payment_intent.created", intent)
        method_id = params.text("payment_method")
        if method_id is not None:
            intent["payment_method"] = self._get("payment_method", method_id)["id"]
            intent["status"] = "requires_confirmation"
        if confirm:
            if method_id is None:
                raise ApiError.invalid(
                    "You cannot confirm this PaymentIntent because it's missing a payment method.",
                    param="payment_method",
                    code="payment_intent_unexpected_state",
                )
            self._confirm(
                intent, method_id, off_session=off_session, return_url=params.text("return_url")
            )
        return self._render(intent, params)

    def _confirm_intent(self, params: Params, intent_id: str) -> Json:
        params.only({"payment_method", "return_url", "off_session", "expand"})
        intent = self._get("payment_intent", intent_id)
        if intent["status"] not in ("requires_payment_method", "requires_confirmation"):
            raise ApiError.invalid(
                "This PaymentIntent's payment_method could not be updated because it has a"
                f" status of {intent['status']}.",
                code="payment_intent_unexpected_state",
            )
        method_id = params.text("payment_method") or intent.get("payment_method")
        if not method_id:
            raise ApiError.invalid("Missing payment_method.", param="payment_method")
        self._confirm(
            intent,
            method_id,
            off_session=params.flag("off_session"),
            return_url=params.text("return_url"),
        )
        return self._render(intent, params)

    def _new_intent(
        self,
        *,
        amount: int,
        currency: str,
        customer: str | None,
        metadata: dict[str, str],
        description: str | None,
        setup_future_usage: str | None,
    ) -> Json:
        intent_id = new_id("pi_")
        return {
            "id": intent_id,
            "object": "payment_intent",
            "allowed_payment_method_types": ["card"],
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic_async",
            "client_secret": f"{intent_id}_secret_{new_id('', 25)}",
            "confirmation_method": "automatic",
            "created": int(time.time()),
            "currency": currency,
            "customer": customer,
            "description": description,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": metadata,
            "next_action": None,
            "payment_method": None,
            "payment_method_types": ["card"],
            "setup_future_usage": setup_future_usage,
            "status": "requires_payment_method",
        }

    def _confirm(
        self, intent: Json, method_id: str, *, off_session: bool, return_url: str | None
    ) -> None:
        """Confirm through the API: a card error is a 402 carrying the intent."""
        method = self._get("payment_method", method_id)
        if intent.get("customer") and method.get("customer") != intent["customer"]:
            if method.get("customer") is None:
                message = (
                    "The provided PaymentMethod was previously used with a PaymentIntent without"
                    " Customer attachment, shared with a connected account without Customer"
                    " attachment, or was detached from a Customer. It may not be used again. To"
                    " use a PaymentMethod multiple times, you must attach it to a Customer"
                    " first."
                )
            else:
                message = "The provided PaymentMethod belongs to another Customer."
            raise ApiError.invalid(message, param="payment_method")
        intent["payment_method"] = method_id
        if off_session and self._needs_authentication(method_id, off_session=True):
            self._fail_intent(intent, method, "authentication_required", "authentication_required")
        elif not off_session and self._needs_authentication(method_id, off_session=False):
            self._ask_authentication(intent, return_url)
            return
        else:
            self._collect(intent, method)
        error = intent["last_payment_error"]
        if intent["status"] == "requires_payment_method" and error is not None:
            raise ApiError(
                402,
                "card_error",
                error["message"],
                code=error["code"],
                decline_code=error.get("decline_code"),
                charge=error.get("charge"),
                payment_intent=copy.deepcopy(intent),
                payment_method=copy.deepcopy(method),
            )

    def _needs_authentication(self, method_id: str, *, off_session: bool) -> bool:
        authentication = self._cards[method_id].authentication
        if not off_session:
            return authentication != "none"
        return authentication == "always" or (
            authentication == "unless_set_up" and method_id not in self._set_up
        )

    def _ask_authentication(self, intent: Json, return_url: str | None) -> None:
        if return_url:
            url = (
                f"{self.base_url}/3d_secure_2/hosted?{urlencode({'payment_intent': intent['id']})}"
            )
            action: Json = {
                "type": "redirect_to_url",
                "redirect_to_url": {"url": url, "return_url": return_url},
            }
        else:
            action = {
                "type": "use_stripe_sdk",
                "use_stripe_sdk": {"type": "three_d_secure_redirect"},
            }
        intent.update(
            {"status": "requires_action", "next_action": action, "last_payment_error": None}
        )
        self._emit("payment_intent.requires_action", intent)

    def _collect(self, intent: Json, method: Json) -> None:
        """Charge the card: the intent ends ``succeeded`` or back at ``requires_payment_method``."""
        behaviour = self._cards[method["id"]]
        decline = behaviour.decline or behaviour.charge_decline
        charge = self._new_charge(intent, method, decline)
        intent.update(
            {"latest_charge": charge["id"], "payment_method": method["id"], "next_action": None}
        )
        if decline is not None:
            code, decline_code = decline
            self._fail_intent(intent, method, code, decline_code, charge=charge["id"])
            return
        intent.update(
            {"status": "succeeded", "amount_received": intent["amount"], "last_payment_error": None}
        )
        if intent.get("setup_future_usage") and intent.get("customer"):
            self._attach(method, intent["customer"])
        self._emit("charge.succeeded", charge)
        self._emit("payment_intent.succeeded", intent)

    def _fail_intent(
        self,
        intent: Json,
        method: Json,
        code: str,
        decline_code: str | None,
        *,
        charge: str | None = None,
        error_type: str = "card_error",
    ) -> None:
        error = {
            "type": error_type,
            "code": code,
            "decline_code": decline_code,
            "message": MESSAGES.get(decline_code or code, MESSAGES["generic_decline"]),
            "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
            "charge": charge,
            "payment_method": copy.deepcopy(method),
        }
        intent.update(
            {"status": "requires_payment_method", "last_payment_error": error, "next_action": None}
        )
        self._emit("payment_intent.payment_failed", intent)

    def _new_charge(self, intent: Json, method: Json, decline: tuple[str, str] | None) -> Json:
        paid = decline is None
        card = method["card"]
        charge = {
            "id": new_id("ch_"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"] if paid else 0,
            "amount_refunded": 0,
            "billing_details": copy.deepcopy(method["billing_details"]),
            "captured": paid,
            "created": int(time.time()),
            "currency": intent["currency"],
            "customer": intent.get("customer"),
            "description": intent.get("description"),
            "failure_code": decline[0] if decline else None,
            "failure_message": MESSAGES.get(decline[1], MESSAGES["generic_decline"])
            if decline
            else None,
            "livemode": False,
            # Stripe copies the intent's metadata onto the charge when it confirms.
            "metadata": dict(intent.get("metadata") or {}),
            "outcome": {
                "network_status": "approved_by_network" if paid else "declined_by_network",
                "reason": decline[1] if decline else None,
                "risk_level": "normal",
                "seller_message": "Payment complete."
                if paid
                else "The bank did not return any further details with this decline.",
                "type": "authorized" if paid else "issuer_declined",
            },
            "paid": paid,
            "payment_intent": intent["id"],
            "payment_method": method["id"],
            "payment_method_details": {
                "type": "card",
                "card": {
                    "brand": card["brand"],
                    "country": card["country"],
                    "exp_month": card["exp_month"],
                    "exp_year": card["exp_year"],
                    "funding": card["funding"],
                    "last4": card["last4"],
                    "network": card["brand"],
                },
            },
            "refunded": False,
            "status": "succeeded" if paid else "failed",
        }
        if not paid:
            self._emit("charge.failed", charge)
        return self._add(charge)

    def _attach(self, method: Json, customer: str) -> None:
        method["customer"] = customer
        self._set_up.add(method["id"])
        self._emit("payment_method.attached", method)

    # -- refunds -----------------------------------------------------------------------------------

    def _create_refund(self, params: Params) -> Json:
        params.only({"payment_intent", "charge", "amount", "reason", "metadata", "expand"})
        intent_id = params.text("payment_intent")
        if intent_id is not None:
            intent = self._get("payment_intent", intent_id)
            if intent["status"] != "succeeded" or not intent["latest_charge"]:
                raise ApiError.invalid(
                    f"This PaymentIntent ({intent_id}) does not have a successful charge to"
                    " refund.",
                    param="payment_intent",
                )
            charge = self._get("charge", intent["latest_charge"])
        else:
            charge = self._get("charge", params.required("charge"))
        remaining = charge["amount_captured"] - charge["amount_refunded"]
        if remaining <= 0:
            raise ApiError.invalid(
                f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
            )
        amount = params.integer("amount")
        if amount is None:
            amount = remaining
        if amount <= 0:
            raise ApiError.invalid("Invalid positive integer", param="amount")
        if amount > remaining:
            currency = charge["currency"]
            raise ApiError.invalid(
                f"Refund amount ({_format_amount(amount, currency)}) is greater than unrefunded"
                f" amount on charge ({_format_amount(remaining, currency)})",
                param="amount",
                code="amount_too_large",
            )
        reason = params.text("reason")
        if reason not in (None, "duplicate", "fraudulent", "requested_by_customer"):
            raise ApiError.invalid(f"Invalid reason: {reason}", param="reason")
        refund = self._add(
            {
                "id": new_id("re_"),
                "object": "refund",
                "amount": amount,
                "charge": charge["id"],
                "created": int(time.time()),
                "currency": charge["currency"],
                "metadata": params.metadata(),
                "payment_intent": charge["payment_intent"],
                "reason": reason,
                "status": "succeeded",
            }
        )
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
        self._emit("refund.created", refund)
        self._emit("charge.refunded", charge)
        return self._render(refund, params)

    # -- the hosted Checkout page ------------------------------------------------------------------

    def _submit_card(self, session_id: str, number: str, exp: str, cvc: str) -> Outcome:
        session = self._objects["checkout.session"].get(session_id)
        if session is None:
            raise LookupError(f"no Checkout Session {session_id}")
        self._expire_if_due(session)
        if session["status"] != "open":
            return Outcome("closed", message=_text(session, "closed"))
        digits = re.sub(r"[\s-]", "", number)
        if not digits.isdigit() or not 12 <= len(digits) <= 19 or not _luhn(digits):
            return Outcome("invalid", message=_text(session, "bad_number"), code="incorrect_number")
        expiry = _parse_expiry(exp)
        if expiry is None:
            return Outcome(
                "invalid", message=_text(session, "bad_expiry"), code="invalid_expiry_month"
            )
        today = date.today()
        if expiry < (today.year, today.month):
            return Outcome(
                "invalid", message=_text(session, "past_expiry"), code="invalid_expiry_year"
            )
        behaviour = TEST_CARDS.get(digits) or CardBehaviour(
            _brand_of(digits), decline=("card_declined", "test_mode_live_card")
        )
        if not re.fullmatch(r"\d{4}" if behaviour.brand == "amex" else r"\d{3}", cvc.strip()):
            return Outcome("invalid", message=_text(session, "bad_cvc"), code="invalid_cvc")
        setup = self._setups[session_id]
        if BLOCKABLE.get(behaviour.brand) in setup.brands_blocked:
            return Outcome(
                "invalid", message=_text(session, "brand_blocked"), code="card_brand_not_supported"
            )
        method = self._new_method(behaviour, digits, expiry, session)
        if session["mode"] == "setup":
            return self._attempt_setup(session, setup, method, authenticated=False)
        intent = self._session_intent(session, setup)
        intent["payment_method"] = method["id"]
        if self._needs_authentication(method["id"], off_session=False):
            self._ask_authentication(intent, None)
            setup.pending_method = method["id"]
            return Outcome("requires_action", payment_intent=intent["id"])
        self._collect(intent, method)
        return self._payment_outcome(session, intent)

    def _session_intent(self, session: Json, setup: _SessionSetup) -> Json:
        """The session's PaymentIntent: made at the first attempt, reused after a decline."""
        if session["payment_intent"]:
            intent: Json = self._objects["payment_intent"][session["payment_intent"]]
            return intent
        intent = self._new_intent(
            amount=session["amount_total"],
            currency=session["currency"],
            customer=session["customer"],
            metadata=dict(setup.intent_metadata),
            description=setup.intent_description,
            setup_future_usage=setup.setup_future_usage,
        )
        self._add(intent)
        self._emit("payment_intent.created", intent)
        session["payment_intent"] = intent["id"]
        return intent

    def _payment_outcome(self, session: Json, intent: Json) -> Outcome:
        if intent["status"] == "succeeded":
            session["payment_status"] = "paid"
            return self._complete(session, payment_intent=intent["id"])
        error = intent["last_payment_error"] or {}
        return Outcome(
            "declined",
            message=_decline_text(session, error.get("code"), error.get("decline_code")),
            code=error.get("code"),
            decline_code=error.get("decline_code"),
            payment_intent=intent["id"],
        )

    def _attempt_setup(
        self, session: Json, setup: _SessionSetup, method: Json, *, authenticated: bool
    ) -> Outcome:
        intent = self._session_setup_intent(session, setup)
        intent.update({"payment_method": method["id"], "last_setup_error": None})
        behaviour = self._cards[method["id"]]
        if behaviour.decline is not None:
            code, decline_code = behaviour.decline
            return self._fail_setup(session, intent, method, code, decline_code)
        if not authenticated and behaviour.authentication != "none":
            intent.update(
                {
                    "status": "requires_action",
                    "next_action": {
                        "type": "use_stripe_sdk",
                        "use_stripe_sdk": {"type": "three_d_secure_redirect"},
                    },
                }
            )
            setup.pending_method = method["id"]
            self._emit("setup_intent.requires_action", intent)
            return Outcome("requires_action", setup_intent=intent["id"])
        intent.update({"status": "succeeded", "next_action": None})
        if intent["customer"]:
            self._attach(method, intent["customer"])
        self._emit("setup_intent.succeeded", intent)
        return self._complete(session, setup_intent=intent["id"])

    def _fail_setup(
        self, session: Json, intent: Json, method: Json, code: str, decline_code: str | None
    ) -> Outcome:
        message = MESSAGES.get(decline_code or code, MESSAGES["generic_decline"])
        intent.update(
            {
                "status": "requires_payment_method",
                "next_action": None,
                "last_setup_error": {
                    "type": "card_error"
                    if code != "setup_intent_authentication_failure"
                    else "invalid_request_error",
                    "code": code,
                    "decline_code": decline_code,
                    "message": message,
                    "payment_method": copy.deepcopy(method),
                },
            }
        )
        self._emit("setup_intent.setup_failed", intent)
        return Outcome(
            "declined",
            message=_decline_text(session, code, decline_code),
            code=code,
            decline_code=decline_code,
            setup_intent=intent["id"],
        )

    def _session_setup_intent(self, session: Json, setup: _SessionSetup) -> Json:
        if session["setup_intent"]:
            existing: Json = self._objects["setup_intent"][session["setup_intent"]]
            return existing
        intent_id = new_id("seti_")
        intent = self._add(
            {
                "id": intent_id,
                "object": "setup_intent",
                "allowed_payment_method_types": ["card"],
                "client_secret": f"{intent_id}_secret_{new_id('', 25)}",
                "created": int(time.time()),
                "customer": session["customer"],
                "description": None,
                "last_setup_error": None,
                "livemode": False,
                "metadata": dict(setup.setup_metadata),
                "next_action": None,
                "payment_method": None,
                "payment_method_types": ["card"],
                "status": "requires_payment_method",
                "usage": "off_session",
            }
        )
        self._emit("setup_intent.created", intent)
        session["setup_intent"] = intent_id
        return intent

    def _complete(
        self, session: Json, *, payment_intent: str | None = None, setup_intent: str | None = None
    ) -> Outcome:
        customer = self._objects["customer"].get(session.get("customer") or "")
        email = (customer or {}).get("email") or session.get("customer_email")
        session.update(
            {
                "status": "complete",
                "url": None,
                "customer_details": {"email": email, "name": None, "phone": None},
            }
        )
        self._emit("checkout.session.completed", session)
        redirect = session["success_url"].replace(SESSION_PLACEHOLDER, session["id"])
        return Outcome(
            "succeeded",
            redirect_url=redirect,
            payment_intent=payment_intent,
            setup_intent=setup_intent,
        )

    def _authenticate_session(self, session_id: str, complete: bool) -> Outcome:
        session = self._objects["checkout.session"].get(session_id)
        setup = self._setups.get(session_id)
        if session is None or setup is None:
            raise LookupError(f"no Checkout Session {session_id}")
        self._expire_if_due(session)
        if session["status"] != "open" or setup.pending_method is None:
            return Outcome("closed", message=_text(session, "closed"))
        method = self._objects["payment_method"][setup.pending_method]
        setup.pending_method = None
        if session["mode"] == "setup":
            if complete:
                return self._attempt_setup(session, setup, method, authenticated=True)
            intent = self._session_setup_intent(session, setup)
            code = "setup_intent_authentication_failure"
            return self._fail_setup(session, intent, method, code, None)
        intent = self._session_intent(session, setup)
        if complete:
            self._collect(intent, method)
        else:
            code = "payment_intent_authentication_failure"
            self._fail_intent(intent, method, code, None, error_type="invalid_request_error")
        return self._payment_outcome(session, intent)

    def _authenticate_intent(self, intent_id: str, complete: bool) -> Outcome:
        intent = self._objects["payment_intent"].get(intent_id)
        if intent is None:
            raise LookupError(f"no PaymentIntent {intent_id}")
        action = intent.get("next_action") or {}
        if intent["status"] != "requires_action" or action.get("type") != "redirect_to_url":
            return Outcome("closed", message="This authentication page is no longer active.")
        return_url = action["redirect_to_url"]["return_url"]
        method = self._objects["payment_method"][intent["payment_method"]]
        if complete:
            self._collect(intent, method)
        else:
            code = "payment_intent_authentication_failure"
            self._fail_intent(intent, method, code, None, error_type="invalid_request_error")
        succeeded = intent["status"] == "succeeded"
        redirect = _with_query(
            return_url,
            {
                "payment_intent": intent["id"],
                "payment_intent_client_secret": intent["client_secret"],
                "redirect_status": "succeeded" if succeeded else "failed",
            },
        )
        error = intent["last_payment_error"] or {}
        return Outcome(
            "succeeded" if succeeded else "declined",
            redirect_url=redirect,
            message=error.get("message"),
            code=error.get("code"),
            decline_code=error.get("decline_code"),
            payment_intent=intent["id"],
        )

    def _new_method(
        self, behaviour: CardBehaviour, number: str, expiry: tuple[int, int], session: Json
    ) -> Json:
        year, month = expiry
        method = self._add(
            {
                "id": new_id("pm_"),
                "object": "payment_method",
                "allow_redisplay": "unspecified",
                "billing_details": {
                    "address": None,
                    "email": (session.get("customer_details") or {}).get("email"),
                    "name": None,
                    "phone": None,
                },
                "card": {
                    "brand": behaviour.brand,
                    "checks": {"cvc_check": "pass"},
                    "country": "US",
                    "display_brand": behaviour.brand,
                    "exp_month": month,
                    "exp_year": year,
                    "fingerprint": hashlib.sha256(number.encode()).hexdigest()[:16],
                    "funding": behaviour.funding,
                    "last4": number[-4:],
                    "networks": {"available": [behaviour.brand], "preferred": None},
                    "three_d_secure_usage": {"supported": True},
                    "wallet": None,
                },
                "created": int(time.time()),
                "customer": None,
                "livemode": False,
                "metadata": {},
                "type": "card",
            }
        )
        self._cards[method["id"]] = behaviour
        return method

    def _handle_checkout_page(self, handler: _Handler, method: str, rest: str) -> None:
        session_id, _, action = rest.partition("/")
        with self._lock:
            session = self._objects["checkout.session"].get(session_id)
            if session is None:
                handler.send_text(404, _page("Stripe", "<p>This page does not exist.</p>"), HTML)
                return
            if method == "GET" and not action:
                self._expire_if_due(session)
                handler.send_text(200, _checkout_page(session, self._setups[session_id]), HTML)
                return
            if method != "POST" or action not in ("", "authenticate"):
                handler.send_text(405, _page("Stripe", "<p>Method not allowed.</p>"), HTML)
                return
            form = handler.read_form()
            if action == "authenticate":
                outcome = self._authenticate_session(session_id, form.get("outcome") == "complete")
            else:
                outcome = self._submit_card(
                    session_id,
                    form.get("cardNumber", ""),
                    form.get("cardExpiry", ""),
                    form.get("cardCvc", ""),
                )
            setup = self._setups[session_id]
        if outcome.status == "succeeded" and outcome.redirect_url:
            handler.send_body(303, b"", "text/plain", {"Location": outcome.redirect_url})
        elif outcome.status == "requires_action":
            handler.send_text(200, _three_d_secure_page(f"/c/pay/{session_id}/authenticate"), HTML)
        else:
            page = _checkout_page(
                session, setup, error=outcome.message, number=form.get("cardNumber")
            )
            handler.send_text(200, page, HTML)

    def _handle_3ds_page(self, handler: _Handler, method: str, query: dict[str, str]) -> None:
        intent_id = query.get("payment_intent", "")
        with self._lock:
            intent = self._objects["payment_intent"].get(intent_id)
            if intent is None:
                handler.send_text(404, _page("Stripe", "<p>This page does not exist.</p>"), HTML)
                return
            if method == "GET":
                action = _with_query("/3d_secure_2/hosted", {"payment_intent": intent_id})
                handler.send_text(200, _three_d_secure_page(action), HTML)
                return
            outcome = self._authenticate_intent(
                intent_id, handler.read_form().get("outcome") == "complete"
            )
        if outcome.redirect_url:
            handler.send_body(303, b"", "text/plain", {"Location": outcome.redirect_url})
        else:
            page = _page("Stripe", f"<p>{html.escape(outcome.message or '')}</p>")
            handler.send_text(410, page, HTML)

    # -- webhooks ----------------------------------------------------------------------------------

    def _emit(self, event_type: str, obj: Json) -> None:
        request = getattr(self._context, "request", None)
        event: Json = {
            "id": new_id("evt_"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "data": {"object": copy.deepcopy(obj)},
            "livemode": False,
            "pending_webhooks": 1 if self.webhook_url else 0,
            "request": dict(request) if request else {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        self._events.append(event)
        if not self.webhook_url:
            return
        copies = 2 if self.webhook_duplicates else 1
        with self._deliveries_changed:
            for n in range(copies):
                self._seq += 1
                due = time.monotonic() + self.webhook_delay + 0.05 * n
                heapq.heappush(self._queue, _Queued(due, self._seq, event))
            self._deliveries_changed.notify_all()

    def _deliver_loop(self) -> None:
        while True:
            with self._deliveries_changed:
                while not self.stopping.is_set():
                    now = time.monotonic()
                    if self._queue and self._queue[0].due <= now:
                        break
                    wait = self._queue[0].due - now if self._queue else None
                    self._deliveries_changed.wait(wait)
                if self.stopping.is_set():
                    return
                item = heapq.heappop(self._queue)
            delivery = self._deliver(item)
            with self._deliveries_changed:
                self._deliveries.append(delivery)
                failed = delivery.status is None or not 200 <= delivery.status < 300
                if failed and item.attempt < self.webhook_attempts:
                    self._seq += 1
                    due = time.monotonic() + 2 ** (item.attempt - 1)
                    heapq.heappush(
                        self._queue, _Queued(due, self._seq, item.event, item.attempt + 1)
                    )
                self._deliveries_changed.notify_all()

    def _deliver(self, item: _Queued) -> Delivery:
        assert self.webhook_url is not None
        body = json.dumps(item.event, indent=2).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature_header(body, self.webhook_secret),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        request = urllib.request.Request(
            self.webhook_url, data=body, headers=headers, method="POST"
        )
        event_id, event_type = item.event["id"], item.event["type"]
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, error = response.status, None
        except urllib.error.HTTPError as refused:
            status, error = refused.code, refused.reason
            refused.close()
        except OSError as exc:
            status, error = None, str(exc)
        log.info("webhook %s %s -> %s", event_type, event_id, status or error)
        return Delivery(event_id, event_type, item.attempt, body, headers, status, error)


def _parse_expiry(text: str) -> tuple[int, int] | None:
    """``MM/YY`` (spaces allowed) or ``MM/YYYY`` as ``(year, month)``."""
    match = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{2}|\d{4})\s*", text)
    if match is None:
        return None
    month, year = int(match.group(1)), int(match.group(2))
    if not 1 <= month <= 12:
        return None
    return (2000 + year if year < 100 else year, month)


# -- pages -----------------------------------------------------------------------------------------

_TEXTS = {
    "en": {
        "title": "Pay",
        "setup_title": "Save a card",
        "test_mode": "Test mode",
        "back": "Back",
        "number": "Card number",
        "expiry": "Expiration date (MM / YY)",
        "cvc": "Security code (CVC)",
        "pay": "Pay {amount}",
        "save": "Save card",
        "test_cards": "Test cards",
        "closed": "This Checkout Session is no longer active.",
        "complete": "This payment is complete.",
        "bad_number": "Your card number is invalid.",
        "bad_expiry": "Your card's expiration date is incomplete.",
        "past_expiry": "Your card's expiration year is in the past.",
        "bad_cvc": "Your card's security code is incomplete.",
        "brand_blocked": "This card brand is not accepted. Please use a different card.",
        "declined": "Your card was declined.",
        "insufficient_funds": "Your card has insufficient funds.",
        "expired_card": "Your card has expired.",
        "authentication_failed": MESSAGES["payment_intent_authentication_failure"],
        "live_card": "Your card was declined. Use a test card in test mode.",
    },
    "pl": {
        "title": "Zapłać",
        "setup_title": "Zapisz kartę",
        "test_mode": "Tryb testowy",
        "back": "Wróć",
        "number": "Numer karty",
        "expiry": "Data ważności (MM / RR)",
        "cvc": "Kod bezpieczeństwa (CVC)",
        "pay": "Zapłać {amount}",
        "save": "Zapisz kartę",
        "test_cards": "Karty testowe",
        "closed": "Ta sesja płatności nie jest już aktywna.",
        "complete": "Ta płatność została zakończona.",
        "bad_number": "Numer karty jest nieprawidłowy.",
        "bad_expiry": "Data ważności karty jest niepełna.",
        "past_expiry": "Rok ważności karty już minął.",
        "bad_cvc": "Kod bezpieczeństwa karty jest niepełny.",
        "brand_blocked": "Karty tego wydawcy nie są akceptowane. Użyj innej karty.",
        "declined": "Twoja karta została odrzucona.",
        "insufficient_funds": "Na karcie brakuje środków.",
        "expired_card": "Karta straciła ważność.",
        "authentication_failed": (
            "Nie udało się uwierzytelnić płatności. Wybierz inną metodę płatności i spróbuj"
            " ponownie."
        ),
        "live_card": "Karta została odrzucona. W trybie testowym użyj karty testowej.",
    },
}

_STYLE = """
body{font-family:system-ui,sans-serif;background:#f6f9fc;color:#1a1f36;margin:0}
main{max-width:26rem;margin:2rem auto;background:#fff;padding:2rem;border-radius:8px;
box-shadow:0 2px 8px rgba(0,0,0,.08)}
.test-mode{display:inline-block;background:#ffde92;color:#a04100;font-size:.75rem;
font-weight:600;text-transform:uppercase;padding:.1rem .4rem;border-radius:4px}
.amount{font-size:2rem;font-weight:600;margin:.25rem 0 1.5rem}
label{display:block;font-size:.875rem;margin:1rem 0 .25rem}
input{width:100%;box-sizing:border-box;font-size:1rem;padding:.6rem;border:1px solid #cfd7df;
border-radius:6px}
button{width:100%;margin-top:1.5rem;padding:.8rem;font-size:1rem;font-weight:600;color:#fff;
background:#635bff;border:0;border-radius:6px;cursor:pointer}
button.secondary{background:#fff;color:#1a1f36;border:1px solid #cfd7df}
.error{color:#df1b41;background:#fff0f3;padding:.6rem;border-radius:6px}
details{margin-top:1.5rem;font-size:.85rem;color:#697386}
"""


def _decline_text(session: Json, code: str | None, decline_code: str | None) -> str:
    """What Checkout shows for a decline, in the session's language."""
    key = {
        "insufficient_funds": "insufficient_funds",
        "expired_card": "expired_card",
        "test_mode_live_card": "live_card",
        "payment_intent_authentication_failure": "authentication_failed",
        "setup_intent_authentication_failure": "authentication_failed",
    }.get(decline_code or code or "", "declined")
    return _text(session, key)


def _text(session: Json | None, key: str) -> str:
    locale = (session or {}).get("locale") or "en"
    return _TEXTS.get(locale, _TEXTS["en"])[key]


def _page(title: str, body: str, language: str = "en") -> str:
    return (
        f'<!doctype html>\n<html lang="{language}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _checkout_page(
    session: Json, setup: _SessionSetup, *, error: str | None = None, number: str | None = None
) -> str:
    language = session.get("locale") if session.get("locale") in _TEXTS else "en"
    assert isinstance(language, str)
    text = _TEXTS[language]
    esc = html.escape
    parts = [f'<p class="test-mode">{esc(text["test_mode"])}</p>']
    if session.get("cancel_url") and session["status"] == "open":
        parts.append(f'<p><a href="{esc(session["cancel_url"])}">← {esc(text["back"])}</a></p>')
    paying = session["mode"] == "payment"
    if paying:
        amount = _format_amount(session["amount_total"], session["currency"], language)
        parts.append(f"<h1>{esc(setup.name)}</h1>")
        parts.append(f'<p class="amount">{esc(amount)}</p>')
        submit = text["pay"].format(amount=amount)
    else:
        parts.append(f"<h1>{esc(text['setup_title'])}</h1>")
        submit = text["save"]
    if session["status"] != "open":
        key = "complete" if session["status"] == "complete" else "closed"
        parts.append(f"<p>{esc(text[key])}</p>")
        return _page(text["title"], "\n".join(parts), language)
    if error:
        parts.append(f'<p class="error" role="alert">{esc(error)}</p>')
    value = f' value="{esc(number)}"' if number else ""
    parts.append(
        f'<form method="post" action="/c/pay/{esc(session["id"])}">\n'
        f'<label for="cardNumber">{esc(text["number"])}</label>\n'
        f'<input id="cardNumber" name="cardNumber" inputmode="numeric" autocomplete="cc-number"'
        f' placeholder="1234 1234 1234 1234" required{value}>\n'
        f'<label for="cardExpiry">{esc(text["expiry"])}</label>\n'
        '<input id="cardExpiry" name="cardExpiry" autocomplete="cc-exp" placeholder="MM / YY"'
        " required>\n"
        f'<label for="cardCvc">{esc(text["cvc"])}</label>\n'
        '<input id="cardCvc" name="cardCvc" inputmode="numeric" autocomplete="cc-csc"'
        ' placeholder="CVC" required>\n'
        f'<button type="submit">{esc(submit)}</button>\n</form>'
    )
    cards = "".join(
        f"<li><code>{n}</code> {esc(_describe_card(b))}</li>" for n, b in TEST_CARDS.items()
    )
    parts.append(f"<details><summary>{esc(text['test_cards'])}</summary><ul>{cards}</ul></details>")
    return _page(text["title"], "\n".join(parts), language)


def _describe_card(behaviour: CardBehaviour) -> str:
    notes = [behaviour.brand, behaviour.funding]
    if behaviour.authentication != "none":
        notes.append(f"3-D Secure ({behaviour.authentication})")
    failure = behaviour.decline or behaviour.charge_decline
    if failure is not None:
        notes.append(f"declined: {failure[1]}")
    return ", ".join(notes)


def _three_d_secure_page(action: str) -> str:
    """Stripe's 3-D Secure test page is in English whatever the locale; so is this one."""
    body = (
        '<p class="test-mode">Test mode</p>\n<h1>3D Secure 2 Test Page</h1>\n'
        "<p>Complete or fail this test authentication.</p>\n"
        f'<form method="post" action="{html.escape(action)}">\n'
        '<button type="submit" name="outcome" value="complete">Complete authentication</button>\n'
        '<button type="submit" name="outcome" value="fail" class="secondary">'
        "Fail authentication</button>\n</form>"
    )
    return _page("3D Secure 2 Test Page", body)


# -- command line ----------------------------------------------------------------------------------


@contextmanager
def _signals_stop(stop: threading.Event) -> Iterator[None]:
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pakiet_stripe.emulator",
        description="Serve the Stripe API subset and hosted pages that pakiet_stripe uses.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--api-key", default="sk_test_emulator")
    parser.add_argument("--webhook-secret", default="whsec_emulator")
    parser.add_argument("--webhook-url", help="where to POST signed webhooks")
    parser.add_argument("--webhook-delay", type=float, default=0.0, help="seconds before each")
    parser.add_argument("--webhook-duplicates", action="store_true", help="send each twice")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each API call")
    parser.add_argument("--quiet", action="store_true", help="log only warnings")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s stripe-emulator %(message)s",
    )
    emulator = StripeEmulator(
        api_key=args.api_key,
        webhook_secret=args.webhook_secret,
        webhook_url=args.webhook_url,
        webhook_delay=args.webhook_delay,
        webhook_duplicates=args.webhook_duplicates,
        host=args.host,
        port=args.port,
        latency=args.latency,
    )
    stop = threading.Event()
    with _signals_stop(stop), emulator:
        print(f"Stripe emulator at {emulator.base_url}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
