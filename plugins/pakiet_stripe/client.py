"""Cards through Stripe, with the official ``stripe`` SDK.

Customer payments go through a hosted Checkout Session; renewals charge the saved card with
an off-session PaymentIntent. Every POST carries an idempotency key derived from core's key,
so a retried call (by the SDK or by core) never collects twice. The same code talks to
api.stripe.com or, with ``api_base`` pointed at it, to :mod:`pakiet_stripe.emulator`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import stripe
from stripe.params import PaymentIntentCreateParams
from stripe.params.checkout import SessionCreateParams

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
from portal.rules.money import Money, minor_units

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_API_BASE = "https://api.stripe.com"
# Checkout's pages, and where 3-D Secure authentication (next_action.redirect_to_url) starts.
STRIPE_PAGES = frozenset({"https://checkout.stripe.com", "https://hooks.stripe.com"})
DEFAULT_TIMEOUT = 10
DEFAULT_RETRIES = 2
DEFAULT_WEBHOOK_TOLERANCE = 300

# R8 accepts Visa and Mastercard. Checkout can block only these two of the other brands; it
# refuses them on its own page, before anything is charged. Anything else that slips through
# (JCB, UnionPay) reaches core with its brand, not among the renewable_brands declared
# below, and core refunds it.
BLOCKED_BRANDS = ["american_express", "discover_global_network"]

BRAND_NAMES = {
    "visa": "Visa",
    "mastercard": "Mastercard",
    "amex": "American Express",
    "discover": "Discover",
    "diners": "Diners Club",
    "jcb": "JCB",
    "unionpay": "UnionPay",
}

LABELS = {"pl": "Karta płatnicza (Visa, Mastercard)", "en": "Card (Visa, Mastercard)"}

# Stripe's unit for ``amount`` is not always ISO 4217's minor unit (docs.stripe.com/currencies).
_STRIPE_ZERO_DECIMAL = frozenset(
    "BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split()
)
_STRIPE_THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())
# Stripe wants two-decimal amounts for these although ISO gives them fewer (or payouts differ).
_STRIPE_SPECIAL = frozenset("ISK HUF TWD".split())

# Checkout replaces this placeholder in success_url with the session's id.
SESSION_PLACEHOLDER = "{CHECKOUT_SESSION_ID}"


def stripe_exponent(currency: str) -> int:
    """The number of decimals Stripe's API uses for ``amount`` in ``currency``."""
    code = currency.upper()
    if code in _STRIPE_ZERO_DECIMAL:
        return 0
    if code in _STRIPE_THREE_DECIMAL:
        return 3
    return 2


def to_stripe_amount(amount: Money) -> int:
    """``amount`` in Stripe's integer unit; refused where Stripe's unit is not ISO's."""
    _check_units(amount.currency)
    return amount.minor


def from_stripe_amount(value: int | None, currency: str | None) -> Money:
    """Stripe's integer ``amount`` and lower-case ``currency`` as :class:`Money`."""
    if value is None or currency is None:
        raise ProviderError("Stripe answered without an amount or currency", code="bad_response")
    code = currency.upper()
    _check_units(code)
    return Money(value, code)


def _check_units(currency: str) -> None:
    if currency in _STRIPE_SPECIAL or stripe_exponent(currency) != minor_units(currency):
        raise ProviderError(
            f"{currency}: Stripe's amount unit differs from ISO 4217; not supported",
            code="currency_not_supported",
        )


def hosted_origins(api_base: str) -> frozenset[str]:
    """Where Stripe sends customers: Checkout, and the 3-D Secure pages. An emulator (any
    other ``api_base``) serves both from its own origin."""
    if api_base == DEFAULT_API_BASE:
        return STRIPE_PAGES
    parts = urlsplit(api_base)
    return frozenset({f"{parts.scheme}://{parts.netloc}".lower()})


def with_session_placeholder(url: str) -> str:
    """``url`` with ``session_id={CHECKOUT_SESSION_ID}`` added to its query.

    The braces must reach Stripe literally, so the parameter is appended, not urlencoded.
    """
    parts = urlsplit(url)
    param = f"session_id={SESSION_PLACEHOLDER}"
    query = f"{parts.query}&{param}" if parts.query else param
    return urlunsplit(parts._replace(query=query))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by case-insensitive name (Flask's headers are, a plain dict is not)."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def _metadata(obj: stripe.StripeObject | None, key: str = "payment_id") -> str | None:
    metadata = getattr(obj, "metadata", None)
    if metadata is None or key not in metadata:
        return None
    value = metadata[key]
    return value if isinstance(value, str) else None


def _timed_out(exc: BaseException) -> bool:
    """Whether a timeout anywhere in the exception chain caused ``exc``."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TimeoutError) or "Timeout" in type(seen).__name__:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class StripeProvider(PaymentProvider):
    """Visa and Mastercard through Stripe Checkout and off-session PaymentIntents."""

    name = "stripe"
    currencies = frozenset({"PLN", "EUR", "USD", "CZK"})
    saves_methods = True
    renewable_brands = frozenset({"visa", "mastercard"})  # R8

    def __init__(self, config: Mapping[str, Any]) -> None:
        api_key = config.get("api_key")
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("PLUGIN_CONFIG['stripe']['api_key'] must be a Stripe secret key")
        secret = config.get("webhook_secret")
        if secret is not None and not isinstance(secret, str):
            raise ValueError("PLUGIN_CONFIG['stripe']['webhook_secret'] must be a string")
        self.api_base = str(config.get("api_base") or DEFAULT_API_BASE).rstrip("/")
        self.hosted_origins = hosted_origins(self.api_base)
        self.timeout = float(config.get("timeout", DEFAULT_TIMEOUT))
        self.webhook_secret = secret or None
        self.webhook_tolerance = int(config.get("webhook_tolerance", DEFAULT_WEBHOOK_TOLERANCE))
        retries = int(config.get("max_network_retries", DEFAULT_RETRIES))
        # The SDK otherwise writes an id to ~/.config/stripe and reports the platform and
        # request timings to Stripe with every call; a billing portal should not.
        stripe.enable_telemetry = False
        self._http = stripe.RequestsClient(timeout=self.timeout)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": self.api_base},
            http_client=self._http,
            max_network_retries=retries,
        )

    def close(self) -> None:
        """Close the HTTP session of the calling thread."""
        self._http.close()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated

    # -- presentation ------------------------------------------------------------------------------

    def label(self, language: str) -> str:
        return LABELS.get(language, LABELS["en"])

    def describe(self, method: SavedMethod, language: str) -> str:
        """``Visa •••• 4242 (12/2030)``: the brand's own spelling, not ``str.title()``."""
        parts = [BRAND_NAMES.get(method.brand, method.brand.title())]
        if method.last4:
            parts.append(f"•••• {method.last4}")
        if method.exp_month and method.exp_year:
            parts.append(f"({method.exp_month:02d}/{method.exp_year})")
        return " ".join(parts)

    # -- customer payments: Checkout ---------------------------------------------------------------

    def start_payment(self, request: PaymentRequest) -> Redirect:
        if request.amount.currency not in self.currencies:
            raise ProviderError(
                f"Stripe is not set up for {request.amount.currency}",
                code="currency_not_supported",
            )
        unit_amount = to_stripe_amount(request.amount)
        customer = request.customer_ref or self._create_customer(
            email=request.customer_email,
            language=request.language,
            idempotency_key=f"{request.idempotency_key}:customer",
        )
        metadata = {"payment_id": request.payment_id}
        params: SessionCreateParams = {
            "mode": "payment",
            "customer": customer,
            "client_reference_id": request.payment_id,
            "metadata": metadata,
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": request.amount.currency.lower(),
                        "unit_amount": unit_amount,
                        "product_data": {"name": request.description},
                    },
                }
            ],
            "payment_intent_data": {
                "description": request.description,
                # On the intent (and so on its charge), where webhooks about it can read it.
                "metadata": metadata,
            },
            "allowed_payment_method_types": ["card"],
            "payment_method_options": {
                "card": {"restrictions": {"brands_blocked": BLOCKED_BRANDS}}
            },
            "success_url": with_session_placeholder(request.return_url),
            "cancel_url": request.cancel_url,
            "locale": _locale(request.language),
        }
        if request.save_method:
            params["payment_intent_data"]["setup_future_usage"] = "off_session"
        session = self._call(
            "creating a Checkout Session",
            lambda: self._client.v1.checkout.sessions.create(
                params, options={"idempotency_key": f"{request.idempotency_key}:checkout"}
            ),
        )
        if not session.url:
            raise ProviderError(
                "Stripe created a Checkout Session without a URL", code="bad_response"
            )
        return Redirect(url=session.url, provider_ref=session.id)

    def complete_return(self, *, provider_ref: str, params: Mapping[str, str]) -> PaymentEvent:
        """Read the attempt's state from Stripe; the query ``params`` are not trusted.

        ``provider_ref`` is a Checkout Session (``cs_``) or, after :meth:`charge_saved` asked
        for authentication, a PaymentIntent (``pi_``; while it still waits for the customer,
        the same REQUIRES_ACTION event comes back). An attempt that is neither paid nor over
        yet raises ``ProviderError(code="pending", retryable=True)``: show "payment pending"
        and wait for the webhook.
        """
        if provider_ref.startswith("pi_"):
            intent = self._retrieve_intent(provider_ref)
            event = self._intent_event(intent, event_id=None)
        elif provider_ref.startswith("cs_"):
            session = self._retrieve_session(provider_ref, "payment_intent")
            if session.mode != "payment":
                raise ProviderError(f"{provider_ref} is not a payment", code="wrong_mode")
            event = self._session_event(session, event_id=None)
        else:
            raise ProviderError(f"not a Stripe payment reference: {provider_ref!r}")
        if event is None:
            raise ProviderError(
                f"Stripe has not settled {provider_ref} yet", code="pending", retryable=True
            )
        return event

    def cancel(self, *, provider_ref: str) -> PaymentEvent:
        """Expire an open Checkout Session so that it can no longer be paid.

        Without it, a session the customer left through ``cancel_url`` stays payable at
        Stripe for up to 24 hours. When the session was paid in the meantime, its SUCCEEDED
        event comes back instead of FAILED.
        """
        try:
            self._client.v1.checkout.sessions.expire(
                provider_ref, options={"idempotency_key": f"expire:{provider_ref}"}
            )
        except stripe.InvalidRequestError as exc:
            if exc.code != "checkout_session_not_open":
                raise self._provider_error("expiring a Checkout Session", exc) from exc
        except stripe.StripeError as exc:
            raise self._provider_error("expiring a Checkout Session", exc) from exc
        return self.complete_return(provider_ref=provider_ref, params={})

    # -- off-session charges -----------------------------------------------------------------------

    def charge_saved(self, request: PaymentRequest, method: SavedMethod) -> PaymentEvent:
        """Charge ``method`` off-session.

        When the bank insists on authentication, the intent is confirmed again on-session with
        ``request.return_url``: Stripe then answers with a hosted 3-D Secure page
        (``next_action.redirect_to_url``), returned as ``action_url``. The customer comes back
        to ``return_url?payment_intent=pi_...``; :meth:`complete_return` with that
        ``pi_`` reference reports the outcome.
        """
        if not method.customer_ref:
            raise ProviderError("a saved Stripe card needs its customer", code="no_customer")
        params: PaymentIntentCreateParams = {
            "amount": to_stripe_amount(request.amount),
            "currency": request.amount.currency.lower(),
            "customer": method.customer_ref,
            "payment_method": method.provider_ref,
            "allowed_payment_method_types": ["card"],
            "off_session": True,
            "confirm": True,
            "description": request.description,
            "metadata": {"payment_id": request.payment_id},
            "expand": ["payment_method"],
        }
        try:
            intent = self._client.v1.payment_intents.create(
                params, options={"idempotency_key": request.idempotency_key}
            )
        except stripe.CardError as exc:
            return self._declined_off_session(exc, request, method)
        except stripe.StripeError as exc:
            raise self._provider_error("charging a saved card", exc) from exc
        event = self._intent_event(intent, event_id=None)
        if event is None:
            raise ProviderError(
                f"Stripe has not settled {intent.id} yet", code="pending", retryable=True
            )
        return event

    def _declined_off_session(
        self, exc: stripe.CardError, request: PaymentRequest, method: SavedMethod
    ) -> PaymentEvent:
        intent = exc.error.payment_intent if exc.error is not None else None
        if intent is None:
            raise self._provider_error("charging a saved card", exc) from exc
        if exc.code != "authentication_required":
            return _declined(intent.id, request.payment_id, exc)
        try:
            confirmed = self._client.v1.payment_intents.confirm(
                intent.id,
                {
                    "payment_method": method.provider_ref,
                    "return_url": request.return_url,
                    "expand": ["payment_method"],
                },
                options={"idempotency_key": f"{request.idempotency_key}:authenticate"},
            )
        except stripe.CardError as again:
            return _declined(intent.id, request.payment_id, again)
        except stripe.StripeError as other:
            raise self._provider_error("asking Stripe for a 3-D Secure page", other) from other
        event = self._intent_event(confirmed, event_id=None)
        if event is None:
            raise ProviderError(
                f"Stripe gave no authentication page for {intent.id}",
                code="pending",
                retryable=True,
            )
        return event

    # -- refunds -----------------------------------------------------------------------------------

    def refund(self, *, charge_ref: str, amount: Money, idempotency_key: str) -> PaymentEvent:
        """Refund part or all of the PaymentIntent ``charge_ref``.

        Stripe's refund takes no currency, so the intent is read first: a refund in the wrong
        currency is refused here instead of being sent as a number of the charge's units.
        """
        intent = self._call(
            "reading the payment to refund",
            lambda: self._client.v1.payment_intents.retrieve(charge_ref),
        )
        charged = from_stripe_amount(intent.amount, intent.currency)
        if charged.currency != amount.currency:
            raise ProviderError(
                f"{charge_ref} was charged in {charged.currency}, not {amount.currency}",
                code="currency_mismatch",
            )
        refund = self._call(
            "refunding",
            lambda: self._client.v1.refunds.create(
                {
                    "payment_intent": charge_ref,
                    "amount": to_stripe_amount(amount),
                    "expand": ["charge"],
                },
                options={"idempotency_key": idempotency_key},
            ),
        )
        if refund.status in ("failed", "canceled"):
            raise ProviderError(
                f"Stripe could not refund {charge_ref}: {refund.failure_reason or refund.status}",
                code=refund.failure_reason or refund.status,
            )
        charge = refund.charge
        if not isinstance(charge, stripe.Charge):
            raise ProviderError("Stripe answered a refund without its charge", code="bad_response")
        return PaymentEvent(
            event_id=f"refund:{refund.id}",
            kind=PaymentEventKind.REFUNDED,
            payment_id=_metadata(charge),
            provider_ref=charge_ref,
            amount=from_stripe_amount(charge.amount_refunded, charge.currency),
            charge_ref=charge_ref,
        )

    # -- webhooks ----------------------------------------------------------------------------------

    def parse_webhook(self, *, body: bytes, headers: Mapping[str, str]) -> PaymentEvent | None:
        """Verify ``Stripe-Signature`` and translate the event.

        Payment events are completed from the API (the card's brand and the current refund
        total are not all in the payload), so this may raise a retryable
        :class:`ProviderError`; answer it with a 5xx and Stripe sends the event again.
        """
        if not self.webhook_secret:
            raise WebhookRejected("no webhook_secret is configured for Stripe")
        signature = _header(headers, "Stripe-Signature")
        try:
            event = self._client.construct_event(
                body, signature, self.webhook_secret, tolerance=self.webhook_tolerance
            )
        except (stripe.SignatureVerificationError, ValueError) as exc:
            # ValueError: a body that is not UTF-8 JSON, or not an event.
            raise WebhookRejected(f"Stripe webhook refused: {exc}") from exc
        return self._webhook_event(event)

    def _webhook_event(self, event: stripe.Event) -> PaymentEvent | None:
        obj = event.data.object
        kind = event.type
        if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
            if not isinstance(obj, stripe.checkout.Session) or obj.mode != "payment":
                return None
            if obj.payment_status != "paid":
                return None  # an asynchronous method; async_payment_* follows
            live = self._retrieve_session(obj.id, "payment_intent")
            return self._session_event(live, event_id=event.id)
        if kind in ("checkout.session.expired", "checkout.session.async_payment_failed"):
            if not isinstance(obj, stripe.checkout.Session) or obj.mode != "payment":
                return None
            return PaymentEvent(
                event_id=event.id,
                kind=PaymentEventKind.FAILED,
                payment_id=_metadata(obj) or obj.client_reference_id,
                provider_ref=obj.id,
                failure_code="expired" if kind.endswith("expired") else "async_payment_failed",
            )
        if kind == "payment_intent.succeeded" and isinstance(obj, stripe.PaymentIntent):
            return self._intent_event(self._retrieve_intent(obj.id), event_id=event.id)
        if kind == "payment_intent.payment_failed" and isinstance(obj, stripe.PaymentIntent):
            error = obj.last_payment_error
            if error is not None and error.code == "authentication_required":
                # charge_saved has already turned this into REQUIRES_ACTION with a page.
                return None
            return self._intent_event(obj, event_id=event.id)
        if kind == "charge.refunded" and isinstance(obj, stripe.Charge):
            # Deliveries can arrive out of order: report the refund total as it is now.
            charge = self._call("reading a refunded charge", lambda: self._retrieve_charge(obj.id))
            intent_id = _id(charge.payment_intent)
            return PaymentEvent(
                event_id=event.id,
                kind=PaymentEventKind.REFUNDED,
                payment_id=_metadata(charge),
                provider_ref=intent_id,
                amount=from_stripe_amount(charge.amount_refunded, charge.currency),
                charge_ref=intent_id,
            )
        return None

    # -- saving a card without paying --------------------------------------------------------------

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
        customer = customer_ref or self._create_customer(
            email=customer_email, language=language, idempotency_key=f"{idempotency_key}:customer"
        )
        params: SessionCreateParams = {
            "mode": "setup",
            "customer": customer,
            "allowed_payment_method_types": ["card"],
            "payment_method_options": {
                "card": {"restrictions": {"brands_blocked": BLOCKED_BRANDS}}
            },
            "success_url": with_session_placeholder(return_url),
            "cancel_url": cancel_url,
            "locale": _locale(language),
        }
        session = self._call(
            "creating a Checkout Session to save a card",
            lambda: self._client.v1.checkout.sessions.create(
                params, options={"idempotency_key": f"{idempotency_key}:setup"}
            ),
        )
        if not session.url:
            raise ProviderError(
                "Stripe created a Checkout Session without a URL", code="bad_response"
            )
        return Redirect(url=session.url, provider_ref=session.id)

    def complete_setup(self, *, provider_ref: str, params: Mapping[str, str]) -> SavedMethod:
        session = self._retrieve_session(provider_ref, "setup_intent")
        if session.mode != "setup":
            raise ProviderError(f"{provider_ref} does not save a card", code="wrong_mode")
        if session.status == "expired":
            raise ProviderError(f"{provider_ref} expired before a card was saved", code="expired")
        intent = session.setup_intent
        if session.status != "complete" or not isinstance(intent, stripe.SetupIntent):
            raise ProviderError(
                f"no card is saved through {provider_ref} yet", code="pending", retryable=True
            )
        if intent.status != "succeeded":
            error = intent.last_setup_error
            if error is not None:
                raise ProviderError(
                    f"Stripe could not save the card: {error.message}",
                    code=error.decline_code or error.code,
                )
            raise ProviderError(f"{intent.id} is {intent.status}", code="pending", retryable=True)
        method = _saved_method(intent.payment_method)
        if method is None:
            raise ProviderError(f"{intent.id} has no card", code="bad_response")
        if method.customer_ref is None:
            customer = _id(intent.customer)
            method = SavedMethod(
                provider_ref=method.provider_ref,
                brand=method.brand,
                customer_ref=customer,
                last4=method.last4,
                exp_month=method.exp_month,
                exp_year=method.exp_year,
            )
        return method

    # -- translating Stripe's objects --------------------------------------------------------------

    def _session_event(
        self, session: stripe.checkout.Session, *, event_id: str | None
    ) -> PaymentEvent | None:
        """A payment session as an event, or ``None`` while it can still go either way."""
        payment_id = _metadata(session) or session.client_reference_id
        intent = session.payment_intent
        declined = (
            intent.last_payment_error
            if isinstance(intent, stripe.PaymentIntent) and session.payment_status != "paid"
            else None
        )
        if session.status == "expired":
            # A session left after a decline (expired by cancel()) reports the decline: the
            # customer is told why the card did not go through, not only that they left.
            return PaymentEvent(
                event_id=event_id or f"return:{session.id}:failed",
                kind=PaymentEventKind.FAILED,
                payment_id=payment_id,
                provider_ref=session.id,
                failure_code=(declined.decline_code or declined.code) if declined else "expired",
                failure_message=declined.message if declined else None,
            )
        if session.payment_status == "paid":
            if not isinstance(intent, stripe.PaymentIntent):
                raise ProviderError(f"{session.id} is paid without an intent", code="bad_response")
            return PaymentEvent(
                event_id=event_id or f"return:{session.id}:succeeded",
                kind=PaymentEventKind.SUCCEEDED,
                payment_id=payment_id,
                provider_ref=session.id,
                amount=from_stripe_amount(session.amount_total, session.currency),
                method=_saved_method(intent.payment_method),
                charge_ref=intent.id,
            )
        if isinstance(intent, stripe.PaymentIntent) and intent.last_payment_error is not None:
            # Checkout keeps the session open after a decline and the customer may try another
            # card, so a SUCCEEDED for the same payment can still follow.
            error = intent.last_payment_error
            return PaymentEvent(
                event_id=event_id or f"return:{session.id}:failed",
                kind=PaymentEventKind.FAILED,
                payment_id=payment_id,
                provider_ref=session.id,
                failure_code=error.decline_code or error.code,
                failure_message=error.message,
            )
        return None

    def _intent_event(
        self, intent: stripe.PaymentIntent, *, event_id: str | None
    ) -> PaymentEvent | None:
        """A PaymentIntent as an event, or ``None`` while it is still in progress."""

        def event(kind: PaymentEventKind, **fields: Any) -> PaymentEvent:
            return PaymentEvent(
                event_id=event_id or f"charge:{intent.id}:{kind}",
                kind=kind,
                payment_id=_metadata(intent),
                provider_ref=intent.id,
                charge_ref=intent.id,
                **fields,
            )

        if intent.status == "succeeded":
            return event(
                PaymentEventKind.SUCCEEDED,
                amount=from_stripe_amount(intent.amount_received, intent.currency),
                method=_saved_method(intent.payment_method),
            )
        action = intent.next_action
        if intent.status == "requires_action" and action is not None:
            redirect = action.redirect_to_url
            if action.type == "redirect_to_url" and redirect is not None and redirect.url:
                return event(
                    PaymentEventKind.REQUIRES_ACTION,
                    action_url=redirect.url,
                    failure_code="authentication_required",
                )
        error = intent.last_payment_error
        if intent.status == "requires_payment_method" and error is not None:
            return event(
                PaymentEventKind.FAILED,
                failure_code=error.decline_code or error.code,
                failure_message=error.message,
            )
        if intent.status == "canceled":
            return event(
                PaymentEventKind.FAILED,
                failure_code="canceled",
                failure_message=intent.cancellation_reason,
            )
        return None

    # -- calls -------------------------------------------------------------------------------------

    def _create_customer(self, *, email: str, language: str, idempotency_key: str) -> str:
        customer = self._call(
            "creating a customer",
            lambda: self._client.v1.customers.create(
                {"email": email, "preferred_locales": [language]},
                options={"idempotency_key": idempotency_key},
            ),
        )
        return customer.id

    def _retrieve_session(self, session_id: str, intent_field: str) -> stripe.checkout.Session:
        return self._call(
            "reading a Checkout Session",
            lambda: self._client.v1.checkout.sessions.retrieve(
                session_id, {"expand": [intent_field, f"{intent_field}.payment_method"]}
            ),
        )

    def _retrieve_intent(self, intent_id: str) -> stripe.PaymentIntent:
        return self._call(
            "reading a PaymentIntent",
            lambda: self._client.v1.payment_intents.retrieve(
                intent_id, {"expand": ["payment_method"]}
            ),
        )

    def _retrieve_charge(self, charge_id: str) -> stripe.Charge:
        return self._client.v1.charges.retrieve(charge_id)

    def _call(self, doing: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except stripe.StripeError as exc:
            raise self._provider_error(doing, exc) from exc

    def _provider_error(self, doing: str, exc: stripe.StripeError) -> ProviderError:
        """Say what failed, and whether trying the same call again later may work."""
        status = exc.http_status
        if isinstance(exc, stripe.APIConnectionError):
            if _timed_out(exc):
                text = f"Stripe did not answer within {self.timeout:g} s while {doing}"
                return ProviderError(text, code="timeout", retryable=True)
            text = f"could not reach Stripe at {self.api_base} while {doing} (connection failed)"
            return ProviderError(text, code="network", retryable=True)
        if isinstance(exc, stripe.RateLimitError):
            text = f"Stripe is limiting the request rate ({doing})"
            return ProviderError(text, code="rate_limit", retryable=True)
        if isinstance(exc, stripe.APIError):
            # A 2xx that still failed: the body was not JSON (the SDK says so only in words).
            if status is not None and 200 <= status < 300:
                text = f"Stripe sent an unreadable answer (HTTP {status}) while {doing}"
                return ProviderError(text, code="bad_response", retryable=True)
            text = f"Stripe failed with HTTP {status} while {doing}"
            return ProviderError(text, code="api_error", retryable=True)
        if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
            text = f"Stripe refused the API key while {doing}: {exc.user_message}"
            return ProviderError(text, code="authentication")
        if isinstance(exc, stripe.IdempotencyError):
            text = f"Stripe refused an idempotency key reused with other parameters ({doing})"
            return ProviderError(text, code="idempotency_error")
        text = f"Stripe refused {doing}: {exc.user_message}"
        return ProviderError(text, code=exc.code)


def _declined(intent_id: str, payment_id: str, exc: stripe.CardError) -> PaymentEvent:
    """A card error from an off-session charge: the bank's reason when it gave one."""
    error = exc.error
    return PaymentEvent(
        event_id=f"charge:{intent_id}:{PaymentEventKind.FAILED}",
        kind=PaymentEventKind.FAILED,
        payment_id=payment_id,
        provider_ref=intent_id,
        charge_ref=intent_id,
        failure_code=(error.decline_code if error is not None else None) or exc.code,
        failure_message=error.message if error is not None else str(exc),
    )


def _locale(language: str) -> str:
    return language if language in ("pl", "en", "cs", "de") else "auto"


def _id(value: str | stripe.StripeObject | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    found = getattr(value, "id", None)
    return found if isinstance(found, str) else None


def _saved_method(value: str | stripe.PaymentMethod | None) -> SavedMethod | None:
    """An expanded card PaymentMethod as a :class:`SavedMethod`."""
    if not isinstance(value, stripe.PaymentMethod) or value.card is None:
        return None
    card = value.card
    return SavedMethod(
        provider_ref=value.id,
        brand=card.brand,
        customer_ref=_id(value.customer),
        last4=card.last4,
        exp_month=card.exp_month,
        exp_year=card.exp_year,
    )
