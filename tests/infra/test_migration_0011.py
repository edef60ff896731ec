"""Migration 0011 (portal sessions, the webhook outbox) goes down and up again cleanly."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from portal import create_app
from portal.infra.extensions import db
from tests.conftest import base_config

TABLES = {"portal_session", "webhook_delivery"}


def test_0011_downgrades_and_upgrades(tmp_path: Path) -> None:
    app = create_app(base_config(f"sqlite:///{tmp_path / 'm.sqlite3'}"))
    with app.app_context():
        upgrade()
        assert TABLES <= set(sa.inspect(db.engine).get_table_names())
        downgrade(revision="0010_billing_contacts")
        assert not TABLES & set(sa.inspect(db.engine).get_table_names())
        upgrade()
        names = set(sa.inspect(db.engine).get_table_names())
        indexes = {i["name"] for i in sa.inspect(db.engine).get_indexes("webhook_delivery")}
        db.engine.dispose()
    assert TABLES <= names
    assert "ix_webhook_delivery_pending" in indexes
