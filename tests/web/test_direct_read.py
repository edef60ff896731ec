"""The signed-in user's row read straight from the driver (``portal/infra/direct_read.py``):
the same values, of the same types, as SQLAlchemy reads; the engine's listeners see it; a
driver error is SQLAlchemy's, and a lost connection is invalidated."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from portal.infra.direct_read import DirectSelect
from portal.infra.extensions import db
from portal.infra.models import Invoice, User
from portal.web import session_user
from tests.web.test_invoice_list import CONFIRMED, Books


def user_queries(app) -> dict[str, tuple[DirectSelect, Any]]:
    """Every statement the user loader runs, with the extra parameters of its view."""
    queries: dict[str, tuple[DirectSelect, Any]] = {
        "user": (session_user.USER_ROW, None),
        "with account": (session_user.USER_ROW_WITH_ACCOUNT, None),
    }
    for endpoint, view in app.view_functions.items():
        along = getattr(view, session_user.ALONG, None)
        if along is not None:
            queries[endpoint] = (along[0], along[3])
    assert {"account.package", "invoices.pdf"} <= set(queries)
    return queries


def test_every_user_row_is_what_sqlalchemy_reads(app, demo_accounts):
    """For the demo's people (Free, paid, staff without an account) and a customer with an
    invoice, whose along facts are found for their own invoice and not for another's."""
    with app.app_context():
        books = Books()
        mine, other = books.customer("mine"), books.customer("other")
        books.invoice(mine, dt.date(2026, 2, 1), payment=books.payment(mine, CONFIRMED))
        books.invoice(other, dt.date(2026, 2, 2), payment=books.payment(other, CONFIRMED))
        db.session.commit()
    with app.test_request_context():
        users = db.session.scalars(sa.select(User).order_by(User.id)).all()
        invoice = db.session.scalars(sa.select(Invoice).order_by(Invoice.id)).first()
        assert invoice is not None and len(users) >= 5
        compared = 0
        found: list[tuple[str, str]] = []  # the PDF's facts: only for its owner
        for name, (query, extra) in user_queries(app).items():
            for user in users:
                public_ids = [invoice.public_id, "no-such-invoice"]
                for public_id in public_ids:
                    params = {
                        "user_id": user.id,
                        "public_id": public_id,
                        **(extra() if extra else {}),
                    }
                    connection = db.session.connection()
                    expected = connection.execute(query.statement, params).first()
                    row = query.first(connection, params)
                    assert expected is not None and row is not None, name
                    assert row._fields == tuple(expected._fields), name
                    assert tuple(row) == tuple(expected), (name, user.email)
                    # Same types too (a datetime, not its text; a bool, not 0 or 1).
                    assert [type(v) for v in row] == [type(v) for v in expected], name
                    assert row._mapping == dict(expected._mapping), name
                    compared += 1
                    if name == "invoices.pdf" and row.number is not None:
                        found.append((user.email, public_id))
        assert compared >= 12
        assert found == [("mine@firma.example.com", invoice.public_id)]
        assert query.first(db.session.connection(), {**params, "user_id": -1}) is None


def test_aware_datetimes_and_bound_values_go_through_the_columns_types(app, demo_accounts):
    """A bound datetime is converted as SQLAlchemy converts it, and a stored one comes back
    as the model's type gives it (UTCDateTime: aware, in UTC)."""
    created = sa.select(User.created_at, User.id).where(
        User.created_at <= sa.bindparam("until"), User.id == sa.bindparam("user_id")
    )
    query = DirectSelect(created)
    with app.app_context():
        user_id = db.session.scalar(sa.select(sa.func.min(User.id)))
        until = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
        row = query.first(db.session.connection(), {"until": until, "user_id": user_id})
        assert row is not None and row.id == user_id
        assert row.created_at.tzinfo is not None
        assert row.created_at.utcoffset() == dt.timedelta(0)
        early = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        assert query.first(db.session.connection(), {"until": early, "user_id": user_id}) is None


def test_the_engines_listeners_see_the_statement(app, demo_accounts):
    seen: list[tuple[str, str]] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        seen.append(("before", statement))

    def after(conn, cursor, statement, parameters, context, executemany):
        seen.append(("after", statement))

    with app.app_context():
        engine = db.engine
        sa.event.listen(engine, "before_cursor_execute", before)
        sa.event.listen(engine, "after_cursor_execute", after)
        try:
            query = session_user.USER_ROW
            query.first(db.session.connection(), {"user_id": 1})
        finally:
            sa.event.remove(engine, "before_cursor_execute", before)
            sa.event.remove(engine, "after_cursor_execute", after)
        sql = str(query.statement.compile(dialect=engine.dialect))
    assert seen == [("before", sql), ("after", sql)]


def test_a_driver_error_is_sqlalchemys(app):
    missing = DirectSelect(sa.select(sa.column("x")).select_from(sa.table("no_such_table")))
    with app.app_context():
        with pytest.raises(sa.exc.DBAPIError) as raised:
            missing.first(db.session.connection(), {})
        assert "no_such_table" in str(raised.value)
        db.session.rollback()


@pytest.mark.postgres
def test_a_connection_the_database_closed_is_invalidated(app):
    with app.app_context():
        connection = db.session.connection()
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        outside = sa.create_engine(db.engine.url, poolclass=sa.pool.NullPool)
        with outside.connect() as other:
            other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        outside.dispose()
        with pytest.raises(sa.exc.OperationalError) as raised:
            session_user.USER_ROW.first(connection, {"user_id": 1})
        assert raised.value.connection_invalidated
        db.session.rollback()
        # The next statement runs on a new connection.
        assert db.session.connection().exec_driver_sql("SELECT 1").scalar() == 1


def test_a_statement_whose_text_changes_is_refused(app):
    listed = DirectSelect(sa.select(User.id).where(User.id.in_([1, 2])))
    with app.app_context(), pytest.raises(ValueError, match="never changes"):
        listed.first(db.session.connection(), {})
