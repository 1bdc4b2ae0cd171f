"""The standard reports (``exports.standard_reports``): each one's figures equal an independent computation
over the core tables' rows (read here with plain SQL, the row scope worked out by hand from the teams), for
a manager (their team's records) and for a staff user (their own), on SQLite and PostgreSQL; receivables
aging puts invoices due on each bucket's edges in the right bucket, and every aging cell clicks through to
exactly its invoices (a plain date range)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from sqlalchemy import select, update

from app.crm.convert import default_stage_id
from app.extensions import db
from custom_fields import buckets, records
from custom_fields.access import Actor
from custom_fields.query import TableQuery
from custom_fields.types import local_timezone
from exports import reports, standard_reports
from exports.reports import Definition
from models import Activity, Company, Deal, Invoice, Lead, Task, team_member
from tests.conftest import csrf_token
from tests.test_exports import user_id

MODELS = {
    "deals": Deal, "invoices": Invoice, "activities": Activity, "companies": Company, "tasks": Task,
    "leads": Lead,
}  # fmt: skip
WHO = ("manager", "staff1")


def readable_owners(who: str) -> set[int]:
    """Staff read their own records; a manager their team's (everyone sharing a team with them)."""
    me = user_id(who)
    if who.startswith("staff"):
        return {me}
    teams = set(db.session.scalars(select(team_member.c.team_id).where(team_member.c.user_id == me)))
    mates = set(db.session.scalars(select(team_member.c.user_id).where(team_member.c.team_id.in_(teams))))
    return mates | {me}


def holds(row: Any, node: Any) -> bool:
    """The standard reports' filters, evaluated in Python."""
    if node is None:
        return True
    if "and" in node:
        return all(holds(row, part) for part in node["and"])
    value, op, wanted = getattr(row, node["field"]), node["op"], node.get("value")
    if wanted in ("true", "false"):  # a yes/no field
        wanted = wanted == "true"
    if op == "eq":
        return value == wanted
    if op == "neq":
        return value is None or value != wanted
    if op == "gt":
        return value is not None and value > Decimal(wanted)
    if op == "nempty":
        return value is not None
    if op == "empty":
        return value is None
    raise AssertionError(op)


def local_day(moment: dt.datetime) -> dt.date:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return aware.astimezone(local_timezone()).date()


def key_of(row: Any, entry: str, today: dt.date) -> Any:
    name, _sep, unit = entry.partition(":")
    value = getattr(row, name)
    if value is None or not unit:
        return value
    if unit == "overdue":
        late = (today - value).days
        return 0 if late <= 0 else 1 if late <= 30 else 31 if late <= 60 else 61 if late <= 90 else 91
    day = local_day(value) if isinstance(value, dt.datetime) else value
    return buckets.start(day, unit)


def in_period(row: Any, period: dict[str, Any] | None, today: dt.date) -> bool:
    if not period:
        return True
    value = getattr(row, period["field"])
    if value is None:
        return period["kind"] == "not_last_days"  # never is not in the last N days either
    day = local_day(value) if isinstance(value, dt.datetime) else value
    first = today - dt.timedelta(days=period["days"] - 1)
    if period["kind"] in ("before_days", "not_last_days"):
        return day < first
    assert period["kind"] == "last_days"
    return first <= day <= today


def independent(definition: dict[str, Any], who: str, today: dt.date) -> dict[tuple, dict[str, Any]]:
    """{(row keys..., column key): {measure alias: figure}} from the table's rows, read with plain SQL."""
    model = MODELS[definition["table"]]
    owners = readable_owners(who)
    rows = db.session.scalars(select(model).where(model.deleted_at.is_(None))).all()
    column = definition.get("column")
    found: dict[tuple, dict[str, Any]] = defaultdict(lambda: defaultdict(lambda: None))
    for row in rows:
        holders = {row.owner_id, getattr(row, "assignee_id", None)}  # a task is its assignee's too
        if not holders & owners or not holds(row, definition.get("filter")):
            continue
        if not in_period(row, definition.get("period"), today):
            continue
        key = tuple(key_of(row, g, today) for g in definition["rows"])
        key += (key_of(row, column, today),) if column else (None,)
        cell = found[key]
        for measure in definition["measures"]:
            alias = reports.Measure(measure["function"], measure.get("field")).alias
            if measure["function"] == "count":
                cell[alias] = (cell[alias] or 0) + 1
            elif measure["function"] in ("avg", "max"):  # every value kept, reduced below
                value = getattr(row, measure["field"])
                if value is not None:
                    cell[alias] = [*(cell[alias] or []), value]
            elif measure["field"] == "weighted_amount":  # worked out here, not read back from the write path
                if row.amount is not None and row.probability is not None:
                    value = (row.amount * row.probability / 100).quantize(Decimal("0.01"), ROUND_HALF_UP)
                    cell[alias] = (cell[alias] or 0) + value
            else:
                value = getattr(row, measure["field"])
                if value is not None:
                    cell[alias] = (cell[alias] or 0) + value
    for cell in found.values():
        for alias, value in cell.items():
            if isinstance(value, list):
                cell[alias] = max(value) if alias.startswith("max") else sum(value) / len(value)
    return found


def engine_cells(pivot: reports.Pivot) -> dict[tuple, dict[str, Any]]:
    found: dict[tuple, dict[str, Any]] = {}
    columns = [h.key for h in pivot.column_headers] or [None]
    for i, headers in enumerate(pivot.row_headers):
        for j, column in enumerate(columns):
            cell = {alias: grid[i][j] for alias, grid in pivot.cells.items()}
            if any(v is not None for v in cell.values()):
                found[(*(h.key for h in headers), column)] = cell
    return found


def same(got: Any, want: Any) -> bool:
    if got is None or want is None:
        return got in (None, 0) and want in (None, 0)
    return abs(Decimal(str(got)) - Decimal(str(want))) < Decimal("0.005")


@pytest.fixture
def aging_invoices(app_ctx) -> str:  # noqa: ANN001
    """staff1's and staff2's invoices due on each aging bucket's edges (and one paid, one cancelled), their
    numbers starting with the tag returned."""
    today = buckets.today()
    tag = f"AG{uuid.uuid4().hex[:8]}"

    def due(late: int) -> str:
        return (today - dt.timedelta(days=late)).isoformat()

    for who in ("staff1", "staff2"):
        actor = Actor.for_user_id(user_id(who))
        for late in (-5, 0, 1, 30, 31, 60, 61, 90, 91, 400):
            values = {"number": f"{tag}-{who}-{late}", "amount": "100.50", "due_on": due(late)}
            records.create("invoices", values, actor)
        paid = {"number": f"{tag}-{who}-paid", "amount": "10", "paid_amount": "10", "due_on": due(100)}
        records.create("invoices", paid, actor)
        cancelled = {"number": f"{tag}-{who}-x", "amount": "10", "status": "cancelled", "due_on": due(100)}
        records.create("invoices", cancelled, actor)
    return tag


@pytest.fixture
def stale_records(app_ctx) -> None:  # noqa: ANN001
    """staff1's and staff2's deals and companies last changed 29, 30, 31 and 400 days ago (the edges of "not
    changed in the last 30 days"), aged in SQL as time would have."""
    staff = {who: Actor.for_user_id(user_id(who)) for who in ("staff1", "staff2")}
    aged: dict[Any, list[tuple[int, int]]] = {Deal: [], Company: []}
    for who, actor in staff.items():
        for days in (29, 30, 31, 89, 90, 400):
            deal = records.create(
                "deals", {"title": f"Залежалась {who} {days}", "stage_id": default_stage_id()}, actor
            ).id
            company = records.create(
                "companies", {"name": f"Забытая {who} {days} {uuid.uuid4().hex[:6]}"}, actor
            ).id
            aged[Deal].append((deal, days))
            aged[Company].append((company, days))
    now = dt.datetime.now(dt.UTC)
    for model, rows in aged.items():
        for pk, days in rows:
            db.session.execute(
                update(model).where(model.id == pk).values(updated_at=now - dt.timedelta(days=days))
            )
    db.session.commit()


@pytest.fixture
def task_book(app_ctx) -> None:  # noqa: ANN001
    """staff1's and staff2's tasks due on each side of today (open, done and cancelled ones), some assigned to
    the other: an overdue task is one whose due day has passed."""
    staff = {who: Actor.for_user_id(user_id(who)) for who in ("staff1", "staff2")}
    zone = local_timezone()
    today = buckets.today()
    for who, actor in staff.items():
        other = user_id("staff2" if who == "staff1" else "staff1")
        for days in (-2, -1, 0, 1, 30):
            due = dt.datetime.combine(today - dt.timedelta(days=days), dt.time(9, 30), zone).isoformat()
            for status in ("open", "in_progress", "done", "cancelled"):
                values = {"title": f"Задача {who} {days} {status}", "due_at": due, "status": status}
                records.create("tasks", values, actor)
            records.create(
                "tasks", {"title": f"Поручена {who} {days}", "due_at": due, "assignee_id": other}, actor
            )
        records.create("tasks", {"title": f"Без срока {who}"}, actor)


@pytest.mark.parametrize("key", [s.key for s in standard_reports.STANDARD])
@pytest.mark.parametrize("who", WHO)
def test_each_standard_report_equals_an_independent_computation(
    app_ctx, aging_invoices, stale_records, task_book, key, who
) -> None:  # noqa: ANN001, E501
    standard = standard_reports.BY_KEY[key]
    actor = Actor.for_user_id(user_id(who))
    today = buckets.today()
    spec = Definition.from_json(standard.definition).resolved(actor, today)
    pivot = reports.run(spec, actor)
    got = engine_cells(pivot)
    # A group whose records have none of the figures (deals without an amount) is no cell, as in the engine.
    want = {
        k: dict(v)
        for k, v in independent(standard.definition, who, today).items()
        if any(x is not None for x in v.values())
    }
    top = standard.definition.get("top")
    if top:  # the biggest rows only (ABC: ranked by the first value)
        assert set(got) <= set(want) and len(got) == min(top, len(want)), (key, who)
    else:
        assert set(got) == set(want), (key, who, set(got) ^ set(want))
    assert want or who != "manager", key  # the demo book gives every report figures
    for cell, figures in got.items():
        for alias, value in want[cell].items():
            assert same(figures[alias], value), (key, who, cell, alias, figures[alias], value)
    if standard.definition.get("abc"):
        assert pivot.row_classes == independent_classes(
            want, [tuple(h.key for h in r) for r in pivot.row_headers]
        )


def independent_classes(want: dict[tuple, dict[str, Any]], shown: list[tuple]) -> list[str]:
    """ABC classes of the shown rows from every row's figure: per currency (the last row group), biggest
    first, A while the rows before hold under 80 % of the currency's total, B under 95 %, C after."""
    totals: dict[tuple, Decimal] = defaultdict(Decimal)
    for cell, figures in want.items():
        totals[cell[:-1]] += Decimal(str(next(iter(figures.values())) or 0))
    found: dict[tuple, str] = {}
    for currency in {row[-1] for row in totals}:
        ranked = sorted((r for r in totals if r[-1] == currency), key=lambda r: -totals[r])
        whole = sum(totals[r] for r in ranked if totals[r] > 0)
        before = Decimal(0)
        for row in ranked:
            share = before * 100 / whole if whole else Decimal(100)
            found[row] = ("A" if share < 80 else "B" if share < 95 else "C") if totals[row] > 0 else "C"
            before += max(totals[row], Decimal(0))
    return [found[row] for row in shown]


def test_aging_buckets_and_their_click_through(app_ctx, aging_invoices) -> None:  # noqa: ANN001
    staff1 = Actor.for_user_id(user_id("staff1"))
    definition = standard_reports.BY_KEY["receivables_managers"].definition
    spec = Definition.from_json(definition).resolved(staff1)
    pivot = reports.run(spec, staff1)
    labels = [h.label for h in pivot.column_headers]
    # Unpaid invoices of other tests without a due date add an "(empty)" column at the end: honest.
    assert labels[:5] == ["not overdue", "1–30 days overdue", "31–60 days overdue", "61–90 days overdue",
                          "over 90 days overdue"]  # fmt: skip
    assert labels[5:] in ([], ["(empty)"])
    rows = [i for i, h in enumerate(pivot.row_headers) if h[0].key == user_id("staff1") and h[1].key == "rub"]
    [mine] = rows
    query = TableQuery("invoices", staff1)
    for j, column in enumerate(pivot.column_headers):
        drill = reports.drill_filter(
            spec, [h.key for h in pivot.row_headers[mine]], column.key, with_column=True
        )
        behind = query.where(drill).aggregate([], {"total": ("sum", "balance"), "n": ("count", None)})[0]
        assert same(behind["total"], pivot.cells["sum__balance"][mine][j])
        # Only plain conditions on the due date: the grid shows them as they are.
        dates = [
            p
            for p in json.dumps(drill) and drill["and"]
            if isinstance(p, dict) and p.get("field") == "due_on"
        ]
        if column.key is None:  # the "(empty)" column: invoices without a due date
            assert dates == [{"field": "due_on", "op": "empty"}]
            continue
        assert dates and all(p["op"] in ("ge", "lt") for p in dates)
    # The test's own invoices land on the edges as counted in days: -5 and 0 not overdue, 1 and 30 in 1–30 ...
    mine_only = {"field": "number", "op": "sw", "value": f"{aging_invoices}-staff1-"}
    figures = reports.run(
        reports.ReportSpec(
            "invoices",
            (),
            "due_on:overdue",
            (reports.Measure("count"),),
            {"and": [definition["filter"], mine_only]},
        ),
        staff1,
    )
    counts = dict(zip([h.key for h in figures.column_headers], figures.cells["count__rows"][0], strict=True))
    assert counts == {0: 2, 1: 2, 31: 2, 61: 2, 91: 2}  # the paid and the cancelled ones left out


def test_standard_reports_open_in_the_builder_read_only(app, staff_client) -> None:  # noqa: ANN001
    page = staff_client.get("/reports/?standard=funnel").get_data(as_text=True)
    assert "Sales funnel" in page or "Воронка продаж" in page
    token = csrf_token(page)
    body = {**standard_reports.BY_KEY["activity"].definition}
    answer = staff_client.post(
        "/reports/run", data=json.dumps(body), content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    copy = staff_client.post(
        "/reports/saved",
        data=json.dumps({"name": "Моя воронка", "definition": standard_reports.BY_KEY["funnel"].definition}),
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert copy.status_code == 201 and copy.get_json()["canChange"]  # an editable copy of their own
