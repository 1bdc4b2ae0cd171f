# ruff: noqa: S608 (identifiers the system generated, in SQL of a second connection)
"""Type changes by copy and swap on PostgreSQL (``custom_fields.shadow_table``): the rows go, converted,
into a shadow table kept in step by a trigger, which then takes the table's place. Writes, deletes and
inserts made meanwhile arrive; the table keeps its indexes, sequence and the foreign keys to and from it;
a cancel, a change of the table meanwhile or a killed process leave it exactly as it was."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from custom_fields import ddl, online, service, shadow_table
from custom_fields.runtime import current, refresh
from models import Field, SchemaChange
from tests.tables_helpers import new_field, new_table
from tests.test_schema_online import Neighbour, beside, clean_up_after_the_dead, kill_mid_conversion

ROWS = 3000


@pytest.fixture
def pg(app_ctx):  # noqa: ANN001, ANN201
    if db.engine.dialect.name != "postgresql":
        pytest.skip("copy and swap is PostgreSQL's; SQLite converts in one transaction")
    return app_ctx


def _table_of_numbers() -> tuple[Any, Field, Field, Field]:
    """A table whose codes are all digits (SQL converts every one), a unique SKU and an indexed note."""
    entity = new_table()
    code = new_field(entity, "Код", "text")
    sku = new_field(entity, "Артикул", "text", unique=True)
    note = new_field(entity, "Заметка", "text", indexed=True)
    rows = [
        {code.column_name: str(i), sku.column_name: f"SKU-{i}", note.column_name: "x"}
        for i in range(1, ROWS + 1)
    ]
    with db.engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {entity.table_name} (row_version, {code.column_name}, {sku.column_name}, "
                f"{note.column_name}) "
                f"VALUES (1, :{code.column_name}, :{sku.column_name}, :{note.column_name})"
            ),
            rows,
        )
    return entity, code, sku, note


def _oid(table_name: str) -> int:
    with db.engine.connect() as conn:
        return conn.execute(text("SELECT to_regclass(:t)::oid"), {"t": table_name}).scalar()


def _indexes(table_name: str) -> dict[str, bool]:
    with db.engine.connect() as conn:
        return dict(
            conn.execute(
                text(
                    "SELECT indexrelid::regclass::text, indisvalid FROM pg_index "
                    "WHERE indrelid = to_regclass(:t)"
                ),
                {"t": table_name},
            ).all()
        )


def _leftovers(field_id: int) -> list[str]:
    with db.engine.connect() as conn:
        return list(
            conn.scalars(
                text("SELECT relname FROM pg_class WHERE relname IN (:s, :d)"),
                {"s": shadow_table.shadow_name(field_id), "d": shadow_table.log_name(field_id)},
            )
        )


def test_copy_and_swap_converts_while_others_read_write_and_delete(pg, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(online, "FILL_BATCH", 500)
    entity, code, sku, note = _table_of_numbers()
    referring = new_table()
    link = new_field(referring, "Запись", "link", settings={"target": entity.id})
    with db.engine.begin() as conn:
        conn.execute(
            text(f"INSERT INTO {referring.table_name} (row_version, {link.column_name}) VALUES (1, 10)")
        )
    oid, indexes_before = _oid(entity.table_name), _indexes(entity.table_name)
    reader = f"tabula_reader_{uuid.uuid4().hex[:12]}"  # a role the DBA granted reading (cluster-wide)
    with db.engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {reader}"))
        conn.execute(text(f"GRANT SELECT ON {entity.table_name} TO {reader}"))
    caught_up = shadow_table.catch_up

    def catch_up_then_write(*args: Any, **kwargs: Any) -> None:
        caught_up(*args, **kwargs)
        with db.engine.begin() as conn:  # after the last round before the swap: only the swap copies it
            conn.execute(text(f"UPDATE {entity.table_name} SET {code.column_name} = '66' WHERE id = 6"))

    monkeypatch.setattr(shadow_table, "catch_up", catch_up_then_write)
    neighbour = Neighbour(entity.table_name, code.column_name, note.column_name)
    made: dict[str, int] = {}

    def progress(done: int, total: int) -> None:
        if not made:  # mid-copy, from another connection: an edit, a new record and a deletion
            with db.engine.begin() as conn:
                conn.execute(text(f"UPDATE {entity.table_name} SET {code.column_name} = '555' WHERE id = 5"))
                conn.execute(
                    text(f"DELETE FROM {entity.table_name} WHERE id IN (3, 2900)")
                )  # copied / not yet
                made["new"] = conn.execute(
                    text(
                        f"INSERT INTO {entity.table_name} "
                        f"(row_version, {code.column_name}, {sku.column_name}) "
                        "VALUES (1, '77', 'NEW') RETURNING id"
                    )
                ).scalar()
        if done == total:
            neighbour.swapped.set()
        time.sleep(0.05)

    changed = beside(neighbour, lambda: service.change_type(code.id, "integer", progress=progress))
    assert neighbour.errors == [] and neighbour.statements > 50
    assert neighbour.longest < 1.0, neighbour.longest
    assert _oid(entity.table_name) != oid  # copied and swapped, not converted in place
    stored = dict(
        db.session.execute(text(f"SELECT id, {changed.column_name} FROM {entity.table_name}")).all()
    )
    assert stored[5] == 555 and stored[made["new"]] == 77 and 3 not in stored and 2900 not in stored
    assert stored[6] == 66
    assert stored[1] == 1 and len(stored) == ROWS - 1
    # The neighbour's edits of the code made before the copy ended arrived (7000 + i), and of the note.
    assert any(v > 7000 for v in stored.values())
    notes = db.session.execute(
        text(f"SELECT count(*) FROM {entity.table_name} WHERE {note.column_name} <> 'x'")
    )
    assert notes.scalar() > 0
    db.session.rollback()

    # The same indexes (the old column's had none), valid; the unique one still refuses a twin.
    assert _indexes(entity.table_name) == indexes_before
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        conn.execute(
            text(f"INSERT INTO {entity.table_name} (row_version, {sku.column_name}) VALUES (1, 'sku-7')")
        )
    # The sequence goes on where it was; the foreign keys to and from the table hold, validated.
    with db.engine.begin() as conn:
        next_id = conn.execute(
            text(f"INSERT INTO {entity.table_name} (row_version) VALUES (1) RETURNING id")
        ).scalar()
        assert next_id > made["new"]
        assert conn.execute(
            text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": entity.table_name}
        ).scalar()
        checked = dict(
            conn.execute(
                text(
                    "SELECT conname, convalidated FROM pg_constraint "
                    "WHERE (confrelid = to_regclass(:t) OR conrelid = to_regclass(:t)) AND contype = 'f'"
                ),
                {"t": entity.table_name},
            ).all()
        )
        assert set(checked) == {
            f"fk_{entity.table_name}_owner_id",
            f"{referring.table_name}_{link.column_name}_fkey",
        }
        assert all(checked.values()), checked
        conn.execute(text(f"DELETE FROM {entity.table_name} WHERE id = 10"))
        kept = conn.execute(text(f"SELECT {link.column_name} FROM {referring.table_name}")).scalar()
        assert kept is None  # ON DELETE SET NULL, as before
    assert _leftovers(code.id) == []
    with db.engine.begin() as conn:
        granted = conn.execute(
            text(f"SELECT has_table_privilege('{reader}', '{entity.table_name}', 'SELECT')")
        )
        assert granted.scalar() is True
        conn.execute(text(f"DROP OWNED BY {reader}"))
        conn.execute(text(f"DROP ROLE {reader}"))
    entry = db.session.scalars(
        select(SchemaChange).where(SchemaChange.field_id == code.id, SchemaChange.action == "change_type")
    ).one()
    assert f"{ROWS - 1} values converted" in entry.summary  # two deleted, one added meanwhile
    refresh()
    model = current().classes[entity.slug]
    assert db.session.get(model, 5).__dict__[changed.name] == 555


def test_a_cancelled_copy_leaves_the_table_as_it_was(pg, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(online, "FILL_BATCH", 500)
    entity, code, _sku, _note = _table_of_numbers()
    oid = _oid(entity.table_name)

    class Stop(Exception):  # noqa: N818
        pass

    def progress(done: int, total: int) -> None:
        if done >= 1000:
            raise Stop()

    with pytest.raises(Stop):
        service.change_type(code.id, "integer", progress=progress)
    db.session.expire_all()
    row = db.session.get(Field, code.id)
    assert (row.type, row.column_name) == ("text", code.column_name)
    assert _oid(entity.table_name) == oid and _leftovers(code.id) == []
    with db.engine.connect() as conn:
        triggers = conn.execute(
            text("SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass(:t) AND NOT tgisinternal"),
            {"t": entity.table_name},
        ).scalar()
    assert triggers == 0


def test_a_table_changed_during_the_copy_is_left_as_it_was(pg, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(online, "FILL_BATCH", 500)
    entity, code, _sku, _note = _table_of_numbers()
    oid = _oid(entity.table_name)
    added: list[Field] = []

    def progress(done: int, total: int) -> None:
        if not added:  # another admin adds a field meanwhile: the copy has no column for it
            added.append(service.add_field(entity.id, "Новое поле", "text"))

    with pytest.raises(service.SchemaError, match="Another change was made to the table"):
        service.change_type(code.id, "integer", progress=progress)
    db.session.expire_all()
    assert db.session.get(Field, code.id).type == "text"
    assert _oid(entity.table_name) == oid and _leftovers(code.id) == []
    columns = {c for (c,) in db.session.execute(
        text("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(:t) AND attnum > 0"),
        {"t": entity.table_name},
    )}  # fmt: skip
    assert added[0].column_name in columns


def test_values_python_converts_keep_the_conversion_in_place(pg) -> None:  # noqa: ANN001
    entity, code, _sku, _note = _table_of_numbers()
    with db.engine.begin() as conn:
        conn.execute(text(f"UPDATE {entity.table_name} SET {code.column_name} = ' 12 ' WHERE id = 12"))
    oid = _oid(entity.table_name)
    changed = service.change_type(code.id, "integer")
    assert _oid(entity.table_name) == oid and _leftovers(code.id) == []
    value = db.session.execute(text(f"SELECT {changed.column_name} FROM {entity.table_name} WHERE id = 12"))
    assert value.scalar() == 12


def test_a_killed_copy_leaves_the_table_and_is_cleaned_up(pg, env) -> None:  # noqa: ANN001
    entity, code, _sku, _note = _table_of_numbers()
    oid = _oid(entity.table_name)
    kill_mid_conversion(code.id, env)
    db.session.expire_all()
    row = db.session.get(Field, code.id)
    assert (row.type, row.column_name) == ("text", code.column_name)
    assert _oid(entity.table_name) == oid
    assert sorted(_leftovers(code.id)) == sorted(
        [shadow_table.shadow_name(code.id), shadow_table.log_name(code.id)]
    )  # the half-made copy, not in use
    removed = clean_up_after_the_dead()
    assert removed == [ddl.conversion_trigger_name(entity.table_name, code.column_name)]
    assert _leftovers(code.id) == []
    with db.engine.begin() as conn:  # writes to the table work again (the trigger is gone)
        conn.execute(text(f"UPDATE {entity.table_name} SET {code.column_name} = '1' WHERE id = 1"))
    changed = service.change_type(code.id, "integer")
    assert changed.type == "integer" and _oid(entity.table_name) != oid


def test_a_custom_field_of_the_deals_table_converts_by_copy(pg) -> None:  # noqa: ANN001
    """A core table: Alembic's indexes and constraints, and foreign keys from activities, invoices and
    more, all carried over to the copy under their own names."""
    from models import Entity

    deals = db.session.scalar(select(Entity).where(Entity.slug == "deals"))
    amount = new_field(deals, "Сумма текстом", "text")
    with db.engine.begin() as conn:
        conn.execute(text(f"UPDATE crm_deal SET {amount.column_name} = (id * 10)::text"))
        count = conn.execute(text("SELECT count(*) FROM crm_deal")).scalar()

    def catalog() -> tuple[set[str], set[tuple[str, str, bool]]]:
        with db.engine.connect() as conn:
            indexes = set(_indexes("crm_deal"))
            keys = {
                (name, table, valid)
                for name, table, valid in conn.execute(
                    text(
                        "SELECT conname, conrelid::regclass::text, convalidated FROM pg_constraint "
                        "WHERE conrelid = 'crm_deal'::regclass OR confrelid = 'crm_deal'::regclass"
                    )
                )
            }
        return indexes, keys

    oid, before = _oid("crm_deal"), catalog()
    assert len([k for k in before[1] if k[1] != "crm_deal"]) >= 3  # tables that refer to deals
    changed = service.change_type(amount.id, "integer")
    assert _oid("crm_deal") != oid
    assert catalog() == before  # the same indexes and constraints, all valid
    with db.engine.connect() as conn:
        values = conn.execute(text(f"SELECT id, {changed.column_name} FROM crm_deal")).all()
    assert count > 0 and len(values) == count and all(value == record * 10 for record, value in values)
    refresh()
    from models import Deal

    db.session.expire_all()
    assert db.session.scalars(select(Deal)).first() is not None  # the model reads the swapped table


def test_a_generated_column_and_a_check_a_dba_added_are_carried_over(pg) -> None:  # noqa: ANN001
    entity, code, _sku, _note = _table_of_numbers()
    with db.engine.begin() as conn:
        conn.execute(
            text(
                f"ALTER TABLE {entity.table_name} "
                "ADD COLUMN doubled bigint GENERATED ALWAYS AS (id * 2) STORED"
            )
        )
        conn.execute(
            text(f"ALTER TABLE {entity.table_name} ADD CONSTRAINT positive_version CHECK (row_version > 0)")
        )
    oid = _oid(entity.table_name)
    changed = service.change_type(code.id, "integer")
    assert _oid(entity.table_name) != oid
    with db.engine.begin() as conn:
        rows = conn.execute(text(f"SELECT id, doubled, {changed.column_name} FROM {entity.table_name}")).all()
        assert rows and all(doubled == record * 2 and value == record for record, doubled, value in rows)
        with pytest.raises(IntegrityError), conn.begin_nested():
            conn.execute(text(f"INSERT INTO {entity.table_name} (row_version) VALUES (0)"))
        added = conn.execute(
            text(f"INSERT INTO {entity.table_name} (row_version) VALUES (1) RETURNING id, doubled")
        )
        record, doubled = added.one()
        assert doubled == record * 2


def test_a_unique_text_field_becomes_a_unique_number_by_copy(pg) -> None:  # noqa: ANN001
    """The old column's index (on ``lower(...)``) stays behind; the new one's is built on the copy."""
    entity, _code, sku, _note = _table_of_numbers()
    with db.engine.begin() as conn:
        conn.execute(text(f"UPDATE {entity.table_name} SET {sku.column_name} = id::text"))
    oid, old_column = _oid(entity.table_name), sku.column_name
    changed = service.change_type(sku.id, "integer")
    assert _oid(entity.table_name) != oid and changed.unique
    indexes = _indexes(entity.table_name)
    assert ddl.index_name(entity.table_name, changed.column_name, unique=True) in indexes
    assert ddl.index_name(entity.table_name, old_column, unique=True) not in indexes
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        conn.execute(
            text(f"INSERT INTO {entity.table_name} (row_version, {changed.column_name}) VALUES (1, 7)")
        )


def test_a_unique_value_moved_between_records_during_the_copy(pg, monkeypatch) -> None:  # noqa: ANN001
    """Taken from a record already copied and given to one not copied yet: the copy holds it twice until
    the log is applied, which happens before the unique index is built."""
    monkeypatch.setattr(online, "FILL_BATCH", 500)
    entity, code, sku, _note = _table_of_numbers()
    moved: list[bool] = []

    def progress(done: int, total: int) -> None:
        if not moved:
            with db.engine.begin() as conn:
                conn.execute(text(f"UPDATE {entity.table_name} SET {sku.column_name} = 'MOVED' WHERE id = 1"))
                conn.execute(
                    text(f"UPDATE {entity.table_name} SET {sku.column_name} = 'SKU-1' WHERE id = 2900")
                )
            moved.append(True)

    oid = _oid(entity.table_name)
    changed = service.change_type(code.id, "integer", progress=progress)
    assert _oid(entity.table_name) != oid and changed.type == "integer"
    with db.engine.connect() as conn:
        skus = dict(
            conn.execute(
                text(f"SELECT id, {sku.column_name} FROM {entity.table_name} WHERE id IN (1, 2900)")
            ).all()
        )
    assert skus == {1: "MOVED", 2900: "SKU-1"}
