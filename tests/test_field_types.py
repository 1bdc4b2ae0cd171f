"""The field-type registry: what people type (Russian formats included) parses; anything else is a clear
refusal, never a crash; a parsed value survives its own text and the database (both backends)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import column as sa_column
from sqlalchemy import insert, select
from sqlalchemy import table as sa_table

from app.extensions import db
from custom_fields import service
from custom_fields.runtime import current
from custom_fields.service import SchemaError
from custom_fields.spec import FieldSpec
from custom_fields.types import REGISTRY, FieldValueError
from models import Field
from tests.tables_helpers import new_field, new_table

OPTIONS = [{"id": "0000000a", "label": "Новый", "color": "#e3f2fd"}, {"id": "0000000b", "label": "В работе"}]


def spec(type_name: str, **settings_: object) -> FieldSpec:
    return FieldSpec(
        id=1, entity_id=1, name="f_1", column_name="f_1", label="Поле", type=type_name, settings=settings_
    )


@pytest.mark.parametrize(
    ("type_name", "raw", "expected"),
    [
        ("integer", "1 000", 1000),
        ("integer", "\u00a0-42 ", -42),
        ("integer", 7.0, 7),
        ("decimal", "1 234,56", Decimal("1234.56")),
        ("decimal", "1,234.56", Decimal("1234.56")),
        ("decimal", "12,5", Decimal("12.50")),
        ("money", "1 500 ₽", Decimal("1500.00")),
        ("money", "99,99 руб.", Decimal("99.99")),
        ("percent", "12,5%", Decimal("12.50")),
        ("boolean", "Да", True),
        ("boolean", "нет", False),
        ("date", "31.12.2025", dt.date(2025, 12, 31)),
        ("date", "2025-12-31", dt.date(2025, 12, 31)),
        ("date", dt.datetime(2025, 1, 2, 10, 0), dt.date(2025, 1, 2)),
        ("email", "Ivan@Example.RU", "Ivan@example.ru"),
        ("email", "mailto:a@b.ru", "a@b.ru"),
        ("phone", "8 (495) 123-45-67", "+74951234567"),
        ("phone", "+7 912 000 00 00", "+79120000000"),
        ("url", "example.ru", "https://example.ru"),
        ("text", "  текст  ", "текст"),
        ("text", "", None),
    ],
)
def test_typed_in_values_parse(app_ctx, type_name, raw, expected) -> None:  # noqa: ANN001
    settings_ = {"scale": 2} if type_name in ("decimal", "percent") else {}
    assert REGISTRY[type_name].parse(raw, spec(type_name, **settings_)) == expected


@pytest.mark.parametrize(
    ("type_name", "raw"),
    [
        ("integer", "1.5"),
        ("integer", "десять"),
        ("integer", True),
        ("integer", "9" * 30),
        ("decimal", "1e400"),
        ("decimal", "NaN"),
        ("boolean", "может быть"),
        ("date", "31.02.2025"),
        ("date", "завтра"),
        ("email", "not-an-email"),
        ("email", "a@b"),
        ("phone", "12"),
        ("phone", "+7 abc"),
        ("url", "javascript:alert(1)"),
        ("url", "https://"),
        ("text", "x" * 300),
        ("single_select", "Закрыт"),
        ("multi_select", {"a": 1}),
        ("link", "abc"),
        ("link", 2**40),
    ],
)
def test_bad_values_are_clear_refusals(app_ctx, type_name, raw) -> None:  # noqa: ANN001
    settings_ = (
        {"options": OPTIONS} if "select" in type_name else {"target": 1} if type_name == "link" else {}
    )
    with pytest.raises(FieldValueError) as refused:
        REGISTRY[type_name].parse(raw, spec(type_name, **settings_))
    assert str(refused.value)


def test_selects_accept_ids_or_labels_in_any_case(app_ctx) -> None:  # noqa: ANN001
    single, multi = REGISTRY["single_select"], REGISTRY["multi_select"]
    assert single.parse("в РАБОТЕ", spec("single_select", options=OPTIONS)) == "0000000b"
    stored = multi.parse("В работе; новый", spec("multi_select", options=OPTIONS))
    assert stored == ",0000000a,0000000b,"
    assert multi.to_json(stored, spec("multi_select")) == ["0000000a", "0000000b"]
    assert multi.to_text(stored, spec("multi_select", options=OPTIONS)) == "Новый, В работе"


def test_html_is_escaped_and_links_are_safe(app_ctx) -> None:  # noqa: ANN001
    html = REGISTRY["text"].to_html("<img src=x onerror=alert(1)>", spec("text"))
    assert "<img" not in html and "&lt;img" in html
    url = REGISTRY["url"].to_html('https://e.ru/"><script>', spec("url"))
    assert "<script>" not in url
    badge = REGISTRY["single_select"].to_html(
        "0000000a", spec("single_select", options=[{"id": "0000000a", "label": "<b>x</b>", "color": "red;x"}])
    )
    assert "<b>" not in badge and "red;x" not in badge


VALUES = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.dates(),
    st.none(),
    st.lists(st.text(max_size=5), max_size=3),
)
ROUND_TRIP_TYPES = [
    ("text", {"max_length": 50}), ("long_text", {}), ("integer", {}), ("decimal", {"scale": 3}),
    ("money", {"currency": "RUB"}), ("percent", {"scale": 2}), ("boolean", {}), ("date", {}),
    ("datetime", {}),
    ("single_select", {"options": OPTIONS}), ("multi_select", {"options": OPTIONS}), ("email", {}),
    ("phone", {}), ("url", {}),
]  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=VALUES, chosen=st.sampled_from(ROUND_TRIP_TYPES))
def test_parse_refuses_or_round_trips_through_text(app_ctx, raw, chosen) -> None:  # noqa: ANN001
    type_name, settings_ = chosen
    ftype, field_spec = REGISTRY[type_name], spec(type_name, **settings_)
    try:
        value = ftype.parse(raw, field_spec)
    except FieldValueError:
        return
    assert ftype.parse(ftype.to_text(value, field_spec), field_spec) == value
    ftype.to_html(value, field_spec)  # never raises


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=VALUES, chosen=st.sampled_from(ROUND_TRIP_TYPES))
def test_parsed_values_survive_the_database(app_ctx, raw, chosen) -> None:  # noqa: ANN001
    type_name, settings_ = chosen
    field_row = _round_trip_field(type_name, settings_)
    field_spec = current().entity(field_row.entity.slug).field_by_name(field_row.name)
    ftype = REGISTRY[type_name]
    try:
        value = ftype.parse(raw, field_spec)
    except FieldValueError:
        return
    model = current().classes[field_row.entity.slug]
    item = model(**{field_row.name: value})
    db.session.add(item)
    db.session.commit()
    db.session.expire_all()
    stored = getattr(db.session.get(model, item.id), field_row.name)
    assert ftype.to_json(stored, field_spec) == ftype.to_json(value, field_spec)


_FIELDS: dict[tuple[str, str], Field] = {}


def _round_trip_field(type_name: str, settings_: dict) -> Field:
    key = (db.engine.url.render_as_string(), type_name)
    if key not in _FIELDS:
        entity = _FIELDS.get((key[0], "_table")) or new_table("Значения")
        _FIELDS[(key[0], "_table")] = entity
        _FIELDS[key] = new_field(entity, f"Поле {type_name}", type_name, settings=settings_)
    return db.session.get(Field, _FIELDS[key].id)


def test_schema_change_gives_up_behind_an_open_transaction(app, app_ctx) -> None:  # noqa: ANN001
    entity = new_table("Занятая таблица")
    holder = db.engine.connect()
    holding = holder.begin()
    table = sa_table(entity.table_name, sa_column("id"))
    if db.engine.dialect.name == "postgresql":
        holder.execute(select(table))  # a reader in an open transaction
    else:
        holder.execute(insert(table).values(id=None))  # SQLite: the write lock
    started = time.monotonic()
    try:
        with pytest.raises(SchemaError, match="in use"):
            service.add_field(entity.id, "Не дождётся", "text")
    finally:
        holding.rollback()
        holder.close()
    assert time.monotonic() - started < 15
    db.session.expire_all()
    assert [f.label for f in db.session.get(type(entity), entity.id).fields] == ["Name"]
    assert service.add_field(entity.id, "Теперь можно", "text").label == "Теперь можно"
    assert threading.active_count() >= 1


def test_a_core_32_bit_integer_refuses_what_its_column_cannot_hold(app_ctx) -> None:  # noqa: ANN001
    """A pipeline's position is a 32-bit column: a larger number is refused with a message (it reached the
    database as a 500 on PostgreSQL), while a custom integer field takes 64 bits."""
    import pytest

    from custom_fields.runtime import current
    from custom_fields.types import REGISTRY, FieldValueError

    position = current().entity("pipelines").field_by_name("position")
    assert position.int_limit == 2**31 - 1
    assert REGISTRY["integer"].parse(str(2**31 - 1), position) == 2**31 - 1
    for raw in (2**31, -1259859596886446, "-2147483648"):
        with pytest.raises(FieldValueError):
            REGISTRY["integer"].parse(raw, position)
