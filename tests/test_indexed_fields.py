"""Fields an admin marks "indexed" get a real index: built CONCURRENTLY on PostgreSQL (writes to the table go
on meanwhile), inside the schema change on SQLite; dropped when unmarked; kept in step through type changes
and purges; a failed build reported and cleaned up. Fields indexed anyway (unique, links, users, core
columns with an index of their own) show as indexed and get no second index."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import select, text

from app.extensions import db
from custom_fields import ddl, service
from custom_fields.runtime import current, refresh
from custom_fields.spec import has_builtin_index
from models import Entity, Field, SchemaChange
from tests.conftest import csrf_token
from tests.tables_helpers import insert, new_field, new_table


def chosen(row: Field) -> str:
    return ddl.chosen_index_name(row.entity.table_name, row.column_name)


def state(name: str) -> str | None:
    """``valid``, ``invalid`` or None, read on a connection of its own (not the test's session)."""
    with db.engine.connect() as conn:
        return ddl.index_state(conn, name)


def indexes_on(table_name: str, column_name: str) -> list[str]:
    """Names of the column's indexes, as the database's catalog lists them (SQLAlchemy's inspector skips
    SQLite's expression indexes, such as a unique text field's ``lower(...)``)."""
    if is_postgresql():
        query = text("SELECT indexname FROM pg_indexes WHERE tablename = :t")
    else:
        query = text("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t")
    with db.engine.connect() as conn:
        names = conn.execute(query, {"t": table_name}).scalars()
        return sorted(n for n in names if n.endswith(f"_{column_name}"))


def flag(field_id: int) -> bool:
    """The field's "indexed" flag as committed (read on a connection of its own)."""
    with db.engine.connect() as conn:
        return bool(conn.execute(select(Field.indexed).where(Field.id == field_id)).scalar_one())


def spec_of(row: Field) -> Any:
    refresh()
    return current().by_id[row.entity_id].field_by_name(row.name)


def last_summary(row: Field) -> str:
    return db.session.scalar(
        select(SchemaChange.summary).where(SchemaChange.field_id == row.id).order_by(SchemaChange.id.desc())
    )


def is_postgresql() -> bool:
    return db.engine.dialect.name == "postgresql"


def test_marking_a_field_indexed_builds_a_real_index_and_unmarking_drops_it(app_ctx) -> None:  # noqa: ANN001
    entity = new_table()
    city = new_field(entity, "Город", "text", indexed=True)
    insert(entity, **{city.name: "Казань"})
    db.session.commit()
    assert state(chosen(city)) == "valid"
    assert indexes_on(entity.table_name, city.column_name) == [chosen(city)]
    assert spec_of(city).indexed

    plain = new_field(entity, "Район", "text")
    assert not spec_of(plain).indexed and indexes_on(entity.table_name, plain.column_name) == []
    service.update_field(plain.id, indexed=True)
    db.session.commit()
    assert state(chosen(plain)) == "valid" and spec_of(plain).indexed
    assert "indexed" in last_summary(plain)

    service.update_field(plain.id, indexed=False)
    db.session.commit()
    assert state(chosen(plain)) is None and indexes_on(entity.table_name, plain.column_name) == []
    assert not spec_of(plain).indexed
    assert "not indexed" in last_summary(plain)
    service.update_field(plain.id, label="Район города")  # other changes leave the index alone
    service.update_field(city.id, label="Город (центр)")
    db.session.commit()
    assert state(chosen(plain)) is None and state(chosen(city)) == "valid"


def test_fields_indexed_anyway_show_as_indexed_and_get_no_second_index(app_ctx) -> None:  # noqa: ANN001
    entity = new_table()
    code = new_field(entity, "Код", "text", unique=True, indexed=True)
    link = new_field(entity, "Компания", "link", settings={"target": _entity_id("companies")}, indexed=True)
    for row in (code, link):
        assert has_builtin_index(row) and spec_of(row).indexed
        assert state(chosen(row)) is None
        assert len(indexes_on(entity.table_name, row.column_name)) == 1
    # No longer unique: the admin's choice stands, so the field gets the index it asked for.
    service.update_field(code.id, unique=False)
    db.session.commit()
    assert state(chosen(code)) == "valid" and spec_of(code).indexed
    service.update_field(code.id, unique=True)
    db.session.commit()
    assert state(chosen(code)) is None
    assert indexes_on(entity.table_name, code.column_name) == [f"uq_{entity.table_name}_{code.column_name}"]


def test_a_core_field_gets_an_index_of_its_own_beside_the_models(app_ctx) -> None:  # noqa: ANN001
    phone, region = _core_field("companies", "phone"), _core_field("companies", "region")
    assert has_builtin_index(phone) and spec_of(phone).indexed
    assert not has_builtin_index(region) and not spec_of(region).indexed
    try:
        service.update_field(region.id, indexed=True)
        db.session.commit()
        assert state("ixa_crm_company_region") == "valid" and spec_of(region).indexed
    finally:
        service.update_field(region.id, indexed=False)
        db.session.commit()
    assert state("ixa_crm_company_region") is None
    assert indexes_on("crm_company", "phone") == ["ix_crm_company_phone"]  # the model's own, untouched


def test_type_changes_and_purges_keep_the_index_in_step(app_ctx) -> None:  # noqa: ANN001
    entity = new_table()
    number = new_field(entity, "Номер", "text", indexed=True)
    insert(entity, **{number.name: "42"})
    old_column, old_index = number.column_name, chosen(number)
    service.change_type(number.id, "integer")
    db.session.commit()
    refresh()
    converted = db.session.get(Field, number.id)
    assert converted.column_name != old_column and converted.indexed
    assert indexes_on(entity.table_name, old_column) == []
    assert state(old_index) is None and state(chosen(converted)) == "valid"
    service.archive_field(converted.id)
    service.purge_field(converted.id, confirm_label=converted.label)
    db.session.commit()
    assert state(chosen(converted)) is None
    assert indexes_on(entity.table_name, converted.column_name) == []


def test_the_admin_form_toggles_the_index(app_ctx, admin_client) -> None:  # noqa: ANN001
    entity = new_table()
    entity_id = entity.id
    # PostgreSQL builds the index CONCURRENTLY: it waits for every transaction open at the time, the test's
    # session's too (reading an expired attribute would begin one).
    db.session.commit()
    token = csrf_token(admin_client.get(f"/admin/tables/{entity_id}/").get_data(as_text=True))
    response = admin_client.post(
        f"/admin/tables/{entity_id}/fields/add",
        data={"label": "Склад", "type": "text", "indexed": "y", "show_in_list": "y", "csrf_token": token},
    )
    assert response.status_code == 302
    row = db.session.scalar(select(Field).where(Field.entity_id == entity_id, Field.label == "Склад"))
    field_id, index = row.id, chosen(row)
    db.session.commit()
    assert state(index) == "valid"

    page = admin_client.get(f"/admin/tables/fields/{field_id}/").get_data(as_text=True)
    assert "Indexed (faster sorting and filtering on big tables)" in page
    assert _checkbox(page, "indexed").count("checked") == 1

    def save(**extra: str) -> None:
        html = admin_client.get(f"/admin/tables/fields/{field_id}/").get_data(as_text=True)
        data = {"label": "Склад", "help_text": "", "position": "1", "show_in_list": "y", **extra}
        response = admin_client.post(
            f"/admin/tables/fields/{field_id}/update", data={**data, "csrf_token": csrf_token(html)}
        )
        assert response.status_code == 302

    save()  # the box left unticked
    assert state(index) is None
    db.session.expire_all()
    assert not db.session.get(Field, field_id).indexed
    db.session.commit()
    save(indexed="y")
    assert state(index) == "valid"
    log = admin_client.get("/admin/tables/changes").get_data(as_text=True)
    assert "indexed" in log

    # A link is indexed anyway: the box is ticked, locked, and says why.
    link = new_field(entity, "Компания", "link", settings={"target": _entity_id("companies")})
    db.session.commit()
    page = admin_client.get(f"/admin/tables/fields/{link.id}/").get_data(as_text=True)
    box = _checkbox(page, "indexed")
    assert "checked" in box and "disabled" in box and "Already indexed" in page
    russian = admin_client.get(f"/admin/tables/fields/{field_id}/?_l_=ru").get_data(as_text=True)
    assert "Индекс (быстрая сортировка и фильтрация в больших таблицах)" in russian


# --- PostgreSQL: CONCURRENTLY ------------------------------------------------------------------------------


@pytest.fixture
def postgresql(app_ctx) -> None:  # noqa: ANN001
    if not is_postgresql():
        pytest.skip("CREATE INDEX CONCURRENTLY is PostgreSQL's")


def _in_thread(app: Any, work: Any) -> tuple[threading.Thread, list[Any]]:
    """Run ``work`` in an app context (and database session) of its own; its outcome lands in the list."""
    outcome: list[Any] = []

    def run() -> None:
        with app.app_context():
            try:
                outcome.append(work())
            except Exception as exc:  # noqa: BLE001 (handed to the test)
                outcome.append(exc)
            finally:
                db.session.remove()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _wait_for(predicate: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_postgresql_builds_the_index_concurrently_while_writes_go_on(postgresql, app_ctx) -> None:  # noqa: ANN001
    entity = new_table()
    note = new_field(entity, "Заметка", "text")
    for n in range(50):
        insert(entity, **{note.name: f"запись {n}"})
    table, column, index = entity.table_name, note.column_name, chosen(note)
    field_id = note.id
    db.session.commit()
    row_insert = text(f"INSERT INTO {table} (row_version, {column}) VALUES (1, :v)")  # noqa: S608 (generated names)

    # A writer's transaction is open: the build must wait for it (it may not index a row being written) ...
    writer = db.engine.connect()
    writer.execute(row_insert, {"v": "в работе"})
    thread, outcome = _in_thread(app_ctx, lambda: service.update_field(field_id, indexed=True))
    _wait_for(lambda: state(index) == "invalid")  # started: in the catalog, not yet valid
    # ... yet other writes are not held up behind it (a plain CREATE INDEX would queue them).
    with db.engine.connect() as other:
        other.execute(text("SET lock_timeout = '2s'"))
        other.execute(row_insert, {"v": "не ждёт"})
        other.commit()
    assert state(index) == "invalid" and thread.is_alive()
    assert not flag(field_id)  # the field says "indexed" only once its index is valid
    writer.commit()
    writer.close()
    thread.join(60)
    assert outcome and not isinstance(outcome[0], Exception), outcome
    assert state(index) == "valid"
    db.session.expire_all()
    assert db.session.get(Field, field_id).indexed
    with db.engine.connect() as conn:
        assert (
            conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": index})
            .scalar_one()
            .startswith("CREATE INDEX")
        )


def test_a_plain_create_index_would_hold_writes_up(postgresql, app_ctx) -> None:  # noqa: ANN001
    """The control for the test above: its setup does tell a blocking build from a concurrent one."""
    entity = new_table()
    note = new_field(entity, "Заметка", "text")
    table, column = entity.table_name, note.column_name
    db.session.commit()
    row_insert = text(f"INSERT INTO {table} (row_version, {column}) VALUES (1, 'x')")  # noqa: S608
    writer = db.engine.connect()
    writer.execute(row_insert)

    def plain_build() -> None:
        with db.engine.connect() as conn:
            conn.execute(text(f"CREATE INDEX ix_control_{table} ON {table} ({column})"))
            conn.commit()

    thread, outcome = _in_thread(app_ctx, plain_build)
    with db.engine.connect() as conn:
        waiting = text("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = to_regclass(:t)")
        _wait_for(lambda: conn.execute(waiting, {"t": table}).scalar() > 0)
        conn.rollback()
    with db.engine.connect() as other, pytest.raises(Exception, match="lock timeout"):
        other.execute(text("SET lock_timeout = '500ms'"))
        other.execute(row_insert)
    writer.commit()
    writer.close()
    thread.join(60)
    assert outcome == [None]
    with db.engine.connect() as conn:
        conn.execute(text(f"DROP INDEX ix_control_{table}"))
        conn.commit()


def test_a_failed_concurrent_build_is_reported_and_cleaned_up(postgresql, app_ctx, monkeypatch) -> None:  # noqa: ANN001
    entity = new_table()
    note = new_field(entity, "Заметка", "text")
    table, column, index, field_id = entity.table_name, note.column_name, chosen(note), note.id
    db.session.commit()
    monkeypatch.setattr(ddl, "INDEX_BUILD_LOCK_TIMEOUT", "300ms")
    writer = db.engine.connect()  # a transaction that outlasts the build's patience
    writer.execute(text(f"INSERT INTO {table} (row_version, {column}) VALUES (1, 'x')"))  # noqa: S608
    try:
        with pytest.raises(service.IndexBuildFailed, match="lock timeout"):
            service.update_field(field_id, indexed=True)
        db.session.expire_all()
        row = db.session.get(Field, field_id)
        assert not row.indexed and not spec_of(row).indexed
        assert "build failed" in last_summary(row)
        db.session.commit()
        assert state(index) != "valid"  # what it left (while the writer holds on) is not used
    finally:
        writer.rollback()
        writer.close()
    # Once the table is free, the next attempt clears what is left and builds a valid index.
    service.update_field(field_id, indexed=True)
    db.session.commit()
    assert state(index) == "valid" and indexes_on(table, column) == [index]


def _snapshot_holder() -> Any:
    """Another user's transaction that holds a snapshot (REPEATABLE READ, reading another table): a
    CONCURRENTLY build waits for it before its index becomes valid; nothing else does."""
    holder = db.engine.connect()
    holder.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
    holder.execute(text("SELECT count(*) FROM tabula_schema_state"))
    return holder


@pytest.mark.parametrize("type_name", ["link", "user"])
def test_a_new_link_or_user_field_gets_its_index_concurrently_while_writes_go_on(
    postgresql, app_ctx, type_name: str  # noqa: ANN001
) -> None:  # fmt: skip
    """Adding a link or user field to a big table: the column is added (metadata only) and committed, then
    its index is built CONCURRENTLY: writers and readers of the table are not held up behind the build (in
    the change's transaction it would hold the new column's lock, which queues even readers)."""
    entity = new_table()
    note = new_field(entity, "Заметка", "text")
    for n in range(50):
        insert(entity, **{note.name: f"запись {n}"})
    table, column = entity.table_name, note.column_name
    db.session.commit()
    row_insert = text(f"INSERT INTO {table} (row_version, {column}) VALUES (1, :v)")  # noqa: S608
    settings = {"target": _entity_id("companies")} if type_name == "link" else None
    db.session.rollback()  # this test's own session holds no snapshot the build would wait for
    holder = _snapshot_holder()
    thread, outcome = _in_thread(
        app_ctx, lambda: service.add_field(entity.id, "Связь", type_name, settings=settings).id
    )
    _wait_for(lambda: _new_index(table) is not None)
    index = _new_index(table)
    assert state(index) == "invalid" and thread.is_alive()  # built, waiting for the old snapshot
    with db.engine.connect() as other:  # the field is saved: its column is written and read meanwhile
        other.execute(text("SET lock_timeout = '1s'"))
        other.execute(row_insert, {"v": "не ждёт"})
        assert other.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 51  # noqa: S608
        other.commit()
    holder.rollback()
    holder.close()
    db.session.rollback()  # nor does this test's session (the build waits for every older snapshot)
    thread.join(60)
    assert outcome and not isinstance(outcome[0], Exception), outcome
    assert state(index) == "valid"
    row = db.session.get(Field, outcome[0])
    assert index == ddl.index_name(table, row.column_name, False) and spec_of(row).indexed


def test_a_new_unique_field_is_unique_once_its_index_is_built_concurrently(postgresql, app_ctx) -> None:  # noqa: ANN001
    entity = new_table()
    code = new_field(entity, "Код", "text", unique=True)
    db.session.expire_all()
    row = db.session.get(Field, code.id)
    assert row.unique and spec_of(row).unique
    assert indexes_on(entity.table_name, row.column_name) == [f"uq_{entity.table_name}_{row.column_name}"]
    assert state(f"uq_{entity.table_name}_{row.column_name}") == "valid"


def test_a_failed_link_index_build_is_reported_and_saving_the_field_builds_it(
    postgresql, app_ctx, monkeypatch  # noqa: ANN001
) -> None:  # fmt: skip
    entity = new_table()
    table = entity.table_name
    db.session.commit()
    monkeypatch.setattr(ddl, "INDEX_BUILD_LOCK_TIMEOUT", "300ms")
    target = _entity_id("companies")
    db.session.rollback()
    holder = _snapshot_holder()  # outlasts the build's patience
    try:
        with pytest.raises(service.IndexBuildFailed):
            service.add_field(entity.id, "Компания", "link", settings={"target": target})
    finally:
        holder.rollback()
        holder.close()
    db.session.rollback()
    row = db.session.scalar(select(Field).where(Field.entity_id == entity.id, Field.label == "Компания"))
    assert row is not None and state(ddl.index_name(table, row.column_name, False)) != "valid"
    db.session.rollback()
    service.update_field(row.id, label="Компания клиента")  # any save builds what is missing
    assert state(ddl.index_name(table, row.column_name, False)) == "valid"


def _new_index(table_name: str) -> str | None:
    with db.engine.connect() as conn:
        return conn.execute(
            text("SELECT indexname FROM pg_indexes WHERE tablename = :t AND indexname LIKE 'ix\\_%\\_f\\_%'"),
            {"t": table_name},
        ).scalar()


# --- helpers -----------------------------------------------------------------------------------------------


def _entity_id(slug: str) -> int:
    return db.session.scalar(select(Entity.id).where(Entity.slug == slug))


def _core_field(slug: str, name: str) -> Field:
    return db.session.scalar(
        select(Field)
        .join(Entity, Field.entity_id == Entity.id)
        .where(Entity.slug == slug, Field.name == name)
    )


def _checkbox(html: str, name: str) -> str:
    start = html.index(f'name="{name}"')
    return html[html.rindex("<input", 0, start) : html.index(">", start) + 1]


def test_a_unique_index_kept_waiting_says_the_table_was_busy_not_that_records_conflict(
    postgresql, app_ctx, monkeypatch  # noqa: ANN001
) -> None:  # fmt: skip
    """A concurrent build waits for every transaction holding an older snapshot; when it gives up, the admin
    is told the table was busy and the field is saved, not unique yet: no data conflict is claimed."""
    entity = new_table()
    entity_id, table_name = entity.id, entity.table_name
    db.session.commit()
    monkeypatch.setattr(ddl, "INDEX_BUILD_LOCK_TIMEOUT", "1s")
    reader = db.engine.connect()
    reader.exec_driver_sql("BEGIN ISOLATION LEVEL REPEATABLE READ")
    reader.execute(text("SELECT count(*) FROM tabula_entity")).scalar()  # a snapshot the build must outwait
    try:
        with pytest.raises(service.SchemaError) as refused:
            service.add_field(entity_id, "Артикул", "text", unique=True)
    finally:
        reader.rollback()
        reader.close()
    assert "busy" in str(refused.value) and "conflict" not in str(refused.value)
    db.session.expire_all()
    row = db.session.scalar(select(Field).where(Field.entity_id == entity_id, Field.label == "Артикул"))
    assert row is not None and not row.unique
    assert indexes_on(table_name, row.column_name) == []  # the unfinished build left nothing behind
    service.update_field(row.id, unique=True)  # with the table free, saving again makes it unique
    db.session.expire_all()
    assert db.session.get(Field, row.id).unique
