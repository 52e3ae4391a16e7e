"""manual reimbursement flag and insured region index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 18:44:01.245374
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("filings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("manual_reimbursement", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_index("ix_filings_insured_region", ["insured_region"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("filings", schema=None) as batch_op:
        batch_op.drop_index("ix_filings_insured_region")
        batch_op.drop_column("manual_reimbursement")
