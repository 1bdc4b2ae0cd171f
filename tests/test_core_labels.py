"""Core tables' labels, plurals, help texts and option labels follow the user's language wherever they are
shown (column heads, forms and their placeholders, the Add filter menu, the API's _info, record pages),
unless an admin renamed them: then they show as typed, in every language, escaped."""

from __future__ import annotations

import json
import re

from sqlalchemy import select

from app.extensions import db
from custom_fields import service
from custom_fields.runtime import refresh
from models import Entity, Field

RU = {"Accept-Language": "ru-RU,ru;q=0.9"}
EN = {"Accept-Language": "en-US,en;q=0.9"}


def _field(slug: str, name: str) -> Field:
    entity = db.session.scalar(select(Entity).where(Entity.slug == slug))
    return db.session.scalar(select(Field).where(Field.entity_id == entity.id, Field.name == name))


def _filter_menu(html: str) -> list[str]:
    """The Add filter menu's entries (FAB's search widget)."""
    return [m.strip() for m in re.findall(r'<a href="#" name="[^"]+" class="filter">\s*([^<]*)</a>', html)]


def test_core_labels_follow_the_language_in_lists_forms_filters_and_api(staff_client) -> None:
    html = staff_client.get("/t/companies/list/", headers=RU).get_data(as_text=True)
    assert "ИНН" in _filter_menu(html) and "Отрасль" in _filter_menu(html)
    assert not {"Tax ID", "Industry", "Name", "Owner"} & set(_filter_menu(html)), _filter_menu(html)
    assert '"tax_id": ' + json.dumps("ИНН") in html  # the labels FAB's filter script shows
    assert re.search(r"<th><a [^>]*tax_id[^>]*>ИНН", html)

    form = staff_client.get("/t/contacts/add", headers=RU).get_data(as_text=True)
    for english, russian in (("First name", "Имя"), ("Job title", "Должность")):
        assert re.search(rf"<label[^>]*>\s*{russian}\s*<", form) and f'placeholder="{russian}"' in form
        assert not re.search(rf">\s*{english}\s*<", form) and f'placeholder="{english}"' not in form

    info = staff_client.get("/api/v1/t/deals/_info", headers=RU).get_json()
    fields = {f["name"]: f for f in info["add_columns"]}
    assert fields["amount"]["label"] == "Сумма"
    assert fields["amount"]["description"].startswith("Рассчитывается")
    assert fields["title"]["description"] == ""  # not gettext("") (the catalog's header)

    english = staff_client.get("/t/companies/list/", headers=EN).get_data(as_text=True)
    assert "Tax ID" in _filter_menu(english) and "ИНН" not in english


def test_core_option_labels_and_table_names_follow_the_language(staff_client) -> None:
    form = staff_client.get("/t/companies/add", headers=RU).get_data(as_text=True)
    assert ">Клиент</option>" in form and ">Customer</option>" not in form
    menu = staff_client.get("/", headers=RU).get_data(as_text=True)
    assert "Компании" in menu


def test_a_renamed_core_label_shows_as_typed_in_every_language(admin_client, app_ctx) -> None:
    tax_id, kind = _field("companies", "tax_id"), _field("companies", "kind")
    options = [dict(o) for o in kind.settings["options"]]
    renamed = [{**o, "label": "Заказчик <b>" if o["id"] == "customer" else o["label"]} for o in options]
    companies = db.session.scalar(select(Entity).where(Entity.slug == "companies"))
    try:
        service.update_field(tax_id.id, label="Tax number <i>x</i>")
        service.update_field(kind.id, options=renamed)
        service.update_entity(companies.id, label="Client", plural_label="Clients", icon=companies.icon)
        refresh()
        for headers in (RU, EN):
            html = admin_client.get("/t/companies/list/", headers=headers).get_data(as_text=True)
            assert "Tax number &lt;i&gt;x&lt;/i&gt;" in _filter_menu(html)
            assert "<i>x</i>" not in html  # escaped wherever it is shown
            assert "Clients" in html
            form = admin_client.get("/t/companies/add", headers=headers).get_data(as_text=True)
            assert ">Заказчик &lt;b&gt;</option>" in form
        html = admin_client.get("/t/companies/add", headers=RU).get_data(as_text=True)
        assert ">Поставщик</option>" in html  # the options not renamed still follow the language
    finally:
        service.update_field(tax_id.id, label="Tax ID")
        service.update_field(kind.id, options=options)
        service.update_entity(companies.id, label="Company", plural_label="Companies", icon=companies.icon)
        refresh()
    html = admin_client.get("/t/companies/list/", headers=RU).get_data(as_text=True)
    assert "ИНН" in _filter_menu(html)  # back to the shipped text: follows the language again


def test_an_admins_table_label_shows_once_escaped_in_the_menu_and_a_percent_breaks_nothing(
    admin_client, app_ctx
) -> None:
    import uuid

    suffix = uuid.uuid4().hex[:6]
    label, plural = f"R&D <x> 50% {suffix}", f"R&D <x> 50% {suffix} all"
    entity = service.create_entity(label, plural)
    refresh()
    for headers in (RU, EN):
        for path in ("/", f"/t/{entity.slug}/list/", "/t/companies/list/"):
            response = admin_client.get(path, headers=headers)
            html = response.get_data(as_text=True)
            assert response.status_code == 200, (path, html[-500:])
            assert f"R&amp;D &lt;x&gt; 50% {suffix} all</span>" in html, path
            assert "&amp;amp;" not in html and "&amp;lt;" not in html and "<x>" not in html, path


def test_a_field_error_quoting_what_was_typed_or_an_option_label_shows_as_text(admin_client, app_ctx) -> None:
    """FAB's form showed each error through Jinja's gettext: marked safe and %-formatted, so a typed value
    or an admin's option label with "%" or "<b>" in the message gave a 500 or raw HTML."""
    from custom_fields import records
    from tests.tables_helpers import new_field, new_table, unique_label
    from tests.test_write_path import admin_actor, edit_form

    entity = new_table(unique_label("Проба"))
    name = db.session.get(Field, entity.display_field_id)
    choice = new_field(entity, "Выбор", "single_select", settings={"options": ["Скидка 50%", "<i>Б</i>"]})
    pk = records.create(entity.slug, {name.name: "x"}, admin_actor()).id
    _html, form = edit_form(admin_client, entity, pk)
    answer = admin_client.post(
        f"/t/{entity.slug}/edit/{pk}", data={**form, name.name: "x", choice.name: "<b>bad</b> 5%"}
    )
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200, html[-2000:]
    error = re.search(r'<div class="alert alert-danger">(.*?)</div>', html, flags=re.S).group(1)
    assert "&lt;b&gt;bad&lt;/b&gt; 5%" in error and "Скидка 50%" in error and "&lt;i&gt;Б&lt;/i&gt;" in error
    assert "<b>" not in error and "<i>" not in error
