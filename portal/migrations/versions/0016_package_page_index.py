"""package page index: an account's checkout orders by creation

Revision ID: 0016_package_page_index
Revises: 0015_invoice_list_indexes
Create Date: 2026-12-04 21:40:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = "0016_package_page_index"
down_revision = "0015_invoice_list_indexes"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("checkout_order", schema=None) as batch_op:
        batch_op.create_index(
            "ix_checkout_order_account_created", ["account_id", "created_at"], unique=False
        )


def downgrade():
    with op.batch_alter_table("checkout_order", schema=None) as batch_op:
        batch_op.drop_index("ix_checkout_order_account_created")
