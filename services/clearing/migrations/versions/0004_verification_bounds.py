"""verification within bounds: one open per settlement, the amount in question, automatic
deduction at the deadline, deductions given back after a cancellation

Revision ID: 0004
Revises: 0003
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("questioned_fen", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("auto_deducted", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("reinstated_in_statement_id", sa.String(length=40), nullable=True))
        batch_op.create_index(
            "ux_verifications_open",
            ["settlement_id"],
            unique=True,
            sqlite_where=sa.text("answered_at IS NULL"),
            postgresql_where=sa.text("answered_at IS NULL"),
        )
    with op.batch_alter_table("cleared_settlements", schema=None) as batch_op:
        batch_op.create_index(
            "ix_cleared_cancels",
            ["cancels_settlement_id"],
            unique=False,
            sqlite_where=sa.text("cancels_settlement_id IS NOT NULL"),
            postgresql_where=sa.text("cancels_settlement_id IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("cleared_settlements", schema=None) as batch_op:
        batch_op.drop_index("ix_cleared_cancels")
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.drop_index("ux_verifications_open")
        batch_op.drop_column("reinstated_in_statement_id")
        batch_op.drop_column("auto_deducted")
        batch_op.drop_column("questioned_fen")
