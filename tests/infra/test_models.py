"""The schema: made by migrations, equal to the models, guarded by CHECK constraints."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import DataError, IntegrityError

from portal.infra.extensions import db
from portal.infra.models import Account, RenewalOff, Subscription, User, utcnow
from portal.rules import accounts


def test_migrations_match_the_models(app):
    with app.app_context(), db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == [], "models changed without a migration: run `flask db migrate`"


@pytest.fixture
def subscription_id(app, catalogue):
    with app.app_context():
        user = accounts.register_account(
            catalogue=catalogue,
            company="Acme",
            email="a@example.com",
            password="x" * 12,
            language="pl",
            now=utcnow(),
        )
        return user.account.subscription.id


@pytest.mark.parametrize(
    "values",
    [
        {"credit_minor": -1, "currency": "PLN"},
        {"credit_minor": 100},  # money without a currency
        {"currency": "pln"},
        {"currency": "PLNX"},
        {"agents": 0},
        {"agents": 201},
        {"conversations": -100},
        {"package": "gold"},
        {"period": "week"},
        {"status": "happy"},
        {"package": "standard"},  # paid without currency and period dates
        {
            "package": "standard",
            "currency": "PLN",
            "period_start": dt.date(2026, 2, 1),
            "period_end": dt.date(2026, 2, 1),
        },
    ],
    ids=lambda v: ",".join(f"{k}={v[k]}" for k in v),
)
def test_check_constraints_refuse_nonsense(app, subscription_id, values):
    with app.app_context():
        # PostgreSQL refuses an over-long code as DataError before the CHECK runs.
        with pytest.raises((IntegrityError, DataError)):
            with db.engine.begin() as conn:
                conn.execute(
                    sa.update(Subscription.__table__)
                    .where(Subscription.__table__.c.id == subscription_id)
                    .values(**values)
                )


def test_a_customer_needs_an_account_and_a_lowercase_email(app):
    with app.app_context():
        for values in [
            {"email": "x@example.com", "password_hash": "h", "role": "customer"},
            {"email": "X@example.com", "password_hash": "h", "role": "admin"},
        ]:
            with pytest.raises(IntegrityError), db.engine.begin() as conn:
                conn.execute(
                    sa.insert(User.__table__).values(
                        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), **values
                    )
                )


@pytest.mark.postgres
def test_concurrent_signups_with_one_email_make_one_account(app, catalogue):
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def sign_up(i: int) -> None:
        with app.app_context():
            barrier.wait()
            try:
                accounts.register_account(
                    catalogue=catalogue,
                    company=f"Company {i}",
                    email="race@example.com",
                    password="x" * 12,
                    language="pl",
                    now=utcnow(),
                )
                outcomes.append("created")
            except accounts.EmailTaken:
                outcomes.append("taken")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=sign_up, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["created"] + ["taken"] * 7
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Account)) == 1


def test_the_renewal_off_migration_goes_down_and_up(app):
    from flask_migrate import downgrade, upgrade

    with app.app_context():
        try:
            downgrade(revision="0011_portal_sessions_webhooks")
            db.engine.dispose()
            assert "renewal_off" not in sa.inspect(db.engine).get_table_names()
        finally:
            upgrade()
            db.engine.dispose()
        assert "renewal_off" in sa.inspect(db.engine).get_table_names()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        assert diff == []


@pytest.mark.parametrize(
    "values", [{"reason": "bored"}, {"reason": "other", "detail": "x" * 501}], ids=str
)
def test_a_renewal_off_answer_is_a_known_reason_and_short(app, subscription_id, values):
    with app.app_context():
        account_id = db.session.get(Subscription, subscription_id).account_id
        db.session.add(RenewalOff(account_id=account_id, **values))
        with pytest.raises((IntegrityError, DataError)):
            db.session.commit()
        db.session.rollback()


def test_the_provenance_migration_goes_down_and_up_again(app):
    """0014_plugin_provenance (issue 24, point 5): its columns go and come back, and a VIES
    check made before it is credited to VIES and its plugin."""
    from flask_migrate import downgrade, upgrade

    def columns(table: str) -> set[str]:
        return {c["name"] for c in sa.inspect(db.engine).get_columns(table)}

    with app.app_context():
        downgrade(revision="0013_einvoice_submissions")
        db.engine.dispose()
        assert "rate_plugin" not in columns("invoice")
        assert {"plugin", "source_registry"}.isdisjoint(columns("vat_check"))
        account_id = accounts.register_account(
            catalogue=app.extensions["pakiet.catalogue"],
            company="Acme",
            email="a@example.com",
            password="x" * 12,
            language="pl",
            now=utcnow(),
        ).account_id
        with db.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO vat_check (account_id, country, number, status, validator,"
                    " checked_at) VALUES (:a, 'DE', '123456789', 'valid', 'vies', :t)"
                ),
                {"a": account_id, "t": utcnow()},
            )
        db.session.remove()
        upgrade()
        db.engine.dispose()
        assert "rate_plugin" in columns("invoice")
        with db.engine.connect() as conn:
            row = conn.execute(sa.text("SELECT plugin, source_registry FROM vat_check")).one()
        assert tuple(row) == ("vies", "VIES")


def test_the_einvoice_submissions_migration_goes_down_and_up(app):
    """0013 (issue 23): the submissions table goes with a downgrade and comes back."""
    from flask_migrate import downgrade, upgrade

    with app.app_context():
        downgrade(revision="0012_renewal_off_reasons")
        assert "einvoice_submission" not in sa.inspect(db.engine).get_table_names()
        upgrade()
        assert "einvoice_submission" in sa.inspect(db.engine).get_table_names()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        assert diff == []


def test_the_invoice_list_indexes_migration_goes_down_and_up(app):
    """0015 (issue 26, point 2): the list's indexes go with a downgrade and come back."""
    from flask_migrate import downgrade, upgrade

    def indexes() -> set[str]:
        inspector = sa.inspect(db.engine)
        return {i["name"] for t in ("invoice", "payment") for i in inspector.get_indexes(t)}

    wanted = {"ix_invoice_account_newest", "ix_invoice_account_year", "ix_payment_account_settled"}
    with app.app_context():
        assert wanted <= indexes()
        downgrade(revision="0014_plugin_provenance")
        db.engine.dispose()
        assert wanted.isdisjoint(indexes())
        upgrade()
        db.engine.dispose()
        assert wanted <= indexes()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        assert diff == []


def test_the_package_page_index_migration_goes_down_and_up(app):
    """0016 (issue 26, point 2): My package's index on an account's orders by creation."""
    from flask_migrate import downgrade, upgrade

    def indexes() -> set[str]:
        return {i["name"] for i in sa.inspect(db.engine).get_indexes("checkout_order")}

    with app.app_context():
        assert "ix_checkout_order_account_created" in indexes()
        downgrade(revision="0015_invoice_list_indexes")
        db.engine.dispose()
        assert "ix_checkout_order_account_created" not in indexes()
        upgrade()
        db.engine.dispose()
        assert "ix_checkout_order_account_created" in indexes()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        assert diff == []
