"""Entitlements for the chat product: what an account may use right now (JSON).

``GET /api/v1/accounts/<id>/entitlements`` with ``Authorization: Bearer <token>``, one of
``ENTITLEMENTS_TOKENS`` (none configured: the endpoint answers 401 to everyone). The answer
is read from the subscription on every request, so it follows every change at once:
a purchase, a renewal, a suspension, a refund, a staff action. It carries an ``ETag``
(the subscription's version), so the chat product can poll cheaply with ``If-None-Match``.

A suspended account is entitled to the Free package; while a renewal is being retried
(``past_due``) the paid package keeps working.
"""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from portal.infra.extensions import csrf, db
from portal.infra.models import Subscription, SubscriptionStatus
from portal.rules.catalogue import Catalogue, PackageCode

bp = Blueprint("entitlements", __name__, url_prefix="/api/v1")
csrf.exempt(bp)


def _authorized() -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    tokens = current_app.config.get("ENTITLEMENTS_TOKENS") or []
    given = token.strip().encode()
    # Compare with every token, so the time taken does not tell which one nearly matched.
    matches = [hmac.compare_digest(given, str(t).encode()) for t in tokens if t]
    return any(matches)


def _error(status: int, code: str, message: str) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="pakiet"'
    response.headers["Cache-Control"] = "no-store"
    return response


def entitlements(sub: Subscription, catalogue: Catalogue) -> dict[str, Any]:
    """The document for ``sub``: what to enforce now, and the subscription on record."""
    suspended = sub.status == SubscriptionStatus.SUSPENDED
    free = catalogue.package(PackageCode.FREE)
    if sub.is_paid and not suspended:
        package, agents, conversations = sub.package, sub.agents, sub.conversations
    else:
        package = PackageCode.FREE.value
        agents = min(sub.agents, free.max_agents) if sub.is_paid else free.max_agents
        conversations = 0
    return {
        "account_id": sub.account_id,
        "package": package,
        "agents": agents,
        "chatbot_conversations": conversations,
        "support": catalogue.package(package).support,
        "status": sub.status,
        "period_end": sub.period_end.isoformat() if sub.is_paid and sub.period_end else None,
        "auto_renew": sub.auto_renew,
        "subscription": {
            "package": sub.package,
            "period": sub.period if sub.is_paid else None,
            "agents": sub.agents,
            "chatbot_conversations": sub.conversations,
        },
        "version": sub.version,
    }


@bp.get("/accounts/<int:account_id>/entitlements")
def show(account_id: int) -> ResponseReturnValue:
    if not _authorized():
        return _error(401, "unauthorized", "A valid service token is required.")
    sub = db.session.scalar(select(Subscription).where(Subscription.account_id == account_id))
    if not isinstance(sub, Subscription):
        return _error(404, "not_found", "No such account.")
    etag = f"{sub.id}-{sub.version}"
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    else:
        response = jsonify(entitlements(sub, current_app.extensions["pakiet.catalogue"]))
    response.set_etag(etag)
    response.headers["Cache-Control"] = "no-cache"
    return response
