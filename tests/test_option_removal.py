# ruff: noqa: S608 (identifiers the system generated)
"""Removing a select option that records use: refused, unless the admin asks to clear it from them; then
the records lose it (a single select's value, one option of a multiple select's), each with a new version,
on PostgreSQL in short batches after the option is gone from the field, while writers go on."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from app.extensions import db
from custom_fields import service
from custom_fields.runtime import refresh
from models import Field, SchemaChange
from tests.tables_helpers import new_field, new_table


def _table(rows: int) -> tuple[Any, Field, Field, Field, list[str]]:
    entity = new_table()
    single = new_field(
        entity, "Статус", "single_select", settings={"options": ["Новый", "В работе", "Закрыт"]}
    )
    multi = new_field(entity, "Метки", "multi_select", settings={"options": ["Красная", "Синяя", "Зелёная"]})
    note = new_field(entity, "Заметка", "text")
    ids = [o["id"] for o in single.settings["options"]]
    tags = [o["id"] for o in multi.settings["options"]]
    model = refresh().classes[entity.slug]
    now = dt.datetime.now(dt.UTC)
    db.session.execute(
        insert(model.__table__),
        [
            {single.name: ids[i % 3], multi.name: f",{tags[0]},{tags[i % 2 + 1]},", note.name: "x",
             "created_at": now, "updated_at": now}
            for i in range(rows)
        ],
    )  # fmt: skip
    db.session.commit()
    return entity, single, multi, note, ids + tags


def _options_without(row: Field, option_id: str) -> list[dict[str, str]]:
    return [o for o in row.settings["options"] if o["id"] != option_id]


def test_an_option_in_use_is_refused_unless_cleared_from_the_records(app_ctx) -> None:  # noqa: ANN001
    entity, single, multi, _note, (new, busy, closed, red, blue, green) = _table(30)
    with pytest.raises(service.SchemaError, match="used by 10 records"):
        service.update_field(single.id, options=_options_without(single, closed))
    db.session.expire_all()
    assert len(db.session.get(Field, single.id).settings["options"]) == 3

    service.update_field(single.id, options=_options_without(single, closed), clear_removed_options=True)
    service.update_field(multi.id, options=_options_without(multi, red), clear_removed_options=True)
    db.session.expire_all()
    assert [o["id"] for o in db.session.get(Field, single.id).settings["options"]] == [new, busy]
    rows = db.session.execute(
        text(
            f"SELECT {single.column_name}, {multi.column_name}, row_version FROM {entity.table_name}"
            " ORDER BY id"
        )  # fmt: skip
    ).all()
    assert [r[0] for r in rows] == [[new, busy, None][i % 3] for i in range(30)]
    assert [r[1] for r in rows] == [f",{[blue, green][i % 2]}," for i in range(30)]
    assert [r[2] for r in rows] == [3 if i % 3 == 2 else 2 for i in range(30)]  # each change: a new version
    summaries = db.session.scalars(
        select(SchemaChange.summary).where(SchemaChange.field_id == single.id)
    ).all()
    assert any("10 records cleared of removed options" in s for s in summaries), summaries


def test_clearing_an_option_lets_writers_go_on(app_ctx) -> None:  # noqa: ANN001
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite clears in the change's one transaction")
    entity, single, _multi, note, (new, busy, closed, *_tags) = _table(30_000)
    app_ctx.config["TABULA_CONVERSION_BATCH"], saved = 1000, app_ctx.config["TABULA_CONVERSION_BATCH"]
    table, stop, longest, errors, written = entity.table_name, threading.Event(), [0.0], [], [0]
    # The thread has no application context and must not touch the test's session (reading an expired
    # attribute of ``note`` there would load it through that session, from another thread): plain values.
    engine, column = db.engine, note.column_name

    def writer() -> None:
        with engine.connect() as conn:
            conn.execute(text("SET lock_timeout = '1s'"))
            conn.commit()
            i = 0
            while not stop.is_set():
                i += 1
                started = time.monotonic()
                try:
                    conn.execute(
                        text(f"UPDATE {table} SET {column} = :v WHERE id = :id"),
                        {"v": f"правка {i}", "id": 3 * (i % 9000) + 3},  # rows holding the removed option
                    )
                    conn.commit()
                    written[0] += 1
                except Exception as exc:  # noqa: BLE001 (handed to the test)
                    conn.rollback()
                    errors.append(str(exc))
                longest[0] = max(longest[0], time.monotonic() - started)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        service.update_field(single.id, options=_options_without(single, closed), clear_removed_options=True)
    finally:
        stop.set()
        thread.join(10)
        app_ctx.config["TABULA_CONVERSION_BATCH"] = saved
    assert not errors and longest[0] < 1.0, (errors[:3], longest[0])
    assert written[0] > 10, written  # the writers really went on during the clearing
    left = db.session.execute(
        text(f"SELECT count(*) FROM {table} WHERE {single.column_name} = :o"), {"o": closed}
    ).scalar()
    assert left == 0
