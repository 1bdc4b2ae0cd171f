# ruff: noqa: S608 (identifiers the system generated)
"""Type changes of big tables as background jobs, on real RQ workers: progress in the browser's status
endpoint, the field "converting" meanwhile (other fields stay editable), values that do not convert listed
before anything changes, a cancel that leaves the field exactly as it was, and a worker SIGKILLed
mid-conversion: the field is old, never half, and the leftovers are cleaned up."""

from __future__ import annotations

import datetime as dt
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import insert, inspect, select, text

from app.extensions import db
from custom_fields import records
from custom_fields.access import Actor
from custom_fields.runtime import refresh
from jobs import schema as schema_jobs
from models import Field, FieldConversion, SchemaChange
from tests.conftest import csrf_token, start_worker, stop_worker
from tests.tables_helpers import new_field, new_table


@pytest.fixture
def jobs_for_every_table(app_ctx):  # noqa: ANN001, ANN201
    saved = app_ctx.config["TABULA_CONVERSION_JOB_ROWS"], app_ctx.config["TABULA_SCHEMA_QUEUE"]
    app_ctx.config["TABULA_CONVERSION_JOB_ROWS"] = 0
    yield app_ctx
    app_ctx.config["TABULA_CONVERSION_JOB_ROWS"], app_ctx.config["TABULA_SCHEMA_QUEUE"] = saved


def _table(rows: int, value: Any = str) -> tuple[Any, Field, Field]:
    """A table with a text field "Код" of numbers (``value(i)``) and a text field "Заметка"."""
    entity = new_table(f"Большая {uuid.uuid4().hex[:6]}")
    code = new_field(entity, "Код", "text")
    note = new_field(entity, "Заметка", "text")
    spec = refresh().entity(entity.slug)
    model = refresh().classes[entity.slug]
    now = dt.datetime.now(dt.UTC)
    db.session.execute(
        insert(model.__table__),
        [
            {spec.display_field.name: f"Строка {i}", code.name: value(i), note.name: "x", "created_at": now,
             "updated_at": now}
            for i in range(1, rows + 1)
        ],
    )  # fmt: skip
    db.session.commit()
    # Snapshots of the fields as they were: the tests compare with them.
    return entity, *(SimpleNamespace(id=f.id, name=f.name, column_name=f.column_name) for f in (code, note))


def _convert(client, field_id: int, new_type: str) -> Any:  # noqa: ANN001
    db.session.rollback()  # this test's reads hold no lock on the table the change alters
    page = client.get(f"/admin/tables/fields/{field_id}/").get_data(as_text=True)
    return client.post(
        f"/admin/tables/fields/{field_id}/type", data={"type": new_type, "csrf_token": csrf_token(page)}
    )


def _record(field_id: int) -> FieldConversion:
    db.session.expire_all()
    return db.session.scalars(
        select(FieldConversion)
        .where(FieldConversion.field_id == field_id)
        .order_by(FieldConversion.id.desc())
    ).first()


def _wait(client, conversion_id: int, until: Any, timeout: float = 120) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    seen: list[tuple[str, int]] = []  # what the page showed on the way, for a failure's message
    while True:
        state = client.get(f"/admin/tables/conversions/{conversion_id}/status").get_json()
        if until(state):
            return state
        if not seen or seen[-1] != (state["status"], state["done"]):
            seen.append((state["status"], state["done"]))
        # A finished conversion changes no more: waiting on would only hide what was seen.
        assert not state["finished"] and time.monotonic() < deadline, (state, seen)
        time.sleep(0.05)


def _column_of(field_id: int) -> tuple[str, str, str | None]:
    db.session.expire_all()
    row = db.session.get(Field, field_id)
    return row.type, row.column_name, row.converting_to


@contextmanager
def _own_worker(app, env: dict[str, str], redis_url: str, **extra: str) -> Iterator[Any]:  # noqa: ANN001
    """A worker of its own on a queue of its own (small fill batches: the conversion takes a while)."""
    from tests.test_jobs import _worker_on

    queue = f"schema-{uuid.uuid4().hex[:6]}"
    # Small batches, each followed by a rest thirty times as long: the conversion lasts seconds even on a
    # fast, quiet machine (SQLite's 30,000 rows convert in a fraction of a second without), so the test sees
    # it running and cancels or kills it mid-way.
    settings = {"TABULA_CONVERSION_BATCH": "500", "TABULA_CONVERSION_PAUSE_PERCENT": "3000", **extra}
    process = start_worker({**env, **settings}, queue)
    app.config["TABULA_SCHEMA_QUEUE"] = queue
    registered = None
    try:
        registered = _worker_on(redis_url, queue)
        yield process
    finally:
        if process.poll() is None:
            stop_worker(process)
        elif registered is not None:
            registered.register_death()


def test_a_big_table_converts_as_a_job_with_progress(jobs_for_every_table, admin_client, worker) -> None:  # noqa: ANN001
    entity, code, note = _table(1200)
    old_column = code.column_name
    response = _convert(admin_client, code.id, "integer")
    assert response.status_code == 302
    record = _record(code.id)
    assert record is not None and record.to_type == "integer"
    state = _wait(admin_client, record.id, lambda s: s["finished"])
    assert state["status"] == "done" and state["converted"] == 1200 and state["percent"] == 100, state
    field_type, column, converting = _column_of(code.id)
    assert (field_type, converting) == ("integer", None) and column != old_column
    total = db.session.execute(text(f"SELECT sum({column}) FROM {entity.table_name}")).scalar()
    assert total == sum(range(1, 1201))
    logged = db.session.scalars(
        select(SchemaChange).where(SchemaChange.field_id == code.id, SchemaChange.action == "change_type")
    ).all()
    assert len(logged) == 1 and "1200 values converted" in logged[0].summary
    page = admin_client.get(f"/admin/tables/fields/{code.id}/").get_data(as_text=True)
    assert 'id="conversion-progress"' in page and 'id="type-form"' in page


def test_values_that_do_not_convert_are_listed_and_nothing_changes(
    jobs_for_every_table,  # noqa: ANN001
    admin_client,  # noqa: ANN001
    worker,  # noqa: ANN001
) -> None:
    entity, code, _note = _table(300, lambda i: "сорок два" if i in (7, 150) else str(i))
    assert _convert(admin_client, code.id, "integer").status_code == 302
    record = _record(code.id)
    state = _wait(admin_client, record.id, lambda s: s["finished"])
    assert state["status"] == "refused", state
    assert _column_of(code.id) == ("text", code.column_name, None)
    record = _record(code.id)
    assert record.offenders_total == 2 and [o[0] for o in record.offenders] == [7, 150]
    page = admin_client.get(f"/admin/tables/fields/{code.id}/").get_data(as_text=True)
    assert 'id="conversion-offenders"' in page and "сорок два" in page
    assert {c["name"] for c in inspect(db.engine).get_columns(entity.table_name)} >= {code.column_name}


def test_a_queued_conversion_is_cancelled_before_it_starts(jobs_for_every_table, admin_client) -> None:  # noqa: ANN001
    _entity, code, _note = _table(50)
    jobs_for_every_table.config["TABULA_SCHEMA_QUEUE"] = f"nobody-{uuid.uuid4().hex[:6]}"  # no worker
    assert _convert(admin_client, code.id, "integer").status_code == 302
    record = _record(code.id)
    assert record.status == "queued" and _column_of(code.id)[2] == "integer"
    refresh()
    assert refresh().entity(_entity.slug).field_by_name(code.name).converting_to == "integer"
    page = admin_client.get(f"/admin/tables/fields/{code.id}/").get_data(as_text=True)
    assert "field-converting" in page and 'id="type-form"' not in page
    # A second type change of the converting field is refused, whatever the path.
    assert _convert(admin_client, code.id, "decimal").status_code == 302
    assert db.session.scalar(select(FieldConversion.id).where(FieldConversion.field_id == code.id).order_by(
        FieldConversion.id.desc())) == record.id  # fmt: skip
    response = admin_client.post(
        f"/admin/tables/conversions/{record.id}/cancel", data={"csrf_token": csrf_token(page)}
    )
    assert response.status_code == 302
    assert _record(code.id).status == "cancelled"
    assert _column_of(code.id) == ("text", code.column_name, None)


def test_cancel_mid_conversion_leaves_the_field_as_it_was(
    jobs_for_every_table, admin_client, env, redis_url  # noqa: ANN001
) -> None:  # fmt: skip
    entity, code, note = _table(30_000)
    with _own_worker(jobs_for_every_table, env, redis_url):
        assert _convert(admin_client, code.id, "integer").status_code == 302
        record = _record(code.id)
        state = _wait(admin_client, record.id, lambda s: s["status"] == "running" and s["done"] > 0)
        assert state["done"] < 30_000 and state["total"] == 30_000, state
        if db.engine.dialect.name == "postgresql":
            assert state["seconds_left"] is not None
            # Other fields stay editable meanwhile, and the converting one takes values that convert.
            records.update(
                entity.slug, 5, {note.name: "правка", code.name: "555"}, Actor.system_job(),
                expected_version=None,
            )  # fmt: skip
        page = admin_client.get(f"/admin/tables/fields/{code.id}/").get_data(as_text=True)
        assert "field-converting" in page
        admin_client.post(
            f"/admin/tables/conversions/{record.id}/cancel", data={"csrf_token": csrf_token(page)}
        )
        state = _wait(admin_client, record.id, lambda s: s["finished"])
    assert state["status"] == "cancelled", state
    assert _column_of(code.id) == ("text", code.column_name, None)
    assert not [c for c in inspect(db.engine).get_columns(entity.table_name) if c["name"] != code.column_name
                and c["name"].startswith(f"f_{code.id}")]  # fmt: skip
    if db.engine.dialect.name == "postgresql":
        assert not db.session.execute(text("SELECT 1 FROM pg_trigger WHERE tgname LIKE 'tcv\\_%'")).all()
        assert db.session.execute(
            text(f"SELECT {note.column_name}, {code.column_name} FROM {entity.table_name} WHERE id = 5")
        ).one() == ("правка", "555")


def test_a_worker_killed_mid_conversion_leaves_the_old_field_and_is_cleaned_up(
    jobs_for_every_table, admin_client, env, redis_url  # noqa: ANN001
) -> None:  # fmt: skip
    import psutil

    entity, code, _note = _table(30_000)
    app = jobs_for_every_table
    saved = app.config["TABULA_WORKER_STALE_SECONDS"]
    try:
        with _own_worker(app, env, redis_url, TABULA_WORKER_HEARTBEAT_SECONDS="1") as process:
            app.config["TABULA_WORKER_STALE_SECONDS"] = 4
            assert _convert(admin_client, code.id, "integer").status_code == 302
            record = _record(code.id)
            _wait(admin_client, record.id, lambda s: s["status"] == "running" and s["done"] > 0)
            horses = psutil.Process(process.pid).children(recursive=True)
            process.send_signal(signal.SIGKILL)
            for horse in horses:
                horse.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        # Nobody opens the field's page: the cron's sweep (its body, in this app) cleans up once the worker
        # counts as dead.
        # (Until this field is free: other tests' conversions in this database may stay queued for ever.)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            schema_jobs.reconcile_active()
            db.session.rollback()
            if _column_of(code.id)[2] is None:
                break
            time.sleep(0.5)
        assert _column_of(code.id)[2] is None, "the cron sweep left the field converting"
        state = _wait(admin_client, record.id, lambda s: s["finished"], timeout=5)
    finally:
        app.config["TABULA_WORKER_STALE_SECONDS"] = saved
    assert state["status"] == "failed" and "Worker stopped" in state["message"], state
    assert _column_of(code.id) == ("text", code.column_name, None)
    columns = {c["name"] for c in inspect(db.engine).get_columns(entity.table_name)}
    assert not [c for c in columns if c != code.column_name and c.startswith(f"f_{code.id}")], columns
    if db.engine.dialect.name == "postgresql":
        assert not db.session.execute(text("SELECT 1 FROM pg_trigger WHERE tgname LIKE 'tcv\\_%'")).all()
    values = db.session.execute(
        text(f"SELECT {code.column_name} FROM {entity.table_name} ORDER BY id")
    ).scalars()
    assert list(values) == [str(i) for i in range(1, 30_001)]
    # And the field converts afterwards, in the request this time.
    app.config["TABULA_CONVERSION_JOB_ROWS"] = 1_000_000
    assert _convert(admin_client, code.id, "integer").status_code == 302
    assert _column_of(code.id)[0] == "integer"


def test_the_cron_schedule_cleans_up_dead_conversions(redis_url) -> None:  # noqa: ANN001
    from pathlib import Path

    from redis import Redis
    from rq.cron import CronScheduler

    scheduler = CronScheduler(connection=Redis.from_url(redis_url))
    scheduler.load_config_from_file(str(Path(schema_jobs.__file__).with_name("cron.py")))  # as `rq cron` does
    found = {job.name: job for job in scheduler.get_jobs()}
    assert found["reconcile_conversions"].func is schema_jobs.scheduled_reconcile


def test_the_table_keeps_its_shape_while_a_field_of_it_converts(app_ctx) -> None:  # noqa: ANN001
    """Adding or purging a field, or making or dropping an index, waits for the conversion (on PostgreSQL
    it copies the table, and a change of its shape would make it refuse its swap after all its work);
    other edits of the fields go on."""
    from custom_fields import conversion_jobs, service

    entity, code, note = _table(10)
    record = conversion_jobs.request(code.id, "integer", None)
    busy = "of this table is being converted"
    with pytest.raises(service.SchemaError, match=busy):
        service.add_field(entity.id, "Новое", "text")
    with pytest.raises(service.SchemaError, match=busy):
        service.update_field(note.id, indexed=True)
    with pytest.raises(service.SchemaError, match=busy):
        service.update_field(note.id, unique=True)
    assert service.update_field(note.id, label="Заметка к записи").label == "Заметка к записи"
    db.session.expire_all()
    assert not db.session.get(Field, note.id).indexed and not db.session.get(Field, note.id).unique
    conversion_jobs.finish(record.id, "cancelled", "")
    assert service.add_field(entity.id, "Новое", "text").label == "Новое"
