"""The read door (``custom_fields.query``) decided one case at a time, as ``make mutation
MODULE=custom_fields/query.py`` needs it: ``TableQuery`` called directly with an ``Actor`` (no HTTP, no
worker) over one table built once, where a bug would leak a row, a hidden field or a label, or lose rows
between pages. Every answer is exact (ids in order, messages, counts): the row scopes (own, team, all, the
assignee, the recycle bin), hidden fields that cannot be selected, filtered, sorted, searched or grouped,
every filter operator of every field type with nested and/or groups and their limits, sorts with empty
values and ties, keyset pages by signed cursors (refused when edited, forged or reused on another query),
counts, streams and batches, labels of links and users, aggregates, the recycle bin and the named system
reads. The same door with random filters and through the screens: tests/test_query.py,
tests/test_read_door.py, tests/test_query_aggregate.py, tests/test_data_endpoint.py."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import unicodedata
import uuid
from decimal import Decimal
from typing import Any

import pytest
from flask import current_app
from flask_babel import force_locale
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from app.extensions import db
from custom_fields import access, query, records, service
from custom_fields.access import Actor
from custom_fields.query import (
    MAX_SEARCH,
    Count,
    QueryDenied,
    QueryError,
    TableNotFound,
    TableQuery,
    clean_search,
    user_text,
)
from custom_fields.runtime import current, refresh, user_label
from custom_fields.service import NewField


def user_id(username: str) -> int:
    from flask_appbuilder.security.sqla.models import User

    return db.session.scalar(select(User.id).where(User.username == username))


def role_id(name: str) -> int:
    from flask_appbuilder.security.sqla.models import Role

    return db.session.scalar(select(Role.id).where(Role.name == name))


STAGES = [{"id": "s_new", "label": "Новая"}, {"id": "s_work", "label": "В работе"},
          {"id": "s_done", "label": "Закрыта"}]  # fmt: skip
TAGS = [
    {"id": "red", "label": "красный"},
    {"id": "green", "label": "зелёный"},
    {"id": "blue", "label": "синий"},
]
FIELDS = [  # key, label, type, settings
    ("num", "Число", "integer", {}),
    ("price", "Цена", "decimal", {"scale": 2}),
    ("day", "День", "date", {}),
    ("moment", "Момент", "datetime", {}),
    ("flag", "Флаг", "boolean", {}),
    ("stage", "Стадия", "single_select", {"options": STAGES}),
    ("tags", "Метки", "multi_select", {"options": TAGS}),
    ("notes", "Заметки", "long_text", {}),
    ("partner", "Партнёр", "link", None),  # to the partners' table
    ("old", "Старое", "link", None),  # to a table archived since
    ("resp", "Ответственный", "user", {}),
    ("secret", "Секрет", "text", {}),  # hidden from everyone but the admin
    ("locked", "Скидка", "integer", {}),  # view-only for Staff
    ("quiet", "Тихое", "text", {}),  # not searchable
]
T9 = "2025-01-10T09:00:00+00:00"
#: The rows, in the order of their ids: key -> (owner, values). Ties on purpose: num r1=r3, r2=r7, r9=r10;
#: price r1=r5; day r1=r4, r2=r6; moment r1=r3=r7; r9 and r10 share a name. r11 has no name (set to NULL
#: after), r12-r14 go to the recycle bin.
# fmt: off
ROWS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "r1": ("staff1", {"name": "Альфа", "num": 10, "price": "1.50", "day": "2025-01-10", "moment": T9,
                      "flag": True, "stage": "Новая", "tags": ["красный", "синий"],
                      "notes": "Первая заметка про ёлку", "partner": "p1", "secret": "тайна-один",
                      "locked": 1, "quiet": "шёпот"}),
    "r2": ("staff1", {"name": "Бета", "num": 20, "day": "2025-02-01", "flag": False, "stage": "В работе",
                      "tags": ["зелёный"], "partner": "p4", "resp": "staff2"}),
    "r3": ("staff2", {"name": "Вега", "num": 10, "price": "3", "moment": T9, "notes": "Вторая",
                      "partner": "p2", "secret": "тайна-три", "quiet": "громко"}),
    "r4": ("staff2", {"name": "Гамма", "price": "2.25", "day": "2025-01-10",
                      "moment": "2025-03-01T12:30:00+00:00", "flag": True, "stage": "Закрыта",
                      "tags": ["синий"], "partner": "p3"}),
    "r5": ("manager", {"name": "Дельта", "num": 30, "price": "1.5", "day": "2024-12-31",
                       "moment": "2024-12-31T23:59:00+00:00", "flag": False, "stage": "Новая",
                       "tags": ["красный"], "secret": "тайна-пять"}),
    "r6": ("staff4", {"name": "Жук", "num": -5, "price": "10", "day": "2025-02-01", "flag": True,
                      "stage": "В работе", "partner": "p1", "resp": "staff1"}),
    "r7": ("admin", {"name": "Зебра", "num": 20, "moment": T9, "stage": "Закрыта",
                     "tags": ["красный", "зелёный", "синий"], "partner": "p2"}),
    "r8": (None, {"name": "Ива", "day": "2025-03-15", "price": "0", "flag": False, "old": "x1"}),
    "r9": ("staff1", {"name": "Двойник", "num": 5}),
    "r10": ("staff2", {"name": "Двойник", "num": 5}),
    "r11": ("staff1", {"name": "временно", "num": 0, "price": "0"}),
    "r12": ("staff1", {"name": "Удалённая"}),
    "r13": ("staff2", {"name": "Стёртая"}),
    "r14": ("admin", {"name": "Корзина"}),
}
# fmt: on
#: Values the admin gives after (hidden or view-only for the owner, links to partners the owner may not read):
#: those rows are at version 2.
LATER = ("secret", "locked", "partner", "old")
ALL = [f"r{i}" for i in range(1, 12)]  # the live rows
#: When r12-r14 went to the recycle bin: not in the order of their ids, r13 and r14 at the same moment.
BINNED = {"r12": "2025-05-03T10:00:00+00:00", "r13": "2025-05-02T10:00:00+00:00",
          "r14": "2025-05-02T10:00:00+00:00"}  # fmt: skip
#: The partners (owner, name): p3's name is set to NULL after; three are called Лютик.
PARTNERS = {"p1": ("staff1", "Ромашка"), "p2": ("staff2", "Лютик"), "p3": ("staff1", "пусто"),
            "p4": ("admin", "Василёк"), "p5": ("admin", "Лютик"), "p6": ("staff2", "Лютик")}  # fmt: skip


class World:
    """One table for the whole module (creating tables costs seconds; each mutant's run pays it once), a
    partners' table it links to and an archived one, and who reads them:

    - Staff (staff1, staff2, staff4): their own rows (owner or assignee) for reading, editing and
      deleting; the secret hidden, the discount view-only; their own partners.
    - Manager (manager, in one team with staff1-3): the team's rows, editing them, not deleting; no
      partners at all.
    - "Аудитор" (given to staff4 here): every row, editing their own, no deleting; every partner.
    - "Слепой" (given to staff2 here): every row, but the name and the partners' name hidden.

    A partner links to a table of codes whose display field is a number (labels as its type shows them).
    """

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        sm = current_app.appbuilder.sm
        partner = service.create_entity(f"Партнёры {tag}", "", name_label="Имя")
        old = service.create_entity(f"Архив {tag}", "", name_label="Имя")
        amount = NewField("Сумма", "decimal", {"scale": 2})
        codes = service.create_entity(f"Коды {tag}", "", name_label="Имя", fields=[amount])
        refresh()
        amount_id = current().by_id[codes.id].fields[1].id
        service.update_entity(
            codes.id,
            label=codes.label,
            plural_label=codes.plural_label,
            icon="fa-table",
            display_field_id=amount_id,
        )
        self.partner_code = service.add_field(partner.id, "Код", "link", settings={"target": codes.id}).name
        refresh()
        targets = {"partner": partner.id, "old": old.id}
        main = service.create_entity(
            f"Записи {tag}",
            "",
            name_label="Название",
            fields=[
                NewField(label, kind, settings if settings is not None else {"target": targets[key]})
                for key, label, kind, settings in FIELDS
            ],
        )
        refresh()
        self.entity_id, self.slug = main.id, main.slug
        self.partner_slug, self.old_slug = partner.slug, old.slug
        spec = current().by_id[main.id]
        self.f = {"name": spec.display_field.name}
        self.f.update({key: f.name for (key, *_rest), f in zip(FIELDS, spec.fields[1:], strict=True)})
        field_id = {key: spec.field_by_name(name).id for key, name in self.f.items()}
        self.partner_name = current().by_id[partner.id].display_field.name
        service.update_field(field_id["quiet"], searchable=False)
        self.users = {u: user_id(u) for u in ("admin", "staff1", "staff2", "staff3", "staff4", "manager")}
        self.roles = {
            "staff": role_id("Staff"),
            "manager": role_id("Manager"),
            "auditor": sm.add_role(f"Аудитор {tag}").id,
            "blind": sm.add_role(f"Слепой {tag}").id,
        }
        hidden = {field_id["secret"]: "hidden"}
        access.save_rules(
            self.roles["staff"],
            tables={main.id: {"read": True, "add": True, "edit": True, "delete": True, "read_scope": "own",
                              "edit_scope": "own", "delete_scope": "own"},
                    partner.id: {"read": True, "read_scope": "own"}},
            fields={**hidden, field_id["locked"]: "view"},
        )  # fmt: skip
        access.save_rules(
            self.roles["manager"],
            tables={main.id: {"read": True, "edit": True, "delete": False, "read_scope": "team",
                              "edit_scope": "team"},
                    partner.id: {"read": False}},
            fields=hidden,
        )  # fmt: skip
        access.save_rules(
            self.roles["auditor"],
            tables={main.id: {"read": True, "edit": True, "delete": False, "read_scope": "all",
                              "edit_scope": "own"},
                    partner.id: {"read": True, "read_scope": "all"}},
            fields=hidden,
        )  # fmt: skip
        partner_name_id = current().by_id[partner.id].display_field.id
        access.save_rules(
            self.roles["blind"],
            tables={main.id: {"read": True, "read_scope": "all"},
                    partner.id: {"read": True, "read_scope": "all"}},
            fields={**hidden, field_id["name"]: "hidden", partner_name_id: "hidden"},
        )  # fmt: skip
        refresh()
        system = Actor.system_job()
        self.partners = {}
        for key, (owner, name) in PARTNERS.items():
            self.partners[key] = records.create(partner.slug, {self.partner_name: name}, self.actor(owner)).id
        spec = current().by_id[codes.id]
        self.codes_slug, self.code_amount = codes.slug, spec.display_field.name
        code_name = spec.fields[0].name
        self.codes = {
            key: records.create(codes.slug, {code_name: key, self.code_amount: value}, system).id
            for key, value in (("c1", "12.5"), ("c2", "3"))
        }
        records.update(partner.slug, self.partners["p1"], {self.partner_code: self.codes["c1"]}, system,
                       expected_version=None)  # fmt: skip
        self.old_ids = {
            "x1": records.create(old.slug, {current().by_id[old.id].display_field.name: "Старьё"}, system).id
        }
        self.ids: dict[str, int] = {}
        later = []  # what only the admin may write (hidden or view-only for the owner): a second version
        for key, (owner, values) in ROWS.items():
            given = {self.f[k]: self._value(k, v) for k, v in values.items() if k not in LATER}
            self.ids[key] = records.create(main.slug, given, self.actor(owner)).id
            kept = {self.f[k]: self._value(k, v) for k, v in values.items() if k in LATER}
            if kept:
                later.append((self.ids[key], kept, 1))
        records.update_many(main.slug, later, system)
        self.keys = {pk: key for key, pk in self.ids.items()}
        tbl = self.table()
        db.session.execute(update(tbl).where(tbl.c.id == self.ids["r11"]).values({self.f["name"]: None}))
        ptbl = current().classes[partner.slug].__table__
        db.session.execute(
            update(ptbl).where(ptbl.c.id == self.partners["p3"]).values({self.partner_name: None})
        )
        db.session.commit()
        for key, when in BINNED.items():
            records.delete(main.slug, self.ids[key], system)
            db.session.execute(
                update(tbl)
                .where(tbl.c.id == self.ids[key])
                .values(deleted_at=dt.datetime.fromisoformat(when))
            )
        db.session.commit()
        service.archive_entity(old.id)
        refresh()

    def _value(self, key: str, value: Any) -> Any:
        if key == "partner":
            return self.partners[value]
        if key == "old":
            return self.old_ids[value]
        if key == "resp":
            return user_id(value)
        return value

    def actor(self, who: str | None) -> Actor:
        if who is None:
            return Actor.system_job()
        if who == "auditor":
            return Actor(self.users["staff4"], frozenset({self.roles["auditor"]}), "ui")
        if who == "blind":
            return Actor(self.users["staff2"], frozenset({self.roles["blind"]}), "ui")
        return Actor.for_user_id(self.users[who], "ui")

    def q(self, who: str | None = "admin", action: str = "read") -> TableQuery:
        return TableQuery(self.slug, self.actor(who), action)

    def table(self) -> Any:
        return current().classes[self.slug].__table__

    def keys_of(self, rows: Any) -> list[str]:
        """Row keys (``r1`` ...) of rows or ids, in their order."""
        return [self.keys[row["id"] if isinstance(row, dict) else row] for row in rows]

    def pk(self, *keys: str) -> list[int]:
        return [self.ids[k] for k in keys]

    def c(self, key: str, op: str, value: Any = None) -> dict[str, Any]:
        """A filter condition on a field given by its key here (``num``) or a record column (``owner_id``)."""
        return {"field": self.f.get(key, key), "op": op, "value": value}

    def s(self, *keys: str) -> tuple[str, ...]:
        """Sort keys by the keys here: ``s("-num", "name")``."""
        return tuple(
            ("-" if k.startswith("-") else "") + self.f.get(k.lstrip("-"), k.lstrip("-")) for k in keys
        )

    def rows(self, query: TableQuery) -> list[str]:
        """Every row of a query (one page), as keys."""
        return self.keys_of(query.page(500).rows)

    def match(self, *conditions: Any, who: str | None = "admin") -> list[str]:
        return self.rows(self.q(who).where(list(conditions)))


@pytest.fixture(scope="module")
def shared_world(app) -> World:  # noqa: ANN001
    with app.app_context():
        return World()


@pytest.fixture
def w(app_ctx, shared_world: World) -> World:  # noqa: ANN001
    # What the layer keeps per actor and query shape (rights, columns, statements) is built afresh in each
    # test, so that each test exercises what it reads (mutation testing runs a mutant against the tests that
    # called the function when all tests ran once: a memo would hide the calls after the first).
    current().memo.clear()
    return shared_world


SCOPE = {
    "staff1": ["r1", "r2", "r6", "r9", "r11"],  # owner of r1, r2, r9, r11; assignee of r6
    "staff2": ["r2", "r3", "r4", "r10"],  # owner of r3, r4, r10; assignee of r2
    "staff4": ["r6"],
    "manager": ["r1", "r2", "r3", "r4", "r5", "r6", "r9", "r10", "r11"],  # the team: manager, staff1-3
    "auditor": ALL,
    "blind": ALL,
    "admin": ALL,
    None: ALL,  # the system
}
REFUSED_CURSOR = "This cursor does not belong to this query: start again from the first page."
SHAPE = "A filter is an object with field, op and value, or an and/or group."
GROUP = "A filter group has one key, “and” or “or”, holding a list of conditions."


def refused(call: Any, message: str, kind: type[Exception] = QueryError) -> None:
    with pytest.raises(kind) as caught:
        call()
    assert str(caught.value) == message


# --- who reads what -----------------------------------------------------------------------------------------


def test_each_actor_reads_exactly_the_rows_of_their_scope(w: World) -> None:
    for who, keys in SCOPE.items():
        assert w.rows(w.q(who)) == keys, who
        assert w.rows(w.q(who).order_by("-id")) == keys[::-1], who


def test_editing_and_deleting_reach_as_far_as_their_own_scope(w: World) -> None:
    assert w.rows(w.q("staff1", "edit")) == SCOPE["staff1"]
    assert w.rows(w.q("staff2", "delete")) == SCOPE["staff2"]
    assert w.rows(w.q("manager", "edit")) == SCOPE["manager"]
    assert w.rows(w.q("auditor", "edit")) == ["r6"]  # reads every row, edits their own
    assert w.rows(w.q("admin", "delete")) == ALL


def test_a_table_that_is_missing_archived_or_denied_is_refused(w: World) -> None:
    admin = w.actor("admin")
    for table in ("no_such_table", 5, None, ["x"], w.old_slug):
        with pytest.raises(TableNotFound) as missing:
            TableQuery(table, admin)  # type: ignore[arg-type]
        assert (str(missing.value), missing.value.status) == ("No such table.", 404)
    denied = "You may not do this in this table."
    for who, action in (("manager", "delete"), ("auditor", "delete"), ("blind", "edit"), ("blind", "delete")):
        with pytest.raises(QueryDenied) as caught:
            w.q(who, action)
        assert (str(caught.value), caught.value.status) == (denied, 403)
    refused(lambda: TableQuery(w.slug, Actor(w.users["staff1"], frozenset(), "ui")), denied, QueryDenied)
    refused(lambda: TableQuery(w.slug, admin, "add"), "unknown action 'add'", ValueError)
    assert QueryError("x").status == 400 and issubclass(QueryDenied, QueryError)


def test_the_query_knows_its_table_model_and_rights(w: World) -> None:
    q = w.q("staff1")
    assert q.entity.slug == w.slug and q.model is current().classes[w.slug]
    assert not q.rights.is_admin and q.rights.scope("read") == "own"
    assert w.q().rights.is_admin


# --- columns ------------------------------------------------------------------------------------------------


def test_the_columns_are_the_visible_fields_then_the_record_columns(w: World) -> None:
    every = ["id", *(w.f[k] for k in ["name", *(key for key, *_r in FIELDS)]), "owner_id", "created_at",
             "updated_at"]  # fmt: skip
    assert [c.name for c in w.q().columns] == every
    hidden = [n for n in every if n != w.f["secret"]]
    for who in ("staff1", "manager", "auditor"):
        assert [c.name for c in w.q(who).columns] == hidden, who
        assert [c.name for c in w.q(who).all_columns] == hidden, who
    assert [c.name for c in w.q("blind").columns] == [n for n in hidden if n != w.f["name"]]
    companies = TableQuery("companies", w.actor("admin"))
    assert companies.column("owner_id").record is False  # a real field there, not the record column


def test_a_column_describes_itself(w: World) -> None:
    q = w.q("staff1")
    number_ops = ["eq", "neq", "gt", "lt", "ge", "le", "empty", "nempty"]
    assert q.column(w.f["num"]).as_json() == {
        "name": w.f["num"], "label": "Число", "type": "integer", "record": False, "editable": True,
        "sortable": True, "reference": None, "operators": number_ops,
        "hints": {"editor": "number", "align": "right"},
    }  # fmt: skip
    assert q.column(w.f["locked"]).as_json()["editable"] is False  # view-only for Staff
    assert w.q().column(w.f["locked"]).editable is True
    assert q.column("id").as_json() == {
        "name": "id", "label": "No.", "type": "integer", "record": True, "editable": False,
        "sortable": True, "reference": None, "operators": number_ops,
        "hints": {"editor": "number", "align": "right"},
    }  # fmt: skip
    owner = q.column("owner_id")
    assert (owner.record, owner.type, owner.reference, owner.sortable, str(owner.spec.label)) == (
        True, "user", "user", True, "Owner")  # fmt: skip
    assert [(q.column(n).type, str(q.column(n).spec.label)) for n in ("created_at", "updated_at")] == [
        ("datetime", "Created"), ("datetime", "Updated")]  # fmt: skip
    partner = q.column(w.f["partner"])
    assert (partner.reference, partner.operators, partner.as_json()["hints"]["target"]) == (
        "record", ("eq", "neq", "empty", "nempty"), current().entity(w.partner_slug).id)  # fmt: skip
    notes = q.column(w.f["notes"])
    assert (notes.sortable, notes.ftype.name, notes.as_json()["sortable"]) == (False, "long_text", False)


def test_the_columns_json_is_each_actors_own_in_the_requests_language(w: World) -> None:
    """The grid's column list (kept with the schema between pages): a field hidden from Staff is not in
    theirs even when the admin's list was built first; the same actor gets the same list; labels follow
    the request's language."""
    admin, staff = w.q().columns_json(), w.q("staff1").columns_json()
    assert [c["name"] for c in admin] == [c.name for c in w.q().columns]
    assert [c["name"] for c in staff] == [c.name for c in w.q("staff1").columns]
    assert w.f["secret"] in [c["name"] for c in admin] and w.f["secret"] not in [c["name"] for c in staff]
    assert w.q("staff1").columns_json() is staff  # built once per actor, selection and language
    assert w.q().fields(w.f["num"]).columns_json() == [
        w.q().column("id").as_json(),
        w.q().column(w.f["num"]).as_json(),
    ]
    with force_locale("ru"):
        russian = w.q("staff1").columns_json()
    assert next(c["label"] for c in russian if c["name"] == "id") == "№"
    assert next(c["label"] for c in staff if c["name"] == "id") == "No."


def test_an_unknown_and_a_hidden_field_are_the_same_error(w: World) -> None:
    q = w.q("staff1")
    refused(lambda: q.column(w.f["secret"]), f"Unknown field: {w.f['secret']}.")
    refused(lambda: q.column("nope"), "Unknown field: nope.")
    refused(lambda: q.column(5), "Unknown field: 5.")
    refused(lambda: q.column(None), "Unknown field: None.")
    refused(lambda: q.column(["x"]), "Unknown field: ['x'].")
    refused(lambda: q.where({"field": ["x"], "op": "eq", "value": 1}), "Unknown field: ['x'].")
    refused(lambda: q.column("я" * 100), "Unknown field: " + "я" * 60 + ".")
    refused(lambda: q.column("\ud800x"), "Unknown field: ?x.")
    assert w.q().column(w.f["secret"]).name == w.f["secret"]


def test_fields_choose_the_columns_of_the_rows(w: World) -> None:
    q = w.q("staff1").fields(w.f["num"], w.f["name"], w.f["num"], "id")
    assert [c.name for c in q.columns] == ["id", w.f["num"], w.f["name"]]
    assert len(q.all_columns) == len(w.q("staff1").all_columns)
    rows = q.order_by(w.f["price"]).page(2).rows  # sorted and filtered by a column not chosen
    assert rows == [{"id": w.ids["r11"], w.f["num"]: 0, w.f["name"]: None},
                    {"id": w.ids["r1"], w.f["num"]: 10, w.f["name"]: "Альфа"}]  # fmt: skip
    refused(lambda: w.q("staff1").fields(w.f["name"], w.f["secret"]), f"Unknown field: {w.f['secret']}.")
    linked = w.q("staff1").fields(w.f["resp"]).get(w.ids["r6"])
    assert linked == {"id": w.ids["r6"], w.f["resp"]: w.users["staff1"],
                      "_labels": {w.f["resp"]: "Пётр Смирнов (staff1)"}}  # fmt: skip
    assert w.q().fields().get(w.ids["r1"]) == {"id": w.ids["r1"]}


def test_a_query_is_immutable(w: World) -> None:
    q = w.q()
    narrowed = q.where(w.c("num", "eq", 10)).order_by(w.f["name"]).fields(w.f["name"]).search("а")
    assert w.rows(q) == ALL and narrowed is not q
    assert [c.name for c in q.columns][:2] == ["id", w.f["name"]] and len(q.columns) == 19
    assert q.with_versions().get(w.ids["r1"])["_version"] == 2 and "_version" not in q.get(w.ids["r1"])


# --- filters: every operator of every type ------------------------------------------------------------------


def test_text_operators(w: World) -> None:
    m = w.match
    assert m(w.c("name", "ct", "ЛЬ")) == ["r1", "r5"]  # any letter case
    assert m(w.c("name", "nct", "ль")) == ["r2", "r3", "r4", "r6", "r7", "r8", "r9", "r10", "r11"]
    assert m(w.c("name", "eq", "Двойник")) == ["r9", "r10"]
    assert m(w.c("name", "eq", "  Двойник  ")) == []  # a text filter's value is taken as it is
    assert m(w.c("name", "neq", "Двойник")) == ["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r11"]
    assert m(w.c("name", "sw", "д")) == ["r5", "r9", "r10"]
    assert m(w.c("name", "ct", "_")) == [] and m(w.c("name", "ct", "%")) == []
    assert m(w.c("name", "empty")) == ["r11"]
    assert m(w.c("name", "nempty", "ignored")) == ALL[:10]
    assert m(w.c("notes", "ct", "ЁЛК")) == ["r1"]
    assert m(w.c("notes", "nct", "втор")) == [k for k in ALL if k != "r3"]
    assert m(w.c("notes", "nempty")) == ["r1", "r3"]


def test_number_operators(w: World) -> None:
    m = w.match
    assert m(w.c("num", "eq", 10)) == ["r1", "r3"] and m(w.c("num", "eq", "10")) == ["r1", "r3"]
    assert m(w.c("num", "eq", "0")) == ["r11"] and m(w.c("num", "eq", 0)) == ["r11"]
    assert m(w.c("num", "neq", "10")) == ["r2", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11"]
    assert m(w.c("num", "gt", "10")) == ["r2", "r5", "r7"]
    assert m(w.c("num", "lt", "10")) == ["r6", "r9", "r10", "r11"]
    assert m(w.c("num", "ge", "10")) == ["r1", "r2", "r3", "r5", "r7"]
    assert m(w.c("num", "le", "5")) == ["r6", "r9", "r10", "r11"]
    assert m(w.c("num", "empty")) == ["r4", "r8"]
    assert m(w.c("num", "nempty")) == ["r1", "r2", "r3", "r5", "r6", "r7", "r9", "r10", "r11"]
    assert m(w.c("num", "eq", 2**40)) == []  # a 64-bit column holds it
    assert m(w.c("price", "eq", "1,5")) == ["r1", "r5"]
    assert m(w.c("price", "eq", Decimal("1.5"))) == ["r1", "r5"]
    assert m(w.c("price", "gt", "2")) == ["r3", "r4", "r6"]
    assert m(w.c("price", "le", "0")) == ["r8", "r11"]
    assert m(w.c("price", "empty")) == ["r2", "r7", "r9", "r10"]
    assert m(w.c("id", "lt", 3)) == ["r1", "r2"]


def test_date_and_time_operators(w: World) -> None:
    m = w.match
    assert m(w.c("day", "eq", "10.01.2025")) == ["r1", "r4"]
    assert m(w.c("day", "lt", "2025-01-10")) == ["r5"]
    assert m(w.c("day", "ge", "01.02.2025")) == ["r2", "r6", "r8"]
    assert m(w.c("day", "empty")) == ["r3", "r7", "r9", "r10", "r11"]
    assert m(w.c("moment", "eq", T9)) == ["r1", "r3", "r7"]
    assert m(w.c("moment", "gt", T9)) == ["r4"]
    assert m(w.c("moment", "le", T9)) == ["r1", "r3", "r5", "r7"]
    assert m(w.c("moment", "nempty")) == ["r1", "r3", "r4", "r5", "r7"]


def test_yes_no_and_choice_operators(w: World) -> None:
    m = w.match
    assert m(w.c("flag", "eq", True)) == ["r1", "r4", "r6"]
    assert m(w.c("flag", "eq", "нет")) == ["r2", "r5", "r8"]
    assert m(w.c("flag", "empty")) == ["r3", "r7", "r9", "r10", "r11"]
    assert m(w.c("stage", "eq", "Новая")) == ["r1", "r5"]
    assert m(w.c("stage", "eq", "s_done")) == ["r4", "r7"]
    assert m(w.c("stage", "neq", "новая")) == ["r2", "r3", "r4", "r6", "r7", "r8", "r9", "r10", "r11"]
    assert m(w.c("stage", "nempty")) == ["r1", "r2", "r4", "r5", "r6", "r7"]
    assert m(w.c("tags", "has", "красный")) == ["r1", "r5", "r7"]
    assert m(w.c("tags", "nhas", "синий")) == ["r2", "r3", "r5", "r6", "r8", "r9", "r10", "r11"]
    assert m(w.c("tags", "empty")) == ["r3", "r6", "r8", "r9", "r10", "r11"]


def test_link_and_user_operators(w: World) -> None:
    m = w.match
    p1 = w.partners["p1"]
    assert m(w.c("partner", "eq", p1)) == ["r1", "r6"] and m(w.c("partner", "eq", str(p1))) == ["r1", "r6"]
    assert m(w.c("partner", "neq", p1)) == ["r2", "r3", "r4", "r5", "r7", "r8", "r9", "r10", "r11"]
    assert m(w.c("partner", "empty")) == ["r5", "r8", "r9", "r10", "r11"]
    assert m(w.c("resp", "eq", "staff1")) == ["r6"]
    assert m(w.c("resp", "eq", w.users["staff2"])) == ["r2"]
    assert m(w.c("owner_id", "eq", "staff1")) == ["r1", "r2", "r9", "r11"]
    assert m(w.c("owner_id", "empty")) == ["r8"]
    assert m(w.c("old", "nempty")) == ["r8"]
    assert m(w.c("owner_id", "eq", "staff4"), who="staff1") == ["r6"]


def test_a_filter_value_that_does_not_fit_is_refused_with_the_field(w: World) -> None:
    q = w.q()
    cases = [
        (w.c("num", "eq", "много"), "Число: Expected a whole number."),
        (w.c("day", "eq", "31.02.2025"), "День: Expected a date such as 31.12.2025."),
        (w.c("stage", "eq", "Нет такой"),
         "Стадия: “Нет такой” is not one of the options: Новая, В работе, Закрыта."),
        (w.c("partner", "eq", "abc"), "Партнёр: Expected the number of a record."),
        (w.c("partner", "eq", 2**31), "Партнёр: No such record."),
        (w.c("resp", "eq", "nobody_here"), "Ответственный: No user “nobody_here”."),
        (w.c("id", "eq", 2**31), "No.: The number is too large."),
        (w.c("id", "eq", -(2**31) - 1), "No.: The number is too large."),
    ]  # fmt: skip
    for condition, message in cases:
        refused(lambda condition=condition: q.where(condition), message)
    assert w.match(w.c("id", "eq", 2**31 - 1)) == [] and w.match(w.c("id", "eq", -(2**31))) == []
    single = "The filter on Число needs a single value."
    for value in ([10], {"v": 10}, float("nan"), "1\x00", "\ud800", []):
        refused(lambda value=value: q.where(w.c("num", "eq", value)), single)
    assert w.match(w.c("num", "eq", 10.0)) == ["r1", "r3"]


def test_an_operator_the_type_has_not_is_refused_with_the_ones_it_has(w: World) -> None:
    q = w.q()
    refused(
        lambda: q.where(w.c("flag", "gt", 1)),
        "“gt” is not a filter operator for Флаг (use one of: eq, empty, nempty).",
    )
    refused(
        lambda: q.where(w.c("notes", "eq", "x")),
        "“eq” is not a filter operator for Заметки (use one of: ct, nct, empty, nempty).",
    )
    refused(
        lambda: q.where(w.c("tags", "eq", "красный")),
        "“eq” is not a filter operator for Метки (use one of: has, nhas, empty, nempty).",
    )
    refused(
        lambda: q.where(w.c("num", "ж" * 30, 1)),
        "“" + "ж" * 20 + "” is not a filter operator for Число (use one of: eq, neq, gt, lt, ge, le, empty, "
        "nempty).",
    )
    refused(
        lambda: q.where(w.c("name", 5, "x")),
        "“5” is not a filter operator for Название (use one of: ct, nct, eq, neq, sw, empty, nempty).",
    )


def test_a_hidden_field_cannot_be_filtered_on(w: World) -> None:
    refused(
        lambda: w.q("staff1").where(w.c("secret", "eq", "тайна-один")), f"Unknown field: {w.f['secret']}."
    )
    refused(lambda: w.q("blind").where(w.c("name", "nempty")), f"Unknown field: {w.f['name']}.")
    assert w.match(w.c("secret", "ct", "тайна")) == ["r1", "r3", "r5"]


def test_empty_filters_are_left_out(w: World) -> None:
    q = w.q()
    nested = [{"and": [{"or": [w.c("num", "gt", " ")]}]}]
    for nothing in (None, {}, [], w.c("num", "eq", None), w.c("num", "eq", "  "), w.c("name", "eq", ""),
                    {"and": [w.c("num", "eq", "")]}, {"or": []}, nested):  # fmt: skip
        assert q.where(nothing) is q, nothing
    assert w.rows(q.where([w.c("num", "eq", ""), w.c("num", "eq", 20)])) == ["r2", "r7"]
    assert w.rows(q.where({"or": [w.c("num", "eq", ""), w.c("num", "eq", 30)]})) == ["r5"]


def test_and_or_groups_nest(w: World) -> None:
    m = w.match
    assert m(w.c("num", "ge", 10), w.c("flag", "eq", True)) == ["r1"]
    assert m({"and": [w.c("num", "ge", 10), w.c("flag", "eq", True)]}) == ["r1"]
    assert m({"or": [w.c("num", "eq", 5), w.c("stage", "eq", "Закрыта")]}) == ["r4", "r7", "r9", "r10"]
    both = {"and": [{"or": [w.c("num", "eq", 10), w.c("num", "eq", 20)]},
                    {"or": [w.c("flag", "eq", False), w.c("flag", "empty")]}]}  # fmt: skip
    assert m(both) == ["r2", "r3", "r7"]
    assert m([[w.c("num", "eq", 10)], {"or": [w.c("name", "eq", "Вега"), w.c("name", "eq", "Бета")]}]) == [
        "r3"
    ]
    assert w.rows(w.q().where(w.c("num", "ge", 10)).where(w.c("flag", "empty"))) == ["r3", "r7"]
    assert m({"or": [w.c("num", "eq", 30)]}, who="staff1") == []


def test_filter_groups_nest_at_most_four_levels(w: World) -> None:
    leaf = w.c("num", "eq", 30)
    four = {"and": [{"or": [{"and": [leaf]}]}]}
    assert w.rows(w.q().where(four)) == ["r5"]
    assert w.rows(w.q().where([[[leaf]]])) == ["r5"]
    refused(lambda: w.q().where({"and": [four]}), "Filter groups may nest at most 4 levels.")
    refused(lambda: w.q().where([[[[leaf]]]]), "Filter groups may nest at most 4 levels.")


def test_a_filter_holds_at_most_fifty_conditions(w: World) -> None:
    same = [w.c("num", "eq", 30)] * 25
    assert w.match({"or": same}, {"or": same}) == ["r5"]
    too_many = "A filter may have at most 50 conditions."
    refused(lambda: w.q().where([{"or": same}, {"or": [*same, w.c("num", "eq", 30)]}]), too_many)
    refused(lambda: w.q().where([w.c("num", "eq", "")] * 51), too_many)  # empty ones count too
    assert w.rows(w.q().where({"or": same * 2}).where({"or": same * 2})) == ["r5"]  # each where its own


def test_a_malformed_filter_is_refused(w: World) -> None:
    q = w.q()
    leaf = w.c("num", "eq", 30)
    for bad in ("num", 5, [5], {"field": w.f["num"], "op": "eq", "value": 1, "extra": 1},
                {"field": w.f["num"], "value": 1}, {"op": "eq", "value": 1}, {"value": 1}):  # fmt: skip
        refused(lambda bad=bad: q.where(bad), SHAPE)
    for bad in ({"and": [leaf], "or": [leaf]}, {"and": leaf}, {"or": "x"}, {"and": [leaf], "field": "x"},
                {"or": [leaf], "op": "eq"}):  # fmt: skip
        refused(lambda bad=bad: q.where(bad), GROUP)


# --- quick search -------------------------------------------------------------------------------------------


# These two need no database; with an app context they run once per backend like the rest of the file.


def test_clean_search(app_ctx) -> None:  # noqa: ANN001
    assert clean_search(None) == "" and clean_search(5) == "" and clean_search(["a"]) == ""
    assert clean_search("  Ёлка\t\x00 и\u200b\nпалка  ") == "Ёлка и палка"
    assert clean_search("я" * 150) == "я" * 100
    assert clean_search(" " * 400 + "x") == "x" and clean_search("a" + " \x00" * 300 + "b") == "a b"
    assert clean_search(" " * 9_999 + "xy") == "x" and clean_search(" " * 10_000 + "x") == ""
    assert clean_search("ab " * 60) == ("ab " * 34)[:100]
    assert clean_search("a" * 99 + " b") == "a" * 99  # never ends in a space


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_clean_search_is_the_collapsed_text_cut_at_its_length(raw: str) -> None:
    spaced = "".join(" " if unicodedata.category(ch).startswith("C") else ch for ch in raw)
    assert clean_search(raw) == " ".join(spaced.split())[:MAX_SEARCH].rstrip()


def test_user_text(app_ctx) -> None:  # noqa: ANN001
    assert user_text("Пётр", "Смирнов", "staff1") == "Пётр Смирнов (staff1)"
    assert user_text("Пётр", None, "p") == "Пётр (p)" and user_text(None, "Смирнов", "s") == "Смирнов (s)"
    assert user_text("", None, "u") == "u" and user_text(None, None, "u") == "u"
    assert user_text("Пётр", "Смирнов", None) is None


def test_quick_search_looks_in_the_visible_searchable_fields(w: World) -> None:
    def found(text: Any, who: str = "admin") -> list[str]:
        return w.rows(w.q(who).search(text))

    assert found("ЛЬ") == ["r1", "r5"] and found("  ЛЬ\n") == ["r1", "r5"]
    assert found("тайна") == ["r1", "r3", "r5"]
    assert found("тайна", "staff1") == [] and found("тайна", "auditor") == []  # hidden: not looked in
    assert found("шёпот") == []  # a field left out of quick search
    assert found("20") == ["r2", "r7"] and found("5") == ["r9", "r10"]  # whole numbers, exactly
    assert found("Закр") == ["r4", "r7"] and found("зелён") == ["r2", "r7"]  # option labels
    assert found("ёлк") == ["r1"]
    assert found("Двойник", "staff1") == ["r9"]
    assert found("") == ALL and found(None) == ALL
    assert found("Альфа", "blind") == []
    # Where the reader sees no field to look in, a search finds nothing (not everything).
    partners = TableQuery(w.partner_slug, w.actor("blind"))
    assert len(partners.page(10).rows) == 6 and partners.search("Ромашка").page(10).rows == []
    assert len(TableQuery(w.partner_slug, w.actor("admin")).search("Ромашка").page(10).rows) == 1
    # "а" is in names, notes, secrets and the labels of every stage and of "красный".
    assert found("а") == ["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8"]
    assert found("а", "staff1") == ["r1", "r2", "r6"]
    assert w.rows(w.q().search("а").where(w.c("num", "ge", 10))) == ["r1", "r2", "r3", "r5", "r7"]


def test_search_in_looks_only_in_the_named_visible_fields(w: World) -> None:
    q, staff = w.q(), w.q("staff1")
    assert q.shown([w.f["secret"], w.f["name"], "owner_id", w.f["name"], "nope", w.f["num"], "id"]) == (
        w.f["secret"], w.f["name"], w.f["num"])  # fmt: skip
    assert staff.shown([w.f["secret"], w.f["name"], w.f["num"]]) == (w.f["name"], w.f["num"])
    assert w.rows(q.search_in([w.f["name"], w.f["secret"]], "тайна")) == ["r1", "r3", "r5"]
    assert w.rows(w.q("auditor").search_in([w.f["name"], w.f["secret"]], "тайна")) == []
    assert w.rows(q.search_in([w.f["quiet"]], "шёпот")) == ["r1"]  # named: looked in even so
    assert w.rows(q.search_in([w.f["num"]], " 10 ")) == ["r1", "r3"]
    assert w.rows(q.search_in([w.f["name"], w.f["num"]], "Бета")) == ["r2"]
    assert w.rows(q.search_in([w.f["price"]], "1.5")) == []  # no quick search for this type
    assert w.rows(q.search_in([w.f["stage"]], "Закр")) == ["r4", "r7"]  # an option's label
    assert w.rows(q.search_in([w.f["name"]], "")) == [] and w.rows(q.search_in([], "а")) == []
    assert w.rows(q.search_in(["owner_id", "nope"], "staff1")) == []
    assert w.rows(staff.search_in([w.f["name"]], "а")) == ["r1", "r2"]


def test_match_any_tests_only_visible_fields(w: World) -> None:
    q = w.q()
    tests = [(w.f["name"], lambda c: c == "Бета"), (w.f["num"], lambda c: c == 30)]
    assert w.rows(q.match_any(tests)) == ["r2", "r5"]
    secret = [(w.f["secret"], lambda c: c == "тайна-один")]
    assert w.rows(q.match_any(secret)) == ["r1"]
    assert w.rows(w.q("staff1").match_any(secret)) == [] and w.rows(w.q("auditor").match_any(secret)) == []
    assert w.rows(q.match_any([(w.f["price"], lambda c: c == Decimal("1.5"))])) == ["r1", "r5"]
    assert w.rows(q.match_any([])) == [] and w.rows(q.match_any([("nope", lambda c: c == 1)])) == []
    assert w.rows(q.match_any([("owner_id", lambda c: c.is_(None))])) == []


def test_only_reads_the_rows_named(w: World) -> None:
    assert w.rows(w.q().only([w.ids["r3"], w.ids["r1"], w.ids["r3"], str(w.ids["r5"])])) == ["r1", "r3", "r5"]
    assert w.rows(w.q("staff1").only(w.pk("r1", "r3", "r12"))) == ["r1"]
    assert w.rows(w.q().only([])) == []


# --- sorting ------------------------------------------------------------------------------------------------

ORDERS = {
    ("num",): ["r6", "r11", "r9", "r10", "r1", "r3", "r2", "r7", "r5", "r4", "r8"],
    ("-num",): ["r4", "r8", "r5", "r2", "r7", "r1", "r3", "r9", "r10", "r11", "r6"],
    ("price",): ["r8", "r11", "r1", "r5", "r4", "r3", "r6", "r2", "r7", "r9", "r10"],
    ("-price",): ["r2", "r7", "r9", "r10", "r6", "r3", "r4", "r1", "r5", "r8", "r11"],
    ("day",): ["r5", "r1", "r4", "r2", "r6", "r8", "r3", "r7", "r9", "r10", "r11"],
    ("-day",): ["r3", "r7", "r9", "r10", "r11", "r8", "r2", "r6", "r1", "r4", "r5"],
    ("moment",): ["r5", "r1", "r3", "r7", "r4", "r2", "r6", "r8", "r9", "r10", "r11"],
    ("-moment",): ["r2", "r6", "r8", "r9", "r10", "r11", "r4", "r1", "r3", "r7", "r5"],
    ("flag",): ["r2", "r5", "r8", "r1", "r4", "r6", "r3", "r7", "r9", "r10", "r11"],
    ("-flag",): ["r3", "r7", "r9", "r10", "r11", "r1", "r4", "r6", "r2", "r5", "r8"],
    ("name",): ["r1", "r2", "r3", "r4", "r9", "r10", "r5", "r6", "r7", "r8", "r11"],
    ("-name",): ["r11", "r8", "r7", "r6", "r5", "r9", "r10", "r4", "r3", "r2", "r1"],
    ("stage",): ["r4", "r7", "r1", "r5", "r2", "r6", "r3", "r8", "r9", "r10", "r11"],
    ("-stage",): ["r3", "r8", "r9", "r10", "r11", "r2", "r6", "r1", "r5", "r4", "r7"],
    ("num", "-price"): ["r6", "r11", "r9", "r10", "r3", "r1", "r2", "r7", "r5", "r4", "r8"],
    ("-flag", "num"): ["r11", "r9", "r10", "r3", "r7", "r6", "r1", "r4", "r2", "r5", "r8"],
    ("-day", "-num"): ["r7", "r3", "r9", "r10", "r11", "r8", "r2", "r6", "r4", "r1", "r5"],
    ("partner", "-price"): ["r6", "r1", "r7", "r3", "r4", "r2", "r9", "r10", "r5", "r8", "r11"],
    ("-id",): ["r11", "r10", "r9", "r8", "r7", "r6", "r5", "r4", "r3", "r2", "r1"],
    ("id", "-num"): ALL,
    (): ALL,
}


def test_sorts_put_empty_values_last_ascending_first_descending_and_break_ties_by_id(w: World) -> None:
    for keys, expected in ORDERS.items():
        assert w.rows(w.q().order_by(*w.s(*keys))) == expected, keys
    assert w.rows(w.q("staff1").order_by(*w.s("-num"))) == ["r2", "r1", "r9", "r11", "r6"]


def test_every_page_by_cursor_gives_each_row_once_in_order(w: World) -> None:
    for keys, expected in ORDERS.items():
        q = w.q().order_by(*w.s(*keys))
        for size in (1, 2, 3, 5):
            seen: list[str] = []
            cursor = None
            while True:
                page = q.page(size, after=cursor)
                assert len(page.rows) == min(size, len(expected) - len(seen)), (keys, size)
                seen += w.keys_of(page.rows)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            assert seen == expected, (keys, size)


def test_pages_of_one_actor_with_a_filter_and_a_search(w: World) -> None:
    q = w.q("manager").where(w.c("num", "nempty")).search("а").order_by(*w.s("-num", "name"))
    assert w.rows(q) == ["r5", "r2", "r1", "r3", "r6"]
    first = q.page(3)
    assert w.keys_of(first.rows) == ["r5", "r2", "r1"]
    last = q.page(3, after=first.next_cursor)
    assert (w.keys_of(last.rows), last.next_cursor) == (["r3", "r6"], None)


def test_the_last_page_has_no_cursor(w: World) -> None:
    q = w.q().order_by(w.f["num"])
    assert q.page(11).next_cursor is None and q.page(500).next_cursor is None
    ten = q.page(10)
    assert len(ten.rows) == 10 and ten.next_cursor is not None
    rest = q.page(10, after=ten.next_cursor)
    assert (w.keys_of(rest.rows), rest.next_cursor) == (["r8"], None)
    assert q.page(5, after="").rows == q.page(5).rows  # no cursor: the first page
    assert w.q().where(w.c("num", "eq", 999)).page(1) == query.Page([], None)


def test_a_page_has_from_one_to_five_hundred_rows(w: World) -> None:
    q = w.q()
    for size in (0, -1, 501, True, 1.5, "5", None):
        refused(lambda size=size: q.page(size), "A page has from 1 to 500 rows.")
    assert len(q.page(1).rows) == 1 and len(q.page(500).rows) == 11
    assert len(q.page().rows) == 11  # a hundred unless asked


def test_a_field_that_cannot_be_sorted_or_is_hidden_is_refused(w: World) -> None:
    q = w.q("staff1")
    refused(lambda: q.order_by(w.f["notes"]), "The field Заметки cannot be sorted.")
    refused(lambda: q.order_by("-" + w.f["tags"]), "The field Метки cannot be sorted.")
    refused(lambda: q.order_by(w.f["secret"]), f"Unknown field: {w.f['secret']}.")
    refused(lambda: q.order_by("-" + w.f["secret"]), f"Unknown field: {w.f['secret']}.")
    refused(lambda: q.order_by(5), "Unknown field: 5.")
    refused(lambda: q.order_by("-"), "Unknown field: .")
    assert w.rows(w.q().order_by("-" + w.f["secret"])) == ["r2", "r4", "r6", "r7", "r8", "r9", "r10", "r11",
                                                            "r3", "r5", "r1"]  # fmt: skip


def test_a_sort_has_at_most_six_fields_and_ends_at_id(w: World) -> None:
    six = w.s("name", "num", "price", "day", "moment", "flag")
    assert len(w.rows(w.q().order_by(*six))) == 11
    refused(lambda: w.q().order_by(*six, w.f["stage"]), "Sort by at most 6 fields.")
    # A field named twice counts once (the first direction wins); nothing after id counts.
    assert w.rows(w.q().order_by(w.f["num"], "-" + w.f["num"], *six)) == ORDERS[("num",)]
    assert w.rows(w.q().order_by("-id", *six, w.f["stage"])) == ORDERS[("-id",)]
    assert w.rows(w.q().order_by(*w.s("num", "id", "-price"))) == ORDERS[("num",)]
    by_flag_and_name = ["r2", "r5", "r8", "r1", "r4", "r6", "r3", "r9", "r10", "r7", "r11"]
    assert w.rows(w.q().order_by(*w.s("flag", "-flag", "name"))) == by_flag_and_name


# --- cursors ------------------------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(q: TableQuery, payload: Any, binding: list[Any] | None = None) -> str:
    """A cursor made by hand as the layer makes them: the values as JSON, HMAC-SHA256 (18 bytes) with a key
    derived from the app's SECRET_KEY over the query's binding (table, action, user, sort, filters, search)
    and the values."""

    if binding is None:
        binding = [q.entity.id, "read", q.rights.actor.user_id, [], [], ""]
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode()
    return signed(data, binding)


def signed(data: bytes, binding: list[Any]) -> str:
    secret = str(current_app.config.get("SECRET_KEY") or "").encode()
    key = hashlib.sha256(b"tabula-query-cursor\x00" + secret).digest()
    bound = json.dumps(binding, separators=(",", ":"), ensure_ascii=True).encode()
    mac = hmac.new(key, bound + b"\x00" + data, hashlib.sha256).digest()[:18]
    return f"{b64(data)}.{b64(mac)}"


def test_a_cursor_is_the_signed_sort_values_of_the_last_row(w: World) -> None:
    q, admin = w.q(), w.users["admin"]
    eid = w.entity_id

    def bound(*sort: tuple[str, bool], filters: tuple[str, ...] = (), search: str = "", action: str = "read",
              user: int | None = admin) -> list[Any]:  # fmt: skip
        return [eid, action, user, [[w.f.get(n, n), d] for n, d in sort], list(filters), search]

    assert q.order_by("-" + w.f["num"]).page(3).next_cursor == sign(
        q, [30, w.ids["r5"]], bound(("num", True))
    )
    assert q.order_by("-" + w.f["num"]).page(1).next_cursor == sign(
        q, [None, w.ids["r4"]], bound(("num", True))
    )
    assert q.order_by(w.f["price"]).page(3).next_cursor == sign(
        q, [{"n": "1.50"}, w.ids["r1"]], bound(("price", False)))  # fmt: skip
    assert q.order_by(w.f["day"]).page(1).next_cursor == sign(
        q, [{"d": "2024-12-31"}, w.ids["r5"]], bound(("day", False)))  # fmt: skip
    first = q.order_by(w.f["moment"]).page(1)
    moment = first.rows[0][w.f["moment"]]
    assert first.next_cursor == sign(q, [{"t": moment.isoformat()}, w.ids["r5"]], bound(("moment", False)))
    assert q.order_by(w.f["flag"], w.f["name"]).page(1).next_cursor == sign(
        q, [False, "Бета", w.ids["r2"]], bound(("flag", False), ("name", False)))  # fmt: skip
    assert q.page(2).next_cursor == sign(q, [w.ids["r2"]], bound())
    assert q.order_by("-id").page(2).next_cursor == sign(q, [w.ids["r10"]], bound(("id", True)))
    spec = {"value": 10, "op": "ge", "field": w.f["num"]}
    named = {"value": "А", "op": "ct", "field": w.f["name"]}
    canonical = [json.dumps(x, sort_keys=True, separators=(",", ":")) for x in (spec, named)]
    filtered = q.where(spec).where(named).search(" а ").only(w.pk("r3", "r1")).page(1).next_cursor
    only = "only:" + ",".join(map(str, sorted(w.pk("r3", "r1"))))
    assert filtered == sign(q, [w.ids["r1"]], bound(filters=(*canonical, only), search="а"))
    edit = w.q("staff1", "edit").page(1).next_cursor
    assert edit == sign(q, [w.ids["r1"]], bound(action="edit", user=w.users["staff1"]))
    system = w.q(None).page(1).next_cursor
    assert system == sign(q, [w.ids["r1"]], bound(user=None))
    looked_in = [w.f["name"], w.f["secret"], "owner_id"]
    searched_in = q.search_in(looked_in, " а ").page(1).next_cursor
    key = json.dumps(["search_in", [w.f["name"], w.f["secret"]], "а"])
    assert searched_in == sign(q, [w.ids["r1"]], bound(filters=(key,)))
    compiled = (w.table().c[w.f["num"]] > 5).compile()
    key = json.dumps(["match", str(compiled), sorted(compiled.params.items())])
    matched = q.match_any([(w.f["num"], lambda c: c > 5)]).page(1).next_cursor
    assert matched == sign(q, [w.ids["r1"]], bound(filters=(key,)))


def test_a_cursor_leads_on_from_its_row(w: World) -> None:
    q = w.q().order_by(w.f["num"])
    forged = sign(
        q, [10, w.ids["r3"]], [w.entity_id, "read", w.users["admin"], [[w.f["num"], False]], [], ""]
    )
    assert w.keys_of(q.page(20, after=forged).rows) == ["r2", "r7", "r5", "r4", "r8"]
    after_null = sign(q, [None, w.ids["r4"]], [w.entity_id, "read", w.users["admin"], [[w.f["num"], False]],
                                              [], ""])  # fmt: skip
    assert w.keys_of(q.page(20, after=after_null).rows) == ["r8"]
    assert w.keys_of(q.page(3, after=q.cursor_after(w.ids["r1"])).rows) == ["r3", "r2", "r7"]
    assert w.keys_of(q.page(3, after=q.cursor_after(str(w.ids["r4"]))).rows) == ["r8"]
    assert q.cursor_after(w.ids["r12"]) is None  # in the recycle bin
    assert w.q("staff1").cursor_after(w.ids["r3"]) is None  # out of reach
    assert q.where(w.c("num", "gt", 10)).cursor_after(w.ids["r1"]) is None  # filtered out
    assert q.cursor_after(w.ids["r6"]) == q.page(1).next_cursor


def test_a_cursor_is_refused_on_any_other_query(w: World) -> None:
    q = w.q().order_by(w.f["num"])
    cursor = q.page(2).next_cursor
    assert w.keys_of(w.q().order_by(w.f["num"]).page(2, after=cursor).rows) == ["r9", "r10"]
    others = [
        w.q().order_by("-" + w.f["num"]),
        w.q().order_by(w.f["price"]),
        w.q().order_by(w.f["num"], w.f["name"]),
        w.q().order_by(w.f["num"]).where(w.c("num", "nempty")),
        w.q().order_by(w.f["num"]).search("а"),
        w.q().order_by(w.f["num"]).only(w.pk("r6")),
        w.q().order_by(w.f["num"]).search_in([w.f["name"]], "а"),
        w.q().order_by(w.f["num"]).match_any([(w.f["num"], lambda c: c > 0)]),
        w.q(None).order_by(w.f["num"]),
        w.q("admin", "edit").order_by(w.f["num"]),
        w.q("auditor").order_by(w.f["num"]),
    ]
    for other in others:
        refused(lambda other=other: other.page(2, after=cursor), REFUSED_CURSOR)
    by_id = w.q().page(1).next_cursor
    refused(lambda: TableQuery(w.partner_slug, w.actor("admin")).page(1, after=by_id), REFUSED_CURSOR)
    # A filter given with its keys in another order, a search with other spaces, the same ids: the same query.
    spec = w.c("num", "nempty")
    filtered = q.where(spec).search(" а ").only(w.pk("r1", "r6")).page(1).next_cursor
    same = q.where(dict(reversed(list(spec.items())))).search("а").only(w.pk("r6", "r1", "r1"))
    assert w.keys_of(same.page(1, after=filtered).rows) == ["r1"]
    refused(lambda: q.where(spec).search("а").only(w.pk("r6", "r2")).page(1, after=filtered), REFUSED_CURSOR)
    named = q.search_in([w.f["name"]], "а").page(1).next_cursor
    refused(lambda: q.search_in([w.f["name"]], "б").page(1, after=named), REFUSED_CURSOR)
    refused(lambda: q.search_in([w.f["num"]], "а").page(1, after=named), REFUSED_CURSOR)
    tested = q.match_any([(w.f["name"], lambda c: c == "Бета")]).page(1).next_cursor
    assert tested is None
    matched = q.match_any([(w.f["num"], lambda c: c > 5)]).page(1).next_cursor
    refused(lambda: q.match_any([(w.f["num"], lambda c: c > 6)]).page(1, after=matched), REFUSED_CURSOR)
    refused(lambda: q.match_any([(w.f["num"], lambda c: c < 5)]).page(1, after=matched), REFUSED_CURSOR)
    by_id = w.q().order_by("id", w.f["name"]).page(1).next_cursor  # nothing after id counts
    assert w.keys_of(w.q().order_by("id").page(1, after=by_id).rows) == ["r2"]


def test_an_edited_or_malformed_cursor_is_refused(w: World) -> None:
    q = w.q().order_by(w.f["num"])
    cursor = q.page(2).next_cursor
    body, signature = cursor.split(".")
    flip = {"A": "B", "B": "A"}
    edited = [
        b64(json.dumps([99, 99]).encode()) + "." + signature,
        body + "." + signature[:-1] + flip.get(signature[-1], "A"),
        body + "x." + signature,
        body + signature,
        body + "." + signature + ".x",
        "." + signature,
        body + ".",
        "a.b",
        "!!!.???",
        "я.я",
        5,
        b"bytes",
        ["a.b"],
        "x" * 40_001 + ".y",
    ]
    for bad in edited:
        refused(lambda bad=bad: q.page(2, after=bad), REFUSED_CURSOR)


def test_a_cursor_made_under_another_secret_key_is_refused(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    q = w.q().order_by(w.f["num"])
    binding = [w.entity_id, "read", w.users["admin"], [[w.f["num"], False]], [], ""]
    cursor = q.page(2).next_cursor
    assert cursor == sign(q, [0, w.ids["r11"]], binding)
    monkeypatch.setitem(current_app.config, "SECRET_KEY", None)
    refused(lambda: q.page(2, after=cursor), REFUSED_CURSOR)
    keyless = q.page(2).next_cursor
    assert keyless == sign(q, [0, w.ids["r11"]], binding) and keyless != cursor
    monkeypatch.setitem(current_app.config, "SECRET_KEY", "другой ключ")
    refused(lambda: q.page(2, after=keyless), REFUSED_CURSOR)


def test_a_signed_cursor_that_does_not_fit_the_sort_is_refused(w: World) -> None:
    q = w.q().order_by(w.f["num"])
    binding = [w.entity_id, "read", w.users["admin"], [[w.f["num"], False]], [], ""]
    for payload in ([10], [10, 3, 4], [], {"a": 1}, [None, None], [10, None], ["десять", 3], [10, "3"],
                    [{"x": "1"}, 3], [{"n": 5}, 3], [{"n": "1", "d": "2"}, 3], [[10], 3], [10.5, 3],
                    [{"d": "2025-01-01"}, 3], [10, {"n": "3"}], [True, 3], [10, True]):  # fmt: skip
        refused(lambda payload=payload: q.page(1, after=sign(q, payload, binding)), REFUSED_CURSOR)
    moments = w.q().order_by(w.f["moment"])
    moment_binding = [w.entity_id, "read", w.users["admin"], [[w.f["moment"], False]], [], ""]
    for payload in ([{"t": "вчера"}, 3], [{"d": "2025-01-01"}, 3], [{"t": 5}, 3], ["2025-01-10", 3]):
        refused(
            lambda payload=payload: moments.page(1, after=sign(q, payload, moment_binding)), REFUSED_CURSOR
        )
    prices = w.q().order_by(w.f["price"])
    price_binding = [w.entity_id, "read", w.users["admin"], [[w.f["price"], False]], [], ""]
    for payload in ([{"n": "abc"}, 3], [{"n": "NaN"}, 3], [{"n": "-Infinity"}, 3], [{"n": ""}, 3], [1, 3]):
        refused(lambda payload=payload: prices.page(1, after=sign(q, payload, price_binding)), REFUSED_CURSOR)
    days = w.q().order_by(w.f["day"])
    day_binding = [w.entity_id, "read", w.users["admin"], [[w.f["day"], False]], [], ""]
    for payload in ([{"t": "2025-01-10T09:00:00+00:00"}, 3], ["2025-01-10", 3]):
        refused(lambda payload=payload: days.page(1, after=sign(q, payload, day_binding)), REFUSED_CURSOR)
    fine = sign(q, [{"t": "2025-01-10T09:00:00+00:00"}, w.ids["r3"]], moment_binding)
    assert w.keys_of(moments.page(3, after=fine).rows) == ["r7", "r4", "r2"]
    refused(lambda: q.page(1, after=signed(b"not json", binding)), REFUSED_CURSOR)
    refused(lambda: q.page(1, after=signed(b"\xff\xfe", binding)), REFUSED_CURSOR)


# --- reading: batches, streams, one row, counts -------------------------------------------------------------


def test_batches_read_every_row_in_the_querys_order(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    q = w.q().order_by("-" + w.f["num"])
    assert [w.keys_of(b) for b in q.batches(4)] == [["r4", "r8", "r5", "r2"], ["r7", "r1", "r3", "r9"],
                                                    ["r10", "r11", "r6"]]  # fmt: skip
    assert [len(b) for b in q.batches(0)] == [1] * 11 and [len(b) for b in q.batches(-3)] == [1] * 11
    assert [len(b) for b in q.batches("5")] == [5, 5, 1]  # type: ignore[arg-type]
    assert [w.keys_of(b) for b in w.q("staff1").batches(5)] == [SCOPE["staff1"]]
    assert list(w.q().where(w.c("num", "eq", 999)).batches()) == []
    assert [w.keys_of(b) for b in w.q("staff1").batches()] == [SCOPE["staff1"]]
    assert w.keys_of(q.stream(2)) == ORDERS[("-num",)] and w.keys_of(q.stream()) == ORDERS[("-num",)]
    assert list(q.stream(4)) == q.page(500).rows  # the rows as pages give them (not as JSON)
    monkeypatch.setattr(query, "MAX_BATCH", 3)
    assert [len(b) for b in q.batches(100)] == [3, 3, 3, 2]


def test_id_batches_read_every_id_in_ascending_order(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def keys(batches: Any) -> list[list[str]]:
        return [w.keys_of(b) for b in batches]

    assert keys(w.q().order_by("-" + w.f["num"]).id_batches(4)) == [ALL[:4], ALL[4:8], ALL[8:]]
    assert keys(w.q("staff1").id_batches(2)) == [["r1", "r2"], ["r6", "r9"], ["r11"]]
    assert keys(w.q("staff1").id_batches(5)) == [SCOPE["staff1"]]
    assert keys(w.q("staff1").id_batches()) == [SCOPE["staff1"]]
    assert keys(w.q().where(w.c("num", "ge", 10)).id_batches(2)) == [["r1", "r2"], ["r3", "r5"], ["r7"]]
    assert [len(b) for b in w.q().id_batches(0)] == [1] * 11
    assert list(w.q().where(w.c("num", "eq", 999)).id_batches()) == []
    monkeypatch.setattr(query, "MAX_BATCH", 3)
    assert [len(b) for b in w.q().id_batches(100)] == [3, 3, 3, 2]


def test_get_reads_one_row_within_reach(w: World) -> None:
    q = w.q("staff1")
    row = q.get(w.ids["r1"])
    assert row is not None
    assert set(row) == {"id", "_labels", "owner_id", "created_at", "updated_at",
                        *(w.f[k] for k in w.f if k != "secret")}  # fmt: skip
    expected = {"id": w.ids["r1"], w.f["name"]: "Альфа", w.f["num"]: 10, w.f["price"]: Decimal("1.50"),
                w.f["day"]: dt.date(2025, 1, 10), w.f["flag"]: True, w.f["stage"]: "s_new",
                w.f["tags"]: ",red,blue,", w.f["notes"]: "Первая заметка про ёлку",
                w.f["partner"]: w.partners["p1"], w.f["old"]: None, w.f["resp"]: None, w.f["locked"]: 1,
                w.f["quiet"]: "шёпот", "owner_id": w.users["staff1"]}  # fmt: skip
    assert {k: row[k] for k in expected} == expected
    assert row[w.f["moment"]].replace(tzinfo=None) == dt.datetime(2025, 1, 10, 9, 0)
    assert row["_labels"] == {w.f["partner"]: "Ромашка", w.f["old"]: None, w.f["resp"]: None,
                              "owner_id": "Пётр Смирнов (staff1)"}  # fmt: skip
    assert q.get(str(w.ids["r1"])) == row
    for pk in (w.ids["r3"], w.ids["r12"], 10**6):
        assert q.get(pk) is None, pk
    assert w.q().get(w.ids["r12"]) is None
    assert w.q().get(w.ids["r3"])[w.f["secret"]] == "тайна-три"


def test_exists_answers_within_reach(w: World) -> None:
    q = w.q("staff1")
    assert q.exists(w.ids["r1"]) is True and q.exists(str(w.ids["r6"])) is True
    assert (q.exists(w.ids["r3"]), q.exists(w.ids["r12"]), q.exists(10**6)) == (False, False, False)
    assert w.q().exists(w.ids["r3"]) is True and w.q().exists(w.ids["r14"]) is False
    assert q.where(w.c("num", "gt", 10)).exists(w.ids["r1"]) is False


def test_readable_ids_and_the_ones_in_the_recycle_bin(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    every = [*w.ids.values(), 10**6]
    for chunk in (500, 2):
        monkeypatch.setattr(query, "ID_CHUNK", chunk)
        assert w.q("staff1").readable_ids(every) == set(w.pk(*SCOPE["staff1"]))
        assert w.q("staff1").readable_ids([str(w.ids["r1"]), w.ids["r3"]]) == {w.ids["r1"]}
        assert w.q("staff1").where(w.c("num", "ge", 10)).readable_ids(every) == set(w.pk("r1", "r2"))
        assert w.q("staff1").readable_ids(every, in_bin=True) == {w.ids["r12"]}
        nothing = w.q("staff1").where(w.c("num", "eq", 999))
        assert nothing.readable_ids(every) == set() and nothing.readable_ids(every, in_bin=True) == {
            w.ids["r12"]
        }
        assert w.q("manager").readable_ids(every, in_bin=True) == set(w.pk("r12", "r13"))
        assert w.q("auditor").readable_ids(every, in_bin=True) == set(w.pk("r12", "r13", "r14"))
        assert w.q("staff4").readable_ids(every, in_bin=True) == set()
        # In the bin as far as the query's action reached: the auditor reads every row but edits their own.
        assert w.q("auditor", "edit").readable_ids(every, in_bin=True) == set()
        assert w.q("staff1", "delete").readable_ids(every, in_bin=True) == {w.ids["r12"]}
        assert w.q().readable_ids(every) == set(w.pk(*ALL))


def test_counts_are_exact_up_to_the_limit(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    assert w.q().count() == Count(11, True) and w.q("staff1").count() == Count(5, True)
    assert w.q("manager").count() == Count(9, True)
    assert w.q().where(w.c("num", "gt", 10)).count() == Count(3, True)
    assert w.q().where(w.c("num", "gt", 999)).count() == Count(0, True)
    assert w.q("staff1").exact_count() == 5 and w.q().search("Двойник").exact_count() == 2
    assert w.q().where(w.c("num", "gt", 999)).exact_count() == 0
    monkeypatch.setattr(query, "COUNT_LIMIT", 11)
    assert w.q().count() == Count(11, True)
    monkeypatch.setattr(query, "COUNT_LIMIT", 10)
    estimated = w.q().count()
    if db.session.get_bind().dialect.name == "postgresql":
        assert estimated.exact is False and estimated.value >= 11  # the planner's, never below the limit
    else:
        assert estimated == Count(10, False)  # "more than 10"
    assert w.q().count() != Count(11, True) and w.q().exact_count() == 11
    assert w.q("staff1").count() == Count(5, True)


# --- labels -------------------------------------------------------------------------------------------------


def test_links_and_users_come_with_labels_the_reader_may_see(w: World) -> None:
    f = w.f
    staff1, staff2 = "Пётр Смирнов (staff1)", "Анна Кузнецова (staff2)"
    admin = user_label(w.users["admin"])

    def labels(who: str) -> dict[str, dict[str, Any]]:
        rows = w.q(who).fields(f["partner"], f["old"], f["resp"], "owner_id").page(20).rows
        return {w.keys[r["id"]]: r["_labels"] for r in rows}

    def lab(partner: str | None, owner: str | None, resp: str | None = None) -> dict[str, Any]:
        return {f["partner"]: partner, f["old"]: None, f["resp"]: resp, "owner_id": owner}

    assert labels("admin") == {
        "r1": lab("Ромашка", staff1), "r2": lab("Василёк", staff1, staff2), "r3": lab("Лютик", staff2),
        "r4": lab(None, staff2),  # the partner's name is empty
        "r5": lab(None, "Мария Иванова (manager)"),
        "r6": lab("Ромашка", "Екатерина Соколова (staff4)", staff1),
        "r7": lab("Лютик", admin), "r8": lab(None, None),  # its old link points into an archived table
        "r9": lab(None, staff1), "r10": lab(None, staff2), "r11": lab(None, staff1),
    }  # fmt: skip
    # staff1 reads their own partners only: the admin's is not disclosed.
    assert {k: v[f["partner"]] for k, v in labels("staff1").items()} == {
        "r1": "Ромашка", "r2": None, "r6": "Ромашка", "r9": None, "r11": None}  # fmt: skip
    assert labels("staff1")["r2"][f["resp"]] == staff2
    assert {v[f["partner"]] for v in labels("manager").values()} == {None}  # no partners at all
    assert {v[f["partner"]] for v in labels("blind").values()} == {None}  # partners' names hidden
    auditor = labels("auditor")
    assert [auditor[k][f["partner"]] for k in ("r1", "r2", "r3", "r4")] == [
        "Ромашка",
        "Василёк",
        "Лютик",
        None,
    ]
    assert "_labels" not in w.q().fields(f["name"], f["num"]).get(w.ids["r1"])


def test_labels_of_records_within_reach(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    r = w.ids
    for chunk in (500, 2):
        monkeypatch.setattr(query, "ID_CHUNK", chunk)
        assert w.q().labels_of([r["r1"], r["r11"], r["r12"], None, 10**6, r["r9"]]) == {
            r["r1"]: "Альфа", r["r9"]: "Двойник", r["r11"]: f"#{r['r11']}"}  # fmt: skip
        assert w.q("staff1").labels_of(w.pk("r1", "r3", "r6")) == {r["r1"]: "Альфа", r["r6"]: "Жук"}
        assert w.q("blind").labels_of(w.pk("r1", "r2")) == {r["r1"]: f"#{r['r1']}", r["r2"]: f"#{r['r2']}"}
        assert len(w.q().labels_of(w.ids.values())) == 11
    assert w.q().labels_of([]) == {}


def test_a_rows_label_as_the_reader_sees_it(w: World) -> None:
    q, name = w.q(), w.f["name"]
    assert q.label({"id": 5, name: "Дельта"}) == "Дельта"
    assert q.label({"id": 5}) == "#5" and q.label({"id": 11, name: None}) == "#11"
    assert q.label({"id": 11, name: ""}) == "#11"
    assert w.q("blind").label({"id": 1, name: "Альфа"}) == "#1"
    assert q.label_fields == (name,) and w.q("staff1").label_fields == (name,)
    assert w.q("blind").label_fields == ()


def test_labels_are_the_display_field_as_its_type_shows_it(w: World) -> None:
    codes, c = TableQuery(w.codes_slug, w.actor("admin")), w.codes
    assert codes.label_fields == (w.code_amount,)
    assert codes.labels_of([c["c1"], c["c2"]]) == {c["c1"]: "12.50", c["c2"]: "3.00"}
    assert codes.label({"id": 7, w.code_amount: Decimal("3")}) == "3.00"
    assert codes.ids_labelled("12,5") == [c["c1"]] and codes.ids_labelled_many(["три"]) == {"три": []}
    partners = TableQuery(w.partner_slug, w.actor("admin")).fields(w.partner_code)
    assert partners.get(w.partners["p1"]) == {
        "id": w.partners["p1"], w.partner_code: c["c1"], "_labels": {w.partner_code: "12.50"}}  # fmt: skip


def test_ids_labelled_finds_rows_by_their_display_value(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    q = w.q()
    assert w.keys_of(q.ids_labelled("Двойник")) == ["r9", "r10"]
    assert w.keys_of(q.ids_labelled(" Двойник ")) == ["r9", "r10"]
    assert w.keys_of(q.ids_labelled("Двойник", limit=1)) == ["r9"]
    assert w.keys_of(q.ids_labelled("Двойник", limit=0)) == ["r9"]
    assert w.keys_of(q.ids_labelled("Альфа", limit=5)) == ["r1"]
    partners, p = TableQuery(w.partner_slug, w.actor("admin")), w.partners
    assert partners.ids_labelled("Лютик") == [p["p2"], p["p5"]]  # two unless asked
    assert partners.ids_labelled("Лютик", limit=3) == [p["p2"], p["p5"], p["p6"]]
    assert partners.ids_labelled_many(["Лютик"]) == {"Лютик": [p["p2"], p["p5"]]}
    assert q.ids_labelled("двойник") == [] and q.ids_labelled("Удалённая") == []
    assert w.keys_of(w.q("staff1").ids_labelled("Двойник")) == ["r9"]
    assert w.q("blind").ids_labelled("Альфа") == []
    asked = ["Альфа", " Альфа", "Нет", "", "  ", "a\x00", 5, "Бета", "\ud800", "Двойник"]
    for chunk in (500, 1):
        monkeypatch.setattr(query, "ID_CHUNK", chunk)
        found = q.ids_labelled_many(asked)  # type: ignore[arg-type]
        assert {k: w.keys_of(v) for k, v in found.items()} == {
            "Альфа": ["r1"], " Альфа": ["r1"], "Нет": [], "": [], "  ": [], "a\x00": [], "Бета": ["r2"],
            "\ud800": [], "Двойник": ["r9", "r10"]}  # fmt: skip
    assert {k: w.keys_of(v) for k, v in q.ids_labelled_many(["Двойник"], limit=1).items()} == {
        "Двойник": ["r9"]
    }
    assert w.q("blind").ids_labelled_many(["Альфа", "Бета"]) == {"Альфа": [], "Бета": []}


# --- versions, JSON -----------------------------------------------------------------------------------------


def test_rows_carry_their_version_and_whether_the_reader_may_edit_them(w: World) -> None:
    def marks(who: str) -> list[tuple[str, int, bool]]:
        return [
            (w.keys[r["id"]], r["_version"], r["_editable"]) for r in w.q(who).with_versions().page(20).rows
        ]

    version = {k: 2 for k in ALL[:8]} | {"r9": 1, "r10": 1, "r11": 1}
    assert marks("auditor") == [(k, version[k], k == "r6") for k in ALL]  # reads all, edits their own
    assert marks("blind") == [(k, version[k], False) for k in ALL]  # may not edit at all
    assert marks("admin") == [(k, version[k], True) for k in ALL]
    assert marks("staff1") == [(k, version[k], True) for k in SCOPE["staff1"]]
    row = w.q("auditor").with_versions().get(w.ids["r6"])
    assert (row["_version"], row["_editable"]) == (2, True)
    assert "_version" not in w.q("auditor").get(w.ids["r6"])


def test_versions_of_the_rows_within_reach(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    r = w.ids
    for chunk in (500, 2):
        monkeypatch.setattr(query, "ID_CHUNK", chunk)
        assert w.q("staff1").versions([r["r1"], r["r3"], r["r9"], None, r["r12"], r["r6"]]) == {
            r["r1"]: 2, r["r9"]: 1, r["r6"]: 2}  # fmt: skip
        assert w.q().versions(w.ids.values()) == {pk: (1 if k in ("r9", "r10", "r11") else 2)
                                                  for k, pk in w.ids.items() if k in ALL}  # fmt: skip
    assert w.q().versions([]) == {}


def test_rows_as_json(w: World) -> None:
    f = w.f
    chosen = ("name", "num", "price", "day", "flag", "stage", "tags", "partner", "resp", "owner_id")
    q = w.q().fields(*(f.get(k, k) for k in chosen))
    staff1 = {"id": w.users["staff1"], "label": "Пётр Смирнов (staff1)"}
    expected = [
        {"id": w.ids["r1"], f["name"]: "Альфа", f["num"]: 10, f["price"]: "1.50", f["day"]: "2025-01-10",
         f["flag"]: True, f["stage"]: "s_new", f["tags"]: ["red", "blue"],
         f["partner"]: {"id": w.partners["p1"], "label": "Ромашка"}, f["resp"]: None, "owner_id": staff1},
        {"id": w.ids["r2"], f["name"]: "Бета", f["num"]: 20, f["price"]: None, f["day"]: "2025-02-01",
         f["flag"]: False, f["stage"]: "s_work", f["tags"]: ["green"],
         f["partner"]: {"id": w.partners["p4"], "label": "Василёк"},
         f["resp"]: {"id": w.users["staff2"], "label": "Анна Кузнецова (staff2)"}, "owner_id": staff1},
    ]  # fmt: skip
    page = q.page(2, as_json=True)
    assert page.rows == expected and page.next_cursor == q.page(2).next_cursor
    assert q.json_rows(q.page(2).rows) == expected and q.to_json(q.page(1).rows[0]) == expected[0]
    staff = w.q("staff1").fields(f["partner"]).page(2, as_json=True).rows
    assert staff[1] == {"id": w.ids["r2"], f["partner"]: {"id": w.partners["p4"], "label": None}}
    moment = w.q().fields(f["moment"], f["tags"]).page(1, as_json=True).rows[0]
    assert dt.datetime.fromisoformat(moment[f["moment"]]) == dt.datetime(2025, 1, 10, 9, tzinfo=dt.UTC)
    every = w.q("staff1").order_by("-" + f["price"])
    assert every.page(20, as_json=True).rows == every.json_rows(every.page(20).rows)
    versions = w.q("auditor").with_versions().fields(f["name"])
    assert versions.page(1, as_json=True).rows == [
        {"id": w.ids["r1"], f["name"]: "Альфа", "_version": 2, "_editable": False}]  # fmt: skip
    assert versions.json_rows(versions.page(1).rows) == versions.page(1, as_json=True).rows
    assert versions.only(w.pk("r6")).page(1, as_json=True).rows == [
        {"id": w.ids["r6"], f["name"]: "Жук", "_version": 2, "_editable": True}]  # fmt: skip
    assert versions.json_rows([{"id": 1, f["name"]: "x"}]) == [{"id": 1, f["name"]: "x"}]
    bare = {"id": 1, f["partner"]: w.partners["p1"]}  # a row without labels: none disclosed
    assert w.q().fields(f["partner"]).to_json(bare) == {
        "id": 1,
        f["partner"]: {"id": w.partners["p1"], "label": None},
    }
    marked = {"id": 1, f["name"]: "x", "_version": 3, "_editable": True}
    assert w.q().fields(f["name"]).json_rows([marked]) == [{"id": 1, f["name"]: "x"}]


# --- the recycle bin ----------------------------------------------------------------------------------------


def test_the_recycle_bin_shows_the_newest_first_to_who_may_restore(w: World) -> None:
    def binned(who: str | None, limit: Any = 10, q: TableQuery | None = None) -> list[tuple[str, int, str]]:
        items = (q or w.q(who)).binned(limit)
        for item in items:
            assert set(item) == {"id", "owner_id", "deleted_at", w.f["name"], "label"}
        return [(w.keys[i["id"]], i["owner_id"], i["label"]) for i in items]

    u = w.users
    everything = [  # by when they went there (then the newest id first), not by id
        ("r12", u["staff1"], "Удалённая"),
        ("r14", u["admin"], "Корзина"),
        ("r13", u["staff2"], "Стёртая"),
    ]
    assert binned("admin") == everything and binned(None) == everything
    assert binned("admin", 2) == everything[:2] and binned("admin", "2") == everything[:2]
    assert binned("admin", 0) == everything[:1] and binned("admin", -5) == everything[:1]
    assert binned("staff1") == everything[:1] and binned("staff2") == everything[2:]
    for nobody in ("manager", "auditor", "blind", "staff4"):
        assert w.q(nobody).binned(10) == [], nobody
    assert TableQuery(w.slug, Actor(None, frozenset({w.roles["staff"]}), "ui")).binned(10) == []
    named = w.q().where(w.c("name", "eq", "Стёртая"))
    assert binned("admin", q=named) == everything[2:]
    assert binned("admin", q=w.q().search("корз")) == [everything[1]]  # the quick search too
    assert w.q("staff1").where(w.c("num", "eq", 999)).binned(10) == []
    newest = w.q().binned(1)[0]["deleted_at"]
    assert newest.replace(tzinfo=None) == dt.datetime(2025, 5, 3, 10, 0)


def test_the_statements_for_the_write_path_and_sub_selects(w: World) -> None:
    tbl = w.table()
    assert sorted(db.session.scalars(select(tbl.c.id).where(w.q().recycle_bin_condition()))) == w.pk(
        "r12", "r13", "r14")  # fmt: skip
    assert sorted(db.session.scalars(w.q("staff1").ids_statement())) == w.pk(*SCOPE["staff1"])
    rows = db.session.execute(w.q("staff1").rows_statement(w.pk("r1", "r3", "r12", "r6"))).mappings().all()
    # Whole rows, hidden fields too (the write path never shows them).
    assert sorted((r["id"], r[w.f["secret"]]) for r in rows) == [
        (w.ids["r1"], "тайна-один"),
        (w.ids["r6"], None),
    ]
    assert db.session.execute(w.q("staff1", "edit").rows_statement([])).all() == []


def test_reach_is_the_where_of_a_bare_query_or_nothing(w: World) -> None:
    tbl = w.table()

    def reached(table: Any, who: str, action: str = "read") -> list[str]:
        condition = TableQuery.reach(table, w.actor(who), action)
        return w.keys_of(db.session.scalars(select(tbl.c.id).where(condition).order_by(tbl.c.id)))

    for who in ("staff1", "manager", "admin"):
        assert reached(w.slug, who) == SCOPE[who], who
    assert reached(w.slug, "auditor", "edit") == ["r6"]
    bare = TableQuery.reach(w.slug, w.actor("auditor"))  # reading, unless asked
    assert w.keys_of(db.session.scalars(select(tbl.c.id).where(bare).order_by(tbl.c.id))) == ALL
    assert reached(w.slug, "manager", "delete") == []
    assert reached("no_such_table", "admin") == [] and reached(w.old_slug, "admin") == []


# --- aggregates ---------------------------------------------------------------------------------------------


def test_aggregates_over_the_rows_within_reach(w: World) -> None:
    f, q = w.f, w.q()
    measures = {"n": ("count", None), "total": ("sum", f["num"]), "lo": ("min", f["num"]),
                "hi": ("max", f["num"]), "filled": ("count", f["num"]), "kinds": ("count_distinct", f["num"]),
                "money": ("sum", f["price"]),
                "first": ("min", f["name"]), "last": ["max", f["name"]]}  # fmt: skip
    assert q.aggregate([], measures) == [{"n": 11, "total": 95, "lo": -5, "hi": 30, "filled": 9, "kinds": 6,
                                          "money": Decimal("18.25"), "first": "Альфа",
                                          "last": "Ива"}]  # fmt: skip
    assert w.q("staff1").aggregate([], {"n": ("count", None), "total": ("sum", f["num"])}) == [
        {"n": 5, "total": 30}]  # fmt: skip
    assert round(float(q.aggregate([], {"a": ("avg", f["num"])})[0]["a"]), 4) == 10.5556
    assert q.where(w.c("flag", "eq", True)).aggregate([], {"n": ("count", None)}) == [{"n": 3}]
    assert q.aggregate([f["stage"]], {"n": ("count", None)}) == [
        {f["stage"]: "s_done", "n": 2}, {f["stage"]: "s_new", "n": 2}, {f["stage"]: "s_work", "n": 2},
        {f["stage"]: None, "n": 5}]  # fmt: skip
    assert q.aggregate([f["stage"], f["stage"]], {"n": ("count", None)}) == q.aggregate(
        [f["stage"]], {"n": ("count", None)}
    )
    pairs = [
        (r[f["flag"]], r[f["stage"]], r["n"])
        for r in q.aggregate([f["flag"], f["stage"]], {"n": ("count", None)})
    ]
    assert pairs == [(False, "s_new", 1), (False, "s_work", 1), (False, None, 1), (True, "s_done", 1),
                     (True, "s_new", 1), (True, "s_work", 1), (None, "s_done", 1),
                     (None, None, 4)]  # fmt: skip
    overdue = q.aggregate([f["day"] + ":overdue"], {"n": ("count", None)})
    assert overdue == [{f["day"] + ":overdue": 91, "n": 6}, {f["day"] + ":overdue": None, "n": 5}]
    by_month = q.aggregate([f["day"] + ":month"], {"n": ("count", None)})
    assert [(r[f["day"] + ":month"], r["n"]) for r in by_month] == [
        (dt.date(2024, 12, 1), 1), (dt.date(2025, 1, 1), 2), (dt.date(2025, 2, 1), 2),
        (dt.date(2025, 3, 1), 1),
        (None, 5)]  # fmt: skip
    six = [f[k] for k in ("name", "num", "price", "day", "flag", "stage")]
    assert len(q.aggregate(six, {"n": ("count", None)})) == 10  # the two Двойник rows are one group
    assert len(q.aggregate([], {f"m{i}": ("count", None) for i in range(50)})[0]) == 50


def test_an_aggregate_that_cannot_be_computed_is_refused(w: World) -> None:
    f, q, n = w.f, w.q(), {"n": ("count", None)}
    measure = "A measure is a function and a field."
    cases = [
        (lambda: q.aggregate([f["name"] + ":month"], n), "The field Название cannot be grouped by month."),
        (lambda: q.aggregate([f["day"] + ":century"], n), "The field День cannot be grouped by century."),
        (lambda: q.aggregate([f["moment"] + ":overdue"], n),
         "The field Момент cannot be grouped by days overdue."),
        (lambda: w.q("staff1").aggregate([f["secret"]], n), f"Unknown field: {f['secret']}."),
        (lambda: q.aggregate([5], n), "Unknown field: 5."),
        (lambda: q.aggregate(["nope:month"], n), "Unknown field: nope."),
        (lambda: q.aggregate([f[k] for k in ("name", "num", "price", "day", "flag", "stage", "moment")], n),
         "Group by at most 6 fields."),
        (lambda: q.aggregate([], {}), "Ask for from 1 to 50 measures."),
        (lambda: q.aggregate([], {f"m{i}": ("count", None) for i in range(51)}),
         "Ask for from 1 to 50 measures."),
        (lambda: q.aggregate([], [("count", None)]), "Ask for from 1 to 50 measures."),
        (lambda: q.aggregate([], {"x": ("count",)}), measure),
        (lambda: q.aggregate([], {"x": ("count", None, None)}), measure),
        (lambda: q.aggregate([], {"x": "count"}), measure),
        (lambda: q.aggregate([], {"x": ("count_distinct", None)}), measure),
        (lambda: q.aggregate([], {"x": ("median", f["num"])}), measure),
        (lambda: q.aggregate([], {"x": ("sum", None)}), measure),
        (lambda: q.aggregate([f["stage"]], {f["stage"]: ("count", None)}), measure),
        (lambda: q.aggregate([], {"x": ("sum", f["name"])}), "The field Название cannot be added up."),
        (lambda: q.aggregate([], {"x": ("avg", f["partner"])}), "The field Партнёр cannot be added up."),
        (lambda: q.aggregate([], {"x": ("sum", "owner_id")}), "The field Owner cannot be added up."),
        (lambda: q.aggregate([], {"x": ("sum", f["resp"])}), "The field Ответственный cannot be added up."),
        (lambda: w.q("staff1").aggregate([], {"x": ("sum", f["secret"])}), f"Unknown field: {f['secret']}."),
        (lambda: w.q("staff1").aggregate([], {"x": ("max", f["secret"])}), f"Unknown field: {f['secret']}."),
        (lambda: w.q("staff1").aggregate([], {"x": ("count_distinct", f["secret"])}),
         f"Unknown field: {f['secret']}."),
    ]  # fmt: skip
    for call, message in cases:
        refused(call, message)
    numbers = ("num", "price", "locked", "id")
    others = ("name", "partner", "resp", "owner_id", "day", "flag", "stage")
    assert {k: q.can_add_up(f.get(k, k)) for k in numbers + others} == {
        **dict.fromkeys(numbers, True), **dict.fromkeys(others, False)}  # fmt: skip
    refused(lambda: w.q("staff1").can_add_up(f["secret"]), f"Unknown field: {f['secret']}.")


# --- the named system reads, rows by id ---------------------------------------------------------------------


def test_ids_beyond_reach_ignore_the_scope_but_not_the_filters(w: World) -> None:
    staff = w.q("staff1")
    twins = staff.where(w.c("name", "eq", "Двойник"))
    assert w.keys_of(twins.ids_beyond_reach("дубликаты")) == ["r9"]
    assert w.keys_of(twins.ids_beyond_reach("дубликаты", 5)) == ["r9", "r10"]
    assert w.keys_of(twins.ids_beyond_reach("дубликаты", 0)) == ["r9"]
    assert w.keys_of(staff.search("Двойник").ids_beyond_reach("поиск", 5)) == ["r9", "r10"]
    assert staff.search("тайна").ids_beyond_reach("поиск", 5) == []  # the hidden field is not looked in
    assert staff.where(w.c("name", "eq", "Стёртая")).ids_beyond_reach("поиск", 5) == []
    assert w.keys_of(staff.ids_beyond_reach("всё", 100)) == ALL
    refused(lambda: twins.ids_beyond_reach(""), "ids_beyond_reach needs a reason", ValueError)


def test_the_system_read_sees_every_live_row_and_field(w: World) -> None:
    q = TableQuery.system(w.slug, "слияние")
    assert q.rights.is_admin and q.rights.actor == Actor.system_job()
    assert w.rows(q) == ALL and q.column(w.f["secret"]).name == w.f["secret"]
    refused(lambda: TableQuery.system(w.slug, ""), "TableQuery.system needs a reason", ValueError)


def test_rows_of_reads_the_rows_within_reach_by_id(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    r = w.ids
    for chunk in (500, 2):
        monkeypatch.setattr(query, "ID_CHUNK", chunk)
        found = w.q("staff1").rows_of([r["r1"], r["r3"], None, r["r6"], r["r12"], r["r1"]])
        assert found == {r["r1"]: w.q("staff1").get(r["r1"]), r["r6"]: w.q("staff1").get(r["r6"])}
        every = w.q().rows_of(w.ids.values())
        assert sorted(every) == w.pk(*ALL) and every[r["r5"]] == w.q().get(r["r5"])
    assert w.q().fields(w.f["name"]).rows_of([r["r1"]]) == {r["r1"]: {"id": r["r1"], w.f["name"]: "Альфа"}}
    assert w.q().rows_of([]) == {}


# --- helpers of the layer -----------------------------------------------------------------------------------


def test_the_memo_starts_again_when_full(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    memo = current().memo
    memo.clear()
    staff = w.actor("staff1")
    q = TableQuery(w.slug, staff)
    assert set(memo) == {("grants", w.slug, staff), ("columns", w.slug, staff)}
    assert TableQuery(w.slug, staff).rights is q.rights and len(memo) == 2  # kept, not built again
    monkeypatch.setattr(query, "MEMO_LIMIT", 3)
    TableQuery(w.slug, staff).page(1)  # found twice, then a third entry: room for it
    assert len(memo) == 3
    monkeypatch.setattr(query, "MEMO_LIMIT", 3)
    q.order_by(w.f["num"]).page(1)  # a fourth: the memo starts again
    assert len(memo) == 1
    assert w.rows(q) == SCOPE["staff1"]


def test_columns_reads_a_tables_columns_as_attributes(w: World) -> None:
    tbl = w.table()
    cols = query.Columns(tbl)
    assert cols.id is tbl.c.id and cols.owner_id is tbl.c.owner_id
    with pytest.raises(AttributeError) as missing:
        cols.nope  # noqa: B018
    assert missing.value.args == ("nope",)
