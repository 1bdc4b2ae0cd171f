"""Reading an uploaded file into rows of cells: xlsx, xls and ods through calamine, CSV through ``csv``.

The kind of a file is decided by its content, never its name: a workbook zip must hold the parts of an
xlsx or an ods and unpack to a bounded size (no zip bombs), an xls starts with the OLE signature, anything
else is CSV text. Nothing in a workbook is executed: calamine reads the values formulas last computed.
Every refusal is an ``ImportFileError`` whose message is for the user.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask_babel import gettext as _

#: What a user may choose as the text encoding of a CSV file (the rest would not be Russian or English).
ENCODINGS = ("utf-8", "utf-8-sig", "cp1251", "koi8_r", "cp866")
#: The encodings charset-normalizer may answer with (unrestricted, it reads cp1251 as mac_cyrillic).
GUESSED_ENCODINGS = ("cp1251", "koi8_r", "cp866")
DELIMITERS = (";", ",", "\t", "|")
OLE_MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")
#: Rows and columns a file may have (Excel's own limits).
MAX_ROWS = 1_048_576
MAX_COLUMNS = 16_384
#: How many bytes of a CSV file decide its encoding and delimiter.
SAMPLE = 64 * 1024


class ImportFileError(ValueError):
    """A file that cannot be read as asked; the message is shown to the user as is."""


@dataclass
class Grid:
    """What a file holds: its sheets (one for CSV), the chosen sheet's rows of cells (blank rows dropped,
    each with its row number in the file), and how it was read."""

    kind: str
    sheets: list[str]
    sheet: str
    rows: list[tuple[int, list[Any]]]
    encoding: str | None = None
    delimiter: str | None = None
    merged: list[tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=list)


# --- what kind of file -------------------------------------------------------------------------------------


def sniff_kind(path: Path, max_unpacked: int) -> str:
    """``xlsx``, ``ods``, ``xls`` or ``csv``, from the content; raises ``ImportFileError``."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(OLE_MAGIC):
        return "xls"
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path, max_unpacked)
    return "csv"


def _zip_kind(path: Path, max_unpacked: int) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            names = {m.filename for m in members}
            if sum(m.file_size for m in members) > max_unpacked or len(members) > 10_000:
                raise ImportFileError(_("The workbook unpacks to too much data to import."))
            if "[Content_Types].xml" in names and any(n.startswith("xl/worksheets/") for n in names):
                if "xl/vbaProject.bin" in names:
                    return "xlsx"  # a macro-enabled book: its macros are never run, its values are read
                return "xlsx"
            if "content.xml" in names and "mimetype" in names:
                if archive.read("mimetype").strip() == b"application/vnd.oasis.opendocument.spreadsheet":
                    return "ods"
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        if isinstance(exc, ImportFileError):
            raise
        raise ImportFileError(_("The file is damaged: it is not a workbook that can be read.")) from None
    raise ImportFileError(_("This is an archive, not a spreadsheet: upload an xlsx, xls, ods or csv file."))


# --- workbooks ---------------------------------------------------------------------------------------------


def read_workbook(path: Path, kind: str, sheet: str | None = None, limit: int | None = None) -> Grid:
    """The rows of one sheet (the first, or ``sheet`` by name); dates as dates, formulas as their values.
    ``limit``: only the first rows that are not blank (a look at the titles, without converting the rest)."""
    import python_calamine as calamine

    try:
        book = calamine.CalamineWorkbook.from_path(str(path))
        names = [str(n) for n in book.sheet_names]
        if not names:
            raise ImportFileError(_("The workbook has no sheets."))
        chosen = sheet if sheet in names else names[0]
        worksheet = book.get_sheet_by_name(chosen)
        if worksheet.height > MAX_ROWS or worksheet.width > MAX_COLUMNS:
            raise ImportFileError(_("The sheet is larger than a spreadsheet can be."))
        cells = worksheet.to_python() if limit is None else worksheet.iter_rows()
        merged = _merged(worksheet)
        start_row = worksheet.start[0] if worksheet.start else 0
        rows = []
        for i, row in enumerate(cells):
            converted = [_cell(value) if type(value) in _CONVERTED else value for value in row]
            if not _blank_row(converted):
                rows.append((start_row + i + 1, converted))
                if limit is not None and len(rows) >= limit:
                    break
    except ImportFileError:
        raise
    except Exception:  # calamine's errors (damaged parts, a password) have no common base class
        raise ImportFileError(_("The file is damaged or protected: it cannot be read.")) from None
    return Grid(kind, names, chosen, rows, merged=merged)


def _merged(worksheet: Any) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    try:
        return [tuple(map(tuple, r)) for r in (worksheet.merged_cell_ranges or [])]  # type: ignore[misc]
    except Exception:  # not every format reports merged cells
        return []


#: The kinds of cell ``_cell`` changes (the rest, numbers, dates and booleans, stay as calamine gives them).
_CONVERTED = frozenset({str, float, dt.time, dt.timedelta})


def _cell(value: Any) -> Any:
    """A cell as the registry parses it: text trimmed of non-breaking spaces, whole floats as integers."""
    if isinstance(value, str):
        return value.replace("\u00a0", " ").strip()
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dt.time):
        return value.isoformat(timespec="minutes")
    if isinstance(value, dt.timedelta):
        return str(value)
    return value


def _blank_row(row: list[Any]) -> bool:
    """Whether a row of cells already trimmed (``_cell``) holds nothing: counted in C, not cell by cell."""
    return row.count("") + row.count(None) == len(row)


# --- CSV ---------------------------------------------------------------------------------------------------


def decode(data: bytes, encoding: str | None = None) -> tuple[str, str]:
    """(text, encoding): the user's choice, else strict UTF-8 (with or without BOM), else the best of
    cp1251, KOI8-R and CP866."""
    if encoding:
        if encoding not in ENCODINGS:
            raise ImportFileError(_("Unknown text encoding."))
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            raise ImportFileError(
                _("The file is not in the encoding %(name)s: choose another one.", name=encoding)
            ) from None
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data.decode("utf-8-sig"), "utf-8-sig"
        except UnicodeDecodeError:
            pass
    else:
        try:
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            pass
    guessed = _guess_encoding(data)
    return data.decode(guessed, errors="replace"), guessed


def _guess_encoding(data: bytes) -> str:
    from charset_normalizer import from_bytes

    best = from_bytes(data[: SAMPLE * 4], cp_isolation=list(GUESSED_ENCODINGS)).best()
    name = (best.encoding if best is not None else "cp1251").lower()
    return name if name in GUESSED_ENCODINGS else "cp1251"


def sniff_delimiter(text: str) -> str:
    """The delimiter among ``; , tab |`` that splits the sample into the most consistent columns."""
    sample = text[:SAMPLE]
    try:
        found = csv.Sniffer().sniff(sample, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        found = ""
    if found in DELIMITERS:
        return found
    first = sample.split("\n", 1)[0]
    counts = {d: first.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ";"


def read_csv(data: bytes, encoding: str | None = None, delimiter: str | None = None) -> Grid:
    """The rows of a CSV file (quoted fields may hold line breaks and delimiters)."""
    text, used = decode(data, encoding)
    if "\x00" in text:
        raise ImportFileError(_("This is not a text file: upload an xlsx, xls, ods or csv file."))
    if delimiter:
        if delimiter not in DELIMITERS:
            raise ImportFileError(_("Unknown delimiter."))
        chosen = delimiter
    else:
        chosen = sniff_delimiter(text)
    rows: list[tuple[int, list[Any]]] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=chosen, strict=False)
    try:
        for number, row in enumerate(reader, start=1):
            if number > MAX_ROWS:
                raise ImportFileError(_("The file has more rows than a spreadsheet can hold."))
            if len(row) > MAX_COLUMNS:
                raise ImportFileError(_("The file has more columns than a spreadsheet can hold."))
            cells = [c.replace("\u00a0", " ").strip() for c in row]
            if not _blank_row(cells):
                rows.append((reader.line_num, cells))
    except csv.Error:
        raise ImportFileError(_("The CSV file is malformed.")) from None
    return Grid("csv", ["CSV"], "CSV", rows, encoding=used, delimiter=chosen)


# --- the entry point ---------------------------------------------------------------------------------------


def read(
    path: Path,
    *,
    max_unpacked: int,
    sheet: str | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
) -> Grid:
    """Whatever the file is, its rows (see ``Grid``); raises ``ImportFileError``."""
    kind = sniff_kind(path, max_unpacked)
    if kind == "csv":
        return read_csv(Path(path).read_bytes(), encoding, delimiter)
    return read_workbook(path, kind, sheet)


# --- headers and mapping -----------------------------------------------------------------------------------


def headers(grid: Grid, header_row: int = 1, header_rows: int = 1) -> list[str]:
    """Column titles from ``header_rows`` rows starting at the ``header_row``-th non-blank row (1-based).
    A merged title covers the columns of its merged cells (a file that does not say which cells are merged,
    a CSV, has an upper title cover the blank cells after it); titles of several rows are joined with
    " / "; an untitled column is "Column N"."""
    width = max((len(cells) for _n, cells in grid.rows), default=0)
    start = max(0, header_row - 1)
    chosen = grid.rows[start : start + max(1, header_rows)]
    spread = _merged_titles(grid, chosen)
    parts: list[list[str]] = [[] for _ in range(width)]
    for index, (number, cells) in enumerate(chosen):
        guess = not grid.merged and index < len(chosen) - 1
        previous = ""
        for column in range(width):
            text = _title(cells[column]) if column < len(cells) else ""
            if not text:
                text = spread.get((number, column), previous if guess else "")
            previous = text
            if text and (not parts[column] or parts[column][-1] != text):
                parts[column].append(text)
    titles = [" / ".join(p) if p else _("Column %(n)d", n=i + 1) for i, p in enumerate(parts)]
    seen: dict[str, int] = {}
    for i, title in enumerate(titles):
        seen[title] = seen.get(title, 0) + 1
        if seen[title] > 1:
            titles[i] = f"{title} ({seen[title]})"
    return titles


def _merged_titles(grid: Grid, chosen: list[tuple[int, list[Any]]]) -> dict[tuple[int, int], str]:
    """(row number, column) -> the title of the merged range the cell lies in, for the header rows."""
    texts = {number: cells for number, cells in chosen}
    spread: dict[tuple[int, int], str] = {}
    for (top, left), (bottom, right) in grid.merged:
        cells = texts.get(top + 1)
        if cells is None or left >= len(cells):
            continue
        title = _title(cells[left])
        for row in range(top + 1, bottom + 2):
            for column in range(left, min(right + 1, left + 1000)):
                spread[(row, column)] = title
    return spread


def _title(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.isoformat()
    return " ".join(str(value).split())[:200]


def data_rows(grid: Grid, header_row: int = 1, header_rows: int = 1) -> list[tuple[int, list[Any]]]:
    """The rows under the header."""
    return grid.rows[max(0, header_row - 1) + max(1, header_rows) :]


def folded(text: str) -> str:
    """A label as matching compares it: case, spaces, punctuation around and ё/е do not matter."""
    return "".join(str(text).casefold().replace("ё", "е").split()).strip(".:*")


def auto_map(titles: Sequence[str], fields: Sequence[tuple[str, str]]) -> dict[int, str]:
    """Column index -> field name, for columns whose title is a field's label or API name (``fields``:
    (name, label) pairs). Each field is taken once, by the first column that names it."""
    by_key: dict[str, str] = {}
    for name, label in fields:
        by_key.setdefault(folded(label), name)
    for name, _label in fields:
        by_key.setdefault(folded(name), name)
    mapping: dict[int, str] = {}
    taken: set[str] = set()
    for index, title in enumerate(titles):
        name = by_key.get(folded(title))
        if name is not None and name not in taken:
            mapping[index] = name
            taken.add(name)
    return mapping
