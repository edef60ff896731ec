"""Domain operations on accounts and users. No Flask request state in here."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from portal.infra.extensions import db
from portal.infra.models import Account, BillingInfo, Role, Subscription, SubscriptionStatus, User
from portal.rules.catalogue import Catalogue, PackageCode

DEFAULT_HASH_METHOD = "scrypt"
# Checked against a real hash when the e-mail is unknown, so both paths cost the same.
_DUMMY_HASHES: dict[str, str] = {}


def _hash_method() -> str:
    """``PASSWORD_HASH_METHOD`` (Werkzeug's method string): scrypt unless configured; the
    test suite sets a fast one."""
    from flask import current_app, has_app_context

    if has_app_context():
        return str(current_app.config.get("PASSWORD_HASH_METHOD") or DEFAULT_HASH_METHOD)
    return DEFAULT_HASH_METHOD


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=_hash_method())


def _dummy_hash() -> str:
    method = _hash_method()
    if method not in _DUMMY_HASHES:
        _DUMMY_HASHES[method] = generate_password_hash("not-a-real-password", method=method)
    return _DUMMY_HASHES[method]


class EmailTaken(ValueError):
    """An account with this e-mail address already exists."""


def normalise_email(email: str) -> str:
    return email.strip().lower()


def find_user(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == normalise_email(email)))


def email_taken(email: str) -> bool:
    stmt = select(func.count()).select_from(User).where(User.email == normalise_email(email))
    return bool(db.session.scalar(stmt))


def authenticate(email: str, password: str) -> User | None:
    """The user for these credentials, or ``None`` (same work either way)."""
    user = find_user(email)
    if user is None:
        check_password_hash(_dummy_hash(), password)
        return None
    return user if check_password_hash(user.password_hash, password) else None


def revoke_sessions(*, user_id: int | None = None, account_id: int | None = None) -> int:
    """End every session of the user, or of every user of the account, by bumping their
    session version (in the caller's transaction): the number of users."""
    stmt = update(User).values(session_version=User.session_version + 1)
    if user_id is not None:
        stmt = stmt.where(User.id == user_id)
    elif account_id is not None:
        stmt = stmt.where(User.account_id == account_id)
    else:
        raise ValueError("revoke whose sessions?")
    result = db.session.execute(stmt.execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def check_password(user: User, password: str) -> bool:
    return check_password_hash(user.password_hash, password)


def register_account(
    *,
    catalogue: Catalogue,
    company: str,
    email: str,
    password: str,
    language: str | None,
    now: dt.datetime,
    role: Role = Role.CUSTOMER,
    confirmed: bool = False,
) -> User:
    """Create a company account on the Free package with its first user. A sign-up's user
    is not ``confirmed`` until the link of the e-mail is followed (confirm_email)."""
    email = normalise_email(email)
    if email_taken(email):
        raise EmailTaken(email)
    free = catalogue.package(PackageCode.FREE)
    account = Account(name=company.strip(), created_at=now)
    user = User(
        account=account,
        email=email,
        password_hash=hash_password(password),
        role=role.value,
        language=language,
        created_at=now,
        email_confirmed_at=now if confirmed else None,
    )
    account.billing_info = BillingInfo(
        company_name=account.name, invoice_email=email, updated_at=now
    )
    account.subscription = Subscription(
        package=PackageCode.FREE.value,
        agents=free.max_agents,
        conversations=free.included_conversations,
        status=SubscriptionStatus.ACTIVE.value,
    )
    db.session.add_all([account, user])
    _commit_unique(email)
    return user


def create_admin(*, email: str, password: str, now: dt.datetime) -> User:
    email = normalise_email(email)
    if email_taken(email):
        raise EmailTaken(email)
    user = User(
        email=email,
        password_hash=hash_password(password),
        role=Role.ADMIN.value,
        created_at=now,
        email_confirmed_at=now,
    )
    db.session.add(user)
    _commit_unique(email)
    return user


def confirm_email(user: User, now: dt.datetime) -> bool:
    """Mark the address as proved (in the caller's transaction); ``False`` when it already
    was (a link used twice)."""
    if user.email_confirmed_at is not None:
        return False
    user.email_confirmed_at = now
    return True


def _commit_unique(email: str) -> None:
    try:
        db.session.commit()
    except IntegrityError:  # a concurrent sign-up took the address first
        db.session.rollback()
        raise EmailTaken(email) from None
