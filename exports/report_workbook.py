"""A report as a workbook: a summary sheet with the pivot (native Excel number formats from the field-type
registry, totals in bold) and a native Excel chart of it, before the sheet of the records behind it (written
by ``exports.xlsx.WorkbookWriter`` as any export). Group labels are written as text, never as formulas."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from flask_babel import gettext as _

from custom_fields import runtime
from custom_fields.types import REGISTRY
from exports.reports import Measure, Pivot
from exports.xlsx import sheet_name

CHART_TYPES = {
    "bar": {"type": "column"},
    "stacked": {"type": "column", "subtype": "stacked"},
    "line": {"type": "line"},
    "pie": {"type": "pie"},
}
COUNT_FORMAT = {"num_format": "#,##0"}


def measure_format(table: str, measure: Measure) -> dict[str, Any]:
    """How a measure's figures are formatted: counts as whole numbers, the rest as their field is."""
    if measure.function in ("count", "count_distinct") or measure.field is None:
        return COUNT_FORMAT
    entity = runtime.current().entity(table)
    field = entity.field_by_name(measure.field) if entity else None
    if field is None:
        return {"num_format": "#,##0.00"}
    ftype = REGISTRY[field.type]
    return (ftype.average_format(field) if measure.function == "avg" else ftype.xlsx_format(field)) or {}


def summary_sheet(
    pivot: Pivot, title: str, labels: dict[str, str], chart: str | None
) -> Callable[[Any], None]:
    """What ``WorkbookWriter`` writes first: ``labels`` names each measure (alias -> text) and each group
    (entry -> text)."""

    def write(book: Any) -> None:
        sheet = book.add_worksheet(sheet_name(_("Summary")))
        bold = book.add_format({"bold": True, "font_size": 13})
        header = book.add_format({"bold": True, "bottom": 1, "bg_color": "#F2F2F2", "text_wrap": True})
        plain_total = book.add_format({"bold": True, "top": 1})
        measures = pivot.spec.measures
        formats = [book.add_format(measure_format(pivot.spec.table, m)) for m in measures]
        totals = [
            book.add_format({**measure_format(pivot.spec.table, m), "bold": True, "top": 1}) for m in measures
        ]
        groups = len(pivot.spec.rows)
        columns = pivot.column_headers or [None]
        with_total_column = bool(pivot.column_headers)
        sheet.write_string(0, 0, title, bold)
        # Row 2: group names and column headers; row 3: the measures under each column.
        for g, entry in enumerate(pivot.spec.rows):
            sheet.write_string(2, g, labels.get(entry, entry), header)
        col = groups
        for column in columns:
            for m, measure in enumerate(measures):
                text = column.label if column is not None else labels[measure.alias]
                if column is not None and len(measures) > 1:
                    text = f"{column.label}: {labels[measure.alias]}"
                sheet.write_string(2, col + m, text, header)
            col += len(measures)
        if with_total_column:
            for m, measure in enumerate(measures):
                sheet.write_string(2, col + m, f"{_('Total')}: {labels[measure.alias]}", header)
        first = 3
        for i, headers in enumerate(pivot.row_headers):
            row = first + i
            for g, h in enumerate(headers):
                sheet.write_string(row, g, h.label)
            col = groups
            for j in range(len(columns)):
                for m, measure in enumerate(measures):
                    _number(sheet, row, col + m, pivot.cells[measure.alias][i][j], formats[m])
                col += len(measures)
            if with_total_column:
                for m, measure in enumerate(measures):
                    _number(sheet, row, col + m, pivot.row_totals[measure.alias][i], totals[m])
        total_row = first + len(pivot.row_headers)
        if groups:  # without row groups the one row is the total
            sheet.write_string(total_row, 0, _("Total"), plain_total)
            for g in range(1, groups):
                sheet.write_blank(total_row, g, None, plain_total)
            col = groups
            for j in range(len(columns)):
                for m, measure in enumerate(measures):
                    _number(sheet, total_row, col + m, pivot.column_totals[measure.alias][j], totals[m])
                col += len(measures)
            if with_total_column:
                for m, measure in enumerate(measures):
                    _number(sheet, total_row, col + m, pivot.grand_totals[measure.alias], totals[m])
        if pivot.row_classes is not None:  # the ABC class after every figure of the row
            end = groups + len(columns) * len(measures) + (len(measures) if with_total_column else 0)
            sheet.write_string(2, end, _("ABC class"), header)
            for i, found in enumerate(pivot.row_classes):
                sheet.write_string(first + i, end, found)
        sheet.set_column(0, max(groups - 1, 0), 28)
        sheet.set_column(groups, groups + (len(columns) + 1) * len(measures), 16)
        sheet.freeze_panes(3, groups)
        if chart in CHART_TYPES and pivot.row_headers:
            _chart(book, sheet, pivot, chart, labels, first, groups)

    return write


def _number(sheet: Any, row: int, col: int, value: Any, cell_format: Any) -> None:
    if value is None:
        sheet.write_blank(row, col, None, cell_format)
    elif isinstance(value, dt.date):
        sheet.write_datetime(row, col, value, cell_format)
    elif isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        sheet.write_number(row, col, float(value), cell_format)
    else:
        sheet.write_string(row, col, str(value))


def _chart(
    book: Any, sheet: Any, pivot: Pivot, kind: str, labels: dict[str, str], first: int, groups: int
) -> None:
    """A native chart of the first measure: a series per column (or the row totals for a pie)."""
    name = sheet.get_name()
    measures = pivot.spec.measures
    last = first + len(pivot.row_headers) - 1
    categories = [name, first, 0, last, max(groups - 1, 0)]
    chart = book.add_chart(CHART_TYPES[kind])
    columns = pivot.column_headers or [None]
    if kind == "pie":
        if pivot.column_headers:
            total_col = groups + len(columns) * len(measures)
        else:
            total_col = groups
        chart.add_series(
            {
                "name": labels[measures[0].alias],
                "categories": categories,
                "values": [name, first, total_col, last, total_col],
            }
        )
    else:
        for j, column in enumerate(columns):
            col = groups + j * len(measures)
            chart.add_series(
                {
                    "name": column.label if column is not None else labels[measures[0].alias],
                    "categories": categories,
                    "values": [name, first, col, last, col],
                }
            )
    chart.set_title({"name": labels[measures[0].alias]})
    chart.set_size({"width": 720, "height": 360})
    sheet.insert_chart(last + 3, 0, chart)


def figures_sheet(
    title: str,
    subtitle: str,
    headers: list[str],
    rows: list[list[Any]],
    formats: list[dict[str, Any] | None],
    chart_columns: list[int],
) -> Callable[[Any], None]:
    """A summary sheet of figures that are no pivot (plan vs fact, stage conversion): ``headers`` over
    ``rows``, each column formatted by ``formats`` (None: text), and a native column chart of the
    ``chart_columns`` against the row labels (the text columns before the first figure). Text is written as
    text, never as a formula."""

    def write(book: Any) -> None:
        sheet = book.add_worksheet(sheet_name(_("Summary")))
        sheet.write_string(0, 0, title, book.add_format({"bold": True, "font_size": 13}))
        sheet.write_string(1, 0, subtitle)
        header = book.add_format({"bold": True, "bottom": 1, "bg_color": "#F2F2F2", "text_wrap": True})
        cell_formats = [book.add_format(f) if f is not None else None for f in formats]
        for c, text in enumerate(headers):
            sheet.write_string(3, c, text, header)
        first = 4
        for i, row in enumerate(rows):
            for c, value in enumerate(row):
                if cell_formats[c] is None:
                    sheet.write_string(first + i, c, "" if value is None else str(value))
                else:
                    _number(sheet, first + i, c, value, cell_formats[c])
        labels = next((c for c, f in enumerate(formats) if f is not None), 1)
        sheet.set_column(0, max(labels - 1, 0), 28)
        sheet.set_column(labels, len(headers), 16)
        sheet.freeze_panes(first, labels)
        if rows and chart_columns:
            name, last = sheet.get_name(), first + len(rows) - 1
            chart = book.add_chart({"type": "column"})
            for c in chart_columns:
                chart.add_series(
                    {
                        "name": [name, 3, c],
                        "categories": [name, first, 0, last, max(labels - 1, 0)],
                        "values": [name, first, c, last, c],
                    }
                )
            chart.set_title({"name": title})
            chart.set_size({"width": 720, "height": 360})
            sheet.insert_chart(last + 3, 0, chart)

    return write
