"""Imports run by a real worker on both databases: a cp1251 CSV upserted into contacts by e-mail (the CRM's
matching rules), duplicates inside the file and bad cells refused with their rows (downloadable as a
workbook), all-or-nothing, the import right, undo (and its refusal when a record changed since), and a
worker killed mid-import in both modes."""

from __future__ import annotations

import io
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm.attributes import set_committed_value

from app.extensions import db
from custom_fields import records
from custom_fields.access import Actor, save_rules
from custom_fields.query import TableQuery
from custom_fields.runtime import current as current_schema
from exports import imports
from exports.import_rows import ImportRefused
from exports.store import file_store
from models import ImportItem, ImportRun, ImportStatus, RecordChange
from tests.tables_helpers import new_field, new_table


def admin() -> Actor:
    from flask_appbuilder.security.sqla.models import User

    return Actor.of_user(db.session.scalar(select(User).where(User.username == "admin")), "ui")


def user(username: str) -> Actor:
    from flask_appbuilder.security.sqla.models import User

    return Actor.of_user(db.session.scalar(select(User).where(User.username == username)), "ui")


def uploaded(
    tmp_path: Path, slug: str, data: bytes, actor: Actor | None = None, name: str = "f.csv"
) -> ImportRun:
    local = tmp_path / f"{uuid.uuid4().hex}.upload"
    local.write_bytes(data)
    return imports.upload(slug, actor or admin(), local, name)


def wait(import_id: int, timeout: float = 90) -> ImportRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.expire_all()
        item = imports.reconcile(db.session.get(ImportRun, import_id))
        if item.status not in imports.ACTIVE:
            return item
        time.sleep(0.1)
    raise AssertionError(f"import {import_id} still {item.status}")


def upload_removed(import_id: int, timeout: float = 20) -> ImportRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.expire_all()
        item = db.session.get(ImportRun, import_id)
        if item.storage_key is None:
            return item
        time.sleep(0.1)
    raise AssertionError(f"import {import_id} still keeps its upload {item.storage_key}")


def contact_ids_by_email(emails: list[str]) -> dict[str, int]:
    query = TableQuery("contacts", admin()).where(
        {"or": [{"field": "email", "op": "eq", "value": e} for e in emails]}
    )
    return {row["email"]: row["id"] for row in query.fields("email").stream()}


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:8]


def test_a_cp1251_csv_upserts_contacts_by_email_with_refusals_and_undo(
    app_ctx, worker, tmp_path, tag: str
) -> None:  # noqa: ANN001
    actor = admin()
    kept = records.create("contacts", {"first_name": "Старый", "email": f"old-{tag}@example.com"}, actor)
    lines = [
        "First name;Last name;E-mail;Phone;Notes",
        f'Анна;Иванова;new-{tag}@example.com;+7 495 123-45-67;=HYPERLINK("x")',
        "",
        f"Обновлённый;Петров;OLD-{tag}@Example.com;8 (916) 123-45-67;",
        f"Борис;Сидоров;not-an-email-{tag};;",
        f"Анна-2;Иванова;new-{tag}@example.com;;повтор",
        f";Без имени;noname-{tag}@example.com;;",
    ]
    data = "\r\n".join(lines).encode("cp1251")
    item = uploaded(tmp_path, "contacts", data)
    assert item.status == ImportStatus.uploaded and item.file_kind == "csv"
    shown = imports.preview(item, actor)
    assert shown["encoding"] == "cp1251" and shown["delimiter"] == ";" and shown["rows_total"] == 5
    assert shown["mapping"] == {"0": "first_name", "1": "last_name", "2": "email", "3": "phone", "4": "notes"}
    upload_key = item.storage_key
    assert file_store().exists(upload_key)

    imports.configure(
        item, actor, options=shown["options"], mapping=shown["mapping"], mode="upsert", match_on="email",
        on_error="skip",
    )  # fmt: skip
    imports.start(item, actor)
    item = wait(item.id)
    assert item.status == ImportStatus.finished, item.message
    assert (item.created, item.updated, item.skipped, item.refused) == (1, 1, 0, 3)
    item = upload_removed(item.id)  # the file goes only after the outcome is committed
    assert not file_store().exists(upload_key) and item.storage_key is None

    ids = contact_ids_by_email([f"new-{tag}@example.com"])
    ids["kept"] = kept.id
    changed = TableQuery("contacts", actor).get(kept.id)
    assert changed["first_name"] == "Обновлённый" and changed["phone"] == "+79161234567"
    assert changed["email"].lower() == f"old-{tag}@example.com"  # matched whatever the case
    contacts_id = current_schema().entity("contacts").id  # record ids repeat across tables
    sources = set(
        db.session.scalars(
            select(RecordChange.source)
            .where(RecordChange.entity_id == contacts_id, RecordChange.record_id.in_(ids.values()))
            .where(RecordChange.action != "create", RecordChange.user_id == actor.user_id)
        )
    )
    assert sources <= {"import"}
    imported_sets = set(
        db.session.scalars(
            select(RecordChange.changeset)
            .where(RecordChange.entity_id == contacts_id, RecordChange.record_id.in_(ids.values()))
            .where(RecordChange.source == "import")
        )
    )
    imported = db.session.execute(
        select(RecordChange.record_id, RecordChange.action)
        .where(RecordChange.entity_id == contacts_id, RecordChange.record_id.in_(ids.values()))
        .where(RecordChange.source == "import")
    ).all()
    assert sorted(imported) == sorted([(ids[f"new-{tag}@example.com"], "create"), (kept.id, "update")])

    errors = item.report["errors"]
    assert errors["E-mail"]["first"][0][0] == 5  # the file's row number
    assert any("row 2" in message for _n, message in errors["Row in the file"]["first"]), errors
    assert errors["First name"]["first"][0] == [7, "This field is required."]

    book = openpyxl.load_workbook(io.BytesIO(b"".join(imports.refused_chunks(item))))
    rows = list(book.active.iter_rows(values_only=True))
    titles = ("First name", "Last name", "E-mail", "Phone", "Notes")
    assert rows[0] == (*titles, "Row in the file", "What is wrong")
    assert [r[5] for r in rows[1:]] == [5, 6, 7]
    assert rows[2][4] == "повтор" and "row 2" in rows[2][6]
    assert book.active.cell(2, 1).data_type == "s"

    # undo, by a worker: the created contact goes to the recycle bin, the changed one gets its values back
    imports.request_undo(item, actor)
    item = wait(item.id)
    assert item.status == ImportStatus.undone and item.undone_at and not item.message
    undo_sets = db.session.execute(
        select(RecordChange.changeset, RecordChange.action, RecordChange.source)
        .where(RecordChange.entity_id == contacts_id, RecordChange.record_id.in_(ids.values()))
        .where(RecordChange.source == "import", RecordChange.changeset.not_in(imported_sets))
    ).all()
    assert {a for _c, a, _s in undo_sets} == {"update", "delete"} and len({c for c, _a, _s in undo_sets}) == 1
    back = TableQuery("contacts", actor).get(kept.id)
    assert back["first_name"] == "Старый" and back["phone"] is None
    assert TableQuery("contacts", actor).get(ids[f"new-{tag}@example.com"]) is None
    with pytest.raises(ImportRefused):
        imports.undo(db.session.get(ImportRun, item.id), actor)


def test_undo_is_refused_for_records_changed_since(app_ctx, worker, tmp_path, tag: str) -> None:  # noqa: ANN001
    actor = admin()
    data = f"First name;E-mail\r\nИван;a-{tag}@example.com\r\nПётр;b-{tag}@example.com\r\n".encode()
    item = uploaded(tmp_path, "contacts", data)
    imports.configure(
        item, actor, options={}, mapping=item.mapping, mode="create", match_on=None, on_error="all"
    )
    imports.start(item, actor)
    item = wait(item.id)
    assert (item.status, item.created) == (ImportStatus.finished, 2)
    ids = contact_ids_by_email([f"a-{tag}@example.com", f"b-{tag}@example.com"])
    records.update(
        "contacts", ids[f"a-{tag}@example.com"], {"position": "Директор"}, actor, expected_version=1
    )
    with pytest.raises(ImportRefused, match="Иван"):
        imports.undo(item, actor)
    assert len(contact_ids_by_email([f"a-{tag}@example.com", f"b-{tag}@example.com"])) == 2
    # the same refusal from the worker: the import is finished again, the reason its message
    imports.request_undo(item, actor)
    with pytest.raises(ImportRefused, match="being undone"):
        imports.request_undo(item, actor)
    item = wait(item.id)
    assert item.status == ImportStatus.finished and "Nothing was undone" in item.message
    assert "Иван" in item.message and item.undone_at is None
    assert len(contact_ids_by_email([f"a-{tag}@example.com", f"b-{tag}@example.com"])) == 2


def test_an_undo_whose_job_died_leaves_the_import_finished_and_undoable(app_ctx, tmp_path, tag: str) -> None:  # noqa: ANN001
    from models import JobRun, JobStatus

    item = uploaded(tmp_path, "contacts", f"First name\r\nЛев {tag}\r\n".encode())
    lost = JobRun(kind="import-undo", status=JobStatus.running, rq_job_id=f"tabula-run-lost-{tag}")
    db.session.add(lost)
    db.session.flush()
    item.status, item.job_run_id, item.created = ImportStatus.undoing, lost.id, 1
    db.session.commit()
    # a second click that read the import before the first one's: refused, no second job
    set_committed_value(item, "status", ImportStatus.finished)
    with pytest.raises(ImportRefused, match="already run"):
        imports.request_undo(item, admin())
    assert (item.status, item.job_run_id) == (ImportStatus.undoing, lost.id)
    item = imports.reconcile(item)
    assert item.status == ImportStatus.finished and "Nothing was undone" in item.message
    assert "lost from the queue" in item.message


def test_a_big_undo_reports_progress_and_is_one_change_set(app_ctx, tmp_path, tag: str) -> None:  # noqa: ANN001
    actor = admin()
    entity = new_table(f"Откат {tag}")
    count = imports.BATCH * 2 + 500
    item = uploaded(tmp_path, entity.slug, many_rows_csv(count, tag))
    mapping = {"0": entity_field(entity.slug, "display")}
    imports.configure(item, actor, options={}, mapping=mapping, mode="create", match_on=None, on_error="all")
    imports.run(item.id, lambda *_: None)  # the import job's work, here
    item = db.session.get(ImportRun, item.id)
    assert item.status == ImportStatus.finished and item.created == count
    heard: list[tuple[int, int, bool]] = []
    assert imports.undo(item, actor, lambda *a: heard.append(a)) == {"reverted": 0, "deleted": count}
    assert heard == [(imports.BATCH, count, False), (2 * imports.BATCH, count, False), (count, count, False)]
    assert rows_in(entity.slug) == 0
    sets = db.session.scalars(
        select(func.count(func.distinct(RecordChange.changeset))).where(
            RecordChange.entity_id == entity.id, RecordChange.action == "delete"
        )
    )
    assert list(sets) == [1]


def test_all_or_nothing_writes_nothing_when_a_row_is_bad(app_ctx, worker, tmp_path, tag: str) -> None:  # noqa: ANN001
    actor = admin()
    entity = new_table(f"Поставщики {tag}")
    new_field(entity, "Сумма", "decimal")
    new_field(entity, "Код", "text", unique=True)
    data = "Name;Сумма;Код\r\nА;1 234,56;K1\r\nБ;много;K2\r\nВ;5;K1\r\n".encode()
    item = uploaded(tmp_path, entity.slug, data)
    mapping = {
        "0": entity_field(entity.slug, "display"),
        "1": name_of(entity.slug, "Сумма"),
        "2": name_of(entity.slug, "Код"),
    }
    imports.configure(
        item,
        actor,
        options={},
        mapping=mapping,
        mode="create",
        match_on=name_of(entity.slug, "Код"),
        on_error="all",
    )
    imports.start(item, actor)
    item = wait(item.id)
    assert item.status == ImportStatus.refused and item.refused == 2 and item.created == 0
    assert TableQuery(entity.slug, actor).count().value == 0
    assert (
        db.session.scalar(select(func.count()).select_from(ImportItem).where(ImportItem.import_id == item.id))
        == 0
    )


def entity_field(slug: str, which: str) -> str:
    from custom_fields.runtime import current

    return current().entity(slug).display_field.name


def name_of(slug: str, label: str) -> str:
    from custom_fields.runtime import current

    return next(f.name for f in current().entity(slug).live_fields if str(f.label) == label)


def test_the_import_right_is_enforced(app_ctx, tmp_path) -> None:  # noqa: ANN001
    staff = user("staff1")
    assert not imports.allowed("contacts", staff)
    with pytest.raises(ImportRefused, match="import"):
        uploaded(tmp_path, "contacts", b"First name\r\nX\r\n", staff)
    assert not list(tmp_path.glob("*.upload"))  # nothing kept
    from flask_appbuilder.security.sqla.models import Role

    role = db.session.scalar(select(Role.id).where(Role.name == "Staff"))
    entity_id = TableQuery("contacts", admin()).entity.id
    save_rules(role, tables={entity_id: {"import": True}})
    try:
        from custom_fields.runtime import refresh

        refresh()
        assert imports.allowed("contacts", staff)
    finally:
        save_rules(role, tables={entity_id: {"import": None}})


def many_rows_csv(count: int, tag: str) -> bytes:
    lines = ["Name;Число"] + [f"Строка {tag} {i};{i}" for i in range(count)]
    return "\r\n".join(lines).encode()


@pytest.mark.parametrize("on_error", ["skip", "all"])
def test_a_worker_killed_mid_import_leaves_an_exact_record_and_a_rerun_never_duplicates(
    app_ctx, worker, env, redis_url, tmp_path, tag: str, on_error: str
) -> None:  # noqa: ANN001
    import psutil

    from tests.conftest import start_worker, stop_worker
    from tests.test_jobs import _worker_on

    actor = admin()
    entity = new_table(f"Много {tag}")
    new_field(entity, "Число", "integer")
    count = 30_000
    item = uploaded(tmp_path, entity.slug, many_rows_csv(count, tag))
    mapping = {"0": entity_field(entity.slug, "display"), "1": name_of(entity.slug, "Число")}
    imports.configure(
        item, actor, options={}, mapping=mapping, mode="create", match_on=None, on_error=on_error
    )
    queue = f"doomed-imports-{on_error}"
    process = start_worker({**env, "TABULA_WORKER_HEARTBEAT_SECONDS": "1"}, queue)
    saved = app_ctx.config["TABULA_WORKER_STALE_SECONDS"], app_ctx.config["TABULA_IMPORT_QUEUE"]
    doomed = None
    try:
        doomed = _worker_on(redis_url, queue)
        app_ctx.config["TABULA_WORKER_STALE_SECONDS"], app_ctx.config["TABULA_IMPORT_QUEUE"] = 4, queue
        imports.start(item, actor)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            db.session.expire_all()
            if on_error == "skip" and db.session.get(ImportRun, item.id).rows_done > 0:
                break
            if on_error == "all" and written_in_transaction(doomed):
                break
            time.sleep(0.05)
        else:
            run = imports.reconcile(db.session.get(ImportRun, item.id))
            raise AssertionError(f"the import made no progress in 90 s: {run.status} {run.message!r}")
        horses = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGKILL)
        for horse in horses:
            horse.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        deadline = time.monotonic() + 30
        while (state := imports.reconcile(db.session.get(ImportRun, item.id))).status in imports.ACTIVE:
            assert time.monotonic() < deadline, state
            time.sleep(0.5)
            db.session.expire_all()
        assert state.status == ImportStatus.failed and "Worker stopped" in state.message, (
            state.status,
            state.message,
            state.rows_done,
        )
        in_table = rows_in(entity.slug)
        items = db.session.scalar(
            select(func.count()).select_from(ImportItem).where(ImportItem.import_id == item.id)
        )
        if on_error == "all":
            assert in_table == 0 and items == 0 and state.rows_done == 0
        else:
            assert 0 < state.rows_done < count and state.rows_done % imports.BATCH == 0
            assert in_table == items == state.rows_done == state.created
    finally:
        app_ctx.config["TABULA_WORKER_STALE_SECONDS"], app_ctx.config["TABULA_IMPORT_QUEUE"] = saved
        if process.poll() is None:
            stop_worker(process)
        elif doomed is not None:
            doomed.register_death()

    # run again, on the suite's worker: it completes without writing a row twice
    item = db.session.get(ImportRun, item.id)
    imports.start(item, actor)
    item = wait(item.id, timeout=180)
    assert item.status == ImportStatus.finished and item.created == count
    assert rows_in(entity.slug) == count
    numbers = [row[name_of(entity.slug, "Число")] for row in TableQuery(entity.slug, actor).stream(5000)]
    assert sorted(numbers) == list(range(count))


def rows_in(slug: str) -> int:
    return sum(len(batch) for batch in TableQuery(slug, admin()).fields().batches(10_000))


def written_in_transaction(worker: Any) -> bool:
    """Whether the all-or-nothing job has reported writing (its progress lives in Redis only)."""
    from rq.job import Job

    from app.redis_client import redis_connection

    job_id = worker.get_current_job_id() if worker is not None else None
    if not job_id:
        return False
    job = Job.fetch(job_id, connection=redis_connection())
    return (job.get_meta(refresh=True).get("progress") or {}).get("done", 0) > 0


def test_link_columns_name_their_records_by_label(app_ctx, worker, tmp_path, tag: str) -> None:  # noqa: ANN001
    """A Company column of company names links each contact to the one company of that name the importing
    user may read; a name no readable company has, or two have, refuses the row with the reason; numbers
    stay record numbers. The grid's paste follows the same rule (``custom_fields.link_labels``)."""
    actor = admin()
    one = records.create("companies", {"name": f"ООО Один {tag}"}, actor).id
    for _ in range(2):
        records.create("companies", {"name": f"ООО Двойник {tag}"}, actor)
    lines = [
        "First name;Company",
        f"Анна {tag};ООО Один {tag}",
        f"Борис {tag};#{one}",
        f"Вера {tag};ООО Нет такой {tag}",
        f"Глеб {tag};ООО Двойник {tag}",
        f"Дина {tag};  ООО Один {tag} ",
    ]
    item = uploaded(tmp_path, "contacts", "\r\n".join(lines).encode("cp1251"))
    shown = imports.preview(item, actor)
    assert shown["mapping"] == {"0": "first_name", "1": "company_id"}
    checked = imports.check(item, actor, options={}, mapping=shown["mapping"], mode="create", match_on=None)
    assert (checked["create"], checked["refuse"]) == (3, 2), checked
    imports.configure(
        item, actor, options={}, mapping=shown["mapping"], mode="create", match_on=None, on_error="skip"
    )
    imports.start(item, actor)
    item = wait(item.id)
    assert (item.created, item.refused) == (3, 2), item.message
    companies = {
        r["first_name"]: r["company_id"]
        for r in TableQuery("contacts", actor).fields("first_name", "company_id").stream()
        if r["first_name"].endswith(tag)
    }
    assert companies == {f"Анна {tag}": one, f"Борис {tag}": one, f"Дина {tag}": one}
    errors = " ".join(m for _row, m in item.report["errors"]["Company"]["first"])
    assert f"ООО Нет такой {tag}" in errors and "Several records" in errors


def test_link_labels_are_looked_up_together_not_one_query_each(app_ctx, tmp_path, tag: str) -> None:  # noqa: ANN001
    """A file naming 1,200 different companies asks the database about as often as one naming 12."""
    from sqlalchemy import event

    actor = admin()
    names = [f"ООО {tag} №{i}" for i in range(1_200)]
    records.create_many("companies", [{"name": n} for n in names[:1_100]], actor)  # 100 unknown
    records.create("companies", {"name": names[0]}, actor)  # and one named twice

    def checked(count: int) -> tuple[dict[str, Any], int]:
        lines = ["First name;Company"] + [f"Имя {i};{names[i]}" for i in range(count)]
        item = uploaded(tmp_path, "contacts", "\r\n".join(lines).encode("cp1251"))
        seen: list[str] = []

        def count_it(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
            seen.append(statement)

        event.listen(db.engine, "before_cursor_execute", count_it)
        try:
            found = imports.check(item, actor, options={}, mapping={"0": "first_name", "1": "company_id"},
                                  mode="create", match_on=None)  # fmt: skip
        finally:
            event.remove(db.engine, "before_cursor_execute", count_it)
        return found, len(seen)

    few, few_statements = checked(12)
    many, many_statements = checked(1_200)
    assert (few["create"], few["refuse"]) == (11, 1)  # the company named twice is refused
    assert (many["create"], many["refuse"]) == (1_099, 101), many
    assert many_statements - few_statements < 10, (few_statements, many_statements)
    messages = " ".join(m for _row, m in many["errors"]["Company"]["first"])
    assert f"“{names[0]}”" in messages and "Several records" in messages
    assert f"No record “{names[1_100]}”" in messages


def test_an_imports_list_of_what_it_wrote_reads_back_as_written(app_ctx, tmp_path, tag: str) -> None:  # noqa: ANN001
    """``records.insert_rows`` (COPY on PostgreSQL from 50 rows): the values each record had before, with
    Cyrillic, quotes, backslashes and tabs, and none, come back as they went in."""
    item = uploaded(tmp_path, "contacts", f"First name\r\nЛев {tag}\r\n".encode())
    befores = [
        {"first_name": f'Имя\t"{i}"\\', "n": i, "list": ["а", None]} if i % 3 else None for i in range(60)
    ]
    rows = [
        {"import_id": item.id, "row_number": i + 2, "record_id": 10_000 + i,
         "action": "update" if b else "create", "before": b, "version": 1 + i % 4}
        for i, b in enumerate(befores)
    ]  # fmt: skip
    with records.atomic():
        records.insert_rows(ImportItem.__table__, rows)
    back = db.session.scalars(
        select(ImportItem).where(ImportItem.import_id == item.id).order_by(ImportItem.row_number)
    ).all()
    assert [(b.row_number, b.record_id, b.action, b.before, b.version) for b in back] == [
        (r["row_number"], r["record_id"], r["action"], r["before"], r["version"]) for r in rows
    ]
