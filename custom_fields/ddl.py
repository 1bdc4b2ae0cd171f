"""Runtime DDL on real tables, inside the caller's transaction, with identifiers the system generated.

Every identifier passes ``check_identifier`` before it reaches SQL, and is quoted by the dialect. On
PostgreSQL a short ``lock_timeout`` keeps a schema change from queueing forever behind open transactions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import suppress

from sqlalchemy import Column, Index, Integer, MetaData, Table, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateColumn, CreateIndex, CreateTable, DropIndex
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

IndexKey = Callable[[ColumnElement], ColumnElement]
IDENTIFIER_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
LOCK_TIMEOUT = "3s"
#: How long building an index CONCURRENTLY may wait for transactions already writing to the table (it
#: waits for them to end, and blocks nobody meanwhile).
INDEX_BUILD_LOCK_TIMEOUT = "60s"


class IndexBuildFailed(Exception):  # noqa: N818 (what the admin is told)
    """A concurrent index build that did not finish; what it left behind was dropped."""

    def __init__(self, reason: str, *, busy: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        #: The build waited too long for other transactions (a lock timeout), not a conflict in the data.
        self.busy = busy


def _build_failed(exc: DBAPIError) -> IndexBuildFailed:
    lines = str(exc.orig).strip().splitlines()
    busy = getattr(exc.orig, "sqlstate", None) == "55P03"  # lock_not_available: lock_timeout ran out
    return IndexBuildFailed(lines[0][:200] if lines else type(exc).__name__, busy=busy)


def check_identifier(name: str) -> str:
    if not IDENTIFIER_RE.match(name):
        raise ValueError(f"refusing a database identifier that was not generated: {name!r}")
    return name


def table_name_for(entity_id: int) -> str:
    return check_identifier(f"t_{entity_id}")


def column_name_for(field_id: int, generation: int = 1) -> str:
    return check_identifier(f"f_{field_id}" if generation <= 1 else f"f_{field_id}_{generation}")


def index_name(table_name: str, column_name: str, unique: bool) -> str:
    """The index a field has anyway: ``uq_`` for a unique field, ``ix_`` for a link or user."""
    return check_identifier(f"{'uq' if unique else 'ix'}_{table_name}_{column_name}"[:63])


def chosen_index_name(table_name: str, column_name: str) -> str:
    """The index an admin asked for ("Indexed"), named apart from those a field has anyway, so that each
    is created and dropped on its own (also on a core table's column, beside the model's own indexes)."""
    return check_identifier(f"ixa_{table_name}_{column_name}"[:63])


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


def _index(
    table_name: str, column_name: str, unique: bool, key: IndexKey | None = None, name: str | None = None,
    **kwargs: object,
) -> Index:  # fmt: skip
    col = Column(check_identifier(column_name), Integer)
    tbl = Table(check_identifier(table_name), MetaData(), col)
    expression = key(tbl.c[column_name]) if key is not None else tbl.c[column_name]
    name = name or index_name(table_name, column_name, unique)
    return Index(name, expression, unique=unique, **kwargs)


def _chosen_index(table_name: str, column_name: str, **kwargs: object) -> Index:
    return _index(table_name, column_name, False, name=chosen_index_name(table_name, column_name), **kwargs)


def create_index(
    conn: Connection, table_name: str, column_name: str, *, unique: bool, key: IndexKey | None = None,
    on_table: str | None = None,
) -> None:  # fmt: skip
    """An index on the column, or on ``key(column)`` (a unique field's type says what counts as the same
    value, e.g. ``lower(column)`` for text). ``on_table``: built there, named as ``table_name``'s (a shadow
    table that takes its place, ``shadow_table``)."""
    name = index_name(table_name, column_name, unique)
    conn.execute(CreateIndex(_index(on_table or table_name, column_name, unique, key, name=name)))


def drop_index(conn: Connection, table_name: str, column_name: str, *, unique: bool) -> None:
    conn.execute(DropIndex(_index(table_name, column_name, unique), if_exists=True))


def builds_concurrently(conn: Connection) -> bool:
    """Whether chosen indexes are built CONCURRENTLY after the schema change commits (PostgreSQL), rather
    than inside its transaction (SQLite, whose writers wait for each other anyway)."""
    return conn.dialect.name == "postgresql"


def index_state(conn: Connection, name: str) -> str | None:
    """``"valid"``, ``"invalid"`` (a concurrent build that did not finish) or None when there is none."""
    if conn.dialect.name == "postgresql":
        valid = conn.execute(
            text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
            {"name": check_identifier(name)},
        ).scalar()
        return None if valid is None else ("valid" if valid else "invalid")
    found = conn.execute(
        text("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = :name"), {"name": name}
    ).first()
    return "valid" if found else None


def create_chosen_index(
    conn: Connection, table_name: str, column_name: str, *, on_table: str | None = None
) -> None:
    """The admin's index on the column, inside the caller's transaction (SQLite; or a table the change
    rewrites anyway). ``on_table``: as ``create_index``."""
    name = chosen_index_name(table_name, column_name)
    index = _index(on_table or table_name, column_name, False, name=name)
    conn.execute(CreateIndex(index, if_not_exists=True))


def drop_chosen_index(conn: Connection, table_name: str, column_name: str) -> None:
    conn.execute(DropIndex(_chosen_index(table_name, column_name), if_exists=True))


def build_chosen_index_concurrently(engine: Engine, table_name: str, column_name: str) -> None:
    """PostgreSQL: ``CREATE INDEX CONCURRENTLY IF NOT EXISTS``, outside any transaction (it cannot run in
    one), so reads and writes of the table go on while it builds. An invalid index (this build failed, or
    an earlier one was interrupted) is dropped; a failure raises ``IndexBuildFailed``."""
    name = chosen_index_name(table_name, column_name)
    index = _chosen_index(table_name, column_name, postgresql_concurrently=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"SET lock_timeout = '{INDEX_BUILD_LOCK_TIMEOUT}'"))
        try:
            if index_state(conn, name) == "invalid":
                _drop_concurrently(conn, index)
            try:
                conn.execute(CreateIndex(index, if_not_exists=True))
            except DBAPIError as exc:
                _drop_concurrently(conn, index)
                raise _build_failed(exc) from exc
            if index_state(conn, name) != "valid":
                _drop_concurrently(conn, index)
                raise IndexBuildFailed("the new index is not valid")
        finally:
            conn.execute(text("RESET lock_timeout"))


def _drop_concurrently(conn: Connection, index: Index) -> None:
    # CONCURRENTLY, as the index was declared. If the table is still too busy, the next build of the index
    # drops it first (``index_state`` "invalid").
    with suppress(DBAPIError):
        conn.execute(DropIndex(index, if_exists=True))


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
        return not re.match(r"^(ix|uq)_.+_f_\d+|^ixa_", name or "")
    return True


def create_index_concurrently(
    engine: Engine, table_name: str, column_name: str, *, unique: bool, key: IndexKey | None = None
) -> None:
    """PostgreSQL: the index a field has anyway (``create_index``), built CONCURRENTLY outside any
    transaction, so the table stays readable and writable meanwhile. A failed build (duplicates for a
    unique one) is dropped and raises ``IndexBuildFailed``."""
    index = _index(table_name, column_name, unique, key, postgresql_concurrently=True)
    name = index_name(table_name, column_name, unique)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"SET lock_timeout = '{INDEX_BUILD_LOCK_TIMEOUT}'"))
        try:
            if index_state(conn, name) == "invalid":
                _drop_concurrently(conn, index)
            try:
                conn.execute(CreateIndex(index, if_not_exists=True))
            except DBAPIError as exc:
                _drop_concurrently(conn, index)
                raise _build_failed(exc) from exc
        finally:
            conn.execute(text("RESET lock_timeout"))


def conversion_trigger_name(table_name: str, column_name: str) -> str:
    """The trigger (and its function) that keeps a converting field's new column in step with writes."""
    return check_identifier(f"tcv_{table_name}_{column_name}"[:63])


def create_conversion_trigger(
    conn: Connection, table_name: str, old_column: str, new_column: str, covers: str | None, value: str | None
) -> None:
    """PostgreSQL: while a field converts online, every write of its old column also writes the new one
    (``value``, SQL over ``NEW.<old column>``, for values ``covers`` holds); a value SQL cannot convert is
    refused (check_violation: the write path says the field is being converted)."""
    name = conversion_trigger_name(table_name, old_column)
    old, new = _quote(conn, old_column), _quote(conn, new_column)
    converted = f"ELSIF {covers} THEN NEW.{new} := {value};" if covers and value else ""
    # The driver's own cursor: the SQL carries its literals (a label may hold ":x" or "%").
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $tabula$ BEGIN "
        f"IF TG_OP = 'UPDATE' AND NEW.{old} IS NOT DISTINCT FROM OLD.{old} THEN RETURN NEW; END IF; "
        f"IF NEW.{old} IS NULL THEN NEW.{new} := NULL; {converted} "
        f"ELSE RAISE EXCEPTION USING ERRCODE = 'check_violation', MESSAGE = '{CONVERTING_MESSAGE}'; "
        f"END IF; RETURN NEW; END $tabula$"
    )
    conn.execute(
        text(
            f"CREATE TRIGGER {name} BEFORE INSERT OR UPDATE OF {old} ON {_quote(conn, table_name)} "
            f"FOR EACH ROW EXECUTE FUNCTION {name}()"
        )
    )


#: What the conversion trigger says when it refuses a write (the write path recognises it).
CONVERTING_MESSAGE = "tabula: the field is being converted"


def drop_conversion_trigger(conn: Connection, table_name: str, old_column: str) -> None:
    name = conversion_trigger_name(table_name, old_column)
    conn.execute(text(f"DROP TRIGGER IF EXISTS {name} ON {_quote(conn, table_name)}"))
    conn.execute(text(f"DROP FUNCTION IF EXISTS {name}()"))
