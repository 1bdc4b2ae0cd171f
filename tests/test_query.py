"""The read door (``custom_fields.query``): for random filters (nested AND/OR), sorts, row scopes (own,
team, all) and a hidden field, what the layer answers page by page equals a naive Python filter and sort
over every row of the table — on SQLite and PostgreSQL — and paging by cursor loses and repeats nothing,
even when rows are added between pages. Hidden fields cannot be selected, filtered or sorted; cursors
cannot be edited or reused on another query; labels of links the reader may not read are not disclosed;
counts say when they are estimated; streams read everything once."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, select, update

from app.extensions import db
from custom_fields import service
from custom_fields.access import Actor, save_rules
from custom_fields.query import COUNT_LIMIT, Count, QueryDenied, QueryError, TableNotFound, TableQuery
from custom_fields.runtime import current, refresh, user_label
from custom_fields.types import REGISTRY
from views import teams as team_service

PASSWORD = "query-Пароль-1"
STAGES = ["Новая", "В работе", "Закрыта"]
TAGS = ["red", "green", "blue"]
LETTERS = "abcd"
SCOPES = ("own", "team", "all")


@dataclass
class World:
    slug: str
    partner_slug: str
    names: dict[str, str]  # label -> API name of the fields of the main table
    partner_name: str  # the partner table's display field
    users: dict[str, int]  # who -> user id
    usernames: dict[str, str]
    partners: dict[int, int]  # partner record id -> its owner
    roles: dict[str, int]
    extra: list[int] = field(default_factory=list)

    def actor(self, who: str) -> Actor:
        return Actor.for_user_id(self.users[who], "ui")

    def model(self) -> Any:
        return current().classes[self.slug]


def build_world(app: Any) -> World:
    """Two custom tables — "main" (every kind of filterable field, one of them hidden from the test roles)
    and "partner" (what main links to) — three roles reading both with an own, team or all scope, a user
    of each, a mate of the team user's, and rows owned by all of them, some in the recycle bin."""
    from flask_appbuilder.security.sqla.models import Role

    sm = app.appbuilder.sm
    tag = uuid.uuid4().hex[:6]
    partner = service.create_entity(f"Партнёр {tag}", "")
    main = service.create_entity(f"Главная {tag}", "")
    refresh()
    names = {"name": current().by_id[main.id].display_field.name}
    fields = [
        ("amount", "integer", {}),
        ("price", "decimal", {"settings": {"scale": 2}}),
        ("day", "date", {}),
        ("flag", "boolean", {}),
        ("stage", "single_select", {"settings": {"options": [{"label": s} for s in STAGES]}}),
        ("tags", "multi_select", {"settings": {"options": [{"label": s} for s in TAGS]}}),
        ("partner", "link", {"settings": {"target": partner.id}}),
        ("responsible", "user", {}),
        ("secret", "text", {}),
        ("notes", "long_text", {}),
    ]
    for label, type_name, options in fields:
        names[label] = service.add_field(main.id, f"{label} {tag}", type_name, **options).name
    refresh()

    users: dict[str, int] = {}
    usernames: dict[str, str] = {}
    roles: dict[str, int] = {}
    for scope in SCOPES:
        role = sm.add_role(f"Query {scope} {tag}")
        roles[scope] = role.id
    secret_id = next(f.id for f in current().by_id[main.id].fields if f.name == names["secret"])
    for scope in SCOPES:
        save_rules(
            roles[scope],
            tables={
                None: {"read": False, "add": False, "edit": False, "delete": False, "export": False,
                       "import": False, "mail": False},
                main.id: {"read": True, "read_scope": scope, "edit": True, "edit_scope": "own"},
                partner.id: {"read": True, "read_scope": "own"},
            },
            fields={secret_id: "hidden"},
        )  # fmt: skip
    for who, role_key, first in (
        ("own", "own", "Ольга"),
        ("team", "team", "Тимур"),
        ("all", "all", "Алла"),
        ("mate", "own", ""),
        ("other", "own", "Остап"),
    ):
        username = f"q_{who}_{tag}"
        role = db.session.get(Role, roles[role_key])
        user = sm.add_user(
            username, first or "", "Тест" if first else "", f"{username}@example.com", role, PASSWORD
        )
        assert user, username
        users[who], usernames[who] = user.id, username
    team_service.create_team(f"Команда {tag}", [users["team"], users["mate"]])
    refresh()

    rng = random.Random(1)
    owners = [users[w] for w in ("own", "team", "all", "mate", "other")]
    partner_model = current().classes[partner.slug]
    partner_name = current().by_id[partner.id].display_field.name
    partners: dict[int, int] = {}
    for i, owner in enumerate(owners):
        pid = db.session.execute(
            insert(partner_model.__table__)
            .values({partner_name: f"P{i}", "owner_id": owner})
            .returning(partner_model.__table__.c.id)
        ).scalar_one()
        partners[pid] = owner
    db.session.commit()
    world = World(main.slug, partner.slug, names, partner_name, users, usernames, partners, roles)
    rows = [random_row(world, rng) for _ in range(70)]
    table = current().classes[main.slug].__table__
    db.session.execute(insert(table), rows)
    db.session.commit()
    return world


def random_row(world: World, rng: random.Random) -> dict[str, Any]:
    n, users = world.names, list(world.users.values())
    stage_options = current().entity(world.slug).field_by_name(n["stage"]).options
    tag_ids = [o["id"] for o in current().entity(world.slug).field_by_name(n["tags"]).options]

    def maybe(make: Callable[[], Any], empty: float = 0.2) -> Any:
        return None if rng.random() < empty else make()

    chosen_tags = [t for t in tag_ids if rng.random() < 0.4]
    return {
        n["name"]: maybe(lambda: "".join(rng.choices(LETTERS, k=rng.randint(1, 3))), 0.1),
        n["amount"]: maybe(lambda: rng.randint(-3, 3)),
        n["price"]: maybe(lambda: Decimal(rng.choice(["-1.50", "0.00", "2.25", "10.00"]))),
        n["day"]: maybe(lambda: dt.date(2025, 1, 1) + dt.timedelta(days=rng.randint(0, 4))),
        n["flag"]: maybe(lambda: rng.random() < 0.5),
        n["stage"]: maybe(lambda: rng.choice(stage_options)["id"]),
        n["tags"]: f",{','.join(chosen_tags)}," if chosen_tags else None,
        n["partner"]: maybe(lambda: rng.choice(list(world.partners))),
        n["responsible"]: maybe(lambda: rng.choice(users), 0.6),
        n["secret"]: maybe(lambda: rng.choice(["x", "y"])),
        n["notes"]: maybe(lambda: rng.choice(["long a", "long b"])),
        "owner_id": rng.choice([*users, None]),
        "deleted_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC) if rng.random() < 0.1 else None,
    }


@pytest.fixture(scope="module")
def world(app) -> Iterator[World]:  # noqa: ANN001
    with app.app_context():
        built = build_world(app)
    yield built


# --- the naive model ------------------------------------------------------------------------------------


def stored_rows(world: World) -> list[dict[str, Any]]:
    table = world.model().__table__
    return [dict(row) for row in db.session.execute(select(table)).mappings()]


def reach(world: World, who: str) -> set[int] | None:
    """The users whose rows ``who`` reads (None: all rows)."""
    me = world.users[who]
    scope = {"own": "own", "team": "team", "all": "all", "mate": "own", "other": "own"}[who]
    if scope == "all":
        return None
    if scope == "team" and who in ("team", "mate"):
        return {world.users["team"], world.users["mate"]}
    return {me}


def in_scope(world: World, row: dict[str, Any], who: str) -> bool:
    if row["deleted_at"] is not None:
        return False
    users = reach(world, who)
    return users is None or row["owner_id"] in users or row[world.names["responsible"]] in users


def spec_of(world: World, name: str) -> Any:
    spec = current().entity(world.slug).field_by_name(name)
    if spec is None:  # a record column
        return TableQuery(world.slug, world.actor("all")).column(name).spec
    return spec


def naive_match(world: World, node: Any, row: dict[str, Any]) -> bool | None:
    """None: the condition is left out (an empty value)."""
    if isinstance(node, list):
        node = {"and": node}
    if "and" in node or "or" in node:
        results = [
            r for r in (naive_match(world, c, row) for c in node.get("and", node.get("or"))) if r is not None
        ]
        if not results:
            return None
        return all(results) if "and" in node else any(results)
    spec = spec_of(world, node["field"])
    value, op = row[node["field"]], node["op"]
    if op == "empty":
        return value is None
    if op == "nempty":
        return value is not None
    raw = node.get("value")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    wanted = REGISTRY[spec.type].filter_value(raw, spec)
    if op == "eq":
        return value is not None and value == wanted
    if op == "neq":
        return value is None or value != wanted
    if op == "ct":
        return value is not None and wanted.lower() in value.lower()
    if op == "nct":
        return value is None or wanted.lower() not in value.lower()
    if op == "sw":
        return value is not None and value.lower().startswith(wanted.lower())
    if op == "has":
        return value is not None and f",{wanted}," in value
    if op == "nhas":
        return value is None or f",{wanted}," not in value
    compare = {
        "gt": lambda a, b: a > b,
        "lt": lambda a, b: a < b,
        "ge": lambda a, b: a >= b,
        "le": lambda a, b: a <= b,
    }
    return value is not None and compare[op](value, wanted)


def naive_order(rows: list[dict[str, Any]], sort: list[str]) -> list[int]:
    """Ids in the layer's order: the sort keys, empty values the largest, then id."""
    ordered = sorted(rows, key=lambda r: r["id"])
    keys = [(k.lstrip("-"), k.startswith("-")) for k in sort]
    if keys and keys[-1][0] == "id":
        ordered.sort(key=lambda r: r["id"], reverse=keys[-1][1])
        keys = keys[:-1]
    for name, desc in reversed(keys):
        ordered.sort(key=lambda r, n=name: (r[n] is None, r[n]), reverse=desc)
    return [r["id"] for r in ordered]


def expected_ids(world: World, who: str, spec: Any, sort: list[str]) -> list[int]:
    rows = [r for r in stored_rows(world) if in_scope(world, r, who)]
    if spec:
        rows = [r for r in rows if naive_match(world, spec, r) is not False]
    return naive_order(rows, sort)


def page_through(query: TableQuery, size: int, between: Callable[[], None] | None = None) -> list[dict]:
    page = query.page(size)
    seen = list(page.rows)
    guard = 0
    while page.next_cursor is not None:
        if between is not None:
            between()
        page = query.page(size, after=page.next_cursor)
        seen += page.rows
        guard += 1
        assert guard < 500
    return seen


# --- random filters and sorts ---------------------------------------------------------------------------


def leaves(world: World) -> st.SearchStrategy:
    n = world.names
    text_ops = st.sampled_from(["ct", "nct", "eq", "neq", "sw", "empty", "nempty"])
    number_ops = st.sampled_from(["eq", "neq", "gt", "lt", "ge", "le", "empty", "nempty"])
    choice_ops = st.sampled_from(["eq", "neq", "empty", "nempty"])

    def leaf(name: str, ops: st.SearchStrategy, values: st.SearchStrategy) -> st.SearchStrategy:
        return st.builds(lambda op, value: {"field": name, "op": op, "value": value}, ops, values)

    return st.one_of(
        leaf(n["name"], text_ops, st.text(LETTERS, min_size=0, max_size=2)),
        leaf(n["amount"], number_ops, st.integers(-3, 3) | st.integers(-3, 3).map(str)),
        leaf(n["price"], number_ops, st.sampled_from(["-1,50", "0", "2.25", "3"])),
        leaf(n["day"], number_ops, st.sampled_from(["01.01.2025", "2025-01-03", "2025-01-05"])),
        leaf(
            n["flag"], st.sampled_from(["eq", "empty", "nempty"]), st.sampled_from([True, False, "да", "no"])
        ),
        leaf(n["stage"], choice_ops, st.sampled_from(STAGES)),
        leaf(n["tags"], st.sampled_from(["has", "nhas", "empty", "nempty"]), st.sampled_from(TAGS)),
        leaf(n["partner"], choice_ops, st.sampled_from(sorted(world.partners))),
        leaf(n["responsible"], choice_ops, st.sampled_from(sorted(world.users.values()))),
        leaf("owner_id", choice_ops, st.sampled_from(sorted(world.users.values()))),
        leaf("id", number_ops, st.integers(1, 80)),
        leaf(
            n["notes"], st.sampled_from(["ct", "nct", "empty", "nempty"]), st.sampled_from(["a", "long", "b"])
        ),
    )


def filters(world: World) -> st.SearchStrategy:
    return st.one_of(
        st.none(),
        st.recursive(
            leaves(world),
            lambda inner: st.one_of(
                st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"and": xs}),
                st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"or": xs}),
            ),
            max_leaves=6,
        ),
    )


def sorts(world: World) -> st.SearchStrategy:
    n = world.names
    names = [n[k] for k in ("name", "amount", "price", "day", "flag", "stage", "partner", "responsible")]
    names += ["owner_id", "id"]
    return st.lists(
        st.tuples(st.sampled_from(names), st.booleans()), max_size=3, unique_by=lambda k: k[0]
    ).map(lambda keys: [("-" if desc else "") + name for name, desc in keys])


PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def sort_after_id(sort: list[str]) -> list[str]:
    """The keys the layer keeps: none after ``id``."""
    kept = []
    for key in sort:
        kept.append(key)
        if key.lstrip("-") == "id":
            break
    return kept


@PROPERTY
@given(data=st.data())
def test_pages_equal_a_naive_filter_and_sort_over_every_row(app_ctx, world, data) -> None:  # noqa: ANN001
    who = data.draw(st.sampled_from(["own", "team", "all", "mate"]))
    spec = data.draw(filters(world))
    sort = sort_after_id(data.draw(sorts(world)))
    size = data.draw(st.integers(1, 9))
    query = TableQuery(world.slug, world.actor(who)).where(spec).order_by(*sort)
    seen = page_through(query, size)
    assert [r["id"] for r in seen] == expected_ids(world, who, spec, sort)
    assert all(world.names["secret"] not in r for r in seen)
    assert query.count() == Count(len(seen), True)
    assert query.page(size, as_json=True).rows == query.json_rows(query.page(size).rows)


@PROPERTY
@given(data=st.data())
def test_paging_loses_and_repeats_nothing_when_rows_are_added_between_pages(app_ctx, world, data) -> None:  # noqa: ANN001
    who = data.draw(st.sampled_from(["own", "team", "all"]))
    sort = sort_after_id(data.draw(sorts(world)))
    size = data.draw(st.integers(1, 12))
    seed = data.draw(st.integers(0, 10_000))
    query = TableQuery(world.slug, world.actor(who)).order_by(*sort)
    before = expected_ids(world, who, None, sort)
    rng = random.Random(seed)
    table = world.model().__table__
    added: list[int] = []

    def add_rows() -> None:
        if len(added) >= 4:  # (a few: each may land after the cursor and lengthen the walk)
            return
        row = random_row(world, rng) | {"owner_id": world.users[who], "deleted_at": None}
        added.append(db.session.execute(insert(table).values(row).returning(table.c.id)).scalar_one())
        db.session.commit()

    try:
        seen = [r["id"] for r in page_through(query, size, add_rows)]
        assert len(seen) == len(set(seen)), "a row came twice"
        assert set(before) <= set(seen), "a row was lost"
        assert set(seen) <= set(before) | set(added)
        # What came is in the query's order (the added rows among the others where they belong).
        assert seen == [i for i in expected_ids(world, who, None, sort) if i in set(seen)]
    finally:
        db.session.execute(delete(table).where(table.c.id.in_(added)))
        db.session.commit()


@PROPERTY
@given(text=st.text(LETTERS + "xy ", max_size=3), who=st.sampled_from(["own", "all"]))
def test_quick_search_matches_the_visible_searchable_fields(app_ctx, world, text, who) -> None:  # noqa: ANN001
    query = TableQuery(world.slug, world.actor(who)).search(text)
    found = [r["id"] for r in query.stream(7)]
    cleaned = " ".join(text.split())
    specs = [
        s
        for s in current().entity(world.slug).live_fields
        if s.searchable and s.name != world.names["secret"]
    ]
    expected = []
    for row in sorted(stored_rows(world), key=lambda r: r["id"]):
        if not in_scope(world, row, who):
            continue
        if not cleaned or any(REGISTRY[s.type].search_matches(row[s.name], cleaned, s) for s in specs):
            expected.append(row["id"])
    assert found == expected


# --- what the actor may not see -------------------------------------------------------------------------


def test_hidden_fields_cannot_be_selected_filtered_sorted_or_searched(app_ctx, world) -> None:  # noqa: ANN001
    secret = world.names["secret"]
    query = TableQuery(world.slug, world.actor("all"))
    assert secret not in {c.name for c in query.columns}
    unknown = "Unknown field: nope."
    for attempt in (
        lambda name: query.fields(name),
        lambda name: query.order_by(name),
        lambda name: query.order_by("-" + name),
        lambda name: query.where({"field": name, "op": "eq", "value": "x"}),
        lambda name: query.where({"or": [{"field": name, "op": "empty"}]}),
        lambda name: query.column(name),
    ):
        with pytest.raises(QueryError) as hidden:
            attempt(secret)
        with pytest.raises(QueryError) as missing:
            attempt("nope")
        assert str(missing.value) == unknown
        assert str(hidden.value) == unknown.replace("nope", secret)
    # A quick search for a hidden value finds nothing through it.
    assert all(
        r[world.names["name"]] is None or "x" not in r[world.names["name"]]
        for r in query.search("x").stream()
    )
    # The admin sees it.
    admin = TableQuery(world.slug, Actor.system_job())
    assert secret in {c.name for c in admin.columns}


def test_link_labels_of_records_out_of_reach_are_not_disclosed(app_ctx, world) -> None:  # noqa: ANN001
    link = world.names["partner"]
    for who in ("own", "all"):
        rows = [r for r in TableQuery(world.slug, world.actor(who)).stream() if r[link] is not None]
        assert rows
        for row in rows:
            label = row["_labels"][link]
            if world.partners[row[link]] == world.users[who]:
                assert label is not None and label.startswith("P")
            else:
                assert label is None, (who, row)
            as_json = TableQuery(world.slug, world.actor(who)).to_json(row)
            assert as_json[link] == {"id": row[link], "label": label}


def test_link_labels_follow_the_recycle_bin_and_the_target_display_field(app_ctx, world) -> None:  # noqa: ANN001
    link = world.names["partner"]
    admin = Actor.system_job()
    partner = current().classes[world.partner_slug].__table__
    pid = next(iter(world.partners))
    query = TableQuery(world.slug, admin).where({"field": link, "op": "eq", "value": pid})
    assert {r["_labels"][link] for r in query.stream()} == {"P0"}
    db.session.execute(update(partner).where(partner.c.id == pid).values(deleted_at=dt.datetime.now(dt.UTC)))
    db.session.commit()
    try:
        assert {r["_labels"][link] for r in query.stream()} == {None}
    finally:
        db.session.execute(update(partner).where(partner.c.id == pid).values(deleted_at=None))
        db.session.commit()
    # The display field hidden from a role: the reader sees ids only.
    shown = current().entity(world.partner_slug).display_field
    save_rules(world.roles["all"], fields={shown.id: "hidden"})
    refresh()
    try:
        rows = [r for r in TableQuery(world.slug, world.actor("all")).stream() if r[link] is not None]
        assert rows and all(r["_labels"][link] is None for r in rows)
    finally:
        save_rules(world.roles["all"], fields={shown.id: None})
        refresh()


def test_user_fields_come_with_the_users_full_name(app_ctx, world) -> None:  # noqa: ANN001
    responsible = world.names["responsible"]
    rows = [r for r in TableQuery(world.slug, Actor.system_job()).stream() if r[responsible] is not None]
    assert rows
    for row in rows:
        assert row["_labels"][responsible] == user_label(row[responsible])
        if row["owner_id"] is not None:
            assert row["_labels"]["owner_id"] == user_label(row["owner_id"])


# --- cursors --------------------------------------------------------------------------------------------


def test_edited_or_foreign_cursors_are_refused(app_ctx, world) -> None:  # noqa: ANN001
    n = world.names
    query = TableQuery(world.slug, world.actor("all")).order_by(n["amount"])
    cursor = query.page(3).next_cursor
    assert cursor
    body, signature = cursor.split(".")
    flipped = ("A" if body[0] != "A" else "B") + body[1:]
    for bad in (
        f"{flipped}.{signature}",
        f"{body}.{signature[:-2]}",
        cursor + "x",
        "",
        "....",
        "not a cursor",
        "é.é",
        "a" * 50_000,
    ):
        if bad:
            with pytest.raises(QueryError, match="cursor"):
                query.page(3, after=bad)
    # The same cursor on another sort, filter, search, table or reader.
    others = [
        TableQuery(world.slug, world.actor("all")).order_by("-" + n["amount"]),
        query.where({"field": n["flag"], "op": "eq", "value": True}),
        query.search("a"),
        TableQuery(world.slug, world.actor("own")).order_by(n["amount"]),
        TableQuery(world.partner_slug, world.actor("all")),
    ]
    for other in others:
        with pytest.raises(QueryError, match="cursor"):
            other.page(3, after=cursor)
    # The same query takes it (a new builder with the same parts).
    again = TableQuery(world.slug, world.actor("all")).order_by(n["amount"]).page(3, after=cursor)
    assert again.rows


# --- counts, streams, single rows, the write path's statements --------------------------------------------


def test_counts_are_exact_up_to_the_limit_and_estimated_above(app_ctx, world) -> None:  # noqa: ANN001
    table = service.create_entity(f"Много {uuid.uuid4().hex[:6]}", "")
    refresh()
    model = current().classes[table.slug]
    name = current().by_id[table.id].display_field.name
    db.session.execute(insert(model.__table__), [{name: f"r{i}"} for i in range(COUNT_LIMIT + 50)])
    db.session.commit()
    # Within a row scope (the estimate is asked with the scope's parameters, e.g. an IN list).
    save_rules(world.roles["own"], tables={table.id: {"read": True, "read_scope": "own"}})
    refresh()
    owned = model.__table__
    db.session.execute(update(owned).values(owner_id=world.users["own"]))
    db.session.commit()
    mine = TableQuery(table.slug, world.actor("own")).count()
    assert not mine.exact and mine.value >= COUNT_LIMIT
    query = TableQuery(table.slug, Actor.system_job())
    counted = query.count()
    assert not counted.exact
    if db.engine.dialect.name == "postgresql":
        assert counted.value > COUNT_LIMIT
    else:
        assert counted.value == COUNT_LIMIT
    assert query.where({"field": name, "op": "sw", "value": "r99"}).count() == Count(111, True)
    streamed = [r["id"] for r in query.stream(3000)]
    assert len(streamed) == len(set(streamed)) == COUNT_LIMIT + 50
    assert streamed == sorted(streamed)
    batches = list(query.order_by("-" + name).batches(4000))
    assert [len(b) for b in batches] == [4000, 4000, 2050]


def test_get_exists_readable_ids_and_the_write_paths_statements(app_ctx, world) -> None:  # noqa: ANN001
    rows = stored_rows(world)
    mine = [r["id"] for r in rows if in_scope(world, r, "own")]
    theirs = [r["id"] for r in rows if not in_scope(world, r, "own")]
    query = TableQuery(world.slug, world.actor("own"))
    assert mine and theirs
    assert query.get(mine[0])["id"] == mine[0]
    assert world.names["secret"] not in query.get(mine[0])
    assert query.get(theirs[0]) is None
    assert query.exists(mine[0]) and not query.exists(theirs[0])
    assert query.readable_ids([*mine, *theirs, 10**6]) == set(mine)
    # Edit reaches the rows the actor owns (the role's edit scope is own; a responsible user also owns).
    edit = TableQuery(world.slug, world.actor("all"), "edit")
    reachable = {
        r["id"]
        for r in rows
        if r["deleted_at"] is None and world.users["all"] in (r["owner_id"], r[world.names["responsible"]])
    }
    locked = db.session.execute(edit.rows_statement([r["id"] for r in rows])).mappings().all()
    assert {r["id"] for r in locked} == reachable
    assert world.names["secret"] in locked[0] if locked else True
    assert set(db.session.scalars(edit.ids_statement())) == reachable
    with pytest.raises(QueryDenied):
        TableQuery(world.slug, world.actor("all"), "delete")
    with pytest.raises(TableNotFound):
        TableQuery("no_such_table", world.actor("all"))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"field": "id", "op": "ct", "value": "1"}, "not a filter operator"),
        ({"field": "id", "op": "gt", "value": "many"}, "whole number"),
        ({"field": "id", "op": "gt", "value": [1]}, "single value"),
        ({"field": "id", "op": "gt", "value": {"a": 1}}, "single value"),
        ({"field": "id"}, "field, op and value"),
        ({"field": "id", "op": "eq", "value": 1, "x": 2}, "field, op and value"),
        ({"and": {"field": "id"}}, "group"),
        ({"and": [], "or": []}, "group"),
        ("text", "field, op and value"),
        (5, "field, op and value"),
        ({"and": [{"and": [{"and": [{"and": [{"field": "id", "op": "empty"}]}]}]}]}, "nest"),
        ([{"field": "id", "op": "empty"}] * 51, "at most 50"),
        ({"field": "id", "op": "eq", "value": "1\x00"}, "single value"),
        ({"field": "id", "op": "eq", "value": "\ud800"}, "single value"),
        ({"field": ["id"], "op": "eq", "value": 1}, "Unknown field"),
        ({"field": "id", "op": None, "value": 1}, "not a filter operator"),
        ({"field": "id", "op": "gt", "value": 2**40}, "too large"),
        ({"field": "id", "op": "lt", "value": "-3000000000"}, "too large"),
    ],
)
def test_malformed_filters_are_refused_with_a_message(app_ctx, world, spec, message) -> None:  # noqa: ANN001
    with pytest.raises(QueryError, match=message):
        TableQuery(world.slug, world.actor("all")).where(spec)


def test_unsortable_fields_and_page_sizes_are_refused(app_ctx, world) -> None:  # noqa: ANN001
    query = TableQuery(world.slug, world.actor("all"))
    for name in (world.names["tags"], world.names["notes"]):
        with pytest.raises(QueryError, match="cannot be sorted"):
            query.order_by(name)
    for size in (0, 501, -1, True, "5"):
        with pytest.raises(QueryError, match="page"):
            query.page(size)  # type: ignore[arg-type]


def test_the_readme_example_runs_on_a_core_table(app_ctx) -> None:  # noqa: ANN001
    from flask_appbuilder.security.sqla.models import User

    staff = db.session.scalar(select(User.id).where(User.username == "staff1"))
    actor = Actor.for_user_id(staff, "ui")
    query = (
        TableQuery("deals", actor)
        .where(
            {
                "and": [
                    {"field": "amount", "op": "ge", "value": "1000"},
                    {
                        "or": [
                            {"field": "title", "op": "ct", "value": "о"},
                            {"field": "owner_id", "op": "empty"},
                        ]
                    },
                ]
            }
        )
        .order_by("-amount", "title")
    )
    rows = list(query.stream(7))
    assert rows
    assert all(r["owner_id"] == staff for r in rows)  # Staff read their own deals
    assert all(r["amount"] >= 1000 for r in rows)
    assert [r["id"] for r in rows] == [r["id"] for r in page_through(query, 5)]
    assert query.count() == Count(len(rows), True)
    stage = query.columns[[c.name for c in query.columns].index("stage_id")]
    assert stage.reference == "record"
    assert all(r["_labels"]["stage_id"] for r in rows)  # everyone reads the stages
