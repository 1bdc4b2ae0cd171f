"""fields an admin marks "indexed" get a real index (built CONCURRENTLY on PostgreSQL by the field service)

Only the flag is added here: no field is indexed yet, so no index is built. The service creates and drops
the indexes (``ixa_<table>_<column>``) when an admin toggles the flag.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 09:30:00.000000

"""

import re

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def upgrade():
    with op.batch_alter_table("tabula_field", schema=None) as batch_op:
        batch_op.add_column(sa.Column("indexed", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    # The indexes admins asked for go with the flag (revision 0005's code knows nothing of them).
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT e.table_name, f.column_name FROM tabula_field f "
            "JOIN tabula_entity e ON e.id = f.entity_id WHERE f.indexed"
        )
    ).all()
    for table_name, column_name in rows:
        name = f"ixa_{table_name}_{column_name}"[:63]
        if not IDENTIFIER.match(name):  # generated names only ever reach SQL
            continue
        op.execute(sa.text(f'DROP INDEX IF EXISTS "{name}"'))
    with op.batch_alter_table("tabula_field", schema=None) as batch_op:
        batch_op.drop_column("indexed")
