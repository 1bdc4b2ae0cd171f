"""a company's last activity (the newest occurred_at of its live activities): kept by the write path, so
reports find customers nobody contacted in N days

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-03 12:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("crm_company", sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_crm_company_last_activity_at", "crm_company", ["last_activity_at"])
    op.execute(
        "UPDATE crm_company SET last_activity_at = (SELECT MAX(a.occurred_at) FROM crm_activity a "
        "WHERE a.company_id = crm_company.id AND a.deleted_at IS NULL)"
    )


def downgrade():
    op.drop_index("ix_crm_company_last_activity_at", table_name="crm_company")
    with op.batch_alter_table("crm_company") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("last_activity_at")
