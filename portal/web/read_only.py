"""Views that only read run outside a database transaction on PostgreSQL.

In a READ COMMITTED transaction (PostgreSQL's default, and ours) each statement sees what
was committed when it started, as it does in autocommit: a view that only reads gains
nothing from the transaction and pays two round trips for it, BEGIN and ROLLBACK. Such a
view is marked ``@read_only``; on PostgreSQL its request runs in autocommit, from its
first statement: a request that runs none (an anonymous visitor sent to log in) takes no
connection. On every database the session refuses to write in it.
SQLite sends no BEGIN before a read, so it has nothing to save.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, request
from sqlalchemy import Executable, Result, Row, event
from sqlalchemy.orm import ORMExecuteState, Session

from portal.infra.direct_read import DirectRow, DirectSelect
from portal.infra.extensions import db

View = TypeVar("View", bound=Callable[..., Any])

FLAG = "pakiet_read_only"
AUTOCOMMIT = "pakiet_read_only_autocommit"  # the first statement takes an autocommit connection


class WriteInReadOnlyView(RuntimeError):
    """A view marked ``@read_only`` tried to change the database."""


def read_only(view: View) -> View:
    """Mark a view that never writes (below ``login_required``, which keeps the mark)."""
    setattr(view, FLAG, True)
    return view


def init_app(app: Flask) -> None:
    with app.app_context():
        autocommit = db.engine.dialect.name == "postgresql"

    def marked() -> bool:
        return getattr(app.view_functions.get(request.endpoint or ""), FLAG, False)

    @app.before_request
    def start_read_only() -> None:
        # A session already in a transaction (an enclosing app context, as in some tests)
        # is left as it is.
        if not marked() or db.session().in_transaction():
            return
        db.session.info[FLAG] = True
        if autocommit:
            db.session.info[AUTOCOMMIT] = True

    @app.teardown_request
    def end_read_only(_exc: BaseException | None) -> None:
        if marked() and db.session.info.pop(FLAG, False):
            db.session.info.pop(AUTOCOMMIT, None)
            session = db.session()
            if session.in_transaction():
                # Nothing was written. Closing the connection while its transaction is still
                # open rolls back once; closing the session first would roll back and then
                # have the pool roll back again as the connection is checked in.
                session.connection().close()
            session.close()


def read(statement: Executable, params: dict[str, Any]) -> Result[Any]:
    """A SELECT of rows (not ORM objects) in a view marked ``@read_only``, run straight on
    the session's connection: what ``db.session.execute`` adds to it (the ORM's execution
    path, its autoflush and result set-up) is a third of the invoice list's query, and a
    read-only view has nothing to flush. Elsewhere (a view that writes, a command) it is
    ``db.session.execute``, which sees what the session has not flushed yet."""
    session = db.session()
    info = session.info
    if not info.get(FLAG):
        return session.execute(statement, params)
    if not getattr(statement, "is_select", False):
        raise WriteInReadOnlyView("a view marked read_only tried to write")
    options = IN_AUTOCOMMIT if _first_statement(session) else {}
    return session.connection(execution_options=options).execute(statement, params)


def first(query: DirectSelect, params: dict[str, Any]) -> DirectRow | Row[Any] | None:
    """:func:`read`'s first row for a statement read on every request (the signed-in
    user): in a view marked ``@read_only`` straight from the driver's cursor
    (``portal/infra/direct_read.py``), elsewhere as ``db.session.execute`` reads it."""
    session = db.session()
    if not session.info.get(FLAG):
        return session.execute(query.statement, params).first()
    options = IN_AUTOCOMMIT if _first_statement(session) else {}
    return query.first(session.connection(execution_options=options), params)


IN_AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}


def _first_statement(session: Session) -> bool:
    """Whether this is a read-only view's first statement, which takes the connection the
    view runs on in autocommit (PostgreSQL; asked once)."""
    return bool(session.info.pop(AUTOCOMMIT, False)) and not session.in_transaction()


@event.listens_for(Session, "before_flush")
def _refuse_flush(session: Session, _context: Any, _instances: Any) -> None:
    if session.info.get(FLAG):
        raise WriteInReadOnlyView("a view marked read_only tried to write")


@event.listens_for(Session, "do_orm_execute")
def _refuse_writes(state: ORMExecuteState) -> None:
    info = state.session.info
    if not info.get(FLAG):
        return
    if not state.is_select:
        raise WriteInReadOnlyView("a view marked read_only tried to write")
    if _first_statement(state.session):
        # The statement runs on the connection taken here (the session asks for one next).
        state.session.connection(execution_options=IN_AUTOCOMMIT)
