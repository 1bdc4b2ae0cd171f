"""sales plans: a salesperson's target per month (amount of won deals in a currency, their number), a core
table the plan-vs-fact report reads

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-03 13:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "crm_sales_plan",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("manager_id", sa.Integer(), nullable=True),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("amount", sa.Numeric(18, 2), nullable=True),
        sa.Column("currency", sa.String(length=16), nullable=True),
        sa.Column("deals_count", sa.Integer(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("row_version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["manager_id"], ["ab_user.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["owner_id"], ["ab_user.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_crm_sales_plan_manager_id", "crm_sales_plan", ["manager_id"])
    op.create_index("ix_crm_sales_plan_month", "crm_sales_plan", ["month"])
    op.create_index("ix_crm_sales_plan_owner_id", "crm_sales_plan", ["owner_id"])


def downgrade():
    op.drop_table("crm_sales_plan")
