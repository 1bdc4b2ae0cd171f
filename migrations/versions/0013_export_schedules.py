"""export schedules: a saved view exported on a calendar and e-mailed; one run per slot; recipients of a file

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-02 18:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("tabula_export") as batch:
        batch.add_column(sa.Column("shared_with", sa.JSON(), nullable=False, server_default="[]"))
    op.create_table(
        "tabula_export_schedule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("view_id", sa.Integer(), nullable=False),
        sa.Column("file_format", sa.String(length=8), nullable=False),
        sa.Column("frequency", sa.String(length=10), nullable=False),
        sa.Column("weekdays", sa.JSON(), nullable=False),
        sa.Column("month_day", sa.Integer(), nullable=True),
        sa.Column("at_time", sa.String(length=5), nullable=False),
        sa.Column("recipient_ids", sa.JSON(), nullable=False),
        sa.Column("to_owner", sa.Boolean(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("stopped_reason", sa.Text(), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["ab_user.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["view_id"], ["tabula_saved_view.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tabula_export_schedule_owner_id", "tabula_export_schedule", ["owner_id"])
    op.create_index("ix_tabula_export_schedule_view_id", "tabula_export_schedule", ["view_id"])
    op.create_index("ix_tabula_export_schedule_next_run_at", "tabula_export_schedule", ["next_run_at"])
    op.create_table(
        "tabula_export_schedule_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=False),
        sa.Column("slot_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("export_id", sa.Integer(), nullable=True),
        sa.Column("job_run_id", sa.Integer(), nullable=True),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["schedule_id"], ["tabula_export_schedule.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["export_id"], ["tabula_export.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["job_run_id"], ["tabula_job_run.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("schedule_id", "slot_at", name="uq_tabula_export_schedule_run_slot"),
    )
    op.create_index(
        "ix_tabula_export_schedule_run_schedule_id", "tabula_export_schedule_run", ["schedule_id"]
    )


def downgrade():
    op.drop_index("ix_tabula_export_schedule_run_schedule_id", table_name="tabula_export_schedule_run")
    op.drop_table("tabula_export_schedule_run")
    op.drop_index("ix_tabula_export_schedule_next_run_at", table_name="tabula_export_schedule")
    op.drop_index("ix_tabula_export_schedule_view_id", table_name="tabula_export_schedule")
    op.drop_index("ix_tabula_export_schedule_owner_id", table_name="tabula_export_schedule")
    op.drop_table("tabula_export_schedule")
    with op.batch_alter_table("tabula_export") as batch:
        batch.drop_column("shared_with")
