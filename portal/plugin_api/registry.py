"""One pluggy plugin manager per app, and what the plugins registered.

Load order: the hook specs; the entry points of group ``pakiet`` (built-ins are
registered there like anyone's), filtered by ``PLUGINS_ALLOW``/``PLUGINS_BLOCK``; any
module named in ``PLUGINS``; then ``check_pending()`` so a misspelt hook fails loudly.
``PLUGINS_AUTOLOAD = False`` skips the entry points (tests use it so that whatever
happens to be installed is not picked up).
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import re
import sys
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pluggy
from babel.numbers import is_currency
from flask import Flask, current_app

from portal import plugin_api
from portal.plugin_api import ApiVersionError, hookspecs, require_api
from portal.plugin_api.contracts import (
    CurrencySpec,
    EInvoicingChannel,
    ExchangeRate,
    InvoiceFormat,
    PaymentProvider,
    ProviderError,
    VatValidator,
)
from portal.rules.money import minor_units

ENTRY_POINT_GROUP = "pakiet"
log = logging.getLogger(__name__)
# A host name, an IPv4 address or an IPv6 address: no wildcard, quote or space.
_HOST = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|[0-9a-f:.]*:[0-9a-f:.]*")


class PluginError(RuntimeError):
    """A plugin could not be loaded or returned something core cannot accept."""


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str | None
    distribution: str | None
    hooks: tuple[str, ...]


T = TypeVar("T")


@dataclass
class Registry:
    """What the app's plugins provide, collected and checked once at start-up."""

    pm: pluggy.PluginManager
    plugin_config: Any
    currencies: dict[str, CurrencySpec] = field(default_factory=dict)
    payment_providers: dict[str, PaymentProvider] = field(default_factory=dict)
    vat_validators: list[VatValidator] = field(default_factory=list)
    invoice_formats: dict[str, InvoiceFormat] = field(default_factory=dict)
    einvoicing_channels: dict[str, EInvoicingChannel] = field(default_factory=dict)
    distributions: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: every origin a provider sends customers to (``PaymentProvider.hosted_origins``)
    hosted_origins: tuple[str, ...] = ()
    #: the plugin that registered each provider, validator and invoice format, by kind and
    #: name (``("payment provider", "stripe") -> "stripe"``): named in logs and the admin
    owners: dict[tuple[str, str], str] = field(default_factory=dict)
    #: plugins that are not loaded, by name, and why (``flask plugins`` shows them)
    off: dict[str, str] = field(default_factory=dict)
    #: what start-up found odd but not fatal (logged as warnings, shown by ``flask plugins``)
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning("%s", message)

    def registered(self, plugin: str) -> dict[str, list[str]]:
        """What ``plugin`` registered, by kind (``{"payment provider": ["stripe"]}``)."""
        found: dict[str, list[str]] = {}
        for (kind, name), owner in sorted(self.owners.items()):
            if owner == plugin:
                found.setdefault(kind, []).append(name)
        return found

    def owner(self, kind: str, name: str) -> str:
        """The name of the plugin that registered the ``kind`` called ``name``."""
        return self.owners.get((kind, name), "?")

    def providers_for(self, currency: str | None) -> list[PaymentProvider]:
        """The payment providers that take ``currency`` (all of them for ``None``)."""
        return [
            provider
            for provider in self.payment_providers.values()
            if currency is None or currency in provider.currencies
        ]

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def plugins(self) -> list[PluginInfo]:
        """The registered plugins. ``version`` is the plugin's own ``__version__`` when it
        has one (built-ins share the ``pakiet`` distribution), else its distribution's."""
        infos = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:  # a blocked name, not a plugin
                continue
            dist = self.distributions.get(name)
            version = getattr(plugin, "__version__", None)
            if not isinstance(version, str):
                version = dist[1] if dist else None
            hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(plugin) or []))
            infos.append(
                PluginInfo(
                    name=name,
                    version=version,
                    distribution=dist[0] if dist else None,
                    hooks=hooks,
                )
            )
        return sorted(infos, key=lambda i: i.name)


def _collect(pm: pluggy.PluginManager, hook: str, plugin_config: Any) -> list[tuple[str, Any]]:
    """Call ``hook`` on each plugin in turn: ``(plugin name, item)`` for every item returned.
    A plugin that raises or returns something other than a list stops start-up, named."""
    items: list[tuple[str, Any]] = []
    for impl in reversed(getattr(pm.hook, hook).get_hookimpls()):  # pluggy's call order
        if impl.hookwrapper or getattr(impl, "wrapper", False):
            continue
        name = _display_name(impl.plugin_name, impl.plugin)
        others = [p for p in pm.get_plugins() if p is not impl.plugin]
        try:
            results = pm.subset_hook_caller(hook, remove_plugins=others)(
                plugin_config=plugin_config
            )
        except Exception as exc:
            raise PluginError(f"plugin {name!r}: {hook} raised {exc!r}") from exc
        result = results[0] if results else None
        if result is None:
            continue
        if not isinstance(result, list | tuple):
            raise PluginError(f"plugin {name!r}: {hook} returned {result!r}; expected a list")
        items.extend((name, item) for item in result)
    return items


def _unique(
    items: Iterable[tuple[str, T]],
    kind: str,
    key: str = "name",
    owners: dict[tuple[str, str], str] | None = None,
) -> dict[str, T]:
    """The items by ``key``; ``owners`` (when given) learns which plugin gave each."""
    seen: dict[str, T] = {}
    by: dict[str, str] = {}
    for plugin, item in items:
        name = getattr(item, key, None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin!r}: {kind} {item!r} has no {key}")
        if name in seen:
            raise PluginError(
                f"two plugins register the {kind} {name!r}: {by[name]!r} and {plugin!r}"
            )
        seen[name] = item
        by[name] = plugin
        if owners is not None:
            owners[(kind, name)] = plugin
    return seen


def _checked(items: list[tuple[str, Any]], cls: type[object], kind: str) -> list[tuple[str, Any]]:
    for plugin, item in items:
        if not isinstance(item, cls):
            raise PluginError(
                f"plugin {plugin!r} returned {item!r} as a {kind}; expected {cls.__name__}"
            )
    return items


def origin(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) URL, lower case; ``None`` otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not _HOST.fullmatch(host):
        return None
    if ":" in host:  # IPv6
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    suffix = f":{port}" if port is not None and port != default else ""
    return f"{parts.scheme}://{host}{suffix}"


def _hosted_origins(providers: Iterable[PaymentProvider]) -> tuple[str, ...]:
    """The providers' declared origins, each checked to be exactly an origin: they go into
    the Content-Security-Policy, where a path, a wildcard or a quote would widen it."""
    origins: set[str] = set()
    for provider in providers:
        declared = provider.hosted_origins
        if not declared:
            log.warning(
                "payment provider %r declares no hosted_origins: customers cannot be sent to"
                " its pages",
                provider.name,
            )
        if isinstance(declared, str) or not isinstance(declared, Iterable):
            raise PluginError(
                f"payment provider {provider.name!r}: hosted_origins must be a set of origins,"
                f" not {declared!r}"
            )
        for value in declared:
            if not isinstance(value, str) or origin(value) != value:
                raise PluginError(
                    f"payment provider {provider.name!r}: {value!r} in hosted_origins is not an"
                    " origin (scheme://host[:port] in lower case, no default port, no path, no"
                    " wildcard)"
                )
            origins.add(value)
    return tuple(sorted(origins))


def _load_entry_points(
    pm: pluggy.PluginManager,
    registry: Registry,
    allow: Iterable[str] | None,
    block: Iterable[str],
) -> None:
    allowed = set(allow) if allow is not None else None
    blocked = set(block)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in blocked:
            registry.off[ep.name] = "blocked by PLUGINS_BLOCK"
            continue
        if allowed is not None and ep.name not in allowed:
            registry.off[ep.name] = "not in PLUGINS_ALLOW"
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to import: {exc}") from exc
        _check_api(plugin, ep.name)
        pm.register(plugin, name=ep.name)
        if ep.dist is not None:
            registry.distributions[ep.name] = (ep.dist.name, ep.dist.version)


def _register_module(
    pm: pluggy.PluginManager, registry: Registry, target: str | ModuleType | object
) -> None:
    if isinstance(target, str) and pm.is_blocked(target):
        registry.off[target] = "blocked by PLUGINS_BLOCK"
        return
    plugin = importlib.import_module(target) if isinstance(target, str) else target
    name = target if isinstance(target, str) else getattr(plugin, "__name__", None)
    if pm.is_registered(plugin) or (name is not None and pm.get_plugin(name) is not None):
        return
    _check_api(plugin, name or repr(plugin))
    pm.register(plugin, name=name)


def _check_api(plugin: object, name: str) -> None:
    """Refuse a plugin whose ``PAKIET_API`` this portal does not provide."""
    required = getattr(plugin, "PAKIET_API", None)
    if required is None:
        return
    try:
        require_api(required, plugin=name)
    except ApiVersionError as exc:
        raise PluginError(str(exc)) from exc


def _display_name(name: str, plugin: object) -> str:
    """The registered name, or the class of an object registered without one (pluggy
    names those by ``id()``)."""
    if name.isdigit():
        return f"{type(plugin).__module__}.{type(plugin).__qualname__}"
    return name


def warn_deprecated(pm: pluggy.PluginManager) -> None:
    """A :class:`DeprecationWarning` naming each plugin that implements a deprecated hook
    or takes a deprecated argument (:data:`portal.plugin_api.DEPRECATIONS`)."""
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        for caller in pm.get_hookcallers(plugin) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                for gone in plugin_api.DEPRECATIONS:
                    if gone.hook != caller.name:
                        continue
                    if gone.argument is not None and gone.argument not in impl.argnames:
                        continue
                    what = f"hook {gone.hook!r}"
                    if gone.argument is not None:
                        what = f"argument {gone.argument!r} of hook {gone.hook!r}"
                    until = ".".join(str(part) for part in gone.removed_in)
                    warnings.warn(
                        f"plugin {_display_name(name, plugin)!r} uses the {what}, deprecated"
                        f" and removed in the Pakiet plugin API {until}; {gone.instead}",
                        DeprecationWarning,
                        stacklevel=2,
                    )


def _warn_at_start(app: Flask, pm: pluggy.PluginManager, registry: Registry) -> None:
    """Warnings for what loads but is probably a mistake: a plugin without a hook (its
    functions lack ``@hookimpl``), a name in ``PLUGINS_BLOCK``/``PLUGINS_ALLOW`` that names
    nothing (a typo), a currency no payment provider takes."""
    for name, plugin in pm.list_name_plugin():
        if plugin is not None and not pm.get_hookcallers(plugin):
            registry.warn(
                f"plugin {_display_name(name, plugin)!r} implements no hook: are its functions"
                " marked with @hookimpl?"
            )
    known = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    known |= {t for t in app.config["PLUGINS"] if isinstance(t, str)}
    for setting in ("PLUGINS_BLOCK", "PLUGINS_ALLOW"):
        for name in app.config[setting] or ():
            if name not in known:
                registry.warn(f"{setting} names {name!r}, which is no plugin: a typo?")
    for validator in registry.vat_validators:
        owner = registry.owners.get(("VAT validator", validator.name))
        module = pm.get_plugin(owner) if owner else None
        declared = getattr(module, "PAKIET_API", None)
        if getattr(validator, "offline", False) or (
            isinstance(declared, tuple) and tuple(declared[:2]) >= (1, 2)
        ):
            continue
        # Plugin API 1.2 changed what VALID means: without VatCheck.registry it confirms
        # nothing (a checksum). A validator written before says so neither way: warn.
        registry.warn(
            f"VAT validator {validator.name!r} of plugin {owner!r} does not declare plugin API"
            " 1.2 (PAKIET_API): since 1.2 its VALID confirms a number only with"
            " VatCheck.registry set (the registry that answered); set it, then declare"
            " PAKIET_API = (1, 2)"
        )
    if registry.payment_providers:
        taken = {c for p in registry.payment_providers.values() for c in p.currencies}
        for code in sorted(registry.currencies):
            if code not in taken:
                registry.warn(f"currency {code}: no payment provider takes it")


def make_plugin_config(settings: Mapping[str, Mapping[str, Any]]) -> Any:
    def plugin_config(name: str) -> Mapping[str, Any]:
        return dict(settings.get(name, {}))

    return plugin_config


def init_plugins(app: Flask) -> Registry:
    """Build the app's plugin manager and registry; store it in ``app.extensions``."""
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    registry = Registry(pm=pm, plugin_config=make_plugin_config(app.config["PLUGIN_CONFIG"]))
    for name in app.config["PLUGINS_BLOCK"]:
        pm.set_blocked(name)
    try:
        if app.config["PLUGINS_AUTOLOAD"]:
            allow, block = app.config["PLUGINS_ALLOW"], app.config["PLUGINS_BLOCK"]
            _load_entry_points(pm, registry, allow, block)
        for target in app.config["PLUGINS"]:
            _register_module(pm, registry, target)
        pm.check_pending()
        warn_deprecated(pm)
    except pluggy.PluginValidationError as exc:
        # An unknown hook name or an argument the spec lacks: a plugin bug, reported as one.
        raise PluginError(str(exc)) from exc

    if app.config["TRACE_PLUGINS"]:
        pm.trace.root.setwriter(lambda line: print(line, end="", file=sys.stderr))
        pm.enable_tracing()

    config = registry.plugin_config
    currencies = _checked(
        _collect(pm, "register_currencies", config),
        CurrencySpec,
        "currency",
    )
    for _, spec in currencies:
        if not is_currency(spec.code):
            raise PluginError(f"currency {spec.code!r} is not an ISO 4217 code")
        if spec.minor_units != minor_units(spec.code):
            raise PluginError(
                f"currency {spec.code}: minor_units {spec.minor_units} disagrees with ISO 4217"
                f" ({minor_units(spec.code)})"
            )
    registry.currencies = _unique(currencies, "currency", key="code", owners=registry.owners)
    registry.payment_providers = _unique(
        _checked(
            _collect(pm, "register_payment_providers", config),
            PaymentProvider,
            "payment provider",
        ),
        "payment provider",
        owners=registry.owners,
    )
    registry.hosted_origins = _hosted_origins(registry.payment_providers.values())
    validators = _checked(
        _collect(pm, "register_vat_validators", config),
        VatValidator,
        "VAT validator",
    )
    registry.vat_validators = sorted(
        _unique(validators, "VAT validator", owners=registry.owners).values(),
        key=lambda v: v.order,
    )
    registry.invoice_formats = _unique(
        _checked(
            _collect(pm, "register_invoice_formats", config),
            InvoiceFormat,
            "invoice format",
        ),
        "invoice format",
        owners=registry.owners,
    )
    registry.einvoicing_channels = _unique(
        _checked(
            _collect(pm, "register_einvoicing_channels", config),
            EInvoicingChannel,
            "e-invoicing channel",
        ),
        "e-invoicing channel",
    )
    for impl in pm.hook.get_exchange_rate.get_hookimpls():
        registry.owners[("rate source", _display_name(impl.plugin_name, impl.plugin))] = (
            impl.plugin_name
        )
    _warn_at_start(app, pm, registry)
    app.extensions["pakiet"] = registry
    return registry


@dataclass(frozen=True)
class RateAnswer:
    """An exchange rate and the plugin that gave it (printed on a legal document: kept)."""

    rate: ExchangeRate
    plugin: str


def exchange_rate(reg: Registry, base: str, quote: str, on_date: dt.date) -> RateAnswer | None:
    """Ask the rate sources one at a time, in pluggy's order (last registered first,
    ``tryfirst``/``trylast`` to move), for the rate of ``base`` in ``quote`` on ``on_date``;
    the first answer wins and names its plugin. Wrappers are not run: no plugin can change
    another's answer. A source that raises anything but :class:`ProviderError` (a bug), or
    answers something that is not the rate asked for, is left out of this question and
    logged with its plugin's name; a :class:`ProviderError` (the source should answer but
    cannot now) is raised, so that no other source's rate is taken silently."""
    caller = reg.pm.hook.get_exchange_rate
    arguments = {
        "base": base,
        "quote": quote,
        "on_date": on_date,
        "plugin_config": reg.plugin_config,
    }
    for impl in reversed(caller.get_hookimpls()):
        if impl.hookwrapper or getattr(impl, "wrapper", False):
            continue
        try:
            answer = impl.function(**{name: arguments[name] for name in impl.argnames})
        except ProviderError:
            raise
        except Exception:
            log.exception(
                "rate source of plugin %r failed on %s/%s",
                _display_name(impl.plugin_name, impl.plugin),
                base,
                quote,
            )
            continue
        if answer is None:
            continue
        if (
            not isinstance(answer, ExchangeRate)
            or (answer.base, answer.quote) != (base, quote)
            or not isinstance(answer.rate, Decimal)
            or not answer.rate > 0
        ):
            log.error(
                "rate source of plugin %r answered %r for %s/%s: left out",
                _display_name(impl.plugin_name, impl.plugin),
                answer,
                base,
                quote,
            )
            continue
        return RateAnswer(answer, _display_name(impl.plugin_name, impl.plugin))
    return None


def registry(app: Flask | None = None) -> Registry:
    """The current app's plugin registry."""
    reg = (app or current_app).extensions["pakiet"]
    assert isinstance(reg, Registry)
    return reg
