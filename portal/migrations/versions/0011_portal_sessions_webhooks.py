"""portal sessions for the chat product, and the outbox of its webhooks

Revision ID: 0011_portal_sessions_webhooks
Revises: 0009_email_confirmation
Create Date: 2026-12-04 15:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0011_portal_sessions_webhooks"
down_revision = "0010_billing_contacts"
branch_labels = None
depends_on = None

PENDING = sa.text("delivered_at IS NULL AND gave_up_at IS NULL")


def upgrade():
    op.create_table(
        "portal_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("session_version", sa.Integer(), nullable=False),
        sa.Column("page", sa.String(length=16), nullable=False),
        sa.Column("return_url", sa.String(length=2000), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_portal_session_account_id_account")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_portal_session_user_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_session")),
        sa.UniqueConstraint("public_id", name=op.f("uq_portal_session_public_id")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_portal_session_token_hash")),
    )
    with op.batch_alter_table("portal_session", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_portal_session_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.Column("gave_up_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_webhook_delivery_account_id_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_delivery")),
        sa.UniqueConstraint("event_id", "url", name=op.f("uq_webhook_delivery_event_id")),
    )
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_delivery_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            "ix_webhook_delivery_pending",
            ["next_attempt_at"],
            unique=False,
            postgresql_where=PENDING,
            sqlite_where=PENDING,
        )


def downgrade():
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_webhook_delivery_pending", postgresql_where=PENDING, sqlite_where=PENDING
        )
        batch_op.drop_index(batch_op.f("ix_webhook_delivery_account_id"))
    op.drop_table("webhook_delivery")
    with op.batch_alter_table("portal_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_portal_session_account_id"))
    op.drop_table("portal_session")
