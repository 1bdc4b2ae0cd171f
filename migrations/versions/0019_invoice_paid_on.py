"""an invoice's payment day (paid_on): set by the write path when the invoice becomes paid

Invoices paid before this revision have no payment day (it was never recorded); it stays empty for them.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02 23:35:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("crm_invoice", sa.Column("paid_on", sa.Date(), nullable=True))
    op.create_index("ix_crm_invoice_paid_on", "crm_invoice", ["paid_on"])


def downgrade():
    op.drop_index("ix_crm_invoice_paid_on", table_name="crm_invoice")
    with op.batch_alter_table("crm_invoice") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("paid_on")
