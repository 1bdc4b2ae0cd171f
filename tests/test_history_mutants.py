"""Record history read back one case at a time, as ``make mutation MODULE=custom_fields/history.py`` needs
it: ``custom_fields.history`` called directly (no HTTP, no worker) on one table of its own, where a bug
would lose or misreport history. The timeline and the audit log say who, when, from where, which field,
old and new value as the field's type shows them, and only what the reader may read; replay and
``values_at`` add the stored changes up to the right values; archiving moves exactly the old rows to a file
and deletes them only then. Rows the write path does not write (a field since removed, a value its type no
longer reads, a merge's two rows) are stored directly in the history table."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import uuid
from typing import Any

import pytest
from flask_appbuilder.security.sqla.models import Role, User
from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import OperationalError

from app.extensions import db
from custom_fields import access, history, records
from custom_fields.access import Actor
from custom_fields.runtime import current, refresh
from models import Field
from models.records import RecordChange
from tests.tables_helpers import new_field, new_table, unique_label


def user(username: str) -> User:
    return db.session.scalar(select(User).where(User.username == username))


def actor(username: str, source: str = "ui") -> Actor:
    return Actor.of_user(user(username), source)


def label_of(username: str) -> str:
    row = user(username)
    name = " ".join(p for p in (row.first_name, row.last_name) if p)
    return f"{name} ({row.username})" if name else row.username


def naive(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(tzinfo=None) if at.tzinfo else at


class Table:
    """A name, a number, a date, a yes/no field and a secret hidden from Staff; Staff read only their own
    records of it."""

    def __init__(self) -> None:
        entity = new_table(unique_label("История"))
        self.entity_id = entity.id
        self.slug = entity.slug
        rows = {
            "name": db.session.get(Field, entity.display_field_id),
            "count": new_field(entity, "Штук", "integer"),
            "day": new_field(entity, "День", "date"),
            "flag": new_field(entity, "Флаг", "boolean"),
            "secret": new_field(entity, "Секрет", "text"),
        }
        self.ids = {key: row.id for key, row in rows.items()}
        self.names = {key: row.name for key, row in rows.items()}
        self.labels = {key: row.label for key, row in rows.items()}
        access.save_rules(
            db.session.scalar(select(Role.id).where(Role.name == "Staff")),
            tables={entity.id: {"read": True, "add": True, "edit": True, "delete": True, "read_scope": "own",
                                "edit_scope": "own", "delete_scope": "own"}},
            fields={self.ids["secret"]: "hidden"},
        )  # fmt: skip
        refresh()

    def spec(self):  # noqa: ANN201
        return current().entity(self.slug)

    def values(self, **values: Any) -> dict[str, Any]:
        return {self.names[key]: value for key, value in values.items()}

    def store(self, record_id: int, action: str, changes: list | None, **kw: Any) -> RecordChange:
        """A history row written directly (what the write path wrote, or once wrote)."""
        row = RecordChange(
            changeset=kw.get("changeset") or uuid.uuid4().hex,
            at=kw.get("at") or dt.datetime.now(dt.UTC),
            user_id=kw.get("user_id"),
            source=kw.get("source", "ui"),
            entity_id=kw.get("entity_id", self.entity_id),
            record_id=record_id,
            action=action,
            changes=changes,
            note=kw.get("note"),
        )
        db.session.add(row)
        db.session.commit()
        return row


@pytest.fixture(scope="module")
def shared_table(app) -> Table:  # noqa: ANN001
    with app.app_context():
        return Table()


@pytest.fixture
def t(app_ctx, shared_table: Table) -> Table:  # noqa: ANN001
    current().memo.clear()
    return shared_table


def fresh_id() -> int:
    """A record id no real record has: history rows of it are all this test's."""
    return 10**9 + uuid.uuid4().int % 10**8


# --- labels -------------------------------------------------------------------------------------------------


def test_action_and_source_labels(app_ctx) -> None:  # noqa: ANN001
    assert [history.action_label(a) for a in ("create", "update", "delete", "restore", "purge", "merge")] == [
        "Created",
        "Changed",
        "Moved to the recycle bin",
        "Restored from the recycle bin",
        "Deleted for good",
        "Merged",
    ]
    assert [history.source_label(s) for s in ("ui", "api", "import", "job")] == [
        "Browser",
        "API",
        "Import",
        "Background job",
    ]
    assert history.action_label("split") == "split" and history.source_label("cli") == "cli"
    change = history.ChangeSet(dt.datetime.now(dt.UTC), "x", "api", "restore", None, 1)
    assert (change.action_label, change.source_label) == ("Restored from the recycle bin", "API")


# --- the timeline -------------------------------------------------------------------------------------------


def test_timeline_says_who_when_where_which_field_old_and_new_newest_first(t: Table) -> None:
    admin = actor("admin", "api")
    saved = records.create(
        t.slug, t.values(name="Первая", count="3", day="2026-12-01", flag=True, secret="тсс"), admin
    )
    records.update(
        t.slug, saved.id, t.values(count="4", flag=False), actor("admin", "ui"), expected_version=1
    )
    rights = access.grants(admin, t.spec())
    records.delete(t.slug, saved.id, Actor.system_job())
    assert history.timeline(rights, saved.id) == []  # in the recycle bin: not read
    records.restore(t.slug, saved.id, Actor.system_job())
    sets = history.timeline(rights, saved.id)
    assert [(c.action, c.source, c.user, c.record_id, c.entity.id) for c in sets] == [
        ("restore", "job", "System", saved.id, t.entity_id),
        ("delete", "job", "System", saved.id, t.entity_id),
        ("update", "ui", label_of("admin"), saved.id, t.entity_id),
        ("create", "api", label_of("admin"), saved.id, t.entity_id),
    ]
    assert sets[0].lines == [] and sets[1].lines == []
    # A change set's values newest first, shown as each field's type shows them.
    assert [(x.field, x.old, x.new) for x in sets[2].lines] == [
        (t.labels["flag"], "yes", "no"),
        (t.labels["count"], "3", "4"),
    ]
    created = {x.field: (x.old, x.new) for x in sets[3].lines}
    assert created[t.labels["day"]] == ("", "01.12.2026")
    assert created[t.labels["name"]] == ("", "Первая")
    assert created[t.labels["secret"]] == ("", "тсс")
    stored = [naive(r.at) for r in db.session.scalars(
        select(RecordChange).where(RecordChange.entity_id == t.entity_id, RecordChange.record_id == saved.id)
        .order_by(RecordChange.id.desc())
    )]  # fmt: skip
    assert [naive(c.at) for c in sets] == stored


def test_timeline_of_removed_fields_unreadable_values_and_a_merge(t: Table) -> None:
    admin = actor("admin")
    pk = records.create(t.slug, t.values(name="Слияние"), admin).id
    merge = uuid.uuid4().hex
    t.store(pk, "merge", None, changeset=merge, note={"merged": 7}, user_id=user("staff1").id, source="api")
    t.store(
        pk,
        "update",
        [[t.ids["count"], "много", 5], [987654321, "старое", None], [t.ids["day"], None, "2026-01-02"]],
        changeset=merge,
        user_id=user("staff1").id,
        source="api",
    )
    [merged, created] = history.timeline(access.grants(admin, t.spec()), pk)
    # One change set from both rows (the merge's note, then its values), named by its first row: a merge.
    assert (merged.action, merged.user, merged.source) == ("merge", label_of("staff1"), "api")
    assert [(x.field, x.old, x.new) for x in merged.lines] == [
        (t.labels["day"], "", "02.01.2026"),
        ("Deleted field #987654321", "старое", ""),
        (t.labels["count"], "много", "5"),  # a value its type no longer reads: shown as stored
    ]
    assert created.action == "create"


def test_timeline_hides_fields_and_records_the_reader_may_not_read(t: Table) -> None:
    staff, admin = actor("staff1"), actor("admin")
    mine = records.create(t.slug, t.values(name="Моя", count="1"), staff).id
    records.update(t.slug, mine, t.values(secret="тайна"), admin, expected_version=1)
    theirs = records.create(t.slug, t.values(name="Чужая"), admin).id
    rights = access.grants(staff, t.spec())
    [secret_set, created] = history.timeline(rights, mine)
    assert (secret_set.action, secret_set.user, secret_set.lines) == ("update", label_of("admin"), [])
    assert {x.field for x in created.lines} == {t.labels["name"], t.labels["count"]}
    assert history.timeline(rights, theirs) == []
    admin_view = history.timeline(access.grants(admin, t.spec()), mine)
    assert [(x.field, x.new) for x in admin_view[0].lines] == [(t.labels["secret"], "тайна")]
    nobody = access.grants(Actor(None, frozenset(), "ui"), t.spec())
    assert history.timeline(nobody, mine) == []
    assert history.timeline(access.Grants(t.spec(), frozenset({"read"}), {}), mine) == []  # no actor


def test_timeline_limit_keeps_the_newest_change_sets(t: Table) -> None:
    admin = actor("admin")
    saved = records.create(t.slug, t.values(name="v1"), admin)
    for version in range(1, 4):
        records.update(t.slug, saved.id, t.values(name=f"v{version + 1}"), admin, expected_version=version)
    rights = access.grants(admin, t.spec())
    assert [[x.new for x in c.lines] for c in history.timeline(rights, saved.id, limit=1)] == [["v4"]]
    assert [[x.new for x in c.lines] for c in history.timeline(rights, saved.id, limit=3)] == [
        ["v4"],
        ["v3"],
        ["v2"],
    ]
    assert len(history.timeline(rights, saved.id)) == 4


# --- lines --------------------------------------------------------------------------------------------------


def test_lines_one_per_value_with_the_record_line_first(t: Table) -> None:
    pk, other = fresh_id(), fresh_id()
    at = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    staff = user("staff1").id
    a = t.store(pk, "create", [[1, None, "x"], [2, None, 3]], at=at, user_id=staff, source="import")
    b = t.store(pk, "update", [[2, 3, 4]], at=at)
    c = t.store(pk, "merge", None, note={"into": 5}, at=at)
    t.store(other, "create", [[1, None, "y"]])
    got = [
        (x.id, x.changeset, naive(x.at), x.user_id, x.source, x.entity_id, x.record_id, x.action, x.field_id,
         x.old_value, x.new_value)
        for x in history.lines(t.entity_id, pk)
    ]  # fmt: skip
    common = (naive(at),)
    assert got == [
        (a.id, a.changeset, *common, staff, "import", t.entity_id, pk, "create", None, None, None),
        (a.id, a.changeset, *common, staff, "import", t.entity_id, pk, "create", 1, None, "x"),
        (a.id, a.changeset, *common, staff, "import", t.entity_id, pk, "create", 2, None, 3),
        (b.id, b.changeset, *common, None, "ui", t.entity_id, pk, "update", 2, 3, 4),
        (c.id, c.changeset, *common, None, "ui", t.entity_id, pk, "merge", None, None, {"into": 5}),
    ]
    table_lines = history.lines(t.entity_id)
    assert {x.record_id for x in table_lines} >= {pk, other}
    assert {x.entity_id for x in table_lines} == {t.entity_id}
    assert [x.id for x in table_lines] == sorted(x.id for x in table_lines)
    by_record = history.lines(record_id=other)
    assert {(x.record_id, x.action) for x in by_record} >= {(other, "create")}
    assert pk not in {x.record_id for x in by_record}
    chosen = history.lines(query=select(RecordChange).where(RecordChange.id.in_([c.id, a.id])))
    assert [(x.id, x.field_id) for x in chosen] == [(a.id, None), (a.id, 1), (a.id, 2), (c.id, None)]


# --- replay and values_at -----------------------------------------------------------------------------------


def test_replay_adds_up_values_and_the_recycle_bin_flag(t: Table) -> None:
    assert history.replay(t.entity_id, fresh_id()) is None
    pk = fresh_id()
    t.store(pk, "purge", None, entity_id=current().entity("companies").id)  # the same id in another table
    t.store(fresh_id(), "delete", None)  # another record of the table
    t.store(pk, "create", [[1, None, "a"], [2, None, 1]])
    assert history.replay(t.entity_id, pk) == ({1: "a", 2: 1}, False)
    t.store(pk, "update", [[1, "a", "b"], [3, None, None]])
    t.store(pk, "delete", None)
    assert history.replay(t.entity_id, pk) == ({1: "b", 2: 1, 3: None}, True)
    t.store(pk, "restore", None)
    assert history.replay(t.entity_id, pk) == ({1: "b", 2: 1, 3: None}, False)
    t.store(pk, "merge", None, note={"merged": 1})
    t.store(pk, "delete", None)
    t.store(pk, "update", [[2, 1, 9]])
    assert history.replay(t.entity_id, pk) == ({1: "b", 2: 9, 3: None}, True)
    t.store(pk, "purge", None)
    t.store(pk, "create", [[1, None, "c"]])  # the same id again after a purge
    assert history.replay(t.entity_id, pk) is None
    other = fresh_id()
    t.store(other, "delete", None)
    assert history.replay(t.entity_id, other) == ({}, True)


def test_values_at_each_version(t: Table) -> None:
    pk = fresh_id()
    assert history.values_at(t.entity_id, pk, 1) is None
    t.store(pk, "create", [[1, None, "z"]], entity_id=current().entity("companies").id)  # another table's
    t.store(fresh_id(), "create", [[1, None, "y"]])  # another record's
    t.store(pk, "create", [[1, None, "a"], [2, None, 1]])
    merge = uuid.uuid4().hex
    t.store(pk, "merge", None, changeset=merge, note={"merged": 3})
    t.store(pk, "update", [[1, "a", "b"]], changeset=merge)
    t.store(pk, "delete", None)
    t.store(pk, "update", [[2, 1, 5]])
    assert history.values_at(t.entity_id, pk, 0) == {}
    assert history.values_at(t.entity_id, pk, 1) == {1: "a", 2: 1}
    assert history.values_at(t.entity_id, pk, 2) == {1: "b", 2: 1}
    assert history.values_at(t.entity_id, pk, 3) == {1: "b", 2: 1}
    assert history.values_at(t.entity_id, pk, 4) == {1: "b", 2: 5}
    assert history.values_at(t.entity_id, pk, 5) is None


# --- the audit log ------------------------------------------------------------------------------------------


def test_audit_query_filters(t: Table) -> None:
    pk = fresh_id()
    base = dt.datetime(2001, 2, 3, 12, 0, tzinfo=dt.UTC)
    staff, admin = user("staff1").id, user("admin").id
    rows = [
        t.store(pk, "create", [[1, None, 1]], at=base, user_id=staff, source="api"),
        t.store(pk, "update", [[1, 1, 2]], at=base + dt.timedelta(hours=1), user_id=admin, source="ui"),
        t.store(pk, "update", [[1, 2, 3]], at=base + dt.timedelta(hours=2), user_id=staff, source="ui"),
    ]
    ids = [r.id for r in rows]

    def found(**kw: Any) -> list[int]:
        query = history.audit_query(entity_id=t.entity_id, **kw).where(RecordChange.record_id == pk)
        return sorted(db.session.scalars(query.with_only_columns(RecordChange.id)))

    assert found() == ids
    assert found(user_id=staff) == [ids[0], ids[2]]
    assert found(source="ui") == ids[1:]
    assert found(source="") == ids
    assert found(since=base + dt.timedelta(hours=1)) == ids[1:]
    assert found(until=base + dt.timedelta(hours=1)) == ids[:1]
    assert found(since=base, until=base + dt.timedelta(hours=2)) == ids[:2]
    everywhere = history.audit_query(user_id=staff, since=base, until=base + dt.timedelta(hours=3))
    assert {r.id for r in db.session.scalars(everywhere)} >= {ids[0], ids[2]}
    other = history.audit_query(entity_id=t.entity_id + 10**6)
    assert ids[0] not in set(db.session.scalars(other.with_only_columns(RecordChange.id)))


def test_audit_page_pages_and_shows_only_what_the_reader_may_read(t: Table) -> None:
    staff, admin = actor("staff1"), actor("admin")
    mine = records.create(t.slug, t.values(name="Моя запись"), staff).id
    theirs = records.create(t.slug, t.values(name="Не моя"), admin).id
    records.update(t.slug, mine, t.values(secret="тайна"), admin, expected_version=1)
    records.update(t.slug, theirs, t.values(count="3"), admin, expected_version=1)
    query = history.audit_query(entity_id=t.entity_id).where(RecordChange.record_id.in_([mine, theirs]))

    def shown(page: int, per_page: int, who: Actor | None) -> tuple[list[tuple[Any, ...]], bool]:
        sets, more = history.audit_page(query, page, per_page, who)
        return [(c.record_id, c.action, c.user, [x.field for x in c.lines]) for c in sets], more

    count, name, secret = t.labels["count"], t.labels["name"], t.labels["secret"]
    everything = [
        (theirs, "update", label_of("admin"), [count]),
        (mine, "update", label_of("admin"), [secret]),
        (theirs, "create", label_of("admin"), [name]),
        (mine, "create", label_of("staff1"), [name]),
    ]
    assert shown(0, 10, admin) == (everything, False)
    assert shown(0, 10, None) == (everything, False)
    assert shown(0, 4, admin) == (everything, False)
    assert shown(0, 3, admin) == (everything[:3], True)
    assert shown(1, 2, admin) == (everything[2:], False)
    assert shown(1, 1, admin) == (everything[1:2], True)
    assert shown(0, 10, staff) == ([(mine, "update", label_of("admin"), []), everything[3]], False)
    assert shown(0, 2, staff) == ([(mine, "update", label_of("admin"), [])], True)
    assert shown(1, 2, staff) == ([everything[3]], False)
    nobody = Actor(None, frozenset(), "ui")
    assert shown(0, 10, nobody) == ([], False)


def test_audit_page_across_tables_keeps_each_tables_rights(t: Table) -> None:
    """One change set touching two tables: each record is shown by its own table's rules."""
    staff = actor("staff1")
    other = new_table(unique_label("Другая"))
    other_secret = new_field(other, "Пароль", "text")
    refresh()
    mine = records.create(t.slug, t.values(name="Здесь"), staff).id
    shared = uuid.uuid4().hex
    pk = fresh_id()
    at = dt.datetime(2002, 1, 1, tzinfo=dt.UTC)
    t.store(mine, "update", [[t.ids["count"], None, 1], [t.ids["secret"], "x", "y"]], changeset=shared, at=at)
    t.store(mine, "update", [[other_secret.id, None, "z"]], changeset=shared, at=at, entity_id=other.id)
    t.store(pk, "update", [[other_secret.id, None, "w"]], changeset=shared, at=at, entity_id=other.id)
    query = history.audit_query(since=at, until=at + dt.timedelta(seconds=1)).where(
        RecordChange.changeset == shared
    )
    admin_sets, _ = history.audit_page(query, 0, 10, actor("admin"))
    assert [(c.entity.id, c.record_id, [(x.field, x.new) for x in c.lines]) for c in admin_sets] == [
        (other.id, pk, [("Пароль", "w")]),
        (other.id, mine, [("Пароль", "z")]),
        (t.entity_id, mine, [(t.labels["secret"], "y"), (t.labels["count"], "1")]),
    ]
    staff_sets, _ = history.audit_page(query, 0, 10, staff)
    assert [(c.entity.id, c.record_id, [x.field for x in c.lines]) for c in staff_sets] == [
        (t.entity_id, mine, [t.labels["count"]]),
    ]


# --- size and archives --------------------------------------------------------------------------------------


def test_size_counts_rows_and_names_the_oldest(t: Table) -> None:
    before = history.size()
    assert before.estimated is False
    oldest = dt.datetime(1971, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    pk = fresh_id()
    t.store(pk, "create", [[1, None, "x" * 2000]], at=oldest)
    t.store(pk, "update", [[1, "x", "y"]])
    after = history.size()
    assert after.rows == before.rows + 2
    assert after.rows == db.session.scalar(select(func.count()).select_from(RecordChange))
    assert naive(after.oldest) == naive(oldest)
    assert isinstance(after.bytes, int) and after.bytes > 2000
    if db.session.get_bind().dialect.name == "sqlite":  # the table and its indexes, not the table alone
        table_only = db.session.scalar(
            text("SELECT sum(pgsize) FROM dbstat WHERE name = 'tabula_record_change'")
        )
        assert after.bytes > table_only
    db.session.execute(delete(RecordChange).where(RecordChange.record_id == pk))
    db.session.commit()
    assert history.size().rows == before.rows


def test_archive_moves_only_old_rows_in_pages_and_lists_the_file(
    t: Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "ARCHIVE_PAGE", 2)
    pk, kept = fresh_id(), fresh_id()
    old = dt.datetime(1980, 1, 1, 10, 0, tzinfo=dt.UTC)
    cutoff = dt.date(1980, 1, 2)
    stored = [
        t.store(pk, "create", [[1, None, "а"]], at=old, user_id=user("staff1").id),
        t.store(pk, "update", [[1, "а", "б"]], at=old + dt.timedelta(hours=1)),
    ]
    # A row at the cutoff itself, between the old ones by id: it stays.
    boundary = t.store(kept, "create", [[1, None, "в"]], at=dt.datetime(1980, 1, 2, tzinfo=dt.UTC)).id
    stored.append(t.store(pk, "merge", None, note={"into": 1}, at=old + dt.timedelta(hours=2)))
    ids = [r.id for r in stored]
    assert history.archive_before(dt.date(1979, 1, 1)) == (None, 0)
    assert not [p for p in history.archive_dir().iterdir() if p.name.endswith(".part")]
    name, moved = history.archive_before(cutoff)
    assert moved == 3
    assert name.startswith("history-before-1980-01-02-") and name.endswith("Z.jsonl.gz")
    assert history.lines(t.entity_id, pk) == []
    assert [x.id for x in history.lines(t.entity_id, kept)] == [boundary, boundary]
    path = history.archive_path(name)
    assert path is not None and path == history.archive_dir() / name
    archived = [json.loads(x) for x in gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()]
    assert [(x["id"], x["action"], x["field_id"], x["old_value"], x["new_value"]) for x in archived] == [
        (ids[0], "create", None, None, None),
        (ids[0], "create", 1, None, "а"),
        (ids[1], "update", 1, "а", "б"),
        (ids[2], "merge", None, None, {"into": 1}),
    ]
    assert archived[0]["user_id"] == user("staff1").id and archived[0]["record_id"] == pk
    assert dt.datetime.fromisoformat(archived[0]["at"]).replace(tzinfo=None) == naive(old)
    assert "б" in gzip.decompress(path.read_bytes()).decode("utf-8")  # not escaped
    listed = dict(history.archives())
    assert listed[name] == path.stat().st_size
    assert not [p for p in history.archive_dir().iterdir() if p.name.endswith(".part")]
    assert history.archive_before(cutoff) == (None, 0)


def test_archives_newest_first_and_only_names_this_module_makes(t: Table) -> None:
    folder = history.archive_dir()
    assert folder.is_dir() and folder.name == "history_archive"
    older = folder / "history-before-1970-01-01-19700102T000000Z.jsonl.gz"
    newer = folder / "history-before-1970-01-01-19700103T000000Z.jsonl.gz"
    older.write_bytes(b"12")
    newer.write_bytes(b"123")
    (folder / "notes.txt").write_text("x")
    (folder / "history-before-1970-01-01-19700104T000000Z.jsonl.gz.part").write_text("x")
    try:
        listed = history.archives()
        assert (newer.name, 3) in listed and (older.name, 2) in listed
        assert listed.index((newer.name, 3)) < listed.index((older.name, 2))
        assert [n for n, _size in listed] == sorted((n for n, _size in listed), reverse=True)
        assert all(n.startswith("history-before-") and n.endswith(".jsonl.gz") for n, _size in listed)
        assert history.archive_path(older.name) == older
        assert history.archive_path("notes.txt") is None
        assert history.archive_path("../" + older.name) is None
        assert history.archive_path("history-before-1970-01-01-19700105T000000Z.jsonl.gz") is None
        assert history.archive_path("xhistory-before-1970-01-01-19700102T000000Z.jsonl.gz") is None
        assert history.archive_path(older.name + "x") is None
    finally:
        for p in folder.glob("*1970*"):
            p.unlink()
        (folder / "notes.txt").unlink()


def test_archive_keeps_the_rows_and_no_file_when_deleting_them_fails(t: Table, app) -> None:  # noqa: ANN001
    """The file is complete and renamed, then the DELETE is refused (another writer holds the table): the
    rows stay, and no file claims to hold them."""
    pk = fresh_id()
    t.store(pk, "create", [[1, None, "x"]], at=dt.datetime(1975, 1, 1, tzinfo=dt.UTC))
    before = {p.name for p in history.archive_dir().iterdir()}
    url = db.engine.url
    if url.get_backend_name() == "sqlite":
        import sqlite3

        blocker = sqlite3.connect(url.database, timeout=0, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock; the archive's DELETE waits, then fails
        release = blocker.rollback
    else:
        blocker = db.engine.connect()
        blocker.exec_driver_sql("LOCK TABLE tabula_record_change IN SHARE ROW EXCLUSIVE MODE")
        db.session.execute(text("SET LOCAL lock_timeout = '500ms'"))
        release = blocker.rollback
    try:
        with pytest.raises(OperationalError):
            history.archive_before(dt.date(1976, 1, 1))
    finally:
        release()
        blocker.close()
    assert {p.name for p in history.archive_dir().iterdir()} == before
    assert [x.new_value for x in history.lines(t.entity_id, pk)] == [None, "x"]
    name, moved = history.archive_before(dt.date(1976, 1, 1))
    assert moved >= 1 and history.lines(t.entity_id, pk) == []
    history.archive_path(name).unlink()


def test_the_first_row_of_history_is_archived_too(t: Table) -> None:
    """The oldest row by id (the paging starts below it) goes into the file when it is old enough."""
    first = db.session.scalar(select(RecordChange).order_by(RecordChange.id).limit(1))
    kept = {c: getattr(first, c) for c in RecordChange.__table__.columns.keys()}  # noqa: SIM118
    first.at = dt.datetime(1960, 6, 1, tzinfo=dt.UTC)
    db.session.commit()
    try:
        name, moved = history.archive_before(dt.date(1960, 6, 2))
        path = history.archive_path(name)
        archived = [json.loads(x) for x in gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()]
        assert moved == 1 and {x["id"] for x in archived} == {kept["id"]}
        path.unlink()
    finally:
        db.session.rollback()
        if db.session.get(RecordChange, kept["id"]) is None:
            db.session.add(RecordChange(**kept))
        else:
            db.session.get(RecordChange, kept["id"]).at = kept["at"]
        db.session.commit()
