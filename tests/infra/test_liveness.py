"""Pooled connections are checked before use (``portal/infra/liveness.py``): on PostgreSQL without
the pre-ping's round trip, and a connection the database closed meanwhile (a restart) is
replaced before a page uses it."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from portal.infra.extensions import db

PAGES = ["/package", "/invoices", "/package/edit", "/billing"]


@pytest.fixture
def counted_connects(app):
    """How many connections the pool has opened so far, and no pre-ping allowed."""
    with app.app_context():
        engine = db.engine
    opened: list[object] = []

    def record(dbapi_connection, _record) -> None:
        opened.append(dbapi_connection)

    def no_ping(dbapi_connection) -> bool:
        raise AssertionError("a round trip to ping the database")

    sa.event.listen(engine, "connect", record)
    original = engine.dialect.do_ping
    engine.dialect.do_ping = no_ping  # type: ignore[method-assign]
    try:
        yield opened
    finally:
        engine.dialect.do_ping = original  # type: ignore[method-assign]
        sa.event.remove(engine, "connect", record)


def test_pages_take_their_pooled_connection_without_a_ping(app, auth, counted_connects):
    assert auth.signup("anna@firma.example.com").status_code == 302
    for page in PAGES:
        assert auth.client.get(page).status_code == 200, page
    opened = len(counted_connects)

    for page in PAGES:
        assert auth.client.get(page).status_code == 200, page

    assert len(counted_connects) == opened  # the pooled connections were used again


def _terminate_every_other_session() -> None:
    """What a PostgreSQL restart does to the pool: each session is ended by the server. The
    call returns once they are signalled; here, also once they are gone. The statement
    comes from outside the app's pool."""
    outside = sa.create_engine(
        db.engine.url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT"
    )
    with outside.connect() as other:
        pids = other.scalars(
            sa.text(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).all()
        other.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:p AS int[])) AS pid"),
            {"p": pids},
        )
        deadline = time.monotonic() + 10
        while other.scalar(
            sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(CAST(:p AS int[]))"),
            {"p": pids},
        ):
            assert time.monotonic() < deadline, "the sessions did not end"
            time.sleep(0.01)
    outside.dispose()


@pytest.mark.postgres
def test_a_connection_the_database_closed_is_replaced_before_a_page_uses_it(
    app, auth, counted_connects
):
    assert auth.signup("anna@firma.example.com").status_code == 302
    for page in PAGES:
        assert auth.client.get(page).status_code == 200, page
    with app.app_context():
        _terminate_every_other_session()
    opened = len(counted_connects)

    for page in [*PAGES, *PAGES]:
        assert auth.client.get(page).status_code == 200, page

    assert len(counted_connects) > opened  # the closed ones were replaced, quietly
