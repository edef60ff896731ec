"""e-mail confirmation: a sign-up's user logs in once the address is proved

Revision ID: 0009_email_confirmation
Revises: 0008_sessions_passwords
Create Date: 2026-12-04 12:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0009_email_confirmation"
down_revision = "0008_sessions_passwords"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email_confirmed_at", sa.DateTime(), nullable=True))
    # The users who exist already signed up under the old rules: they stay able to log in.
    op.execute("UPDATE user_account SET email_confirmed_at = created_at")


def downgrade():
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.drop_column("email_confirmed_at")
