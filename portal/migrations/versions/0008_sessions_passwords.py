"""sessions that can be revoked: a session version on each user

Revision ID: 0008_sessions_passwords
Revises: 0007_invoice_unrendered
Create Date: 2026-12-04 02:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0008_sessions_passwords"
down_revision = "0007_invoice_unrendered"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("session_version", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade():
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.drop_column("session_version")
