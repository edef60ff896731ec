"""The hook-API version: a plugin can require one, deprecations warn naming the plugin."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

from portal import create_app, plugin_api
from portal.plugin_api import (
    API_VERSION,
    ApiVersionError,
    Deprecation,
    api_satisfies,
    require_api,
)
from portal.plugin_api.contracts import (
    InvoiceFormat,
    InvoiceIssued,
    PaymentProvider,
    PluginConfig,
    VatValidator,
)
from portal.plugin_api.hookspecs import hookimpl
from portal.plugin_api.registry import PluginError, registry
from tests.conftest import BUILTIN_PLUGINS, base_config


def test_api_version_is_a_tuple_of_two_numbers() -> None:
    assert isinstance(API_VERSION, tuple) and len(API_VERSION) == 2
    assert all(isinstance(part, int) for part in API_VERSION)
    assert API_VERSION >= (1, 1)  # 1.1: PaymentRequest.webhook_url, one payment id


def test_a_plugin_may_require_an_older_minor_but_not_a_newer_one_or_another_major() -> None:
    major, minor = API_VERSION
    assert api_satisfies((major, 0)) and api_satisfies((major, minor)) and api_satisfies((major,))
    assert not api_satisfies((major, minor + 1))
    assert not api_satisfies((major + 1, 0))
    assert not api_satisfies((major - 1, minor))


def test_require_api_at_import_names_the_plugin() -> None:
    major, minor = API_VERSION
    require_api((major, minor), plugin="pakiet_ok")
    with pytest.raises(ApiVersionError, match=rf"plugin 'pakiet_new' needs .*{major}\.{minor + 1}"):
        require_api((major, minor + 1), plugin="pakiet_new")
    with pytest.raises(ApiVersionError, match="plugin 'pakiet_odd'.*expected a tuple"):
        require_api("1.0", plugin="pakiet_odd")  # type: ignore[arg-type]


def _module(name: str, **attributes: object) -> ModuleType:
    module = ModuleType(name)
    for key, value in attributes.items():
        setattr(module, key, value)
    return module


def test_a_plugin_stating_a_newer_api_in_its_metadata_stops_start_up_naming_it(
    database_url: str,
) -> None:
    major, minor = API_VERSION
    future = _module("pakiet_future", PAKIET_API=(major, minor + 1))
    config = base_config(database_url, PLUGINS=[*BUILTIN_PLUGINS, future])
    with pytest.raises(PluginError, match=r"plugin 'pakiet_future' needs the Pakiet plugin API"):
        create_app(config)


def test_a_plugin_stating_the_current_api_loads(database_url: str) -> None:
    current = _module("pakiet_current", PAKIET_API=API_VERSION)
    app = create_app(base_config(database_url, PLUGINS=[*BUILTIN_PLUGINS, current]))
    assert "pakiet_current" in {info.name for info in registry(app).plugins()}


def test_require_api_raised_at_import_names_the_plugin(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    major, minor = API_VERSION
    source = (
        "from portal.plugin_api import require_api\n"
        f"require_api(({major}, {minor + 1}), plugin='pakiet_importing')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "pakiet_importing.py").write_text(source)
    importlib.invalidate_caches()
    config = base_config(database_url, PLUGINS=[*BUILTIN_PLUGINS, "pakiet_importing"])
    try:
        with pytest.raises(ApiVersionError, match="plugin 'pakiet_importing' needs"):
            create_app(config)
    finally:
        sys.modules.pop("pakiet_importing", None)


# -- deprecation: one version of warnings before a hook or an argument goes ---------------


class ListensToInvoices:
    @hookimpl
    def invoice_issued(self, event: InvoiceIssued) -> None:
        pass


class RegistersFormats:
    @hookimpl
    def register_invoice_formats(self, plugin_config: PluginConfig) -> list[InvoiceFormat]:
        return []


class RegistersFormatsWithoutConfig:
    @hookimpl
    def register_invoice_formats(self) -> list[InvoiceFormat]:
        return []


def _start(database_url: str, *plugins: object) -> list[str]:
    config = base_config(database_url, PLUGINS=[*BUILTIN_PLUGINS, *plugins])
    with pytest.warns(DeprecationWarning) as caught:
        create_app(config)
    return [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]


def test_a_deprecated_hook_warns_naming_each_plugin_that_implements_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = Deprecation("invoice_issued", None, (2, 0), "use document_issued instead")
    monkeypatch.setattr(plugin_api, "DEPRECATIONS", (gone,))
    [message] = _start(database_url, ListensToInvoices(), RegistersFormats())
    assert "hook 'invoice_issued'" in message and "2.0" in message
    assert "use document_issued instead" in message
    assert "ListensToInvoices" in message  # the plugin's registered name


def test_a_deprecated_argument_warns_only_plugins_that_take_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = Deprecation("register_invoice_formats", "plugin_config", (2, 0), "read settings")
    monkeypatch.setattr(plugin_api, "DEPRECATIONS", (gone,))
    messages = _start(database_url, RegistersFormats(), RegistersFormatsWithoutConfig())
    named = [m for m in messages if "RegistersFormats" in m]
    assert len(named) == 1 and "RegistersFormatsWithoutConfig" not in named[0]
    assert "argument 'plugin_config' of hook 'register_invoice_formats'" in named[0]


def test_nothing_warns_when_nothing_is_deprecated(database_url: str) -> None:
    import warnings

    assert plugin_api.DEPRECATIONS == ()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        create_app(base_config(database_url, PLUGINS=[*BUILTIN_PLUGINS, RegistersFormats()]))


# -- contracts only grow with defaults ----------------------------------------------------

#: The abstract methods of API 1.0. A method added since must have a default, so that a
#: plugin written for an older minor version still loads; this list never grows.
ABSTRACT_1_0 = {
    PaymentProvider: {
        "label",
        "start_payment",
        "complete_return",
        "charge_saved",
        "refund",
        "parse_webhook",
    },
    VatValidator: {"check"},
    InvoiceFormat: {"render"},
}


@pytest.mark.parametrize("contract", list(ABSTRACT_1_0), ids=lambda c: c.__name__)
def test_contract_methods_added_after_1_0_have_defaults(contract: type) -> None:
    assert set(contract.__abstractmethods__) <= ABSTRACT_1_0[contract]
