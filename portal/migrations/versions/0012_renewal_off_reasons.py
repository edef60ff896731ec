"""why auto-renewal was switched off: the customers' optional answers, shown to staff

Revision ID: 0012_renewal_off_reasons
Revises: 0009_email_confirmation
Create Date: 2026-12-04 15:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0012_renewal_off_reasons"
down_revision = "0011_portal_sessions_webhooks"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "renewal_off",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "reason IN ('too_expensive', 'missing_features', 'other_product', 'temporary', 'other')",
            name=op.f("ck_renewal_off_reason_known"),
        ),
        sa.CheckConstraint(
            "detail IS NULL OR length(detail) <= 500", name=op.f("ck_renewal_off_detail_length")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_renewal_off_account_id_account")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_renewal_off_user_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_renewal_off")),
    )
    with op.batch_alter_table("renewal_off", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_renewal_off_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_renewal_off_created_at"), ["created_at"], unique=False)


def downgrade():
    with op.batch_alter_table("renewal_off", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_renewal_off_created_at"))
        batch_op.drop_index(batch_op.f("ix_renewal_off_account_id"))
    op.drop_table("renewal_off")
