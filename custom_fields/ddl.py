"""Runtime DDL on real tables, inside the caller's transaction, with identifiers the system generated.

Every identifier passes ``check_identifier`` before it reaches SQL, and is quoted by the dialect. On
PostgreSQL a short ``lock_timeout`` keeps a schema change from queueing forever behind open transactions.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import Column, Index, Integer, MetaData, Table, text
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateColumn, CreateIndex, CreateTable, DropIndex
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

IndexKey = Callable[[ColumnElement], ColumnElement]
IDENTIFIER_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
LOCK_TIMEOUT = "3s"


def check_identifier(name: str) -> str:
    if not IDENTIFIER_RE.match(name):
        raise ValueError(f"refusing a database identifier that was not generated: {name!r}")
    return name


def table_name_for(entity_id: int) -> str:
    return check_identifier(f"t_{entity_id}")


def column_name_for(field_id: int, generation: int = 1) -> str:
    return check_identifier(f"f_{field_id}" if generation <= 1 else f"f_{field_id}_{generation}")


def index_name(table_name: str, column_name: str, unique: bool) -> str:
    return check_identifier(f"{'uq' if unique else 'ix'}_{table_name}_{column_name}"[:63])


def set_lock_timeout(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(check_identifier(name))


def create_table(conn: Connection, table_name: str) -> None:
    """A new table with its id and the write path's record columns (version, recycle-bin mark, owner)."""
    from sqlalchemy import ForeignKeyConstraint

    from models.records import record_columns

    name = check_identifier(table_name)
    metadata = MetaData()
    Table("ab_user", metadata, Column("id", Integer, primary_key=True))
    tbl = Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True),
        *record_columns(),
        ForeignKeyConstraint(["owner_id"], ["ab_user.id"], name=f"fk_{name}_owner_id", ondelete="SET NULL"),
    )
    conn.execute(CreateTable(tbl))
    conn.execute(CreateIndex(Index(f"ix_{name}_owner_id", tbl.c.owner_id)))


def add_column(
    conn: Connection, table_name: str, column_name: str, type_: TypeEngine, references: str | None = None
) -> None:
    """``ALTER TABLE ADD COLUMN`` of a NULL-able column: metadata-only on PostgreSQL, whatever the size."""
    col = Column(check_identifier(column_name), type_, nullable=True)
    Table(check_identifier(table_name), MetaData(), col)
    ddl = CreateColumn(col).compile(dialect=conn.dialect)
    sql = f"ALTER TABLE {_quote(conn, table_name)} ADD COLUMN {ddl}"
    if references:
        sql += f" REFERENCES {_quote(conn, references)} (id) ON DELETE SET NULL"
    conn.execute(text(sql))


def drop_column(conn: Connection, table_name: str, column_name: str) -> None:
    conn.execute(text(f"ALTER TABLE {_quote(conn, table_name)} DROP COLUMN {_quote(conn, column_name)}"))


def _index(table_name: str, column_name: str, unique: bool, key: IndexKey | None = None):  # noqa: ANN202
    col = Column(check_identifier(column_name), Integer)
    tbl = Table(check_identifier(table_name), MetaData(), col)
    expression = key(tbl.c[column_name]) if key is not None else tbl.c[column_name]
    return Index(index_name(table_name, column_name, unique), expression, unique=unique)


def create_index(
    conn: Connection, table_name: str, column_name: str, *, unique: bool, key: IndexKey | None = None
) -> None:
    """An index on the column, or on ``key(column)`` (a unique field's type says what counts as the same
    value, e.g. ``lower(column)`` for text)."""
    conn.execute(CreateIndex(_index(table_name, column_name, unique, key)))


def drop_index(conn: Connection, table_name: str, column_name: str, *, unique: bool) -> None:
    conn.execute(DropIndex(_index(table_name, column_name, unique), if_exists=True))


def has_column(conn: Connection, table_name: str, column_name: str) -> bool:
    from sqlalchemy import inspect

    return any(c["name"] == column_name for c in inspect(conn).get_columns(table_name))


def is_fixed_schema(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's ``include_object``: what the runtime created (``t_*`` tables, ``f_*`` columns and their
    indexes) is not part of the fixed schema that migrations manage."""
    if not reflected or compare_to is not None:
        return True
    if type_ == "table":
        return not (name or "").startswith("t_")
    if type_ == "column":
        return not (name or "").startswith("f_")
    if type_ == "index":
        return not re.match(r"^(ix|uq)_.+_f_\d+", name or "")
    return True
