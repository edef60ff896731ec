"""Webhooks to the chat product: an account's package, agents, conversations or suspension
changed (docs/integration.md).

**Written with the change.** A listener on the subscription's UPDATE writes one
``webhook_delivery`` row per URL of ``WEBHOOK_URLS`` on the same connection, inside the
flush that writes the change: the event is committed with the change or not at all, whoever
made it (a purchase, a renewal, a suspension, a refund, a staff action). Nothing is written
while no URL is configured.

**Sent by the background run** (:func:`deliver_due`, from ``flask billing run``), never
inside a transaction: the due rows are claimed (``FOR UPDATE SKIP LOCKED`` on PostgreSQL)
with a lease and committed, each is posted with a timeout, then its outcome is committed.
A receiver that answers anything but 2xx, or not in time, gets the event again later with
exponential backoff (``WEBHOOK_RETRY_BASE`` seconds doubled per try, at most
``WEBHOOK_RETRY_MAX``); after ``WEBHOOK_MAX_ATTEMPTS`` tries the row is marked given up (staff
see it in the back office). A URL that failed is not tried again in the same run: its other
events wait, untried, for the next run. Delivery is at least once: the receiver de-duplicates by the
event's ``id``, and orders by ``entitlements.version``.

**Signed** like Stripe's: ``Pakiet-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>" with WEBHOOK_SECRET>``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import json
import logging
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, insert, or_, select
from sqlalchemy import inspect as sa_inspect

from portal.infra.extensions import db
from portal.infra.models import Subscription, SubscriptionStatus, WebhookDelivery, utcnow
from portal.rules.entitlements import entitlements

log = logging.getLogger(__name__)

PACKAGE_CHANGED = "account.package_changed"
SUSPENDED = "account.suspended"
REACTIVATED = "account.reactivated"
EVENT_TYPES = (PACKAGE_CHANGED, SUSPENDED, REACTIVATED)

#: What the chat product enforces: a change of any of these is an ``account.package_changed``.
_WATCHED = ("package", "period", "agents", "conversations")

SIGNATURE_HEADER = "Pakiet-Signature"
USER_AGENT = "Pakiet-Webhooks/1"
BATCH = 20


@dataclass(frozen=True)
class Settings:
    secret: str = ""
    timeout: float = 10.0
    max_attempts: int = 12
    retry_base: dt.timedelta = dt.timedelta(minutes=1)
    retry_max: dt.timedelta = dt.timedelta(hours=6)

    @property
    def lease(self) -> dt.timedelta:
        """How long other runners leave a row alone while one posts it (beyond the timeout)."""
        return dt.timedelta(seconds=self.timeout) + dt.timedelta(minutes=1)

    def backoff(self, attempts: int) -> dt.timedelta:
        """The wait after the ``attempts``-th failed try: 1, 2, 4 ... minutes, capped."""
        delay = self.retry_base * int(2 ** max(0, min(attempts - 1, 30)))
        return min(delay, self.retry_max)


def settings_for(app: Any) -> Settings:
    """``WEBHOOK_SECRET``, ``WEBHOOK_TIMEOUT``, ``WEBHOOK_MAX_ATTEMPTS``,
    ``WEBHOOK_RETRY_BASE`` and ``WEBHOOK_RETRY_MAX`` (seconds)."""
    config = app.config
    return Settings(
        secret=str(config.get("WEBHOOK_SECRET") or ""),
        timeout=float(config.get("WEBHOOK_TIMEOUT", 10)),
        max_attempts=max(1, int(config.get("WEBHOOK_MAX_ATTEMPTS", 12))),
        retry_base=dt.timedelta(seconds=float(config.get("WEBHOOK_RETRY_BASE", 60))),
        retry_max=dt.timedelta(seconds=float(config.get("WEBHOOK_RETRY_MAX", 6 * 3600))),
    )


# -- writing: in the transaction of the change ----------------------------------------------


def event_type(sub: Subscription) -> str | None:
    """The event an UPDATE of ``sub`` (its pending changes, within a flush) is, if any."""
    state: Any = sa_inspect(sub)
    status = state.attrs.status.history
    if status.has_changes():
        before = status.deleted[0] if status.deleted else None
        if sub.status == SubscriptionStatus.SUSPENDED and before != SubscriptionStatus.SUSPENDED:
            return SUSPENDED
        if before == SubscriptionStatus.SUSPENDED and sub.status != SubscriptionStatus.SUSPENDED:
            return REACTIVATED
    if any(state.attrs[name].history.has_changes() for name in _WATCHED):
        return PACKAGE_CHANGED
    return None


def payload(kind: str, sub: Subscription, catalogue: Any, now: dt.datetime) -> dict[str, Any]:
    """The documented body of an event (docs/integration.md)."""
    return {
        "id": str(uuid.uuid4()),
        "type": kind,
        "created_at": now.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "account": sub.account_id,
        "entitlements": entitlements(sub, catalogue),
    }


@event.listens_for(Subscription, "after_update")
def _record(mapper: Any, connection: Any, target: Subscription) -> None:
    from flask import current_app, has_app_context

    if not has_app_context():
        return
    configured = current_app.config.get("WEBHOOK_URLS") or []
    if isinstance(configured, str):  # one URL given as a string
        configured = [configured]
    urls = [str(u) for u in configured if u]
    if not urls:
        return
    kind = event_type(target)
    if kind is None:
        return
    now = utcnow()
    body = payload(kind, target, current_app.extensions["pakiet.catalogue"], now)
    connection.execute(
        insert(WebhookDelivery.__table__),
        [
            {
                "event_id": body["id"],
                "url": url,
                "type": kind,
                "account_id": target.account_id,
                "payload": body,
                "created_at": now,
                "attempts": 0,
            }
            for url in urls
        ],
    )


# -- sending: by the background run, outside any transaction --------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Pakiet-Signature`` header of ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class _Job:
    id: int
    url: str
    event_id: str
    type: str
    body: bytes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is not a delivery: the event goes to the configured URL or is retried."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _post(job: _Job, settings: Settings, now: dt.datetime) -> str | None:
    """Post one event; ``None`` when the receiver took it (2xx), else why not."""
    timestamp = int(now.timestamp())
    request = urllib.request.Request(
        job.url,
        data=job.body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Pakiet-Event-Id": job.event_id,
            "Pakiet-Event-Type": job.type,
            SIGNATURE_HEADER: sign(settings.secret, timestamp, job.body),
        },
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=settings.timeout) as response:
            response.read(64 * 1024)
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"[:500]
    return None if 200 <= status < 300 else f"HTTP {status}"


def _claim(now: dt.datetime, settings: Settings) -> list[_Job]:
    """The next due rows, leased to this runner and committed (attempt counted)."""
    rows = db.session.scalars(
        select(WebhookDelivery)
        .where(
            WebhookDelivery.delivered_at.is_(None),
            WebhookDelivery.gave_up_at.is_(None),
            or_(
                WebhookDelivery.next_attempt_at.is_(None),
                WebhookDelivery.next_attempt_at <= now,
            ),
        )
        .order_by(WebhookDelivery.id)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    ).all()
    jobs = []
    for row in rows:
        row.attempts += 1
        row.next_attempt_at = now + settings.lease
        jobs.append(_Job(row.id, row.url, row.event_id, row.type, encode(row.payload)))
    db.session.commit()
    return jobs


def _settle(job: _Job, error: str | None, now: dt.datetime, settings: Settings) -> bool:
    """Record the outcome of one try; ``True`` when the row gave up."""
    row = db.session.get(WebhookDelivery, job.id, with_for_update=True)
    gave_up = False
    if row is not None and row.delivered_at is None:
        if error is None:
            row.delivered_at, row.next_attempt_at, row.last_error = now, None, None
        elif row.attempts >= settings.max_attempts:
            row.gave_up_at, row.last_error = now, error
            gave_up = True
            log.error(
                "webhook %s to %s given up after %d tries: %s",
                job.event_id,
                job.url,
                row.attempts,
                error,
            )
        else:
            row.next_attempt_at = now + settings.backoff(row.attempts)
            row.last_error = error
            log.warning(
                "webhook %s to %s failed (%s); tried again later", job.event_id, job.url, error
            )
    db.session.commit()
    return gave_up


def _release(job: _Job, at: dt.datetime) -> None:
    """Give back a claimed row untried (its receiver is down): the claim's try uncounted,
    due again at ``at``. A receiver that hangs costs one timeout per run, not one per event."""
    row = db.session.get(WebhookDelivery, job.id, with_for_update=True)
    if row is not None and row.delivered_at is None:
        row.attempts = max(0, row.attempts - 1)
        row.next_attempt_at = at
    db.session.commit()


def deliver_due(*, now: dt.datetime, settings: Settings, limit: int = 500) -> tuple[int, int]:
    """Post the events due at ``now``; returns (delivered, failed tries)."""
    if not settings.secret:
        return 0, 0  # nothing is written without URLs, and URLs need a secret (config)
    delivered = failed = 0
    down: set[str] = set()  # a URL that failed in this run is not tried again in it
    while delivered + failed < limit:
        jobs = _claim(now, settings)
        if not jobs:
            break
        for job in jobs:
            if job.url in down:
                _release(job, now + settings.retry_base)
                continue
            error = _post(job, settings, now)
            _settle(job, error, now, settings)
            if error is None:
                delivered += 1
            else:
                failed += 1
                down.add(job.url)
    return delivered, failed
