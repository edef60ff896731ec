"""The pytest plugin ``pakiet`` (entry point group ``pytest11``): a portal to test against.

Installed with the portal, so a plugin's own test suite gets, without copying anything:

``pakiet_database_url``
    a database at the migrations' head, fresh per test: a copy of a migrated SQLite
    template, or the PostgreSQL database given by ``--pakiet-database-url`` or the
    ``PAKIET_TEST_DATABASE_URL`` environment variable (migrated once, emptied after each
    test).
``pakiet_config``
    the configuration dictionary the app is built from; override the fixture (or
    ``pakiet_config_overrides``) to load your plugin:
    ``{"PLUGINS": [*BASE_PLUGINS, "my_plugin"], "PLUGIN_CONFIG": {...}}``.
``pakiet_app`` / ``pakiet_client``
    the app built from it, and Flask's test client for it.
``pakiet_customer``
    that client, signed up and signed in as a new customer through the real forms (CSRF
    tokens read from the pages, as a browser would; :class:`Auth` does the same for you).
    A new customer has no billing country or address yet, and nothing is sold without
    them: ``Auth(client).fill_billing()`` saves them through the Billing information form.
``pakiet_staff``
    another client, signed in as staff (an admin, as ``flask create-admin`` makes one), for
    the back office at ``/admin/``.
:class:`Checkout`
    buys through the real checkout as a browser does (the live summary's quote, Pay with
    the provider you name): ``Checkout(pakiet_customer).pay("my_provider")`` answers the
    redirect to your provider's page.

The fixtures are prefixed ``pakiet_`` so that they never shadow a project's own.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient

DATABASE_URL_ENV = "PAKIET_TEST_DATABASE_URL"
PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')
#: Loaded unless ``PLUGINS`` is given: the currencies of the default catalogue.
BASE_PLUGINS = ("pakiet_currencies",)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pakiet", "Pakiet plugin test kit")
    group.addoption(
        "--pakiet-database-url",
        default=None,
        help=f"PostgreSQL URL for the Pakiet app under test (default: ${DATABASE_URL_ENV}, "
        "else a SQLite file per test)",
    )


def database_url_option(config: pytest.Config) -> str:
    """The URL chosen on the command line or in the environment, or ``""`` for SQLite."""
    url = config.getoption("--pakiet-database-url", default=None)
    return str(url or os.environ.get(DATABASE_URL_ENV, ""))


def kit_config(url: str, **extra: Any) -> dict[str, Any]:
    """A test configuration: development mode, no entry points autoloaded, fast hashing."""
    config: dict[str, Any] = {
        "TESTING": True,
        "DEVELOPMENT": True,
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": url,
        "PLUGINS_AUTOLOAD": False,
        # The catalogue sells in PLN, EUR, USD and CZK: someone must provide them.
        "PLUGINS": list(BASE_PLUGINS),
        "LOGIN_RATE_LIMIT": "1000 per minute",
        "NOTE_RATE_LIMIT": "1000 per minute",
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
        # A test's in-process billing run renews one subscription at a time, in the test's
        # own session; the threads (RENEWAL_THREADS) are tested where they are the subject.
        "RENEWAL_THREADS": 1,
    }
    config.update(extra)
    return config


def migrate(config: dict[str, Any]) -> None:
    """Bring the database of ``config`` to the migrations' head (PostgreSQL: from empty)."""
    import sqlalchemy as sa
    from flask_migrate import upgrade

    from portal import create_app
    from portal.infra.extensions import db

    app = create_app(config)
    with app.app_context():
        if config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
            with db.engine.begin() as conn:
                conn.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
                conn.execute(sa.text("CREATE SCHEMA public"))
        upgrade()
        db.engine.dispose()


def empty(app: Flask) -> None:
    """Empty every table of a PostgreSQL database (after a test)."""
    import sqlalchemy as sa

    from portal.infra.extensions import db

    with app.app_context():
        tables = ", ".join(f'"{t.name}"' for t in reversed(db.metadata.sorted_tables))
        with db.engine.begin() as conn:
            conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        db.engine.dispose()


@pytest.fixture(scope="session")
def pakiet_migrated_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    url = database_url_option(request.config)
    if url:
        migrate(kit_config(url))
        return url
    path = tmp_path_factory.mktemp("pakiet-template") / "template.sqlite3"
    migrate(kit_config(f"sqlite:///{path}"))
    return str(path)


@pytest.fixture
def pakiet_database_url(pakiet_migrated_db: str, tmp_path: Path) -> str:
    if "://" in pakiet_migrated_db:
        return pakiet_migrated_db
    target = tmp_path / "pakiet.sqlite3"
    shutil.copyfile(pakiet_migrated_db, target)
    return f"sqlite:///{target}"


@pytest.fixture
def pakiet_config_overrides() -> dict[str, Any]:
    """Override to load your plugin: ``{"PLUGINS": [...], "PLUGIN_CONFIG": {...}}``."""
    return {}


@pytest.fixture
def pakiet_config(
    pakiet_database_url: str, pakiet_config_overrides: dict[str, Any]
) -> dict[str, Any]:
    return kit_config(pakiet_database_url, **pakiet_config_overrides)


@pytest.fixture
def pakiet_app(pakiet_config: dict[str, Any]) -> Iterator[Flask]:
    from portal import create_app
    from portal.infra.extensions import db

    app = create_app(pakiet_config)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    if pakiet_config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        empty(app)


@pytest.fixture
def pakiet_client(pakiet_app: Flask) -> FlaskClient:
    return pakiet_app.test_client()


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    """The CSRF token a form on ``path`` carries for this client's session."""
    html = client.get(path).get_data(as_text=True)
    match = CSRF_RE.search(html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


class Auth:
    """Sign-up and log-in through the real forms, CSRF included."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def signup(
        self,
        email: str,
        company: str = "Acme Sp. z o.o.",
        password: str = PASSWORD,
        *,
        confirm: bool = True,
    ) -> Any:
        """Sign up through the form; with ``confirm``, then follow the confirmation link
        (made as the e-mail's is) and press its button, which logs the new user in.
        Answers the last response."""
        token = csrf_token(self.client, "/signup")
        response = self.client.post(
            "/signup",
            data={
                "csrf_token": token,
                "company": company,
                "email": email,
                "password": password,
                "confirm": password,
            },
        )
        if not confirm or response.status_code != 302:
            return response
        from portal.rules import accounts
        from portal.web import auth as views

        with self.client.application.test_request_context():
            user = accounts.find_user(email)
            if user is None or user.email_confirmed_at is not None:
                return response
            path = views.confirm_path(user)
        return self.client.post(path, data={"csrf_token": csrf_token(self.client, path)})

    def login(self, email: str, password: str = PASSWORD) -> Any:
        token = csrf_token(self.client, "/login")
        return self.client.post(
            "/login", data={"csrf_token": token, "email": email, "password": password}
        )

    def fill_billing(
        self,
        *,
        country: str = "PL",
        company: str = "Acme Sp. z o.o.",
        street: str = "ul. Prosta 51",
        postcode: str = "00-838",
        city: str = "Warszawa",
        invoice_email: str = "invoices@example.com",
        vat_number: str = "",
    ) -> Any:
        """Save Billing information through its form, as the signed-in customer: nothing is
        sold without the buyer's country and address, so a customer who is to buy needs
        them. Answers the response (a 303 when saved)."""
        token = csrf_token(self.client, "/billing")
        return self.client.post(
            "/billing",
            data={
                "csrf_token": token,
                "company_name": company,
                "street": street,
                "postcode": postcode,
                "city": city,
                "country": country,
                "vat_number": vat_number,
                "invoice_email": invoice_email,
            },
        )

    def logout(self) -> Any:
        token = csrf_token(self.client, "/package")
        return self.client.post("/logout", data={"csrf_token": token})


class Checkout:
    """The checkout through its real forms: the live summary (its quote digest, which Pay
    must name) and Pay with a chosen provider, CSRF included."""

    QUOTE_RE = re.compile(r'name="quote_digest" value="([0-9a-f]*)"')
    KEY_RE = re.compile(r'name="idempotency_key" value="([^"]+)"')

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def choice(
        self,
        *,
        package: str = "standard",
        period: str = "month",
        agents: int = 1,
        conversations: int = 100,
        currency: str = "PLN",
    ) -> dict[str, str]:
        return {
            "package": package,
            "period": period,
            "agents": str(agents),
            "conversations": str(conversations),
            "currency": currency,
        }

    def summary(self, **choice: Any) -> Any:
        """The live summary of ``choice`` (as HTMX asks for it): the response."""
        data = {"csrf_token": csrf_token(self.client, "/package/edit"), **self.choice(**choice)}
        return self.client.post("/package/summary", data=data, headers={"HX-Request": "true"})

    def pay(self, provider: str, **choice: Any) -> Any:
        """Press Pay for ``choice`` with ``provider``: the response (a 303 to the provider's
        page when the order is placed and the payment started)."""
        summary = self.summary(**choice)
        digest = self.QUOTE_RE.search(summary.get_data(as_text=True))
        assert digest, f"the summary offers no Pay ({summary.status_code})"
        key = self.KEY_RE.search(self.client.get("/package/edit").get_data(as_text=True))
        assert key, "the edit page has no idempotency key"
        data = {
            "csrf_token": csrf_token(self.client, "/package/edit"),
            **self.choice(**choice),
            "action": "pay",
            "quote_digest": digest.group(1),
            "idempotency_key": key.group(1),
            "provider": provider,
        }
        return self.client.post("/package/edit", data=data)


STAFF_EMAIL = "staff@example.com"


@pytest.fixture
def pakiet_staff(pakiet_app: Flask) -> FlaskClient:
    """A client signed in as staff (a second client: use it beside ``pakiet_customer``)."""
    from portal.infra.models import utcnow
    from portal.rules import accounts

    with pakiet_app.app_context():
        accounts.create_admin(email=STAFF_EMAIL, password=PASSWORD, now=utcnow())
    client = pakiet_app.test_client()
    assert Auth(client).login(STAFF_EMAIL).status_code == 302
    return client


@pytest.fixture
def pakiet_customer(pakiet_client: FlaskClient) -> FlaskClient:
    """A client signed up and signed in as a new customer (through the real forms)."""
    auth = Auth(pakiet_client)
    assert auth.signup("customer@example.com").status_code == 302
    return pakiet_client
