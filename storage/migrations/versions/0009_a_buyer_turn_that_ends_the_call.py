"""a buyer turn that ends the call: the roleplay ends on the buyer's decision, not on matching a line

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 16:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("practice_turns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ends", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("practice_turns", schema=None) as batch_op:
        batch_op.drop_column("ends")
