"""The export writers, read back as a spreadsheet program reads them (openpyxl; csv)."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import re
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from custom_fields.spec import FieldSpec
from custom_fields.types import REGISTRY, local_timezone
from exports.csv_file import FORMULA_STARTS, CsvWriter
from exports.xlsx import MAX_CELL_TEXT, Column, WorkbookWriter, sheet_name

HOSTILE = [
    "=1+2",
    "+7 495",
    "-2+3",
    "@SUM(A1)",
    "\tTAB",
    "\rCR",
    '=HYPERLINK("http://x","y")',
    "=cmd|' /C calc'!A0",
]


def spec(type_name: str, **settings_: object) -> FieldSpec:
    return FieldSpec(1, 1, "f", "f", "F", type_name, settings=dict(settings_))


def columns() -> list[Column]:
    money = spec("money", currency="RUB", scale=2)
    return [
        Column("Название"),
        Column("Сумма", REGISTRY["money"].xlsx_format(money)),
        Column("Кол-во", REGISTRY["integer"].xlsx_format(spec("integer"))),
        Column("Дата", REGISTRY["date"].xlsx_format(spec("date"))),
        Column("Когда", REGISTRY["datetime"].xlsx_format(spec("datetime"))),
        Column("Да/нет"),
    ]


def test_cells_keep_their_types_formats_and_cyrillic(tmp_path: Path) -> None:
    path = tmp_path / "deals.xlsx"
    rows = [
        [
            "ООО «Ромашка»",
            Decimal("1234.50"),
            12,
            dt.date(2026, 12, 31),
            dt.datetime(2026, 12, 1, 13, 54),
            True,
        ],
        ["Пусто", None, None, None, None, False],
    ]
    with WorkbookWriter(path, columns(), title="Сделки", author="Анна") as writer:
        writer.write(rows)
        written = writer.close()
    assert (written.rows, written.sheets) == (2, 1)
    assert written.size == path.stat().st_size
    assert written.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()

    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["Сделки"]
    assert book.properties.title == "Сделки" and book.properties.creator == "Анна"
    sheet = book["Сделки"]
    assert [c.value for c in sheet[1]] == ["Название", "Сумма", "Кол-во", "Дата", "Когда", "Да/нет"]
    assert all(c.font.bold for c in sheet[1])
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:F3"
    name, amount, count, day, moment, flag = sheet[2]
    assert name.value == "ООО «Ромашка»" and name.data_type == "s"
    assert amount.value == 1234.5 and amount.number_format == '#,##0.00 "RUB"'
    assert count.value == 12 and count.number_format == "0"
    assert day.value == dt.datetime(2026, 12, 31) and day.number_format == "dd.mm.yyyy"
    assert moment.value == dt.datetime(2026, 12, 1, 13, 54) and moment.number_format == "dd.mm.yyyy hh:mm"
    assert flag.value is True
    assert [c.value for c in sheet[3]] == ["Пусто", None, None, None, None, False]
    # Widths from the data: the long company name's column is wider than the yes/no one.
    assert sheet.column_dimensions["A"].width > sheet.column_dimensions["F"].width


def test_text_is_never_a_formula_or_a_link(tmp_path: Path) -> None:
    path = tmp_path / "x.xlsx"
    with WorkbookWriter(path, [Column("Текст")], title="x") as writer:
        writer.write([[text] for text in [*HOSTILE, "http://example.com", "0123"]])
        writer.close()
    sheet = openpyxl.load_workbook(path).active
    cells = [row[0] for row in sheet.iter_rows(min_row=2)]
    # Control characters are stored escaped (``_x000D_``), as Excel and LibreOffice read them; openpyxl
    # leaves the escape in inline strings.
    texts = [re.sub(r"_x([0-9A-F]{4})_", lambda m: chr(int(m.group(1), 16)), c.value) for c in cells]
    assert texts == [*HOSTILE, "http://example.com", "0123"]
    assert all(c.data_type == "s" and c.hyperlink is None for c in cells)


def test_dates_excel_cannot_hold_numbers_it_would_round_and_huge_texts(tmp_path: Path) -> None:
    path = tmp_path / "x.xlsx"
    with WorkbookWriter(path, [Column("A"), Column("B")], title="x") as writer:
        writer.write(
            [
                [dt.date(1841, 5, 3), dt.datetime(5, 1, 2, 3, 4)],
                [12345678901234567, Decimal("NaN")],
                ["я" * (MAX_CELL_TEXT + 10), dt.date(1900, 3, 1)],
            ]
        )
        writer.close()
    rows = list(openpyxl.load_workbook(path).active.iter_rows(min_row=2, values_only=True))
    assert rows[0] == ("03.05.1841", "02.01.0005 03:04")
    assert rows[1] == ("12345678901234567", "NaN")
    assert len(rows[2][0]) == MAX_CELL_TEXT and rows[2][0].endswith("…")
    assert rows[2][1] == dt.datetime(1900, 3, 1)


def test_fifteen_digits_are_numbers_and_sixteen_are_text_either_sign(tmp_path: Path) -> None:
    """Excel keeps 15 significant digits: a longer whole number would be rounded, so it is written as text."""
    path = tmp_path / "x.xlsx"
    edge = 10**15
    with WorkbookWriter(path, [Column("A"), Column("B")], title="x") as writer:
        writer.write([[edge - 1, -(edge - 1)], [edge, -edge], [Markup("<b>x</b>"), 2.5]])
        writer.close()
    rows = list(openpyxl.load_workbook(path).active.iter_rows(min_row=2, values_only=True))
    assert rows[0] == (edge - 1, -(edge - 1))
    assert rows[1] == (str(edge), str(-edge))
    assert rows[2] == ("<b>x</b>", 2.5)


def test_a_full_sheet_continues_on_the_next_with_the_header(tmp_path: Path) -> None:
    path = tmp_path / "x.xlsx"
    with WorkbookWriter(
        path, [Column("№")], title="Очень длинное название таблицы: сделки [2026]", max_rows=4
    ) as w:
        w.write([[i] for i in range(1, 8)])
        written = w.close()
    book = openpyxl.load_workbook(path)
    assert written.sheets == 3 and written.rows == 7
    first = "Очень длинное название таблицы "
    assert book.sheetnames[0] == first.rstrip()[:31]
    assert [len(n) <= 31 for n in book.sheetnames] == [True] * 3
    assert book.sheetnames[1].endswith(" (2)") and book.sheetnames[2].endswith(" (3)")
    values = [[c for c in row] for sheet in book for row in sheet.iter_rows(values_only=True)]
    assert values == [["№"], [1], [2], [3], ["№"], [4], [5], [6], ["№"], [7]]


def test_an_aborted_workbook_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "x.xlsx"
    with pytest.raises(RuntimeError), WorkbookWriter(path, [Column("A")], title="x") as writer:
        writer.write([["a"]] * 300)
        raise RuntimeError("worker stopped")
    assert not path.exists()


@pytest.mark.parametrize(
    ("title", "expected"),
    [("Сделки", "Сделки"), ("a/b\\c?d*e[f]g:h", "a b c d e f g h"), ("'quoted'", "quoted"), ("[]", "Sheet")],
)
def test_sheet_names_follow_excels_rules(title: str, expected: str) -> None:
    assert sheet_name(title) == expected


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_any_title_makes_a_valid_sheet_name(title: str) -> None:
    name = sheet_name(title, 12)
    assert 1 <= len(name) <= 31 and not set(name) & set("[]:*?/\\")
    assert not name.startswith("'") and not name.endswith("'")


def test_csv_for_russian_excel(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    with CsvWriter(path, ["Название", "Сумма", "Дата"], language="ru") as writer:
        writer.write(
            [
                ["ООО «Ромашка»; и ко", Decimal("1234.50"), dt.date(2026, 12, 31)],
                *[[t, -5, None] for t in HOSTILE],
            ]
        )
        written = writer.close()
    raw = path.read_bytes()
    assert raw.startswith("\ufeff".encode()) and b"\r\n" in raw
    with open(path, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    assert rows[0] == ["Название", "Сумма", "Дата"]
    assert rows[1] == ["ООО «Ромашка»; и ко", "1234,50", "31.12.2026"]
    assert written.rows == 1 + len(HOSTILE)
    for (text, number, empty), hostile in zip(rows[2:], HOSTILE, strict=False):
        assert text.startswith("'") and text[1:].startswith(hostile[:1]) and number == "-5" and empty == ""
    assert all(h.startswith(FORMULA_STARTS) for h in HOSTILE)


def test_registry_export_values(app_ctx) -> None:  # noqa: ANN001
    assert REGISTRY["integer"].export_value(7, spec("integer")) == 7
    assert REGISTRY["money"].export_value(Decimal("1.50"), spec("money")) == Decimal("1.50")
    assert REGISTRY["boolean"].export_value(False, spec("boolean")) is False
    options = [{"id": "a1", "label": "Горячий"}, {"id": "b2", "label": "Холодный"}]
    assert REGISTRY["single_select"].export_value("a1", spec("single_select", options=options)) == "Горячий"
    assert (
        REGISTRY["multi_select"].export_value(",a1,b2,", spec("multi_select", options=options))
        == "Горячий, Холодный"
    )
    assert REGISTRY["link"].export_value(5, spec("link", target=1)) == "#5"
    moment = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
    local = REGISTRY["datetime"].export_value(moment, spec("datetime"))
    assert local.tzinfo is None
    assert local == moment.astimezone(local_timezone()).replace(tzinfo=None)
    for type_name in REGISTRY:
        assert REGISTRY[type_name].export_value(None, spec(type_name, target=1)) is None


def test_libreoffice_reads_the_workbook_as_written(tmp_path: Path) -> None:
    """An independent reader (LibreOffice Calc, headless) opens the workbook and sees the same content."""
    import os
    import shutil
    import subprocess

    soffice = shutil.which("soffice")
    if soffice is None:
        if os.environ.get("CI"):
            pytest.fail("LibreOffice is required in CI (make office installs it)")
        pytest.skip("LibreOffice is not installed (make office installs it)")
    path = tmp_path / "сделки.xlsx"
    rows = [
        [
            "ООО «Ромашка»",
            Decimal("1234.50"),
            12,
            dt.date(2026, 12, 31),
            dt.datetime(2026, 12, 1, 13, 54),
            True,
        ],
        ["=1+2", Decimal("-0.5"), None, dt.date(1841, 5, 3), None, False],
    ]
    with WorkbookWriter(path, columns(), title="Сделки") as writer:
        writer.write(rows)
        writer.close()
    profile = tmp_path / "profile"
    subprocess.run(  # noqa: S603
        [
            soffice,
            f"-env:UserInstallation=file://{profile}",
            "--headless",
            "--convert-to",
            "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,true",
            "--outdir",
            str(tmp_path),
            str(path),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with open(tmp_path / "сделки.csv", encoding="utf-8", newline="") as handle:
        seen = list(csv.reader(handle))
    assert seen[0] == ["Название", "Сумма", "Кол-во", "Дата", "Когда", "Да/нет"]
    assert seen[1] == ["ООО «Ромашка»", "1,234.50 RUB", "12", "31.12.2026", "01.12.2026 13:54", "TRUE"]
    assert seen[2] == ["=1+2", "-0.50 RUB", "", "03.05.1841", "", "FALSE"]
