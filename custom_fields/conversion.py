"""Converting a field's stored values to another type, into a new column of the same table.

The values the registry converts in SQL (``types.sql_conversion``) are written by one UPDATE per range of
ids; the others go through the type's ``convert`` in Python, read in batches from a server-side cursor, so
memory stays the same whatever the size of the table. Checking first (``offenders``) touches nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Integer, MetaData, Table, bindparam, func, literal_column, not_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from custom_fields.spec import FieldSpec
from custom_fields.types import REGISTRY, FieldValueError, SqlConversion, sql_conversion

BATCH = 2000
MAX_OFFENDERS = 20


@dataclass(frozen=True)
class Conversion:
    """One field's values from ``old`` (its column now) to ``new`` (its new type, settings and column)."""

    table: Table
    old: FieldSpec
    new: FieldSpec
    sql: SqlConversion | None

    @property
    def source(self) -> ColumnElement:
        return self.table.c[self.old.column_name]

    @property
    def target(self) -> ColumnElement:
        return self.table.c[self.new.column_name]

    def in_sql(self) -> ColumnElement | None:
        """The rows whose value the database converts (None: no row)."""
        return None if self.sql is None else self.sql.covers(self.source)

    def in_python(self) -> ColumnElement:
        """The rows whose value Python converts: not empty, and not converted in SQL."""
        covered = self.in_sql()
        present = self.source.is_not(None)
        return present if covered is None else present & not_(covered)

    def convert(self, value: Any) -> Any:
        """The Python conversion of one stored value; raises FieldValueError."""
        source, target = REGISTRY[self.old.type], REGISTRY[self.new.type]
        converted = target.convert(value, source, self.old, self.new)
        target.check_exists(converted, self.new)
        return converted


def plan(
    conn: Connection, table_name: str, old: FieldSpec, new: FieldSpec, *, use_sql: bool = True
) -> Conversion:
    """What converting ``old`` into ``new`` (whose ``column_name`` is the new column) takes.
    ``use_sql=False`` converts every value in Python (what the SQL rules are compared with)."""
    source, target = REGISTRY[old.type], REGISTRY[new.type]
    table = Table(
        table_name,
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column(old.column_name, source.column_type(old)),
        Column(new.column_name, target.column_type(new)),
    )
    sql = sql_conversion(source, old, target, new, conn.dialect.name) if use_sql else None
    return Conversion(table, old, new, sql)


def _python_rows(
    conn: Connection, conversion: Conversion, low: int | None, high: int | None
) -> Iterator[Any]:
    """Rows (id, value) Python converts, from a server-side cursor (constant memory)."""
    table = conversion.table
    statement = select(table.c.id, conversion.source).where(conversion.in_python()).order_by(table.c.id)
    if low is not None:
        statement = statement.where(table.c.id >= low)
    if high is not None:
        statement = statement.where(table.c.id <= high)
    # Per statement: a connection's own options would outlive this read.
    result = conn.execute(statement.execution_options(stream_results=True, yield_per=BATCH))
    try:
        yield from result
    finally:
        result.close()


def offenders(conn: Connection, conversion: Conversion) -> tuple[int, list[tuple[int, str, str]]]:
    """How many stored values would not convert, and the first ``MAX_OFFENDERS`` of them (record id,
    value as text, reason). One query: the values SQL converts exactly need no look."""
    failed, found, _in_python = check(conn, conversion)
    return failed, found


def check(conn: Connection, conversion: Conversion) -> tuple[int, list[tuple[int, str, str]], int]:
    """``offenders``, and how many values Python would convert (0: the fill needs no Python pass)."""
    source = REGISTRY[conversion.old.type]
    failed = in_python = 0
    found: list[tuple[int, str, str]] = []
    for record_id, value in _python_rows(conn, conversion, None, None):
        in_python += 1
        try:
            conversion.convert(value)
        except FieldValueError as exc:
            failed += 1
            if len(found) < MAX_OFFENDERS:
                found.append((record_id, source.to_text(value, conversion.old)[:100], str(exc)))
    return failed, found, in_python


def fill(
    conn: Connection, conversion: Conversion, low: int | None = None, high: int | None = None,
    *, python: bool = True,
) -> int:  # fmt: skip
    """Write the new column of the rows with ids in [low, high] (all by default); returns how many values
    were written. A value that no longer converts (changed since the check) raises FieldValueError. Python
    writes a value only where the old one is still what it read (a concurrent edit wins). ``python=False``
    skips the Python pass: the caller knows no row needs it (no such value when checked, and the
    conversion trigger refuses new ones since)."""
    table = conversion.table
    written = 0
    covered = conversion.in_sql()
    if covered is not None:
        assert conversion.sql is not None
        statement = (
            update(table)
            .where(covered)
            .values({conversion.new.column_name: conversion.sql.value(conversion.source)})
        )
        if low is not None:
            statement = statement.where(table.c.id >= low)
        if high is not None:
            statement = statement.where(table.c.id <= high)
        written += conn.execute(statement).rowcount or 0
    if not python:
        return written
    statement = (
        update(table)
        .where(table.c.id == bindparam("_id"), conversion.source == bindparam("_old"))
        .values({conversion.new.column_name: bindparam("_new")})
    )
    batch: list[dict[str, Any]] = []
    for record_id, value in _python_rows(conn, conversion, low, high):
        converted = conversion.convert(value)
        if converted is None:
            continue
        batch.append({"_id": record_id, "_old": value, "_new": converted})
        if len(batch) >= BATCH:
            conn.execute(statement, batch)
            written += len(batch)
            batch = []
    if batch:
        conn.execute(statement, batch)
        written += len(batch)
    return written


def id_range(conn: Connection, table_name: str) -> tuple[int, int]:
    """The lowest and highest id of the table ((0, -1) when empty)."""
    table = Table(table_name, MetaData(), Column("id", Integer))
    low, high = conn.execute(select(func.min(table.c.id), func.max(table.c.id))).one()
    return (0, -1) if low is None else (int(low), int(high))


def trigger_sql(conversion: Conversion) -> tuple[str | None, str | None]:
    """``covers`` and ``value`` as PostgreSQL over the row being written (``NEW.<old column>``), for the
    trigger that keeps the new column in step; (None, None) when SQL converts nothing."""
    return sql_over(conversion, f'NEW."{conversion.old.column_name}"')


def sql_over(conversion: Conversion, source: str) -> tuple[str | None, str | None]:
    """``covers`` and ``value`` as PostgreSQL with literal values over ``source`` (SQL naming the old
    column: ``NEW."f_3"``, ``s."f_3"``); (None, None) when SQL converts nothing."""
    if conversion.sql is None:
        return None, None
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.exc import CompileError

    old_type = REGISTRY[conversion.old.type]
    column = literal_column(source, type_=old_type.column_type(conversion.old))
    dialect = postgresql.dialect(paramstyle="named")
    try:
        return tuple(  # type: ignore[return-value]
            str(expression.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
            for expression in (conversion.sql.covers(column), conversion.sql.value(column))
        )
    except (CompileError, NotImplementedError):
        return None, None
