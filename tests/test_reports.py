"""The report engine (``exports.reports``): for random row and column groups (dates by month too), measures
and every row scope, each cell and every total equals a naive Python computation over the rows the user may
read, and each cell's click-through filter finds exactly the records it counts — on SQLite and PostgreSQL.
Hidden fields cannot be grouped or measured; labels of records out of reach are not disclosed."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custom_fields import buckets
from custom_fields.query import QueryError, TableQuery
from exports import reports
from exports.reports import Measure, ReportError, ReportSpec
from tests.test_query import World, build_world, in_scope, stored_rows

WHO = ("own", "team", "all", "mate", "other")
GROUPS = ("stage", "flag", "day:month", "day:quarter", "partner", "responsible")
MEASURES = (
    ("count", None),
    ("sum", "amount"),
    ("avg", "price"),
    ("min", "day"),
    ("max", "amount"),
    ("count_distinct", "stage"),
)


@pytest.fixture(scope="module")
def world(app) -> Iterator[World]:  # noqa: ANN001
    with app.app_context():
        built = build_world(app)
    yield built


def field_of(world: World, entry: str) -> str:
    name, sep, unit = entry.partition(":")
    return world.names[name] + sep + unit


def key_of(world: World, row: dict[str, Any], entry: str) -> Any:
    name, _sep, unit = entry.partition(":")
    value = row[world.names[name]]
    if unit and value is not None:
        return buckets.start(value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)), unit)
    return value


def naive(values: list[Any], function: str) -> Any:
    present = [v for v in values if v is not None]
    if function == "count":
        return len(values)
    if function == "count_distinct":
        return len(set(present))
    if not present:
        return None
    if function == "sum":
        return sum(present)
    if function == "avg":
        return sum(Decimal(str(v)) for v in present) / len(present)
    return min(present) if function == "min" else max(present)


def same(got: Any, want: Any) -> bool:
    if got is None or want is None:
        return got == want or (got in (0, None) and want in (0, None))
    if isinstance(want, dt.date):
        return str(got)[:10] == str(want)[:10]
    return abs(Decimal(str(got)) - Decimal(str(want))) < Decimal("0.0001")


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    who=st.sampled_from(WHO),
    rows=st.lists(st.sampled_from(GROUPS), unique=True, max_size=2),
    column=st.one_of(st.none(), st.sampled_from(GROUPS)),
    measures=st.lists(st.sampled_from(MEASURES), unique=True, min_size=1, max_size=3),
)
def test_cells_and_totals_equal_a_naive_pivot_of_the_readable_rows(
    app_ctx, world, who, rows, column, measures
) -> None:  # noqa: ANN001
    if column in rows:
        column = None
    actor = world.actor(who)
    spec = ReportSpec(
        table=world.slug,
        rows=tuple(field_of(world, r) for r in rows),
        column=field_of(world, column) if column else None,
        measures=tuple(Measure(f, world.names[n] if n else None) for f, n in measures),
    )
    pivot = reports.run(spec, actor)
    readable = [r for r in stored_rows(world) if in_scope(world, r, who)]
    cells: dict[tuple, list] = defaultdict(list)
    by_row: dict[tuple, list] = defaultdict(list)
    by_column: dict[Any, list] = defaultdict(list)
    for row in readable:
        row_key = tuple(key_of(world, row, r) for r in rows)
        column_key = key_of(world, row, column) if column else None
        cells[(row_key, column_key)].append(row)
        by_row[row_key].append(row)
        by_column[column_key].append(row)
    row_keys = [tuple(h.key for h in headers) for headers in pivot.row_headers]
    column_keys = [h.key for h in pivot.column_headers] or [None]
    if rows:
        assert {tuple(str(k) for k in key) for key in row_keys} == {
            tuple(str(k) for k in k2) for k2 in by_row
        }
    for function, name in measures:
        alias = Measure(function, world.names[name] if name else None).alias

        def measure(group: list[dict], function: str = function, name: str | None = name) -> Any:
            return naive([r[world.names[name]] if name else 1 for r in group], function)

        for i, row_key in enumerate(row_keys):
            for j, column_key in enumerate(column_keys):
                group = cells.get((row_key, column_key), [])
                assert same(pivot.cells[alias][i][j], measure(group) if group else None), (alias, row_key)
            assert same(pivot.row_totals[alias][i], measure(by_row[row_key]))
        for j, column_key in enumerate(column_keys):
            assert same(pivot.column_totals[alias][j], measure(by_column[column_key] if column else readable))
        assert same(pivot.grand_totals[alias], measure(readable) if readable else None)
    # Every cell clicks through to exactly the records it counts.
    count = Measure("count").alias
    if count in pivot.cells:
        for i, row_key in enumerate(row_keys[:4]):
            for j, column_key in enumerate(column_keys[:3]):
                drill = reports.drill_filter(spec, row_key, column_key, with_column=True)
                found = TableQuery(world.slug, actor).where(drill).count().value
                assert found == (pivot.cells[count][i][j] or 0), (row_key, column_key, drill)


def test_hidden_fields_and_wrong_reports_are_refused(app_ctx, world) -> None:  # noqa: ANN001
    n = world.names
    actor = world.actor("own")
    for spec in (
        ReportSpec(world.slug, rows=(n["secret"],)),  # hidden from this role
        ReportSpec(world.slug, column=n["secret"]),
        ReportSpec(world.slug, measures=(Measure("count_distinct", n["secret"]),)),
        ReportSpec(world.slug, measures=(Measure("sum", n["name"]),)),  # text does not add up
        ReportSpec(world.slug, rows=(n["stage"] + ":month",)),  # a select has no calendar
        ReportSpec(world.slug, rows=(n["day"] + ":decade",)),
    ):
        with pytest.raises(QueryError):
            reports.run(spec, actor)
    for raw in (
        None,
        {},
        {"table": world.slug, "rows": "stage"},
        {"table": world.slug, "rows": [1]},
        {"table": world.slug, "rows": ["a", "b", "c", "d"]},
        {"table": world.slug, "measures": [{"function": "median", "field": n["amount"]}]},
        {"table": world.slug, "measures": [{"function": "sum"}]},
        {"table": world.slug, "measures": [{"function": "count", "field": n["amount"]}]},
        {"table": world.slug, "top": 0},
        {"table": world.slug, "top": True},
        {"table": world.slug, "column": ["x"]},
    ):
        with pytest.raises(ReportError):
            ReportSpec.from_json(raw)
    parsed = ReportSpec.from_json(
        {"table": world.slug, "rows": [n["stage"]], "measures": [{"function": "sum", "field": n["amount"]}]}
    )
    assert parsed.measures == (Measure("sum", n["amount"]),) and parsed.rows == (n["stage"],)


def test_labels_read_as_the_user_may_see_them(app_ctx, world) -> None:  # noqa: ANN001
    n = world.names
    for who in ("own", "all"):
        actor = world.actor(who)
        pivot = reports.run(ReportSpec(world.slug, rows=(n["partner"],)), actor)
        readable_partners = TableQuery(world.partner_slug, actor).labels_of(world.partners)
        for [header] in pivot.row_headers:
            if header.key is None:
                assert header.label == "(empty)"
            elif header.key in readable_partners:
                assert header.label == readable_partners[header.key]
            else:
                assert header.label == f"#{header.key}"  # a partner out of reach is not named
    pivot = reports.run(ReportSpec(world.slug, rows=(n["day"] + ":month",)), world.actor("all"))
    labels = [h.label for [h] in pivot.row_headers if h.key is not None]
    assert labels and all(label.split()[-1].isdecimal() for label in labels)  # "December 2026"


def test_top_keeps_the_largest_row_groups_and_totals_count_everything(app_ctx, world) -> None:  # noqa: ANN001
    n = world.names
    actor = world.actor("all")
    full = reports.run(ReportSpec(world.slug, rows=(n["partner"],)), actor)
    top = reports.run(ReportSpec(world.slug, rows=(n["partner"],), top=2), actor)
    count = Measure("count").alias
    assert len(top.row_headers) == min(2, len(full.row_headers))
    assert top.rows_left_out == len(full.row_headers) - len(top.row_headers)
    assert top.grand_totals == full.grand_totals
    largest = sorted((t or 0 for t in full.row_totals[count]), reverse=True)[:2]
    assert sorted((t or 0 for t in top.row_totals[count]), reverse=True) == largest


def test_date_times_group_by_the_local_calendar(app_ctx) -> None:  # noqa: ANN001
    import uuid

    from flask_appbuilder.security.sqla.models import User
    from sqlalchemy import select

    from app.extensions import db
    from custom_fields import records
    from custom_fields.access import Actor
    from custom_fields.runtime import refresh
    from tests.tables_helpers import new_field, new_table

    entity = new_table(f"Звонки {uuid.uuid4().hex[:6]}")
    when = new_field(entity, "Когда", "datetime").name
    name = refresh().entity(entity.slug).display_field.name
    admin = Actor.of_user(db.session.scalar(select(User).where(User.username == "admin")))
    # 22:30 UTC on 30 November is 01:30 on 1 December in Moscow (UTC+3); 20:00 UTC is still November.
    for moment in ("2026-11-30T22:30:00+00:00", "2026-11-30T20:00:00+00:00", "2026-12-31T21:30:00+00:00"):
        records.create(entity.slug, {name: "Звонок", when: moment}, admin)
    spec = ReportSpec(entity.slug, rows=(f"{when}:month",))
    pivot = reports.run(spec, admin)
    count = Measure("count").alias
    got = {h.key: pivot.cells[count][i][0] for i, [h] in enumerate(pivot.row_headers)}
    assert got == {dt.date(2026, 11, 1): 1, dt.date(2026, 12, 1): 1, dt.date(2027, 1, 1): 1}
    for i, [header] in enumerate(pivot.row_headers):
        drill = reports.drill_filter(spec, [header.key])
        assert TableQuery(entity.slug, admin).where(drill).count().value == pivot.cells[count][i][0]
    years = reports.run(ReportSpec(entity.slug, rows=(f"{when}:year",)), admin)
    assert [h.label for [h] in years.row_headers] == ["2026", "2027"]


def test_workbook_formats_each_measure_as_its_figures_need(app_ctx, world) -> None:  # noqa: ANN001
    """Counts are whole, an average of whole numbers keeps two places, other measures are formatted as
    their field's column (a sum of integers stays whole, an average of decimals keeps the field's scale)."""
    from exports.report_workbook import COUNT_FORMAT, measure_format

    amount, price = world.names["amount"], world.names["price"]
    assert measure_format(world.slug, Measure("count", None)) == COUNT_FORMAT
    assert measure_format(world.slug, Measure("count_distinct", amount)) == COUNT_FORMAT
    assert measure_format(world.slug, Measure("sum", amount)) == {"num_format": "0"}
    assert measure_format(world.slug, Measure("max", amount)) == {"num_format": "0"}
    assert measure_format(world.slug, Measure("avg", amount)) == {"num_format": "#,##0.00"}
    assert measure_format(world.slug, Measure("avg", price)) == {"num_format": "#,##0.00"}
    assert measure_format(world.slug, Measure("sum", price)) == {"num_format": "#,##0.00"}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["rub", "usd", None]),
            st.one_of(st.none(), st.decimals(-1000, 100000, places=2, allow_nan=False, allow_infinity=False)),
        ),
        max_size=40,
    )
)
def test_abc_classes_rank_each_currency_apart_by_its_share(rows: list[tuple[Any, Any]]) -> None:
    """Within each value of the later row groups, biggest first; A while the rows before hold less than
    80 % of the positive total, B below 95 %, C after; nothing or less is C."""
    keys = [(i, currency) for i, (currency, _value) in enumerate(rows)]
    values = [value for _currency, value in rows]
    order, classes = reports.abc_classes(keys, values)
    assert sorted(order) == list(range(len(rows)))
    by_currency: dict[Any, list[tuple[Decimal, str]]] = defaultdict(list)
    for i, found in zip(order, classes, strict=True):
        by_currency[keys[i][1]].append((Decimal(values[i] or 0), found))
    for ranked in by_currency.values():
        amounts = [a for a, _c in ranked]
        assert amounts == sorted(amounts, reverse=True)
        total = sum((a for a in amounts if a > 0), Decimal(0))
        before = Decimal(0)
        for amount, found in ranked:
            if amount <= 0:
                want = "C"
            else:
                share = before * 100 / total
                want = "A" if share < 80 else "B" if share < 95 else "C"
            assert found == want, (ranked, amount)
            before += max(amount, Decimal(0))
        positive = [c for a, c in ranked if a > 0]
        assert not positive or positive[0] == "A"  # the biggest customer is always A
        assert positive == sorted(positive)  # A, then B, then C


def test_abc_needs_a_row_group_and_a_count_or_sum() -> None:
    for bad in (
        {"table": "t", "abc": True},
        {"table": "t", "rows": ["a"], "measures": [{"function": "avg", "field": "x"}], "abc": True},
    ):
        with pytest.raises(ReportError):
            ReportSpec.from_json(bad)
    assert ReportSpec.from_json({"table": "t", "rows": ["a"], "abc": True}).abc
    assert not ReportSpec.from_json({"table": "t", "rows": ["a"], "abc": "yes"}).abc


def test_an_abc_report_ranks_its_rows_and_writes_their_classes_in_the_workbook(
    app_ctx, world, tmp_path
) -> None:  # noqa: ANN001, E501
    import openpyxl
    import xlsxwriter

    from exports.report_workbook import summary_sheet

    actor = world.actor("all")
    count = Measure("count").alias
    pivot = reports.run(ReportSpec(world.slug, rows=(world.names["partner"],), abc=True), actor)
    totals = [t or 0 for t in pivot.row_totals[count]]
    assert totals == sorted(totals, reverse=True) and pivot.row_classes and pivot.row_classes[0] == "A"
    assert pivot.as_json()["classes"] == pivot.row_classes
    path = tmp_path / "abc.xlsx"
    book = xlsxwriter.Workbook(str(path))
    summary_sheet(pivot, "ABC", reports.labels_of(pivot.spec, actor), "bar")(book)
    book.close()
    sheet = openpyxl.load_workbook(path).worksheets[0]
    header = [c.value for c in sheet[3] if c.value is not None]
    assert header[-1] in ("ABC class", "ABC-класс")
    shown = [sheet.cell(row=4 + i, column=len(header)).value for i in range(len(pivot.row_headers))]
    assert shown == pivot.row_classes
