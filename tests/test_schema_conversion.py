"""Type changes converted in the database: for every pair the registry converts in SQL, the values SQL
converts are exactly what the Python conversion gives (on both databases), values that do not convert are
found the same with or without SQL, and values SQL does not cover still go through Python."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update

from app.extensions import db
from custom_fields import conversion, ddl, service
from custom_fields.runtime import current, refresh
from custom_fields.spec import FieldSpec
from custom_fields.types import REGISTRY, FieldValueError
from models import Field, SchemaChange
from tests.tables_helpers import insert, new_field, new_table

PROPERTY = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

TEXT_NUMBERS = [
    "42",
    " 42 ",
    "-7",
    "007",
    "-0",
    "1 000",
    "12,0",
    "1.5",
    "abc",
    "",
    "12\n",
    "٣",
    "+5",
    "99999999999999999999",
    "123456789012345678",
    "-123456789012345678",
    "1e3",
    ".5",
    "12,",
]
TEXT_DECIMALS = [
    "1,5",
    "1.555",
    "-0.004",
    "2.675",
    "-2.675",
    "1 234,56",
    "1,234.56",
    "12%",
    "abc",
    "0.1",
    "9999999999999999",
    "99999999999999.995",
    "999999999999999",
    "123.456",
    "-0",
    "7",
    "3,14159",
]
TEXT_DATES = [
    "2025-12-31",
    "31.12.2025",
    "2024-02-29",
    "2023-02-29",
    "29.02.2000",
    "29.02.1900",
    "0000-01-01",
    "2025-13-01",
    "2025-00-10",
    "31.04.2025",
    "30.04.2025",
    "1.1.2025",
    "2025/12/31",
    " 2025-01-01 ",
    "2025-01-01T10:00",
    "9999-12-31",
    "0001-01-01",
    "00.01.2025",
    "31.12.0000",
]
TEXTS = [
    "abc",
    " abc ",
    "abcdef",
    "а б",
    "abc\n",
    "\tabc",
    "x",
    "Ёлка!",
    "«кавычки»",
    "a\u00a0",
    "a\nb",
    "12",
]
DECIMALS = ("decimal", "money", "percent")
WORDS = ["да", "Да", "ДА", "yes", "YES", "Yes", "no", "x", "X", "maybe", "1", "0", " нет", "Истина", "✓"]

CASES: list[tuple[str, dict[str, Any], str, dict[str, Any], list[Any]]] = [
    ("text", {}, "integer", {}, TEXT_NUMBERS),
    ("long_text", {}, "integer", {}, TEXT_NUMBERS),
    ("text", {}, "decimal", {"scale": 2}, TEXT_DECIMALS),
    ("text", {}, "decimal", {"scale": 0}, TEXT_DECIMALS),
    ("text", {}, "money", {"currency": "RUB"}, [*TEXT_DECIMALS, "100 ₽", "5 USD"]),
    ("text", {}, "percent", {"scale": 1}, [*TEXT_DECIMALS, "5%"]),
    (
        "integer",
        {},
        "decimal",
        {"scale": 2},
        [0, 5, -5, 10**14, 10**15 - 1, 10**15, 10**16 - 1, 10**16, 2**62],
    ),
    ("integer", {}, "text", {"max_length": 5}, [1, 12345, 123456, -1234, -12345, 0]),
    ("integer", {}, "long_text", {}, [1, -(2**62), 0]),
    (
        "decimal",
        {"scale": 3},
        "integer",
        {},
        [Decimal("1.000"), Decimal("1.500"), Decimal("-2.000"), Decimal("0")],
    ),
    (
        "decimal",
        {"scale": 3},
        "decimal",
        {"scale": 2},
        [
            Decimal("2.675"),
            Decimal("-2.675"),
            Decimal("0.004"),
            Decimal("-0.005"),
            Decimal("123456789012345.999"),
        ],
    ),
    (
        "decimal",
        {"scale": 2},
        "text",
        {"max_length": 6},
        [Decimal("1.5"), Decimal("-0.01"), Decimal("1234.56")],
    ),
    ("money", {"currency": "RUB"}, "decimal", {"scale": 4}, [Decimal("1.50"), Decimal("-99.99")]),
    ("text", {}, "text", {"max_length": 5}, TEXTS),
    ("long_text", {}, "text", {"max_length": 255}, TEXTS),
    ("text", {}, "long_text", {}, TEXTS),
    ("text", {}, "date", {}, TEXT_DATES),
    (
        "text",
        {},
        "single_select",
        {"options": ["Новый", "В работе", "Да"]},
        ["Новый", "новый", "НОВЫЙ ", "В работе", "Закрыт", "Да", "да"],
    ),
    (
        "text",
        {},
        "multi_select",
        {"options": ["Новый", "В работе"]},
        ["Новый", "новый", "Новый, В работе", "x"],
    ),
    ("text", {}, "boolean", {}, WORDS),
    ("boolean", {}, "text", {"max_length": 4}, [True, False]),
    ("boolean", {}, "single_select", {"options": ["true", "нет"]}, [True, False]),
    (
        "single_select",
        {"options": ["Новый", "Очень длинный статус"]},
        "text",
        {"max_length": 10},
        ["Новый", "Очень длинный статус"],
    ),
    ("single_select", {"options": ["A", "B"]}, "multi_select", {"options": ["B", "C"]}, ["A", "B"]),
    ("single_select", {"options": ["12", "x"]}, "integer", {}, ["12", "x"]),
    ("text", {}, "email", {}, ["a@example.com", "nope"]),
]


def _case_ids(cases: list[tuple[Any, ...]]) -> list[str]:
    """``text-date-3``: the source type, the new type and the case's place."""
    return [f"{case[0]}-{case[2]}-{i}" for i, case in enumerate(cases)]


def _field_with(source: str, source_settings: dict[str, Any], values: list[Any]) -> tuple[Any, Field]:
    entity = new_table()
    row = new_field(entity, "Поле", source, settings=source_settings)
    spec = FieldSpec.of(row)
    model = current().classes[entity.slug]
    for value in values:
        if REGISTRY[source].has_options:  # options are stored by their generated ids
            value = REGISTRY[source].parse(value, spec)
        db.session.add(model(**{row.name: value}))
    db.session.commit()
    return entity, row


def _target_spec(row: Field, new_type: str, new_settings: dict[str, Any], column: str) -> FieldSpec:
    old = FieldSpec.of(row)
    cleaned = REGISTRY[new_type].clean_settings(dict(new_settings), old)
    return FieldSpec(**{**old.__dict__, "type": new_type, "settings": cleaned, "column_name": column})


def _compare(entity: Any, row: Field, new_type: str, new_settings: dict[str, Any]) -> list[Any]:
    """Converts into a scratch column in SQL only, and checks every row SQL converted against Python;
    then the offenders with and without SQL. Returns the stored values SQL converted. Rolled back."""
    try:
        return _compare_in_transaction(entity, row, new_type, new_settings)
    finally:
        db.session.rollback()


def _compare_in_transaction(
    entity: Any, row: Field, new_type: str, new_settings: dict[str, Any]
) -> list[Any]:
    conn = db.session.connection()
    table_name = entity.table_name
    # A name of its own each time: SQLite commits DDL that no write began a transaction for.
    new = _target_spec(row, new_type, new_settings, f"f_scratch_{uuid.uuid4().hex[:8]}")
    in_sql = conversion.plan(conn, table_name, FieldSpec.of(row), new)
    in_python = conversion.plan(conn, table_name, FieldSpec.of(row), new, use_sql=False)
    target = REGISTRY[new_type]
    ddl.add_column(conn, table_name, new.column_name, target.column_type(new))
    covered: list[Any] = []
    if in_sql.sql is not None:
        conn.execute(
            update(in_sql.table)
            .where(in_sql.sql.covers(in_sql.source))
            .values({new.column_name: in_sql.sql.value(in_sql.source)})
        )
        flag = in_sql.sql.covers(in_sql.source)
        rows = conn.execute(select(in_sql.table.c.id, in_sql.source, in_sql.target, flag)).all()
        for record_id, value, converted, was_covered in rows:
            if not was_covered:
                continue
            covered.append(value)
            try:
                expected = in_python.convert(value)
            except FieldValueError as exc:
                message = f"SQL converted {value!r} (record {record_id}), Python refuses: {exc}"
                raise AssertionError(message) from None
            assert target.to_json(converted, new) == target.to_json(expected, new), (
                value,
                converted,
                expected,
            )
    failed_sql, offenders_sql = conversion.offenders(conn, in_sql)
    failed_python, offenders_python = conversion.offenders(conn, in_python)
    assert failed_sql == failed_python
    assert [o[0] for o in offenders_sql] == [o[0] for o in offenders_python]
    return covered


@pytest.mark.parametrize(
    ("source", "source_settings", "new_type", "new_settings", "values"),
    CASES,
    ids=_case_ids(CASES),
)
def test_sql_conversion_gives_what_python_gives(
    app_ctx, source, source_settings, new_type, new_settings, values
):  # noqa: ANN001, E501
    entity, row = _field_with(source, source_settings, values)
    covered = _compare(entity, row, new_type, new_settings)
    # SQLite keeps decimals as REAL: a decimal becomes text or another scale in Python there.
    sqlite_decimal = db.engine.dialect.name == "sqlite" and source in DECIMALS and new_type != "integer"
    if new_type == "email" or sqlite_decimal:
        assert covered == []
    else:
        assert covered, f"{source} -> {new_type}: nothing was converted in SQL"


def _refill(entity: Any, row: Field, values: list[Any]) -> None:
    model = current().classes[entity.slug]
    db.session.execute(delete(model))
    db.session.add_all([model(**{row.name: value}) for value in values])
    db.session.commit()


def test_sql_conversion_of_typed_numbers_and_dates(app_ctx) -> None:  # noqa: ANN001
    entity, row = _field_with("text", {"max_length": 255}, [])

    @given(
        st.lists(st.text(alphabet="0123456789 ,.-+e%\n\t₽", min_size=1, max_size=25), min_size=1, max_size=40)
    )
    @PROPERTY
    def check(values: list[str]) -> None:
        _refill(entity, row, values)
        for new_type, new_settings in (
            ("integer", {}),
            ("decimal", {"scale": 2}),
            ("money", {}),
            ("date", {}),
        ):
            _compare(entity, row, new_type, new_settings)

    check()


def test_sql_conversion_of_date_shapes(app_ctx) -> None:  # noqa: ANN001
    entity, row = _field_with("text", {"max_length": 255}, [])

    @given(
        st.lists(
            st.from_regex(r"[0-9]{1,4}[-.][0-9]{1,2}[-.][0-9]{1,4}", fullmatch=True), min_size=1, max_size=40
        )
    )
    @PROPERTY
    def check(values: list[str]) -> None:
        _refill(entity, row, values)
        _compare(entity, row, "date", {})

    check()


def test_change_type_converts_mixed_values_and_records_the_count(app_ctx) -> None:  # noqa: ANN001
    """Values SQL converts and values only Python converts ("1 000", " 7 ") in one change."""
    entity = new_table()
    code = new_field(entity, "Код", "text")
    ids = [insert(entity, **{code.name: value}) for value in ("42", "1 000", " 7 ", "-3")]
    empty = insert(entity)
    changed = service.change_type(code.id, "integer", user_id=None)
    refresh()
    model = current().classes[entity.slug]
    db.session.expire_all()
    values = [getattr(db.session.get(model, i), changed.name) for i in (*ids, empty)]
    assert values == [42, 1000, 7, -3, None]
    entry = db.session.scalars(
        select(SchemaChange).where(SchemaChange.field_id == code.id, SchemaChange.action == "change_type")
    ).one()
    assert "text → integer" in entry.summary and "4 values converted" in entry.summary


def test_refusal_names_offenders_found_beside_sql_values(app_ctx) -> None:  # noqa: ANN001
    entity = new_table()
    status = new_field(entity, "Статус", "text")
    model = current().classes[entity.slug]
    db.session.add_all([model(**{status.name: "Новый"}) for _ in range(30)])
    db.session.add_all([model(**{status.name: f"Другой {i}"}) for i in range(25)])
    db.session.commit()
    with pytest.raises(service.ConversionRefused) as refused:
        service.change_type(status.id, "single_select", {"options": ["Новый"]})
    assert refused.value.total == 25 and len(refused.value.offenders) == 20
    assert all(o[1].startswith("Другой") for o in refused.value.offenders)
    db.session.expire_all()
    assert db.session.get(Field, status.id).type == "text"


def test_python_fallback_reads_in_batches(app_ctx, monkeypatch) -> None:  # noqa: ANN001
    """More values than a batch that only Python converts (e-mail addresses): all converted."""
    monkeypatch.setattr(conversion, "BATCH", 7)
    entity = new_table()
    mail = new_field(entity, "Почта", "text")
    model = current().classes[entity.slug]
    db.session.add_all([model(**{mail.name: f"User{i}@Example.COM"}) for i in range(30)])
    db.session.commit()
    changed = service.change_type(mail.id, "email")
    refresh()
    model = current().classes[entity.slug]
    values = {getattr(r, changed.name) for r in db.session.scalars(select(model)).all()}
    assert values == {f"User{i}@example.com" for i in range(30)}


def test_options_whose_labels_hold_commas_survive_new_options(app_ctx) -> None:  # noqa: ANN001
    """A multiple select given new options (the type form, same type): each value keeps its options, found
    by their whole labels, "Синий, тёмный" included."""
    entity = new_table()
    colours = new_field(entity, "Цвета", "multi_select", settings={"options": ["Синий, тёмный", "Красный"]})
    both = REGISTRY["multi_select"].parse(["Синий, тёмный", "Красный"], FieldSpec.of(colours))
    record = insert(entity, **{colours.name: both})
    changed = service.change_type(
        colours.id, "multi_select", {"options": ["Белый", "Красный", "Синий, тёмный"]}, user_id=None
    )
    refresh()
    new_spec = FieldSpec.of(changed)
    model = current().classes[entity.slug]
    db.session.expire_all()
    stored = getattr(db.session.get(model, record), changed.name)
    assert REGISTRY["multi_select"].to_text(stored, new_spec) == "Красный, Синий, тёмный"


POSTGRESQL_ONLY = "postgresql"  # values SQL converts on PostgreSQL only (SQLite keeps decimals as REAL)

SQL_COVERS: list[tuple[str, dict[str, Any], str, dict[str, Any], dict[Any, bool | str]]] = [
    (
        "text",
        {},
        "date",
        {},
        {
            **dict.fromkeys(
                [
                    "2025-12-31",
                    "31.12.2025",
                    "01.01.2025",
                    "2024-02-29",
                    "29.02.2024",
                    "2000-02-29",
                    "29.02.2000",
                    "2025-02-28",
                    "30.04.2025",
                    "30.06.2025",
                    "30.09.2025",
                    "30.11.2025",
                    "31.01.2025",
                    "31.03.2025",
                    "31.05.2025",
                    "31.07.2025",
                    "31.08.2025",
                    "31.10.2025",
                    "0001-01-01",
                    "9999-12-31",
                ],
                True,
            ),
            **dict.fromkeys(
                [
                    "2021-02-29",
                    "29.02.2025",
                    "2024-02-30",
                    "30.02.2024",
                    "2023-02-29",
                    "1900-02-29",
                    "29.02.2100",
                    "2025-02-30",
                    "31.04.2025",
                    "31.06.2025",
                    "31.09.2025",
                    "31.11.2025",
                    "0000-01-01",
                    "2025-13-01",
                    "2025-00-10",
                    "2025-01-00",
                    "2025-01-32",
                    "32.01.2025",
                    "1.1.2025",
                    " 2025-01-01 ",
                    "2025-01-01\n",
                    "2025/12/31",
                ],
                False,
            ),
        },
    ),
    (
        "text",
        {},
        "decimal",
        {"scale": 2},
        {
            **dict.fromkeys(["12.34", "12,5", "-7", "9" * 13, "-" + "9" * 13], True),
            **dict.fromkeys(["1.555", "9" * 14, "9" * 15, "-" + "9" * 15], POSTGRESQL_ONLY),
            **dict.fromkeys(["9" * 16, "1 000", " 5", "5\n", "abc", ".5", "12.", "1e3"], False),
        },
    ),
    (
        "integer",
        {},
        "decimal",
        {"scale": 0},
        {
            **dict.fromkeys([0, -5, 10**15 - 1, -(10**15) + 1], True),
            **dict.fromkeys([10**15, 10**17 - 1, -(10**17) + 1], POSTGRESQL_ONLY),
            **dict.fromkeys([10**17, -(10**17)], False),
        },
    ),
    ("text", {}, "text", {"max_length": 5}, {"abcde": True, "Ёлка!": True, "abcdef": False, " abc": False}),
    ("text", {"max_length": 400}, "long_text", {}, {"я" * 300: True, "«я»": False, "я\n": False}),
    ("integer", {}, "text", {"max_length": 5}, {12345: True, -1234: True, 123456: False, -12345: False}),
    (
        "decimal",
        {"scale": 2},
        "text",
        {"max_length": 6},
        {Decimal("1.50"): POSTGRESQL_ONLY, Decimal("-12.5"): POSTGRESQL_ONLY, Decimal("1234.56"): False},
    ),
    (
        "decimal",
        {"scale": 3},
        "integer",
        {},
        {Decimal("1"): True, Decimal("-2"): True, Decimal("3000000000"): True, Decimal("1.5"): False},
    ),
]


@pytest.mark.parametrize(
    ("source", "source_settings", "new_type", "new_settings", "expected"),
    SQL_COVERS,
    ids=_case_ids(SQL_COVERS),
)
def test_sql_converts_exactly_the_values_it_can(
    app_ctx, source, source_settings, new_type, new_settings, expected
):  # noqa: ANN001
    """Which stored values the database converts itself (each as Python would: ``_compare``) and which it
    leaves to Python: a date that does not exist, a text too long or with spaces at an end never reaches
    SQL; every value of a common shape does (else a big table converts row by row in Python)."""
    entity, row = _field_with(source, source_settings, list(expected))
    covered = _compare(entity, row, new_type, new_settings)
    dialect = db.engine.dialect.name
    wanted = [v for v, flag in expected.items() if flag is True or flag == dialect]
    assert sorted(covered) == sorted(wanted)  # Decimal("1.000") == Decimal("1")
