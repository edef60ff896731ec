"""billing contacts: up to 3 more addresses that get the invoice e-mails

Revision ID: 0010_billing_contacts
Revises: 0009_email_confirmation
Create Date: 2026-12-04 15:15:00

A JSON list on billing_info rather than a table of its own: the addresses are at most three,
always read and saved with the rest of the billing information (the e-mail of an invoice
loads that row already, so it costs no statement more), recorded in its change history as
one value, and never looked up by address.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0010_billing_contacts"
down_revision = "0009_email_confirmation"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("billing_info", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("billing_contacts", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )


def downgrade():
    with op.batch_alter_table("billing_info", schema=None) as batch_op:
        batch_op.drop_column("billing_contacts")
