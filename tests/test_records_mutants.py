"""The write path decided one case at a time, as ``make mutation MODULE=custom_fields/records.py`` needs it:
``custom_fields.records`` called directly (no HTTP, no worker) with an ``Actor``, where a bug would lose or
leak data. Refusals change nothing; a stale version is refused with the current values; a no-op writes
nothing; history says who, from where, which field, old and new, one change set per batch; soft delete,
restore and who may restore; the purge removes only what expired. The same rules through the screens and
the API: tests/test_write_path.py, tests/test_unique_values.py, tests/test_untouched_saves.py."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import delete as sa_delete
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

from app.extensions import db
from custom_fields import access, ddl, history, hooks, records, runtime
from custom_fields.access import Actor
from custom_fields.runtime import current, refresh
from models import Entity, Field
from models.records import RecordChange
from models.system import utcnow
from tests.tables_helpers import new_field, new_table, unique_label


def role_id(name: str) -> int:
    from flask_appbuilder.security.sqla.models import Role

    return db.session.scalar(select(Role.id).where(Role.name == name))


def user_id(username: str) -> int:
    from flask_appbuilder.security.sqla.models import User

    return db.session.scalar(select(User.id).where(User.username == username))


def actor(username: str, source: str = "job") -> Actor:
    return Actor.for_user_id(user_id(username), source)


def own_only_table(label: str) -> tuple[Entity, str]:
    """A new table in which Staff read every record, add new ones, and edit and bin only their own; with the
    name of its display field."""
    entity = new_table(unique_label(label))
    access.save_rules(
        role_id("Staff"),
        tables={entity.id: {"read": True, "add": True, "edit": True, "delete": True, "read_scope": "all",
                            "edit_scope": "own", "delete_scope": "own"}},
    )  # fmt: skip
    refresh()
    return entity, db.session.get(Field, entity.display_field_id).name


class Table:
    """One table for the whole module (creating a table costs seconds; each mutant's run pays it once): a
    unique code, a number, a secret (hidden from Staff), a locked field (view-only for Staff), a link to
    the same table and a required field with a default. Staff reach every record of it."""

    def __init__(self) -> None:
        entity = new_table(unique_label("Мутанты"))
        self.entity_id = entity.id
        self.slug = entity.slug
        fields = {
            "name": db.session.get(Field, entity.display_field_id),
            "code": new_field(entity, "Код", "text", unique=True),
            "count": new_field(entity, "Штук", "integer"),
            "secret": new_field(entity, "Секрет", "text"),
            "locked": new_field(entity, "Скидка", "integer"),
            "link": new_field(entity, "Ссылка", "link", settings={"target": entity.id}),
            "must": new_field(entity, "Обязательное", "text", required=True, default="есть"),
            "tag": new_field(entity, "Метка", "text", unique=True),  # a second unique field, after "code"
        }
        self.ids = {row.name: row.id for row in fields.values()}
        self.name, self.code, self.count, self.secret, self.locked, self.link, self.must, self.tag = (
            row.name for row in fields.values()
        )
        access.save_rules(
            role_id("Staff"),
            tables={entity.id: {"read": True, "add": True, "edit": True, "delete": True, "read_scope": "all",
                                "edit_scope": "all", "delete_scope": "all"}},
            fields={self.ids[self.secret]: "hidden", self.ids[self.locked]: "view"},
        )  # fmt: skip
        refresh()

    def row(self, pk: int) -> dict[str, Any]:
        db.session.expire_all()
        tbl = current().classes[self.slug].__table__
        found = db.session.execute(select(tbl).where(tbl.c.id == pk)).mappings().first()
        assert found is not None
        return {tbl.c[c].key: v for c, v in found.items()}

    def count_rows(self) -> int:
        tbl = current().classes[self.slug].__table__
        return db.session.scalar(select(func.count()).select_from(tbl))

    def history(self, pk: int) -> list[history.Line]:
        return history.lines(self.entity_id, pk)

    def field_id(self, name: str) -> int:
        return self.ids[name]


@pytest.fixture(scope="module")
def shared_table(app) -> Table:  # noqa: ANN001
    with app.app_context():
        return Table()


@pytest.fixture
def t(app_ctx, shared_table: Table) -> Table:  # noqa: ANN001
    return shared_table


ADMIN = Actor.system_job


# --- create -------------------------------------------------------------------------------------------------


def test_create_writes_values_owner_version_and_history(t: Table) -> None:
    staff = actor("staff1", "api")
    saved = records.create(t.slug, {t.name: "Первая", t.count: "3"}, staff)
    assert saved.version == 1
    row = t.row(saved.id)
    assert (row[t.name], row[t.count], row["row_version"], row["owner_id"]) == ("Первая", 3, 1, staff.user_id)
    assert row[t.must] == "есть" and row["deleted_at"] is None
    lines = t.history(saved.id)
    assert {line.changeset for line in lines} == {lines[0].changeset} and len(lines[0].changeset) == 32
    assert [(x.action, x.field_id, x.old_value, x.new_value) for x in lines] == [
        ("create", None, None, None),
        ("create", t.field_id(t.name), None, "Первая"),
        ("create", t.field_id(t.count), None, 3),
        ("create", t.field_id(t.must), None, "есть"),
    ]
    assert {(x.user_id, x.source) for x in lines} == {(staff.user_id, "api")}


def test_create_many_is_one_change_set_and_keeps_the_order(t: Table) -> None:
    saved = records.create_many(t.slug, [{t.name: "A"}, {t.name: "B"}, {t.name: "C"}], ADMIN())
    assert [t.row(s.id)[t.name] for s in saved] == ["A", "B", "C"]
    assert [s.version for s in saved] == [1, 1, 1]
    sets = {line.changeset for s in saved for line in t.history(s.id)}
    assert len(sets) == 1
    assert t.row(saved[0].id)["owner_id"] is None  # the system job owns nothing


def test_an_owner_given_is_kept(app_ctx) -> None:  # noqa: ANN001
    """A table with an Owner field (companies): the owner given wins over whoever creates the record."""
    other, admin = user_id("staff2"), actor("admin")
    given = records.create("companies", {"name": unique_label("Владелец"), "owner_id": other}, admin).id
    mine = records.create("companies", {"name": unique_label("Моя")}, admin).id
    model = current().classes["companies"]
    db.session.expire_all()
    assert (db.session.get(model, given).owner_id, db.session.get(model, mine).owner_id) == (
        other,
        admin.user_id,
    )


def test_refused_creates_change_nothing(t: Table) -> None:
    before = t.count_rows()
    nobody = Actor(user_id("staff1"), frozenset(), "ui")
    with pytest.raises(records.AccessDenied) as denied:
        records.create(t.slug, {t.name: "X"}, nobody)
    assert str(denied.value) == "You may not do this in this table."
    with pytest.raises(records.RecordNotFound) as missing:
        records.create("no_such_table", {t.name: "X"}, ADMIN())
    assert missing.value.message == "No such table."
    with pytest.raises(records.RecordInvalid) as invalid:
        records.create_many(t.slug, [{t.name: "ok"}, {t.count: "много"}, {t.name: "ok2"}], ADMIN())
    assert list(invalid.value.rows) == [1] and t.count in invalid.value.rows[1]
    with pytest.raises(records.RecordInvalid) as invalid:
        records.create(t.slug, {t.name: "X", t.link: 10**9}, ADMIN())
    assert invalid.value.errors == {t.link: f"Record {10**9} does not exist."}
    assert str(invalid.value) == f"{t.link}: Record {10**9} does not exist."
    with pytest.raises(records.RecordInvalid) as invalid:
        records.create(t.slug, {t.name: "X", t.must: ""}, ADMIN())
    assert invalid.value.errors == {t.must: "This field is required."}
    assert t.count_rows() == before


def test_field_rights_on_create(t: Table) -> None:
    staff = actor("staff1")
    with pytest.raises(records.RecordInvalid) as invalid:
        records.create(t.slug, {t.name: "X", t.secret: "s", t.locked: 1, "nope" * 40: 1}, staff)
    assert invalid.value.errors == {
        t.secret: "No such field.",
        t.locked: "You may not change this field.",
        ("nope" * 40)[:100]: "No such field.",
    }
    assert records.create(t.slug, {t.name: "Y"}, staff).version == 1


def test_a_field_filled_in_automatically_and_a_bad_value_are_refused_in_words(t: Table) -> None:
    """Even an administrator may not set "created at" (the write path fills it); a value its type cannot
    read is refused with the type's own words. Nothing is written."""
    admin = actor("admin", "ui")
    before = db.session.scalar(select(func.count()).select_from(current().classes["companies"]))
    with pytest.raises(records.RecordInvalid) as invalid:
        records.create("companies", {"name": unique_label("Авто"), "created_at": "01.01.2020"}, admin)
    assert invalid.value.errors == {"created_at": "This field is filled in automatically."}
    assert db.session.scalar(select(func.count()).select_from(current().classes["companies"])) == before
    with pytest.raises(records.RecordInvalid) as invalid:
        records.create(t.slug, {t.name: "Число", t.count: "плохо"}, ADMIN())
    assert invalid.value.errors == {t.count: "Expected a whole number."}


def test_a_record_wide_check_runs_for_every_row_of_a_batch(app_ctx) -> None:  # noqa: ANN001
    """A type's check against the rest of the record (a tax id unless the company is foreign) is not
    stopped by a row that needs none (one whose change touches neither): the second company's tax id,
    changed to a foreign one without marking it foreign, is refused; nothing is written."""
    admin = actor("admin", "ui")
    first, second = (records.create("companies", {"name": unique_label("Компания")}, admin) for _ in range(2))
    with pytest.raises(records.RecordInvalid) as invalid:
        records.update_many(
            "companies",
            [(first.id, {"name": unique_label("Новое имя")}, 1), (second.id, {"tax_id": "GB-123"}, 1)],
            admin,
        )
    assert list(invalid.value.rows) == [1] and list(invalid.value.rows[1]) == ["tax_id"]
    companies = current().classes["companies"]
    assert [db.session.get(companies, c.id).row_version for c in (first, second)] == [1, 1]


def test_a_link_to_a_deleted_record_is_refused(t: Table) -> None:
    target = records.create(t.slug, {t.name: "Цель"}, ADMIN()).id
    linked = records.create(t.slug, {t.name: "Ссылается", t.link: target}, ADMIN())
    assert t.row(linked.id)[t.link] == target
    records.delete(t.slug, target, ADMIN())
    with pytest.raises(records.RecordInvalid) as invalid:
        records.create(t.slug, {t.name: "Z", t.link: target}, ADMIN())
    assert invalid.value.errors == {t.link: f"Record {target} does not exist."}


def test_unique_values_letter_case_batch_and_recycle_bin(t: Table) -> None:
    first = records.create(t.slug, {t.name: "A", t.code: "Код-1"}, ADMIN()).id
    taken = "Another record already has this value."
    with pytest.raises(records.RecordInvalid) as invalid:
        records.create(t.slug, {t.name: "B", t.code: "КОД-1"}, ADMIN())
    assert invalid.value.errors == {t.code: taken}
    with pytest.raises(records.RecordInvalid) as invalid:
        records.create_many(t.slug, [{t.name: "C", t.code: "q"}, {t.name: "D", t.code: "Q"}], ADMIN())
    assert invalid.value.rows == {1: {t.code: taken}}
    second = records.create(t.slug, {t.name: "E", t.code: "другой"}, ADMIN()).id
    with pytest.raises(records.RecordInvalid) as invalid:
        records.update(t.slug, second, {t.code: "код-1"}, ADMIN(), expected_version=1)
    assert invalid.value.errors == {t.code: taken}
    assert t.row(second)[t.code] == "другой" and t.row(second)["row_version"] == 1
    # Its own value again (another letter case) is no clash.
    assert records.update(t.slug, first, {t.code: "код-1"}, ADMIN(), expected_version=1).version == 2
    records.delete(t.slug, first, ADMIN())
    with pytest.raises(records.RecordInvalid) as invalid:
        records.create(t.slug, {t.name: "F", t.code: "КОД-1"}, ADMIN())
    assert invalid.value.errors == {t.code: "A record in the recycle bin already has this value."}


def test_the_message_of_refused_values() -> None:
    assert (records.RecordInvalid().rows, str(records.RecordInvalid())) == ({}, "")
    one = records.RecordInvalid({"a": "bad"})
    assert (one.rows, one.errors, str(one)) == ({0: {"a": "bad"}}, {"a": "bad"}, "a: bad")
    six = records.RecordInvalid({f"f{i}": "x" for i in range(6)})
    assert str(six) == "f0: x; f1: x; f2: x; f3: x; f4: x"
    rows = records.RecordInvalid(rows={3: {"b": "no"}})
    assert (rows.errors, rows.rows, str(rows)) == ({}, {3: {"b": "no"}}, "b: no")


@pytest.mark.parametrize("count", [0, 3, records.COPY_FROM + 10])
def test_rows_of_a_table_without_records_read_back_as_written(app_ctx, count: int) -> None:  # noqa: ANN001
    """``insert_rows`` (an import's list of what it wrote, a mailing's recipients): a few rows by one
    statement, many by COPY on PostgreSQL; columns left out take their defaults (the database's and
    SQLAlchemy's), JSON is stored as JSON
    (None as SQL NULL), and text with tabs, newlines, backslashes, quotes and Cyrillic reads back as it
    went in."""
    table = sa.Table(
        unique_label("tabula_scratch").lower().replace(" ", "_"),
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("label", sa.Text),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("data", sa.JSON(none_as_null=True)),
        sa.Column("kind", sa.String(8), nullable=False, server_default="plain"),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("at", sa.DateTime, nullable=False, default=lambda: dt.datetime(2026, 1, 2, 3, 4)),
    )
    rows = [
        {"label": None if i % 5 == 0 else f'Строка\t{i}\n"кавычки"\\', "n": i,
         "data": None if i % 4 == 0 else {"имя": f"а\tб\\{i}", "list": [i, None, "в"]}}
        for i in range(count)
    ]  # fmt: skip
    table.create(db.engine)
    try:
        with records.atomic():
            records.insert_rows(table, rows)
        with db.engine.connect() as conn:
            back = conn.execute(sa.select(table).order_by(table.c.id)).mappings().all()
            nulls = conn.scalar(sa.select(func.count()).where(table.c.data.is_(None)))
    finally:
        table.drop(db.engine)
    assert [(r["label"], r["n"], r["data"], r["kind"], r["attempts"], r["at"]) for r in back] == [
        (r["label"], r["n"], r["data"], "plain", 0, dt.datetime(2026, 1, 2, 3, 4)) for r in rows
    ]
    assert all(r.keys() == {"label", "n", "data"} for r in rows)  # the caller's rows are left as they were
    assert nulls == sum(1 for r in rows if r["data"] is None)
    assert [r["id"] for r in back] == list(range(1, count + 1))


def test_a_link_to_a_record_out_of_the_users_reach_is_refused_as_missing(app_ctx) -> None:  # noqa: ANN001
    """Staff who read only their own records of a table may not link to a colleague's: refused as a missing
    record (never confirming it exists). The system, and code that opened ``linking_unreadable`` for a
    reason, may link any record that exists; a missing one stays refused."""
    entity = new_table(unique_label("Свои ссылки"))
    link = new_field(entity, "Ссылка", "link", settings={"target": entity.id}).name
    access.save_rules(
        role_id("Staff"),
        tables={
            entity.id: {"read": True, "add": True, "edit": True, "read_scope": "own", "edit_scope": "own"}
        },
    )
    refresh()
    name = db.session.get(Field, entity.display_field_id).name
    staff = actor("staff1", "ui")
    mine = records.create(entity.slug, {name: "Моя"}, staff).id
    theirs = records.create(entity.slug, {name: "Чужая"}, actor("staff2", "ui")).id
    assert records.create(entity.slug, {name: "К своей", link: mine}, staff).id
    with pytest.raises(records.RecordInvalid) as refused:
        records.create(entity.slug, {name: "К чужой", link: theirs}, staff)
    assert refused.value.errors == {link: f"Record {theirs} does not exist."}
    assert records.create(entity.slug, {name: "От системы", link: theirs}, ADMIN()).id
    with records.linking_unreadable("a test that decided so"):
        assert records.create(entity.slug, {name: "Слияние", link: theirs}, staff).id
        with pytest.raises(records.RecordInvalid) as refused:
            records.create(entity.slug, {name: "В никуда", link: 10**9}, staff)
    assert refused.value.errors == {link: f"Record {10**9} does not exist."}
    with pytest.raises(records.RecordInvalid):  # the block is over
        records.create(entity.slug, {name: "После", link: theirs}, staff)


# --- update -------------------------------------------------------------------------------------------------


def test_update_writes_changes_version_and_history(t: Table) -> None:
    pk = records.create(t.slug, {t.name: "Старое", t.count: 1}, ADMIN()).id
    staff = actor("staff1", "ui")
    saved = records.update(t.slug, pk, {t.name: "Новое", t.count: "1"}, staff, expected_version=1)
    assert saved == records.Saved(pk, 2)
    row = t.row(pk)
    assert (row[t.name], row[t.count], row["row_version"]) == ("Новое", 1, 2)
    last = [x for x in t.history(pk) if x.action == "update"]
    assert [(x.field_id, x.old_value, x.new_value, x.user_id, x.source) for x in last] == [
        (t.field_id(t.name), "Старое", "Новое", staff.user_id, "ui")
    ]


def test_a_no_op_update_writes_nothing(t: Table) -> None:
    pk = records.create(t.slug, {t.name: "Same", t.count: 5}, ADMIN()).id
    lines = len(t.history(pk))
    assert (
        records.update(t.slug, pk, {t.name: "Same", t.count: "5"}, ADMIN(), expected_version=1).version == 1
    )
    assert records.update_many(t.slug, [(pk, {}, 1)], ADMIN()) == [records.Saved(pk, 1)]
    assert t.row(pk)["row_version"] == 1 and len(t.history(pk)) == lines


def test_a_stale_update_is_refused_with_the_current_values(t: Table) -> None:
    pk = records.create(t.slug, {t.name: "v1", t.secret: "тайна"}, actor("admin")).id
    records.update(t.slug, pk, {t.name: "v2"}, actor("staff2"), expected_version=1)
    with pytest.raises(records.StaleRecord) as stale:
        records.update(t.slug, pk, {t.name: "mine"}, actor("staff1"), expected_version=1)
    refused = stale.value
    assert (refused.record_id, refused.version) == (pk, 2)
    assert refused.current[t.name] == "v2" and t.secret not in refused.current
    # Who saved last (not who created it) and when.
    assert (refused.changed_by, refused.changed_at) == (
        runtime.user_label(user_id("staff2")),
        t.history(pk)[-1].at,
    )
    assert str(refused) == (
        "Someone else changed this record since you opened it; your changes were not saved."
    )
    assert t.row(pk)[t.name] == "v2" and t.row(pk)["row_version"] == 2
    # Without a version (a job owning its data) it applies.
    assert records.update(t.slug, pk, {t.name: "job"}, ADMIN(), expected_version=None).version == 3
    with pytest.raises(records.StaleRecord) as stale:  # last saved by a job: nobody to name
        records.update(t.slug, pk, {t.name: "mine"}, actor("staff1"), expected_version=2)
    assert (stale.value.version, stale.value.changed_by, stale.value.changed_at) == (
        3,
        "",
        t.history(pk)[-1].at,
    )


def test_a_stale_record_in_a_batch_refuses_the_whole_batch(t: Table) -> None:
    a = records.create(t.slug, {t.name: "a"}, ADMIN()).id
    b = records.create(t.slug, {t.name: "b"}, ADMIN()).id
    records.update(t.slug, b, {t.name: "b2"}, ADMIN(), expected_version=1)
    with pytest.raises(records.StaleRecord) as stale:
        records.update_many(t.slug, [(a, {t.name: "a!"}, 1), (b, {t.name: "b!"}, 1)], ADMIN())
    assert stale.value.record_id == b
    assert (t.row(a)[t.name], t.row(a)["row_version"], t.row(b)[t.name]) == ("a", 1, "b2")


def test_a_record_named_twice_in_a_batch_gets_both_changes(t: Table) -> None:
    a = records.create(t.slug, {t.name: "a", t.count: 1}, ADMIN()).id
    b = records.create(t.slug, {t.name: "b"}, ADMIN()).id
    saved = records.update_many(
        t.slug,
        [(a, {t.name: "first", t.count: 2}, 1), (b, {t.count: 7}, 1), (a, {t.name: "later"}, 2)],
        actor("admin"),
    )
    assert saved == [records.Saved(a, 2), records.Saved(b, 2)]
    assert (t.row(a)[t.name], t.row(a)[t.count], t.row(b)[t.count]) == ("later", 2, 7)
    changes = [x for pk in (a, b) for x in t.history(pk) if x.action == "update"]
    assert len({x.changeset for x in changes}) == 1 and len(changes) == 3


def test_a_record_named_twice_keeps_the_first_expected_version(t: Table) -> None:
    a = records.create(t.slug, {t.name: "a"}, ADMIN()).id
    records.update(t.slug, a, {t.name: "a2"}, ADMIN(), expected_version=1)
    with pytest.raises(records.StaleRecord):
        records.update_many(t.slug, [(a, {t.name: "x"}, 1), (a, {t.count: 3}, 2)], ADMIN())
    assert t.row(a)[t.name] == "a2"


def test_refused_updates_change_nothing(t: Table) -> None:
    pk = records.create(t.slug, {t.name: "orig", t.locked: 7, t.secret: "s"}, ADMIN()).id
    staff = actor("staff1")
    with pytest.raises(records.RecordInvalid) as invalid:
        records.update(t.slug, pk, {t.name: "new", t.locked: 8}, staff, expected_version=1)
    assert invalid.value.errors == {t.locked: "You may not change this field."}
    with pytest.raises(records.RecordInvalid) as invalid:
        records.update(t.slug, pk, {t.name: "new", t.secret: "x"}, staff, expected_version=1)
    assert invalid.value.errors == {t.secret: "No such field."}
    with pytest.raises(records.RecordInvalid) as invalid:
        records.update(t.slug, pk, {t.name: "new", t.link: 10**9}, ADMIN(), expected_version=1)
    assert invalid.value.errors == {t.link: f"Record {10**9} does not exist."}
    with pytest.raises(records.RecordInvalid) as invalid:
        records.update(t.slug, pk, {t.must: None}, ADMIN(), expected_version=1)
    assert invalid.value.errors == {t.must: "This field is required."}
    with pytest.raises(records.AccessDenied):
        records.update(
            t.slug, pk, {t.name: "new"}, Actor(staff.user_id, frozenset(), "ui"), expected_version=1
        )
    with pytest.raises(records.RecordNotFound) as missing:
        records.update(t.slug, 10**9, {t.name: "new"}, ADMIN(), expected_version=None)
    assert missing.value.message == f"Record {10**9} does not exist."
    row = t.row(pk)
    assert (row[t.name], row[t.locked], row[t.secret], row["row_version"]) == ("orig", 7, "s", 1)
    assert [x.action for x in t.history(pk)].count("update") == 0


def test_a_deleted_record_cannot_be_updated(t: Table) -> None:
    pk = records.create(t.slug, {t.name: "gone"}, ADMIN()).id
    records.delete(t.slug, pk, ADMIN())
    with pytest.raises(records.RecordNotFound):
        records.update(t.slug, pk, {t.name: "back"}, ADMIN(), expected_version=None)
    assert t.row(pk)[t.name] == "gone"


# --- delete, restore, purge ---------------------------------------------------------------------------------


def save_would_wait(tbl: sa.Table, pk: int) -> bool:
    """Whether a colleague's save of record ``pk`` (another connection) has to wait for this transaction
    (a PostgreSQL row lock); the save is rolled back either way."""
    with db.engine.connect() as other:
        other.execute(sa.text("SET lock_timeout = '200ms'"))
        try:
            other.execute(update(tbl).where(tbl.c.id == pk).values(row_version=tbl.c.row_version))
        except OperationalError:
            return True
        finally:
            other.rollback()
    return False


@pytest.mark.parametrize("operation", ["update", "delete_many", "restore", "work_load", "work_delete"])
def test_records_being_binned_restored_or_merged_are_locked_from_their_read_on(
    t: Table, monkeypatch, operation: str
) -> None:  # noqa: ANN001
    """Between reading a record and writing it (a save, binning, restoring, a merge's unit of work), a
    colleague's save of it waits for the write to end rather than slipping in and making the write fail.
    PostgreSQL: SQLite lets no one write while a transaction reads."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers")
    tbl = current().classes[t.slug].__table__
    pk = records.create(t.slug, {t.name: "Замок"}, ADMIN()).id
    if operation == "restore":
        records.delete(t.slug, pk, ADMIN())
    waited: list[bool] = []
    mark, derive = records._mark, records._derive

    def marking(ctx, rows, **kwargs):  # noqa: ANN001, ANN003, ANN202
        waited.append(save_would_wait(tbl, pk))
        return mark(ctx, rows, **kwargs)

    def deriving(ctx, rows, befores):  # noqa: ANN001, ANN202
        waited.append(save_would_wait(tbl, pk))
        return derive(ctx, rows, befores)

    monkeypatch.setattr(records, "_mark", marking)
    monkeypatch.setattr(records, "_derive", deriving)
    if operation == "update":
        records.update(t.slug, pk, {t.name: "Замок 2"}, ADMIN(), expected_version=1)
    elif operation == "delete_many":
        records.delete_many(t.slug, [pk], ADMIN(), expected_versions=[1])
    elif operation == "restore":
        records.restore(t.slug, pk, ADMIN())
    else:
        with records.unit_of_work(t.slug, ADMIN(), "edit", "delete") as work:
            if operation == "work_load":
                work.load([pk])
                waited.append(save_would_wait(tbl, pk))
            else:
                work.delete([pk])
    assert waited == [True]
    written = {"update": 2, "delete_many": 2, "restore": 3, "work_load": 1, "work_delete": 2}[operation]
    assert t.row(pk)["row_version"] == written  # saved, binned (and restored), or only read


def test_delete_is_soft_and_restore_brings_it_back(t: Table) -> None:
    pk = records.create(t.slug, {t.name: "bin"}, ADMIN()).id
    with pytest.raises(records.StaleRecord):
        records.delete(t.slug, pk, ADMIN(), expected_version=5)
    assert t.row(pk)["deleted_at"] is None
    records.delete(t.slug, pk, actor("admin", "ui"), expected_version=1)
    row = t.row(pk)
    assert row["deleted_at"] is not None and row["row_version"] == 2 and row[t.name] == "bin"
    with pytest.raises(records.RecordNotFound):
        records.delete(t.slug, pk, ADMIN())
    records.restore(t.slug, pk, actor("admin"))
    row = t.row(pk)
    assert row["deleted_at"] is None and row["row_version"] == 3
    assert [x.action for x in t.history(pk)][-2:] == ["delete", "restore"]
    with pytest.raises(records.RecordNotFound) as missing:
        records.restore(t.slug, pk, actor("admin"))
    assert missing.value.message == f"Record {pk} is not in the recycle bin."


def test_binning_and_restoring_are_the_records_last_change(t: Table) -> None:
    """A record's "changed at" follows its deletion and its restoring, at the moment its history says."""
    pk = records.create(t.slug, {t.name: "когда"}, ADMIN()).id

    def naive(moment: dt.datetime) -> dt.datetime:  # SQLite gives naive UTC, PostgreSQL aware
        return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment

    created = naive(t.row(pk)["updated_at"])
    records.delete(t.slug, pk, ADMIN())
    deleted = naive(next(x.at for x in t.history(pk) if x.action == "delete"))
    assert naive(t.row(pk)["updated_at"]) == naive(t.row(pk)["deleted_at"]) == deleted != created
    records.restore(t.slug, pk, ADMIN())
    restored = naive(next(x.at for x in t.history(pk) if x.action == "restore"))
    assert naive(t.row(pk)["updated_at"]) == restored > deleted


def test_delete_many_counts_and_refuses_all_for_one_missing(t: Table) -> None:
    a = records.create(t.slug, {t.name: "a"}, ADMIN()).id
    b = records.create(t.slug, {t.name: "b"}, ADMIN()).id
    with pytest.raises(records.RecordNotFound) as missing:
        records.delete_many(t.slug, [a, 10**9], ADMIN())
    assert missing.value.message == f"Record {10**9} does not exist."
    assert t.row(a)["deleted_at"] is None
    with pytest.raises(records.StaleRecord):
        records.delete_many(t.slug, [a, b], ADMIN(), expected_versions=[1, 9])
    assert t.row(a)["deleted_at"] is None
    changeset = records.new_changeset()
    assert records.delete_many(t.slug, [a, b], ADMIN(), expected_versions=[1, 1], changeset=changeset) == 2
    assert t.row(a)["deleted_at"] is not None and t.row(b)["deleted_at"] is not None
    binned = [x for pk in (a, b) for x in t.history(pk) if x.action == "delete"]
    assert len(binned) == 2 and {x.changeset for x in binned} == {changeset}  # the caller's change set
    nobody = Actor(user_id("staff1"), frozenset(), "ui")
    c = records.create(t.slug, {t.name: "c"}, ADMIN()).id
    with pytest.raises(records.AccessDenied):
        records.delete(t.slug, c, nobody)
    assert t.row(c)["deleted_at"] is None


def test_who_may_restore(t: Table) -> None:
    mine = records.create(t.slug, {t.name: "mine"}, actor("staff1")).id
    theirs = records.create(t.slug, {t.name: "theirs"}, actor("staff2")).id
    records.delete_many(t.slug, [mine, theirs], ADMIN())
    with pytest.raises(records.AccessDenied) as denied:
        records.restore(t.slug, theirs, actor("staff1"))
    assert denied.value.message == "Only an administrator or the record's owner may restore it."
    assert t.row(theirs)["deleted_at"] is not None
    records.restore(t.slug, mine, actor("staff1"))
    assert t.row(mine)["deleted_at"] is None
    # The owner without the right to delete may not.
    records.delete(t.slug, mine, ADMIN())
    owner_without_rights = Actor(user_id("staff1"), frozenset(), "ui")
    with pytest.raises(records.AccessDenied) as denied:
        records.restore(t.slug, mine, owner_without_rights)
    assert denied.value.message == "Only an administrator or the record's owner may restore it."
    assert t.row(mine)["deleted_at"] is not None
    rights = access.grants(actor("staff1"), current().entity(t.slug), current().access)
    assert records.can_restore(rights, actor("staff1"), None) is False
    assert records.can_restore(rights, actor("staff1"), user_id("staff1")) is True


def test_purge_removes_only_what_expired(t: Table) -> None:
    old = records.create(t.slug, {t.name: "old"}, ADMIN()).id
    recent = records.create(t.slug, {t.name: "recent"}, ADMIN()).id
    alive = records.create(t.slug, {t.name: "alive"}, ADMIN()).id
    records.delete_many(t.slug, [old, recent], ADMIN())
    tbl = current().classes[t.slug].__table__
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    db.session.execute(update(tbl).where(tbl.c.id == old).values(deleted_at=long_ago))
    db.session.commit()
    company = records.create("companies", {"name": unique_label("Старая")}, ADMIN()).id
    records.delete("companies", company, ADMIN())
    companies = current().classes["companies"].__table__
    db.session.execute(update(companies).where(companies.c.id == company).values(deleted_at=long_ago))
    db.session.commit()
    seen: list[int] = []
    purged = records.purge_expired(dt.timedelta(days=30), progress=seen.append)
    assert purged >= 2 and seen[-1] == purged and len(seen) >= 2  # counted over every table
    assert db.session.get(current().classes["companies"], company) is None
    ids = set(db.session.scalars(select(tbl.c.id)))
    assert old not in ids and {recent, alive} <= ids
    assert [x.action for x in t.history(old)][-1] == "purge"
    assert records.purge_expired(dt.timedelta(days=30)) == 0


# --- atomic -------------------------------------------------------------------------------------------------


def test_atomic_commits_together_or_not_at_all(t: Table) -> None:
    before = t.count_rows()
    with pytest.raises(records.RecordInvalid), records.atomic():
        records.create(t.slug, {t.name: "in"}, ADMIN())
        with records.atomic():
            records.create(t.slug, {t.count: "плохо"}, ADMIN())
    assert t.count_rows() == before
    with records.atomic():
        a = records.create(t.slug, {t.name: "one"}, ADMIN()).id
        with records.atomic():
            b = records.create(t.slug, {t.name: "two"}, ADMIN()).id
    db.session.rollback()
    assert t.row(a)[t.name] == "one" and t.row(b)[t.name] == "two"


def test_a_crash_in_the_middle_of_a_write_leaves_nothing_for_a_later_commit(t: Table) -> None:
    """An unexpected error after rows were sent (an extension's ``after_write`` failing): the write's
    transaction is rolled back there, so the next commit on the session (any later write) does not store
    half of it."""
    before = t.count_rows()

    class Broken:
        @hooks.hookimpl
        def after_write(self, ctx: Any, touched: list[dict[str, Any]]) -> None:
            if ctx.entity.slug == t.slug:
                raise RuntimeError("the disk is full")

    with hooks.registered(Broken()), pytest.raises(RuntimeError):
        records.create(t.slug, {t.name: "Полузаписанная"}, ADMIN())
    db.session.commit()
    assert t.count_rows() == before


def test_a_refusal_by_an_index_no_field_owns_gets_the_general_message(t: Table) -> None:
    """The database refusing a write for a reason the write path did not check itself (here a unique index
    an administrator added by hand): the general message, nothing written."""
    tbl = current().classes[t.slug].__table__
    column = tbl.c[t.count]
    records.create(t.slug, {t.name: "Первая", t.count: "77"}, ADMIN())
    only = column == 77  # other tests leave equal counts behind
    index = sa.Index(
        f"ix_by_hand_{t.entity_id}", column, unique=True, sqlite_where=only, postgresql_where=only
    )
    index.create(db.session.connection())
    db.session.commit()
    before = t.count_rows()
    try:
        with pytest.raises(records.RecordError) as refused:
            records.create(t.slug, {t.name: "Вторая", t.count: "77"}, ADMIN())
        assert str(refused.value) == (
            "Not saved: another record already has this value, or a linked record is missing."
        )
        assert t.count_rows() == before
    finally:
        index.drop(db.session.connection())
        db.session.commit()


def test_a_write_meeting_a_field_being_converted_is_refused_with_the_reason(t: Table) -> None:
    """PostgreSQL, while a field's type changes online: a value the conversion cannot carry is refused by
    its trigger, and the user reads why (not a database error); nothing is written."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("online conversion runs on PostgreSQL")
    tbl = current().classes[t.slug].__table__
    pk = records.create(t.slug, {t.name: "Конверсия", t.secret: "было"}, ADMIN()).id
    conn = db.session.connection()
    conn.execute(sa.text(f'ALTER TABLE "{tbl.name}" ADD COLUMN scratch_new integer'))
    ddl.create_conversion_trigger(conn, tbl.name, tbl.c[t.secret].name, "scratch_new", None, None)
    db.session.commit()
    try:
        with pytest.raises(records.RecordError) as refused:
            records.update(t.slug, pk, {t.secret: "стало"}, ADMIN(), expected_version=1)
        assert str(refused.value) == (
            "Not saved: a field of this table is changing its type. Please try again in a minute."
        )
        assert (t.row(pk)[t.secret], t.row(pk)["row_version"]) == ("было", 1)
    finally:
        conn = db.session.connection()
        ddl.drop_conversion_trigger(conn, tbl.name, tbl.c[t.secret].name)
        conn.execute(sa.text(f'ALTER TABLE "{tbl.name}" DROP COLUMN scratch_new'))
        db.session.commit()


# --- what follows elsewhere ------------------------------------------------------------------------------


def test_a_derive_hooks_refusals_reach_the_user_and_nothing_is_written(app_ctx) -> None:  # noqa: ANN001
    """The CRM's ``derive`` hook refuses a stage that is won and lost at once, or whose probability is
    outside 0-100: each refusal reaches the caller under its row and field, on create and update, and the
    batch writes nothing."""
    admin, stages = actor("admin", "ui"), current().classes["stages"]
    pipeline = records.create("pipelines", {"name": unique_label("Воронка")}, admin).id

    def stage(name: str, **values: str) -> dict[str, Any]:
        return {"name": name, "pipeline_id": pipeline, **values}

    def count() -> int:
        return db.session.scalar(
            select(func.count()).select_from(stages).where(stages.pipeline_id == pipeline)
        )

    both = "A stage cannot be both won and lost."
    with pytest.raises(records.RecordInvalid) as invalid:
        records.create_many(
            "stages",
            [stage("Первая"), stage("Вторая", probability="150", is_won="true", is_lost="true")],
            admin,
        )
    assert (invalid.value.rows, invalid.value.errors) == (
        {1: {"probability": "Must be between 0 and 100.", "is_lost": both}},
        {},
    )
    assert count() == 0
    with pytest.raises(records.RecordInvalid) as invalid:
        records.create("stages", stage("Третья", probability="-1"), admin)
    assert invalid.value.errors == {"probability": "Must be between 0 and 100."}
    kept = records.create("stages", stage("Четвёртая", probability="30"), admin)
    with pytest.raises(records.RecordInvalid) as invalid:
        records.update("stages", kept.id, {"is_won": "true", "is_lost": "true"}, admin, expected_version=1)
    assert invalid.value.errors == {"is_lost": both}
    row = db.session.get(stages, kept.id)
    assert (count(), row.is_won, row.is_lost, row.row_version) == (1, False, False, 1)


def test_a_lines_change_updates_its_deal_in_the_same_change_set(app_ctx) -> None:  # noqa: ANN001
    """``cascade_update``: a deal line's total goes to its deal's amount in the line's transaction and
    change set, under the name of whoever changed the line."""
    admin = actor("admin", "ui")
    stage = db.session.scalar(select(current().classes["stages"].id).order_by(current().classes["stages"].id))
    deal = records.create("deals", {"title": unique_label("Сделка"), "stage_id": stage}, admin)
    line = records.create("deal_lines", {"deal_id": deal.id, "quantity": "2", "price": "100"}, admin)
    deals, deal_entity = current().classes["deals"], current().entity("deals")
    db.session.expire_all()
    row = db.session.get(deals, deal.id)
    assert (row.amount, row.row_version) == (Decimal("200.00"), deal.version + 1)
    line_set = db.session.scalar(
        select(RecordChange.changeset).where(
            RecordChange.entity_id == current().entity("deal_lines").id, RecordChange.record_id == line.id
        )
    )
    amount_id = deal_entity.field_by_name("amount").id
    every = [x for x in history.lines(deal_entity.id, deal.id) if x.action == "update"]
    # The amount, and with it the weighted amount when the stage has a probability: one change set.
    assert {x.changeset for x in every} == {line_set}
    updates = [x for x in every if x.field_id == amount_id]
    line_at = db.session.scalar(
        select(RecordChange.at).where(
            RecordChange.entity_id == current().entity("deal_lines").id, RecordChange.record_id == line.id
        )
    )
    assert [x.at for x in updates] == [line_at]  # the same moment as the line's change
    assert [(x.changeset, x.user_id, x.source, x.field_id, x.old_value) for x in updates] == [
        (line_set, admin.user_id, "ui", amount_id, None)
    ]
    records.update("deal_lines", line.id, {"quantity": "3"}, admin, expected_version=line.version)
    db.session.expire_all()
    row = db.session.get(deals, deal.id)
    assert (row.amount, row.row_version) == (Decimal("300.00"), deal.version + 2)
    # Binning a line and restoring it are changes of the lines too.
    other = records.create("deal_lines", {"deal_id": deal.id, "quantity": "1", "price": "50"}, admin)
    records.delete("deal_lines", other.id, admin)
    db.session.expire_all()
    assert db.session.get(deals, deal.id).amount == Decimal("300.00")
    records.restore("deal_lines", other.id, admin)
    db.session.expire_all()
    assert db.session.get(deals, deal.id).amount == Decimal("350.00")


def test_a_no_op_record_first_in_a_batch_does_not_stop_the_rest(t: Table) -> None:
    a = records.create(t.slug, {t.name: "same"}, ADMIN()).id
    b = records.create(t.slug, {t.name: "old"}, ADMIN()).id
    saved = records.update_many(t.slug, [(a, {t.name: "same"}, 1), (b, {t.name: "new"}, 1)], ADMIN())
    assert saved == [records.Saved(a, 1), records.Saved(b, 2)]
    assert (t.row(a)["row_version"], t.row(b)[t.name], t.row(b)["row_version"]) == (1, "new", 2)


def test_a_unique_value_taken_after_the_check_is_refused_by_the_index(t: Table, monkeypatch) -> None:  # noqa: ANN001
    """Two writers at once: the other one's value lands after this write checked for it. The table's
    unique index refuses the write; the answer is the check's own (at the field, the same words), for a
    single save, a batch and an update, and nothing is written."""
    taken = "Another record already has this value."
    first = records.create(t.slug, {t.name: "Первый", t.code: "ГОНКА-1"}, ADMIN()).id
    other = records.create(t.slug, {t.name: "Второй", t.code: "гонка-2"}, ADMIN()).id
    monkeypatch.setattr(records, "_check_references_and_unique", lambda ctx, rows, pks: {})
    before = t.count_rows()
    with pytest.raises(records.RecordInvalid) as invalid:
        records.create(t.slug, {t.name: "Третий", t.code: "гонка-1"}, ADMIN())
    assert invalid.value.errors == {t.code: taken}
    with pytest.raises(records.RecordInvalid) as invalid:
        rows = [{t.name: "Ч", t.code: "гонка-4"}, {t.name: "П", t.code: "Гонка-1"}]
        records.create_many(t.slug, rows, ADMIN())
    assert invalid.value.errors == {t.code: taken}
    with pytest.raises(records.RecordInvalid) as invalid:
        records.update_many(t.slug, [(other, {t.code: "гонка-1"}, 1)], ADMIN())
    assert invalid.value.errors == {t.code: taken}
    assert t.count_rows() == before
    assert t.row(other)[t.code] == "гонка-2" and t.row(other)["row_version"] == 1
    assert t.row(first)[t.code] == "ГОНКА-1"


def test_a_batch_changes_only_records_the_user_may_edit(app_ctx) -> None:  # noqa: ANN001
    """Staff read every record of this table but edit only their own: a batch naming someone else's record
    is refused as if it did not exist (with a version to hold it to, and without: a job's change), and
    nothing of it is written."""
    entity, name = own_only_table("Чужие")
    mine = records.create(entity.slug, {name: "Моя"}, actor("staff1")).id
    theirs = records.create(entity.slug, {name: "Чужая"}, actor("staff2")).id
    for version in (1, None):
        with pytest.raises(records.RecordNotFound):
            records.update_many(
                entity.slug,
                [(mine, {name: "Моя 2"}, version), (theirs, {name: "Взлом"}, version)],
                actor("staff1"),
            )
    tbl = current().classes[entity.slug].__table__
    stored = dict(db.session.execute(select(tbl.c.id, tbl.c[name]).where(tbl.c.id.in_([mine, theirs]))).all())
    assert stored == {mine: "Моя", theirs: "Чужая"}
    assert records.update_many(entity.slug, [(mine, {name: "Моя 2"}, 1)], actor("staff1"))[0].version == 2
    # a unit of work (merging) loads what each action may reach, and bins only what the user may delete
    with records.unit_of_work(entity.slug, actor("staff1"), "read", "edit", "delete") as work:
        assert set(work.load([mine, theirs])) == {mine}
        assert set(work.load([mine, theirs], "read")) == {mine, theirs}
        assert set(work.load([mine, theirs], "delete")) == {mine}
    with (
        pytest.raises(records.RecordNotFound),
        records.unit_of_work(entity.slug, actor("staff1"), "delete") as work,
    ):
        work.delete([mine, theirs])
    with pytest.raises(records.RecordNotFound):
        records.delete_many(entity.slug, [mine, theirs], actor("staff1"))
    with pytest.raises(records.RecordNotFound):
        records.delete(entity.slug, theirs, actor("staff1"))
    assert db.session.scalar(select(func.count()).select_from(tbl).where(tbl.c.deleted_at.is_not(None))) == 0


def test_a_batch_update_checks_a_value_against_the_rest_of_its_record(app_ctx) -> None:  # noqa: ANN001
    """A company no longer foreign must have a Russian tax id: the batch is refused at that field."""
    company = records.create(
        "companies", {"name": "Acme Ltd", "tax_id": "GB123456789", "is_foreign": True}, ADMIN()
    )
    with pytest.raises(records.RecordInvalid) as refused:
        records.update_many("companies", [(company.id, {"is_foreign": False}, 1)], ADMIN())
    assert set(refused.value.errors) == {"tax_id"}
    assert "mark it as foreign" in refused.value.errors["tax_id"]


def test_a_record_saved_between_the_read_and_the_write_refuses_the_batch(t: Table, monkeypatch) -> None:  # noqa: ANN001
    """The UPDATE holds each record to the version the batch read: one saved in between (here in the same
    transaction, as SQLite allows nothing else) changes fewer rows than given, and the batch is refused
    as stale, naming that record, with nothing of it written."""
    ids = [records.create(t.slug, {t.name: f"Гонка {i}", t.count: "1"}, ADMIN()).id for i in range(3)]
    tbl = current().classes[t.slug].__table__
    load = records._load

    saves = 2  # saved twice in between, then once (to the version this batch gives the rest)

    def meanwhile(ctx, pks, **kwargs):  # noqa: ANN001, ANN003, ANN202
        rows = load(ctx, pks, **kwargs)
        bump = tbl.update().where(tbl.c.id == ids[1]).values(row_version=tbl.c.row_version + saves)
        db.session.execute(bump)
        return rows

    monkeypatch.setattr(records, "_load", meanwhile)
    with pytest.raises(records.StaleRecord) as stale:
        records.update_many(t.slug, [(pk, {t.count: "7", t.name: "Новое"}, 1) for pk in ids], ADMIN())
    assert stale.value.record_id == ids[1]
    saves = 1
    with pytest.raises(records.StaleRecord):
        records.update_many(t.slug, [(pk, {t.count: "7", t.name: "Новое"}, 1) for pk in ids], ADMIN())
    monkeypatch.undo()
    assert [(t.row(pk)[t.count], t.row(pk)["row_version"]) for pk in ids] == [(1, 1)] * 3
    saved = records.update_many(t.slug, [(pk, {t.count: "7"}, 1) for pk in ids], ADMIN())
    assert [s.version for s in saved] == [2, 2, 2] and {t.row(pk)[t.count] for pk in ids} == {7}


def test_binning_records_saved_between_the_read_and_the_write_changes_nothing(t: Table, monkeypatch) -> None:  # noqa: ANN001
    """Binning holds each record to the version it read: one saved in between refuses the whole batch in
    words, and none of them is binned."""
    ids = [records.create(t.slug, {t.name: f"Корзина {i}"}, ADMIN()).id for i in range(2)]
    tbl = current().classes[t.slug].__table__
    load = records._load

    def meanwhile(ctx, pks, **kwargs):  # noqa: ANN001, ANN003, ANN202
        rows = load(ctx, pks, **kwargs)
        db.session.execute(tbl.update().where(tbl.c.id == ids[1]).values(row_version=tbl.c.row_version + 1))
        return rows

    monkeypatch.setattr(records, "_load", meanwhile)
    with pytest.raises(records.RecordError) as refused:
        records.delete_many(t.slug, ids, ADMIN())
    assert (
        refused.value.message == "Someone else changed these records at the same time; nothing was changed."
    )
    monkeypatch.undo()
    assert [(t.row(pk)["deleted_at"], t.row(pk)["row_version"]) for pk in ids] == [(None, 1), (None, 1)]


def test_a_record_binned_between_the_read_and_the_write_is_not_changed(t: Table, monkeypatch) -> None:  # noqa: ANN001
    """The UPDATE holds each record to not being in the recycle bin: one binned in between refuses the
    batch as stale, with the values it was read with, and stays as it was binned."""
    ids = [records.create(t.slug, {t.name: f"Бин {i}", t.count: 1}, ADMIN()).id for i in range(2)]
    tbl = current().classes[t.slug].__table__
    load = records._load

    def meanwhile(ctx, pks, **kwargs):  # noqa: ANN001, ANN003, ANN202
        rows = load(ctx, pks, **kwargs)
        if kwargs.get("lock"):  # the write's own read, not the refusal's look afterwards
            db.session.execute(tbl.update().where(tbl.c.id == ids[1]).values(deleted_at=utcnow()))
        return rows

    monkeypatch.setattr(records, "_load", meanwhile)
    with pytest.raises(records.StaleRecord) as stale:
        records.update_many(t.slug, [(pk, {t.count: "5"}, None) for pk in ids], ADMIN())
    monkeypatch.undo()
    assert stale.value.record_id == ids[1] and stale.value.current[t.count] == "1"
    assert [t.row(pk)[t.count] for pk in ids] == [1, 1]


def test_an_update_moves_changed_at_to_the_moment_its_history_gives(t: Table) -> None:
    """ "Created at" is the create's moment and stays; "changed at" follows each change's moment."""

    def utc(moment: dt.datetime) -> dt.datetime:  # SQLite gives naive UTC, PostgreSQL aware
        return moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)

    pk = records.create(t.slug, {t.name: "Момент", t.count: 1}, ADMIN()).id
    created = [x.at for x in t.history(pk) if x.action == "create"][-1]
    assert utc(t.row(pk)["created_at"]) == utc(t.row(pk)["updated_at"]) == utc(created)
    records.update(t.slug, pk, {t.count: 2}, ADMIN(), expected_version=1)
    stamp = t.row(pk)["updated_at"]
    moment = [x.at for x in t.history(pk) if x.action == "update"][-1]
    assert stamp is not None and utc(stamp) == utc(moment) != utc(created)
    assert utc(t.row(pk)["created_at"]) == utc(created)


def test_a_stale_refusal_of_a_record_whose_history_was_archived_names_nobody(t: Table) -> None:
    pk = records.create(t.slug, {t.name: "Архив"}, ADMIN()).id
    records.update(t.slug, pk, {t.name: "Архив 2"}, actor("staff2"), expected_version=1)
    db.session.execute(
        sa_delete(RecordChange).where(RecordChange.entity_id == t.entity_id, RecordChange.record_id == pk)
    )
    db.session.commit()
    with pytest.raises(records.StaleRecord) as stale:
        records.update(t.slug, pk, {t.name: "Моё"}, actor("staff1"), expected_version=1)
    assert (stale.value.version, stale.value.changed_by, stale.value.changed_at) == (2, "", None)


def test_history_keeps_changed_instants_and_tax_ids_in_their_stored_form(app_ctx) -> None:  # noqa: ANN001
    """Types that compare values their own way (an instant in any offset, a tax id with spaces) still
    write history as their JSON form: old and new, as the field's type gives them."""
    entity = new_table(unique_label("Формы"))
    name = db.session.get(Field, entity.display_field_id).name
    when = new_field(entity, "Когда", "datetime").name
    inn = new_field(entity, "ИНН", "tax_id", settings={"kind": "inn"}).name
    refresh()
    first = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    pk = records.create(entity.slug, {name: "Форма", when: first.isoformat(), inn: "7707083893"}, ADMIN()).id
    records.update(
        entity.slug, pk, {when: "2026-02-03T04:05:06+03:00", inn: "7736 050003"}, ADMIN(), expected_version=1
    )
    changed = {(x.old_value, x.new_value) for x in history.lines(entity.id, pk) if x.action == "update"}
    assert changed == {
        ("2026-01-02T03:04:05+00:00", "2026-02-03T01:05:06+00:00"),
        ("7707083893", "7736050003"),
    }


def test_the_index_that_refused_names_its_own_field(t: Table, monkeypatch) -> None:  # noqa: ANN001
    """With two unique fields, a value the second one's index refuses (the check having missed it, as when
    another writer got there first) is reported at that field, not at the first unique one."""
    records.create(t.slug, {t.name: "Один", t.code: "М-1", t.tag: "метка"}, ADMIN())
    monkeypatch.setattr(records, "_check_references_and_unique", lambda ctx, rows, pks: {})
    with pytest.raises(records.RecordInvalid) as invalid:
        records.create(t.slug, {t.name: "Два", t.code: "М-2", t.tag: "метка"}, ADMIN())
    assert invalid.value.errors == {t.tag: "Another record already has this value."}


# --- values that follow from the calendar -------------------------------------------------------------------


def test_calendar_values_are_stored_without_history_or_a_new_version(t: Table) -> None:
    """``store_calendar_values`` writes the given columns of the given records, nothing else: no history
    line, the same version; it names its reason, takes rows giving the same known columns, and counts."""
    a, b, other = (records.create(t.slug, {t.name: n, t.count: "1"}, ADMIN()).id for n in ("а", "б", "в"))
    lines = {pk: len(t.history(pk)) for pk in (a, b)}
    written = records.store_calendar_values(
        t.slug, {a: {t.count: 5, t.secret: "x"}, b: {t.secret: "y", t.count: 6}}, "recounted nightly"
    )
    db.session.commit()
    assert written == 2
    assert [(t.row(pk)[t.count], t.row(pk)[t.secret], t.row(pk)["row_version"]) for pk in (a, b, other)] == [
        (5, "x", 1), (6, "y", 1), (1, None, 1)]  # fmt: skip
    assert {pk: len(t.history(pk)) for pk in (a, b)} == lines
    assert records.store_calendar_values(t.slug, {}, "nothing to do") == 0
    with pytest.raises(ValueError, match="^store_calendar_values needs a reason$"):
        records.store_calendar_values(t.slug, {a: {t.count: 9}}, "")
    apart = f"^store_calendar_values: every row gives the same columns of {t.slug}$"
    for values, reason in (
        ({a: {t.count: 9}, b: {t.secret: "z"}}, "rows apart"),
        ({a: {t.count: 9}, b: {t.count: 9, t.secret: "z"}}, "one gives more"),
        ({a: {"no_such_column": 9}}, "unknown column"),
    ):
        with pytest.raises(ValueError, match=apart):
            records.store_calendar_values(t.slug, values, reason)
    assert (t.row(a)[t.count], t.row(b)[t.secret]) == (5, "y")


# --- a unit of work (merging: read two records, fill one, note it, bin the other) --------------------------


def test_a_big_batch_meeting_a_busy_table_is_refused_whole(app_ctx) -> None:  # noqa: ANN001
    """A batch of ``COPY_FROM`` rows and more (COPY on PostgreSQL) into a table someone holds locked past
    the lock timeout: the write path's "busy" refusal, and nothing written."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's COPY")
    entity = new_table(unique_label("Занято"))
    spec = current().entity(entity.slug)
    tbl = current().classes[entity.slug].__table__
    rows = [{spec.display_field.name: f"Строка {i}"} for i in range(records.COPY_FROM + 5)]
    with db.engine.connect() as other:
        other.execute(sa.text(f'LOCK TABLE "{tbl.name}" IN ACCESS EXCLUSIVE MODE'))
        db.session.execute(sa.text("SET lock_timeout = '200ms'"))
        try:
            with pytest.raises(records.RecordError) as refused:
                records.create_many(entity.slug, rows, ADMIN())
            assert str(refused.value) == "Not saved: the database is busy. Please try again."
        finally:
            db.session.execute(sa.text("RESET lock_timeout"))
            db.session.commit()
            other.rollback()
    assert db.session.scalar(select(func.count()).select_from(tbl)) == 0


def test_a_big_batchs_history_keeps_the_system_no_changes_and_every_note(t: Table) -> None:
    """History of a batch of ``COPY_FROM`` rows and more (COPY's text on PostgreSQL, written out by the
    write path): lines by the system (no user), binning and restoring lines (no values, stored as none on
    every path), and a unit of work's notes (backslashes, quotes, tabs, Cyrillic; none) read back as
    written."""
    many = records.COPY_FROM + 5
    ids = [s.id for s in records.create_many(t.slug, [{t.name: f"Много {i}"} for i in range(many)], ADMIN())]
    notes = {pk: None if i % 4 == 0 else {"от": f'Сделка "{i}"\t\\{i}', "n": i} for i, pk in enumerate(ids)}
    with records.unit_of_work(t.slug, actor("admin", "ui"), "edit") as work:
        for pk, note in notes.items():
            work.note(pk, "merge", note)
        work.update(ids[0], {}, None)
    records.delete_many(t.slug, ids, ADMIN())
    records.restore(t.slug, ids[1], ADMIN())  # a line alone: written by a statement, not COPY
    lines = db.session.execute(
        select(RecordChange.record_id, RecordChange.action, RecordChange.user_id, RecordChange.changes,
               RecordChange.note)
        .where(RecordChange.entity_id == t.entity_id, RecordChange.record_id.in_(ids))
        .order_by(RecordChange.id)
    ).all()  # fmt: skip
    binned = [(pk, user, changes, note) for pk, action, user, changes, note in lines if action == "delete"]
    assert binned == [(pk, None, None, None) for pk in ids]
    restored = [(pk, user, changes, note) for pk, action, user, changes, note in lines if action == "restore"]
    assert restored == [(ids[1], None, None, None)]
    merged = {pk: (user, note) for pk, action, user, _changes, note in lines if action == "merge"}
    assert merged == {pk: (user_id("admin"), note) for pk, note in notes.items()}


def test_a_unit_of_work_is_one_change_set_committed_once(t: Table) -> None:
    staff = actor("staff1", "ui")
    keep = records.create(t.slug, {t.name: "Оставить", t.count: 1}, ADMIN()).id
    drop = records.create(t.slug, {t.name: "Убрать", t.count: 2, t.code: "UOW-1"}, ADMIN()).id
    with records.unit_of_work(t.slug, staff, "edit", "delete") as work:
        assert work.entity.slug == t.slug and work.rights.can("edit")
        rows = work.load([keep, drop])
        assert {pk: (row[t.name], row[t.count], row["row_version"]) for pk, row in rows.items()} == {
            keep: ("Оставить", 1, 1),
            drop: ("Убрать", 2, 1),
        }
        parsed, errors = work.parse({t.count: "7", t.code: "UOW-2"})
        assert errors == {} and parsed == {t.count: 7, t.code: "UOW-2"}
        assert work.parse({t.count: "семь"})[1].keys() == {t.count}
        assert work.parse({t.locked: "5"})[1].keys() == {t.locked}  # view-only for Staff
        work.note(keep, "merge", {"merged": drop})
        assert work.update(keep, parsed, 1) == records.Saved(keep, 2)
        assert work.delete([drop]) == 1
        assert t.row(keep)[t.count] == 7  # flushed, not yet committed
    db.session.rollback()  # nothing left to roll back: the block committed
    assert (t.row(keep)[t.count], t.row(keep)[t.code], t.row(keep)["row_version"]) == (7, "UOW-2", 2)
    assert t.row(drop)["deleted_at"] is not None
    kept, dropped = t.history(keep), t.history(drop)
    merge = [x for x in kept if x.action == "merge"]
    assert [(x.field_id, x.new_value) for x in merge] == [(None, {"merged": drop})]
    changed = [(x.field_id, x.old_value, x.new_value) for x in kept if x.action == "update"]
    assert changed == [(t.field_id(t.code), None, "UOW-2"), (t.field_id(t.count), 1, 7)]  # the fields' order
    binned = [x for x in dropped if x.action == "delete"]
    together = {x.changeset for x in merge + binned} | {x.changeset for x in kept if x.action == "update"}
    assert len(together) == 1 and len({x.at for x in merge + binned}) == 1
    assert {(x.user_id, x.source) for x in merge + binned} == {(staff.user_id, "ui")}


def test_a_unit_of_work_that_fails_changes_nothing(t: Table) -> None:
    keep = records.create(t.slug, {t.name: "Цел", t.count: 1}, ADMIN()).id
    drop = records.create(t.slug, {t.name: "Тоже цел"}, ADMIN()).id
    lines = len(t.history(keep)), len(t.history(drop))
    with (
        pytest.raises(records.RecordNotFound) as missing,
        records.unit_of_work(t.slug, ADMIN(), "edit", "delete") as work,
    ):
        work.note(keep, "merge", "x")
        work.update(keep, {t.count: 9}, 1)
        work.delete([drop, 987654321])
    assert missing.value.message == "Record 987654321 does not exist."
    assert t.row(keep)[t.count] == 1 and t.row(keep)["row_version"] == 1
    assert t.row(drop)["deleted_at"] is None
    assert (len(t.history(keep)), len(t.history(drop))) == lines


def test_a_unit_of_work_does_only_what_it_was_opened_for(t: Table) -> None:
    pk = records.create(t.slug, {t.name: "Один"}, ADMIN()).id
    with pytest.raises(ValueError, match="needs an action"):
        records.Work(t.slug, ADMIN(), [])
    with (
        pytest.raises(ValueError, match="not opened for 'delete'"),
        records.unit_of_work(t.slug, ADMIN()) as work,
    ):
        work.delete([pk])  # opened for "edit" only (the default)
    assert t.row(pk)["deleted_at"] is None
    with (
        pytest.raises(ValueError, match="not opened for 'edit'"),
        records.unit_of_work(t.slug, ADMIN(), "delete") as work,
    ):
        work.update(pk, {t.count: 1}, 1)
    assert t.row(pk)[t.count] is None


def test_a_note_alone_is_a_new_version_a_change_of_nothing_is_not(t: Table) -> None:
    pk = records.create(t.slug, {t.name: "Заметка", t.count: 3}, ADMIN()).id
    with records.unit_of_work(t.slug, ADMIN()) as work:
        work.load([pk])
        assert work.update(pk, {t.count: 3}, 1) == records.Saved(pk, 1)  # nothing changed, nothing noted
    assert t.row(pk)["row_version"] == 1
    with records.unit_of_work(t.slug, ADMIN()) as work:
        work.load([pk])
        work.note(pk, "merge", "только заметка")
        assert work.update(pk, {t.count: 3}, 1) == records.Saved(pk, 2)
    assert t.row(pk)["row_version"] == 2
    notes = [x for x in t.history(pk) if x.action == "merge"]
    assert [x.new_value for x in notes] == ["только заметка"]
    # The note is the record's last change: "changed at" is its moment.
    stamp = t.row(pk)["updated_at"]
    assert (stamp.astimezone(dt.UTC).replace(tzinfo=None) if stamp.tzinfo else stamp) == notes[0].at.replace(
        tzinfo=None
    )
    with pytest.raises(records.StaleRecord), records.unit_of_work(t.slug, ADMIN()) as work:
        work.update(pk, {t.count: 4}, 1)  # the version it was read at is gone
    assert t.row(pk)[t.count] == 3


def test_a_unit_of_work_loads_only_what_the_action_may_reach(t: Table) -> None:
    pk = records.create(t.slug, {t.name: "Виден"}, ADMIN()).id
    gone = records.create(t.slug, {t.name: "В корзине"}, ADMIN()).id
    records.delete(t.slug, gone, ADMIN())
    with records.unit_of_work(t.slug, actor("staff1"), "edit", "delete") as work:
        assert set(work.load([pk, gone])) == {pk}
        assert set(work.load([pk], "delete")) == {pk}


def test_a_unit_of_works_changes_that_follow_join_its_change_set(t: Table) -> None:
    a = records.create(t.slug, {t.name: "A"}, ADMIN()).id
    b = records.create(t.slug, {t.name: "B", t.count: 1}, ADMIN()).id
    with records.unit_of_work(t.slug, ADMIN()) as work:
        work.note(a, "merge", "note")
        work.update(a, {t.count: 2}, 1)
        assert work.cascade_update(t.slug, {b: {t.count: 5}}) == [records.Saved(b, 2)]
    assert t.row(b)[t.count] == 5
    sets = {x.changeset for x in t.history(a) if x.action in ("merge", "update")}
    sets |= {x.changeset for x in t.history(b) if x.action == "update"}
    assert len(sets) == 1


def test_changes_that_follow_reach_records_beyond_the_users_own(app_ctx) -> None:  # noqa: ANN001
    """A merge by someone who edits only their own records still moves a colleague's record's link: the
    changes that follow are read and written with the system's reach, under the user's name."""
    entity, name = own_only_table("Следствия")
    link = new_field(entity, "Ссылка", "link", settings={"target": entity.id}).name
    keep = records.create(entity.slug, {name: "Оставить"}, actor("staff1")).id
    drop = records.create(entity.slug, {name: "Убрать"}, actor("staff1")).id
    theirs = records.create(entity.slug, {name: "Чужая", link: drop}, actor("staff2")).id
    with records.unit_of_work(entity.slug, actor("staff1", "ui"), "edit", "delete") as work:
        assert work.cascade_update(entity.slug, {theirs: {link: keep}}) == [records.Saved(theirs, 2)]
        work.delete([drop])
    tbl = current().classes[entity.slug].__table__
    assert db.session.scalar(select(tbl.c[link]).where(tbl.c.id == theirs)) == keep
    moved = [x for x in history.lines(entity.id, theirs) if x.action == "update"]
    assert [(x.user_id, x.old_value, x.new_value) for x in moved] == [(user_id("staff1"), drop, keep)]


def test_a_stale_refusal_shows_values_as_typed_and_who_saved_this_very_record(app_ctx) -> None:  # noqa: ANN001
    """The current values in a stale refusal read as their type shows them (an option's label), and the
    last editor is this record's, not that of a later change to another record or another table."""
    options = [{"id": "hot", "label": "Горячий"}, {"id": "cold", "label": "Холодный"}]
    first, second = new_table(unique_label("Устаревшие")), new_table(unique_label("Соседи"))
    first_name = db.session.get(Field, first.display_field_id).name
    second_name = db.session.get(Field, second.display_field_id).name
    state = new_field(first, "Статус", "single_select", settings={"options": options}).name
    access.save_rules(
        role_id("Staff"),
        tables={first.id: {"read": True, "edit": True, "read_scope": "all", "edit_scope": "all"}},
    )
    refresh()
    pk = records.create(first.slug, {first_name: "Запись", state: "Горячий"}, actor("admin")).id
    records.update(first.slug, pk, {state: "Холодный"}, actor("staff2"), expected_version=1)
    neighbour = records.create(first.slug, {first_name: "Сосед"}, actor("admin")).id
    records.update(first.slug, neighbour, {first_name: "Сосед 2"}, actor("admin"), expected_version=1)
    # A record of another table with the same id, changed after it by someone else.
    same_id = [s.id for s in records.create_many(second.slug, [{second_name: "x"}] * pk, actor("admin"))]
    assert pk in same_id
    records.update(second.slug, pk, {second_name: "y"}, actor("admin"), expected_version=1)
    with pytest.raises(records.StaleRecord) as stale:
        records.update(first.slug, pk, {first_name: "Моё"}, actor("staff1"), expected_version=1)
    assert stale.value.current[state] == "Холодный"
    assert stale.value.changed_by == runtime.user_label(user_id("staff2"))
    assert stale.value.changed_at == history.lines(first.id, pk)[-1].at


def test_a_database_refusal_inside_a_unit_of_work_is_a_sentence(t: Table) -> None:
    a = records.create(t.slug, {t.name: "A", t.code: "UOW-X"}, ADMIN()).id
    b = records.create(t.slug, {t.name: "B"}, ADMIN()).id
    tbl = current().classes[t.slug].__table__
    with pytest.raises(records.RecordError) as refused, records.unit_of_work(t.slug, ADMIN()) as work:
        work.update(b, {t.count: 1}, 1)
        db.session.execute(update(tbl).where(tbl.c.id == b).values({tbl.c[t.code]: "UOW-X"}))
    assert refused.value.message.startswith("Not saved: another record already has this value")
    assert t.row(b)[t.count] is None and t.row(b)[t.code] is None and t.row(a)[t.code] == "UOW-X"
