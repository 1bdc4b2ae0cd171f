"""field conversions: a type change run as a background job (progress, cancel, outcome); a field's
"converting" state

Revision ID: 0018
Revises: 0014
Create Date: 2026-12-02 22:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("tabula_field") as batch:
        batch.add_column(sa.Column("converting_to", sa.String(length=30), nullable=True))
    op.create_table(
        "tabula_field_conversion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("field_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("job_run_id", sa.Integer(), nullable=True),
        sa.Column("from_type", sa.String(length=30), nullable=False),
        sa.Column("to_type", sa.String(length=30), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("rows_done", sa.Integer(), nullable=False),
        sa.Column("rows_total", sa.Integer(), nullable=True),
        sa.Column("converted", sa.Integer(), nullable=True),
        sa.Column("offenders", sa.JSON(), nullable=False),
        sa.Column("offenders_total", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["field_id"], ["tabula_field.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["ab_user.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["job_run_id"], ["tabula_job_run.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tabula_field_conversion_field_id", "tabula_field_conversion", ["field_id"])


def downgrade():
    op.drop_index("ix_tabula_field_conversion_field_id", table_name="tabula_field_conversion")
    op.drop_table("tabula_field_conversion")
    with op.batch_alter_table("tabula_field") as batch:
        batch.drop_column("converting_to")
