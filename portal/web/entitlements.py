"""The API of the chat product: entitlements and portal sessions (docs/integration.md).

Entitlements: what an account may use right now (JSON).

``GET /api/v1/accounts/<id>/entitlements`` with ``Authorization: Bearer <token>``, one of
``ENTITLEMENTS_TOKENS`` (none configured: the endpoint answers 401 to everyone). The answer
is read from the subscription on every request, so it follows every change at once:
a purchase, a renewal, a suspension, a refund, a staff action. It carries an ``ETag``
(the subscription's version), so the chat product can poll cheaply with ``If-None-Match``.

A suspended account is entitled to the Free package; while a renewal is being retried
(``past_due``) the paid package keeps working.

``POST /api/v1/portal-sessions``, with the same tokens, makes a single-use link that signs
the account's user in (``portal.rules.portal_sessions``; the link's pages are
``portal/web/portal_sessions.py``).
"""

from __future__ import annotations

import datetime as dt
import hmac

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from portal.infra.extensions import csrf, db
from portal.infra.models import Subscription, utcnow
from portal.rules import portal_sessions
from portal.rules.entitlements import entitlements

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


@bp.post("/portal-sessions")
def create_portal_session() -> ResponseReturnValue:
    """A single-use, short-lived link that signs the account's user in (docs/integration.md)."""
    if not _authorized():
        return _error(401, "unauthorized", "A valid service token is required.")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error(400, "invalid_json", "The body must be a JSON object.")
    try:
        created = portal_sessions.create(
            account_id=body.get("account"),
            page=body.get("page"),
            return_url=body.get("return_url"),
            allowed_return_urls=list(current_app.config.get("PORTAL_RETURN_URLS") or []),
            max_age=dt.timedelta(seconds=int(current_app.config["PORTAL_SESSION_MAX_AGE"])),
            now=utcnow(),
        )
    except portal_sessions.Refused as refused:
        return _error(refused.status, refused.code, refused.message)
    url = str(current_app.config["PUBLIC_URL"]).rstrip("/") + url_for(
        "portal_sessions.open_link", token=created.token
    )
    response = jsonify(
        {
            "id": created.public_id,
            "url": url,
            "expires_at": created.expires_at.isoformat().replace("+00:00", "Z"),
        }
    )
    response.status_code = 201
    response.headers["Cache-Control"] = "no-store"
    return response
