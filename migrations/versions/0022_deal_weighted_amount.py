"""a deal's weighted amount (amount × probability / 100): kept by the write path, counted by the forecast

Existing deals get it from their amount and probability, rounded to the cent half up as the write path does.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-03 12:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("crm_deal", sa.Column("weighted_amount", sa.Numeric(18, 2), nullable=True))
    # ROUND of a NUMERIC rounds half away from zero on PostgreSQL; SQLite's ROUND of a REAL does the same.
    op.execute(
        "UPDATE crm_deal SET weighted_amount = ROUND(amount * probability / 100, 2) "
        "WHERE amount IS NOT NULL AND probability IS NOT NULL"
    )


def downgrade():
    with op.batch_alter_table("crm_deal") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("weighted_amount")
