"""the employer the insured place reports for a person (a change needs a new filing)

Revision ID: 0002
Revises: 0001
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("insured_persons", schema=None) as batch_op:
        batch_op.add_column(sa.Column("employer_name", sa.String(length=200), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("insured_persons", schema=None) as batch_op:
        batch_op.drop_column("employer_name")
