"""invoices issued in two steps: an index on those whose documents are not stored yet

Revision ID: 0007_invoice_unrendered
Revises: 0006_support_audit
Create Date: 2026-11-26 14:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0007_invoice_unrendered"
down_revision = "0006_support_audit"
branch_labels = None
depends_on = None

UNRENDERED = sa.text("length(xml) = 0")


def upgrade():
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.create_index(
            "ix_invoice_unrendered",
            ["id"],
            unique=False,
            postgresql_where=UNRENDERED,
            sqlite_where=UNRENDERED,
        )


def downgrade():
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_invoice_unrendered", postgresql_where=UNRENDERED, sqlite_where=UNRENDERED
        )
