"""The objects that cross the plugin boundary, defined in core.

Plugins return instances of these frozen dataclasses (or subclasses of the base
classes); :mod:`portal.plugin_api.registry` checks what comes back before the app uses it.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from portal.rules.money import Money


class PluginConfig(Protocol):
    """``plugin_config(name)``: the settings a plugin gets (``PLUGIN_CONFIG[name]``)."""

    def __call__(self, name: str) -> Mapping[str, Any]: ...


# -- currencies and exchange rates -----------------------------------------------------


@dataclass(frozen=True)
class CurrencySpec:
    """A currency the portal can sell in. ``minor_units`` must agree with ISO 4217."""

    code: str
    minor_units: int
    names: Mapping[str, str]  # language code -> display name


@dataclass(frozen=True)
class ExchangeRate:
    """``1 base = rate quote``, as published by ``source`` for ``effective_date``."""

    base: str
    quote: str
    rate: Decimal
    effective_date: dt.date
    source: str
    table: str | None = None


# -- payment providers -----------------------------------------------------------------


class PaymentEventKind(StrEnum):
    SUCCEEDED = "succeeded"  # the money is collected (captured)
    # Declined, cancelled, expired: nothing collected. Not always final: a customer may try
    # another card on the same hosted page, and a later SUCCEEDED wins.
    FAILED = "failed"
    REQUIRES_ACTION = "requires_action"  # the customer must authenticate (3-D Secure)
    REFUNDED = "refunded"  # some or all of a collected payment went back


@dataclass(frozen=True)
class SavedMethod:
    """A payment method stored at the provider for off-session charges."""

    provider_ref: str  # Stripe PaymentMethod id, PayPal vault id, ...
    brand: str  # lower case: "visa", "mastercard", "amex", "paypal", ...
    customer_ref: str | None = None  # Stripe Customer id, PayPal customer id
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    email: str | None = None


@dataclass(frozen=True)
class PaymentRequest:
    """What core asks a provider to collect. ``payment_id`` must come back in events."""

    payment_id: str  # core's public payment id (metadata / custom_id at the provider)
    idempotency_key: str  # send it with every create call (Idempotency-Key, PayPal-Request-Id)
    amount: Money
    description: str
    customer_email: str
    language: str
    return_url: str  # the customer comes back here; the provider may add query parameters
    cancel_url: str
    save_method: bool = True  # keep the method for renewals (off-session)
    customer_ref: str | None = None  # an existing provider customer, if one is known
    # Where core takes this provider's webhooks (``/webhooks/<provider name>``), for
    # providers that set the notification address per payment (PayPal-like, Przelewy24).
    webhook_url: str | None = None


@dataclass(frozen=True)
class Redirect:
    """Send the customer to the provider's hosted page."""

    url: str
    provider_ref: str  # the provider's id for this attempt (Checkout Session, PayPal order)


@dataclass(frozen=True)
class PaymentEvent:
    """What happened at the provider, from a webhook, a return or a direct call.

    ``event_id`` is unique per provider and makes applying the event idempotent; for an
    answer to a direct call use e.g. ``f"capture:{capture_id}"``.
    """

    event_id: str
    kind: PaymentEventKind
    payment_id: str | None  # core's public id, as the provider echoed it back
    provider_ref: str | None  # the attempt's id (Checkout Session id, PayPal order id)
    amount: Money | None = None  # collected (SUCCEEDED) or refunded in total (REFUNDED)
    method: SavedMethod | None = None
    charge_ref: str | None = None  # what a refund needs: PaymentIntent id, capture id
    failure_code: str | None = None  # provider's code, e.g. "card_declined"
    failure_message: str | None = None  # provider's words (logged; customers see ours)
    action_url: str | None = None  # REQUIRES_ACTION: where the customer authenticates


class ProviderError(Exception):
    """A provider call failed. ``retryable`` when trying again later may succeed."""

    def __init__(self, message: str, *, code: str | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


class WebhookRejected(Exception):
    """A webhook whose signature is missing, wrong or too old: answer 400, change nothing."""


def describe_saved(method: SavedMethod, label: str) -> str:
    """``Visa •••• 4242 (12/2030)`` for a card, ``PayPal (a@example.com)`` for an account."""
    if method.email:
        return f"{label} ({method.email})"
    parts = [method.brand.title()]
    if method.last4:
        parts.append(f"•••• {method.last4}")
    if method.exp_month and method.exp_year:
        parts.append(f"({method.exp_month:02d}/{method.exp_year})")
    return " ".join(parts)


#: What a provider written before API 1.2 (no ``renewable_brands``) that saves methods is
#: taken to charge again: the brands core used to accept.
LEGACY_RENEWABLE_BRANDS = frozenset({"visa", "mastercard", "paypal"})


class PaymentProvider(abc.ABC):
    """A way to pay (cards through Stripe, PayPal, ...).

    Providers talk to their service and translate its answers into core types; they
    never write to the database. Core applies every :class:`PaymentEvent` through one
    operation that checks amount and currency and is idempotent per ``event_id``.
    """

    #: unique, stable identifier stored with payments, e.g. ``"stripe"``
    name: str
    #: ISO codes this provider can charge in
    currencies: frozenset[str] = frozenset()
    #: whether it keeps methods for off-session charges (cards, PayPal vault); a bank
    #: transfer does not, and then the three saved-method calls below need no override
    saves_methods: bool = False
    #: the origins (``https://checkout.stripe.com``: scheme, host and any port; no path, no
    #: wildcard) of every page this provider sends the customer to: hosted payment, approval,
    #: setup and authentication pages. Browsers apply the portal's Content-Security-Policy
    #: ``form-action`` to the redirect that follows "Pay", so core adds these origins to it
    #: on the pages whose forms lead to a provider, and refuses to send a customer to any
    #: other origin. Derive them from the configured base URL when it points at a sandbox or
    #: an emulator.
    hosted_origins: frozenset[str] = frozenset()
    #: the kinds or brands of saved methods (lower case, as in :attr:`SavedMethod.brand`:
    #: ``"visa"``, ``"mastercard"``, ``"paypal"``, ``"blik"``) this provider can charge again
    #: off-session; a renewal charges only these. Empty: it cannot renew, and its customers
    #: pay each renewal by hand. ``None`` (plugins written before API 1.2): ``visa``,
    #: ``mastercard`` and ``paypal`` when :attr:`saves_methods`, else none.
    renewable_brands: frozenset[str] | None = None
    #: whether :meth:`refund` gives money back. A provider that cannot (some pay-by-link and
    #: cash services) says ``False``: the portal then offers no refund of its payments
    #: (R14); staff refund them outside the portal.
    can_refund: bool = True

    def charges_again(self, brand: str) -> bool:
        """Whether a saved method of ``brand`` can be charged again (a renewal)."""
        brands = self.renewable_brands
        if brands is None:
            brands = LEGACY_RENEWABLE_BRANDS if self.saves_methods else frozenset()
        return brand.lower() in brands

    @abc.abstractmethod
    def label(self, language: str) -> str:
        """What the customer sees for this method in the checkout, in ``language``."""

    @abc.abstractmethod
    def start_payment(self, request: PaymentRequest) -> Redirect:
        """Create a hosted payment for ``request`` and return where to send the customer."""

    @abc.abstractmethod
    def complete_return(self, *, provider_ref: str, params: Mapping[str, str]) -> PaymentEvent:
        """The customer is back from the hosted page: confirm (or capture) and report.

        Must be safe to call more than once for the same attempt.
        """

    def cancel(self, *, provider_ref: str) -> PaymentEvent | None:
        """The customer left the hosted page: close the attempt so it can no longer be paid.

        Return the attempt's final event (SUCCEEDED if it was paid meanwhile), or ``None``
        when the provider has nothing to close.
        """
        return None

    def charge_saved(self, request: PaymentRequest, method: SavedMethod) -> PaymentEvent:
        """Charge a saved method off-session (renewals, later changes)."""
        raise ProviderError(f"{self.name} cannot charge a saved method", code="not_supported")

    @abc.abstractmethod
    def refund(self, *, charge_ref: str, amount: Money, idempotency_key: str) -> PaymentEvent:
        """Refund ``amount`` (all or part) of a collected payment."""

    @abc.abstractmethod
    def parse_webhook(self, *, body: bytes, headers: Mapping[str, str]) -> PaymentEvent | None:
        """Verify and parse a webhook. Raise :class:`WebhookRejected` for a bad signature;
        return ``None`` for an event type this provider does not act on. May raise a
        retryable :class:`ProviderError` when it must ask the provider and cannot now (the
        endpoint answers 503, and the provider delivers again later)."""

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
        """A hosted page where the customer saves a new method without paying."""
        raise ProviderError(f"{self.name} cannot save a method", code="not_supported")

    def complete_setup(self, *, provider_ref: str, params: Mapping[str, str]) -> SavedMethod:
        """The customer is back from the setup page: the method now saved."""
        raise ProviderError(f"{self.name} cannot save a method", code="not_supported")

    def describe(self, method: SavedMethod, language: str) -> str:
        """A short description of a saved method, e.g. ``Visa •••• 4242 (12/2030)``."""
        return describe_saved(method, self.label(language))


# -- VAT-number validators ---------------------------------------------------------------


class VatStatus(StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    UNAVAILABLE = "unavailable"  # the registry could not answer now; never "invalid"


@dataclass(frozen=True)
class VatCheck:
    """The outcome of one validator for one number."""

    status: VatStatus
    country: str
    number: str
    validator: str
    checked_at: dt.datetime
    consultation_number: str | None = None
    name: str | None = None
    address: str | None = None
    reason: str | None = None
    #: the registry that gave this answer, as the customer may read it (``"VIES"``,
    #: ``"HMRC"``), or ``None`` for a check of the number's form alone (format, check
    #: digit). Only a registry's ``VALID`` confirms a number and allows the reverse charge,
    #: and for an EU number only VIES's (``"VIES"``); the page names it ("confirmed by HMRC
    #: on ..."). Plugin API 1.2.
    registry: str | None = None


class VatValidator(abc.ABC):
    """Checks a VAT number. Validators run in ``order``; the first definite answer
    (``VALID`` or ``INVALID``) wins; ``UNAVAILABLE`` lets the next one try.
    """

    name: str
    order: int = 100
    #: ``True`` for a validator that only checks the number's form (format, check digit)
    #: without asking a registry: its ``INVALID`` means "mistyped" and the billing form
    #: refuses the number. A registry's ``INVALID`` means "not registered for intra-EU
    #: trade": the number is kept, the customer is told why, and VAT is charged.
    offline: bool = False
    #: countries outside the EU whose numbers it answers for (ISO codes: ``"GB"``, ``"NO"``,
    #: ``"CH"``): core asks the validators about a buyer's number of these countries too
    #: (``country`` is then the ISO code). Plugin API 1.2.
    countries: frozenset[str] = frozenset()

    @abc.abstractmethod
    def check(
        self, *, country: str, number: str, now: dt.datetime, requester: str | None = None
    ) -> VatCheck | None:
        """Return a :class:`VatCheck`, or ``None`` when this validator has no opinion.

        :param country: the VAT-number prefix, upper case: the ISO code of the member
            state except ``EL`` for Greece and ``XI`` for Northern Ireland.
        :param number: the number without the prefix, upper case, without spaces, dots or
            dashes (core normalises it; tolerating separators anyway does no harm).
        :param now: core's clock; use it as ``checked_at`` unless the registry dates its
            own answer.
        :param requester: the seller's own VAT number with its prefix (``PL5260250274``),
            for registries that record who asked (VIES then returns a consultation
            number), or ``None``. Core passes it only to validators whose ``check``
            accepts it, so a validator written before it existed keeps working.
        """


# -- invoice formats ----------------------------------------------------------------------


class InvoiceFormat(abc.ABC):
    """A downloadable rendering of an issued invoice (PDF, XML, ...)."""

    name: str
    media_type: str
    extension: str

    @abc.abstractmethod
    def render(self, *, invoice: Any, language: str) -> bytes:
        """Render the issued invoice's snapshot as bytes."""


# -- national e-invoicing channels (KSeF) ----------------------------------------------------


class EInvoiceState(StrEnum):
    """What a channel reports about one document."""

    SENT = "sent"  # received, still being processed: core asks ``status`` later
    ACCEPTED = "accepted"  # registered: ``national_number`` and ``assigned_at`` are set
    REJECTED = "rejected"  # refused for good: ``error_code`` and ``error_message`` say why


@dataclass(frozen=True)
class EInvoiceSubmission:
    """One issued document handed to a channel (the same on every attempt).

    ``document`` is the issued invoice's :class:`portal.documents.invoice.InvoiceDocument`;
    ``payload`` is what the channel's ``render`` made of it before the first send (send
    exactly these bytes); ``reference`` is the channel's id of an earlier send, or ``None``.
    """

    submission_id: str  # core's id of this submission: stable across retries
    invoice_id: int
    document: Any
    payload: bytes
    payload_hash: str  # SHA-256 of ``payload``, base64
    reference: str | None
    offline: bool  # issued in offline mode: the system was down at the first attempt
    corrected_national_number: str | None = None


@dataclass(frozen=True)
class EInvoiceResult:
    """A channel's answer about one submission."""

    state: EInvoiceState
    reference: str | None = None
    national_number: str | None = None
    assigned_at: dt.datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    receipt: bytes | None = None  # the system's proof of receipt (KSeF's UPO)


class EInvoicingChannel(abc.ABC):
    """A national e-invoicing system (Poland's KSeF, Italy's SdI, ...) that issued
    documents must go through. Core records each covered document's submission after
    the invoice is committed, calls ``submit`` once and ``status`` until it is final,
    and keeps the national number. A channel that is down raises a retryable
    :class:`ProviderError`: the document is then in offline mode and core sends it again
    later (the background run), with the same payload."""

    name: str
    #: How documents and pages name the system ("KSeF"); ``name`` when empty.
    title: str = ""

    @abc.abstractmethod
    def covers(self, document: Any) -> bool:
        """Whether this issued ``InvoiceDocument`` must go through this channel."""

    @abc.abstractmethod
    def render(
        self, *, document: Any, corrected_national_number: str | None, generated_at: dt.datetime
    ) -> bytes:
        """The document in the channel's format (KSeF: FA(3) XML), made once."""

    @abc.abstractmethod
    def submit(self, submission: EInvoiceSubmission) -> EInvoiceResult:
        """Send the payload. Return ``SENT`` with a ``reference`` (or a final answer)."""

    @abc.abstractmethod
    def status(self, submission: EInvoiceSubmission) -> EInvoiceResult:
        """The state of the send named by ``submission.reference``."""

    def verification_url(
        self, *, document: Any, payload_hash: str, national_number: str | None
    ) -> str | None:
        """The address the visualisation's QR code points to (KSeF's KOD I), or ``None``."""
        return None

    def certificate_url(self, *, document: Any, payload_hash: str) -> str | None:
        """For a document issued offline: the second QR code's address, signed with the
        seller's offline certificate (KSeF's KOD II, "CERTYFIKAT"), or ``None``."""
        return None


# -- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentSettled:
    """A payment was applied. ``payment_id`` is core's public id, the same string as
    :attr:`PaymentRequest.payment_id` and :attr:`PaymentEvent.payment_id`."""

    account_id: int
    payment_id: str
    provider: str
    amount: Money
    settled_at: dt.datetime


@dataclass(frozen=True)
class InvoiceIssued:
    account_id: int
    invoice_id: int
    number: str
    total: Money
    issued_at: dt.datetime


@dataclass(frozen=True)
class SubscriptionState:
    package: str
    period: str
    agents: int
    conversations: int
    currency: str | None
    status: str
    period_end: dt.date | None
    auto_renew: bool


@dataclass(frozen=True)
class SubscriptionChanged:
    account_id: int
    subscription_id: int
    before: SubscriptionState | None
    after: SubscriptionState
    reason: str
    changed_at: dt.datetime
