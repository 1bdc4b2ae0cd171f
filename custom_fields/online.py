"""Online type changes on PostgreSQL, the way gh-ost and pg-osc do them: the new column is added (metadata
only) with a trigger that keeps it in step with writes, filled in short transactions of a few thousand
rows, indexed CONCURRENTLY, and only then swapped in (``service``) under a lock held for milliseconds.
Every step that needs a lock on the table takes it in a short transaction (``short_locks``), so readers
queued behind it never wait longer than ``short_locks.STEP_LOCK_TIMEOUT``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import select, text
from sqlalchemy.engine import Connection, Engine

from custom_fields import conversion, ddl, shadow_table
from custom_fields.conversion import Conversion
from custom_fields.short_locks import TableBusy, lock_timeout, with_short_locks
from custom_fields.types import REGISTRY

FILL_BATCH = 10_000

Progress = Callable[[int, int], None]


def install(engine: Engine, plan: Conversion) -> None:
    """The new column and the trigger that writes it whenever the old one is written."""
    covers, value = conversion.trigger_sql(plan)
    target = REGISTRY[plan.new.type]
    table_name = plan.table.name

    def step(conn: Connection) -> None:
        ddl.add_column(conn, table_name, plan.new.column_name, target.column_type(plan.new),
                       target.target_table(plan.new))  # fmt: skip
        ddl.create_conversion_trigger(
            conn, table_name, plan.old.column_name, plan.new.column_name, covers, value
        )

    with_short_locks(engine, step)


def remove(engine: Engine, plan: Conversion) -> None:
    """Undo ``install``: the old field is as it was (the new column's indexes go with it)."""
    table_name = plan.table.name

    def step(conn: Connection) -> None:
        ddl.drop_conversion_trigger(conn, table_name, plan.old.column_name)
        if ddl.has_column(conn, table_name, plan.new.column_name):
            ddl.drop_column(conn, table_name, plan.new.column_name)

    with_short_locks(engine, step)


def fill(
    engine: Engine, plan: Conversion, progress: Progress | None = None, batch: int | None = None,
    *, python: bool = True,
) -> int:  # fmt: skip
    """Every row's new value, ``batch`` ids per short transaction; ``progress(rows done, rows in all)``
    after each (it may raise to stop: the caller removes what ``install`` made). ``python=False``: no
    row needs Python (``conversion.fill``)."""
    batch = batch or fill_batch()
    with engine.connect() as conn:
        low, high = conversion.id_range(conn, plan.table.name)
    total = max(high - low + 1, 0)
    written = 0
    for start in range(low, high + 1, batch):
        with engine.begin() as conn:
            lock_timeout(conn)
            # Nothing reads the new column before the swap, whose commit waits for all WAL written before.
            conn.execute(text("SET LOCAL synchronous_commit = off"))
            written += conversion.fill(conn, plan, start, start + batch - 1, python=python)
        if progress is not None:
            progress(min(start + batch, high + 1) - low, total)
    return written


def fill_batch() -> int:
    """Rows per short transaction of a fill (``TABULA_CONVERSION_BATCH``, else ``FILL_BATCH``)."""
    from flask import current_app, has_app_context

    return (
        int(current_app.config.get("TABULA_CONVERSION_BATCH") or FILL_BATCH)
        if has_app_context()
        else FILL_BATCH
    )


def clear_options(
    engine: Engine, table_name: str, column_name: str, type_name: str, option_ids: list[str],
    batch: int | None = None,
) -> int:  # fmt: skip
    """Records holding a removed option lose it (``without_option`` of the type), ``batch`` ids per short
    transaction (each row changed gets a new ``row_version``: an editor holding it is told it changed):
    writers are held up, at most, by the rows of one batch. Returns how many records changed."""
    from sqlalchemy import Column, Integer, MetaData, String, Table, update

    ftype = REGISTRY[type_name]
    tbl = Table(table_name, MetaData(), Column("id", Integer), Column("row_version", Integer),
                Column(column_name, String))  # fmt: skip
    col = tbl.c[column_name]
    with engine.connect() as conn:
        low, high = conversion.id_range(conn, table_name)
    changed = 0
    batch = batch or fill_batch()
    for start in range(low, high + 1, batch):
        for option_id in option_ids:
            statement = (
                update(tbl)
                .where(tbl.c.id.between(start, start + batch - 1), ftype.option_condition(col, option_id))
                .values(
                    {column_name: ftype.without_option(col, option_id), "row_version": tbl.c.row_version + 1}
                )
            )

            def step(conn: Connection, statement: object = statement) -> None:
                nonlocal changed
                changed += conn.execute(statement).rowcount or 0  # type: ignore[call-overload]

            with_short_locks(engine, step)
    return changed


#: The first key of the advisory locks conversions hold (the second is the field's id) ...
LOCK_SPACE = 24
#: ... and of those they hold on the field's table (the second is the table's entity id).
TABLE_LOCK_SPACE = 25


@contextmanager
def converting(engine: Engine, field_id: int, entity_id: int | None = None) -> Iterator[None]:
    """Held for the whole conversion of the field: a session-level advisory lock on a connection of its
    own, which PostgreSQL releases when the process dies (a SIGKILL too). A second conversion of the
    same field at once is refused (``TableBusy``); with ``entity_id``, of any field of its table too (a
    copy of the table and a second conversion of it would undo each other)."""
    keys = [(LOCK_SPACE, field_id)] + ([(TABLE_LOCK_SPACE, entity_id)] if entity_id is not None else [])
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        held: list[tuple[int, int]] = []
        try:
            for space, key in keys:
                got = conn.execute(
                    text("SELECT pg_try_advisory_lock(:space, :id)"), {"space": space, "id": key}
                )
                if not got.scalar():
                    raise TableBusy()
                held.append((space, key))
            yield
        finally:
            for space, key in held:
                conn.execute(text("SELECT pg_advisory_unlock(:space, :id)"), {"space": space, "id": key})


def clean_up_leftovers(engine: Engine) -> list[str]:
    """What a conversion whose process died left behind (its trigger, and the new, unused column or the
    shadow table), dropped;
    the field still reads its old column, as it was. Conversions still running (their process holds
    ``converting``) are left alone. Returns the triggers removed."""
    from models import Field

    removed: list[str] = []
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE t.tgname LIKE 'tcv\\_%' AND NOT t.tgisinternal"
            )
        ).all()
        fields = conn.execute(select(Field.id, Field.column_name)).all()
        conn.rollback()
    for table_name, trigger in found:
        for field_id, column_name in fields:
            if ddl.conversion_trigger_name(table_name, column_name) != trigger:
                continue
            try:
                with converting(engine, field_id):
                    new_column = ddl.column_name_for(field_id, _generation(column_name) + 1)

                    def step(conn: Connection, table_name: str = table_name, column_name: str = column_name,
                             new_column: str = new_column, field_id: int = field_id,
                             trigger: str = trigger) -> None:  # fmt: skip
                        shadow_table.drop_leftovers(
                            conn, table_name, trigger, shadow_table.shadow_name(field_id),
                            shadow_table.log_name(field_id),
                        )  # fmt: skip
                        if ddl.has_column(conn, table_name, new_column):
                            ddl.drop_column(conn, table_name, new_column)

                    with_short_locks(engine, step)
                    removed.append(trigger)
            except TableBusy:
                continue  # still converting
    return removed


def _generation(column_name: str) -> int:
    parts = column_name.split("_")
    return int(parts[2]) if len(parts) == 3 and parts[2].isdecimal() else 1
