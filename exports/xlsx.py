"""Workbooks written as rows arrive, in constant memory (XlsxWriter's ``constant_memory`` mode).

The caller gives the columns (a header and the XlsxWriter format from the field-type registry) and then
rows of cell values as the registry's ``export_value`` makes them: numbers, dates, naive local date-times,
booleans, text. Text is always written as text, never as a formula or a link (OWASP "CSV injection"); a
sheet full at Excel's 1,048,576 rows continues on a new sheet with the header repeated. Column widths come
from the header and the first rows (a sample), since rows already written cannot be measured again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import xlsxwriter

#: Excel's limits.
MAX_ROWS = 1_048_576
MAX_CELL_TEXT = 32_767
SHEET_NAME_LENGTH = 31
#: Excel counts days from 1900 and wrongly holds 29.02.1900: earlier dates are written as text.
FIRST_EXCEL_DATE = dt.date(1900, 3, 1)
#: Digits a spreadsheet number keeps; longer whole numbers are written as text so that none is lost.
EXACT_DIGITS = 15
EXACT_LIMIT = 10**EXACT_DIGITS
WIDTH_SAMPLE = 200
MIN_WIDTH, MAX_WIDTH = 6, 60
_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")


@dataclass(frozen=True)
class Column:
    header: str
    #: XlsxWriter format properties (the registry's ``xlsx_format``).
    cell_format: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Written:
    path: Path
    rows: int
    sheets: int
    size: int
    sha256: str


def sheet_name(title: str, number: int = 1) -> str:
    """A valid, readable sheet name: Excel's forbidden characters replaced, at most 31 characters, no
    apostrophe at either end; the ``number``-th sheet of a long export gets `` (n)``."""
    name = _SHEET_FORBIDDEN.sub(" ", title).strip().strip("'").strip() or "Sheet"
    suffix = f" ({number})" if number > 1 else ""
    return name[: SHEET_NAME_LENGTH - len(suffix)].rstrip() + suffix


def _width(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, dt.datetime):
        return 16
    if isinstance(value, dt.date):
        return 10
    if isinstance(value, bool):
        return 5
    if isinstance(value, int | float | Decimal):
        return len(f"{value:,.2f}")
    return max((len(line) for line in str(value).splitlines()), default=0)


class WorkbookWriter:
    """One workbook: ``write(rows)`` as often as needed, then ``close()``; usable as a context manager
    (an exception leaves no file behind)."""

    def __init__(
        self,
        path: Path,
        columns: Sequence[Column],
        *,
        title: str,
        author: str = "",
        max_rows: int = MAX_ROWS,
        prelude: Callable[[Any], None] | None = None,
    ) -> None:
        """``prelude(book)``, when given, writes sheets of its own before the rows' sheets (a report's
        summary and chart)."""
        self.path = Path(path)
        # XlsxWriter keeps each sheet's rows in temporary files until ``close`` zips them: next to the
        # workbook, so that a killed job's leftovers are found (and removed) with it.
        self._parts = self.path.with_name(self.path.name + ".parts")
        self._parts.mkdir(parents=True, exist_ok=True)
        self.columns = list(columns)
        self.title = title
        self.rows = 0
        self._max_data_rows = max_rows - 1  # the header takes a row on every sheet
        self._book = xlsxwriter.Workbook(
            str(self.path),
            {
                "constant_memory": True,
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "strings_to_numbers": False,
                "default_date_format": "dd.mm.yyyy",
                "tmpdir": str(self._parts),
            },
        )
        self._book.set_properties(
            {"title": title, "author": author, "created": dt.datetime.now(dt.UTC).replace(tzinfo=None)}
        )
        if prelude is not None:
            prelude(self._book)
        self._header = self._book.add_format({"bold": True, "bottom": 1, "bg_color": "#F2F2F2"})
        self._formats = [self._book.add_format(c.cell_format) if c.cell_format else None for c in columns]
        self._text_format = self._book.add_format({})
        self._sheets: list[Any] = []
        self._sheet_rows = 0
        self._widths: list[int] | None = None
        self._pending: list[Sequence[Any]] = []
        self._writers: dict[type, Any] = {
            type(None): _skip,
            bool: self._write_boolean,
            int: self._write_int,
            float: self._write_number,
            Decimal: self._write_number,
            dt.date: self._write_date,
            dt.datetime: self._write_date,
            str: self._write_text,
        }

    # --- writing ---------------------------------------------------------------------------------------

    def write(self, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            if self._widths is None:
                self._pending.append(row)
                if len(self._pending) >= WIDTH_SAMPLE:
                    self._flush_sample()
                continue
            self._write_row(row)

    def _flush_sample(self) -> None:
        widths = [len(c.header) + 2 for c in self.columns]
        for row in self._pending:
            for i, value in enumerate(row[: len(widths)]):
                widths[i] = max(widths[i], _width(value) + 1)
        self._widths = [min(max(w, MIN_WIDTH), MAX_WIDTH) for w in widths]
        pending, self._pending = self._pending, []
        for row in pending:
            self._write_row(row)

    def _new_sheet(self) -> Any:
        sheet = self._book.add_worksheet(sheet_name(self.title, len(self._sheets) + 1))
        for i, width in enumerate(self._widths or []):
            sheet.set_column(i, i, width)
        for i, column in enumerate(self.columns):
            sheet.write_string(0, i, column.header, self._header)
        sheet.freeze_panes(1, 0)
        self._sheets.append(sheet)
        self._sheet_rows = 0
        return sheet

    def _finish_sheet(self) -> None:
        if self._sheets and self.columns:
            self._sheets[-1].autofilter(0, 0, self._sheet_rows, len(self.columns) - 1)

    def _write_row(self, row: Sequence[Any]) -> None:
        if not self._sheets or self._sheet_rows >= self._max_data_rows:
            self._finish_sheet()
            self._new_sheet()
        sheet = self._sheets[-1]
        self._sheet_rows += 1
        self.rows += 1
        number, writers = self._sheet_rows, self._writers
        # One dictionary lookup by the value's exact type instead of a chain of isinstance checks: this
        # runs for every cell of a million-row export.
        for col, value in enumerate(row[: len(self.columns)]):
            write = writers.get(type(value)) or self._writer_for(value)
            write(sheet, number, col, value)

    def _writer_for(self, value: Any) -> Any:
        if value is None:
            return _skip
        if isinstance(value, bool):
            return self._write_boolean
        if isinstance(value, int):
            return self._write_int
        if isinstance(value, Decimal | float):
            return self._write_number
        if isinstance(value, dt.datetime | dt.date):
            return self._write_date
        return self._write_text

    def _write_boolean(self, sheet: Any, row: int, col: int, value: bool) -> None:
        sheet.write_boolean(row, col, value, self._formats[col])

    def _write_int(self, sheet: Any, row: int, col: int, value: int) -> None:
        if -EXACT_LIMIT < value < EXACT_LIMIT:
            sheet.write_number(row, col, value, self._formats[col])
        else:
            sheet.write_string(row, col, str(value), self._text_format)

    def _write_number(self, sheet: Any, row: int, col: int, value: Decimal | float) -> None:
        if isinstance(value, Decimal) and not value.is_finite():
            sheet.write_string(row, col, str(value), self._text_format)
        else:
            sheet.write_number(row, col, float(value), self._formats[col])

    def _write_date(self, sheet: Any, row: int, col: int, value: dt.date) -> None:
        day = value.date() if isinstance(value, dt.datetime) else value
        if day < FIRST_EXCEL_DATE:
            text = f"{day.day:02}.{day.month:02}.{day.year:04}"
            if isinstance(value, dt.datetime):
                text += f" {value.hour:02}:{value.minute:02}"
            sheet.write_string(row, col, text, self._text_format)
        else:
            sheet.write_datetime(row, col, value, self._formats[col])

    def _write_text(self, sheet: Any, row: int, col: int, value: Any) -> None:
        text = value if type(value) is str else str(value)
        if not text:
            return
        if len(text) > MAX_CELL_TEXT:
            text = text[: MAX_CELL_TEXT - 1] + "…"
        sheet.write_string(row, col, text, self._text_format)

    # --- finishing -------------------------------------------------------------------------------------

    def close(self) -> Written:
        if self._widths is None:
            self._flush_sample()
        if not self._sheets:
            self._new_sheet()
        self._finish_sheet()
        self._book.close()
        shutil.rmtree(self._parts, ignore_errors=True)
        size = self.path.stat().st_size
        return Written(self.path, self.rows, len(self._sheets), size, file_sha256(self.path))

    def abort(self) -> None:
        """Drop what was written: no partial file is left."""
        with contextlib.suppress(Exception):  # the file is removed either way
            self._book.close()
        self.path.unlink(missing_ok=True)
        shutil.rmtree(self._parts, ignore_errors=True)

    def __enter__(self) -> WorkbookWriter:
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        if kind is not None:
            self.abort()


def _skip(sheet: Any, row: int, col: int, value: Any) -> None:
    """An empty cell is not written at all."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
