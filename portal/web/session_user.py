"""The signed-in user of a request, from one narrow row (issue 26).

Flask-Login's user loader runs on every signed-in request. It used to load the ORM ``User``
with its account, subscription and billing data (46 columns, four tables, attached ORM
objects): about a third of a light page's cost. It now runs one SQLAlchemy Core statement
and answers a :class:`SessionUser`, a plain object with what the session checks and every
page need (id, account, e-mail, role, language, session version):

- the session checks are unchanged: the row carries ``session_version``, and a session whose
  version no longer matches (log-out, a new password, staff revoking) is refused;
- the row also brings the account's subscription (a LEFT JOIN, no extra round trip), which
  the lifecycle banner of every customer page reads;
- a view marked ``@read_only`` that uses the account (My package, the live summary) gets
  the account and its billing data in the same statement, as *detached* ORM objects built
  from the row (:func:`account`): a view that only reads gets one round trip and no unit of
  work; touching anything that was not loaded raises ``DetachedInstanceError`` instead of
  querying behind its back. Views marked ``@narrow_user`` (the downloads, the invoices
  list) need the account's id only and skip the account's columns;
- any other view that asks for the account (every view that writes) gets it attached, with
  its subscription and billing data, from one ORM query the first time it asks.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar

from flask import abort, current_app, request
from flask_login import UserMixin, current_user
from sqlalchemy import BindParameter, Row, Select, bindparam, select
from sqlalchemy.orm import attributes, joinedload, make_transient_to_detached
from sqlalchemy.sql import visitors

from portal.infra.direct_read import DirectRow, DirectSelect
from portal.infra.extensions import db
from portal.infra.models import Account, BillingInfo, Subscription, User
from portal.web.read_only import FLAG as READ_ONLY
from portal.web.read_only import first

View = TypeVar("View", bound=Callable[..., Any])
M = TypeVar("M")
# The user's row: straight from the driver in a read-only view, SQLAlchemy's elsewhere.
UserRow = DirectRow | Row[Any]

NARROW = "pakiet_narrow_user"
ALONG = "pakiet_along_with_user"

USER_COLUMNS = ("id", "account_id", "email", "role", "language", "session_version")
# Short aliases: the statements stay under psycopg's 4 KB, the longest it keeps parsed
# (a longer one is parsed again on every execution, 30-40 µs; My package's was 4.7 KB).
_user = User.__table__.alias("u")
_sub = Subscription.__table__.alias("s")
_account = Account.__table__.alias("a")
_billing = BillingInfo.__table__.alias("b")


def _labelled(table: Any, prefix: str) -> list[Any]:
    return [column.label(f"{prefix}{column.key}") for column in table.c]


def _columns_and_join(with_account: bool, with_billing: bool = True) -> tuple[list[Any], Any]:
    columns = [_user.c[name] for name in USER_COLUMNS] + _labelled(_sub, "s_")
    joined = _user.outerjoin(_sub, _sub.c.account_id == _user.c.account_id)
    if with_account:
        columns += _labelled(_account, "a_")
        joined = joined.outerjoin(_account, _account.c.id == _user.c.account_id)
    if with_account and with_billing:
        columns += _labelled(_billing, "b_")
        joined = joined.outerjoin(_billing, _billing.c.account_id == _user.c.account_id)
    return columns, joined


def _statement(with_account: bool) -> Select[Any]:
    columns, joined = _columns_and_join(with_account)
    return select(*columns).select_from(joined).where(_user.c.id == bindparam("user_id"))


# Built once per process (building a statement costs about as much as running it).
# Read straight from the driver in a read-only view (portal/infra/direct_read.py).
USER_ROW = DirectSelect(_statement(with_account=False))
USER_ROW_WITH_ACCOUNT = DirectSelect(_statement(with_account=True))

ACCOUNT_WITH_PACKAGE = (
    select(Account)
    .where(Account.id == bindparam("account_id"))
    .options(joinedload(Account.subscription), joinedload(Account.billing_info))
)


def narrow_user(view: View) -> View:
    """Mark a read-only view that needs the user's account id only, not the account."""
    setattr(view, NARROW, True)
    return view


# The signed-in user's account, looked up by the user's id inside the statement that loads
# the user (an alias: not correlated with the row being loaded).
_ME = User.__table__.alias("me")
_OWN_ACCOUNT = select(_ME.c.account_id).where(_ME.c.id == bindparam("user_id")).scalar_subquery()


def _bound_to_the_users_account(facts: Select[*tuple[Any, ...]]) -> Select[*tuple[Any, ...]]:
    """``facts`` with every ``account_id`` parameter replaced by the signed-in user's account."""

    def replace(element: Any) -> Any:
        if isinstance(element, BindParameter) and element.key == "account_id":
            return _OWN_ACCOUNT
        return None

    bound: Select[*tuple[Any, ...]] = visitors.replacement_traverse(
        facts,  # type: ignore[call-overload]
        {},
        replace,
    )
    return bound


def along_with_user(
    facts: Select[*tuple[Any, ...]],
    *,
    account: bool = False,
    billing: bool = True,
    params: Callable[[], dict[str, Any]] | None = None,
) -> Callable[[View], View]:
    """Mark a read-only view whose first statement rides in the loader's round trip:
    ``facts`` (one row at most, with an ``account_id`` column) is left-joined to the user's
    row *on the user's account*, so another account's row never joins: the owner check is
    the join. Its parameters are bound to the view's arguments by name, to ``params()``
    (values worked out as the user is loaded, such as a time), and an ``account_id``
    parameter to the user's own account. The view reads it as :attr:`SessionUser.along`
    (named and positional; ``None``: nothing of the user's). ``account``: the view also
    reads the account and its billing data from the row (else it is a :func:`narrow_user`
    view); with ``billing=False`` the account only (the billing data's fourteen columns
    left out: reading them raises ``DetachedInstanceError``). The session checks are
    those of every request: the user's row decides, the facts ride."""
    along = _bound_to_the_users_account(facts).subquery("f")
    columns, joined = _columns_and_join(with_account=account, with_billing=billing)
    # The facts close the row, read by position: unlabelled, the statement stays short.
    columns += list(along.c)
    joined = joined.outerjoin(along, along.c.account_id == _user.c.account_id)
    statement = select(*columns).select_from(joined).where(_user.c.id == bindparam("user_id"))
    names = [column.key for column in along.c]
    facts_from = len(columns) - len(names)
    owner = facts_from + names.index("account_id")
    row_type = namedtuple("Along", names)  # type: ignore[misc]

    def mark(view: View) -> View:
        if not account:
            setattr(view, NARROW, True)
        setattr(view, ALONG, (DirectSelect(statement), (facts_from, owner), row_type, params))
        return view

    return mark


class SessionUser(UserMixin):
    """The signed-in person of one request (Flask-Login's ``current_user``)."""

    def __init__(self, row: UserRow) -> None:
        self.id: int = row.id
        self.account_id: int | None = row.account_id
        self.email: str = row.email
        self.role: str = row.role
        self.language: str | None = row.language
        self.session_version: int = row.session_version
        self._row = row
        self._subscription: Subscription | None = None
        self._account: Account | None = None
        self.along: Any = None  # a named tuple of the facts that rode along (along_with_user)

    def get_id(self) -> str:
        """As :meth:`User.get_id`: the id and the session version."""
        return f"{self.id}:{self.session_version}"

    @property
    def account(self) -> Account | None:
        """The account: attached (one ORM query, once) in a view that may write; detached,
        from the loader's row, in a read-only view."""
        if self.account_id is None:
            return None
        if self._account is None:
            if hasattr(self._row, "a_id"):
                self._account = _detached_account(self._row, self.subscription)
            else:
                self._account = db.session.scalar(
                    ACCOUNT_WITH_PACKAGE, {"account_id": self.account_id}
                )
        return self._account

    @property
    def subscription(self) -> Subscription | None:
        """The account's subscription as it stands for this request's pages: the attached
        one once the view has loaded the account (it may have changed it), else the one
        the loader's row brought."""
        if self._account is not None:
            return self._account.subscription
        if self._subscription is None and self._row.s_id is not None:
            self._subscription = _detached(Subscription, self._row, "s_")
        return self._subscription


def load(session_id: str) -> SessionUser | None:
    """Flask-Login's user loader: the session's user if its session is still valid."""
    user_id, _, version = session_id.partition(":")
    if not user_id.isdigit() or not version.isdigit():
        return None
    view = current_app.view_functions.get(request.endpoint or "")
    read_only = bool(getattr(view, READ_ONLY, False))
    along = getattr(view, ALONG, None) if read_only else None
    row_type = None
    if along is not None:
        statement, (facts_from, owner), row_type, extra = along
        params = {**(request.view_args or {}), **(extra() if extra else {})}
        params["user_id"] = int(user_id)
    else:
        statement = (
            USER_ROW_WITH_ACCOUNT if read_only and not getattr(view, NARROW, False) else USER_ROW
        )
        params = {"user_id": int(user_id)}
    row = first(statement, params)  # in a read-only view, on its connection
    if row is None or row.session_version != int(version):
        return None  # a revoked session (log-out, new password, staff)
    user = SessionUser(row)
    if row_type is not None and row[owner] is not None:
        user.along = row_type(*row[facts_from:])
    return user


def _detached(model: type[M], row: UserRow, prefix: str) -> M:
    """A detached ORM object of ``model`` from the ``prefix``-labelled columns of ``row``:
    its columns set in its ``__dict__`` at once (what a query's loading does), then made
    persistent-detached, which commits them as loaded."""
    keys, values_of = _columns_of(model, prefix)
    instance = model.__mapper__.class_manager.new_instance()  # type: ignore[attr-defined]
    instance.__dict__.update(zip(keys, values_of(row), strict=True))
    make_transient_to_detached(instance)
    return instance  # type: ignore[no-any-return]


_COLUMNS: dict[tuple[type[Any], str], tuple[tuple[str, ...], attrgetter[Any]]] = {}


def _columns_of(model: type[Any], prefix: str) -> tuple[tuple[str, ...], attrgetter[Any]]:
    """The attributes of ``model``'s columns, and a getter of their values in the user's
    row (each labelled ``prefix`` + attribute), made once."""
    found = _COLUMNS.get((model, prefix))
    if found is None:
        keys = tuple(column.key for column in model.__table__.c)
        found = keys, attrgetter(*(f"{prefix}{key}" for key in keys))
        _COLUMNS[(model, prefix)] = found
    return found


def _detached_account(row: UserRow, sub: Subscription | None) -> Account:
    account = _detached(Account, row, "a_")
    attributes.set_committed_value(account, "subscription", sub)
    if not hasattr(row, "b_id"):  # a row without the billing data: left unloaded
        billing = None
    else:
        billing = _detached(BillingInfo, row, "b_") if row.b_id is not None else None
        attributes.set_committed_value(account, "billing_info", billing)
    if sub is not None:
        attributes.set_committed_value(sub, "account", account)
    if billing is not None:
        attributes.set_committed_value(billing, "account", account)
    return account


def current_account() -> Account:
    """The logged-in customer's account; staff without one get a 404."""
    if current_user.account_id is None:
        abort(404)
    # With its subscription and billing data: detached from the user's row in a read-only
    # view, attached otherwise (portal/web/session_user.py).
    account = current_user.account
    if not isinstance(account, Account):
        abort(404)
    return account
