"""Loading plugins: entry points of installed distributions, allow/block lists, start-up
checks, ``flask plugins`` and hook tracing.

A third-party plugin is faked as an installed distribution: a ``.dist-info`` directory and
a module written to a temporary directory that is put on ``sys.path``.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

import pakiet_currencies
from portal import create_app
from portal.infra.extensions import db
from portal.plugin_api.contracts import CurrencySpec, PluginConfig
from portal.plugin_api.hookspecs import hookimpl
from portal.plugin_api.registry import PluginError, PluginInfo, registry
from tests.conftest import BUILTIN_PLUGINS, base_config

MODULE = "fake_pakiet_plugin"

FORINT_PLUGIN = '''
"""A third party's plugin: the Hungarian forint, and a listener for payments."""

from portal.plugin_api.contracts import CurrencySpec
from portal.plugin_api.hookspecs import hookimpl


@hookimpl
def register_currencies(plugin_config):
    return [CurrencySpec("HUF", 2, {"pl": "forint węgierski", "en": "Hungarian forint"})]


@hookimpl
def payment_settled(event):
    pass
'''

BUILTIN = PluginInfo(
    "currencies", pakiet_currencies.__version__, "pakiet", ("register_currencies",)
)
FAKE = PluginInfo("fake", "1.2.3", "fakeplugin", ("payment_settled", "register_currencies"))


@pytest.fixture
def install_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """``install_fake(source)``: "install" distribution fakeplugin 1.2.3, whose entry point
    ``fake`` in group ``pakiet`` is a module with ``source``."""

    def install(source: str = FORINT_PLUGIN) -> None:
        site = tmp_path / "site-packages"
        dist_info = site / "fakeplugin-1.2.3.dist-info"
        dist_info.mkdir(parents=True)
        (dist_info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: fakeplugin\nVersion: 1.2.3\n", encoding="utf-8"
        )
        (dist_info / "entry_points.txt").write_text(f"[pakiet]\nfake = {MODULE}\n")
        (site / f"{MODULE}.py").write_text(source, encoding="utf-8")
        monkeypatch.syspath_prepend(site)
        importlib.invalidate_caches()

    yield install
    sys.modules.pop(MODULE, None)


@pytest.fixture
def make_app(database_url: str) -> Iterator[Callable[..., Flask]]:
    """``make_app(**config)``: an app on the test database with the built-ins in
    ``PLUGINS`` and entry points off, unless ``config`` says otherwise."""
    apps: list[Flask] = []

    def make_app(**config: Any) -> Flask:
        app = create_app(base_config(database_url, **config))
        apps.append(app)
        return app

    yield make_app
    for app in apps:
        with app.app_context():
            db.engine.dispose()


# Entry points on; other built-ins stay out, so that the assertions are about these two.
AUTOLOAD = {"PLUGINS_AUTOLOAD": True, "PLUGINS": [], "PLUGINS_ALLOW": ["currencies", "fake"]}


def names(app: Flask) -> list[str]:
    return [info.name for info in registry(app).plugins()]


# -- discovery through entry points -----------------------------------------------------


def test_installed_plugin_is_loaded_with_its_distribution_and_version(
    install_fake: Callable[..., None], make_app: Callable[..., Flask]
) -> None:
    install_fake()
    app = make_app(**AUTOLOAD)

    assert registry(app).plugins() == [BUILTIN, FAKE]
    assert registry(app).currencies["HUF"].minor_units == 2


def test_builtin_plugin_shows_its_own_version_rather_than_the_distributions(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(**AUTOLOAD)

    (info,) = registry(app).plugins()
    assert info.distribution == "pakiet"
    assert info.version == pakiet_currencies.__version__
    assert info.version != version("pakiet"), "the test means nothing if the two agree"


@pytest.mark.parametrize(
    "lists",
    [{"PLUGINS_BLOCK": ["fake"]}, {"PLUGINS_ALLOW": ["currencies"]}],
    ids=["blocked", "not-allowed"],
)
def test_block_and_allow_lists_keep_an_installed_plugin_out(
    install_fake: Callable[..., None], make_app: Callable[..., Flask], lists: dict[str, Any]
) -> None:
    install_fake()
    app = make_app(**{**AUTOLOAD, **lists})

    assert names(app) == ["currencies"]
    assert "HUF" not in registry(app).currencies


def test_blocking_a_builtin_lets_a_module_in_plugins_take_its_place(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(
        **{**AUTOLOAD, "PLUGINS_BLOCK": ["currencies"], "PLUGINS": ["pakiet_currencies"]}
    )

    assert names(app) == ["pakiet_currencies"]
    assert set(registry(app).currencies) == {"PLN", "EUR", "USD", "CZK"}


def test_without_autoload_installed_plugins_are_ignored(
    install_fake: Callable[..., None], make_app: Callable[..., Flask]
) -> None:
    install_fake()
    app = make_app()

    assert "fake" not in names(app)
    assert "HUF" not in registry(app).currencies


def test_a_module_named_in_plugins_and_in_an_entry_point_is_registered_once(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(**{**AUTOLOAD, "PLUGINS": ["pakiet_currencies"]})

    assert names(app) == ["currencies"]


# -- start-up refuses broken plugins ------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            FORINT_PLUGIN.replace("def register_currencies", "def register_currencys"),
            "unknown hook 'register_currencys'",
        ),
        (
            FORINT_PLUGIN.replace("register_currencies(plugin_config)", "register_currencies(cfg)"),
            "Argument(s) {'cfg'} are declared in the hookimpl but can not be found in the hookspec",
        ),
        (
            "import pakiet_does_not_exist\n",
            "plugin 'fake' (fake_pakiet_plugin) failed to import: No module named",
        ),
    ],
    ids=["misspelt-hook", "unknown-argument", "import-error"],
)
def test_a_broken_plugin_stops_start_up(
    install_fake: Callable[..., None],
    make_app: Callable[..., Flask],
    source: str,
    message: str,
) -> None:
    install_fake(source)
    with pytest.raises(PluginError) as excinfo:
        make_app(**AUTOLOAD)
    assert message in str(excinfo.value)


class WrongMinorUnits:
    def __init__(self, spec: CurrencySpec) -> None:
        self.spec = spec

    @hookimpl
    def register_currencies(self, plugin_config: PluginConfig) -> list[CurrencySpec]:
        return [self.spec]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        # CLDR rounds forint cash to whole units; ISO 4217 (and invoices) keep two digits.
        (CurrencySpec("HUF", 0, {}), "currency HUF: minor_units 0 disagrees with ISO 4217 (2)"),
        (CurrencySpec("JPY", 2, {}), "currency JPY: minor_units 2 disagrees with ISO 4217 (0)"),
        (CurrencySpec("KWD", 2, {}), "currency KWD: minor_units 2 disagrees with ISO 4217 (3)"),
    ],
    ids=["HUF", "JPY", "KWD"],
)
def test_a_currency_with_wrong_minor_units_is_refused(
    make_app: Callable[..., Flask], spec: CurrencySpec, message: str
) -> None:
    with pytest.raises(PluginError) as excinfo:
        make_app(PLUGINS=[*BUILTIN_PLUGINS, WrongMinorUnits(spec)])
    assert str(excinfo.value) == message


@pytest.mark.parametrize(
    ("config", "missing"),
    [
        ({"PLUGINS": []}, "PLN, EUR, USD, CZK"),
        ({**AUTOLOAD, "PLUGINS_BLOCK": ["currencies"]}, "PLN, EUR, USD, CZK"),
        ({"PLUGINS_BLOCK": ["pakiet_currencies"]}, "PLN, EUR, USD, CZK"),
        ({"PLUGIN_CONFIG": {"currencies": {"enabled": ["PLN"]}}}, "EUR, USD, CZK"),
    ],
    ids=["no-plugins", "entry-point-blocked", "module-blocked", "narrowed-by-config"],
)
def test_a_catalogue_currency_without_a_plugin_stops_start_up(
    make_app: Callable[..., Flask], config: dict[str, Any], missing: str
) -> None:
    with pytest.raises(PluginError) as excinfo:
        make_app(**config)
    assert str(excinfo.value) == f"no currency plugin provides {missing} from the catalogue"


# -- flask plugins ---------------------------------------------------------------------------


def test_flask_plugins_lists_plugins_with_versions_and_hooks(
    install_fake: Callable[..., None], make_app: Callable[..., Flask]
) -> None:
    install_fake()
    app = make_app(**AUTOLOAD)

    result = app.test_cli_runner().invoke(args=["plugins"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # Each plugin, what it registered beneath it (issue 24, point 6).
    assert lines[:4] == [
        f"currencies {pakiet_currencies.__version__} (pakiet): register_currencies",
        "  currency: CZK, EUR, PLN, USD",
        "fake 1.2.3 (fakeplugin): payment_settled, register_currencies",
        "  currency: HUF",
    ]
    # Then the ones that are off, and why; then the warnings of the start-up.
    assert "off: stripe: not in PLUGINS_ALLOW" in lines
    assert (
        "warning: currency HUF of plugin 'fake' has no prices in the catalogue: it is not sold"
        in lines
    )


def test_flask_plugins_leaves_out_blocked_plugins(
    install_fake: Callable[..., None], make_app: Callable[..., Flask]
) -> None:
    install_fake()
    app = make_app(**AUTOLOAD, PLUGINS_BLOCK=["fake"])

    result = app.test_cli_runner().invoke(args=["plugins"])

    lines = result.output.splitlines()
    assert lines[:2] == [
        f"currencies {pakiet_currencies.__version__} (pakiet): register_currencies",
        "  currency: CZK, EUR, PLN, USD",
    ]
    assert "off: fake: blocked by PLUGINS_BLOCK" in lines
    assert not any(line.startswith("fake ") for line in lines)


# -- tracing -----------------------------------------------------------------------------------


def test_trace_plugins_prints_hook_calls_to_stderr(
    make_app: Callable[..., Flask], capsys: pytest.CaptureFixture[str]
) -> None:
    make_app(TRACE_PLUGINS=True)

    err = capsys.readouterr().err
    for hook in ("register_currencies", "register_payment_providers"):
        assert f"  {hook} [hook]\n" in err
        assert f"  finish {hook} -->" in err
    assert "CurrencySpec(code='PLN', minor_units=2" in err


def test_pakiet_trace_plugins_environment_variable_turns_tracing_on(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PAKIET_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("PAKIET_DATABASE_URL", database_url)
    monkeypatch.setenv("PAKIET_PLUGINS_AUTOLOAD", "false")
    monkeypatch.setenv("PAKIET_PLUGINS", json.dumps(BUILTIN_PLUGINS))
    monkeypatch.setenv("PAKIET_TRACE_PLUGINS", "1")
    monkeypatch.setenv("PAKIET_DEVELOPMENT", "1")
    app = create_app()
    with app.app_context():
        db.engine.dispose()

    assert "  register_currencies [hook]\n" in capsys.readouterr().err


def test_without_tracing_nothing_is_printed(
    make_app: Callable[..., Flask], capsys: pytest.CaptureFixture[str]
) -> None:
    make_app()

    assert "[hook]" not in capsys.readouterr().err


# -- start-up errors name the plugin --------------------------------------------------


class RaisingRegister:
    @hookimpl
    def register_payment_providers(self, plugin_config: PluginConfig) -> list[Any]:
        raise RuntimeError("no API key")


class NotAList:
    @hookimpl
    def register_vat_validators(self, plugin_config: PluginConfig) -> Any:
        return "vies"


class WrongType:
    @hookimpl
    def register_invoice_formats(self, plugin_config: PluginConfig) -> list[Any]:
        return [object]


class SecondPLN:
    @hookimpl
    def register_currencies(self, plugin_config: PluginConfig) -> list[CurrencySpec]:
        return [CurrencySpec("PLN", 2, {})]


class HalfProvider:
    """A provider class without ``start_payment`` (an abstract method): instantiating it in
    the hook raises TypeError, which start-up reports with the plugin's name."""

    @hookimpl
    def register_payment_providers(self, plugin_config: PluginConfig) -> list[Any]:
        from portal.plugin_api.contracts import PaymentProvider

        class Half(PaymentProvider):  # type: ignore[misc]
            name = "half"

            def label(self, language: str) -> str:
                return "Half"

        return [Half()]  # type: ignore[abstract]


class TwoOfOneName:
    @hookimpl
    def register_payment_providers(self, plugin_config: PluginConfig) -> list[Any]:
        from pakiet_paybylink.provider import PayByLinkProvider

        config = {"base_url": "http://127.0.0.1:9", "merchant_id": "m", "secret": "s"}
        return [PayByLinkProvider(config), PayByLinkProvider(config)]


@pytest.mark.parametrize(
    ("plugin", "name", "message"),
    [
        (RaisingRegister(), "raising", "plugin 'raising': register_payment_providers raised"),
        (HalfProvider(), "half", "plugin 'half': register_payment_providers raised"),
        (TwoOfOneName(), "twice", "'paybylink'"),
        (NotAList(), "notalist", "plugin 'notalist': register_vat_validators returned 'vies'"),
        (WrongType(), "wrongtype", "plugin 'wrongtype' returned <class 'object'>"),
        (
            SecondPLN(),
            "second",
            "two plugins register the currency 'PLN': 'second' and 'pakiet_currencies'",
        ),
    ],
    ids=[
        "raising-register",
        "missing-abstract-method",
        "two-providers-one-name",
        "not-a-list",
        "wrong-type",
        "duplicate",
    ],
)
def test_a_start_up_error_names_the_plugin(
    make_app: Callable[..., Flask],
    plugin: object,
    name: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "thirdparty"))
    plugin.__name__ = name  # type: ignore[attr-defined]
    with pytest.raises(PluginError) as excinfo:
        make_app(PLUGINS=[*BUILTIN_PLUGINS, plugin])
    assert message in str(excinfo.value)
    assert f"'{name}'" in str(excinfo.value)  # the plugin is named


# -- warnings at start-up (issue 24, point 6) ---------------------------------------------------


class NoHooks:
    """A plugin whose author forgot ``@hookimpl``."""

    def register_currencies(self, plugin_config: PluginConfig) -> list[CurrencySpec]:
        return [CurrencySpec("HUF", 2, {"pl": "forint", "en": "forint"})]


def test_start_up_warns_of_a_plugin_without_hooks_and_of_typos_in_allow_and_block(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(
        PLUGINS=[*BUILTIN_PLUGINS, NoHooks()],
        PLUGINS_BLOCK=["stirpe"],
        PLUGINS_ALLOW=["currencies", "vies", "vat_fromat"],
    )
    warnings = registry(app).warnings
    assert any("NoHooks' implements no hook" in w for w in warnings), warnings
    assert "PLUGINS_BLOCK names 'stirpe', which is no plugin: a typo?" in warnings
    assert "PLUGINS_ALLOW names 'vat_fromat', which is no plugin: a typo?" in warnings
    assert "PLUGINS_ALLOW names 'vies', which is no plugin: a typo?" not in warnings
    assert "a typo?" in caplog.text  # logged too


def test_start_up_warns_of_a_currency_no_provider_takes(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pakiet_stripe.emulator import StripeEmulator

    with StripeEmulator(api_key="sk_test_x", webhook_secret="whsec_x") as stripe:
        monkeypatch.setattr("pakiet_stripe.client.StripeProvider.currencies", frozenset({"PLN"}))
        app = make_app(
            PLUGINS=list(BUILTIN_PLUGINS),
            PLUGIN_CONFIG={
                "stripe": {
                    "api_key": "sk_test_x",
                    "webhook_secret": "whsec_x",
                    "api_base": stripe.base_url,
                }
            },
        )
    warnings = registry(app).warnings
    assert "currency EUR: no payment provider takes it" in warnings
    assert "currency PLN: no payment provider takes it" not in warnings


def test_start_up_warns_of_a_vat_validator_written_before_api_1_2(
    make_app: Callable[..., Flask],
) -> None:
    """Plugin API 1.2 changed what a validator's VALID means (without ``VatCheck.registry``
    it confirms nothing): a validator plugin that does not declare 1.2 is named at start-up;
    one that does, and the offline format check, are not."""
    import types

    from portal.plugin_api.contracts import VatValidator
    from portal.plugin_api.hookspecs import hookimpl

    def validator_plugin(module_name: str, validator_name: str, api: Any) -> types.ModuleType:
        class Registry(VatValidator):
            name, order = validator_name, 30

            def check(self, *, country: str, number: str, now: Any) -> None:
                return None

        module = types.ModuleType(module_name)
        if api is not None:
            module.PAKIET_API = api  # type: ignore[attr-defined]

        @hookimpl
        def register_vat_validators(plugin_config: Any) -> list[VatValidator]:
            return [Registry()]

        module.register_vat_validators = register_vat_validators  # type: ignore[attr-defined]
        return module

    app = make_app(
        PLUGINS=[
            *BUILTIN_PLUGINS,
            validator_plugin("pakiet_old_registry", "old_registry", None),
            validator_plugin("pakiet_new_registry", "new_registry", (1, 2)),
        ]
    )
    warned = [w for w in registry(app).warnings if "does not declare plugin API 1.2" in w]
    assert len(warned) == 1, registry(app).warnings
    assert "'old_registry'" in warned[0] and "VatCheck.registry" in warned[0]


def test_flask_plugins_lists_the_providers_validators_and_rate_sources_of_the_built_ins(
    make_app: Callable[..., Flask],
) -> None:
    """Issue 24, point 6: every kind a plugin registers is listed beneath it."""
    from pakiet_stripe.emulator import StripeEmulator

    with StripeEmulator(api_key="sk_test_x", webhook_secret="whsec_x") as stripe:
        config = {"api_key": "sk_test_x", "webhook_secret": "whsec_x", "api_base": stripe.base_url}
        app = make_app(PLUGINS=list(BUILTIN_PLUGINS), PLUGIN_CONFIG={"stripe": config})
        output = app.test_cli_runner().invoke(args=["plugins"]).output
    lines = output.splitlines()
    for plugin, registered in [
        ("pakiet_stripe", "payment provider: stripe"),
        ("pakiet_vies", "VAT validator: vies"),
        ("pakiet_vat_format", "VAT validator: vat_format"),
        ("pakiet_nbp", "rate source: pakiet_nbp"),
        ("pakiet_cnb", "rate source: pakiet_cnb"),
        ("pakiet_paypal", "registered nothing (not configured, or switched off in its settings)"),
    ]:
        [at] = [i for i, line in enumerate(lines) if line.startswith(f"{plugin} ")]
        assert lines[at + 1] == f"  {registered}", output
