"""e-invoice submissions: an issued document's way through KSeF (or another country's system)

Revision ID: 0013_einvoice_submissions
Revises: 0009_email_confirmation
Create Date: 2026-12-04 15:05:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0013_einvoice_submissions"
down_revision = "0012_renewal_off_reasons"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "einvoice_submission",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("offline", sa.Boolean(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("payload_hash", sa.String(length=64), nullable=True),
        sa.Column("reference", sa.String(length=100), nullable=True),
        sa.Column("national_number", sa.String(length=64), nullable=True),
        sa.Column("assigned_at", sa.DateTime(), nullable=True),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("error_message", sa.String(length=500), nullable=True),
        sa.Column("receipt", sa.LargeBinary(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_try_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "state IN ('pending', 'offline', 'sent', 'accepted', 'rejected', 'outside')",
            name=op.f("ck_einvoice_submission_state_known"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_einvoice_submission_attempts_not_negative")),
        sa.CheckConstraint(
            "state <> 'accepted' OR (national_number IS NOT NULL AND assigned_at IS NOT NULL)",
            name=op.f("ck_einvoice_submission_accepted_has_number"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoice.id"], name=op.f("fk_einvoice_submission_invoice_id_invoice")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_einvoice_submission")),
        sa.UniqueConstraint("invoice_id", name=op.f("uq_einvoice_submission_invoice_id")),
        sa.UniqueConstraint("national_number", name=op.f("uq_einvoice_submission_national_number")),
        sa.UniqueConstraint("public_id", name=op.f("uq_einvoice_submission_public_id")),
    )
    op.create_index(
        "ix_einvoice_submission_due", "einvoice_submission", ["state", "next_try_at"], unique=False
    )


def downgrade():
    op.drop_index("ix_einvoice_submission_due", table_name="einvoice_submission")
    op.drop_table("einvoice_submission")
