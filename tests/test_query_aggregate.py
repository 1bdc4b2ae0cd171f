"""``TableQuery.aggregate`` (GROUP BY in the database through the read door), ``labels_of`` and ``reach``:
for random groupings, filters and every row scope, the groups equal a naive Python grouping over the rows
the actor may read (the recycle bin left out) — on SQLite and PostgreSQL. Hidden fields cannot be grouped
or measured; labels of records out of reach are not disclosed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.extensions import db
from custom_fields.access import Actor
from custom_fields.query import QueryError, TableQuery
from tests.test_query import World, build_world, in_scope, stored_rows

WHO = ("own", "team", "all", "mate", "other")
GROUPS = ("stage", "flag", "day", "partner")


@pytest.fixture(scope="module")
def world(app) -> Iterator[World]:  # noqa: ANN001
    with app.app_context():
        built = build_world(app)
    yield built


def naive_groups(world: World, who: str, group_by: list[str], amount_min: int | None) -> dict[tuple, dict]:
    n = world.names
    found: dict[tuple, dict[str, Any]] = defaultdict(
        lambda: {"n": 0, "amounts": [], "prices": [], "days": []}
    )
    for row in stored_rows(world):
        if not in_scope(world, row, who):
            continue
        if amount_min is not None and (row[n["amount"]] is None or row[n["amount"]] < amount_min):
            continue
        group = found[tuple(row[n[g]] for g in group_by)]
        group["n"] += 1
        for key, name in (("amounts", "amount"), ("prices", "price"), ("days", "day")):
            if row[n[name]] is not None:
                group[key].append(row[n[name]])
    return found


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    who=st.sampled_from(WHO),
    group_by=st.lists(st.sampled_from(GROUPS), unique=True, max_size=2),
    amount_min=st.one_of(st.none(), st.integers(-3, 3)),
)
def test_groups_equal_a_naive_grouping_of_the_readable_rows(
    app_ctx, world, who, group_by, amount_min
) -> None:  # noqa: ANN001
    n = world.names
    query = TableQuery(world.slug, world.actor(who))
    if amount_min is not None:
        query = query.where({"field": n["amount"], "op": "ge", "value": str(amount_min)})
    measures = {
        "n": ("count", None),
        "total": ("sum", n["amount"]),
        "priced": ("count", n["price"]),
        "price": ("sum", n["price"]),
        "mean": ("avg", n["amount"]),
        "first": ("min", n["day"]),
        "last": ("max", n["day"]),
    }
    got = query.aggregate([n[g] for g in group_by], measures)
    expected = naive_groups(world, who, group_by, amount_min)
    assert len(got) == len(expected)
    if not group_by:
        assert got[0]["n"] == sum(g["n"] for g in expected.values())
    for item in got:
        key = tuple(item[n[g]] for g in group_by)
        want = expected[key]
        assert item["n"] == want["n"], (who, group_by, key)
        assert item["total"] == (sum(want["amounts"]) if want["amounts"] else None)
        assert item["priced"] == len(want["prices"])
        assert (Decimal(item["price"]) if item["price"] is not None else None) == (
            sum(want["prices"]) if want["prices"] else None
        )
        if want["amounts"]:
            assert abs(
                Decimal(str(item["mean"])) - Decimal(sum(want["amounts"])) / len(want["amounts"])
            ) < Decimal("0.0001")
        else:
            assert item["mean"] is None
        assert str(item["first"])[:10] == (str(min(want["days"])) if want["days"] else "None")[:10]
        assert str(item["last"])[:10] == (str(max(want["days"])) if want["days"] else "None")[:10]
    # Groups come ordered by their values, empty values last.
    if group_by:
        firsts = [item[n[group_by[0]]] for item in got]
        present = [v for v in firsts if v is not None]
        assert firsts == present + [None] * (len(firsts) - len(present))
        assert present == sorted(present)


def test_hidden_fields_and_wrong_measures_are_refused(app_ctx, world) -> None:  # noqa: ANN001
    n = world.names
    query = TableQuery(world.slug, world.actor("own"))
    refused = [
        ([n["secret"]], {"n": ("count", None)}),  # a hidden field is unknown
        ([], {"x": ("count", n["secret"])}),
        ([], {"x": ("max", n["secret"])}),
        (["nope"], {"n": ("count", None)}),
        ([], {"x": ("sum", n["name"])}),  # text does not add up
        ([], {"x": ("avg", n["stage"])}),
        ([], {"x": ("median", n["amount"])}),
        ([], {"x": ("sum", None)}),
        ([], {"x": "count"}),
        ([], {}),
        ([n["stage"]], {n["stage"]: ("count", None)}),  # a measure may not shadow a group
    ]
    for group_by, measures in refused:
        with pytest.raises(QueryError):
            query.aggregate(group_by, measures)
    # The admin sees the hidden field and may group by it.
    admin = Actor.of_user(app_ctx.appbuilder.sm.find_user("admin"))
    rows = TableQuery(world.slug, admin).aggregate([n["secret"]], {"n": ("count", None)})
    assert sum(r["n"] for r in rows) == sum(1 for r in stored_rows(world) if r["deleted_at"] is None)


def test_labels_of_leave_out_records_out_of_reach(app_ctx, world) -> None:  # noqa: ANN001
    for who in WHO:
        labels = TableQuery(world.partner_slug, world.actor(who)).labels_of([*world.partners, 10**6, None])
        mine = {pid for pid, owner in world.partners.items() if owner == world.users[who]}
        assert set(labels) == mine, who
        assert all(label.startswith("P") for label in labels.values())


def test_reach_is_the_queries_condition_or_nothing(app_ctx, world) -> None:  # noqa: ANN001
    from sqlalchemy import select

    table = world.model().__table__
    for who in WHO:
        reached = set(
            db.session.scalars(select(table.c.id).where(TableQuery.reach(world.slug, world.actor(who))))
        )
        assert reached == {r["id"] for r in stored_rows(world) if in_scope(world, r, who)}
    nobody = Actor(None, frozenset(), "ui")
    assert not set(db.session.scalars(select(table.c.id).where(TableQuery.reach(world.slug, nobody))))
    assert not set(db.session.scalars(select(table.c.id).where(TableQuery.reach("no-such-table", nobody))))
