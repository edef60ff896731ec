"""Migration 0010_billing_contacts: existing billing information gets no contacts, and the
downgrade takes the column away again (on a SQLite database of the test's own)."""

from __future__ import annotations

import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from portal import create_app
from portal.infra.extensions import db
from tests.conftest import base_config

BEFORE = "0009_email_confirmation"


def columns() -> set[str]:
    return {c["name"] for c in sa.inspect(db.engine).get_columns("billing_info")}


def test_upgrade_gives_existing_rows_no_contacts_and_downgrade_removes_them(tmp_path):
    app = create_app(base_config(f"sqlite:///{tmp_path / 'm.sqlite3'}"))
    with app.app_context():
        upgrade(revision=BEFORE)
        with db.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO account (id, name, timezone, created_at) "
                    "VALUES (1, 'Acme', 'Europe/Warsaw', '2026-01-01')"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO billing_info (account_id, company_name, "
                    "invoice_email, updated_at) VALUES (1, 'Acme', 'a@acme.pl', "
                    "'2026-01-01')"
                )
            )
        assert "billing_contacts" not in columns()

        upgrade(revision="0010_billing_contacts")
        with db.engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT billing_contacts FROM billing_info")).scalar()
        assert stored == "[]"

        downgrade(revision=BEFORE)
        assert "billing_contacts" not in columns()
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT invoice_email FROM billing_info")).scalar() == (
                "a@acme.pl"
            )
        db.engine.dispose()
