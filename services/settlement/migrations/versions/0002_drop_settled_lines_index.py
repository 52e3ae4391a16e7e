"""fee lines: drop the index on settlement_id

Settling marks every line of the settlement, so that index cost an entry per line settled, and
it held every unsettled line under NULL: with stale statistics PostgreSQL chose it for "this
visit's unsettled lines" and read the NULL entries of every visit (4 ms a query at 100 000
lines). Its one use, the lines of a cancelled settlement, now goes by (visit_id, settlement_id),
which the primary key (visit_id, line_no) serves.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("fee_lines", schema=None) as batch_op:
        batch_op.drop_index("ix_fee_lines_settlement")


def downgrade() -> None:
    with op.batch_alter_table("fee_lines", schema=None) as batch_op:
        batch_op.create_index("ix_fee_lines_settlement", ["settlement_id"], unique=False)
