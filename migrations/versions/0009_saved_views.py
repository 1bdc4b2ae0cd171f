"""saved views: a table's grid state under a name, personal or shared with roles, one default per table

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 14:20:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "tabula_saved_view",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["entity_id"], ["tabula_entity.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["owner_id"], ["ab_user.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tabula_saved_view_entity_id", "tabula_saved_view", ["entity_id"])
    op.create_index("ix_tabula_saved_view_owner_id", "tabula_saved_view", ["owner_id"])
    op.create_table(
        "tabula_saved_view_role",
        sa.Column("view_id", sa.Integer(), nullable=False),
        sa.Column("role_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["view_id"], ["tabula_saved_view.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["role_id"], ["ab_role.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("view_id", "role_id"),
    )
    op.create_index("ix_tabula_saved_view_role_role_id", "tabula_saved_view_role", ["role_id"])


def downgrade():
    op.drop_index("ix_tabula_saved_view_role_role_id", table_name="tabula_saved_view_role")
    op.drop_table("tabula_saved_view_role")
    op.drop_index("ix_tabula_saved_view_owner_id", table_name="tabula_saved_view")
    op.drop_index("ix_tabula_saved_view_entity_id", table_name="tabula_saved_view")
    op.drop_table("tabula_saved_view")
