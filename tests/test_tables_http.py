"""Tables and fields through the browser's routes and the REST API: admin screens, generated screens with
type-aware forms and filters, the API with its OpenAPI document, permissions, escaping, no 500s."""

from __future__ import annotations

import re

import prison
import pytest
from sqlalchemy import select

from app.extensions import db
from custom_fields.runtime import current, refresh
from custom_fields.types import REGISTRY
from models import Entity, Field
from tests.conftest import ADMIN_PASSWORD, DEMO_PASSWORD, csrf_token, login, signed_in
from tests.tables_helpers import insert, new_field, new_table, unique_label


def token(client, username: str = "admin", password: str = ADMIN_PASSWORD) -> dict[str, str]:  # noqa: ANN001
    response = client.post(
        "/api/v1/security/login", json={"username": username, "password": password, "provider": "db"}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def flashes(html: str) -> str:
    return " ".join(re.findall(r'class="alert[^"]*"[^>]*>(.*?)</div>', html, re.S))


def admin_token(client) -> str:  # noqa: ANN001
    return csrf_token(client.get("/admin/tables/").get_data(as_text=True))


def create_table_in_browser(client, label: str) -> Entity:  # noqa: ANN001
    response = client.post(
        "/admin/tables/create",
        data={
            "label": label,
            "plural_label": label + "ы",
            "icon": "fa-truck",
            "csrf_token": admin_token(client),
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return db.session.scalar(select(Entity).where(Entity.label == label))


def add_field_in_browser(client, entity: Entity, label: str, type_name: str, **extra) -> Field:  # noqa: ANN001, ANN003
    data = {
        "label": label,
        "type": type_name,
        "show_in_list": "y",
        "searchable": "y",
        "csrf_token": admin_token(client),
    }
    data.update(extra)
    entity_id = entity.id
    # PostgreSQL builds a unique field's index CONCURRENTLY, which waits for every open transaction: this
    # test's own (idle since its last read) must not be one of them.
    db.session.rollback()
    response = client.post(f"/admin/tables/{entity_id}/fields/add", data=data)
    assert response.status_code == 302
    db.session.expire_all()
    row = db.session.scalar(select(Field).where(Field.entity_id == entity_id, Field.label == label))
    assert row is not None, flashes(client.get(f"/admin/tables/{entity_id}/").get_data(as_text=True))
    return row


def test_admin_builds_a_table_in_the_browser_and_uses_it(app_ctx, admin_client) -> None:  # noqa: ANN001
    label = unique_label("Поставщик")
    entity = create_table_in_browser(admin_client, label)
    inn = add_field_in_browser(admin_client, entity, "ИНН", "text", max_length="12", unique="y")
    rating = add_field_in_browser(admin_client, entity, "Рейтинг", "integer")
    status = add_field_in_browser(
        admin_client, entity, "Статус", "single_select",
        opt_id=["", ""], opt_label=["Новый", "Проверен"], opt_pos=["1", "2"],
        opt_color=["#ff0000", "#00ff00"],
    )  # fmt: skip
    tags = add_field_in_browser(admin_client, entity, "Теги", "multi_select", opt_id=[""], opt_label=["VIP"])
    active = add_field_in_browser(admin_client, entity, "Активен", "boolean")
    since = add_field_in_browser(admin_client, entity, "С даты", "date")
    name = db.session.get(Field, entity.display_field_id)
    options = {o["label"]: o["id"] for o in status.settings["options"]}

    page = admin_client.get(f"/t/{entity.slug}/add")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for row in (inn, rating, status, tags, active, since):
        assert f'name="{row.name}"' in html
    assert 'type="date"' in html and "Проверен" in html

    form = {
        "csrf_token": csrf_token(html),
        name.name: "ООО <script>alert(1)</script>",
        inn.name: "7701234567",
        rating.name: "1 000",
        status.name: options["Проверен"],
        tags.name: tags.settings["options"][0]["id"],
        active.name: "y",
        since.name: "2025-03-01",
    }
    saved = admin_client.post(f"/t/{entity.slug}/add", data=form)
    assert saved.status_code == 302, flashes(saved.get_data(as_text=True))
    listing = admin_client.get(f"/t/{entity.slug}/list/").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing and "<script>alert(1)" not in listing
    assert "Проверен" in listing and "01.03.2025" in listing

    # A bad value is a form error and saves nothing; a duplicate in a unique field too.
    bad = dict(form, **{rating.name: "много", inn.name: "7701234568"})
    refused = admin_client.post(f"/t/{entity.slug}/add", data=bad)
    assert refused.status_code == 200 and "Expected a whole number" in refused.get_data(as_text=True)
    duplicate = admin_client.post(f"/t/{entity.slug}/add", data=form)
    assert duplicate.status_code == 200 and "already has this value" in duplicate.get_data(as_text=True)
    model = current().classes[entity.slug]
    assert db.session.query(model).count() == 1

    # Type-aware filters: greater-than on a number, "has" on a multi select, contains (Cyrillic, any case).
    def count(field: Field, op: str, value: str) -> int:
        index = REGISTRY[field.type].operators.index(op)  # FAB's search links name a filter by position
        body = admin_client.get(f"/t/{entity.slug}/list/?_flt_{index}_{field.name}={value}").get_data(
            as_text=True
        )
        return len(set(re.findall(rf"/t/{entity.slug}/show/(\d+)", body)))

    assert count(rating, "gt", "999") == 1
    assert count(rating, "gt", "1000") == 0
    assert count(rating, "gt", "abc") == 0
    assert count(name, "ct", "ооо") == 1
    assert count(name, "ct", "ЗАО") == 0
    assert count(tags, "has", "VIP") == 1
    assert count(status, "eq", options["Новый"]) == 0
    assert count(status, "eq", options["Проверен"]) == 1


def test_admin_screens_refuse_bad_input_with_messages(app_ctx, admin_client) -> None:  # noqa: ANN001
    entity = create_table_in_browser(admin_client, unique_label("Проверка"))
    for data in (
        {"label": "", "type": "text"},
        {"label": "x" * 300, "type": "text"},
        {"label": "Поле", "type": "no_such_type"},
        {"label": "Связь", "type": "link", "target": "abc"},
        {"label": "Длина", "type": "text", "max_length": "-5"},
    ):
        response = admin_client.post(
            f"/admin/tables/{entity.id}/fields/add", data={**data, "csrf_token": admin_token(admin_client)}
        )
        assert response.status_code == 302
        page = admin_client.get(f"/admin/tables/{entity.id}/").get_data(as_text=True)
        assert "alert-danger" in page, data
    assert len(db.session.get(Entity, entity.id).fields) == 1
    no_csrf = admin_client.post(
        f"/admin/tables/{entity.id}/fields/add", data={"label": "Без токена", "type": "text"}
    )
    assert no_csrf.status_code == 400


def test_type_change_in_the_browser_lists_offenders(app_ctx, admin_client) -> None:  # noqa: ANN001
    entity = create_table_in_browser(admin_client, unique_label("Склад"))
    qty = add_field_in_browser(admin_client, entity, "Количество", "text")
    refresh()
    first = insert(entity, **{qty.name: "12"})
    second = insert(entity, **{qty.name: "двенадцать"})
    qty_id, slug = qty.id, entity.slug
    db.session.rollback()  # PostgreSQL's online conversion waits for open transactions, this test's too
    response = admin_client.post(
        f"/admin/tables/fields/{qty_id}/type",
        data={"type": "integer", "csrf_token": admin_token(admin_client)},
    )
    assert response.status_code == 409
    body = response.get_data(as_text=True)
    assert f"#{second}" in body and "двенадцать" in body and f"#{first}<" not in body
    model = current().classes[slug]
    db.session.get(model, second).__setattr__(qty.name, "12")
    db.session.commit()
    done = admin_client.post(
        f"/admin/tables/fields/{qty_id}/type",
        data={"type": "integer", "csrf_token": admin_token(admin_client)},
    )
    assert done.status_code == 302
    db.session.expire_all()
    assert db.session.get(Field, qty_id).type == "integer"
    changes = admin_client.get("/admin/tables/changes").get_data(as_text=True)
    assert "text → integer" in changes and "admin" in changes


def test_rest_api_crud_filters_and_validation(app_ctx, client) -> None:  # noqa: ANN001
    entity = new_table(unique_label("API"))
    amount = new_field(entity, "Сумма", "money")
    due = new_field(entity, "Срок", "date")
    kind = new_field(entity, "Вид", "single_select", settings={"options": ["Счёт", "Акт"]})
    name = db.session.get(Field, entity.display_field_id)
    headers = token(client)
    base = f"/api/v1/t/{entity.slug}/"

    created = client.post(
        base, json={name.name: "Первый", amount.name: "1 234,50", due.name: "31.12.2025", kind.name: "Акт"},
        headers=headers,
    )  # fmt: skip
    assert created.status_code == 201, created.get_data(as_text=True)
    record = created.get_json()["id"]
    result = created.get_json()["result"]
    assert result[amount.name] == "1234.50" and result[due.name] == "2025-12-31"

    invalid = client.post(base, json={name.name: "Второй", due.name: "вчера"}, headers=headers)
    assert invalid.status_code == 422 and due.name in invalid.get_json()["message"]
    missing = client.post(base, json={amount.name: 5}, headers=headers)
    assert missing.status_code == 422 and name.name in missing.get_json()["message"]

    without_version = client.put(f"{base}{record}", json={amount.name: 99}, headers=headers)
    assert without_version.status_code == 428
    updated = client.put(f"{base}{record}", json={amount.name: 99, "_version": 1}, headers=headers)
    assert updated.status_code == 200 and updated.get_json()["result"][amount.name] == "99.00"
    assert updated.get_json()["result"]["_version"] == 2
    fetched = client.get(f"{base}{record}", headers=headers).get_json()["result"]
    assert fetched[name.name] == "Первый" and fetched[kind.name] == kind.settings["options"][1]["id"]

    client.post(base, json={name.name: "Второй", amount.name: 10}, headers=headers)
    query = prison.dumps(
        {"filters": [{"col": amount.name, "opr": "gt", "value": "50"}], "order_column": name.name,
         "order_direction": "asc"}
    )  # fmt: skip
    listed = client.get(f"{base}?q={query}", headers=headers).get_json()
    assert listed["count"] == 1 and listed["result"][0][name.name] == "Первый"
    info = client.get(f"{base}_info", headers=headers).get_json()
    filters = {f["name"] for f in info["filters"][amount.name]}
    assert {"gt", "lt", "eq"} <= {f["operator"] for f in info["filters"][amount.name]} or filters
    assert client.delete(f"{base}{record}", headers=headers).status_code == 200
    assert client.get(f"{base}{record}", headers=headers).status_code == 404
    assert client.get("/api/v1/t/no_such_table/", headers=headers).status_code == 404


def test_openapi_lists_custom_tables_and_fields(app_ctx, client) -> None:  # noqa: ANN001
    entity = new_table(unique_label("OpenAPI"))
    field = new_field(entity, "Поле в документе", "integer")
    document = client.get("/api/v1/_openapi", headers=token(client)).get_json()
    assert f"/api/v1/t/{entity.slug}/" in document["paths"]
    schemas = document["components"]["schemas"]
    post_schema = schemas[f"TableApi_{entity.slug}.post"]
    assert post_schema["properties"][field.name]["type"] == "integer"
    from openapi_spec_validator import validate

    validate(document)


def test_staff_uses_tables_but_not_the_admin_screens(app_ctx, staff_client, client) -> None:  # noqa: ANN001
    entity = new_table(unique_label("Для сотрудников"))
    assert staff_client.get("/admin/tables/").status_code in (302, 403)
    assert staff_client.post(f"/admin/tables/{entity.id}/archive", data={}).status_code in (302, 400, 403)
    assert staff_client.get(f"/t/{entity.slug}/list/").status_code == 200
    headers = token(client, "staff1", DEMO_PASSWORD)
    assert client.get(f"/api/v1/t/{entity.slug}/", headers=headers).status_code == 200
    anonymous = client.application.test_client()
    assert anonymous.get(f"/t/{entity.slug}/list/").status_code == 302
    assert anonymous.get(f"/api/v1/t/{entity.slug}/").status_code == 401


def test_revoked_table_permission_holds_for_screens_and_api(app_ctx, client) -> None:  # noqa: ANN001
    from custom_fields import access

    entity = new_table(unique_label("Закрытая"))
    staff = client.application.appbuilder.sm.find_role("Staff")
    access.set_table_rights(staff.id, entity.id, {"read": False, "add": False})
    staff_client = client.application.test_client()
    assert signed_in(login(staff_client, "staff1", DEMO_PASSWORD))
    assert staff_client.get(f"/t/{entity.slug}/list/").status_code in (302, 403)
    assert entity.plural_label not in staff_client.get("/").get_data(as_text=True)
    headers = token(client, "staff1", DEMO_PASSWORD)
    assert client.get(f"/api/v1/t/{entity.slug}/", headers=headers).status_code in (401, 403)
    assert client.post(f"/api/v1/t/{entity.slug}/", json={}, headers=headers).status_code in (401, 403)


def test_archived_table_disappears_and_comes_back(app_ctx, admin_client) -> None:  # noqa: ANN001
    entity = create_table_in_browser(admin_client, unique_label("Архив"))
    assert admin_client.get(f"/t/{entity.slug}/list/").status_code == 200
    admin_client.post(f"/admin/tables/{entity.id}/archive", data={"csrf_token": admin_token(admin_client)})
    assert admin_client.get(f"/t/{entity.slug}/list/").status_code == 404
    admin_client.post(f"/admin/tables/{entity.id}/restore", data={"csrf_token": admin_token(admin_client)})
    assert admin_client.get(f"/t/{entity.slug}/list/").status_code == 200


def test_link_fields_search_as_you_type_and_show_the_target(app_ctx, admin_client) -> None:  # noqa: ANN001
    contacts = db.session.scalar(select(Entity).where(Entity.slug == "companies"))
    entity = new_table(unique_label("Договор"))
    company = new_field(entity, "Контрагент", "link", settings={"target": contacts.id})
    manager = new_field(entity, "Менеджер", "user")
    refresh()
    company_id = insert(contacts, name="ЗАО «Вектор»")
    found = admin_client.get("/t/companies/lookup?q=вект").get_json()["results"]
    assert {"id": company_id, "text": "ЗАО «Вектор»"} in found
    users = admin_client.get("/t/_users/lookup?q=staff").get_json()["results"]
    assert any("staff1" in u["text"] for u in users)
    record = insert(entity, **{company.name: company_id, manager.name: users[0]["id"]})
    shown = admin_client.get(f"/t/{entity.slug}/show/{record}").get_data(as_text=True)
    assert f'/t/companies/show/{company_id}"' in shown and "ЗАО «Вектор»" in shown
    edit = admin_client.get(f"/t/{entity.slug}/edit/{record}").get_data(as_text=True)
    assert 'data-lookup="/t/companies/lookup"' in edit


@pytest.mark.parametrize(
    "path", ["/t/{slug}/show/999999", "/t/{slug}/edit/999999", "/t/nope/list/", "/t/{slug}/lookup?q=%27"]
)
def test_missing_records_and_tables_are_not_500(app_ctx, admin_client, path) -> None:  # noqa: ANN001
    entity = db.session.scalar(select(Entity).where(Entity.slug == "contacts"))
    response = admin_client.get(path.format(slug=entity.slug))
    assert response.status_code < 500


def test_api_column_selection_uses_the_same_formats(app_ctx, client) -> None:  # noqa: ANN001
    entity = new_table(unique_label("Выбор колонок"))
    amount = new_field(entity, "Сумма", "money")
    when = new_field(entity, "Дата", "date")
    headers = token(client)
    name = f"f_{entity.display_field_id}"
    client.post(
        f"/api/v1/t/{entity.slug}/",
        json={name: "Один", amount.name: "10", when.name: "2025-01-02"},
        headers=headers,
    )
    query = prison.dumps({"columns": [amount.name, when.name, "id"]})
    listed = client.get(f"/api/v1/t/{entity.slug}/?q={query}", headers=headers)
    assert listed.status_code == 200, listed.get_data(as_text=True)
    row = listed.get_json()["result"][0]
    assert row[amount.name] == "10.00" and row[when.name] == "2025-01-02" and name not in row


def test_archive_and_purge_a_field_in_the_browser(app_ctx, admin_client) -> None:  # noqa: ANN001
    entity = create_table_in_browser(admin_client, unique_label("Чистка"))
    extra = add_field_in_browser(admin_client, entity, "Временное", "text")
    field_id, column = extra.id, extra.column_name
    admin_client.post(
        f"/admin/tables/fields/{field_id}/archive", data={"csrf_token": admin_token(admin_client)}
    )
    assert extra.name not in admin_client.get(f"/t/{entity.slug}/add").get_data(as_text=True)
    wrong = {"confirm": "не то", "csrf_token": admin_token(admin_client)}
    admin_client.post(f"/admin/tables/fields/{field_id}/purge", data=wrong)
    db.session.expire_all()
    assert db.session.get(Field, field_id) is not None
    right = {"confirm": "Временное", "csrf_token": admin_token(admin_client)}
    admin_client.post(f"/admin/tables/fields/{field_id}/purge", data=right)
    db.session.expire_all()
    assert db.session.get(Field, field_id) is None
    from sqlalchemy import inspect

    assert column not in {c["name"] for c in inspect(db.engine).get_columns(entity.table_name)}


def test_out_of_range_pages_are_400(app_ctx, client) -> None:  # noqa: ANN001
    headers = token(client)
    for query in ({"page": -(10**27)}, {"page": 10**20}, {"page_size": -1}):
        response = client.get(f"/api/v1/t/companies/?q={prison.dumps(query)}", headers=headers)
        assert response.status_code == 400, query
    assert (
        client.get(f"/api/v1/t/companies/?q={prison.dumps({'page': 0})}", headers=headers).status_code == 200
    )
