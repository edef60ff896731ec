"""Browser-test harness: the real app on a real port, driven by Debian's Chromium.

* ``live_server`` (session): the app on the migrated test database with the demo data,
  served by Werkzeug in a daemon thread, checking VAT numbers against ``vies_emulator``
  (session, the VIES emulator's fixed table). ``live_server.reset()`` puts the demo data back;
  the autouse ``_fresh_demo_data`` fixture calls it before every browser test, so tests
  may change state (a user's language, a subscription) without leaking into the next
  (on PostgreSQL it also empties the shared database after each browser test).
  ``serve(migrated_db, folder, **config)`` starts such a server with other settings
  (``live_config(vies_emulator, stripe={...})`` adds plugin settings): a module that needs
  them overrides ``live_server`` with it (``test_payments.py`` does, for the providers).
* ``browser`` (session): headless Chromium from ``/usr/bin/chromium``. Playwright never
  downloads a browser here; ``launch`` gives every run a fresh temporary profile.
* ``page`` (function): a new context per test (1280x900, ``pl-PL``), under the headers the
  portal sends in production: nothing here switches its Content-Security-Policy off.
  Override ``context_options`` to change any ``new_context`` argument. At teardown the test
  errors if the page asked any host but 127.0.0.1 for anything, if the browser reported a
  Content-Security-Policy violation, if a script threw, if a sub-resource (CSS, JS, image,
  font) failed to load, or if the app raised an exception while serving it.
* ``login(page, email, password)`` and ``axe(page)`` helpers, importable from here.

Every test under ``tests/browser`` is marked ``browser`` (``-m "not browser"`` skips them).
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from babel.support import Translations
from flask import Flask, got_request_exception
from playwright.sync_api import Browser, BrowserContext, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from werkzeug.serving import BaseWSGIServer, make_server

from pakiet_vies.emulator import ViesEmulator
from portal import create_app, demo
from portal.infra.config import ROOT
from portal.infra.extensions import db
from portal.rules import accounts
from tests.conftest import (
    BUILTIN_PLUGINS,
    _truncate,
    base_config,
    is_postgres,
    third_party_config,
)

HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
]
AXE_JS = ROOT / "node_modules" / "axe-core" / "axe.min.js"
LOCAL_HOST = "127.0.0.1"
# Schemes that never leave the browser (Pico's inline SVG icons are data: URLs).
LOCAL_SCHEMES = {"data", "blob", "about"}
SUBRESOURCES = {"stylesheet", "script", "image", "font"}
DEFAULT_CONTEXT: dict[str, Any] = {
    "viewport": {"width": 1280, "height": 900},
    "locale": "pl-PL",
    "timezone_id": "Europe/Warsaw",
}
# How Chromium words a blocked load, script, style or form target in the console.
CSP_VIOLATION = re.compile(r"Content Security Policy|Content-Security-Policy", re.IGNORECASE)
TIMEOUT_MS = 5_000
FREE = "free@demo.example.com"  # the demo's customer on the free package


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.browser)


# --- the live server ---------------------------------------------------------------


@dataclass
class LiveServer:
    url: str
    app: Flask
    server: BaseWSGIServer
    snapshot: Path | None  # SQLite: the database right after the demo data was loaded
    database: Path | None
    errors: list[BaseException] = field(default_factory=list)

    def reset(self) -> None:
        """Put the database back to the freshly loaded demo data."""
        if self.snapshot is not None and self.database is not None:
            # The backup API writes into the live file under SQLite's own locking, so the
            # server's pooled connections simply see the restored pages.
            src = sqlite3.connect(self.snapshot)
            dst = sqlite3.connect(self.database)
            try:
                src.backup(dst)
            finally:
                src.close()
                dst.close()
        else:
            _truncate(self.app)
            _load_demo(self.app)

    def user(self, email: str) -> Any:
        """Read a user straight from the database (for asserting what was stored)."""
        from portal.rules import accounts

        with self.app.app_context():
            user = accounts.find_user(email)
            if user is not None:
                db.session.expunge(user)
            db.session.remove()
            return user


def _load_demo(app: Flask) -> None:
    with app.app_context():
        demo.load(app.extensions["pakiet.catalogue"], today=dt.date.today())
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="session")
def vies_emulator() -> Iterator[ViesEmulator]:
    """The VIES emulator the live server checks VAT numbers against (its fixed table)."""
    with ViesEmulator() as emulator:
        yield emulator


def live_config(vies_emulator: ViesEmulator, **plugin_config: Any) -> dict[str, Any]:
    """The live app's settings: VIES at ``vies_emulator``, plus ``plugin_config`` entries."""
    return {
        "PLUGIN_CONFIG": {"vies": {"base_url": vies_emulator.base_url, "timeout": 2}}
        | plugin_config,
        "VAT_CHECK_RATE_LIMIT": "1000 per minute",
    }


@contextmanager
def serve(migrated_db: str, folder: Path, **config: Any) -> Iterator[LiveServer]:
    """The app with ``config`` on a free port of 127.0.0.1, on a copy of the migrated
    database (in ``folder``) with the demo data; stopped and cleaned up on exit.

    The ``live_server`` fixture is one; a test module that needs other settings (payment
    providers, say) overrides ``live_server`` with its own ``serve(...)``.
    """
    snapshot = database = None
    if is_postgres():
        url = migrated_db
    else:
        database = folder / "live.sqlite3"
        shutil.copyfile(migrated_db, database)
        url = f"sqlite:///{database}"
    app = create_app(base_config(url, **config))
    _load_demo(app)
    if database is not None:
        snapshot = database.with_name("demo.sqlite3")
        shutil.copyfile(database, snapshot)

    server = make_server(LOCAL_HOST, 0, app, threaded=True)
    live = LiveServer(
        url=f"http://{LOCAL_HOST}:{server.server_port}",
        app=app,
        server=server,
        snapshot=snapshot,
        database=database,
    )

    def record(sender: Flask, exception: BaseException, **extra: Any) -> None:
        live.errors.append(exception)

    got_request_exception.connect(record, app, weak=False)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield live
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        got_request_exception.disconnect(record, app)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        if is_postgres():
            _truncate(app)


@contextmanager
def serve_third_party(
    name: str,
    emulator: Any,
    migrated_db: str,
    tmp_path_factory: pytest.TempPathFactory,
    vies_emulator: ViesEmulator,
) -> Iterator[LiveServer]:
    """``serve(...)`` with the third party's provider ``name`` (tests/thirdparty) besides
    the built-in plugins, talking to ``emulator``; e-mail kept in memory."""
    config = live_config(vies_emulator, **{name: third_party_config(name, emulator)})
    folder = tmp_path_factory.mktemp(f"live-{name}")
    plugins = [*BUILTIN_PLUGINS, f"pakiet_{name}"]
    with serve(migrated_db, folder, PLUGINS=plugins, MAIL_BACKEND="locmem", **config) as live:
        yield live


@pytest.fixture(scope="session")
def live_server(
    migrated_db: str, tmp_path_factory: pytest.TempPathFactory, vies_emulator: ViesEmulator
) -> Iterator[LiveServer]:
    with serve(migrated_db, tmp_path_factory.mktemp("live"), **live_config(vies_emulator)) as live:
        yield live


@pytest.fixture(autouse=True)
def _fresh_demo_data(live_server: LiveServer) -> Iterator[None]:
    live_server.reset()
    live_server.errors.clear()
    yield
    if is_postgres():
        # The other tests share this database and expect it empty.
        _truncate(live_server.app)


# --- the browser -------------------------------------------------------------------


# ``playwright`` and ``browser`` (session) live in tests/conftest.py: one Playwright per
# process, shared with the journeys (tests/journeys), which a second one would refuse.


@pytest.fixture
def context_options() -> dict[str, Any]:
    """Extra ``browser.new_context`` arguments; override in a module or parametrize.

    For example ``{"java_script_enabled": False}`` or ``{"locale": "en-US"}``.
    """
    return {}


@dataclass
class PageLog:
    """What the pages of one context did on the network and in their scripts."""

    requests: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)


def _watch(context: BrowserContext, log: PageLog) -> None:
    def on_request(request: Any) -> None:
        log.requests.append(request.url)
        parts = urlsplit(request.url)
        if parts.scheme not in LOCAL_SCHEMES and parts.hostname != LOCAL_HOST:
            log.foreign.append(f"{request.method} {request.url}")

    def on_response(response: Any) -> None:
        if response.request.resource_type in SUBRESOURCES and response.status >= 400:
            log.broken.append(f"{response.status} {response.url}")

    def on_request_failed(request: Any) -> None:
        # net::ERR_ABORTED is the browser dropping a load because the page was left (a
        # click that navigates while scripts still load), not a resource that is broken:
        # the server's answer to it, if any, is checked by on_response.
        if request.resource_type in SUBRESOURCES and "ERR_ABORTED" not in (request.failure or ""):
            log.broken.append(f"failed ({request.failure}) {request.url}")

    context.on("request", on_request)
    context.on("response", on_response)
    context.on("requestfailed", on_request_failed)

    def on_console(message: Any) -> None:
        if CSP_VIOLATION.search(message.text):
            log.csp_violations.append(f"{message.location.get('url', '')}: {message.text}")

    context.on("weberror", lambda error: log.page_errors.append(str(error.error)))
    context.on("console", on_console)


@dataclass
class Contexts:
    """Opens browser contexts for one test and checks them all when it ends."""

    browser: Browser
    live_server: LiveServer
    defaults: dict[str, Any]
    opened: list[tuple[BrowserContext, PageLog]] = field(default_factory=list)

    def new(self, **overrides: Any) -> BrowserContext:
        options = {**self.defaults, **overrides}
        context = self.browser.new_context(**options)
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        log = PageLog()
        _watch(context, log)
        self.opened.append((context, log))
        return context

    def new_page(self, **overrides: Any) -> Page:
        """A page in a context of its own: another visitor, or the same one elsewhere."""
        return self.new(**overrides).new_page()

    def log(self, context: BrowserContext) -> PageLog:
        return next(log for ctx, log in self.opened if ctx is context)

    def close(self) -> list[str]:
        problems: list[str] = []
        for context, log in self.opened:
            context.close()
            if log.foreign:
                problems.append("requests to hosts other than 127.0.0.1: " + ", ".join(log.foreign))
            if log.broken:
                problems.append("sub-resources that did not load: " + ", ".join(log.broken))
            if log.page_errors:
                problems.append("uncaught script errors: " + "; ".join(log.page_errors))
            if log.csp_violations:
                problems.append(
                    "Content-Security-Policy violations: " + "; ".join(log.csp_violations)
                )
        if self.live_server.errors:
            problems.append(
                "the app raised while serving the test: "
                + "; ".join(repr(exc) for exc in self.live_server.errors)
            )
        return problems


@pytest.fixture
def contexts(
    browser: Browser, live_server: LiveServer, context_options: dict[str, Any]
) -> Iterator[Contexts]:
    """The factory behind ``context`` and ``page``; use it for a second context."""
    factory = Contexts(
        browser, live_server, {**DEFAULT_CONTEXT, "base_url": live_server.url, **context_options}
    )
    yield factory
    problems = factory.close()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def context(contexts: Contexts) -> BrowserContext:
    return contexts.new()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


# --- helpers -----------------------------------------------------------------------


def translate(language: str, message: str) -> str:
    """``message`` as the app shows it in ``language`` (from the compiled catalogues)."""
    translations = Translations.load(str(ROOT / "translations"), [language])
    return translations.gettext(message)


def page_language(page: Page) -> str:
    return page.locator("html").get_attribute("lang") or ""


def login(page: Page, email: str, password: str = demo.PASSWORD) -> None:
    """Log in through the real form, finding its fields by their visible labels.

    Returns once the browser has left the login page (for wherever it was sent next).
    """
    if urlsplit(page.url).path != "/login":
        page.goto("/login")
    language = page_language(page)
    form = page.locator("main form")
    form.get_by_label(translate(language, "E-mail")).fill(email)
    form.get_by_label(translate(language, "Password"), exact=True).fill(password)
    form.get_by_role("button", name=translate(language, "Log in"), exact=True).click()
    try:
        page.wait_for_url(lambda url: urlsplit(url).path != "/login")
    except PlaywrightTimeoutError:
        alert = page.get_by_role("alert")
        message = alert.all_inner_texts() if alert.count() else []
        raise AssertionError(f"log-in as {email} did not leave /login: {message}") from None


def as_customer(page: Page, live_server: LiveServer, language: str) -> None:
    """The demo's free customer, reading the portal in ``language``, logged in on ``page``."""
    with live_server.app.app_context():
        user = accounts.find_user(FREE)
        assert user is not None
        user.language = language
        db.session.commit()
        db.session.remove()
    login(page, FREE)


def axe(page: Page, options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run axe-core on the page as it is now and return its violations.

    axe is evaluated through the browser's DevTools protocol, as Playwright evaluates any
    expression: the page keeps its own policy (no inline script tag is added, nothing is
    bypassed), and the page's own scripts stay under it."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_JS.read_text(encoding="utf-8"))
    result: dict[str, Any] = page.evaluate(
        "options => window.axe.run(document, options || {})", options
    )
    violations: list[dict[str, Any]] = result["violations"]
    return violations


def serious(violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [v for v in violations if v.get("impact") in ("serious", "critical")]


def describe(violations: list[dict[str, Any]]) -> str:
    """A readable account of axe violations, for assertion messages."""
    lines = []
    for v in violations:
        lines.append(f"[{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
        for node in v["nodes"]:
            lines.append(f"    at {' '.join(map(str, node['target']))}: {node['html']}")
            summary = (node.get("failureSummary") or "").replace("\n", " / ")
            if summary:
                lines.append(f"      {summary}")
    return "\n".join(lines)
