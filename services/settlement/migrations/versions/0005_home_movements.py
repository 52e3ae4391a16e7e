"""home_movements: the insured place's own spending, applied to the person-year totals

Each movement the insured bureau reports (HomeMovementService.ReportHomeMovements) is kept with
the bureau's id as key, so a movement is applied at most once however often it is reported.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "home_movements",
        sa.Column("insured_region", sa.String(6), primary_key=True),
        sa.Column("movement_id", sa.String(64), primary_key=True),
        sa.Column("person_no", sa.String(40), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("delta", sa.Text(), nullable=False),
        sa.Column("account_delta_fen", sa.BigInteger(), nullable=False),
        sa.Column("occurred_on", sa.Date(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_home_movements_person_year", "home_movements", ["person_no", "year"])


def downgrade() -> None:
    op.drop_index("ix_home_movements_person_year", table_name="home_movements")
    op.drop_table("home_movements")
