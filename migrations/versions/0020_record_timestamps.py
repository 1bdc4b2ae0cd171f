"""record timestamps: every record table gets updated_at (and run-time tables created_at), kept by the write
path; existing records get them from their history

A record's last change is the newest line of its history, its creation the oldest; a core record without
history keeps its created_at as its last change too. A record with no history at all (written before the
write path kept history, or loaded by hand) stays empty. The query layer offers both as the record columns
"Created" and "Updated".

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03 05:10:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

CORE_TABLES = (
    "crm_company", "crm_contact", "crm_lead", "crm_pipeline", "crm_stage", "crm_product", "crm_deal",
    "crm_deal_line", "crm_activity", "crm_task", "crm_invoice",
)  # fmt: skip


def _history(entity_id: int, table: str, which: str) -> str:
    # Generated names only (core table names above, t_<id> checked by ``check_identifier``).
    return (
        f"(SELECT {which}(h.at) FROM tabula_record_change h "  # noqa: S608
        f"WHERE h.entity_id = {int(entity_id)} AND h.record_id = {table}.id)"
    )


def _runtime_tables() -> list[tuple[int, str]]:
    from custom_fields.ddl import check_identifier

    bind = op.get_bind()
    rows = bind.execute(
        sa.text("SELECT id, table_name FROM tabula_entity WHERE is_system = :f"), {"f": False}
    )
    # Only tables that are there (a row whose table is gone has nothing to give columns to).
    inspector = sa.inspect(bind)
    return [(int(pk), check_identifier(name)) for pk, name in rows if inspector.has_table(name)]


def _entity_ids() -> dict[str, int]:
    rows = op.get_bind().execute(sa.text("SELECT table_name, id FROM tabula_entity"))
    return {name: int(entity_id) for name, entity_id in rows}


def upgrade():
    ids = _entity_ids()
    for table in CORE_TABLES:
        op.add_column(table, sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        if table in ids:
            last = _history(ids[table], table, "max")
            op.execute(f"UPDATE {table} SET updated_at = COALESCE({last}, created_at)")  # noqa: S608
        else:
            op.execute(f"UPDATE {table} SET updated_at = created_at")  # noqa: S608
    for entity_id, table in _runtime_tables():
        op.add_column(table, sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))
        op.add_column(table, sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        op.execute(
            f"UPDATE {table} SET created_at = {_history(entity_id, table, 'min')}, "  # noqa: S608
            f"updated_at = {_history(entity_id, table, 'max')}"
        )


def downgrade():
    for _entity_id, table in _runtime_tables():
        with op.batch_alter_table(table) as batch:  # SQLite drops a column by copying the table
            batch.drop_column("updated_at")
            batch.drop_column("created_at")
    for table in CORE_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("updated_at")
