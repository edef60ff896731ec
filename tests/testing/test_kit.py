"""The plugin test kit: a pytest plugin shipped in the package, usable by any plugin."""

from __future__ import annotations

import os
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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout, as ``pip wheel`` builds it (setup.py's build_py)."""
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
            "--no-build-isolation", "--wheel-dir", str(folder), str(ROOT),
        ],
        check=True,
        cwd=folder,
    )  # fmt: skip
    [built] = folder.glob("pakiet-*.whl")
    return built


def test_the_wheel_ships_migrations_py_typed_and_the_kit(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "portal/py.typed" in names
    assert "portal/migrations/env.py" in names
    assert "portal/migrations/versions/0008_sessions_passwords.py" in names
    assert {"portal/testing/__init__.py", "portal/testing/pytest_plugin.py"} <= names
    [points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(points).decode()
    assert "[pytest11]\npakiet = portal.testing.pytest_plugin" in text


def test_the_wheel_ships_templates_translations_and_front_end_files(wheel: Path) -> None:
    """Issue 24: what the app reads outside portal/ in the repository, copied under
    portal/_shipped/ at build time (setup.py)."""
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {
        f"portal/_shipped/templates/{path.relative_to(ROOT / 'templates').as_posix()}"
        for path in (ROOT / "templates").rglob("*")
        if path.is_file()
    }
    assert "portal/_shipped/templates/auth/login.html" in templates
    assert templates <= names
    catalogues = sorted(p.parts[-3] for p in (ROOT / "translations").glob("*/LC_MESSAGES/*.po"))
    assert "pl" in catalogues and "en" in catalogues
    for lang in catalogues:
        assert f"portal/_shipped/translations/{lang}/LC_MESSAGES/messages.mo" in names
    assert {"portal/_shipped/static/htmx.min.js", "portal/_shipped/static/pico.min.css"} <= names
    shipped = zipfile.ZipFile(wheel).read("portal/_shipped/static/htmx.min.js")
    assert shipped == (ROOT / "node_modules/htmx.org/dist/htmx.min.js").read_bytes()


#: A plugin author's test, run by pytest on the unpacked wheel alone (no checkout).
FROM_THE_WHEEL = r"""
import re
from pathlib import Path

import portal
from portal.plugin_api.registry import registry
from portal.web import assets

UNPACKED = Path({unpacked!r}).resolve()


def test_portal_is_imported_from_the_unpacked_wheel(pakiet_app):
    assert Path(portal.__file__).resolve().is_relative_to(UNPACKED)
    shipped = UNPACKED / "portal" / "_shipped"
    assert Path(pakiet_app.template_folder) == shipped / "templates"
    assert Path(pakiet_app.config["BABEL_TRANSLATION_DIRECTORIES"]) == shipped / "translations"
    assert assets.FILES["htmx.min.js"] == shipped / "static" / "htmx.min.js"
    assert "PLN" in registry(pakiet_app).currencies


def test_a_customer_reads_the_pages_in_polish(pakiet_app, pakiet_customer):
    polish = {{"Accept-Language": "pl"}}
    package = pakiet_customer.get("/package", headers=polish)
    assert package.status_code == 200
    page = package.get_data(as_text=True)
    assert "<title>Mój pakiet · Pakiet</title>" in page
    login = pakiet_app.test_client().get("/login", headers=polish)
    assert login.status_code == 200
    assert "<title>Zaloguj się · Pakiet</title>" in login.get_data(as_text=True)
    for pattern in (r'href="(/assets/pico\.min\.[0-9a-f]{{12}}\.css)"',
                    r'src="(/assets/htmx\.min\.[0-9a-f]{{12}}\.js)"'):
        [url] = re.findall(pattern, page)
        asset = pakiet_customer.get(url)
        assert asset.status_code == 200 and asset.data
        assert asset.cache_control.immutable  # the fingerprint is the shipped file's
        asset.close()
"""


@pytest.mark.timeout(300)
def test_a_plugin_test_runs_on_the_installed_wheel_without_a_checkout(
    wheel: Path, tmp_path: Path
) -> None:
    """Issue 24: a third party's kit-based test, with ``portal`` imported from the wheel.

    The venv's editable install would win through its ``.pth`` finder: ``python -S`` skips
    the ``.pth`` files, and PYTHONPATH gives the unpacked wheel first, then the venv's
    site-packages for the dependencies (pytest, Flask, ...).
    """
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    project = tmp_path / "a_plugin"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "test_from_the_wheel.py").write_text(FROM_THE_WHEEL.format(unpacked=str(unpacked)))
    site_packages = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    env = {
        name: value
        for name, value in os.environ.items()
        # SQLite in the child: the parent's PostgreSQL test database is not the child's to drop.
        if not name.startswith(("PYTEST_", "PAKIET_", "PYTHON"))
    }
    env |= {
        "PYTHONPATH": os.pathsep.join([str(unpacked), site_packages]),
        "PAKIET_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    result = subprocess.run(
        [sys.executable, "-S", "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


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
