"""The plugin test kit: a pytest plugin shipped in the package, usable by any plugin."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.plugin_api.registry import registry

ROOT = Path(__file__).resolve().parents[2]


def test_the_kit_is_registered_as_the_pytest_plugin_pakiet(
    pytestconfig: pytest.Config,
) -> None:
    [point] = [ep for ep in entry_points(group="pytest11") if ep.name == "pakiet"]
    assert point.value == "portal.testing.pytest_plugin"
    assert pytestconfig.pluginmanager.get_plugin("pakiet") is not None


def test_the_kit_gives_a_migrated_app_and_a_client(
    pakiet_app: Flask, pakiet_client: FlaskClient
) -> None:
    from sqlalchemy import inspect

    from portal.infra.extensions import db

    with pakiet_app.app_context():
        tables = set(inspect(db.engine).get_table_names())
    assert {"account", "alembic_version", "payment"} <= tables
    assert pakiet_client.get("/login").status_code == 200
    assert registry(pakiet_app).payment_providers == {}  # nothing loaded unless asked


def test_a_plugin_suite_runs_on_the_kit_alone(pytester: pytest.Pytester) -> None:
    """A plugin author's test file, with no conftest of ours: only the installed kit."""
    pytester.makepyfile(
        test_mine="""
        import pytest

        from portal.plugin_api.registry import registry
        from portal.testing.pytest_plugin import BASE_PLUGINS

        @pytest.fixture
        def pakiet_config_overrides():
            return {"PLUGINS": [*BASE_PLUGINS, "pakiet_vat_format"]}

        def test_my_validator_loads(pakiet_app, pakiet_client):
            assert "PLN" in registry(pakiet_app).currencies
            assert registry(pakiet_app).vat_validators
            assert pakiet_client.get("/login").status_code == 200
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1)


def test_the_wheel_ships_migrations_py_typed_and_the_kit(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
            "--no-build-isolation", "--wheel-dir", str(tmp_path), str(ROOT),
        ],
        check=True,
        cwd=tmp_path,
    )  # fmt: skip
    [wheel] = tmp_path.glob("pakiet-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "portal/py.typed" in names
    assert "portal/migrations/env.py" in names
    assert "portal/migrations/versions/0008_sessions_passwords.py" in names
    assert {"portal/testing/__init__.py", "portal/testing/pytest_plugin.py"} <= names
    [points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(points).decode()
    assert "[pytest11]\npakiet = portal.testing.pytest_plugin" in text


def test_the_kit_signs_a_customer_in_through_the_real_forms(pakiet_customer: FlaskClient) -> None:
    page = pakiet_customer.get("/payment-methods")
    assert page.status_code == 200  # signed in: not sent to /login
    assert pakiet_customer.get("/login").status_code in (200, 302)


def test_the_kit_fills_the_billing_data_a_purchase_needs(pakiet_customer: FlaskClient) -> None:
    """Issue 23, point 5: the summary asks for the billing data until the kit saved them."""
    from portal.testing.pytest_plugin import Auth, csrf_token

    form = {
        "csrf_token": csrf_token(pakiet_customer, "/package/edit"),
        "package": "standard",
        "period": "month",
        "agents": "2",
        "conversations": "100",
        "currency": "PLN",
    }
    headers = {"HX-Request": "true"}
    assert pakiet_customer.post("/package/summary", data=form, headers=headers).status_code == 422
    assert Auth(pakiet_customer).fill_billing().status_code == 303
    priced = pakiet_customer.post("/package/summary", data=form, headers=headers)
    assert priced.status_code == 200 and 'name="quote_digest"' in priced.get_data(as_text=True)
