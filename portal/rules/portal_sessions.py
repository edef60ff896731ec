"""Portal sessions: the chat product opens the portal for its customer without a second
password, the way Stripe's billing-portal sessions do (docs/integration.md).

The chat product asks for a link with its service token; the link works once, for
``PORTAL_SESSION_MAX_AGE`` seconds (5 minutes), for the account's user as they were when it
was made (a log-out, a new password or staff revoking their sessions ends it too). Only the
SHA-256 of its token is stored. ``return_url`` must fall under one of ``PORTAL_RETURN_URLS``:
the same scheme, host and port, and the same path or one below it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from sqlalchemy import select, update

from portal.infra.extensions import db
from portal.infra.models import Account, PortalSession, Role, User

PAGES = ("package", "checkout", "invoices")
MAX_RETURN_URL = 2000


class Refused(Exception):
    """A request the API answers 4xx: ``code`` for programs, ``message`` for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Unusable(StrEnum):
    """Why a link signs nobody in."""

    UNKNOWN = "unknown"  # no such link (or not complete)
    USED = "used"
    EXPIRED = "expired"
    DISABLED = "disabled"  # the user cannot sign in any more (sessions revoked, removed)


@dataclass(frozen=True)
class Created:
    public_id: str
    token: str
    expires_at: dt.datetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", errors="replace")).hexdigest()


def _origin_and_path(url: str) -> tuple[str, str, str] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username is not None:
        return None
    if parts.password is not None:
        return None
    default = 443 if parts.scheme == "https" else 80
    host = f"{parts.hostname.lower()}:{port or default}"
    return parts.scheme, host, parts.path or "/"


def return_url_allowed(url: str, allowed: list[str]) -> bool:
    """Whether ``url`` falls under one of ``allowed``: the same origin, and the same path or
    one below it (``https://chat.example.com/app`` allows ``/app`` and ``/app/billing``,
    not ``/apple``)."""
    if len(url) > MAX_RETURN_URL or any(ord(c) < 33 or ord(c) == 127 for c in url):
        return False
    given = _origin_and_path(url)
    if given is None:
        return False
    for prefix in allowed:
        allow = _origin_and_path(str(prefix))
        if allow is None or allow[:2] != given[:2]:
            continue
        base = allow[2].rstrip("/")
        if given[2] == allow[2] or given[2] == base or given[2].startswith(base + "/"):
            return True
    return False


def user_of(account_id: int) -> User | None:
    """The user a link signs in: the account's first customer with a confirmed address."""
    user = db.session.scalar(
        select(User)
        .where(
            User.account_id == account_id,
            User.role == Role.CUSTOMER.value,
            User.email_confirmed_at.is_not(None),
        )
        .order_by(User.id)
        .limit(1)
    )
    return user if isinstance(user, User) else None


def create(
    *,
    account_id: object,
    page: object,
    return_url: object,
    allowed_return_urls: list[str],
    max_age: dt.timedelta,
    now: dt.datetime,
) -> Created:
    """Store a new link; :class:`Refused` (nothing stored) for input that does not hold."""
    if isinstance(account_id, bool) or not isinstance(account_id, int) or account_id < 1:
        raise Refused(422, "invalid_account", "'account' must be an account id (an integer).")
    if page is None:
        page = "package"
    if page not in PAGES:
        raise Refused(422, "invalid_page", f"'page' must be one of: {', '.join(PAGES)}.")
    if return_url is not None:
        if not isinstance(return_url, str) or not return_url_allowed(
            return_url, allowed_return_urls
        ):
            raise Refused(
                422,
                "return_url_not_allowed",
                "'return_url' is not on the portal's list of allowed return URLs "
                "(PORTAL_RETURN_URLS).",
            )
    if account_id > 2**31 - 1 or db.session.get(Account, account_id) is None:
        raise Refused(404, "not_found", "No such account.")
    user = user_of(account_id)
    if user is None:
        raise Refused(
            409, "no_user", "The account has no user who can sign in (no confirmed address)."
        )
    token = secrets.token_urlsafe(32)
    row = PortalSession(
        public_id=secrets.token_hex(16),
        token_hash=token_hash(token),
        account_id=account_id,
        user_id=user.id,
        session_version=user.session_version,
        page=str(page),
        return_url=return_url,
        created_at=now,
        expires_at=now + max_age,
    )
    db.session.add(row)
    db.session.commit()
    return Created(row.public_id, token, row.expires_at)


def find(token: str, now: dt.datetime) -> tuple[PortalSession | None, User | None, Unusable | None]:
    """The link of ``token`` and its user, or why it signs nobody in."""
    row = db.session.scalar(
        select(PortalSession).where(PortalSession.token_hash == token_hash(token))
    )
    if not isinstance(row, PortalSession):
        return None, None, Unusable.UNKNOWN
    if row.used_at is not None:
        return row, None, Unusable.USED
    if now >= row.expires_at:
        return row, None, Unusable.EXPIRED
    user = db.session.get(User, row.user_id)
    if (
        user is None
        or user.account_id != row.account_id
        or user.email_confirmed_at is None
        or user.session_version != row.session_version
    ):
        return row, None, Unusable.DISABLED
    return row, user, None


def use(row: PortalSession, now: dt.datetime) -> bool:
    """Mark the link used, once: ``False`` when another request used it first (or it has
    just expired). Commits."""
    result = db.session.execute(
        update(PortalSession)
        .where(
            PortalSession.id == row.id,
            PortalSession.used_at.is_(None),
            PortalSession.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return bool(getattr(result, "rowcount", 0) == 1)
