"""The metadata engine on both databases: real tables and columns, type changes that convert or refuse,
archive/restore/purge, limits, and hostile labels stored as text, never as SQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, select, text

from app.extensions import db
from custom_fields import hooks, service
from custom_fields.hooks import hookimpl
from custom_fields.runtime import current, refresh
from custom_fields.service import ConversionRefused, SchemaError
from models import Entity, Field, SchemaChange
from tests.tables_helpers import insert, new_field, new_table, unique_label

PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

from models.records import RECORD_COLUMN_NAMES  # noqa: E402


def columns(table_name: str) -> dict[str, str]:
    return {c["name"]: str(c["type"]) for c in inspect(db.engine).get_columns(table_name)}


def test_core_tables_are_registered_with_their_columns(app_ctx) -> None:  # noqa: ANN001
    contacts = db.session.scalar(select(Entity).where(Entity.slug == "contacts"))
    assert contacts.is_system and contacts.table_name == "crm_contact"
    names = {f.name: f.type for f in contacts.fields}
    assert names["email"] == "email" and names["company_id"] == "link" and names["birthday"] == "date"


def test_custom_table_is_a_real_table_with_a_name_field(app_ctx) -> None:  # noqa: ANN001
    entity = new_table("Поставщик")
    assert entity.table_name == f"t_{entity.id}" and entity.slug == entity.table_name
    name_field = db.session.get(Field, entity.display_field_id)
    assert name_field.type == "text" and name_field.required
    assert set(columns(entity.table_name)) == {"id", name_field.column_name, *RECORD_COLUMN_NAMES}
    change = db.session.scalars(select(SchemaChange).where(SchemaChange.entity_id == entity.id)).first()
    assert change.action == "create_table" and "Поставщик" in change.summary


def test_each_type_adds_a_typed_column_and_round_trips_values(app_ctx) -> None:  # noqa: ANN001
    entity = new_table()
    company = new_table("Контрагент")
    made = {
        "text": new_field(entity, "Текст", "text", settings={"max_length": 20}),
        "long_text": new_field(entity, "Заметки", "long_text"),
        "integer": new_field(entity, "Количество", "integer"),
        "decimal": new_field(entity, "Вес", "decimal", settings={"scale": 3}),
        "money": new_field(entity, "Сумма", "money", settings={"currency": "RUB"}),
        "percent": new_field(entity, "Скидка", "percent"),
        "boolean": new_field(entity, "Активен", "boolean"),
        "date": new_field(entity, "Дата", "date"),
        "datetime": new_field(entity, "Время", "datetime"),
        "single_select": new_field(
            entity, "Статус", "single_select", settings={"options": ["Новый", "Старый"]}
        ),
        "multi_select": new_field(entity, "Теги", "multi_select", settings={"options": ["A", "B", "C"]}),
        "email": new_field(entity, "Почта", "email"),
        "phone": new_field(entity, "Телефон", "phone"),
        "url": new_field(entity, "Сайт", "url"),
        "link": new_field(entity, "Компания", "link", settings={"target": company.id}),
        "user": new_field(entity, "Ответственный", "user"),
    }
    found = columns(entity.table_name)
    for type_name, row in made.items():
        assert row.column_name in found, type_name
    assert found[made["integer"].column_name].upper().startswith("BIGINT")
    assert found[made["money"].column_name].upper().startswith("NUMERIC")
    company_id = insert(company, **{db.session.get(Field, company.display_field_id).name: "ООО Ромашка"})
    select_spec = next(f for f in current().entity(entity.slug).fields if f.id == made["single_select"].id)
    record = insert(
        entity,
        **{
            made["integer"].name: 5,
            made["money"].name: Decimal("1234.56"),
            made["date"].name: dt.date(2025, 3, 1),
            made["single_select"].name: select_spec.options[1]["id"],
            made["link"].name: company_id,
        },
    )
    model = current().classes[entity.slug]
    item = db.session.get(model, record)
    assert getattr(item, made["money"].name) == Decimal("1234.56")
    assert getattr(item, made["date"].name) == dt.date(2025, 3, 1)


def test_type_change_refuses_with_offenders_then_converts_after_fix(app_ctx) -> None:  # noqa: ANN001
    entity = new_table()
    code = new_field(entity, "Код", "text")
    old_column = code.column_name
    good = insert(entity, **{code.name: " 42 "})
    bad = insert(entity, **{code.name: "сорок два"})
    empty = insert(entity)
    with pytest.raises(ConversionRefused) as refused:
        service.change_type(code.id, "integer")
    assert refused.value.total == 1
    assert refused.value.offenders[0][0] == bad and refused.value.offenders[0][1] == "сорок два"
    db.session.expire_all()
    assert db.session.get(Field, code.id).type == "text"  # nothing changed
    assert code.column_name in columns(entity.table_name)
    refresh()
    model = current().classes[entity.slug]
    db.session.get(model, bad).__setattr__(code.name, "1 000")
    db.session.commit()
    converted = service.change_type(code.id, "integer")
    refresh()
    assert converted.type == "integer" and converted.name == code.name
    assert converted.column_name != old_column
    assert old_column not in columns(entity.table_name)
    model = current().classes[entity.slug]
    values = {i: getattr(db.session.get(model, i), code.name) for i in (good, bad, empty)}
    assert values == {good: 42, bad: 1000, empty: None}


def test_refusal_lists_at_most_twenty_offenders(app_ctx) -> None:  # noqa: ANN001
    entity = new_table()
    amount = new_field(entity, "Сумма", "text")
    model = current().classes[entity.slug]
    db.session.add_all([model(**{amount.name: f"x{i}"}) for i in range(25)])
    db.session.commit()
    with pytest.raises(ConversionRefused) as refused:
        service.change_type(amount.id, "decimal", {"scale": 2})
    assert refused.value.total == 25 and len(refused.value.offenders) == 20


def test_shortening_text_is_a_checked_conversion(app_ctx) -> None:  # noqa: ANN001
    entity = new_table()
    note = new_field(entity, "Примечание", "text", settings={"max_length": 100})
    insert(entity, **{note.name: "очень длинное примечание"})
    with pytest.raises(ConversionRefused):
        service.change_type(note.id, "text", {"max_length": 5})
    assert service.change_type(note.id, "text", {"max_length": 50}).settings == {"max_length": 50}


def test_select_conversions_keep_labels(app_ctx) -> None:  # noqa: ANN001
    entity = new_table()
    status = new_field(entity, "Статус", "text")
    record = insert(entity, **{status.name: "Новый"})
    changed = service.change_type(status.id, "single_select", {"options": ["Новый", "В работе"]})
    refresh()
    option_id = next(o["id"] for o in changed.settings["options"] if o["label"] == "Новый")
    model = current().classes[entity.slug]
    assert getattr(db.session.get(model, record), status.name) == option_id
    back = service.change_type(status.id, "text", {"max_length": 50})
    refresh()
    model = current().classes[entity.slug]
    assert getattr(db.session.get(model, record), back.name) == "Новый"


def test_renaming_an_option_keeps_data_and_removing_a_used_one_is_refused(app_ctx) -> None:  # noqa: ANN001
    entity = new_table()
    stage = new_field(entity, "Этап", "single_select", settings={"options": ["Лид", "Сделка"]})
    lead = stage.settings["options"][0]
    record = insert(entity, **{stage.name: lead["id"]})
    renamed = [{**lead, "label": "Входящий лид"}, stage.settings["options"][1]]
    service.update_field(stage.id, options=renamed)
    refresh()
    spec = current().entity(entity.slug).field_by_name(stage.name)
    model = current().classes[entity.slug]
    assert getattr(db.session.get(model, record), stage.name) == lead["id"]
    assert spec.options[0]["label"] == "Входящий лид"
    with pytest.raises(SchemaError, match="1"):
        service.update_field(stage.id, options=[stage.settings["options"][1]])


def test_archive_restore_and_purge(app_ctx) -> None:  # noqa: ANN001
    entity = new_table()
    extra = new_field(entity, "Лишнее", "text")
    insert(entity, **{extra.name: "данные"})
    service.archive_field(extra.id)
    refresh()
    assert extra.name not in [f.name for f in current().entity(entity.slug).live_fields]
    assert extra.column_name in columns(entity.table_name)  # data kept
    service.restore_field(extra.id)
    refresh()
    assert extra.name in [f.name for f in current().entity(entity.slug).live_fields]
    with pytest.raises(SchemaError):
        service.purge_field(extra.id, confirm_label=extra.label)  # not archived
    service.archive_field(extra.id)
    with pytest.raises(SchemaError):
        service.purge_field(extra.id, confirm_label="неверно")
    assert extra.column_name in columns(entity.table_name)
    purged = []

    class Listener:
        @hookimpl
        def field_purged(self, field_id: int, name: str, slug: str) -> None:
            purged.append((field_id, name, slug))

    with hooks.registered(Listener()):
        service.purge_field(extra.id, confirm_label=extra.label)
    assert extra.column_name not in columns(entity.table_name)
    assert db.session.get(Field, extra.id) is None
    assert purged == [(extra.id, extra.name, entity.slug)]


def test_display_field_and_core_fields_cannot_be_archived(app_ctx) -> None:  # noqa: ANN001
    entity = new_table()
    with pytest.raises(SchemaError):
        service.archive_field(entity.display_field_id)
    email = db.session.scalar(
        select(Field)
        .join(Entity, Field.entity_id == Entity.id)
        .where(Entity.slug == "contacts", Field.name == "email")
    )
    with pytest.raises(SchemaError):
        service.archive_field(email.id)
    with pytest.raises(SchemaError):
        service.change_type(email.id, "text")


def test_unique_field_refuses_existing_duplicates(app_ctx) -> None:  # noqa: ANN001
    entity = new_table()
    inn = new_field(entity, "ИНН", "text", unique=True)
    insert(entity, **{inn.name: "7701"})
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        insert(entity, **{inn.name: "7701"})
    db.session.rollback()
    entity2 = new_table()
    code = new_field(entity2, "Код", "text")
    insert(entity2, **{code.name: "A"})
    insert(entity2, **{code.name: "A"})
    with pytest.raises(ConversionRefused):
        service.change_type(code.id, "integer")
    with pytest.raises(SchemaError):
        new_field(entity2, "Теги", "multi_select", unique=True)


def test_limits_and_bad_settings_are_clear_refusals(app_ctx) -> None:  # noqa: ANN001
    entity = new_table()
    with pytest.raises(SchemaError, match="100"):
        new_field(entity, "x" * 101, "text")
    with pytest.raises(SchemaError):
        new_field(entity, "   ", "text")
    with pytest.raises(SchemaError):
        new_field(entity, "Нет такого типа", "no_such_type")
    with pytest.raises(SchemaError):
        new_field(entity, "Длина", "text", settings={"max_length": "много"})
    with pytest.raises(SchemaError):
        new_field(entity, "Ссылка", "link", settings={"target": 999999})
    with pytest.raises(SchemaError):
        new_field(entity, "Опции", "single_select", settings={"options": ["A", "a"]})
    with pytest.raises(SchemaError):
        new_field(entity, "Число", "integer", default="не число")
    new_field(entity, "Дубль", "text")
    with pytest.raises(SchemaError):
        new_field(entity, "дубль", "text")
    assert set(columns(entity.table_name)) == {
        "id",
        *RECORD_COLUMN_NAMES,
        *(f.column_name for f in db.session.get(Entity, entity.id).fields),
    }


def test_tables_limit_per_table_fields(app_ctx, monkeypatch) -> None:  # noqa: ANN001
    entity = new_table()
    monkeypatch.setattr(service, "MAX_FIELDS_PER_TABLE", 3)
    new_field(entity, "Два", "text")
    new_field(entity, "Три", "text")
    with pytest.raises(SchemaError, match="3"):
        new_field(entity, "Четыре", "text")


HOSTILE = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=120,
) | st.sampled_from(
    [
        "'; DROP TABLE crm_contact; --",
        '<script>alert("x")</script>',
        "SELECT",
        "f_1",
        "id",
        "Ё" * 100,
        '"quoted"',
    ]
)


@PROPERTY
@given(label=HOSTILE)
def test_any_label_is_stored_as_text_or_refused_clearly(app_ctx, label) -> None:  # noqa: ANN001
    entity = db.session.scalar(select(Entity).where(Entity.label == "Hypothesis labels"))
    if entity is None:
        entity = new_table("Hypothesis labels")
    try:
        row = service.add_field(entity.id, label, "text")
    except SchemaError as exc:
        assert str(exc)
        return
    assert row.label == " ".join(label.split())
    assert row.column_name.startswith("f_") and row.column_name in columns(entity.table_name)
    assert db.session.execute(text("SELECT count(*) FROM crm_contact")).scalar() is not None
    service.archive_field(row.id)


def test_schema_version_is_bumped_by_every_change(app_ctx) -> None:  # noqa: ANN001
    before = current().version
    entity = new_table()
    field = new_field(entity, "Поле", "text")
    service.update_field(field.id, label="Поле 2")
    assert refresh().version >= before + 3
    assert refresh().entity(entity.slug).field_by_name(field.name).label == "Поле 2"
    assert unique_label() != unique_label()


def test_unique_can_be_switched_on_when_values_do_not_repeat(app_ctx) -> None:  # noqa: ANN001
    entity = new_table()
    code = new_field(entity, "Артикул", "text")
    insert(entity, **{code.name: "A-1"})
    insert(entity, **{code.name: "A-1"})
    with pytest.raises(SchemaError, match="1"):
        service.update_field(code.id, unique=True)
    assert not db.session.get(Field, code.id).unique
    model = current().classes[entity.slug]
    first = db.session.scalars(select(model)).first()
    setattr(first, code.name, "A-2")
    db.session.commit()
    assert service.update_field(code.id, unique=True).unique
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        insert(entity, **{code.name: "A-2"})
    db.session.rollback()
    assert not service.update_field(code.id, unique=False).unique
    insert(entity, **{code.name: "A-2"})
