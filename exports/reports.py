"""The report engine: a pivot table over any table, computed in the database through the query layer.

A report is a table, a filter (the grid's filter model, so a saved view can be its source), a quick search,
row groups and at most one column group (any visible field; dates and date-times by day, week, month,
quarter or year), and measures (count, count of distinct values, sum / average / min / max of a field). It
runs as one ``GROUP BY`` through ``TableQuery.aggregate`` as the user who asks (their row scope, their
visible fields), plus one per level of totals only for counts of distinct values; pandas shapes the small
result into rows × columns with totals. Every cell names the filter of the records behind it
(``drill_filter``), so a figure clicks through to a grid showing exactly those rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from custom_fields import buckets, runtime
from custom_fields.access import Actor
from custom_fields.query import Column, QueryError, TableQuery
from custom_fields.types import REGISTRY

if TYPE_CHECKING:
    import pandas as pd

FUNCTIONS = ("count", "count_distinct", "sum", "avg", "min", "max")
FUNCTION_LABELS = {
    "count": _l("Number of records"),
    "count_distinct": _l("Number of different values"),
    "sum": _l("Sum"),
    "avg": _l("Average"),
    "min": _l("Minimum"),
    "max": _l("Maximum"),
}
CHARTS = {"bar": _l("Bars"), "stacked": _l("Stacked bars"), "line": _l("Lines"), "pie": _l("Pie")}
#: The period selector: this month / quarter / year, the last N days, or a range of dates.
PERIODS = {
    "month": _l("This month"),
    "quarter": _l("This quarter"),
    "year": _l("This year"),
    "last_days": _l("The last N days"),
    "before_days": _l("Before the last N days"),
    "not_last_days": _l("Not in the last N days, or never"),
    "range": _l("From – to"),
}
MAX_PERIOD_DAYS = 3660
#: The periods counted in days (the builder asks for N).
DAY_COUNTS = ("last_days", "before_days", "not_last_days")
MAX_ROW_GROUPS = 3
MAX_MEASURES = 6
MAX_TOP = 1000
#: ABC classes by the share of the first value, counted from the biggest row: the rows before 80 % are A,
#: those before 95 % B, the rest C.
ABC_SHARES = ((Decimal(80), "A"), (Decimal(95), "B"))


class ReportError(QueryError):
    """A report that cannot run as asked; the message is for the user."""


@dataclasses.dataclass(frozen=True)
class Measure:
    function: str
    field: str | None = None

    @property
    def alias(self) -> str:
        return f"{self.function}__{self.field or 'rows'}"


@dataclasses.dataclass(frozen=True)
class ReportSpec:
    table: str
    rows: tuple[str, ...] = ()
    column: str | None = None
    measures: tuple[Measure, ...] = (Measure("count"),)
    filter: Any = None
    q: str = ""
    top: int | None = None
    #: ABC classes of the rows by the first value (within each value of the other row groups)
    abc: bool = False

    @classmethod
    def from_json(cls, raw: Any) -> ReportSpec:
        """A report as the builder sends it; raises ``ReportError`` for what is not a report."""
        if not isinstance(raw, dict) or not isinstance(raw.get("table"), str):
            raise ReportError(_("A report needs a table."))
        rows = raw.get("rows") or []
        if not isinstance(rows, list) or not all(isinstance(r, str) for r in rows):
            raise ReportError(_("Row groups are field names."))
        if len(rows) > MAX_ROW_GROUPS:
            raise ReportError(_("At most %(n)d row groups.", n=MAX_ROW_GROUPS))
        column = raw.get("column") or None
        if column is not None and not isinstance(column, str):
            raise ReportError(_("The column group is a field name."))
        measures = []
        for item in raw.get("measures") or [{"function": "count"}]:
            if not isinstance(item, dict) or item.get("function") not in FUNCTIONS:
                raise ReportError(_("A measure is a function and a field."))
            field = item.get("field") or None
            if (field is None) != (item["function"] == "count") or (
                field is not None and not isinstance(field, str)
            ):
                raise ReportError(_("A measure is a function and a field."))
            measures.append(Measure(item["function"], field))
        if not 0 < len(measures) <= MAX_MEASURES:
            raise ReportError(_("Ask for from 1 to %(n)d measures.", n=MAX_MEASURES))
        top = raw.get("top")
        if top is not None and (isinstance(top, bool) or not isinstance(top, int) or not 0 < top <= MAX_TOP):
            raise ReportError(_("Top is a number from 1 to %(n)d.", n=MAX_TOP))
        q = raw.get("q") if isinstance(raw.get("q"), str) else ""
        abc = raw.get("abc") is True
        if abc and (not rows or measures[0].function not in ("count", "sum")):
            raise ReportError(_("ABC classes need a row group and a count or sum as the first value."))
        return cls(
            raw["table"],
            tuple(dict.fromkeys(rows)),
            column,
            tuple(dict.fromkeys(measures)),
            raw.get("filter"),
            q,
            top,
            abc,
        )

    def as_json(self) -> dict[str, Any]:
        """What ``from_json`` reads back (stored with an exported report)."""
        return {
            "table": self.table,
            "rows": list(self.rows),
            "column": self.column,
            "measures": [{"function": m.function, "field": m.field} for m in self.measures],
            "filter": self.filter,
            "q": self.q,
            "top": self.top,
            "abc": self.abc,
        }


@dataclasses.dataclass
class Header:
    """A group's value as stored (for click-through) and as read."""

    key: Any
    label: str


@dataclasses.dataclass
class Pivot:
    spec: ReportSpec
    row_headers: list[list[Header]]  # one list per row: its value of each row group
    column_headers: list[Header]  # [] without a column group
    #: measure alias -> rows × columns (one column without a column group); None where no record is
    cells: dict[str, list[list[Any]]]
    row_totals: dict[str, list[Any]]
    column_totals: dict[str, list[Any]]
    grand_totals: dict[str, Any]
    #: row groups beyond ``top`` left out of the rows (the totals still count them)
    rows_left_out: int = 0
    #: each row's ABC class ("A", "B", "C") when the report asks for them (its rows then biggest first)
    row_classes: list[str] | None = None

    def as_json(self) -> dict[str, Any]:
        def value(v: Any) -> Any:
            if isinstance(v, dt.date):
                return v.isoformat()
            return str(v) if v is not None and not isinstance(v, int | float) else v

        return {
            "rows": [[{"key": value(h.key), "label": h.label} for h in row] for row in self.row_headers],
            "columns": [{"key": value(h.key), "label": h.label} for h in self.column_headers],
            "cells": {m: [[value(v) for v in row] for row in grid] for m, grid in self.cells.items()},
            "row_totals": {m: [value(v) for v in t] for m, t in self.row_totals.items()},
            "column_totals": {m: [value(v) for v in t] for m, t in self.column_totals.items()},
            "grand_totals": {m: value(v) for m, v in self.grand_totals.items()},
            "rows_left_out": self.rows_left_out,
            "classes": self.row_classes,
        }


@dataclasses.dataclass(frozen=True)
class Period:
    """A period of a report on one of its table's date fields, resolved against today each time the report
    runs (a saved "this month" is always the current month)."""

    field: str
    kind: str
    days: int | None = None
    start: dt.date | None = None
    end: dt.date | None = None  # inclusive

    @classmethod
    def from_json(cls, raw: Any) -> Period | None:
        if raw in (None, ""):
            return None
        if not isinstance(raw, dict):
            raise ReportError(_("A period is a date field and a kind of period."))
        if raw.get("kind") in (None, ""):
            return None  # no period: every date
        kind, field = raw.get("kind"), raw.get("field")
        if kind not in PERIODS or not isinstance(field, str) or not field:
            raise ReportError(_("A period is a date field and a kind of period."))
        if kind in DAY_COUNTS:
            days = raw.get("days")
            if isinstance(days, str) and days.strip().isdecimal():
                days = int(days)
            if isinstance(days, bool) or not isinstance(days, int) or not 0 < days <= MAX_PERIOD_DAYS:
                raise ReportError(_("The number of days is from 1 to %(n)d.", n=MAX_PERIOD_DAYS))
            return cls(field, kind, days=days)
        if kind == "range":
            start, end = _date_of(raw.get("from")), _date_of(raw.get("to"))
            if start is None and end is None:
                raise ReportError(_("Give the first or the last day of the period."))
            if start is not None and end is not None and start > end:
                raise ReportError(_("The period ends before it starts."))
            return cls(field, kind, start=start, end=end)
        return cls(field, kind)

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"field": self.field, "kind": self.kind}
        if self.days is not None:
            found["days"] = self.days
        if self.kind == "range":
            found["from"] = self.start.isoformat() if self.start else None
            found["to"] = self.end.isoformat() if self.end else None
        return found

    def bounds(self, today: dt.date) -> tuple[dt.date | None, dt.date | None]:
        """The first day and the day after the last (either may be open)."""
        if self.kind in ("month", "quarter", "year"):
            first = buckets.start(today, self.kind)
            return first, buckets.following(first, self.kind)
        if self.kind == "last_days":
            return today - dt.timedelta(days=(self.days or 1) - 1), today + dt.timedelta(days=1)
        if self.kind in ("before_days", "not_last_days"):  # e.g. not updated in the last 30 days (stale)
            return None, today - dt.timedelta(days=(self.days or 1) - 1)
        return self.start, (self.end + dt.timedelta(days=1)) if self.end else None

    def condition(self, today: dt.date) -> list[dict[str, Any]]:
        first, after = self.bounds(today)
        if self.kind == "not_last_days":  # before the last N days, or never (customers nobody contacted)
            return [{"or": [{"field": self.field, "op": "empty"},
                            {"field": self.field, "op": "lt", "value": after.isoformat()}]}]  # fmt: skip
        parts = []
        if first is not None:
            parts.append({"field": self.field, "op": "ge", "value": first.isoformat()})
        if after is not None:
            parts.append({"field": self.field, "op": "lt", "value": after.isoformat()})
        return parts


def all_of(*parts: Any) -> Any:
    """A filter holding every one of ``parts`` (None ones left out), with groups of "and" taken apart so
    that narrowing a report again and again never nests deeper than the query layer allows."""
    found: list[Any] = []
    for part in parts:
        if not part:
            continue
        if isinstance(part, dict) and set(part) == {"and"} and isinstance(part["and"], list):
            found.extend(part["and"])
        else:
            found.append(part)
    return {"and": found} if found else None


def _date_of(raw: Any) -> dt.date | None:
    if raw in (None, ""):
        return None
    if not isinstance(raw, str):
        raise ReportError(_("A date is written as YYYY-MM-DD."))
    try:
        return dt.date.fromisoformat(raw.strip()[:10])
    except ValueError:
        raise ReportError(_("A date is written as YYYY-MM-DD.")) from None


@dataclasses.dataclass(frozen=True)
class Definition:
    """What the builder shows and a saved report keeps: the report, the saved view whose rows it takes, the
    chart and the period."""

    spec: ReportSpec
    view: int | None = None
    chart: str | None = None
    period: Period | None = None

    @classmethod
    def from_json(cls, raw: Any) -> Definition:
        spec = ReportSpec.from_json(raw)
        view = raw.get("view")
        if isinstance(view, str) and view.isdecimal():
            view = int(view)
        if view in ("", 0):
            view = None
        if view is not None and (isinstance(view, bool) or not isinstance(view, int)):
            raise ReportError(_("The rows' source is a saved view."))
        chart = raw.get("chart") if raw.get("chart") in CHARTS else None
        return cls(spec, view, chart, Period.from_json(raw.get("period")))

    def as_json(self) -> dict[str, Any]:
        found = self.spec.as_json()
        found.update(view=self.view, chart=self.chart, period=self.period.as_json() if self.period else None)
        return found

    def resolved(self, actor: Actor, today: dt.date | None = None) -> ReportSpec:
        """The report to run for ``actor``: the saved view's rows (as they may see them) within the period
        (as of ``today``, in ``TABULA_TIMEZONE``). Raises ``QueryError`` for what they may not ask."""
        spec = self.spec
        if self.view is not None:
            spec = from_view(spec, self.view, actor)
        if self.period is not None:
            column = TableQuery(spec.table, actor).column(self.period.field)
            if "day" not in column.ftype.bucket_units:
                raise ReportError(_("The period needs a date field."))
            parts = self.period.condition(today or buckets.today())
            spec = dataclasses.replace(spec, filter=all_of(spec.filter, *parts))
        return spec


def from_view(spec: ReportSpec, view_id: Any, actor: Actor) -> ReportSpec:
    """``spec`` over the rows of a saved view of its table (its filter and quick search, as ``actor`` may
    see them); raises ``QueryError`` (404) for a view that is not theirs to open."""
    from custom_fields import saved_views

    view = saved_views.get(spec.table, view_id, actor)
    state = saved_views.applied(view, actor)
    return dataclasses.replace(spec, filter=state.get("filter"), q=state.get("q") or "")


def query_of(spec: ReportSpec, actor: Actor) -> TableQuery:
    query = TableQuery(spec.table, actor)
    return query.where(spec.filter).search(spec.q)


def run(spec: ReportSpec, actor: Actor) -> Pivot:
    """The report as ``actor`` may see it; raises ``QueryError`` (or ``ReportError``) for what they may not
    ask (a hidden field, an unknown one, a sum of text)."""
    query = query_of(spec, actor)
    groups = [*spec.rows, *([spec.column] if spec.column else [])]
    wanted = _sql_measures(spec.measures)
    records = query.aggregate(groups, wanted)
    import pandas as pd  # here: pandas and numpy are 60 MB of every process that never runs a report

    frame = pd.DataFrame(records, columns=[*groups, *wanted])
    # Groups in the database's order (by value, empty last), numbered: pandas pivots on the numbers.
    row_keys = list(dict.fromkeys(tuple(r[g] for g in spec.rows) for r in records)) if spec.rows else [()]
    column_keys = [None]
    if spec.column:  # in the column's own order (the rows come ordered by the row groups first)
        column_keys = sorted(dict.fromkeys(r[spec.column] for r in records), key=lambda k: (k is None, k))
    row_index = {k: i for i, k in enumerate(row_keys)}
    column_index = {k: i for i, k in enumerate(column_keys)}
    frame["_r"] = [row_index[tuple(r[g] for g in spec.rows)] for r in records]
    frame["_c"] = [column_index[r[spec.column]] if spec.column else 0 for r in records]
    shape = (range(len(row_keys)), range(len(column_keys)))
    grids = {
        alias: frame.pivot(index="_r", columns="_c", values=alias).reindex(index=shape[0], columns=shape[1])
        for alias in wanted
    }
    cells, row_totals, column_totals, grand = {}, {}, {}, {}
    for measure in spec.measures:
        grid = grids[measure.alias]
        cells[measure.alias] = [[_clean(v) for v in row] for row in grid.itertuples(index=False)]
        totals = _totals(measure, grids, query, spec, row_keys, column_keys)
        row_totals[measure.alias], column_totals[measure.alias], grand[measure.alias] = totals
    classes = None
    if spec.abc:
        order, classes = abc_classes(row_keys, row_totals[spec.measures[0].alias])
        row_keys = [row_keys[i] for i in order]
        for alias in cells:
            cells[alias] = [cells[alias][i] for i in order]
            row_totals[alias] = [row_totals[alias][i] for i in order]
    labels = _Labels(query, actor)
    row_headers = [
        [labels.header(name, key) for name, key in zip(spec.rows, keys, strict=True)] for keys in row_keys
    ]
    column_headers = [labels.header(spec.column, key) for key in column_keys] if spec.column else []
    left_out = 0
    if spec.top and len(row_keys) > spec.top:
        first = spec.measures[0].alias
        order = sorted(range(len(row_keys)), key=lambda i: _sort_key(row_totals[first][i]), reverse=True)
        kept = sorted(order[: spec.top])
        left_out = len(row_keys) - len(kept)
        row_headers = [row_headers[i] for i in kept]
        for alias in cells:
            cells[alias] = [cells[alias][i] for i in kept]
            row_totals[alias] = [row_totals[alias][i] for i in kept]
        classes = [classes[i] for i in kept] if classes is not None else None
    return Pivot(
        spec, row_headers, column_headers, cells, row_totals, column_totals, grand, left_out, classes
    )


def abc_classes(row_keys: Sequence[tuple], values: Sequence[Any]) -> tuple[list[int], list[str]]:
    """The rows' new order and their ABC classes: within each value of the row groups after the first
    (e.g. each currency: money is never added across them), biggest first; a row is A while the rows before
    it hold less than 80 % of the total, B below 95 %, C after (and C for nothing or less)."""
    partitions: dict[tuple, list[int]] = {}
    for i, key in enumerate(row_keys):
        partitions.setdefault(tuple(key[1:]), []).append(i)
    order: list[int] = []
    classes: dict[int, str] = {}
    for partition in sorted(partitions, key=lambda p: tuple((v is None, v) for v in p)):
        amounts = {i: Decimal(str(values[i] or 0)) for i in partitions[partition]}
        ranked = sorted(partitions[partition], key=lambda i: -amounts[i])
        total = sum((a for a in amounts.values() if a > 0), Decimal(0))
        before = Decimal(0)
        for i in ranked:
            share = before * 100 / total if total else Decimal(100)
            found = next((name for limit, name in ABC_SHARES if share < limit), "C")
            classes[i] = found if amounts[i] > 0 else "C"
            before += max(amounts[i], Decimal(0))
        order += ranked
    return order, [classes[i] for i in order]


def _sql_measures(measures: Sequence[Measure]) -> dict[str, tuple[str, str | None]]:
    """What the database computes: each measure, and for an average its sum and count (for exact totals)."""
    wanted: dict[str, tuple[str, str | None]] = {}
    for m in measures:
        wanted[m.alias] = (m.function, m.field)
        if m.function == "avg":
            wanted[Measure("sum", m.field).alias] = ("sum", m.field)
            wanted[f"filled__{m.field}"] = ("count", m.field)
    return wanted


def _totals(
    measure: Measure,
    grids: dict[str, pd.DataFrame],
    query: TableQuery,
    spec: ReportSpec,
    row_keys: list[tuple],
    column_keys: list[Any],
) -> tuple:
    """The measure's totals per row, per column and overall, exact for every function."""
    grid = grids[measure.alias]
    if measure.function in ("count", "sum"):
        return (
            [_clean(v) for v in grid.sum(axis=1, min_count=1)],
            [_clean(v) for v in grid.sum(axis=0, min_count=1)],
            _clean(grid.stack().sum(min_count=1)) if grid.size else None,
        )
    if measure.function in ("min", "max"):
        pick = min if measure.function == "min" else max
        return (
            [_pick(pick, row) for row in grid.itertuples(index=False)],
            [_pick(pick, grid[c]) for c in grid.columns],
            _pick(pick, [v for row in grid.itertuples(index=False) for v in row]),
        )
    if measure.function == "avg":
        sums, filled = grids[Measure("sum", measure.field).alias], grids[f"filled__{measure.field}"]
        return (
            [_ratio(s, n) for s, n in zip(sums.sum(axis=1, min_count=1), filled.sum(axis=1), strict=True)],
            [_ratio(s, n) for s, n in zip(sums.sum(axis=0, min_count=1), filled.sum(axis=0), strict=True)],
            _ratio(sums.stack().sum(min_count=1), filled.stack().sum()) if sums.size else None,
        )
    # Distinct values do not add up across groups: each level of totals is its own GROUP BY.
    wanted = {measure.alias: (measure.function, measure.field)}
    [grand] = query.aggregate([], wanted)
    rows = [grand[measure.alias]]
    if spec.rows:
        by_rows = {
            tuple(r[g] for g in spec.rows): r[measure.alias] for r in query.aggregate(spec.rows, wanted)
        }
        rows = [by_rows.get(k) for k in row_keys]
    columns = [grand[measure.alias]]
    if spec.column:
        by_column = {r[spec.column]: r[measure.alias] for r in query.aggregate([spec.column], wanted)}
        columns = [by_column.get(k) for k in column_keys]
    return rows, columns, grand[measure.alias]


def _clean(value: Any) -> Any:
    """pandas' missing value as None; numpy numbers as Python ones."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item") and not isinstance(value, dt.date):
        return value.item()
    return value


def _pick(pick: Any, values: Any) -> Any:
    present = [_clean(v) for v in values]
    present = [v for v in present if v is not None]
    return pick(present) if present else None


def _ratio(total: Any, count: Any) -> Any:
    total, count = _clean(total), _clean(count)
    if total is None or not count:
        return None
    return total / int(count)


def _sort_key(value: Any) -> tuple:
    return (value is not None, value if value is not None else 0)


class _Labels:
    """Group values as a person reads them, as ``actor`` may see them: a linked record they may not read
    shows as ``#id``."""

    def __init__(self, query: TableQuery, actor: Actor) -> None:
        self.query, self.actor = query, actor
        self.cache: dict[tuple[str, Any], str] = {}

    def header(self, entry: str, key: Any) -> Header:
        return Header(key, self.label(entry, key))

    def label(self, entry: str, key: Any) -> str:
        if key is None:
            return _("(empty)")
        name, _sep, unit = entry.partition(":")
        if unit:
            return buckets.bucket_label(key, unit)
        column: Column = self.query.column(name)
        found = self.cache.get((name, key))
        if found is not None:
            return found
        if column.reference == "user":
            text = runtime.user_label(key) or f"#{key}"
        elif column.reference is not None:
            target = runtime.current().by_id.get(REGISTRY[column.type].target_entity_id(column.spec) or 0)
            text = (
                TableQuery(target.slug, self.actor).labels_of([key]).get(key, f"#{key}")
                if target
                else f"#{key}"
            )
        else:
            text = REGISTRY[column.type].display(key, column.spec)
        self.cache[(name, key)] = text
        return text


def labels_of(spec: ReportSpec, actor: Actor) -> dict[str, str]:
    """The names a workbook shows for the report's groups and measures, as ``actor`` reads them."""
    query = TableQuery(spec.table, actor)
    found = {m.alias: measure_label(spec, m) for m in spec.measures}
    for entry in (*spec.rows, *([spec.column] if spec.column else [])):
        name, _sep, unit = entry.partition(":")
        label = str(query.column(name).spec.label)
        found[entry] = f"{label} ({buckets.UNIT_LABELS[unit]})" if unit in buckets.UNIT_LABELS else label
    return found


def workbook_settings(spec: ReportSpec, chart: str | None, actor: Actor) -> dict[str, Any]:
    """What an export of the report keeps to write its summary sheet and chart."""
    return {
        "spec": spec.as_json(),
        "labels": labels_of(spec, actor),
        "chart": chart if chart in CHARTS else None,
    }


def measure_label(spec: ReportSpec, measure: Measure) -> str:
    text = str(FUNCTION_LABELS[measure.function])
    if measure.field is None:
        return text
    entity = runtime.current().entity(spec.table)
    field = entity.field_by_name(measure.field) if entity else None
    return f"{text}: {field.label if field else measure.field}"


def drill_filter(
    spec: ReportSpec, row_keys: Sequence[Any], column_key: Any = None, *, with_column: bool = False
) -> Any:
    """The grid filter of the records behind a cell: the report's filter and each group's value (a bucket as
    its date range; an empty value as "is empty")."""
    parts = [spec.filter]
    pairs = list(zip(spec.rows, row_keys, strict=False))
    if with_column and spec.column:
        pairs.append((spec.column, column_key))
    for entry, key in pairs:
        name, _sep, unit = entry.partition(":")
        if key is None:
            parts.append({"field": name, "op": "empty"})
        elif unit:
            first, after = buckets.date_range(key, unit)
            if first is not None:
                parts.append({"field": name, "op": "ge", "value": first.isoformat()})
            if after is not None:
                parts.append({"field": name, "op": "lt", "value": after.isoformat()})
        else:
            parts.append({"field": name, "op": "eq", "value": key})
    return all_of(*parts)
