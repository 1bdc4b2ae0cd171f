"""saved reports (personal or shared with roles); export schedules may send a saved report

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 22:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "tabula_saved_report",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["entity_id"], ["tabula_entity.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["owner_id"], ["ab_user.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tabula_saved_report_entity_id", "tabula_saved_report", ["entity_id"])
    op.create_index("ix_tabula_saved_report_owner_id", "tabula_saved_report", ["owner_id"])
    op.create_table(
        "tabula_saved_report_role",
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("role_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["report_id"], ["tabula_saved_report.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["role_id"], ["ab_role.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("report_id", "role_id"),
    )
    op.create_index("ix_tabula_saved_report_role_role_id", "tabula_saved_report_role", ["role_id"])
    with op.batch_alter_table("tabula_export_schedule") as batch:
        batch.alter_column("view_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("report_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_tabula_export_schedule_report_id",
            "tabula_saved_report",
            ["report_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_index("ix_tabula_export_schedule_report_id", ["report_id"])


def downgrade():
    op.execute("DELETE FROM tabula_export_schedule WHERE view_id IS NULL")
    with op.batch_alter_table("tabula_export_schedule") as batch:
        batch.drop_index("ix_tabula_export_schedule_report_id")
        batch.drop_constraint("fk_tabula_export_schedule_report_id", type_="foreignkey")
        batch.drop_column("report_id")
        batch.alter_column("view_id", existing_type=sa.Integer(), nullable=False)
    op.drop_index("ix_tabula_saved_report_role_role_id", table_name="tabula_saved_report_role")
    op.drop_table("tabula_saved_report_role")
    op.drop_index("ix_tabula_saved_report_owner_id", table_name="tabula_saved_report")
    op.drop_index("ix_tabula_saved_report_entity_id", table_name="tabula_saved_report")
    op.drop_table("tabula_saved_report")
