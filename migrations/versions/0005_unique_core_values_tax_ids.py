"""unique core values get real unique indexes (case-insensitive: lower(...)); companies and leads get
"foreign"; their tax ids become the checked "tax_id" field type

Values that already repeat do not stop the upgrade: that index is skipped, the repeated values are logged
and written to the schema change log admins read (Tables → Change log), and ``tabula init`` creates the
index once the values are made unique (``custom_fields.core.ensure_unique_indexes``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 06:30:00.000000

"""

import json
import logging

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

#: (table, column, index): the core fields documented as unique, compared case-insensitively.
UNIQUE = (("crm_product", "sku", "uq_crm_product_sku"), ("crm_invoice", "number", "uq_crm_invoice_number"))
TAX_ID_TABLES = ("crm_company", "crm_lead")
SHOWN = 20


def _repeated(conn: sa.Connection, table: str, column: str) -> list[tuple[str, int]]:
    key = sa.func.lower(sa.column(column))
    query = (
        sa.select(key, sa.func.count())
        .select_from(sa.table(table))
        .where(sa.column(column).is_not(None))
        .group_by(key)
        .having(sa.func.count() > 1)
        .order_by(key)
        .limit(SHOWN + 1)
    )
    return [(value, count) for value, count in conn.execute(query)]


def _report(conn: sa.Connection, table: str, column: str, repeated: list[tuple[str, int]]) -> None:
    shown = ", ".join(f"{value} ({count})" for value, count in repeated[:SHOWN])
    more = " ..." if len(repeated) > SHOWN else ""
    summary = (
        f"Unique index on {table}.{column} not created: these values occur in more than one record "
        f"(letter case ignored, recycle bin included): {shown}{more}. Make them unique, then run "
        f"`tabula init` to create the index."
    )
    log.warning(summary)
    entity = conn.execute(sa.text("SELECT id FROM tabula_entity WHERE table_name = :t"), {"t": table}).scalar()
    version = conn.execute(sa.text("SELECT version FROM tabula_schema_state WHERE id = 1")).scalar() or 1
    conn.execute(
        sa.text(
            "INSERT INTO tabula_schema_change (at, entity_id, action, summary, version) "
            "VALUES (CURRENT_TIMESTAMP, :entity, 'unique index skipped', :summary, :version)"
        ),
        {"entity": entity, "summary": summary, "version": version},
    )


def upgrade():
    for table in TAX_ID_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("is_foreign", sa.Boolean(), nullable=True))

    conn = op.get_bind()
    for table, column, index in UNIQUE:
        repeated = _repeated(conn, table, column)
        if repeated:
            _report(conn, table, column, repeated)
        else:
            op.create_index(index, table, [sa.text(f"lower({column})")], unique=True)

    # Tax ids already recorded become the checked type (fresh databases get it from the core metadata).
    settings = json.dumps({"kind": "inn", "foreign_field": "is_foreign"})
    entities = conn.execute(
        sa.text("SELECT id FROM tabula_entity WHERE table_name IN ('crm_company', 'crm_lead')")
    ).scalars()
    for entity_id in list(entities):
        conn.execute(
            sa.text(
                "UPDATE tabula_field SET type = 'tax_id', settings = :settings "
                "WHERE entity_id = :entity AND name = 'tax_id' AND type = 'text'"
            ),
            {"settings": settings, "entity": entity_id},
        )
    conn.execute(sa.text("UPDATE tabula_schema_state SET version = version + 1 WHERE id = 1"))


def downgrade():
    conn = op.get_bind()
    conn.execute(
        sa.text(
            "UPDATE tabula_field SET type = 'text', settings = :settings WHERE type = 'tax_id' AND "
            "entity_id IN (SELECT id FROM tabula_entity WHERE table_name IN ('crm_company', 'crm_lead'))"
        ),
        {"settings": json.dumps({"max_length": 20})},
    )
    conn.execute(
        sa.text(
            "DELETE FROM tabula_field WHERE name = 'is_foreign' AND is_system = :yes AND "
            "entity_id IN (SELECT id FROM tabula_entity WHERE table_name IN ('crm_company', 'crm_lead'))"
        ),
        {"yes": True},
    )
    conn.execute(sa.text("UPDATE tabula_schema_state SET version = version + 1 WHERE id = 1"))
    for _table, _column, index in UNIQUE:
        op.execute(sa.text(f"DROP INDEX IF EXISTS {index}"))  # skipped while values repeated
    for table in TAX_ID_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("is_foreign")
