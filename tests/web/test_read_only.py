"""Views marked ``@read_only`` (``portal/web/read_only.py``): on PostgreSQL they run in
autocommit, without the BEGIN and ROLLBACK round trips; on every database they may not
write; the connection goes back to the pool as it came (a database restart between requests:
``tests/infra/test_liveness.py``)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from portal.infra.extensions import db
from portal.infra.models import Account, utcnow
from portal.web.read_only import WriteInReadOnlyView, read, read_only

READ_ONLY_PAGES = ["/package", "/invoices"]


def _transaction_or_autocommit() -> str:
    """Inside one transaction ``now()`` stays at its start; in autocommit it does not."""
    db.session.execute(select(func.pg_sleep(0.002)))
    in_one = db.session.scalar(select(func.now() != func.statement_timestamp()))
    return "transaction" if in_one else "autocommit"


@pytest.mark.postgres
def test_a_read_only_view_runs_in_autocommit_and_returns_the_connection_as_it_came(app):
    def ordinary() -> str:
        return _transaction_or_autocommit()

    @read_only
    def reader() -> str:
        return _transaction_or_autocommit()

    app.add_url_rule("/_probe/ordinary", "probe_ordinary", ordinary)
    app.add_url_rule("/_probe/reader", "probe_reader", reader)
    client = app.test_client()

    answers = [client.get(f"/_probe/{name}").text for name in ["ordinary", "reader", "ordinary"]]

    assert answers == ["transaction", "autocommit", "transaction"]


def test_a_read_only_view_may_not_write(app):
    @read_only
    def add() -> str:
        db.session.add(Account(name="Nowa Sp. z o.o.", created_at=utcnow()))
        db.session.commit()
        return "written"

    @read_only
    def update() -> str:
        db.session.execute(sa.update(Account).values(name="Nowa Sp. z o.o."))
        db.session.commit()
        return "written"

    app.add_url_rule("/_probe/add", "probe_add", add)
    app.add_url_rule("/_probe/update", "probe_update", update)
    client = app.test_client()

    for path in ["/_probe/add", "/_probe/update"]:
        with pytest.raises(WriteInReadOnlyView):
            client.get(path)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Account)) == 0


@pytest.mark.postgres
def test_a_read_straight_on_the_connection_keeps_autocommit_and_may_not_write(app):
    """read_only.read (the invoice list's rows): as the first statement of a read-only view
    it takes the autocommit connection too; an UPDATE through it is refused."""

    @read_only
    def first_read() -> str:
        read(select(func.pg_sleep(0.002)), {})
        return (
            "transaction"
            if read(select(func.now() != func.statement_timestamp()), {}).scalar()
            else "autocommit"
        )

    @read_only
    def write() -> str:
        read(sa.update(Account).values(name="Nowa Sp. z o.o."), {})
        return "written"

    app.add_url_rule("/_probe/first_read", "probe_first_read", first_read)
    app.add_url_rule("/_probe/read_write", "probe_read_write", write)
    client = app.test_client()
    assert client.get("/_probe/first_read").text == "autocommit"
    with pytest.raises(WriteInReadOnlyView):
        client.get("/_probe/read_write")


def test_a_read_outside_a_read_only_view_sees_what_the_session_has_not_flushed(app):
    with app.test_request_context("/"):
        db.session.add(Account(name="Nie zapisana Sp. z o.o.", created_at=utcnow()))
        names = read(select(Account.name), {}).scalars().all()
        assert "Nie zapisana Sp. z o.o." in names  # db.session.execute: autoflushed
        db.session.rollback()


def test_an_anonymous_visitor_is_sent_to_log_in_without_a_database_connection(app):
    checkouts: list[object] = []

    def record(dbapi_connection, record, proxy) -> None:
        checkouts.append(dbapi_connection)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "checkout", record)
    try:
        for path in READ_ONLY_PAGES:
            response = app.test_client().get(path)
            assert response.status_code == 302 and "/login" in response.headers["Location"]
    finally:
        sa.event.remove(engine, "checkout", record)
    assert checkouts == []


def test_an_enclosing_app_context_keeps_its_session_usable(app, auth):
    """Requests made inside an app context share its session (as some tests do): a
    read-only view leaves a transaction in progress alone, and hands the session back
    able to write."""
    assert auth.signup("anna@firma.example.com").status_code == 302
    with app.app_context():
        db.session.add(Account(name="Pierwsza Sp. z o.o.", created_at=utcnow()))
        db.session.flush()
        assert auth.client.get("/package").status_code == 200
        db.session.commit()

        assert auth.client.get("/invoices").status_code == 200
        db.session.add(Account(name="Druga Sp. z o.o.", created_at=utcnow()))
        db.session.commit()

        assert db.session.scalar(select(func.count()).select_from(Account)) == 3
