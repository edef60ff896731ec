"""Every hook is documented with its exact signature, and tested through a real app.

The plugins here are objects handed to the app through the ``PLUGINS`` config key, after
the built-ins. Core fires no events yet; their tests call the hook the way core will and
check that a plugin receives the event.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pluggy
import pytest
from flask import Flask

from portal import create_app
from portal.plugin_api import hookspecs
from portal.plugin_api.contracts import (
    CurrencySpec,
    EInvoiceResult,
    EInvoiceState,
    EInvoiceSubmission,
    EInvoicingChannel,
    ExchangeRate,
    InvoiceFormat,
    InvoiceIssued,
    PaymentProvider,
    PaymentRequest,
    PaymentSettled,
    PluginConfig,
    SubscriptionChanged,
    SubscriptionState,
    VatCheck,
    VatValidator,
)
from portal.plugin_api.hookspecs import hookimpl
from portal.plugin_api.registry import PluginError, make_plugin_config, registry
from portal.rules.money import Money
from tests.conftest import BUILTIN_PLUGINS, base_config

TESTS = Path(__file__).resolve().parents[1]
DOCS = TESTS.parent / "docs" / "plugins.md"
NOW = dt.datetime(2026, 5, 4, 10, 30, tzinfo=dt.UTC)

PLUGIN_CONFIG = {
    "forint": {"names": {"pl": "forint węgierski", "en": "Hungarian forint"}},
    "nbp": {"EUR/PLN": "4.2693"},
}

PAYMENT = PaymentSettled(
    account_id=7,
    payment_id="pay_41",
    provider="bank_transfer",
    amount=Money(10947, "PLN"),
    settled_at=NOW,
)
INVOICE = InvoiceIssued(
    account_id=7, invoice_id=12, number="FV/1/05/2026", total=Money(10947, "PLN"), issued_at=NOW
)
STANDARD = SubscriptionState(
    package="standard",
    period="month",
    agents=1,
    conversations=100,
    currency="PLN",
    status="active",
    period_end=dt.date(2026, 6, 4),
    auto_renew=True,
)
CHANGE = SubscriptionChanged(
    account_id=7,
    subscription_id=3,
    before=STANDARD,
    after=replace(STANDARD, agents=3),
    reason="agents changed",
    changed_at=NOW,
)


# -- the specs, the docs and the tests ------------------------------------------------


@dataclass(frozen=True)
class Spec:
    args: tuple[str, ...]
    firstresult: bool


def hook_specs() -> dict[str, Spec]:
    """The hooks declared in portal.plugin_api.hookspecs, as pluggy reads them."""
    pm = pluggy.PluginManager("pakiet")
    pm.add_hookspecs(hookspecs)
    return {
        name: Spec(caller.spec.argnames, bool(caller.spec.opts.get("firstresult")))
        for name, caller in vars(pm.hook).items()
        if caller.spec is not None
    }


HOOKS = sorted(hook_specs())
SIGNATURE = re.compile(r"`(\w+)\(([^)]*)\)`")
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.M | re.S)


@dataclass(frozen=True)
class Section:
    """One hook's section of the reference in docs/plugins.md."""

    signature_name: str
    args: tuple[str, ...]
    body: str
    example: str


def documented_hooks() -> dict[str, Section]:
    """The sections under "## Hook reference", by heading."""
    reference = DOCS.read_text(encoding="utf-8").split("\n## Hook reference\n", 1)[1]
    sections = {}
    for section in re.split(r"^### ", reference, flags=re.M)[1:]:
        heading, _, body = section.partition("\n")
        first_line = body.strip().splitlines()[0]
        match = SIGNATURE.fullmatch(first_line)
        assert match, f"section {heading!r} does not start with a `{heading}(...)` line"
        args = tuple(a.strip() for a in match.group(2).split(",") if a.strip())
        example = "\n".join(PYTHON_BLOCK.findall(body))
        sections[heading.strip()] = Section(match.group(1), args, body, example)
    return sections


def test_every_hook_is_documented_with_its_exact_signature() -> None:
    specs = hook_specs()
    docs = documented_hooks()
    undocumented, stale = sorted(set(HOOKS) - set(docs)), sorted(set(docs) - set(HOOKS))
    assert not undocumented, f"hooks missing from docs/plugins.md: {undocumented}"
    assert not stale, f"documented hooks that portal/plugin_api/hookspecs.py lacks: {stale}"
    for name, section in docs.items():
        assert section.signature_name == name
        assert section.args == specs[name].args, f"{name}: documented arguments differ"


def test_firstresult_hooks_and_only_those_say_so_in_the_docs() -> None:
    specs = hook_specs()
    for name, section in documented_hooks().items():
        assert ("firstresult" in section.body) == specs[name].firstresult, name


def test_every_hook_has_a_test() -> None:
    pattern = re.compile(r"^\s*def (test_hook_\w+)\(", re.M)
    tests = {
        name
        for path in TESTS.rglob("*.py")
        for name in pattern.findall(path.read_text(encoding="utf-8"))
    }
    missing = [hook for hook in HOOKS if f"test_hook_{hook}" not in tests]
    assert not missing, f"hooks without a test_hook_<name>: {missing}"


REGISTERED_TYPES: dict[str, type] = {
    "register_currencies": CurrencySpec,
    "register_payment_providers": PaymentProvider,
    "register_vat_validators": VatValidator,
    "register_invoice_formats": InvoiceFormat,
    "register_einvoicing_channels": EInvoicingChannel,
}


def sample_arguments(hook: str) -> dict[str, Any]:
    """Keyword arguments as core would pass them to ``hook``, and some it would not."""
    return {
        "plugin_config": make_plugin_config({}),
        "base": "EUR",
        "quote": "PLN",
        "on_date": dt.date(2026, 5, 4),
        "event": {
            "payment_settled": PAYMENT,
            "invoice_issued": INVOICE,
            "subscription_changed": CHANGE,
        }.get(hook),
    }


def stubbed(cls: type[Any]) -> Any:
    """``cls`` with the abstract methods it leaves out filled in with stubs.

    Registration looks only at an object's type and name; the stubs keep the test plugins
    (and the docs' abridged examples) valid while the contract's base classes gain methods.
    """

    def unsupported(self: object, *args: object, **kwargs: object) -> NoReturn:
        raise NotImplementedError

    stubs = {name: unsupported for name in getattr(cls, "__abstractmethods__", ())}
    return type(cls.__name__, (cls,), stubs)


def load_example(source: str, name: str) -> tuple[pluggy.PluginManager, ModuleType]:
    """Run a code example from the docs as a plugin module, registered and checked."""
    module = ModuleType(name)
    exec(compile(source, f"docs/plugins.md ({name})", "exec"), module.__dict__)
    pm = pluggy.PluginManager("pakiet")
    pm.add_hookspecs(hookspecs)
    pm.register(module)
    pm.check_pending()
    return pm, module


def test_every_plugin_example_in_the_docs_registers_cleanly() -> None:
    blocks = PYTHON_BLOCK.findall(DOCS.read_text(encoding="utf-8"))
    sources = [source for source in blocks if "@hookimpl" in source]
    assert len(sources) > len(HOOKS), "the hook examples and the one in 'Writing a plugin'"
    for number, source in enumerate(sources, start=1):
        pm, module = load_example(source, f"example {number}")
        assert pm.get_hookcallers(module), f"example {number} implements no hook"


@pytest.mark.parametrize("hook", HOOKS)
def test_docs_example_implements_its_hook(hook: str) -> None:
    pm, module = load_example(documented_hooks()[hook].example, f"example of {hook}")

    caller = getattr(pm.hook, hook)
    assert [impl.plugin for impl in caller.get_hookimpls()] == [module]
    # An example may abridge a class ("... and the other abstract methods").
    for name, value in list(vars(module).items()):
        if inspect.isabstract(value) and value.__module__ == module.__name__:
            setattr(module, name, stubbed(value))
    assert caller.spec is not None
    arguments = sample_arguments(hook)
    result = caller(**{name: arguments[name] for name in caller.spec.argnames})

    if hook in REGISTERED_TYPES:
        (items,) = result
        assert items and all(isinstance(item, REGISTERED_TYPES[hook]) for item in items)
    elif caller.spec.opts.get("firstresult"):
        assert result is not None, f"the {hook} example answered nothing"


# -- test plugins and how apps get them -----------------------------------------------


@pytest.fixture
def plugins(request: pytest.FixtureRequest) -> list[Any]:
    """Fresh instances of the classes a test names with ``with_plugins``."""
    return [cls() for cls in request.param]


@pytest.fixture
def config_overrides(plugins: list[Any]) -> dict[str, Any]:
    return {
        "PLUGINS": [*BUILTIN_PLUGINS, *plugins],
        "PLUGIN_CONFIG": PLUGIN_CONFIG,
        # These tests name their own rate sources; the built-ins would answer first.
        "PLUGINS_BLOCK": ["pakiet_nbp", "pakiet_cnb"],
    }


def with_plugins(*classes: type) -> pytest.MarkDecorator:
    """Build the test's ``app`` with instances of ``classes`` as extra plugins."""
    ids = ["+".join(cls.__name__ for cls in classes)]
    return pytest.mark.parametrize("plugins", [classes], indirect=True, ids=ids)


def returning(hook: str, result: object) -> ModuleType:
    """A plugin whose implementation of ``hook`` returns ``result``."""

    def implementation(plugin_config: PluginConfig) -> object:
        return result

    plugin = ModuleType("faulty")
    setattr(plugin, hook, hookimpl(implementation))
    return plugin


@pytest.fixture
def refused(database_url: str) -> Callable[..., str]:
    """``refused(*plugins)``: the PluginError message that stops start-up with them."""

    def refused(*plugins: object) -> str:
        config = base_config(database_url, PLUGINS=[*BUILTIN_PLUGINS, *plugins])
        with pytest.raises(PluginError) as excinfo:
            create_app(config)
        return str(excinfo.value)

    return refused


# -- register_currencies ---------------------------------------------------------------


class Forint:
    @hookimpl
    def register_currencies(self, plugin_config: PluginConfig) -> list[CurrencySpec]:
        return [CurrencySpec("HUF", 2, plugin_config("forint")["names"])]


@with_plugins(Forint)
def test_hook_register_currencies(app: Flask) -> None:
    currencies = registry(app).currencies
    assert currencies["HUF"] == CurrencySpec(
        "HUF", 2, {"pl": "forint węgierski", "en": "Hungarian forint"}
    )
    assert {"PLN", "EUR", "USD", "CZK"} <= set(currencies), "built-ins are still there"


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ([CurrencySpec("PLN", 2, {})], "two plugins register the currency 'PLN'"),
        ([("HUF", 2, {})], "expected CurrencySpec"),
        (CurrencySpec("HUF", 2, {}), "register_currencies returned CurrencySpec"),
        ([CurrencySpec("ZZZ", 2, {})], "'ZZZ' is not an ISO 4217 code"),
        ([CurrencySpec("huf", 2, {})], "'huf' is not an ISO 4217 code"),
    ],
    ids=["duplicate", "not-a-spec", "not-a-list", "unknown-code", "lower-case"],
)
def test_hook_register_currencies_refuses(
    refused: Callable[..., str], result: object, message: str
) -> None:
    assert message in refused(returning("register_currencies", result))


# -- register_payment_providers ------------------------------------------------------------


@stubbed
class BankTransfer(PaymentProvider):
    name = "bank_transfer"

    def label(self, language: str) -> str:
        return "Przelew bankowy" if language == "pl" else "Bank transfer"


@stubbed
class Nameless(PaymentProvider):
    def label(self, language: str) -> str:
        return "?"


class LooksLikeAProvider:
    name = "duck"

    def label(self, language: str) -> str:
        return "Duck"


class Transfers:
    @hookimpl
    def register_payment_providers(self) -> list[PaymentProvider]:
        return [BankTransfer()]


@with_plugins(Transfers)
def test_hook_register_payment_providers(app: Flask) -> None:
    providers = registry(app).payment_providers
    assert list(providers) == ["bank_transfer"]
    assert providers["bank_transfer"].label("pl") == "Przelew bankowy"


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (
            [BankTransfer(), BankTransfer()],
            "two plugins register the payment provider 'bank_transfer'",
        ),
        ([LooksLikeAProvider()], "expected PaymentProvider"),
        ([Nameless()], "has no name"),
        (BankTransfer(), "register_payment_providers returned"),
    ],
    ids=["duplicate", "not-a-provider", "nameless", "not-a-list"],
)
def test_hook_register_payment_providers_refuses(
    refused: Callable[..., str], result: object, message: str
) -> None:
    assert message in refused(returning("register_payment_providers", result))


# -- register_vat_validators -----------------------------------------------------------------


@stubbed
class NoOpinion(VatValidator):
    def check(self, *, country: str, number: str, now: dt.datetime) -> VatCheck | None:
        return None


class Vies(NoOpinion):
    name = "test_vies"  # the built-in VIES plugin is "vies"
    order = 50


class NipFormat(NoOpinion):
    name = "nip_format"
    order = 10


class LastResort(NoOpinion):
    name = "last_resort"  # keeps the default order, 100


class Validators:
    @hookimpl
    def register_vat_validators(self) -> list[VatValidator]:
        return [LastResort(), Vies(), NipFormat()]


@with_plugins(Validators)
def test_hook_register_vat_validators(app: Flask) -> None:
    ours = {"nip_format", "test_vies", "last_resort"}
    validators = [v for v in registry(app).vat_validators if v.name in ours]
    assert [v.name for v in validators] == ["nip_format", "test_vies", "last_resort"]


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ([Vies(), Vies()], "two plugins register the VAT validator 'test_vies'"),
        ([BankTransfer()], "expected VatValidator"),
        (Vies(), "register_vat_validators returned"),
    ],
    ids=["duplicate", "not-a-validator", "not-a-list"],
)
def test_hook_register_vat_validators_refuses(
    refused: Callable[..., str], result: object, message: str
) -> None:
    assert message in refused(returning("register_vat_validators", result))


# -- register_invoice_formats ------------------------------------------------------------


@stubbed
class PlainText(InvoiceFormat):
    name = "txt"
    media_type = "text/plain"
    extension = "txt"

    def render(self, *, invoice: Any, language: str) -> bytes:
        return f"{invoice.number}\n".encode()


class Formats:
    @hookimpl
    def register_invoice_formats(self, plugin_config: PluginConfig) -> list[InvoiceFormat]:
        return [PlainText()]


@with_plugins(Formats)
def test_hook_register_invoice_formats(app: Flask) -> None:
    formats = registry(app).invoice_formats
    assert list(formats) == ["txt"]
    assert (formats["txt"].media_type, formats["txt"].extension) == ("text/plain", "txt")


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ([PlainText(), PlainText()], "two plugins register the invoice format 'txt'"),
        ([b"%PDF-1.7"], "expected InvoiceFormat"),
        ({"txt": PlainText()}, "register_invoice_formats returned"),
    ],
    ids=["duplicate", "not-a-format", "not-a-list"],
)
def test_hook_register_invoice_formats_refuses(
    refused: Callable[..., str], result: object, message: str
) -> None:
    assert message in refused(returning("register_invoice_formats", result))


# -- register_einvoicing_channels ---------------------------------------------------------


@stubbed
class Sdi(EInvoicingChannel):
    """Italy's Sistema di Interscambio: an Italian seller's documents, accepted at once."""

    name = "sdi"

    def covers(self, document: Any) -> bool:
        return bool(document.seller.country == "IT")

    def submit(self, submission: EInvoiceSubmission) -> EInvoiceResult:
        return EInvoiceResult(EInvoiceState.ACCEPTED, national_number="IT-1", assigned_at=NOW)


class Channels:
    @hookimpl
    def register_einvoicing_channels(self, plugin_config: PluginConfig) -> list[Any]:
        return [Sdi()]


@with_plugins(Channels)
def test_hook_register_einvoicing_channels(app: Flask) -> None:
    channels = registry(app).einvoicing_channels
    assert list(channels) == ["sdi"]
    italian = dataclasses.make_dataclass("Doc", ["seller"])(
        seller=dataclasses.make_dataclass("Party", ["country"])("IT")
    )
    assert channels["sdi"].covers(italian)
    submission = EInvoiceSubmission("s1", 1, italian, b"<x/>", "hash", None, offline=False)
    assert channels["sdi"].submit(submission).national_number == "IT-1"
    assert (
        channels["sdi"].verification_url(
            document=italian, payload_hash="hash", national_number="IT-1"
        )
        is None
    )  # the default: no QR code on the copy


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ([Sdi(), Sdi()], "two plugins register the e-invoicing channel 'sdi'"),
        (["sdi"], "expected EInvoicingChannel"),
        ({"sdi": Sdi()}, "register_einvoicing_channels returned"),
    ],
    ids=["duplicate", "not-a-channel", "not-a-list"],
)
def test_hook_register_einvoicing_channels_refuses(
    refused: Callable[..., str], result: object, message: str
) -> None:
    assert message in refused(returning("register_einvoicing_channels", result))


# -- get_exchange_rate -------------------------------------------------------------------


class Fallback:
    """Answers every pair, but only when nobody else did."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    @hookimpl(trylast=True)
    def get_exchange_rate(self, base: str, quote: str, on_date: dt.date) -> ExchangeRate:
        self.asked.append((base, quote))
        return ExchangeRate(base, quote, Decimal(1), on_date, "fallback")


class Nbp:
    """Knows EUR/PLN only, at the rate its settings give."""

    @hookimpl
    def get_exchange_rate(
        self, base: str, quote: str, on_date: dt.date, plugin_config: PluginConfig
    ) -> ExchangeRate | None:
        rate = plugin_config("nbp").get(f"{base}/{quote}")
        if rate is None:
            return None
        return ExchangeRate(base, quote, Decimal(rate), on_date, "NBP", "084/A/NBP/2026")


class Abstains:
    """Registered last, so asked first; takes only the arguments it needs."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    @hookimpl
    def get_exchange_rate(self, base: str, quote: str) -> None:
        self.asked.append((base, quote))


@with_plugins(Fallback, Nbp, Abstains)
def test_hook_get_exchange_rate(app: Flask, plugins: list[Any]) -> None:
    fallback, _, abstains = plugins
    reg = registry(app)
    day = dt.date(2026, 5, 4)

    def rate(base: str, quote: str) -> ExchangeRate | None:
        answer = reg.hook.get_exchange_rate(
            base=base, quote=quote, on_date=day, plugin_config=reg.plugin_config
        )
        assert answer is None or isinstance(answer, ExchangeRate)
        return answer

    assert rate("EUR", "PLN") == ExchangeRate(
        "EUR", "PLN", Decimal("4.2693"), day, "NBP", "084/A/NBP/2026"
    )
    assert abstains.asked == [("EUR", "PLN")], "a None answer does not stop the search"
    assert fallback.asked == [], "nobody is asked after the first answer"

    fallback_rate = rate("USD", "PLN")
    assert fallback_rate is not None and fallback_rate.source == "fallback"
    assert fallback.asked == [("USD", "PLN")]


@with_plugins(Abstains)
def test_hook_get_exchange_rate_is_none_when_nobody_answers(app: Flask) -> None:
    reg = registry(app)
    answer = reg.hook.get_exchange_rate(
        base="EUR", quote="PLN", on_date=dt.date(2026, 5, 4), plugin_config=reg.plugin_config
    )
    assert answer is None


# -- events ----------------------------------------------------------------------------------


class Recorder:
    """Keeps every event it is told about."""

    def __init__(self) -> None:
        self.events: list[object] = []

    @hookimpl
    def payment_settled(self, event: PaymentSettled) -> None:
        self.events.append(event)

    @hookimpl
    def invoice_issued(self, event: InvoiceIssued) -> None:
        self.events.append(event)

    @hookimpl
    def subscription_changed(self, event: SubscriptionChanged) -> None:
        self.events.append(event)


@with_plugins(Recorder, Recorder)
def test_hook_payment_settled(app: Flask, plugins: list[Recorder]) -> None:
    registry(app).hook.payment_settled(event=PAYMENT)
    assert [p.events for p in plugins] == [[PAYMENT], [PAYMENT]], "every listener hears it"


@with_plugins(Recorder)
def test_hook_invoice_issued(app: Flask, plugins: list[Recorder]) -> None:
    registry(app).hook.invoice_issued(event=INVOICE)
    assert plugins[0].events == [INVOICE]


@with_plugins(Recorder)
def test_hook_subscription_changed(app: Flask, plugins: list[Recorder]) -> None:
    registry(app).hook.subscription_changed(event=CHANGE)
    assert plugins[0].events == [CHANGE]


# -- calling conventions the docs promise -----------------------------------------------------


@with_plugins(Recorder)
def test_hooks_take_keyword_arguments_only(app: Flask, plugins: list[Recorder]) -> None:
    with pytest.raises(TypeError):
        registry(app).hook.invoice_issued(INVOICE)
    assert plugins[0].events == []


class KeywordOnly:
    @hookimpl
    def register_currencies(self, *, plugin_config: PluginConfig) -> list[CurrencySpec]:
        return []


def test_keyword_only_parameters_of_an_implementation_are_never_passed(database_url: str) -> None:
    config = base_config(database_url, PLUGINS=[*BUILTIN_PLUGINS, KeywordOnly()])
    with pytest.raises(PluginError, match="missing 1 required keyword-only argument") as excinfo:
        create_app(config)
    assert isinstance(excinfo.value.__cause__, TypeError)


# -- the docs say where each event fires and what its event carries: checked on the code ----

EVENT_HOOKS = ("payment_settled", "invoice_issued", "subscription_changed")
PORTAL = TESTS.parent / "portal"


def _firing_modules(hook: str) -> set[str]:
    """The modules of portal/ that call the hook (``<anything>.hook.<name>(`` or
    ``_hook().<name>(``)."""
    call = re.compile(rf"hook(?:\(\))?\.{hook}\(")
    found = set()
    for path in PORTAL.rglob("*.py"):
        if call.search(path.read_text(encoding="utf-8")):
            found.add(".".join(path.relative_to(PORTAL.parent).with_suffix("").parts))
    return found


@pytest.mark.parametrize("hook", EVENT_HOOKS)
def test_the_docs_name_every_module_that_fires_an_event_and_no_other(hook: str) -> None:
    body = documented_hooks()[hook].body
    when = body.split("**When:**", 1)[1].split("**Arguments:**", 1)[0]
    documented = set(re.findall(r"`(portal(?:\.\w+)+)`", when))
    assert documented == _firing_modules(hook), hook


@pytest.mark.parametrize(
    ("hook", "event"),
    [
        ("payment_settled", PaymentSettled),
        ("invoice_issued", InvoiceIssued),
        ("subscription_changed", SubscriptionChanged),
    ],
)
def test_the_docs_list_exactly_the_fields_of_each_event(hook: str, event: type) -> None:
    body = documented_hooks()[hook].body
    arguments = body.split("**Arguments:**", 1)[1].split("**Returns:**", 1)[0]
    assert f"`portal.plugin_api.contracts.{event.__name__}`" in arguments
    listed = arguments.split(" with ", 1)[1]
    # The field names are the backticked words that are not a type or a value.
    named = {word for word in re.findall(r"`(\w+)`", listed)}
    fields = {field.name for field in dataclasses.fields(event)}
    assert fields <= named, f"{hook}: fields missing from the docs: {sorted(fields - named)}"


def test_payment_settled_carries_the_same_public_id_as_the_provider_events() -> None:
    hints = {field.name: field.type for field in dataclasses.fields(PaymentSettled)}
    assert hints["payment_id"] == "str"
    request = {field.name: field.type for field in dataclasses.fields(PaymentRequest)}
    assert request["payment_id"] == "str" and request["webhook_url"] == "str | None"
