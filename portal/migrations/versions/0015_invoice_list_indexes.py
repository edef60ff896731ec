"""invoice list indexes: an account's newest invoices, by year, and its settled payments

Revision ID: 0015_invoice_list_indexes
Revises: 0014_plugin_provenance
Create Date: 2026-12-04 19:20:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = "0015_invoice_list_indexes"
down_revision = "0014_plugin_provenance"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.create_index(
            "ix_payment_account_settled", ["account_id", "settled_at", "id"], unique=False
        )
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.create_index("ix_invoice_account_newest", ["account_id", "id"], unique=False)
        batch_op.create_index(
            "ix_invoice_account_year", ["account_id", "year", "id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.drop_index("ix_invoice_account_year")
        batch_op.drop_index("ix_invoice_account_newest")
    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_account_settled")
