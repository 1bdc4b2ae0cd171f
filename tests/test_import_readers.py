"""Reading imported files: kinds by content (zip bombs and archives refused), workbooks written by us and by
LibreOffice (xlsx, ods, xls), CSV in the encodings and delimiters Russian offices write, headers (merged,
several rows), mapping columns to fields, and the registry reading and inferring cells. The readers and
parsers never raise anything but their own clear error."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
import xlsxwriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custom_fields.types import REGISTRY, FieldValueError, bare_spec, excel_serial, infer_field_type
from exports import readers
from exports.readers import ImportFileError

BIG = 500 * 1024 * 1024
ROWS = [
    ["Иванов Иван", "ivan@example.com", "+7 495 123-45-67", "1 234,56", "31.12.2025", "да"],
    ["Пётр Петров", "petr@example.com", "8 (916) 123-45-67", "99,5", "2025-01-15", "нет"],
]
HEADER = ["ФИО", "E-mail", "Телефон", "Сумма", "Дата", "Клиент"]


def csv_bytes(encoding: str, delimiter: str = ";", *, bom: bool = False) -> bytes:
    lines = [delimiter.join(HEADER), "", *(delimiter.join(r) for r in ROWS), ""]
    data = "\r\n".join(lines).encode(encoding)
    return (b"\xef\xbb\xbf" if bom else b"") + data


@pytest.mark.parametrize(
    ("encoding", "bom", "expected"),
    [
        ("utf-8", False, "utf-8"),
        ("utf-8", True, "utf-8-sig"),
        ("cp1251", False, "cp1251"),
        ("koi8_r", False, "koi8_r"),
        ("cp866", False, "cp866"),
    ],
)
def test_csv_encodings_are_detected(encoding: str, bom: bool, expected: str) -> None:
    data = csv_bytes(encoding, bom=bom) * 1  # a short file: the hardest case for guessing
    grid = readers.read_csv(data)
    assert grid.encoding == expected and grid.delimiter == ";"
    assert [cells for _n, cells in grid.rows] == [HEADER, *ROWS]
    assert [n for n, _c in grid.rows] == [1, 3, 4]  # the blank line is skipped; numbers are the file's


@pytest.mark.parametrize("delimiter", [";", ",", "\t", "|"])
def test_delimiters_are_detected_and_quoted_fields_keep_line_breaks(delimiter: str) -> None:
    text = delimiter.join(["Название", "Комментарий", "Сумма"]) + "\r\n"
    text += delimiter.join(["ООО «Ромашка»", '"первая строка\r\nвторая; строка, ""цитата"""', "12"]) + "\r\n"
    text += delimiter.join(["ИП Сидоров", "коротко", "7"]) + "\r\n"
    grid = readers.read_csv(text.encode("utf-8"))
    assert grid.delimiter == delimiter
    assert grid.rows[1][1] == ["ООО «Ромашка»", 'первая строка\r\nвторая; строка, "цитата"', "12"]
    assert grid.rows[2] == (4, ["ИП Сидоров", "коротко", "7"])


def test_the_user_overrides_encoding_and_delimiter() -> None:
    data = csv_bytes("cp1251")
    as_koi = readers.read_csv(data, encoding="koi8_r", delimiter=",")
    assert as_koi.encoding == "koi8_r" and as_koi.delimiter == ","
    assert as_koi.rows[0][1] != HEADER
    with pytest.raises(ImportFileError, match="encoding"):
        readers.read_csv(data, encoding="utf-8")
    with pytest.raises(ImportFileError):
        readers.read_csv(data, encoding="latin-1")
    with pytest.raises(ImportFileError):
        readers.read_csv(data, delimiter="x")


def test_kinds_are_told_by_content_not_name(tmp_path: Path) -> None:
    book = tmp_path / "clients.csv"  # an xlsx named .csv
    make_workbook(book)
    assert readers.sniff_kind(book, BIG) == "xlsx"
    text = tmp_path / "clients.xlsx"  # a CSV named .xlsx
    text.write_bytes(csv_bytes("cp1251"))
    assert readers.sniff_kind(text, BIG) == "csv"
    archive = tmp_path / "photos.xlsx"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("photo.jpg", b"x" * 100)
    with pytest.raises(ImportFileError, match="archive"):
        readers.sniff_kind(archive, BIG)
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"PK\x03\x04" + os.urandom(200))
    with pytest.raises(ImportFileError, match="damaged"):
        readers.sniff_kind(broken, BIG)


def test_a_zip_bomb_is_refused_before_it_is_read(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/worksheets/sheet1.xml", b"0" * (20 * 1024 * 1024))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ImportFileError, match="unpacks"):
        readers.read(bomb, max_unpacked=10 * 1024 * 1024)


def make_workbook(path: Path) -> None:
    """Two header rows with merged titles, a blank row, dates, a formula, a number stored as a serial."""
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Клиенты")
    book.add_worksheet("Пустой")
    day = book.add_format({"num_format": "dd.mm.yyyy"})
    moment = book.add_format({"num_format": "dd.mm.yyyy hh:mm"})
    sheet.merge_range(0, 0, 0, 1, "Контакт")
    sheet.merge_range(0, 2, 0, 4, "Деньги")
    sheet.write_string(0, 5, "Расчёт")
    for column, title in enumerate(["Имя", "Телефон", "Сумма", "Создан", "Когда", "Итого"]):
        sheet.write_string(1, column, title)
    sheet.write_string(2, 0, "Иван")
    sheet.write_string(2, 1, "+7 495 123-45-67")
    sheet.write_number(2, 2, 1234.5)
    sheet.write_datetime(2, 3, dt.datetime(2025, 12, 31), day)
    sheet.write_datetime(2, 4, dt.datetime(2025, 12, 31, 14, 30), moment)
    sheet.write_formula(2, 5, "=C3*2", None, 2469)
    # row 4 (index 3) left blank
    sheet.write_string(4, 0, "Мария")
    sheet.write_number(4, 2, 10)
    sheet.write_number(4, 3, 45000)  # a serial without a date format: still a date in a date column
    book.close()


def check_workbook(grid: readers.Grid) -> None:
    assert grid.sheets == ["Клиенты", "Пустой"] and grid.sheet == "Клиенты"
    titles = readers.headers(grid, header_row=1, header_rows=2)
    assert titles[:3] == ["Контакт / Имя", "Контакт / Телефон", "Деньги / Сумма"]
    assert titles[3:] == ["Деньги / Создан", "Деньги / Когда", "Расчёт / Итого"]
    rows = readers.data_rows(grid, 1, 2)
    assert [n for n, _c in rows] == [3, 5]  # the blank row is skipped, the file's numbers kept
    first, second = rows[0][1], rows[1][1]
    assert first[0] == "Иван" and first[2] == 1234.5
    assert first[3] in (dt.date(2025, 12, 31), dt.datetime(2025, 12, 31))
    assert first[4] == dt.datetime(2025, 12, 31, 14, 30)
    assert first[5] == 2469  # the formula's value, never the formula
    date = REGISTRY["date"].import_parser(bare_spec("date"))
    assert date(first[3]) == dt.date(2025, 12, 31) and date(second[3]) == dt.date(2023, 3, 15)


def test_a_workbook_we_wrote_is_read_with_merged_headers_dates_and_formulas(tmp_path: Path) -> None:
    path = tmp_path / "clients.xlsx"
    make_workbook(path)
    grid = readers.read(path, max_unpacked=BIG)
    assert grid.kind == "xlsx" and grid.merged
    check_workbook(grid)
    other = readers.read(path, max_unpacked=BIG, sheet="Пустой")
    assert other.sheet == "Пустой" and other.rows == []


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The workbook converted by LibreOffice (headless) to ods and xls, and a CSV converted to xlsx: files no
    code of ours wrote."""
    soffice = shutil.which("soffice")
    if soffice is None:
        if os.environ.get("CI"):
            pytest.fail("LibreOffice is required in CI (make office installs it)")
        pytest.skip("LibreOffice is not installed (make office installs it)")
    folder = tmp_path_factory.mktemp("office")
    source = folder / "clients.xlsx"
    make_workbook(source)
    (folder / "plain.csv").write_bytes(csv_bytes("utf-8", "\t"))
    out = folder / "out"
    profile = folder / "profile"

    def convert(target: str, path: Path, *options: str) -> None:
        subprocess.run(  # noqa: S603
            [soffice, f"-env:UserInstallation=file://{profile}", "--headless", *options, "--convert-to",
             target, "--outdir", str(out), str(path)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    convert("ods", source)
    convert("xls", source)
    utf8 = "--infilter=Text - txt - csv (StarCalc):9,34,76,1"
    convert("xlsx:Calc MS Excel 2007 XML", folder / "plain.csv", utf8)
    return {"ods": out / "clients.ods", "xls": out / "clients.xls", "csv-xlsx": out / "plain.xlsx"}


@pytest.mark.parametrize("kind", ["ods", "xls"])
def test_workbooks_written_by_libreoffice_are_read(converted: dict[str, Path], kind: str) -> None:
    grid = readers.read(converted[kind], max_unpacked=BIG)
    assert grid.kind == kind
    check_workbook(grid)


def test_a_csv_libreoffice_made_into_xlsx_is_read_with_typed_cells(converted: dict[str, Path]) -> None:
    grid = readers.read(converted["csv-xlsx"], max_unpacked=BIG)
    assert grid.kind == "xlsx"
    assert readers.headers(grid) == HEADER
    rows = readers.data_rows(grid)
    assert [cells[0] for _n, cells in rows] == ["Иванов Иван", "Пётр Петров"]
    # LibreOffice read "31.12.2025" and "2025-01-15" as dates (an en-US profile keeps the first as text)
    date = REGISTRY["date"].import_parser(bare_spec("date"))
    assert {date(cells[4]) for _n, cells in rows} == {dt.date(2025, 12, 31), dt.date(2025, 1, 15)}


def test_headers_choice_of_row_and_untitled_columns() -> None:
    text = "Отчёт за декабрь;;\r\nИмя;;Сумма\r\nИван;x;1\r\n"
    grid = readers.read_csv(text.encode("utf-8"), delimiter=";")
    assert readers.headers(grid, header_row=2) == ["Имя", "Column 2", "Сумма"]
    assert readers.data_rows(grid, header_row=2) == [(3, ["Иван", "x", "1"])]
    same = readers.read_csv(b"a;a;b\r\n1;2;3\r\n")
    assert readers.headers(same) == ["a", "a (2)", "b"]


def test_columns_map_to_fields_by_label_or_api_name() -> None:
    fields = [("name", "Название"), ("email", "E-mail"), ("f_12", "Ёмкость склада"), ("tax_id", "ИНН")]
    titles = ["  название ", "EMAIL", "емкость  склада", "tax_id", "Непонятно", "Название"]
    assert readers.auto_map(titles, fields) == {0: "name", 1: "email", 2: "f_12", 3: "tax_id"}


@pytest.mark.parametrize(
    ("type_name", "raw", "expected"),
    [
        ("decimal", "1 234,56", Decimal("1234.56")),
        ("decimal", "1,234.56", Decimal("1234.56")),
        ("decimal", "1\u00a0234,5", Decimal("1234.50")),
        ("decimal", "12,5%", Decimal("12.50")),
        ("money", "1 234,56 ₽", Decimal("1234.56")),
        ("money", "$1,234.56", Decimal("1234.56")),
        ("integer", "12 345", 12345),
        ("integer", 12.0, 12),
        ("date", "31.12.2025", dt.date(2025, 12, 31)),
        ("date", "2025-12-31", dt.date(2025, 12, 31)),
        ("date", 46022, dt.date(2025, 12, 31)),
        ("date", dt.datetime(2025, 12, 31, 0, 0), dt.date(2025, 12, 31)),
        ("boolean", "да", True),
        ("boolean", "Нет", False),
        ("boolean", "+", True),
        ("boolean", "-", False),
        ("boolean", 1, True),
        ("boolean", "yes", True),
        ("text", "  Иван\u00a0", "Иван"),
    ],
)
def test_cells_are_parsed_by_the_registry(type_name: str, raw: object, expected: object) -> None:
    parse = REGISTRY[type_name].import_parser(bare_spec(type_name))
    assert parse(raw) == expected


def test_date_time_cells_and_serials() -> None:
    parse = REGISTRY["datetime"].import_parser(bare_spec("datetime"))
    assert parse(46022.5) == dt.datetime(2025, 12, 31, 12, 0, tzinfo=dt.UTC)
    assert parse("31.12.2025 14:30") == dt.datetime(2025, 12, 31, 14, 30, tzinfo=dt.UTC)
    assert excel_serial(1) == dt.datetime(1899, 12, 31)
    with pytest.raises(FieldValueError):
        parse(-5)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1", "2", "12 345", ""], "integer"),
        ([1, 2, 3], "integer"),
        (["1 234,56", "2,5"], "decimal"),
        ([1, 2.5], "decimal"),
        (["1 234,56 ₽", "100 руб."], "money"),
        (["12%", "5,5 %"], "percent"),
        (["31.12.2025", "2025-01-01"], "date"),
        ([dt.date(2025, 1, 1), dt.datetime(2025, 1, 2)], "date"),
        (["31.12.2025 14:30", dt.datetime(2025, 1, 2, 10, 0)], "datetime"),
        (["да", "нет", "да"], "boolean"),
        (["a@example.com", "b@example.org"], "email"),
        (["+7 495 123-45-67", "8 (916) 123-45-67"], "phone"),
        (["https://example.com", "www.example.org"], "url"),
        (["Москва", "Казань", "Москва", "Казань", "Москва"], "single_select"),
        (["Иван", "Пётр"], "text"),
        (["7707083893", "7736207543"], "text"),  # tax ids, not numbers
        (["007", "012"], "text"),  # codes keep their zeros
        (["x" * 3000], "long_text"),
        ([], "text"),
    ],
)
def test_types_are_inferred_in_order(values: list, expected: str) -> None:
    name, settings_ = infer_field_type(values)
    assert name == expected
    REGISTRY[name].clean_settings(settings_)  # what it proposes is a valid field


def test_inferred_settings() -> None:
    assert infer_field_type(["1 234,56 ₽"])[1] == {"currency": "RUB"}
    assert infer_field_type(["1,5", "2,125"])[1] == {"scale": 3}
    assert infer_field_type(["Да", "Нет", "Да", "Нет"])[0] == "boolean"
    name, options = infer_field_type(["A", "B", "A", "B"])
    assert name == "single_select" and [o["label"] for o in options["options"]] == ["A", "B"]


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(
    st.binary(max_size=2000),
    st.sampled_from([None, *readers.ENCODINGS]),
    st.sampled_from([None, *readers.DELIMITERS]),
)
def test_the_csv_reader_raises_only_its_own_error(
    data: bytes, encoding: str | None, delimiter: str | None
) -> None:
    try:
        grid = readers.read_csv(data, encoding, delimiter)
    except ImportFileError:
        return
    readers.headers(grid, 1, 2)
    readers.auto_map(readers.headers(grid), [("name", "Имя")])


@FUZZ
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300), st.sampled_from(readers.DELIMITERS))
def test_text_round_trips_through_the_reader(text: str, delimiter: str) -> None:
    try:
        readers.read_csv(text.encode("utf-8"), delimiter=delimiter)
    except ImportFileError:
        pass


CELLS = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.dates(),
    st.datetimes(),
)


@FUZZ
@given(st.sampled_from(sorted(n for n in REGISTRY if n not in ("link", "user"))), CELLS)
def test_import_parsers_raise_only_field_value_errors(type_name: str, cell: object) -> None:
    parse = REGISTRY[type_name].import_parser(bare_spec(type_name))
    try:
        parse(cell)
    except FieldValueError:
        pass


@FUZZ
@given(st.lists(CELLS, max_size=30))
def test_inference_always_answers_with_a_valid_field(values: list) -> None:
    name, settings_ = infer_field_type(values)
    REGISTRY[name].clean_settings(settings_)
