"""signal status, focus and budget

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 23:03:42.745841
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("signals", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False, server_default="open")
        )
        batch_op.add_column(sa.Column("nudge_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("wait_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.create_index(batch_op.f("ix_signals_nudge_id"), ["nudge_id"], unique=False)
        batch_op.create_foreign_key("fk_signals_nudge_id", "nudges", ["nudge_id"], ["id"])
    # Signals that already made a nudge say so.
    op.execute(
        "UPDATE signals SET status = 'nudged', nudge_id = (SELECT n.id FROM nudges n WHERE n.signal_id = signals.id) "
        "WHERE EXISTS (SELECT 1 FROM nudges n WHERE n.signal_id = signals.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("signals", schema=None) as batch_op:
        batch_op.drop_constraint("fk_signals_nudge_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_signals_nudge_id"))
        batch_op.drop_column("wait_reason")
        batch_op.drop_column("nudge_id")
        batch_op.drop_column("status")
