"""Fixtures: an app on a migrated database, a test client, and a small auth helper.

The database is SQLite unless ``PAKIET_TEST_DATABASE_URL`` names another (CI runs the
suite once on SQLite and once on PostgreSQL). The schema always comes from the
migrations: once per session, then copied (SQLite) or truncated (PostgreSQL) per test.
"""

from __future__ import annotations

import datetime as dt
import email
import email.header
import email.message
import os
import shutil
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from flask import Flask
from flask.testing import FlaskClient

from portal import create_app
from portal.infra.extensions import db
from portal.rules.catalogue import Catalogue
from portal.testing.pytest_plugin import (  # the kit's, re-exported for the tests
    CSRF_RE,
    PASSWORD,
    Auth,
    csrf_token,
    empty,
    kit_config,
    migrate,
)

if TYPE_CHECKING:
    from portal.infra.models import Account, Order, PaymentMethod

__all__ = ["CSRF_RE", "PASSWORD", "Auth", "csrf_token"]

# pytester runs a plugin author's test file against the installed kit (tests/testing).
pytest_plugins = ["pytester"]

DATABASE_URL = os.environ.get("PAKIET_TEST_DATABASE_URL", "")
REQUIRE_POSTGRES = os.environ.get("PAKIET_REQUIRE_POSTGRES") == "1"

# The built-in plugins are whatever the pakiet distribution declares as entry points.
BUILTIN_PLUGINS = sorted(
    ep.value
    for ep in entry_points(group="pakiet")
    if ep.dist is not None and ep.dist.name == "pakiet"
)


# Exchange-rate sources answer from their emulators: no test may reach NBP or ČNB.
RATE_EMULATORS: dict[str, Any] = {}


def base_config(url: str, **extra: Any) -> dict[str, Any]:
    plugin_config = {
        name: {"base_url": emulator.base_url} for name, emulator in RATE_EMULATORS.items()
    }
    plugin_config.update(extra.pop("PLUGIN_CONFIG", {}))
    # The plugin test kit's configuration (development mode, fast hashing: production
    # hashing is tested in test_auth.py), with the built-in plugins and rate emulators.
    config = kit_config(url, PLUGINS=list(BUILTIN_PLUGINS), PLUGIN_CONFIG=plugin_config)
    config.update(extra)
    return config


def is_postgres() -> bool:
    return DATABASE_URL.startswith("postgresql")


def _migrate(url: str) -> None:
    migrate(base_config(url))


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database at the migrations' head: a template file for SQLite, or the PG URL."""
    if is_postgres():
        _migrate(DATABASE_URL)
        return DATABASE_URL
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    _migrate(f"sqlite:///{path}")
    return str(path)


@pytest.fixture
def database_url(migrated_db: str, tmp_path: Path) -> str:
    if is_postgres():
        return migrated_db
    target = tmp_path / "pakiet.sqlite3"
    shutil.copyfile(migrated_db, target)
    return f"sqlite:///{target}"


def _truncate(app: Flask) -> None:
    empty(app)


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    """Tests override this fixture (or parametrize it) to change the app's config."""
    return {}


@pytest.fixture
def app(database_url: str, config_overrides: dict[str, Any]) -> Iterator[Flask]:
    app = create_app(base_config(database_url, **config_overrides))
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    if is_postgres():
        _truncate(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def catalogue(app: Flask) -> Catalogue:
    cat = app.extensions["pakiet.catalogue"]
    assert isinstance(cat, Catalogue)
    return cat


T = TypeVar("T")


def at_once(count: int, work: Callable[[], T], timeout: float = 60) -> list[T]:
    """``work()`` in ``count`` threads released together: their results, in the order they
    finished. The first exception any of them raised is raised here, after all ended."""
    barrier = threading.Barrier(count, timeout=timeout)
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()  # before taking a connection: pools are smaller than some counts
            results.append(work())
        except BaseException as exc:  # collected and raised below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


@pytest.fixture
def auth(client: FlaskClient) -> Auth:
    return Auth(client)


def billing_form(
    client: FlaskClient, country: str = "PL", city: str = "Gdańsk", **overrides: str
) -> dict[str, str]:
    """The billing-data form as ``/billing`` takes it, with a CSRF token read from that
    page: the demo's Polish company in Gdańsk, in ``country`` and ``city`` when given, with
    ``overrides`` (``street``, ``vat_number``, any other field) over the rest."""
    return {
        "csrf_token": csrf_token(client, "/billing"),
        "company_name": "Sklep Rowerowy Szprycha Sp. z o.o.",
        "street": "ul. Długa 5",
        "postcode": "80-831",
        "city": city,
        "country": country,
        "vat_number": "",
        "invoice_email": "faktury@szprycha.pl",
        **overrides,
    }


# -- rows made directly (the invoice list, SQL per page, the checkout's history) ---------


def paid_account_with_card(
    name: str,
    *,
    password_hash: str,
    created_at: dt.datetime,
    confirmed_at: dt.datetime,
    street: str,
    city: str,
    language: str,
    method_created_at: dt.datetime | None = None,
) -> tuple[Account, PaymentMethod]:
    """``Firma {name}``, a Polish company on Standard (monthly, 2 agents, PLN, renewing,
    10 Nov to 10 Dec 2026) whose user ``{name}@firma.example.com`` confirmed the address at
    ``confirmed_at``, with a saved default Visa ending 4242 (created at ``method_created_at``,
    or the model's default): added to the session and flushed, in an app context."""
    from portal.infra.models import Account, BillingInfo, PaymentMethod, Subscription, User

    address = f"{name}@firma.example.com"
    account = Account(name=f"Firma {name}", created_at=created_at)
    account.billing_info = BillingInfo(
        company_name=account.name,
        country="PL",
        street=street,
        city=city,
        invoice_email=address,
        updated_at=created_at,
    )
    account.subscription = Subscription(
        package="standard",
        period="month",
        agents=2,
        conversations=100,
        currency="PLN",
        status="active",
        period_start=dt.date(2026, 11, 10),
        period_end=dt.date(2026, 12, 10),
        auto_renew=True,
        period_net_minor=17800,
    )
    user = User(
        account=account,
        email=address,
        password_hash=password_hash,
        language=language,
        email_confirmed_at=confirmed_at,
    )
    db.session.add_all([account, user])
    db.session.flush()
    method = PaymentMethod(
        account_id=account.id,
        provider="stripe",
        provider_ref=f"pm_{name}",
        customer_ref=f"cus_{name}",
        brand="visa",
        last4="4242",
        exp_month=12,
        exp_year=2034,
        is_default=True,
        **({} if method_created_at is None else {"created_at": method_created_at}),
    )
    db.session.add(method)
    db.session.flush()
    return account, method


def standard_order(**fields: Any) -> Order:
    """An order for Standard, monthly, 2 agents, 100 conversations, in PLN under Polish VAT
    (what the tests' orders made directly share); ``fields`` give the rest or differ."""
    from portal.infra.models import Order

    return Order(
        **{
            "subscription_version": 1,
            "package": "standard",
            "period": "month",
            "agents": 2,
            "conversations": 100,
            "currency": "PLN",
            "tax_treatment": "domestic",
            "quote": {},
            **fields,
        }
    )


class Inbox:
    """A real SMTP server on loopback (aiosmtpd) that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        with socket.socket() as probe:  # a free port on loopback
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def subjects(self) -> list[str]:
        return [decoded_subject(message) for message in self.messages]


def decoded_subject(message: email.message.Message) -> str:
    return str(email.header.make_header(email.header.decode_header(message["Subject"])))


@pytest.fixture
def smtp() -> Iterator[Inbox]:
    inbox = Inbox()
    inbox.start()
    yield inbox
    inbox.stop()


def smtp_config(inbox: Inbox) -> dict[str, Any]:
    return {
        "MAIL_BACKEND": "smtp",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": inbox.port,
        "MAIL_USE_TLS": False,
        "MAIL_TIMEOUT": 5,
    }


# -- the third parties' payment providers (tests/thirdparty) ------------------------------

# Real distributions written against the public contract only, each with its own emulator:
# ``pakiet-transfer24`` (redirect and notify) and ``pakiet-paybylink`` (redirect only).
THIRD_PARTY = Path(__file__).resolve().parent / "thirdparty"
THIRD_PARTY_SETTINGS: dict[str, dict[str, str]] = {
    "paybylink": {"merchant_id": "m-1", "secret": "pbl-secret"},
    "transfer24": {"api_key": "t24-key", "notify_secret": "t24-secret"},
}


def third_party_emulator(name: str) -> Any:
    """The emulator of the third party's provider ``name`` (``paybylink`` or
    ``transfer24``), not yet started: :data:`THIRD_PARTY` must be on ``sys.path``."""
    if name == "paybylink":
        from pakiet_paybylink.emulator import PayByLinkEmulator

        return PayByLinkEmulator(**THIRD_PARTY_SETTINGS[name])
    from pakiet_transfer24.emulator import Transfer24Emulator

    return Transfer24Emulator(**THIRD_PARTY_SETTINGS[name])


def third_party_config(name: str, emulator: Any) -> dict[str, Any]:
    """The ``PLUGIN_CONFIG`` entry of the provider ``name`` talking to ``emulator``."""
    return {"base_url": emulator.base_url, **THIRD_PARTY_SETTINGS[name]}


@contextmanager
def third_party_on_path() -> Iterator[None]:
    sys.path.insert(0, str(THIRD_PARTY))
    try:
        yield
    finally:
        sys.path.remove(str(THIRD_PARTY))


def module_emulator(name: str) -> Any:
    """A module-scoped fixture ``name``: the provider's emulator, started once for the
    module (a module-scoped ``live_server`` needs one); ``paybylink = module_emulator(
    "paybylink")`` in a test module overrides the function-scoped fixture below."""

    @pytest.fixture(scope="module", name=name)
    def emulator_fixture() -> Iterator[Any]:
        with third_party_on_path(), third_party_emulator(name) as emulator:
            yield emulator

    return emulator_fixture


@pytest.fixture
def paybylink(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.syspath_prepend(str(THIRD_PARTY))
    with third_party_emulator("paybylink") as emulator:
        yield emulator


@pytest.fixture
def transfer24(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.syspath_prepend(str(THIRD_PARTY))
    with third_party_emulator("transfer24") as emulator:
        yield emulator


# -- Stripe, PayPal and the transfer at once (webhook replays, faults, bodies) -----------

PAYPAL_SETTINGS = {"client_id": "cid", "client_secret": "secret", "webhook_id": "WH-1"}


@pytest.fixture
def paypal() -> Iterator[Any]:
    from pakiet_paypal.emulator import PayPalEmulator

    with PayPalEmulator(**PAYPAL_SETTINGS) as emulator:
        yield emulator


def providers_config(
    stripe_emulator: Any, paypal: Any, transfer24: Any, *, timeout: float
) -> dict[str, Any]:
    """``PLUGINS`` and ``PLUGIN_CONFIG`` for the built-in plugins and the third party's
    transfer, each provider talking to its emulator (Stripe with the emulator's keys, no
    retries) and giving up on a call after ``timeout`` seconds (the transfer has none)."""
    return {
        "PLUGINS": [*BUILTIN_PLUGINS, "pakiet_transfer24"],
        "PLUGIN_CONFIG": {
            "stripe": {
                "api_key": stripe_emulator.api_key,
                "webhook_secret": stripe_emulator.webhook_secret,
                "api_base": stripe_emulator.base_url,
                "max_network_retries": 0,
                "timeout": timeout,
            },
            "paypal": {**PAYPAL_SETTINGS, "base_url": paypal.base_url, "timeout": timeout},
            "transfer24": third_party_config("transfer24", transfer24),
        },
    }


# -- the browser (tests/browser, tests/journeys) ----------------------------------------


@pytest.fixture(scope="session")
def playwright() -> Iterator[Any]:
    """One Playwright per process: its sync API refuses a second while one runs, so the
    browser tests and the journeys share this one."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright: Any) -> Iterator[Any]:
    """Headless Debian Chromium (Playwright never downloads a browser here). No user-data
    dir argument: a non-persistent launch always starts from a fresh temporary profile,
    which Playwright deletes on close."""
    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


def pytest_configure(config: pytest.Config) -> None:
    from pakiet_cnb.emulator import CnbEmulator
    from pakiet_nbp.emulator import NbpEmulator

    RATE_EMULATORS["nbp"] = NbpEmulator().start()
    RATE_EMULATORS["cnb"] = CnbEmulator().start()
    if REQUIRE_POSTGRES and not is_postgres():
        raise pytest.UsageError("PAKIET_REQUIRE_POSTGRES=1 needs PAKIET_TEST_DATABASE_URL")
    if is_postgres():
        engine = sa.create_engine(DATABASE_URL)
        try:
            engine.connect().close()
        except sa.exc.OperationalError as exc:
            raise pytest.UsageError(f"PostgreSQL at {DATABASE_URL} is unreachable: {exc}") from exc
        finally:
            engine.dispose()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of PostgreSQL's locking and concurrency run in the PostgreSQL pass only: on
    SQLite they are deselected (reported as such), never skipped and counted."""
    if is_postgres():
        return
    kept = [item for item in items if "postgres" not in item.keywords]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


def pytest_unconfigure(config: pytest.Config) -> None:
    for emulator in RATE_EMULATORS.values():
        emulator.stop()
    RATE_EMULATORS.clear()


@pytest.fixture
def today(app, monkeypatch) -> dt.date:
    """One clock for a story told through the pages: they and the background run read the wall
    clock, so the demo data and the checkout's day are read from it once too."""
    from portal.web import checkout

    with app.app_context():
        day = checkout.today()
    monkeypatch.setattr("portal.web.checkout.today", lambda: day)
    return day
