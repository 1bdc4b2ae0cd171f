"""The access rules decided one case at a time, as ``make mutation MODULE=custom_fields/access.py`` needs
them: every rule of ``custom_fields.access`` (table rights, row scopes, field modes, several roles, the
admin, who is acting, the rows a scope reaches, saving and seeding the rules) with an answer that differs
when the rule is changed. The decisions themselves are plain data and run without the app; the rows a
scope reaches are selected from a real (in-memory) SQLite table; saving and seeding use the app's database.
Tests of the same rules through the screens and the API: tests/test_access_scopes.py."""

from __future__ import annotations

import datetime as dt
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import DateTime, Integer, String, create_engine, insert, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from custom_fields import access
from custom_fields.access import AccessSnapshot, Actor, Grants, grants, row_filter, scope_holder_ids
from custom_fields.spec import EntitySpec, FieldSpec

ENTITY_ID = 7
OTHER_ENTITY = 8
STAFF, AUDITOR, CLERK, ADMIN = 1, 2, 3, 9


def spec(field_id: int, name: str, type_name: str = "text", **settings: Any) -> FieldSpec:
    return FieldSpec(field_id, ENTITY_ID, name, name, name.title(), type_name, settings=settings)


NAME = spec(1, "name")
SECRET = spec(2, "secret")
PRICE = spec(3, "price", "money")
TOTAL = spec(4, "total", "money", auto=True)
OWNER = spec(5, "owner_id", "user")
ASSIGNEE = spec(6, "assignee_id", "user")
OLD = FieldSpec(7, ENTITY_ID, "old", "old", "Old", "text", archived=True)
ENTITY = EntitySpec(
    ENTITY_ID, "things", "t_things", "Thing", "Things", "fa-table", False, False, 1,
    (NAME, SECRET, PRICE, TOTAL, OWNER, ASSIGNEE, OLD),
)  # fmt: skip


def snapshot(**kwargs: Any) -> AccessSnapshot:
    """Staff: read, add, edit their own on every table, delete nothing here; price view-only, secret hidden.
    Auditor: reads every thing, all rows, edits nothing; secret hidden. Clerk: may not read things at all,
    but their field rules would show the secret."""
    defaults: dict[str, Any] = dict(
        tables={
            (STAFF, None): {"read": True, "add": True, "edit": True, "delete": True, "export": False},
            (STAFF, ENTITY_ID): {"delete": False, "export": None},
            (AUDITOR, ENTITY_ID): {"read": True, "edit": False},
            (CLERK, None): {"read": False, "add": True},
        },
        scopes={
            (STAFF, None): {"read": "own", "edit": "own", "delete": "own"},
            (STAFF, ENTITY_ID): {"read": None, "edit": "team"},
            (AUDITOR, ENTITY_ID): {"read": "all", "edit": "all"},
            (CLERK, None): {"read": "all"},
        },
        fields={(STAFF, SECRET.id): "hidden", (STAFF, PRICE.id): "view", (AUDITOR, SECRET.id): "hidden",
                (CLERK, SECRET.id): "edit"},
        admin_role_ids=frozenset({ADMIN}),
        team_mates={10: frozenset({10, 11}), 11: frozenset({10, 11})},
    )  # fmt: skip
    defaults.update(kwargs)
    return AccessSnapshot(**defaults)


def rights_of(*roles: int, user_id: int | None = 10, snap: AccessSnapshot | None = None) -> Grants:
    return grants(Actor(user_id, frozenset(roles)), ENTITY, snap or snapshot())


# --- the snapshot's answers per role ----------------------------------------------------------------------


def test_a_tables_own_rule_wins_over_the_roles_default_and_unset_falls_back() -> None:
    snap = snapshot()
    assert snap.allowed(STAFF, ENTITY_ID, "read") is True  # from the default
    assert snap.allowed(STAFF, ENTITY_ID, "delete") is False  # the table's own False beats the default True
    assert snap.allowed(STAFF, OTHER_ENTITY, "delete") is True
    assert snap.allowed(STAFF, ENTITY_ID, "export") is False  # None on the table: as the default
    assert snap.allowed(STAFF, ENTITY_ID, "mail") is False  # named nowhere: denied
    assert snap.allowed(AUDITOR, OTHER_ENTITY, "read") is False  # no default row at all
    assert snap.allowed(AUDITOR, ENTITY_ID, "read") is True
    assert snapshot(tables={(STAFF, ENTITY_ID): {"read": True}}).allowed(STAFF, ENTITY_ID, "read") is True


def test_a_tables_own_reach_wins_and_the_fallback_is_all() -> None:
    snap = snapshot()
    assert snap.scope(STAFF, ENTITY_ID, "edit") == "team"  # the table's own
    assert snap.scope(STAFF, ENTITY_ID, "read") == "own"  # None on the table: the default's
    assert snap.scope(STAFF, OTHER_ENTITY, "delete") == "own"
    assert snap.scope(AUDITOR, OTHER_ENTITY, "read") == "all"  # nothing set anywhere
    assert snap.scope(CLERK, ENTITY_ID, "edit") == "all"  # a default row without this action


# --- one actor's rights -------------------------------------------------------------------------------------


def test_one_roles_rights_actions_reach_and_field_modes() -> None:
    rights = rights_of(STAFF)
    assert rights.actions == frozenset({"read", "add", "edit"})
    assert rights.can("edit") and not rights.can("delete") and not rights.can("export")
    assert rights.scopes == {"read": "own", "edit": "team"}
    assert (rights.scope("read"), rights.scope("edit"), rights.scope("delete")) == ("own", "team", None)
    assert rights.modes == {
        "name": "edit", "secret": "hidden", "price": "view", "total": "edit", "owner_id": "edit",
        "assignee_id": "edit",
    }  # fmt: skip
    assert "old" not in rights.modes  # archived fields are nobody's
    assert rights.mode("old") == "hidden" and rights.mode("nonexistent") == "hidden"
    assert rights.hidden == frozenset({"secret"}) and rights.read_only == frozenset({"price"})
    assert rights.signature == (frozenset({"secret"}), frozenset({"price"}))
    assert [f.name for f in rights.visible_fields] == ["name", "price", "total", "owner_id", "assignee_id"]
    assert [f.name for f in rights.editable_fields] == ["name", "owner_id", "assignee_id"]  # no auto, no view
    assert not rights.is_admin and rights.actor == Actor(10, frozenset({STAFF}))
    assert rights.mates == frozenset({10, 11}) and rights.entity is ENTITY


def test_several_roles_add_up_to_the_widest_reach_and_the_most_open_field_mode() -> None:
    both = rights_of(STAFF, AUDITOR)
    assert both.actions == frozenset({"read", "add", "edit"})
    # The auditor's "all" widens Staff's own reading; the auditor may not edit, so it lends editing no reach.
    assert both.scopes == {"read": "all", "edit": "team"}
    assert both.mode("price") == "edit"  # view-only for Staff, editable as far as the auditor is concerned
    assert both.mode("secret") == "hidden"  # hidden by both
    editing = {**snapshot().tables, (AUDITOR, ENTITY_ID): {"read": True, "edit": True}}
    assert rights_of(STAFF, AUDITOR, snap=snapshot(tables=editing)).scope("edit") == "all"
    narrower = snapshot(
        tables=editing, scopes={**snapshot().scopes, (AUDITOR, ENTITY_ID): {"read": "all", "edit": "own"}}
    )
    assert rights_of(STAFF, AUDITOR, snap=narrower).scope("edit") == "team"  # Staff's team beats own
    # Field modes rank edit > view > hidden (not alphabetically): view-only and hidden make view-only.
    mixed = snapshot(fields={(STAFF, PRICE.id): "view", (AUDITOR, PRICE.id): "hidden"})
    assert rights_of(STAFF, AUDITOR, snap=mixed).mode("price") == "view"
    assert rights_of(AUDITOR, STAFF, snap=mixed).mode("price") == "view"
    auditor_alone = rights_of(AUDITOR)
    assert auditor_alone.scopes == {"read": "all"} and auditor_alone.scope("edit") is None
    # A role that may not read the table does not open its fields: the clerk's "edit" of the secret is
    # ignored; with no reading role at all, every field is hidden.
    assert rights_of(STAFF, CLERK).mode("secret") == "hidden"
    assert rights_of(STAFF, CLERK).actions == frozenset({"read", "add", "edit"})
    clerk = rights_of(CLERK)
    assert clerk.actions == frozenset({"add"}) and set(clerk.modes.values()) == {"hidden"}
    assert clerk.visible_fields == () and clerk.scopes == {}


def test_the_admin_role_and_the_system_may_do_everything() -> None:
    for actor in (Actor(10, frozenset({STAFF, ADMIN})), Actor.system_job()):
        rights = grants(actor, ENTITY, snapshot())
        assert rights.is_admin and access.is_admin(actor, snapshot())
        assert rights.actions == frozenset(access.TABLE_ACTIONS)
        assert set(rights.modes.values()) == {"edit"} and "old" not in rights.modes
        assert rights.scope("read") == "all" and rights.scope("delete") == "all"
        assert rights.actor == actor
    assert not access.is_admin(Actor(10, frozenset({STAFF})), snapshot())
    system = Actor.system_job()
    assert (system.user_id, system.role_ids, system.source, system.system) == (None, frozenset(), "job", True)


def test_someone_in_no_team_has_only_themselves_and_nobody_has_no_one() -> None:
    assert rights_of(STAFF, user_id=12).mates == frozenset({12})
    assert rights_of(STAFF, user_id=None).mates == frozenset()
    assert rights_of(STAFF, user_id=11).mates == frozenset({10, 11})


def test_who_is_acting() -> None:
    role = SimpleNamespace(id=STAFF)
    active = SimpleNamespace(id=10, is_authenticated=True, is_active=True, roles=[role])
    assert Actor.of_user(active, "api") == Actor(10, frozenset({STAFF}), "api")
    assert Actor.of_user(active).source == "ui"
    for nobody in (
        None,
        SimpleNamespace(id=10, is_authenticated=False, is_active=True, roles=[role]),
        SimpleNamespace(id=10, is_authenticated=True, is_active=False, roles=[role]),
        SimpleNamespace(id=10, roles=[role]),  # no is_authenticated: not signed in
    ):
        assert Actor.of_user(nobody, "job") == Actor(None, frozenset(), "job")
    assert Actor.of_user(SimpleNamespace(id=10, is_authenticated=True, roles=[role])).user_id == 10
    assert Actor.current("api") == Actor(None, frozenset(), "api")  # outside a request: nobody


# --- the rows a scope reaches (a real table) --------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class Thing(Base):
    __tablename__ = "things"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    owner_id: Mapped[int | None] = mapped_column(Integer)
    assignee_id: Mapped[int | None] = mapped_column(Integer)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


ROWS = {
    1: (10, None, False),  # mine
    2: (11, None, False),  # my team mate's
    3: (12, None, False),  # an outsider's
    4: (12, 10, False),  # an outsider's, assigned to me
    5: (12, 11, False),  # an outsider's, assigned to my team mate
    6: (10, None, True),  # mine, in the recycle bin
    7: (None, None, False),  # nobody's
}


@pytest.fixture(scope="module")
def things() -> Any:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(Thing.__table__),
            [
                {"id": pk, "name": f"n{pk}", "owner_id": owner, "assignee_id": assignee,
                 "deleted_at": dt.datetime(2025, 1, 1) if deleted else None}
                for pk, (owner, assignee, deleted) in ROWS.items()
            ],
        )  # fmt: skip
    yield engine
    engine.dispose()


def reached(engine: Any, rights: Grants, action: str = "read") -> set[int]:
    with engine.connect() as conn:
        return set(conn.scalars(select(Thing.id).where(row_filter(Thing, rights, action))))


def reach(scope: str | None, user_id: int | None = 10, entity: EntitySpec = ENTITY) -> Grants:
    scopes = {} if scope is None else {"read": scope}
    actions = frozenset() if scope is None else frozenset({"read"})
    mates = frozenset({10, 11}) if user_id == 10 else frozenset({user_id} - {None})
    actor = Actor(user_id, frozenset({STAFF}))
    return Grants(entity, actions, {}, actor=actor, scopes=scopes, mates=mates)


def test_a_scope_reaches_own_team_or_all_live_rows_and_the_assignee_counts(things: Any) -> None:
    assert reached(things, reach("all")) == {1, 2, 3, 4, 5, 7}  # never the recycle bin
    assert reached(things, reach("own")) == {1, 4}  # owned, or assigned to me
    assert reached(things, reach("team")) == {1, 2, 4, 5}
    assert reached(things, reach(None)) == set()  # may not read at all
    assert reached(things, reach("own", user_id=12)) == {3, 4, 5}
    assert reached(things, reach("own"), "edit") == set()  # "edit" was not granted
    with things.connect() as conn:  # without an action: reading
        assert set(conn.scalars(select(Thing.id).where(row_filter(Thing, reach("own"))))) == {1, 4}
    # Without the assignee field only the owner counts.
    no_assignee = EntitySpec(
        ENTITY_ID, "things", "t_things", "Thing", "Things", "fa-table", False, False, 1, (NAME, OWNER)
    )
    assert reached(things, reach("own", entity=no_assignee)) == {1}
    assert reached(things, reach("team", entity=no_assignee)) == {1, 2}


def test_the_recycle_bin_shows_only_binned_rows_in_the_same_scope(things: Any) -> None:
    """``in_bin``: the binned rows the scope reaches (a link checked against the recycle bin), never the
    live ones."""
    with things.connect() as conn:

        def binned(rights: Grants) -> set[int]:
            return set(conn.scalars(select(Thing.id).where(row_filter(Thing, rights, in_bin=True))))

        assert binned(reach("all")) == {6}
        assert binned(reach("own")) == {6}
        assert binned(reach("own", user_id=12)) == set()


def test_the_fields_that_make_a_record_someones_own() -> None:
    """What a live announcement names as a record's holders: its owner and its user fields (an
    assignee), not its other fields; a table without them has none."""
    assert scope_holder_ids(ENTITY) == {OWNER.id, ASSIGNEE.id}
    plain = EntitySpec(
        ENTITY_ID, "things", "t_things", "Thing", "Things", "fa-table", False, False, 1, (NAME,)
    )
    assert scope_holder_ids(plain) == frozenset()


def test_a_record_handed_on_was_reached_through_its_holders_own_or_team_scope() -> None:
    """``reached_through``: whether a record held by these users (before it was handed on) was within
    the reader's own or team scope; never for "all", for nobody, or for a table whose rows follow a
    parent's."""
    assert reach("own").reached_through([10]) and reach("own").reached_through([99, 10])
    assert not reach("own").reached_through([11]) and not reach("own").reached_through([])
    assert reach("team").reached_through([11]) and not reach("team").reached_through([12])
    assert not reach("all").reached_through([10])
    assert not reach(None).reached_through([10])  # may not read at all
    assert not reach("own", user_id=None).reached_through([10])
    anonymous = Grants(ENTITY, frozenset({"read"}), {}, actor=None, scopes={"read": "own"})
    assert not anonymous.reached_through([10])
    edit = Grants(ENTITY, frozenset({"read", "edit"}), {}, actor=Actor(10, frozenset({STAFF})),
                  scopes={"read": "all", "edit": "own"}, mates=frozenset({10, 11}))  # fmt: skip
    assert not edit.reached_through([10]) and edit.reached_through([10], "edit")
    parent = spec(9, "deal_id", "link", scope_parent=True, target=1)
    lines = EntitySpec(ENTITY_ID, "things", "t_things", "Thing", "Things", "fa-table", False, False, 1,
                       (NAME, OWNER, parent))  # fmt: skip
    assert not reach("own", entity=lines).reached_through([10])


def test_nobody_reaches_an_own_or_team_scope(things: Any) -> None:
    anonymous = Grants(
        ENTITY, frozenset({"read"}), {}, actor=Actor(None, frozenset()), scopes={"read": "own"}
    )
    assert reached(things, anonymous) == set()
    assert (
        reached(things, Grants(ENTITY, frozenset({"read"}), {}, actor=None, scopes={"read": "team"})) == set()
    )
    # ... while "all" needs no one: the admin's and the system's rights.
    assert reached(things, Grants(ENTITY, frozenset({"read"}), {}, actor=None, scopes={"read": "all"})) == {
        1, 2, 3, 4, 5, 7,
    }  # fmt: skip
    assert reached(things, grants(Actor.system_job(), ENTITY, snapshot())) == {1, 2, 3, 4, 5, 7}


def test_the_user_fields_that_make_a_record_someones_own() -> None:
    assert access.scope_user_fields(ENTITY) == [ASSIGNEE]
    archived = FieldSpec(8, ENTITY_ID, "helper_id", "helper_id", "Helper", "user", archived=True)
    entity = EntitySpec(
        ENTITY_ID,
        "things",
        "t_things",
        "Thing",
        "Things",
        "fa-table",
        False,
        False,
        1,
        (OWNER, archived, NAME),
    )
    assert access.scope_user_fields(entity) == []


# --- the rules in the database: loading, saving, seeding ---------------------------------------------------


def role_named(app: Any, name: str) -> Any:
    return app.appbuilder.sm.find_role(name)


def new_user(app: Any, role_name: str = "Staff") -> int:
    sm = app.appbuilder.sm
    username = f"rules_{uuid.uuid4().hex[:8]}"
    user = sm.add_user(
        username, "Пра", "Вила", f"{username}@example.com", role_named(app, role_name), "x-Пароль-1"
    )
    assert user
    return user.id


def last_change() -> Any:
    from app.extensions import db
    from models import SchemaChange

    db.session.expire_all()
    return db.session.scalars(select(SchemaChange).order_by(SchemaChange.id.desc())).first()


def access_seeds(schema: Any, seeded_fields: list[Any]) -> int:
    from custom_fields.core import SEEDED_TABLE_RULES

    return 4 + len(SEEDED_TABLE_RULES) + len(seeded_fields)


def last_summary() -> str:
    return last_change().summary


def test_the_snapshot_loads_every_rule_and_team(app_ctx) -> None:  # noqa: ANN001
    from custom_fields.runtime import current, refresh
    from views import teams

    schema = refresh()
    snap = access.load_snapshot()
    staff, manager, admin = (role_named(app_ctx, n).id for n in ("Staff", "Manager", "Admin"))
    assert snap.admin_role_ids == frozenset({admin})
    assert snap.allowed(staff, 0, "read") and not snap.allowed(staff, 0, "export")
    assert snap.scope(staff, 0, "read") == "own" and snap.scope(manager, 0, "read") == "team"
    assert snap == schema.access  # the process's snapshot is this one
    role = app_ctx.appbuilder.sm.add_role(f"Снимок {uuid.uuid4().hex[:6]}")
    companies = current().entity("companies")
    tax = companies.field_by_name("tax_id")
    access.save_rules(
        role.id, tables={companies.id: {"read": True, "read_scope": "team"}}, fields={tax.id: "view"}
    )
    snap = access.load_snapshot()
    assert snap.tables[(role.id, companies.id)]["read"] is True
    assert snap.tables[(role.id, companies.id)]["edit"] is None
    assert snap.scopes[(role.id, companies.id)] == {"read": "team", "edit": None, "delete": None}
    assert snap.fields[(role.id, tax.id)] == "view"
    # Teams: everyone sharing a team with a user, themselves included; in two teams, both teams' members.
    a, b, c, d = (new_user(app_ctx) for _ in range(4))
    first = teams.create_team(f"Снимок {uuid.uuid4().hex[:6]}", [a, b])
    second = teams.create_team(f"Снимок {uuid.uuid4().hex[:6]}", [b, c])
    try:
        mates = access.load_snapshot().team_mates
        assert (mates[a], mates[b], mates[c]) == ({a, b}, {a, b, c}, {b, c})
        assert d not in mates
    finally:
        teams.delete_team(first)
        teams.delete_team(second)
        refresh()


def test_saving_rules_refuses_what_it_cannot_store_and_records_real_changes(app_ctx) -> None:  # noqa: ANN001
    from custom_fields.runtime import current, refresh
    from custom_fields.service import SchemaError

    role = app_ctx.appbuilder.sm.add_role(f"Правила {uuid.uuid4().hex[:6]}")
    companies = current().entity("companies")
    tax = companies.field_by_name("tax_id")

    def version() -> int:
        return refresh().version

    start = version()
    refused = {
        "The default for all tables must allow or deny each action.": dict(tables={None: {"read": None}}),
        "unknown scope 'everything'": dict(tables={companies.id: {"read_scope": "everything"}}),
        "unknown action 'fly'": dict(tables={companies.id: {"fly": True}}),
        "unknown field mode 'sideways'": dict(fields={tax.id: "sideways"}),
    }
    for message, change in refused.items():
        with pytest.raises(SchemaError) as raised:
            access.save_rules(role.id, **change)
        assert str(raised.value) == message
    with pytest.raises(SchemaError) as raised:
        access.save_rules(role_named(app_ctx, "Admin").id, tables={None: {"read": True}})
    assert str(raised.value) == "The Admin role may always do everything."
    with pytest.raises(SchemaError) as raised:
        access.save_rules(2_000_000_000, tables={None: {"read": True}})
    assert str(raised.value) == "No such role."
    assert version() == start and access.load_snapshot().tables.get((role.id, companies.id)) is None

    admin_id = app_ctx.appbuilder.sm.find_user(username="admin").id
    access.set_table_rights(role.id, companies.id, {"read": True, "read_scope": "own"}, user_id=admin_id)
    assert version() == start + 1 and (last_change().user_id, last_change().action) == (admin_id, "access")
    assert (
        last_summary()
        == f"Access of role “{role.name}”: #{companies.id}.read=True, #{companies.id}.read_scope=own"
    )
    access.set_field_mode(role.id, tax.id, "hidden", user_id=admin_id)
    assert last_change().user_id == admin_id
    after = version()
    assert after == start + 2 and last_summary() == f"Access of role “{role.name}”: {tax.label}=hidden"
    snap = access.load_snapshot()
    assert snap.allowed(role.id, companies.id, "read") and snap.scope(role.id, companies.id, "read") == "own"
    assert snap.fields[(role.id, tax.id)] == "hidden"
    # The same values again change nothing: no new version.
    access.save_rules(
        role.id, tables={companies.id: {"read": True, "read_scope": "own"}}, fields={tax.id: "hidden"}
    )
    assert version() == after
    # A field set to "view" changes its rule; back to None (or "edit") removes it; a reach of None is
    # "as the default".
    access.save_rules(role.id, tables={companies.id: {"read_scope": None}}, fields={tax.id: "view"})
    assert access.load_snapshot().fields[(role.id, tax.id)] == "view"
    assert last_summary().endswith(f"#{companies.id}.read_scope=None, {tax.label}=view")
    access.save_rules(role.id, fields={tax.id: None})
    snap = access.load_snapshot()
    assert (role.id, tax.id) not in snap.fields and snap.scopes[(role.id, companies.id)]["read"] is None
    assert last_summary().endswith(f"{tax.label}=edit")
    access.save_rules(role.id, fields={tax.id: "edit"})  # already "edit": nothing to record or store
    access.save_rules(role.id, fields={tax.id: None})
    assert version() == after + 2 and (role.id, tax.id) not in access.load_snapshot().fields
    # "edit" removes a rule as None does; a rule is the role's own for that field (another role's rule on
    # it, and the role's rule on another field, stay as they are).
    other = app_ctx.appbuilder.sm.add_role(f"Другая {uuid.uuid4().hex[:6]}")
    region = companies.field_by_name("region")
    access.save_rules(other.id, fields={tax.id: "hidden"})
    access.save_rules(role.id, fields={region.id: "view"})
    access.save_rules(role.id, fields={tax.id: "view"})
    access.save_rules(role.id, fields={tax.id: "edit"})
    snap = access.load_snapshot()
    assert (role.id, tax.id) not in snap.fields
    assert (snap.fields[(other.id, tax.id)], snap.fields[(role.id, region.id)]) == ("hidden", "view")
    # A reach and an action in one change: both are saved.
    access.save_rules(
        role.id, tables={companies.id: {"delete_scope": "team", "delete": True, "export": True}}
    )
    snap = access.load_snapshot()
    assert snap.scope(role.id, companies.id, "delete") == "team"
    assert snap.allowed(role.id, companies.id, "delete") and snap.allowed(role.id, companies.id, "export")
    after = version()
    access.save_rules(role.id, tables={None: {"read": False, "edit_scope": "team"}})
    snap = access.load_snapshot()
    assert snap.tables[(role.id, None)]["read"] is False and snap.scope(role.id, 0, "edit") == "team"
    assert last_summary() == f"Access of role “{role.name}”: *.read=False, *.edit_scope=team"


def test_the_snapshot_reads_the_database_not_what_the_session_holds(app_ctx) -> None:  # noqa: ANN001
    from sqlalchemy import update

    from app.extensions import db
    from models.records import TableRule

    role = app_ctx.appbuilder.sm.add_role(f"Свежесть {uuid.uuid4().hex[:6]}")
    access.save_rules(role.id, tables={None: {"read": True, "edit": False}})
    held = db.session.scalar(select(TableRule).where(TableRule.role_id == role.id))
    assert held.read is True  # this session now holds the rule ...
    # ... and the row changes underneath it, in this transaction (committed by another process, in
    # production, where this session may still hold the object from an earlier read).
    db.session.execute(update(TableRule.__table__).where(TableRule.id == held.id).values(read=False))
    assert access.load_snapshot().tables[(role.id, None)]["read"] is False
    db.session.commit()


def test_an_api_token_user_is_the_actor(app, app_ctx) -> None:  # noqa: ANN001
    """FAB verifies an API token after the request started: the user flask-jwt-extended loaded acts."""
    from flask import g

    staff1 = app.appbuilder.sm.find_user(username="staff1")
    with app.test_request_context("/api/v1/t/companies/"):
        assert Actor.current("api") == Actor(None, frozenset(), "api")
        g._jwt_extended_jwt_user = {"loaded_user": staff1}
        assert Actor.current("api") == Actor(staff1.id, frozenset(r.id for r in staff1.roles), "api")


def test_seeding_applies_once_and_keeps_what_an_admin_changed(app_ctx) -> None:  # noqa: ANN001
    from custom_fields.runtime import refresh

    staff = role_named(app_ctx, "Staff").id
    assert access.seed_defaults() == 0  # the app's start-up seeded everything already
    before = refresh().version
    access.save_rules(staff, tables={None: {"export": True}})
    try:
        assert access.seed_defaults() == 0
        assert access.load_snapshot().allowed(staff, 0, "export")  # the admin's change stays
        assert refresh().version == before + 1
    finally:
        access.save_rules(staff, tables={None: {"export": False}})
        refresh()


def test_seeding_from_scratch_gives_the_built_in_roles_their_documented_rules(app_ctx) -> None:  # noqa: ANN001
    """The built-in roles' rules forgotten (as on a new database) and seeded again: the documented defaults,
    except where a rule was already set, which seeding never overwrites on a role's default or a field."""
    from sqlalchemy import delete

    from app.extensions import db
    from custom_fields.core import SEEDED_FIELD_MODES, SEEDED_TABLE_RULES
    from custom_fields.runtime import current, refresh
    from models import SeededGrant
    from models.records import SCOPED_ACTIONS, TABLE_ACTIONS, FieldRule, TableRule

    roles = {name: role_named(app_ctx, name).id for name in ("Staff", "Manager")}
    schema = current()
    db.session.execute(delete(SeededGrant).where(SeededGrant.permission == "tabula-access"))
    db.session.execute(delete(TableRule).where(TableRule.role_id.in_(roles.values())))
    db.session.execute(delete(FieldRule).where(FieldRule.role_id.in_(roles.values())))
    # What an admin set before the seeds were remembered stays (a default's action and reach, a field).
    owner = schema.entity("companies").field_by_name("owner_id")
    kept = TableRule(role_id=roles["Staff"], entity_id=None)
    kept.set("export", True)
    kept.set_scope("read", "team")
    db.session.add_all([kept, FieldRule(role_id=roles["Staff"], field_id=owner.id, mode="hidden")])
    # Another role's rule on a seeded field does not stop Staff's seed.
    contact_owner = schema.entity("contacts").field_by_name("owner_id")
    db.session.add(FieldRule(role_id=roles["Manager"], field_id=contact_owner.id, mode="hidden"))
    db.session.commit()
    version = refresh().version

    seeded_fields = [k for k in SEEDED_FIELD_MODES if schema.entity(k[1]) is not None]
    assert access.seed_defaults() == access_seeds(schema, seeded_fields)
    assert refresh().version == version + 1
    assert (last_change().action, last_change().summary) == (
        "access",
        f"Seeded the built-in roles' access ({access_seeds(schema, seeded_fields)})",
    )
    assert access.seed_defaults() == 0 and refresh().version == version + 1  # once only
    # Each seed is remembered under a name databases already hold: renaming one would seed it again (and
    # overwrite what an admin changed since) on the next start.
    markers = set(db.session.execute(select(SeededGrant.role_name, SeededGrant.view_menu).where(
        SeededGrant.permission == "tabula-access")))  # fmt: skip
    assert markers == {
        *((name, what) for name in roles for what in ("default", "default-scope")),
        *((name, f"table:{slug}") for name, slug in SEEDED_TABLE_RULES),
        *((name, f"field:{slug}.{field_name}") for name, slug, field_name in seeded_fields),
    }

    snap = access.load_snapshot()
    staff, manager = roles["Staff"], roles["Manager"]
    assert snap.tables[(staff, None)] == {**access.SEEDED_DEFAULTS["Staff"], "export": True}
    assert snap.tables[(manager, None)] == dict.fromkeys(TABLE_ACTIONS, True)
    assert snap.scopes[(staff, None)] == {"read": "team", "edit": "own", "delete": "own"}
    assert snap.scopes[(manager, None)] == dict.fromkeys(SCOPED_ACTIONS, "team")
    for (name, slug), rights in SEEDED_TABLE_RULES.items():
        entity_id = schema.entity(slug).id
        for key, value in rights.items():
            if key.endswith("_scope"):
                assert snap.scopes[(roles[name], entity_id)][key.removesuffix("_scope")] == value, (name, key)
            else:
                assert snap.tables[(roles[name], entity_id)][key] == value, (name, key)
    for name, slug, field_name in seeded_fields:
        field_id = schema.entity(slug).field_by_name(field_name).id
        expected = "hidden" if field_id == owner.id else SEEDED_FIELD_MODES[(name, slug, field_name)]
        assert snap.fields[(roles[name], field_id)] == expected, (slug, field_name)
    assert not [key for key in snap.tables if key[0] in snap.admin_role_ids]  # the Admin role needs no rules
    assert snap.fields[(manager, contact_owner.id)] == "hidden"
    # Back to the documented rules for the rest of the session.
    access.set_field_mode(staff, owner.id, SEEDED_FIELD_MODES[("Staff", "companies", "owner_id")])
    access.set_field_mode(manager, contact_owner.id, None)
    access.save_rules(staff, tables={None: {"export": False, "read_scope": "own"}})
    refresh()


def test_a_deal_line_is_read_as_far_as_its_deal_is_read_and_changed_as_far_as_it_is_edited(app_ctx) -> None:  # noqa: ANN001
    """Lines follow their deal (its scope-parent link): a staff user who may read every deal but edit only
    their own reads another user's line and may neither change nor delete it."""
    from app.crm.convert import default_stage_id
    from custom_fields import records
    from custom_fields.runtime import current, refresh

    users = {u.username: u.id for u in app_ctx.appbuilder.sm.get_all_users()}
    staff1, staff2 = (Actor.for_user_id(users[n], "ui") for n in ("staff1", "staff2"))
    deal = records.create("deals", {"title": "Чужая сделка", "stage_id": default_stage_id()}, staff2).id
    line, binned = (
        records.create(
            "deal_lines", {"deal_id": deal, "description": text, "quantity": 1, "price": 5}, staff2
        ).id
        for text in ("Чужая строка", "Удалённая строка")
    )
    records.delete("deal_lines", binned, staff2)
    own_deal = records.create("deals", {"title": "Своя сделка", "stage_id": default_stage_id()}, staff1).id
    # Added by someone who cannot read the deal (so through the system path): the line is the deal owner's
    # through its deal.
    with records.linking_unreadable("test: a line added to another user's deal"):
        own_line = records.create(
            "deal_lines",
            {"deal_id": own_deal, "description": "Своя строка", "quantity": 1, "price": 5},
            staff2,
        ).id
    staff = role_named(app_ctx, "Staff").id
    deals = current().entity("deals")
    access.save_rules(staff, tables={deals.id: {"read_scope": "all"}})
    try:
        schema = refresh()
        lines = schema.entity("deal_lines")
        model = schema.classes["deal_lines"]
        rights = grants(staff1, lines, schema.access)
        assert rights.scope("read") == "own" and rights.scope("edit") == "own"  # the line's own rules

        def reaches(action: str, pk: int = line) -> bool:
            from app.extensions import db

            query = select(model.id).where(model.id == pk, row_filter(model, rights, action))
            return db.session.scalar(query) is not None

        assert reaches("read") and not reaches("edit") and not reaches("delete")
        assert reaches("read", own_line) and reaches("edit", own_line) and reaches("delete", own_line)
        assert not reaches("read", binned)  # its deal is readable, the line is in the recycle bin
        with pytest.raises(records.RecordNotFound):
            records.update("deal_lines", line, {"quantity": 9}, staff1, expected_version=None)
        with pytest.raises(records.RecordNotFound):
            records.delete("deal_lines", line, staff1)
    finally:
        access.save_rules(staff, tables={deals.id: {"read_scope": None}})
        refresh()


def test_the_signed_in_users_rights_in_a_request(app, app_ctx) -> None:  # noqa: ANN001
    """What the screens ask: the signed-in user's rights (once per request), FAB's permission checks on a
    table's menu entry, and the tables in the menu; without a snapshot the process's current one is used."""
    from flask import g
    from flask_login import login_user

    from custom_fields.runtime import current
    from views.tables import category_of

    sm = app.appbuilder.sm
    staff1, admin = sm.find_user(username="staff1"), sm.find_user(username="admin")
    schema = current()
    companies, pipelines = schema.entity("companies"), schema.entity("pipelines")
    as_staff = Actor.of_user(staff1, "ui")
    assert grants(as_staff, companies) == grants(as_staff, companies, schema.access)
    assert access.is_admin(Actor.of_user(admin)) and not access.is_admin(as_staff)
    assert Actor.for_user_id(staff1.id) == Actor(staff1.id, frozenset(r.id for r in staff1.roles), "job")
    assert Actor.for_user_id(staff1.id, "import").source == "import"
    assert Actor.for_user_id(2_000_000_000) == Actor(None, frozenset(), "job")  # no such user: nobody
    # Work done for an owner (a mailing): the owner, or the system once the owner is gone.
    assert Actor.job_of(staff1.id) == Actor.for_user_id(staff1.id, "job")
    assert Actor.job_of(None) == Actor.system_job() and Actor.job_of(None).system

    with app.test_request_context("/"):
        assert Actor.current("api") == Actor(None, frozenset(), "api")  # not signed in
        assert not access.table_allowed(companies.permission_name, "can_read")
        login_user(staff1)
        assert Actor.current() == Actor(staff1.id, frozenset(r.id for r in staff1.roles), "ui")
        rights = access.current_grants(companies, "api")
        assert rights == grants(Actor.of_user(staff1, "api"), companies, schema.access)
        assert access.current_grants(companies) is rights  # once per request and user
        assert (schema.version, "companies", staff1.id) in g.tabula_grants
        assert access.table_allowed(companies.permission_name, "can_read")
        assert access.table_allowed(companies.permission_name, "menu_access")
        assert access.table_allowed(companies.permission_name, "can_add")
        assert not access.table_allowed(pipelines.permission_name, "can_edit")  # seeded read-only
        assert access.table_allowed(pipelines.permission_name, "can_read")
        assert not access.table_allowed(companies.permission_name, "can_fly")
        assert not access.table_allowed("Table no_such_table", "can_read")
        menu = access.table_menu_access(None)
        assert {companies.permission_name, category_of(companies)} <= menu
        assert access.table_menu_access([pipelines.permission_name]) == {
            pipelines.permission_name, category_of(pipelines),
        }  # fmt: skip
    outside = access.current_grants(companies)  # outside a request: nobody
    assert outside.actor == Actor(None, frozenset(), "ui") and not outside.can("read")
