"""CSV for those who ask for it: UTF-8 with a BOM (so Excel reads Cyrillic), ``;`` and decimal commas for
Russian (what Russian Excel and 1C expect), ``,`` and points otherwise. Text a spreadsheet would run as a
formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) gets a leading apostrophe
(OWASP "CSV injection"); numbers stay numbers."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from exports.xlsx import Written, file_sha256

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralised(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def cell_text(value: Any, decimal_mark: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal | float):
        text = format(Decimal(str(value)) if isinstance(value, float) else value, "f")
        return text.replace(".", decimal_mark)
    if isinstance(value, dt.datetime):
        return f"{value.day:02}.{value.month:02}.{value.year:04} {value.hour:02}:{value.minute:02}"
    if isinstance(value, dt.date):
        return f"{value.day:02}.{value.month:02}.{value.year:04}"
    return neutralised(str(value))


class CsvWriter:
    """Same shape as ``WorkbookWriter``: ``write(rows)``, then ``close()``; an exception removes the file."""

    def __init__(self, path: Path, headers: Sequence[str], *, language: str = "en") -> None:
        self.path = Path(path)
        self.rows = 0
        russian = language == "ru"
        self._decimal_mark = "," if russian else "."
        self._handle = open(self.path, "w", encoding="utf-8-sig", newline="")  # noqa: SIM115
        self._csv = csv.writer(self._handle, delimiter=";" if russian else ",", lineterminator="\r\n")
        self._csv.writerow([neutralised(h) for h in headers])

    def write(self, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            self._csv.writerow([cell_text(v, self._decimal_mark) for v in row])
            self.rows += 1

    def close(self) -> Written:
        self._handle.close()
        return Written(self.path, self.rows, 1, self.path.stat().st_size, file_sha256(self.path))

    def abort(self) -> None:
        self._handle.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> CsvWriter:
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        if kind is not None:
            self.abort()
