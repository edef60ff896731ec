"""Journeys in a real browser, against the portal as ``make run`` starts it.

* Once per session (``demo_database``): a fresh instance folder gets its SQLite database
  from ``flask --app wsgi db upgrade`` and ``flask --app wsgi demo-data``, run as
  subprocesses the way ``make demo-db`` runs them; then ``scripts/devserver.py`` is started
  once and stopped, which makes the demo data true (billing information, the paid demo
  accounts' payments, saved cards and invoices). That database is the snapshot.
* For every test (``portal``): the snapshot is copied into a fresh instance folder and
  ``scripts/devserver.py --port 0 --free-ports`` is started as a subprocess, with its
  emulators (Stripe, PayPal, VIES, NBP, ČNB: fresh, so they and the database agree), its
  webhooks over HTTP, its production headers and its background run; e-mail goes over SMTP
  to an ``Inbox`` of this test. ``Spares`` starts the next test's one while a test runs,
  and stops each after its test, in the background. Its output is kept as
  ``journey<n>/instance/devserver.log`` in pytest's temporary folder, and a traceback in it
  (or a webhook the portal refused, or a 5xx) fails the test.
* ``portal.billing_run(now)`` is the background run as cron runs it, at any time:
  ``flask --app wsgi billing run --now ...`` in a subprocess with the portal's settings;
  ``portal.restart(clock=...)`` starts the portal again on the same database with its clock
  at another day (libfaketime), for the pages of that day.
* ``lang`` is ``pl`` and ``en`` for every test; the browser's locale follows it
  (``pl-PL``, ``en-GB``). The ``contexts`` factory of ``tests/browser/conftest.py`` opens
  the browser contexts and checks them when the test ends (no request leaving 127.0.0.1,
  no CSP violation, no script error, no broken sub-resource, no traceback in the portal).

Every test here is marked ``journey`` and ``browser``: the PostgreSQL pass of CI deselects
them (``-m "not journey"``), and so does a run that skips the browser tests (``-m "not
browser"``, as under faketime); they run on SQLite, as ``make run`` does.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from portal.infra.config import ROOT
from tests.browser.conftest import DEFAULT_CONTEXT, Contexts
from tests.conftest import Inbox

HERE = Path(__file__).resolve().parent
DEVSERVER = ROOT / "scripts" / "devserver.py"
FLASK = [sys.executable, "-m", "flask", "--app", "wsgi"]
READY = "PAKIET_READY "
# How long the devserver may take to start (its six emulators, the app): about 6 s on a
# quiet machine, so this is room for a loaded one...
START_TIMEOUT = 150.0
# ...and how long a start under libfaketime gets before it is tried again (Portal.restart).
FAKETIME_START_TIMEOUT = 60.0
LOCALES = {"pl": "pl-PL", "en": "en-GB"}
# Waits of the journeys' pages: longer than the browser tests' 5 s, since here every click
# crosses processes (portal, emulators) on a machine that CI shares (a payment under load
# has taken more than 15 s to come back).
JOURNEY_TIMEOUT_MS = 30_000
ZONE = ZoneInfo("Europe/Warsaw")  # the portal's BABEL_DEFAULT_TIMEZONE
# Lines of the portal's output that mean something went wrong while serving the test.
TRACEBACK = re.compile(r"^Traceback \(most recent call last\):")
FAILED_WEBHOOK = re.compile(r'"POST /webhooks/\w+ HTTP/1\.1" [45]\d\d ')
SERVER_ERROR = re.compile(r'"[A-Z]+ [^"]* HTTP/1\.1" 5\d\d ')


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            # All are "browser" too, the demo data's tests included: they run the same
            # subprocesses, which a run under faketime (``-m "not browser"``) must not start.
            item.add_marker(pytest.mark.journey)
            item.add_marker(pytest.mark.browser)


def _environment(instance: Path, **settings: str) -> dict[str, str]:
    """The environment of ``make run``'s processes, for the instance folder ``instance``:
    the caller's, without any PAKIET_* setting of its own (a developer's shell may have
    some), plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAKIET_")}
    env["PAKIET_INSTANCE_PATH"] = str(instance)
    env["PAKIET_DEVELOPMENT"] = "1"  # as make run: the shipped SECRET_KEY is accepted
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # a crash, or SIGABRT on a hang, prints every stack
    env.update(settings)
    return env


def _run(command: list[str], env: dict[str, str], timeout: float = 120) -> str:
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(command[2:])} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


class DevserverStartRetried(UserWarning):
    """Shown, not an error (pyproject.toml's filterwarnings): see :meth:`Portal.restart`."""


@dataclass
class Portal:
    """``scripts/devserver.py`` on one instance folder: the portal and its emulators."""

    instance: Path
    settings: dict[str, str]
    lines: list[str] = field(default_factory=list)
    ready: dict[str, Any] = field(default_factory=dict)
    started_in: float = 0.0
    process: subprocess.Popen[str] | None = None
    _reader: threading.Thread | None = None

    @property
    def env(self) -> dict[str, str]:
        return _environment(self.instance, **self.settings)

    @property
    def log_path(self) -> Path:
        return self.instance / "devserver.log"

    def start(self, clock: dt.datetime | None = None, timeout: float = START_TIMEOUT) -> None:
        """Start the devserver (its emulators fresh, seeded again from the database);
        ``clock``: its system clock starts there and runs on (``faketime``), as if the
        portal were (re)started on that day."""
        command = [sys.executable, str(DEVSERVER), "--host", "127.0.0.1", "--port", "0"]
        command.append("--free-ports")
        env = self.env
        if clock is not None:
            # libfaketime in the devserver itself (not the ``faketime`` wrapper, which would
            # stand between it and its signals): its clock starts at ``clock`` and runs;
            # monotonic clocks, which timeouts use, stay real.
            env["LD_PRELOAD"] = _libfaketime()
            env["FAKETIME"] = "@" + clock.astimezone().strftime("%Y-%m-%d %H:%M:%S")
            env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
            # ...and time.sleep, which that libfaketime breaks, made to work
            # (tests/faketime/sitecustomize.py).
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(ROOT / "tests" / "faketime"), env.get("PYTHONPATH")])
            )
            env["FAKETIME_NO_CACHE"] = "1"
        began = time.monotonic()
        self.ready = {}
        ready = threading.Event()
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self.process = process
        if clock is not None:
            self.lines.append(f"[journey] devserver restarted with its clock at {clock}")

        def read() -> None:
            assert process.stdout is not None
            for raw in process.stdout:
                line = raw.rstrip("\n")
                if line.startswith(READY) and not self.ready:
                    self.ready.update(json.loads(line.removeprefix(READY)))
                    ready.set()
                self.lines.append(line)
            ready.set()  # the process ended

        self._reader = threading.Thread(target=read, name="devserver-output", daemon=True)
        self._reader.start()
        if not ready.wait(timeout) or not self.ready:
            raise AssertionError(self._not_ready(time.monotonic() - began))
        self.started_in = time.monotonic() - began

    def _not_ready(self, waited: float) -> str:
        """Why the devserver did not get ready, for the failure: its exit status, or (still
        running) where each of its threads stood, from faulthandler on SIGABRT."""
        process = self.process
        assert process is not None
        if process.poll() is None:
            process.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        status = process.poll()
        self.stop()
        return (
            f"scripts/devserver.py did not get ready in {waited:.0f} s (exit status {status}):"
            f"\n{self.log()}"
        )

    def restart(self, clock: dt.datetime | None = None) -> None:
        """Stop the devserver and start it again on the same database (a new port).

        Under libfaketime (``clock``) a start that does not get ready is tried once more,
        with a warning that carries what it printed and, if it hung, every thread's stack:
        twice in CI, and never here, the first of these restarts printed nothing in 60 and
        then 150 s while its twin in the other language started. Multi-threaded programs
        are known to hang now and then under libfaketime (wolfcw/libfaketime#373)."""
        self.stop()
        if clock is None:
            self.start()
            return
        mark = len(self.lines)
        try:
            self.start(clock, timeout=FAKETIME_START_TIMEOUT)
        except AssertionError:
            warnings.warn(
                DevserverStartRetried(
                    "the devserver under libfaketime did not get ready; started again. What"
                    " it printed:\n" + "\n".join(self.lines[mark:])
                ),
                stacklevel=2,
            )
            self.start(clock)

    @property
    def url(self) -> str:
        return str(self.ready["url"])

    def emulator(self, name: str) -> str:
        return str(self.ready["emulators"][name])

    @property
    def errors(self) -> list[str]:
        """Tracebacks, failed webhooks and server errors in the portal's output so far
        (``tests.browser.conftest.Contexts`` fails the test on any)."""
        found: list[str] = []
        lines = list(self.lines)
        for n, line in enumerate(lines):
            if TRACEBACK.match(line):
                tail = next(
                    (later for later in lines[n + 1 :] if later and not later[0].isspace()), ""
                )
                context = lines[max(0, n - 2) : n]
                found.append(" | ".join([*context, tail]))
            elif FAILED_WEBHOOK.search(line) or SERVER_ERROR.search(line):
                found.append(line)
        return found

    def log(self) -> str:
        return "\n".join(self.lines)

    # -- the background run, as cron runs it -------------------------------------------

    def billing_run(self, now: dt.datetime) -> str:
        """``flask --app wsgi billing run --now <now>`` with the portal's settings (its
        instance, SMTP, plugin configuration pointing at its emulators)."""
        env = dict(self.env)
        env["PAKIET_PLUGIN_CONFIG"] = json.dumps(self.ready["plugin_config"])
        env["PAKIET_PUBLIC_URL"] = self.ready["public_url"]
        output = _run([*FLASK, "billing", "run", "--now", now.isoformat()], env)
        self.lines.extend(f"[billing run {now.isoformat()}] {line}" for line in output.splitlines())
        return output

    # -- what the emulators hold (read through their APIs) ------------------------------

    def stripe(self, path: str, **params: str) -> Any:
        """``GET {Stripe emulator}/v1/{path}`` with the portal's key: Stripe's JSON."""
        key = self.ready["plugin_config"]["stripe"]["api_key"]
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        request = urllib.request.Request(
            f"{self.emulator('stripe')}/v1/{path}{query}",
            headers={"Authorization": f"Bearer {key}"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.load(answer)

    def stripe_control(self, action: str, **form: str) -> None:
        """The Stripe emulator's test controls (``fail_next``, ``webhook_delay``): how slow
        or faulty Stripe is today; nothing the customer could do."""
        data = urllib.parse.urlencode(form).encode()
        url = f"{self.emulator('stripe')}/_emulator/{action}"
        with urllib.request.urlopen(url, data=data, timeout=10) as answer:
            assert answer.status == 200

    def stripe_list(self, kind: str, **params: str) -> list[dict[str, Any]]:
        """Every object of ``kind`` (``charges``, ``refunds``, ...), newest first."""
        return list(self.stripe(kind, limit="100", **params)["data"])

    def charges(self) -> list[dict[str, Any]]:
        """Card charges that took money during this test (not the demo's past ones)."""
        return [
            c
            for c in self.stripe_list("charges")
            if c["status"] == "succeeded" and not c["id"].startswith("ch_demo_")
        ]

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=5)  # the output ends with the process
        if process.stdout is not None and not (self._reader and self._reader.is_alive()):
            process.stdout.close()
        self.process = None
        self.log_path.write_text(self.log() + "\n", encoding="utf-8")


def _libfaketime() -> str:
    """libfaketime's multi-threaded library (Debian's package ``faketime``)."""
    for found in sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1")) + sorted(
        Path("/usr/lib").glob("faketime/libfaketimeMT.so.1")
    ):
        return str(found)
    raise AssertionError("this journey needs libfaketime (apt-get install faketime)")


def start_devserver(instance: Path, **settings: str) -> Portal:
    portal = Portal(instance=instance, settings=settings)
    portal.start()
    return portal


# -- the session's demo database --------------------------------------------------------


@dataclass(frozen=True)
class DemoDatabase:
    snapshot: Path
    day: dt.date  # the day ``flask demo-data`` ran: Standard started 10 days before it


@pytest.fixture(scope="session")
def demo_database(tmp_path_factory: pytest.TempPathFactory) -> DemoDatabase:
    """The SQLite database of ``make run`` after its first start (see the module docs)."""
    instance = tmp_path_factory.mktemp("journeys-demo")
    env = _environment(instance)
    _run([*FLASK, "db", "upgrade"], env)
    day = dt.date.today()  # what ``flask demo-data`` takes for today (no --today)
    _run([*FLASK, "demo-data"], env)
    assert dt.date.today() == day, "the demo data was made across midnight: run again"
    portal = start_devserver(instance)  # makes the demo data true, then stops
    portal.stop()
    assert not portal.errors, portal.errors
    snapshot = instance / "demo.sqlite3"
    shutil.copyfile(instance / "pakiet.sqlite3", snapshot)
    return DemoDatabase(snapshot, day)


@dataclass
class Fresh:
    """A devserver on a fresh copy of the demo database, with its own SMTP inbox."""

    portal: Portal
    inbox: Inbox


class Spares:
    """Fresh portals, one started ahead: while a test runs, the next test's devserver
    starts (a few seconds of imports and start-up each, otherwise paid by every test).
    Each is used by one test only, and stopped after it in the background."""

    def __init__(self, snapshot: Path, folders: pytest.TempPathFactory) -> None:
        self.snapshot = snapshot
        self.folders = folders
        self.next: concurrent.futures.Future[Fresh] | None = None
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
        self.stopping: list[concurrent.futures.Future[None]] = []

    def _fresh(self) -> Fresh:
        instance = self.folders.mktemp("journey") / "instance"
        instance.mkdir()
        shutil.copyfile(self.snapshot, instance / "pakiet.sqlite3")
        inbox = Inbox()
        inbox.start()
        try:
            portal = start_devserver(
                instance,
                PAKIET_MAIL_BACKEND="smtp",
                PAKIET_MAIL_SERVER="127.0.0.1",
                PAKIET_MAIL_PORT=str(inbox.port),
                PAKIET_MAIL_USE_TLS="false",
            )
        except BaseException:
            inbox.stop()
            raise
        return Fresh(portal, inbox)

    def take(self) -> Fresh:
        ahead = self.next or self.pool.submit(self._fresh)
        self.next = self.pool.submit(self._fresh)
        return ahead.result()

    def give_back(self, fresh: Fresh) -> None:
        def stop() -> None:
            fresh.portal.stop()
            fresh.inbox.stop()

        self.stopping.append(self.pool.submit(stop))

    def close(self) -> None:
        if self.next is not None:
            try:
                self.give_back(self.next.result())
            except Exception:  # its start failed: nothing to stop
                pass
        for stopping in self.stopping:
            stopping.result()
        self.pool.shutdown()


@pytest.fixture(scope="session")
def spares(
    demo_database: DemoDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Spares]:
    pool = Spares(demo_database.snapshot, tmp_path_factory)
    yield pool
    pool.close()


@pytest.fixture
def fresh(spares: Spares) -> Iterator[Fresh]:
    taken = spares.take()
    try:
        yield taken
    finally:
        spares.give_back(taken)


@pytest.fixture
def portal(fresh: Fresh) -> Portal:
    """This test's portal (``scripts/devserver.py``); its output ends up in
    ``<its instance folder>/devserver.log``."""
    return fresh.portal


@pytest.fixture
def inbox(fresh: Fresh) -> Inbox:
    """The SMTP server the portal sends this test's e-mail to."""
    return fresh.inbox


@pytest.fixture(autouse=True)
def _journey_expect_timeout() -> Iterator[None]:
    """``expect`` waits as long as the journeys' pages do (only during a journey)."""
    expect.set_options(timeout=JOURNEY_TIMEOUT_MS)
    yield
    expect.set_options(timeout=None)  # Playwright's default again


class JourneyContexts(Contexts):
    """``Contexts`` whose pages wait ``JOURNEY_TIMEOUT_MS`` (actions and ``expect``)."""

    def new(self, **overrides: Any) -> BrowserContext:
        context = super().new(**overrides)
        context.set_default_timeout(JOURNEY_TIMEOUT_MS)
        context.set_default_navigation_timeout(JOURNEY_TIMEOUT_MS)
        return context


@pytest.fixture(params=["pl", "en"])
def lang(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def contexts(browser: Browser, portal: Portal, lang: str) -> Iterator[Contexts]:
    factory = JourneyContexts(
        browser,
        portal,  # type: ignore[arg-type]  # what Contexts reads of it: .errors
        {**DEFAULT_CONTEXT, "base_url": portal.url, "locale": LOCALES[lang]},
    )
    yield factory
    problems = factory.close()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def today() -> dt.date:
    """Today on the portal's clock (the same system clock, in its time zone)."""
    return dt.datetime.now(ZONE).date()
