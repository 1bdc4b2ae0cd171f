"""history: one row per record change (its fields inside as JSON) instead of one line per value

Every existing line is kept: the lines of one record, change set and action become one row whose
``changes`` lists ``[field_id, old, new]`` in the lines' order (the record's own line gives ``note``); the
row takes the id of its first line, so rows keep the order the lines had. The downgrade splits the rows
back into lines (numbered anew, in the same order).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:00:00.000000

"""

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLE = "tabula_record_change"
OLD = "tabula_record_change_0005"
BATCH = 5_000
INDEXES = (
    ("ix_tabula_record_change_record", ["entity_id", "record_id", "id"]),
    ("ix_tabula_record_change_at", ["at"]),
    ("ix_tabula_record_change_user", ["user_id", "at"]),
)


def _common() -> list[sa.Column]:
    return [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("changeset", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
    ]


def _create(extra: list[sa.Column]) -> sa.Table:
    """The history table with the columns of one layout, and its indexes (created after the copy)."""
    return op.create_table(
        TABLE,
        *_common(),
        *extra,
        sa.ForeignKeyConstraint(["entity_id"], ["tabula_entity.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["ab_user.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )


def _row_layout() -> list[sa.Column]:
    return [sa.Column("changes", sa.JSON(none_as_null=True)), sa.Column("note", sa.JSON(none_as_null=True))]


def _line_layout() -> list[sa.Column]:
    return [
        sa.Column("field_id", sa.Integer(), nullable=True),
        sa.Column("old_value", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("new_value", sa.JSON(none_as_null=True), nullable=True),
    ]


def _scan(bind: Any, table: sa.Table, order: list[str]) -> Iterator[Any]:
    """Every row of ``table`` in ``order`` (unique), by keyset pages: no driver holds the whole table."""
    columns = [table.c[name] for name in order]
    last: tuple | None = None
    while True:
        query = sa.select(table).order_by(*columns).limit(BATCH)
        if last is not None:
            query = query.where(sa.tuple_(*columns) > sa.tuple_(*last))
        rows = bind.execute(query).all()
        if not rows:
            return
        yield from rows
        last = tuple(getattr(rows[-1], name) for name in order)


def _prepare() -> Any:
    """Moves the current table aside (its indexes go: their names are needed again)."""
    bind = op.get_bind()
    for name, _columns in INDEXES:
        op.drop_index(name, table_name=TABLE)
    op.rename_table(TABLE, OLD)
    return bind


def _finish(bind: Any) -> None:
    op.drop_table(OLD)
    for name, columns in INDEXES:
        op.create_index(name, TABLE, columns, unique=False)
    if bind.dialect.name == "postgresql":
        bind.execute(
            sa.text(
                "SELECT setval(pg_get_serial_sequence('tabula_record_change', 'id'),"
                " (SELECT coalesce(max(id), 0) + 1 FROM tabula_record_change), false)"
            )
        )


def upgrade():
    bind = _prepare()
    old = sa.Table(OLD, sa.MetaData(), *[sa.Column(c.name, c.type) for c in _common()], *_line_layout())
    new = _create(_row_layout())
    pending: list[dict[str, Any]] = []
    record: tuple | None = None
    groups: dict[tuple[str, str], dict[str, Any]] = {}

    def close() -> None:
        for row in sorted(groups.values(), key=lambda r: r["id"]):
            del row["_head"]
            row["changes"] = row["changes"] or None
            pending.append(row)
        groups.clear()
        if len(pending) >= BATCH:
            bind.execute(new.insert(), pending)
            pending.clear()

    for line in _scan(bind, old, ["entity_id", "record_id", "id"]):
        if (line.entity_id, line.record_id) != record:
            close()
            record = (line.entity_id, line.record_id)
        key = (line.changeset, line.action)
        row = groups.get(key)
        if row is None or (line.field_id is None and row["_head"]):
            if row is not None:  # a second line of the record's own: a row of its own
                groups[(line.changeset, f"{line.action}#{line.id}")] = row
            row = groups[key] = {
                "id": line.id, "changeset": line.changeset, "at": line.at, "user_id": line.user_id,
                "source": line.source, "entity_id": line.entity_id, "record_id": line.record_id,
                "action": line.action, "changes": [], "note": None, "_head": False,
            }  # fmt: skip
        if line.field_id is None:
            row["_head"] = True
            row["note"] = line.new_value
        else:
            row["changes"].append([line.field_id, line.old_value, line.new_value])
    close()
    if pending:
        bind.execute(new.insert(), pending)
    _finish(bind)


def downgrade():
    bind = _prepare()
    old = sa.Table(OLD, sa.MetaData(), *[sa.Column(c.name, c.type) for c in _common()], *_row_layout())
    new = _create(_line_layout())
    pending: list[dict[str, Any]] = []
    next_id = 0
    for row in _scan(bind, old, ["id"]):
        common = {
            "changeset": row.changeset, "at": row.at, "user_id": row.user_id, "source": row.source,
            "entity_id": row.entity_id, "record_id": row.record_id, "action": row.action,
        }  # fmt: skip
        lines = [] if row.action == "update" else [(None, None, row.note)]
        lines.extend(tuple(change) for change in row.changes or ())
        for field_id, old_value, new_value in lines:
            next_id += 1
            pending.append(
                {
                    **common,
                    "id": next_id,
                    "field_id": field_id,
                    "old_value": old_value,
                    "new_value": new_value,
                }
            )
        if len(pending) >= BATCH:
            bind.execute(new.insert(), pending)
            pending.clear()
    if pending:
        bind.execute(new.insert(), pending)
    _finish(bind)
