"""The hooks a Pakiet plugin can implement.

pluggy calls every hook with keyword arguments only (a positional call is refused), so
the specs below are keyword-only at every call site. They are written without a bare
``*`` because pluggy does not see keyword-only parameters when it matches an
implementation to its spec. An implementation may take any subset of the arguments.
Specs only ever grow by adding arguments.
"""

from __future__ import annotations

import datetime as dt

import pluggy

from portal.plugin_api.contracts import (
    CurrencySpec,
    EInvoicingChannel,
    ExchangeRate,
    InvoiceFormat,
    InvoiceIssued,
    PaymentProvider,
    PaymentSettled,
    PluginConfig,
    SubscriptionChanged,
    VatValidator,
)

hookspec = pluggy.HookspecMarker("pakiet")
hookimpl = pluggy.HookimplMarker("pakiet")


# -- registration: called once per app at start-up ------------------------------------


@hookspec
def register_currencies(plugin_config: PluginConfig) -> list[CurrencySpec]:
    """Currencies the portal may sell in.

    :param plugin_config: ``plugin_config(name)`` returns the plugin's settings.
    :returns: currency specs; a code offered twice stops the app at start-up.
    """


@hookspec
def register_payment_providers(plugin_config: PluginConfig) -> list[PaymentProvider]:
    """Ways to pay.

    :param plugin_config: ``plugin_config(name)`` returns the plugin's settings.
    :returns: provider objects; names must be unique across plugins.
    """


@hookspec
def register_vat_validators(plugin_config: PluginConfig) -> list[VatValidator]:
    """VAT-number validators, run in their ``order``.

    :param plugin_config: ``plugin_config(name)`` returns the plugin's settings.
    :returns: validator objects; names must be unique across plugins.
    """


@hookspec
def register_invoice_formats(plugin_config: PluginConfig) -> list[InvoiceFormat]:
    """Downloadable invoice formats (PDF, XML, ...).

    :param plugin_config: ``plugin_config(name)`` returns the plugin's settings.
    :returns: format objects; names must be unique across plugins.
    """


@hookspec
def register_einvoicing_channels(plugin_config: PluginConfig) -> list[EInvoicingChannel]:
    """National e-invoicing systems that issued documents go through (KSeF, ...).

    :param plugin_config: ``plugin_config(name)`` returns the plugin's settings.
    :returns: channel objects; names must be unique across plugins.
    """


# -- queries ------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def get_exchange_rate(
    base: str, quote: str, on_date: dt.date, plugin_config: PluginConfig
) -> ExchangeRate | None:
    """The rate that converts ``base`` into ``quote`` for a sale on ``on_date``.

    The first plugin that answers wins; return ``None`` to pass.

    :param base: ISO code of the invoice currency, e.g. ``"EUR"``.
    :param quote: ISO code of the reporting currency, e.g. ``"PLN"``.
    :param on_date: the sale date; the source picks its own publication rule.
    :param plugin_config: ``plugin_config(name)`` returns the plugin's settings.
    :returns: an :class:`~portal.plugin_api.contracts.ExchangeRate` or ``None``.
    """


# -- events: notifications after the fact; return values are ignored --------------------


@hookspec
def payment_settled(event: PaymentSettled) -> None:
    """A payment was confirmed by its provider and applied.

    :param event: what was paid, by whom, through which provider.
    """


@hookspec
def invoice_issued(event: InvoiceIssued) -> None:
    """An invoice or correcting invoice was issued.

    :param event: its number, total and account.
    """


@hookspec
def subscription_changed(event: SubscriptionChanged) -> None:
    """A subscription changed (purchase, change, renewal, suspension, ...).

    :param event: the state before and after, and why.
    """
