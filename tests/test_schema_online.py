# ruff: noqa: S608 (identifiers the system generated, in SQL of a second connection)
"""Online type changes on PostgreSQL: another connection keeps reading and writing the table during a
conversion, each statement waiting at most a second (lock_timeout) and none failing; writes made meanwhile
reach the new column; a cancel or a failure leaves the field exactly as it was. SQLite keeps its simple
path (one transaction), tested in test_metadata.py and test_schema_conversion.py."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from custom_fields import ddl, online, service
from custom_fields.runtime import current, refresh
from models import Field, SchemaChange
from tests.tables_helpers import new_field, new_table

ROWS = 3000


@pytest.fixture
def pg(app_ctx):  # noqa: ANN001, ANN201
    if db.engine.dialect.name != "postgresql":
        pytest.skip("online conversion is PostgreSQL's; SQLite converts in one transaction")
    return app_ctx


def _table_with_codes(unique: bool = False) -> tuple[Any, Field, Field]:
    entity = new_table()
    code = new_field(entity, "Код", "text", unique=unique)
    note = new_field(entity, "Заметка", "text")
    model = current().classes[entity.slug]
    db.session.add_all(
        [
            model(**{code.name: f" {i} " if i % 500 == 0 else str(i), note.name: "x"})
            for i in range(1, ROWS + 1)
        ]
    )
    db.session.commit()
    return entity, code, note


def _columns(table_name: str) -> set[str]:
    return {c["name"] for c in inspect(db.engine).get_columns(table_name)}


class Neighbour(threading.Thread):
    """Another user: reads a record and edits another field (and, now and then, the converting one) in
    a loop on its own connection, with lock_timeout = 1 s; records the longest statement and any error."""

    def __init__(self, table_name: str, code_column: str, note_column: str) -> None:
        super().__init__(daemon=True)
        self.table_name, self.code, self.note = table_name, code_column, note_column
        self.engine = db.engine
        self.stop = threading.Event()
        self.longest = 0.0
        self.statements = 0
        self.errors: list[str] = []
        #: Set when the fill is done: the old column goes soon, and with it this user's (old) schema.
        self.swapped = threading.Event()

    def _update_code(self, conn: Any, record: int, i: int) -> None:
        from sqlalchemy.exc import ProgrammingError

        try:
            self._timed(
                conn,
                f"UPDATE {self.table_name} SET {self.code} = :v WHERE id = :id",
                v=str(7000 + i),
                id=record,
            )
        except ProgrammingError:
            conn.rollback()
            if not self.swapped.is_set():
                raise

    def _timed(self, conn: Any, sql: str, **params: Any) -> None:
        started = time.monotonic()
        with conn.begin():
            conn.execute(text(sql), params)
        self.longest = max(self.longest, time.monotonic() - started)
        self.statements += 1

    def run(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SET lock_timeout = '1s'"))
            conn.commit()
            i = 0
            while not self.stop.is_set():
                i += 1
                record = i % ROWS + 1
                try:
                    self._timed(
                        conn, f"SELECT id, {self.note} FROM {self.table_name} WHERE id = :id", id=record
                    )
                    self._timed(
                        conn,
                        f"UPDATE {self.table_name} SET {self.note} = :v WHERE id = :id",
                        v=f"n{i}",
                        id=record,
                    )
                    if i % 10 == 0 and not self.swapped.is_set():
                        self._update_code(conn, record, i)
                except Exception as exc:  # noqa: BLE001 (any failure is what the test reports)
                    self.errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                    conn.rollback()
                    if len(self.errors) > 5:
                        return


def beside(neighbour: Neighbour, change: Any) -> Any:
    """``change()`` while the neighbour (started here, stopped after) works on the table."""
    neighbour.start()
    try:
        time.sleep(0.2)
        result = change()
        time.sleep(0.2)
    finally:
        neighbour.stop.set()
        neighbour.join(10)
    return result


def test_conversion_keeps_the_table_readable_and_writable(pg, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(online, "FILL_BATCH", 250)
    entity, code, note = _table_with_codes()
    old_column = code.column_name
    neighbour = Neighbour(entity.table_name, code.column_name, note.column_name)
    batches: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        batches.append((done, total))
        if done == total:
            neighbour.swapped.set()
        time.sleep(0.05)  # a long conversion: the neighbour works throughout

    changed = beside(neighbour, lambda: service.change_type(code.id, "integer", progress=progress))
    assert neighbour.errors == []
    assert neighbour.statements > 100
    assert neighbour.longest < 1.0, neighbour.longest
    assert len(batches) == ROWS // 250 and batches[-1] == (ROWS, ROWS)
    refresh()
    model = current().classes[entity.slug]
    db.session.expire_all()
    stored = {r.id: getattr(r, changed.name) for r in db.session.scalars(select(model)).all()}
    # Every value converted; the ones the neighbour wrote meanwhile (7000 + i) too, through the trigger.
    raw = dict(db.session.execute(text(f"SELECT id, {changed.column_name} FROM {entity.table_name}")).all())
    assert stored == raw and all(isinstance(v, int) for v in stored.values())
    assert stored[500] == 500 and any(v > 7000 for v in stored.values())
    assert old_column not in _columns(entity.table_name) and changed.column_name != old_column
    entry = db.session.scalars(
        select(SchemaChange).where(SchemaChange.field_id == code.id, SchemaChange.action == "change_type")
    ).one()
    assert f"{ROWS} values converted" in entry.summary


def _left_as_it_was(entity: Any, code: Field) -> None:
    db.session.expire_all()
    row = db.session.get(Field, code.id)
    assert (row.type, row.column_name) == ("text", code.column_name)
    assert _columns(entity.table_name) & {ddl.column_name_for(code.id, 2)} == set()
    with db.engine.connect() as conn:
        triggers = conn.execute(
            text("SELECT count(*) FROM pg_trigger WHERE tgname = :n"),
            {"n": ddl.conversion_trigger_name(entity.table_name, code.column_name)},
        ).scalar()
    assert triggers == 0


class StopConvertingError(Exception):
    pass


def test_cancel_leaves_the_field_exactly_as_it_was(pg, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(online, "FILL_BATCH", 500)

    def progress(done: int, total: int) -> None:
        if done >= 1000:
            raise StopConvertingError()

    entity, code, _note = _table_with_codes()
    with pytest.raises(StopConvertingError):
        service.change_type(code.id, "integer", progress=progress)
    _left_as_it_was(entity, code)


def test_a_value_sql_cannot_convert_is_refused_while_converting(pg, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(online, "FILL_BATCH", 1000)
    entity, code, _note = _table_with_codes()
    refused: list[str] = []

    def progress(done: int, total: int) -> None:
        if refused:
            return
        with db.engine.connect() as conn:
            try:
                conn.execute(
                    text(f"UPDATE {entity.table_name} SET {code.column_name} = 'сорок' WHERE id = 1")
                )
                conn.commit()
            except Exception as exc:  # noqa: BLE001
                refused.append(str(exc))

    changed = service.change_type(code.id, "integer", progress=progress)
    assert refused and ddl.CONVERTING_MESSAGE in refused[0]
    assert changed.type == "integer"


def test_duplicates_made_by_the_conversion_leave_a_unique_field_as_it_was(pg) -> None:  # noqa: ANN001
    entity, code, _note = _table_with_codes(unique=True)
    model = current().classes[entity.slug]
    db.session.add(model(**{code.name: "0001"}))  # another text, the same number as "1"
    db.session.commit()
    with pytest.raises(service.SchemaError):
        service.change_type(code.id, "integer")
    _left_as_it_was(entity, code)


def test_making_a_field_unique_builds_its_index_concurrently(pg) -> None:  # noqa: ANN001
    entity, code, note = _table_with_codes()
    neighbour = Neighbour(entity.table_name, code.column_name, note.column_name)
    neighbour.swapped.set()  # the neighbour edits the note only
    changed = beside(neighbour, lambda: service.update_field(code.id, unique=True))
    assert neighbour.errors == [] and neighbour.longest < 1.0
    assert changed.unique
    name = ddl.index_name(entity.table_name, code.column_name, unique=True)
    with db.engine.connect() as conn:
        assert ddl.index_state(conn, name) == "valid"
    model = current().classes[entity.slug]
    db.session.add(model(**{code.name: "1"}))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_making_a_field_unique_refuses_repeated_values_and_changes_nothing(pg) -> None:  # noqa: ANN001
    entity, code, _note = _table_with_codes()
    model = current().classes[entity.slug]
    db.session.add(model(**{code.name: "1"}))
    db.session.commit()
    with pytest.raises(service.SchemaError, match="1 value occurs in more than one record"):
        service.update_field(code.id, unique=True, label="Код клиента")
    db.session.expire_all()
    kept = db.session.get(Field, code.id)
    assert not kept.unique and kept.label == "Код"  # the label asked for in the same save: not saved either
    with db.engine.connect() as conn:
        assert ddl.index_state(conn, ddl.index_name(entity.table_name, code.column_name, unique=True)) is None


KILLED_CONVERSION = """
import os, sys, time
from app import create_app
from custom_fields import online, service

online.FILL_BATCH = 300
app = create_app(dict(os.environ))

def progress(done, total):
    print(done, flush=True)
    time.sleep(0.3)

with app.app_context():
    service.change_type(int(sys.argv[1]), "integer", progress=progress)
"""


def kill_mid_conversion(field_id: int, env: dict[str, str]) -> None:
    """Convert the field to integer in another process, and SIGKILL it after its third batch."""
    import os
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_CONVERSION, str(field_id)],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        lines = []
        while len(lines) < 3:  # mid-fill: three batches written
            line = process.stdout.readline()
            assert line, f"the conversion ended early: {''.join(lines)}{process.stdout.read()}"
            lines.append(line)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(30)


def clean_up_after_the_dead() -> list[str]:
    """``online.clean_up_leftovers`` once PostgreSQL has ended the killed process's session."""
    db.session.rollback()
    deadline = time.monotonic() + 10
    removed: list[str] = []
    while not removed and time.monotonic() < deadline:
        removed = online.clean_up_leftovers(db.engine)
        time.sleep(0.2)
    return removed


def test_a_killed_conversion_leaves_the_old_field_and_is_cleaned_up(pg, env) -> None:  # noqa: ANN001
    entity, code, _note = _table_with_codes()
    kill_mid_conversion(code.id, env)
    db.session.expire_all()
    row = db.session.get(Field, code.id)
    assert (row.type, row.column_name) == ("text", code.column_name)  # the old field, intact and in use
    new_column = ddl.column_name_for(code.id, 2)
    assert new_column in _columns(entity.table_name)  # the half-filled column, not in use
    removed = clean_up_after_the_dead()
    assert removed == [ddl.conversion_trigger_name(entity.table_name, code.column_name)]
    _left_as_it_was(entity, code)
    changed = service.change_type(code.id, "integer")  # and it converts now
    assert changed.type == "integer" and changed.column_name == new_column
