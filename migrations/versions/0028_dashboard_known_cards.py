"""a dashboard layout remembers the standard cards there were when its user last changed it, so a standard
card added later joins it (one the user unpinned stays unpinned)

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-03 15:40:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

#: The standard cards of every layout stored before this revision.
STANDARD_CARDS = [
    "plan_fact",
    "std:funnel",
    "std:forecast",
    "std:receivables_managers",
    "std:activity",
    "std:complaints",
    "std:open_tasks",
    "std:overdue_tasks",
]


def upgrade():
    op.add_column("tabula_dashboard_layout", sa.Column("known", sa.JSON(), nullable=True))
    layouts = sa.table("tabula_dashboard_layout", sa.column("known", sa.JSON()))
    op.execute(layouts.update().values(known=STANDARD_CARDS))


def downgrade():
    with op.batch_alter_table("tabula_dashboard_layout") as batch:
        batch.drop_column("known")
