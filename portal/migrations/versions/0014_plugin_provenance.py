"""plugin provenance: which plugin gave an invoice's exchange rate and a VAT check's answer,
and the registry that answered a VAT check

Revision ID: 0014_plugin_provenance
Revises: 0009_email_confirmation
Create Date: 2026-12-04 15:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0014_plugin_provenance"
down_revision = "0013_einvoice_submissions"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rate_plugin", sa.String(length=100), nullable=True))
    with op.batch_alter_table("vat_check", schema=None) as batch_op:
        batch_op.add_column(sa.Column("plugin", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("source_registry", sa.String(length=60), nullable=True))
    # Checks made before: every definite answer then came from VIES (the only registry).
    op.execute(
        "UPDATE vat_check SET source_registry = 'VIES', plugin = 'vies' WHERE validator = 'vies'"
    )


def downgrade():
    with op.batch_alter_table("vat_check", schema=None) as batch_op:
        batch_op.drop_column("source_registry")
        batch_op.drop_column("plugin")
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.drop_column("rate_plugin")
