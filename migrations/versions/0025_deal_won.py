"""a deal's "won" flag (at a won stage): kept by the write path with the stage, so reports (plan vs fact)
filter won deals by one condition however many pipelines there are

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-03 13:25:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("crm_deal", sa.Column("won", sa.Boolean(), nullable=True))
    op.create_index("ix_crm_deal_won", "crm_deal", ["won"])
    op.execute(
        "UPDATE crm_deal SET won = COALESCE("
        "(SELECT s.is_won FROM crm_stage s WHERE s.id = crm_deal.stage_id), false)"
    )


def downgrade():
    op.drop_index("ix_crm_deal_won", table_name="crm_deal")
    with op.batch_alter_table("crm_deal") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("won")
