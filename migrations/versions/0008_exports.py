"""exports: a view of a table written to a file by a job, kept for its owner until it expires; files
kept in the database when the file store is "database"

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 09:40:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

STATUS = sa.Enum("queued", "running", "ready", "failed", "cancelled", name="tabula_export_status")


def upgrade():
    op.create_table(
        "tabula_export",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("file_format", sa.String(length=8), nullable=False),
        sa.Column("view_state", sa.JSON(), nullable=False),
        sa.Column("source_url", sa.String(length=2000), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("status", STATUS, nullable=False),
        sa.Column("rows_written", sa.BigInteger(), nullable=False),
        sa.Column("rows_expected", sa.BigInteger(), nullable=True),
        sa.Column("rows_estimated", sa.Boolean(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("storage_key", sa.String(length=300), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("job_run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["ab_user.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["entity_id"], ["tabula_entity.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["job_run_id"], ["tabula_job_run.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tabula_export_owner_id", "tabula_export", ["owner_id"])
    op.create_index("ix_tabula_export_expires_at", "tabula_export", ["expires_at"])
    op.create_table(
        "tabula_file_chunk",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("key", "seq"),
    )


def downgrade():
    op.drop_table("tabula_file_chunk")
    op.drop_index("ix_tabula_export_expires_at", table_name="tabula_export")
    op.drop_index("ix_tabula_export_owner_id", table_name="tabula_export")
    op.drop_table("tabula_export")
    STATUS.drop(op.get_bind(), checkfirst=True)
