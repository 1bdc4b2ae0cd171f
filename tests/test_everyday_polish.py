"""What a new user trips over (issue 14, "also worth fixing"): counts in proper plural forms, a new table's
empty list with its columns, a saved edit landing where it came from (or on the record), one date format
per language, grouped amounts, a conflict box listing only what changed, and no two tables of one name."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from flask_babel import force_locale
from sqlalchemy import select

from app.extensions import db
from custom_fields import formats, records, service
from custom_fields.runtime import current, refresh
from custom_fields.service import SchemaError
from models import Entity, Field
from tests.conftest import csrf_token
from tests.tables_helpers import insert, new_field, new_table, unique_label
from tests.test_write_path import admin_actor, edit_form

RU = {"Accept-Language": "ru-RU,ru;q=0.9"}
EN = {"Accept-Language": "en-US,en;q=0.9"}


def test_counts_take_the_plural_form_of_their_number(app, app_ctx) -> None:  # noqa: ANN001
    entity = new_table(unique_label("Склад"))
    code = new_field(entity, "Код", "text")
    insert(entity, **{code.name: "не число"})
    with force_locale("en"), pytest.raises(SchemaError) as one:
        service.change_type(code.id, "integer", {})
    assert str(one.value).startswith("1 record has a value that cannot become")
    insert(entity, **{code.name: "тоже нет"})
    with force_locale("en"), pytest.raises(SchemaError) as two:
        service.change_type(code.id, "integer", {})
    assert str(two.value).startswith("2 records have values")
    with force_locale("ru"), pytest.raises(SchemaError) as ru:
        service.change_type(code.id, "integer", {})
    assert str(ru.value).startswith("В 2 записях значения нельзя преобразовать")


def test_an_empty_new_table_shows_its_columns(admin_client, app_ctx) -> None:  # noqa: ANN001
    entity = new_table(unique_label("Пустая"))
    new_field(entity, "Телефон склада", "phone")
    html = admin_client.get(f"/t/{entity.slug}/list/", headers=RU).get_data(as_text=True)
    heads = re.findall(r"<th>.*?</th>", html, flags=re.S)
    assert any("Телефон склада" in h for h in heads), heads
    assert "Не найдено ни одной записи" in html


def _edit(client, entity: Entity, pk: int, referrer: str | None) -> str:  # noqa: ANN001
    headers = {"Referer": referrer} if referrer else {}
    html = client.get(f"/t/{entity.slug}/edit/{pk}", headers=headers).get_data(as_text=True)
    version = re.search(r'name="row_version"[^>]*value="(\d+)"', html) or re.search(
        r'value="(\d+)"[^>]*name="row_version"', html
    )
    back = re.search(r'id="next_url"[^>]*value="([^"]*)"', html) or re.search(
        r'value="([^"]*)"[^>]*id="next_url"', html
    )
    name = db.session.get(Field, entity.display_field_id).name
    data = {"csrf_token": csrf_token(html), "row_version": version.group(1), name: unique_label("Имя")}
    data["next_url"] = back.group(1).replace("&amp;", "&") if back else ""
    response = client.post(f"/t/{entity.slug}/edit/{pk}", data=data)
    assert response.status_code == 302
    return response.headers["Location"]


def test_a_saved_edit_lands_on_the_record_or_where_it_was_opened(admin_client, app_ctx) -> None:  # noqa: ANN001
    entity = new_table(unique_label("Правки"))
    name = db.session.get(Field, entity.display_field_id)
    pk = records.create(entity.slug, {name.name: "Первое"}, admin_actor()).id
    show = f"/t/{entity.slug}/show/{pk}"
    assert _edit(admin_client, entity, pk, None).endswith(show)  # opened from a typed address
    listed = f"/t/{entity.slug}/list/?_flt_0_{name.name}=%D0%9F&page_TableView_{entity.slug}=0"
    assert _edit(admin_client, entity, pk, f"http://localhost{listed}").endswith(listed)
    assert _edit(admin_client, entity, pk, f"http://localhost{show}").endswith(show)
    assert _edit(admin_client, entity, pk, "https://evil.example/t/x/list/").endswith(show)
    assert _edit(admin_client, entity, pk, "http://localhost/admin/tables/").endswith(show)


def test_dates_read_one_way_per_language_everywhere(admin_client, app, app_ctx) -> None:  # noqa: ANN001
    entity = new_table(unique_label("Даты"))
    when = new_field(entity, "Когда", "datetime")
    name = db.session.get(Field, entity.display_field_id)
    pk = records.create(
        entity.slug, {name.name: "Запись", when.name: "2026-12-01T10:54:00+00:00"}, admin_actor()
    ).id
    records.update(entity.slug, pk, {name.name: "Запись 2"}, admin_actor(), expected_version=None)
    for headers in (EN, RU):
        html = admin_client.get(f"/t/{entity.slug}/show/{pk}", headers=headers).get_data(as_text=True)
        assert "01.12.2026 13:54" in html  # the field, in Moscow time
        stamps = re.findall(r"\d{1,2}/\d{1,2}/\d{2}, \d{1,2}:\d{2}\s?[AP]M", html)
        assert not stamps, stamps  # the timeline's moments in the same format, not Babel's short one
    with app.test_request_context(headers=EN):
        assert formats.datetime_text(dt.datetime(2026, 12, 1, 10, 54, tzinfo=dt.UTC)) == "01.12.2026 13:54"


def test_amounts_are_grouped_per_language(app) -> None:  # noqa: ANN001
    with app.test_request_context(headers=RU):
        assert formats.number_text("2747000") == "2\xa0747\xa0000,00"
    with app.test_request_context(headers=EN):
        assert formats.number_text("2747000") == "2,747,000.00"
        assert formats.number_text("5", scale=0) == "5"


def test_amounts_round_half_up_as_the_registry_stores_them(app) -> None:  # noqa: ANN001
    with app.test_request_context(headers=EN):
        assert formats.number_text(Decimal("2.345")) == "2.35"  # not half to even (2.34)
        assert formats.number_text(Decimal("2.335")) == "2.34"
        assert formats.number_text(2.345) == "2.35"  # a float as written, not its binary 2.34499...
        assert formats.number_text("0.5", scale=0) == "1" and formats.number_text("2.5", scale=0) == "3"
        assert formats.number_text(Decimal("-2.345")) == "-2.35"


def test_the_conflict_box_lists_only_what_changed_meanwhile(admin_client, app_ctx) -> None:  # noqa: ANN001
    entity = new_table(unique_label("Конфликт"))
    name = db.session.get(Field, entity.display_field_id)
    fields = [new_field(entity, f"Поле {n}", "text") for n in range(5)]
    pk = records.create(entity.slug, {name.name: "Исходное", fields[0].name: "а"}, admin_actor()).id
    _html, form = edit_form(admin_client, entity, pk)
    records.update(entity.slug, pk, {fields[1].name: "чужое"}, admin_actor(), expected_version=1)
    html = admin_client.post(
        f"/t/{entity.slug}/edit/{pk}", data={**form, name.name: "Моё", fields[0].name: "а"}
    ).get_data(as_text=True)
    box = re.search(r'<table[^>]*id="conflict-values".*?</table>', html, flags=re.S).group(0)
    rows = re.findall(r"<tr><td>(.*?)</td>", box)
    assert rows == ["Поле 1"], rows


def test_the_conflict_box_compares_values_as_their_type_does(admin_client, app_ctx) -> None:  # noqa: ANN001
    """Values the form sends back as typed (an instant in another offset, ``1 234,50``, a tax id stored with
    a space before tax ids were normalised) are the values saved: none is listed as changed meanwhile."""
    entity = new_table(unique_label("Конфликт"))
    name = db.session.get(Field, entity.display_field_id)
    when, amount = new_field(entity, "Когда", "datetime"), new_field(entity, "Сумма", "money")
    inn = new_field(entity, "ИНН", "tax_id", settings={"kind": "inn"})
    other = new_field(entity, "Поле", "text")
    first = {name.name: "Исходное", when.name: "2026-12-01T10:54:00+05:00", amount.name: "1234.5"}
    pk = records.create(entity.slug, {**first, inn.name: "7707083893"}, admin_actor()).id
    table = current().classes[entity.slug].__table__
    db.session.execute(table.update().where(table.c.id == pk).values({inn.column_name: "7707 083893"}))
    db.session.commit()
    _html, form = edit_form(admin_client, entity, pk)
    records.update(entity.slug, pk, {other.name: "чужое"}, admin_actor(), expected_version=1)
    typed = {when.name: "01.12.2026 08:54", amount.name: "1 234,50", inn.name: "7707 083893"}
    html = admin_client.post(
        f"/t/{entity.slug}/edit/{pk}", data={**form, name.name: "Исходное", **typed}
    ).get_data(as_text=True)
    box = re.search(r'<table[^>]*id="conflict-values".*?</table>', html, flags=re.S).group(0)
    rows = re.findall(r"<tr><td>(.*?)</td>", box)
    assert rows == ["Поле"], rows


def test_two_tables_may_not_share_a_name(app, app_ctx) -> None:  # noqa: ANN001
    label = unique_label("Склады")
    first = service.create_entity(label, label)
    with pytest.raises(SchemaError, match="already exists"):
        service.create_entity(label.upper(), "")
    other = service.create_entity(unique_label("Другие"), "")
    with pytest.raises(SchemaError, match="already exists"):
        service.update_entity(other.id, label=label.lower(), plural_label="", icon="fa-table")
    for taken in ("Companies", "компании", "Компания"):  # a core table, in either language
        with force_locale("en"), pytest.raises(SchemaError):
            service.create_entity(taken, "")
    service.update_entity(first.id, label=label, plural_label=label, icon="fa-cube")  # itself: fine
    refresh()
    assert current().entity(first.slug).icon == "fa-cube"
    assert db.session.scalar(select(Entity.id).where(Entity.label == label.upper())) is None


def test_a_field_may_not_repeat_a_core_label_as_users_read_it(app_ctx) -> None:  # noqa: ANN001
    companies = db.session.scalar(select(Entity).where(Entity.slug == "companies"))
    for taken in ("ИНН", "инн", "Tax ID", "Отрасль"):  # "Tax ID" reads "ИНН" in Russian
        with force_locale("en"), pytest.raises(SchemaError, match="already has a field"):
            service.add_field(companies.id, taken, "text")
    mine = service.add_field(companies.id, unique_label("ИНН филиала"), "text")
    with pytest.raises(SchemaError, match="already has a field"):
        service.update_field(mine.id, label="Регион")
    service.archive_field(mine.id)
    refresh()
