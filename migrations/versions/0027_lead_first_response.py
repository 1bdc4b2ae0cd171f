"""activities link leads; a lead's first response (its first outbound activity) and the hours to it, kept
by the write path: the average first response time to a lead

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-03 15:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("crm_activity") as batch:  # SQLite adds a foreign key by copying the table
        batch.add_column(sa.Column("lead_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_crm_activity_lead_id", "crm_lead", ["lead_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_index("ix_crm_activity_lead_id", ["lead_id"])
    with op.batch_alter_table("crm_lead") as batch:
        batch.add_column(sa.Column("first_response_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("response_hours", sa.Numeric(12, 1), nullable=True))


def downgrade():
    with op.batch_alter_table("crm_lead") as batch:
        batch.drop_column("response_hours")
        batch.drop_column("first_response_at")
    with op.batch_alter_table("crm_activity") as batch:
        batch.drop_index("ix_crm_activity_lead_id")
        batch.drop_constraint("fk_crm_activity_lead_id", type_="foreignkey")
        batch.drop_column("lead_id")
