"""policy_versions: every policy and catalogue version in force, as the text of its file

A settlement names the exact versions it used (label@content-hash); keeping their text here
lets RecomputeSettlement find them after the files changed or the service restarted.

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
    op.create_table(
        "policy_versions",
        sa.Column("version", sa.String(120), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source_text", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("policy_versions")
