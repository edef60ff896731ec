"""Issue #25 point 4: webhooks to the chat product. Written in the transaction of the change,
sent by the background run to a real HTTP receiver on loopback, signed, retried with backoff
when the receiver answers 500 or hangs, given up after the last try; nothing is lost."""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import func, select
from werkzeug.serving import make_server

from pakiet_stripe.emulator import StripeEmulator
from portal.infra.config import ROOT, InsecureConfig
from portal.infra.extensions import db
from portal.infra.models import Role, Subscription, WebhookDelivery
from portal.rules import accounts, webhooks
from portal.staff import actions
from tests.conftest import PASSWORD, at_once, base_config
from tests.rules.test_lifecycle import API_KEY, at, run, stripe_config, subscribe

sys.path.insert(0, str(ROOT / "scripts"))
import chat_product_example  # noqa: E402

SECRET = "whsec_chat_product"
TOKEN = "chat-service-token"
START = dt.date(2026, 11, 1)
END = dt.date(2026, 12, 1)


class Receiver:
    """A webhook receiver on loopback: answers 500, hangs, or takes the event (204)."""

    def __init__(self) -> None:
        self.mode = "up"
        self.received: list[tuple[dict[str, str], bytes]] = []  # taken (2xx) only
        self.tries = 0
        self.release = threading.Event()  # ends a hanging answer
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.tries += 1
                if receiver.mode == "hang":
                    receiver.release.wait(30)
                    return
                if receiver.mode == "down":
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.received.append((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhooks/pakiet"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stripe_emulator() -> Iterator[StripeEmulator]:
    with StripeEmulator(api_key=API_KEY, webhook_secret="whsec_x") as emulator:
        yield emulator


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def config_overrides(stripe_emulator, receiver, smtp):
    from tests.conftest import smtp_config

    return {
        **smtp_config(smtp),
        "PUBLIC_URL": "https://portal.example.com",
        "ENTITLEMENTS_TOKENS": [TOKEN],
        "PLUGIN_CONFIG": {"stripe": stripe_config(stripe_emulator)},
        "WEBHOOK_URLS": [receiver.url],
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_TIMEOUT": 0.5,
        "WEBHOOK_MAX_ATTEMPTS": 3,
    }


def rows(app) -> list[WebhookDelivery]:
    with app.app_context():
        found = list(db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))
        for row in found:
            db.session.expunge(row)
        return found


def check_signature(headers: dict[str, str], body: bytes, when: dt.datetime) -> None:
    chat_product_example.verify(SECRET, headers["Pakiet-Signature"], body, when.timestamp())


def test_a_suspension_reaches_a_receiver_that_was_down_once_it_is_back(
    app,
    client,
    stripe_emulator,
    receiver,
):
    account_id = subscribe(app, stripe_emulator, auto_renew=False)  # free -> standard
    receiver.mode = "down"
    suspended_at = at(END)
    report = run(app, suspended_at)  # suspended at the period end; the receiver answers 500
    assert report.suspended == 1 and report.webhooks_failed == 1 and report.webhooks_sent == 0
    written = rows(app)
    assert [r.type for r in written] == ["account.package_changed", "account.suspended"]
    # One try per run at a receiver that is down: the second event waits untried.
    assert receiver.tries == 1
    assert (written[0].attempts, written[0].last_error) == (1, "HTTP 500")
    assert (written[1].attempts, written[1].last_error) == (0, None)
    assert all(r.next_attempt_at == suspended_at + dt.timedelta(minutes=1) for r in written)

    receiver.mode = "up"
    assert run(app, suspended_at + dt.timedelta(seconds=30)).webhooks_sent == 0  # backoff
    later = suspended_at + dt.timedelta(minutes=1)
    assert run(app, later).webhooks_sent == 2
    assert run(app, later + dt.timedelta(hours=1)).webhooks_sent == 0  # once

    events = receiver.events()
    assert [e["type"] for e in events] == ["account.package_changed", "account.suspended"]
    assert len({e["id"] for e in events}) == 2
    for headers, body in receiver.received:
        check_signature(headers, body, later)
        assert headers["Pakiet-Event-Id"] == json.loads(body)["id"]
    suspended = events[1]
    assert suspended["account"] == account_id and suspended["created_at"].endswith("Z")
    # The entitlements as the entitlements endpoint reports them, at that version.
    live = client.get(
        f"/api/v1/accounts/{account_id}/entitlements",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ).json
    assert suspended["entitlements"] == live
    assert (live["package"], live["status"]) == ("free", "suspended")
    assert events[0]["entitlements"]["package"] == "standard"
    assert events[0]["entitlements"]["version"] < live["version"]
    assert all(r.delivered_at == later for r in rows(app))


def test_a_receiver_that_hangs_past_the_timeout_gets_the_event_later(
    app,
    stripe_emulator,
    receiver,
):
    subscribe(app, stripe_emulator)
    receiver.mode = "hang"
    first = at(START, 12)
    assert run(app, first).webhooks_failed == 1
    [row] = rows(app)
    assert row.delivered_at is None and "timed out" in (row.last_error or "")
    receiver.release.set()
    receiver.mode = "up"
    assert run(app, first + dt.timedelta(minutes=1)).webhooks_sent == 1
    [(headers, body)] = receiver.received
    check_signature(headers, body, first + dt.timedelta(minutes=1))
    assert json.loads(body)["id"] == row.event_id


def test_the_run_gives_up_after_the_last_try_and_staff_see_it(
    app,
    stripe_emulator,
    receiver,
    auth,
):
    subscribe(app, stripe_emulator)
    receiver.mode = "down"
    when = at(START, 12)
    for minutes in (0, 1, 3):  # 3 tries: 1 and 2 minutes apart
        assert run(app, when + dt.timedelta(minutes=minutes)).webhooks_failed == 1
    [row] = rows(app)
    assert row.attempts == 3 and row.gave_up_at is not None and row.delivered_at is None
    receiver.mode = "up"
    assert run(app, when + dt.timedelta(days=1)).webhooks_sent == 0
    assert receiver.tries == 3

    with app.app_context():
        accounts.register_account(
            catalogue=app.extensions["pakiet.catalogue"],
            company="Pakiet",
            email="staff@pakiet.example.com",
            password=PASSWORD,
            language="en",
            now=when,
            role=Role.ADMIN,
            confirmed=True,
        )
    auth.login("staff@pakiet.example.com")
    listing = auth.client.get("/admin/webhooks/")
    assert listing.status_code == 200
    html = listing.get_data(as_text=True)
    assert row.event_id in html and "HTTP 500" in html and "Given up" in html


def test_an_event_is_written_with_its_change_or_not_at_all(app, stripe_emulator):
    account_id = subscribe(app, stripe_emulator)
    with app.app_context():
        sub = db.session.scalar(select(Subscription).where(Subscription.account_id == account_id))
        assert sub is not None
        sub.agents = 5
        db.session.flush()
        assert db.session.scalar(select(func.count()).select_from(WebhookDelivery)) == 2
        db.session.rollback()
        assert db.session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1
        sub = db.session.scalar(select(Subscription).where(Subscription.account_id == account_id))
        assert sub is not None
        sub.auto_renew = False  # not something the chat product enforces: no event
        db.session.commit()
        assert db.session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1


@pytest.mark.parametrize("config_overrides", [{}])
def test_without_urls_nothing_is_written(app, stripe_emulator):
    subscribe(app, stripe_emulator, card=None)
    assert rows(app) == []


def test_urls_without_a_secret_are_refused(database_url):
    from portal import create_app

    with pytest.raises(InsecureConfig, match="WEBHOOK_SECRET"):
        create_app(base_config(database_url, WEBHOOK_URLS=["https://chat.example.com/h"]))


def test_the_signature_is_checked_by_the_example_client() -> None:
    body = b'{"id":"x"}'
    header = webhooks.sign(SECRET, 1_800_000_000, body)
    chat_product_example.verify(SECRET, header, body, 1_800_000_000 + 10)
    for secret, given, now in (
        ("other", body, 1_800_000_000),
        (SECRET, b'{"id":"y"}', 1_800_000_000),
        (SECRET, body, 1_800_000_000 + 3600),  # replayed an hour later
    ):
        with pytest.raises(chat_product_example.BadSignature):
            chat_product_example.verify(secret, header, given, now)
    with pytest.raises(chat_product_example.BadSignature):
        chat_product_example.verify(SECRET, "v1=abc", body, 1_800_000_000)


def test_the_example_client_against_the_portal(app, stripe_emulator, receiver):
    """The example's link command against the portal over HTTP, and its receiver taking a
    run's events (a replay of one is handled once)."""
    account_id = subscribe(app, stripe_emulator)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        portal = f"http://127.0.0.1:{server.server_port}"
        made = chat_product_example.create_link(portal, TOKEN, account_id, "invoices")
        assert set(made) == {"id", "url", "expires_at"}
        assert made["url"].startswith("https://portal.example.com/portal-session/")
    finally:
        server.shutdown()

    handled: list[dict[str, Any]] = []
    chat_product_example.Receiver.secret = SECRET
    chat_product_example.Receiver.seen = set()
    chat_product_example.Receiver.handle_event = staticmethod(handled.append)
    when = at(START, 12)
    chat_product_example.Receiver.clock = staticmethod(when.timestamp)
    example = ThreadingHTTPServer(("127.0.0.1", 0), chat_product_example.Receiver)
    threading.Thread(target=example.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{example.server_port}/webhooks/pakiet"
        with app.app_context():
            db.session.execute(
                WebhookDelivery.__table__.update().values(url=url)  # the example receives
            )
            db.session.commit()
        report = run(app, when)
        assert report.webhooks_sent == 1
        with app.app_context():
            db.session.execute(WebhookDelivery.__table__.update().values(delivered_at=None))
            db.session.commit()
        assert run(app, when).webhooks_sent == 1  # delivered twice: at least once
    finally:
        example.shutdown()
        example.server_close()
    assert [e["type"] for e in handled] == ["account.package_changed"]  # handled once


def staff(app, when: dt.datetime) -> Any:
    with app.app_context():
        user = accounts.register_account(
            catalogue=app.extensions["pakiet.catalogue"],
            company="Pakiet",
            email="staff@pakiet.example.com",
            password=PASSWORD,
            language="en",
            now=when,
            role=Role.ADMIN,
            confirmed=True,
        )
        db.session.expunge(user)
        return user


def test_staff_actions_send_their_events(app, stripe_emulator, receiver):
    """A staff action writes its event as any other change: reactivation by extending the
    period, then back to Free."""
    account_id = subscribe(app, stripe_emulator, auto_renew=False)
    suspended_at = at(END)
    assert run(app, suspended_at).webhooks_sent == 2  # bought, then suspended
    actor = staff(app, suspended_at)
    with app.app_context():
        sub = db.session.scalar(select(Subscription).where(Subscription.account_id == account_id))
        assert sub is not None and sub.status == "suspended"
        actions.extend_period(
            sub_id=sub.id,
            version=sub.version,
            days=10,
            actor=db.session.merge(actor),
            note=None,
            now=suspended_at,
            today=END,
        )
        sub = db.session.scalar(select(Subscription).where(Subscription.account_id == account_id))
        assert sub is not None
        actions.return_to_free(
            sub_id=sub.id,
            version=sub.version,
            free_agents=1,
            actor=db.session.merge(actor),
            note=None,
            now=suspended_at,
        )
    assert run(app, suspended_at + dt.timedelta(minutes=1)).webhooks_sent == 2
    events = receiver.events()
    assert [e["type"] for e in events] == [
        "account.package_changed",
        "account.suspended",
        "account.reactivated",
        "account.package_changed",
    ]
    assert events[2]["entitlements"]["package"] == "standard"
    assert events[3]["entitlements"]["package"] == "free"
    versions = [e["entitlements"]["version"] for e in events]
    assert versions == sorted(versions) and len(set(versions)) == 4


@pytest.mark.postgres
def test_two_runners_at_once_deliver_each_event_once(app, stripe_emulator, receiver):
    account_id = subscribe(app, stripe_emulator)
    with app.app_context():
        for agents in range(4, 34):  # 30 more events
            sub = db.session.scalar(
                select(Subscription).where(Subscription.account_id == account_id)
            )
            assert sub is not None
            sub.agents = agents
            db.session.commit()
    when = at(START, 12)
    settings = webhooks.settings_for(app)

    def deliver() -> tuple[int, int]:
        with app.app_context():
            try:
                return webhooks.deliver_due(now=when, settings=settings)
            finally:
                db.session.remove()

    results = at_once(2, deliver)
    assert sum(sent for sent, _ in results) == 31
    ids = [e["id"] for e in receiver.events()]
    assert len(ids) == 31 and len(set(ids)) == 31
