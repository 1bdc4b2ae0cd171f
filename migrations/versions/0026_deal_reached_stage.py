"""a deal's furthest stage reached (kept by the write path: stage-to-stage conversion, and the stage a lost
deal was lost after) and why a deal was lost, as a choice (lost reasons as groups; the text stays as
details)

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-03 15:10:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("crm_deal") as batch:  # SQLite adds a foreign key by copying the table
        batch.add_column(sa.Column("reached_stage_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("lost_because", sa.String(16), nullable=True))
        batch.create_foreign_key(
            "fk_crm_deal_reached_stage_id", "crm_stage", ["reached_stage_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_index("ix_crm_deal_reached_stage_id", ["reached_stage_id"])
        batch.create_index("ix_crm_deal_lost_because", ["lost_because"])
    # Deals at an open or won stage have reached at least it; where a lost deal was before is not known.
    op.execute(
        "UPDATE crm_deal SET reached_stage_id = stage_id WHERE stage_id IN "
        "(SELECT s.id FROM crm_stage s WHERE s.is_lost IS NULL OR s.is_lost = false)"
    )
    # A reason written before is kept as the details of "Other".
    op.execute(
        "UPDATE crm_deal SET lost_because = 'other' WHERE lost_reason IS NOT NULL AND lost_reason <> ''"
    )


def downgrade():
    with op.batch_alter_table("crm_deal") as batch:
        batch.drop_index("ix_crm_deal_lost_because")
        batch.drop_index("ix_crm_deal_reached_stage_id")
        batch.drop_constraint("fk_crm_deal_reached_stage_id", type_="foreignkey")
        batch.drop_column("lost_because")
        batch.drop_column("reached_stage_id")
