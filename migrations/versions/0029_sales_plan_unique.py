"""one live sales plan per salesperson, month and currency, held by a unique index (the write path refused
twins, but two saves at the same moment could both pass its check)

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-03 15:45:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade():
    # Twins that slipped in that way: all but the first go to the recycle bin, where they stay to be seen.
    op.execute(
        "UPDATE crm_sales_plan SET deleted_at = CURRENT_TIMESTAMP WHERE deleted_at IS NULL AND EXISTS ("
        "SELECT 1 FROM crm_sales_plan earlier WHERE earlier.deleted_at IS NULL "
        "AND earlier.id < crm_sales_plan.id AND earlier.manager_id = crm_sales_plan.manager_id "
        "AND earlier.month = crm_sales_plan.month AND earlier.currency = crm_sales_plan.currency)"
    )
    op.create_index(
        "uq_crm_sales_plan_month",
        "crm_sales_plan",
        ["manager_id", "month", "currency"],
        unique=True,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    )


def downgrade():
    op.drop_index("uq_crm_sales_plan_month", table_name="crm_sales_plan")
