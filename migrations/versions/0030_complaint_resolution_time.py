"""when a complaint was resolved (or rejected) and the days it took, kept by the write path: time to
resolve in the complaints reports

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-03 15:55:00.000000

"""

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None


def _aware(moment):
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def upgrade():
    with op.batch_alter_table("crm_activity") as batch:
        batch.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("resolution_days", sa.Numeric(12, 1), nullable=True))
    # Complaints settled before: their last change is the best known day of it.
    activities = sa.table(
        "crm_activity",
        sa.column("id", sa.Integer()),
        sa.column("kind", sa.String()),
        sa.column("resolution", sa.String()),
        sa.column("occurred_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
        sa.column("resolved_at", sa.DateTime(timezone=True)),
        sa.column("resolution_days", sa.Numeric(12, 1)),
    )
    bind = op.get_bind()
    settled = bind.execute(
        sa.select(activities.c.id, activities.c.occurred_at, activities.c.updated_at).where(
            activities.c.kind == "complaint", activities.c.resolution.in_(("resolved", "rejected"))
        )
    ).all()
    for pk, occurred, updated in settled:
        days = None
        if occurred is not None and updated is not None:
            seconds = max((_aware(updated) - _aware(occurred)).total_seconds(), 0)
            days = (Decimal(seconds) / 86400).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        bind.execute(
            activities.update().where(activities.c.id == pk).values(resolved_at=updated, resolution_days=days)
        )


def downgrade():
    with op.batch_alter_table("crm_activity") as batch:
        batch.drop_column("resolution_days")
        batch.drop_column("resolved_at")
