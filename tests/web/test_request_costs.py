"""What every signed-in request pays (issue 26): the user in one narrow statement, one
rollback for a read-only view, the rate limiter only where a view is limited, the same
statements for My package and the summary whatever the number of accounts.

Counts and statements, not timings: the timings are ``make bench``'s job.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import request
from werkzeug.security import generate_password_hash

from portal.infra.extensions import db, limiter
from portal.infra.models import Account, User, utcnow
from tests.conftest import PASSWORD
from tests.web.test_sql_per_page import TODAY, counting, make_account, page_statements


@pytest.fixture
def one_account(app, monkeypatch) -> None:
    monkeypatch.setattr("portal.web.checkout.today", lambda: TODAY)
    with app.app_context():
        make_account("only", 3, generate_password_hash(PASSWORD), 1)
        db.session.commit()


def add_accounts(app, count: int) -> None:
    """``count`` more accounts with a user each, in bulk."""
    now = utcnow()
    with app.app_context():
        first = (db.session.scalar(sa.select(sa.func.max(Account.id))) or 0) + 1
        ids = range(first, first + count)
        db.session.execute(
            sa.insert(Account), [{"id": i, "name": f"Firma {i}", "created_at": now} for i in ids]
        )
        db.session.execute(
            sa.insert(User),
            [
                {
                    "account_id": i,
                    "email": f"user{i}@firma.example.com",
                    "password_hash": "x",
                    "created_at": now,
                }
                for i in ids
            ],
        )
        db.session.commit()


def test_a_signed_in_page_loads_its_user_in_one_narrow_statement(app, one_account):
    pages = page_statements(app, app.test_client(), "only")
    for page, statements in pages.items():
        user = statements[0]
        assert "FROM user_account" in user, page
        # Only what the session checks and the pages need: not the password hash.
        assert "password_hash" not in user and "email_confirmed_at" not in user, page
        assert sum("user_account" in s for s in statements) == 1, (page, statements)
    # A download needs the account's id only: no account or billing columns.
    assert "billing_info" not in pages["pdf"][0] and "a_name" not in pages["pdf"][0]
    assert len(pages["pdf"]) == 1  # the copy's facts ride with the user (along_with_user)
    # My package and the summary read the account with the user, in the same statement.
    assert len(pages["summary"]) == 1
    # My package shows the account, not its billing data: those columns are left out.
    assert "a_name" in pages["my package"][0]
    assert "billing_info" not in pages["my package"][0]
    assert "billing_info" in pages["summary"][0]  # the VAT depends on them
    assert not any("FROM account" in s for s in pages["my package"][1:])


def test_my_package_and_the_summary_run_the_same_statements_at_1_and_many_accounts(
    app, one_account
):
    alone = page_statements(app, app.test_client(), "only")
    add_accounts(app, 500)
    among_many = page_statements(app, app.test_client(), "only")
    for page in ("summary", "my package"):
        assert len(among_many[page]) == len(alone[page]), (page, alone[page], among_many[page])
    assert len(alone["summary"]) == 1
    # One round trip: the user, with the default method, the latest attempt and the refund
    # offer riding along (session_user.along_with_user), bound to the user's own account.
    assert len(alone["my package"]) == 1
    facts = alone["my package"][0]
    assert "FROM payment_method" in facts and "checkout_order" in facts
    assert "AS f ON u.account_id = f.account_id" in facts  # the facts joined on the account


def test_a_revoked_session_is_refused_by_the_narrow_loader(app, one_account, client):
    assert page_statements(app, client, "only")["my package"]
    assert client.get("/invoices/i-only-0.pdf").status_code == 200
    with app.app_context():
        db.session.execute(sa.update(User).values(session_version=User.session_version + 1))
        db.session.commit()
    # The download's statement carries the invoice's facts along: the session check is the same.
    for path in ("/package", "/invoices", "/invoices/i-only-0.pdf"):
        answer = client.get(path)
        assert answer.status_code == 302 and "/login" in answer.headers["Location"], path


def test_a_read_only_view_rolls_back_once(app, one_account):
    client = app.test_client()
    page_statements(app, client, "only")  # signed in
    with app.app_context():
        engine = db.engine
    rollbacks: list[str] = []

    def on_rollback(conn) -> None:
        rollbacks.append("connection")

    def on_reset(dbapi_connection, record, state=None) -> None:
        if state is None or not state.transaction_was_reset:
            rollbacks.append("pool")  # the pool rolls back again as it takes it back

    sa.event.listen(engine, "rollback", on_rollback)
    sa.event.listen(engine.pool, "reset", on_reset)
    try:
        for path in ("/package", "/invoices"):
            rollbacks.clear()
            assert client.get(path).status_code == 200
            assert rollbacks == ["connection"], (path, rollbacks)
    finally:
        sa.event.remove(engine, "rollback", on_rollback)
        sa.event.remove(engine.pool, "reset", on_reset)


def test_the_rate_limiter_checks_only_the_views_that_have_a_limit(app, client, auth, monkeypatch):
    manager = limiter.limit_manager
    checked: list[str | None] = []
    resolve = manager.resolve_limits

    def counting_resolve(app_, endpoint, *args, **kwargs):
        checked.append(endpoint)
        return resolve(app_, endpoint, *args, **kwargs)

    monkeypatch.setattr(manager, "resolve_limits", counting_resolve)
    for path in ("/package", "/invoices", "/package/edit", "/"):
        client.get(path)
    assert checked == []  # no limit on these views: nothing to check
    auth.login("nobody@example.com")  # limited (the limits themselves: test_sessions_passwords)
    assert "auth.login" in checked
    assert set(checked) == {"auth.login"}


def test_the_rate_limiters_hooks_after_the_view_run_only_where_it_checked(
    app, client, auth, monkeypatch
):
    """Its rate-limit headers and its request state: skipped where nothing was checked."""
    after: list[str | None] = []
    spy = lambda response: after.append(request.endpoint)  # noqa: E731
    # Called by the limiter's after-request hook (a name-mangled private method).
    monkeypatch.setattr(limiter, "_Limiter__check_conditional_deductions", spy, raising=False)
    for path in ("/package", "/invoices", "/package/edit", "/"):
        client.get(path)
    assert after == []
    auth.login("nobody@example.com")
    assert set(after) == {"auth.login"}  # its page and its form


def test_no_statement_is_counted_for_an_anonymous_visitor(app, client):
    with counting(app) as statements:
        assert client.get("/package").status_code == 302
    assert statements == []


def test_the_users_statements_stay_short_enough_to_be_kept_parsed(app):
    """psycopg parses a query's text again on every execution when it is longer than 4 KB
    (MAX_CACHED_STATEMENT_LENGTH); the user's statements run on every request, so each one,
    with whatever rides along with it, stays under that."""
    from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH
    from sqlalchemy.dialects import postgresql

    from portal.web import session_user

    statements = {"user": session_user.USER_ROW, "with account": session_user.USER_ROW_WITH_ACCOUNT}
    for endpoint, view in app.view_functions.items():
        along = getattr(view, session_user.ALONG, None)
        if along is not None:
            statements[endpoint] = along[0]
    statements = {name: query.statement for name, query in statements.items()}
    assert "account.package" in statements and "invoices.pdf" in statements
    for name, statement in statements.items():
        sql = str(statement.compile(dialect=postgresql.psycopg.dialect()))
        assert "POSTCOMPILE" not in sql, name  # rewritten at every execution
        assert len(sql.encode()) <= MAX_CACHED_STATEMENT_LENGTH, (name, len(sql))
