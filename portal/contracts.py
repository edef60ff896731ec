"""The objects that cross the plugin boundary, defined in core.

Plugins return instances of these frozen dataclasses (or subclasses of the base
classes); :mod:`portal.plugins` checks what comes back before the app uses it.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from portal.money import Money


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


class PaymentProvider(abc.ABC):
    """A way to pay (cards through Stripe, PayPal, ...). The Payments work extends this."""

    #: unique, stable identifier stored with payments, e.g. ``"stripe"``
    name: str

    @abc.abstractmethod
    def label(self, language: str) -> str:
        """What the customer sees for this method, in ``language``."""


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


class VatValidator(abc.ABC):
    """Checks a VAT number. Validators run in ``order``; the first definite answer wins."""

    name: str
    order: int = 100

    @abc.abstractmethod
    def check(self, *, country: str, number: str, now: dt.datetime) -> VatCheck | None:
        """Return a :class:`VatCheck`, or ``None`` when this validator has no opinion."""


# -- invoice formats ----------------------------------------------------------------------


class InvoiceFormat(abc.ABC):
    """A downloadable rendering of an issued invoice (PDF, XML, ...)."""

    name: str
    media_type: str
    extension: str

    @abc.abstractmethod
    def render(self, *, invoice: Any, language: str) -> bytes:
        """Render the issued invoice's snapshot as bytes."""


# -- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentSettled:
    account_id: int
    payment_id: int
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
