"""The grid's page and its save endpoint over HTTP: columns from the registry and the field rules, rights,
CSRF, cell-by-cell checks before anything is written, conflicts, appended rows and their undo."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.extensions import db
from custom_fields import access, records, service
from custom_fields.access import Actor
from custom_fields.runtime import current, refresh
from tests.conftest import csrf_token
from tests.tables_helpers import new_field, new_table, unique_label

HOSTILE = '<script>alert("x")</script> \'"'
LONG_CYRILLIC = "Ж" * 100


def user_id(username: str) -> int:
    from flask_appbuilder.security.sqla.models import User

    return db.session.scalar(select(User.id).where(User.username == username))


def role_id(name: str) -> int:
    from flask_appbuilder.security.sqla.models import Role

    return db.session.scalar(select(Role.id).where(Role.name == name))


@pytest.fixture
def sheet(app_ctx) -> dict[str, Any]:  # noqa: ANN001
    """A table with a text name, an amount, a count, a select, a view-only note (for Staff) and a secret
    (hidden from Staff); two records staff1 owns and one they may not see."""
    entity = new_table(unique_label(f"{HOSTILE} Лист"))
    amount = new_field(entity, "Сумма", "money")
    count = new_field(entity, "Количество", "integer")
    kind = new_field(entity, LONG_CYRILLIC, "single_select", settings={"options": [HOSTILE, "Обычный"]})
    note = new_field(entity, "Заметка", "text")
    secret = new_field(entity, "Секрет", "text")
    staff = role_id("Staff")
    access.set_field_mode(staff, note.id, "view")
    access.set_field_mode(staff, secret.id, "hidden")
    refresh()
    name = current().entity(entity.slug).display_field.name
    staff_actor = Actor.for_user_id(user_id("staff1"), "ui")
    mine = records.create_many(
        entity.slug,
        [
            {name: "Первая", amount.name: "10", count.name: 1},
            {name: "Вторая", amount.name: "20", count.name: 2},
        ],
        staff_actor,
    )
    other = records.create(entity.slug, {name: "Чужая"}, Actor.for_user_id(user_id("admin"), "ui"))
    options = {o["label"]: o["id"] for o in kind.settings["options"]}
    return {
        "slug": entity.slug,
        "name": name,
        "amount": amount.name,
        "count": count.name,
        "kind": kind.name,
        "note": note.name,
        "secret": secret.name,
        "mine": [s.id for s in mine],
        "other": other.id,
        "options": options,
    }


def page_config(client, slug: str) -> tuple[dict[str, Any], str]:  # noqa: ANN001
    response = client.get(f"/grid/{slug}/")
    assert response.status_code == 200, response.status_code
    text = response.get_data(as_text=True)
    match = re.search(r'data-config="([^"]*)"', text)
    assert match, "no grid config on the page"
    return json.loads(html.unescape(match.group(1))), csrf_token(text)


def save(client, slug: str, token: str, body: dict[str, Any]):  # noqa: ANN001, ANN201
    return client.post(f"/grid/{slug}/save", json=body, headers={"X-CSRFToken": token})


def stored(slug: str, pk: int) -> dict[str, Any]:
    db.session.rollback()
    model = current().classes[slug]
    row = db.session.execute(select(model.__table__).where(model.id == pk)).mappings().one()
    return {model.__table__.c[k].key: v for k, v in row.items()}


def test_columns_follow_the_registry_and_the_field_rules(sheet, admin_client, staff_client) -> None:  # noqa: ANN001
    config, _token = page_config(admin_client, sheet["slug"])
    columns = {c["field"]: c for c in config["columns"]}
    assert {sheet["secret"], sheet["note"]} <= columns.keys()
    assert columns[sheet["amount"]]["editor"] == "number" and columns[sheet["amount"]]["currency"] == "RUB"
    assert columns[sheet["amount"]]["align"] == "right" and columns[sheet["amount"]]["scale"] == 2
    assert [o["label"] for o in columns[sheet["kind"]]["options"]] == [HOSTILE, "Обычный"]
    assert columns[sheet["kind"]]["label"] == LONG_CYRILLIC
    assert {o["op"] for o in columns[sheet["count"]]["operators"]} >= {"eq", "gt", "lt"}
    assert all(c["editable"] for c in config["columns"])
    assert config["rows"] == f"/api/v1/data/{sheet['slug']}"
    # Staff: the secret is absent, the note read-only.
    config, _token = page_config(staff_client, sheet["slug"])
    columns = {c["field"]: c for c in config["columns"]}
    assert sheet["secret"] not in columns
    assert columns[sheet["note"]]["editable"] is False and columns[sheet["name"]]["editable"] is True


def test_the_page_escapes_hostile_labels(sheet, admin_client) -> None:  # noqa: ANN001
    text = admin_client.get(f"/grid/{sheet['slug']}/").get_data(as_text=True)
    assert "<script>alert" not in text
    config, _token = page_config(admin_client, sheet["slug"])
    assert HOSTILE in [o["label"] for c in config["columns"] for o in c.get("options", [])]


def test_unknown_archived_and_anonymous(app, sheet, admin_client) -> None:  # noqa: ANN001
    assert admin_client.get("/grid/no_such_table/").status_code == 404
    anonymous = app.test_client()
    response = anonymous.get(f"/grid/{sheet['slug']}/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    entity = new_table()
    service.archive_entity(entity.id)
    refresh()
    assert admin_client.get(f"/grid/{entity.slug}/").status_code == 404


def test_a_save_needs_the_csrf_token(sheet, admin_client) -> None:  # noqa: ANN001
    body = {"changes": [{"id": sheet["mine"][0], "version": 1, "values": {sheet["count"]: "5"}}]}
    response = admin_client.post(f"/grid/{sheet['slug']}/save", json=body)
    assert response.status_code == 400
    assert stored(sheet["slug"], sheet["mine"][0])[sheet["count"]] == 1


def test_a_batch_is_checked_cell_by_cell_before_anything_is_saved(sheet, admin_client) -> None:  # noqa: ANN001
    _config, token = page_config(admin_client, sheet["slug"])
    first, second = sheet["mine"]
    body = {
        "changes": [
            {"id": first, "version": 1, "values": {sheet["amount"]: "1 234,50", sheet["count"]: "много"}},
            {"id": second, "version": 1, "values": {sheet["kind"]: "обычный"}},
        ],
        "create": [
            {"values": {sheet["name"]: "Новая", sheet["count"]: "7"}},
            {"values": {sheet["count"]: "x"}},
        ],
    }
    response = save(admin_client, sheet["slug"], token, body)
    assert response.status_code == 422
    answer = response.get_json()
    assert answer["saved"] is False
    refused = {(r["kind"], r["index"], r.get("field")) for r in answer["refused"]}
    # The second new row: its count does not parse, and the table's name is required.
    assert refused == {
        ("update", 0, sheet["count"]),
        ("create", 1, sheet["count"]),
        ("create", 1, sheet["name"]),
    }
    assert stored(sheet["slug"], first)[sheet["amount"]] == 10  # nothing was written
    model = current().classes[sheet["slug"]]
    before = db.session.scalar(select(func.count()).select_from(model))

    response = save(admin_client, sheet["slug"], token, {**body, "mode": "valid"})
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["saved"] is True
    updated = {u["id"]: u for u in answer["updated"]}
    assert updated[first]["values"][sheet["amount"]]["value"] == "1234.50"
    assert updated[first]["version"] == 2
    assert updated[second]["values"][sheet["kind"]]["value"] == sheet["options"]["Обычный"]
    assert str(stored(sheet["slug"], first)[sheet["amount"]]) == "1234.50"
    assert stored(sheet["slug"], first)[sheet["count"]] == 1
    assert len(answer["created"]) == 1  # the row whose only cell was refused is left out
    # The saved rows read back through the query layer, as the data endpoint shows them.
    assert answer["rows"][str(first)][sheet["amount"]] == "1234.50"
    assert answer["rows"][str(answer["created"][0]["id"])][sheet["name"]] == "Новая"
    assert db.session.scalar(select(func.count()).select_from(model)) == before + 1
    created = answer["created"][0]

    # Undoing the paste: the appended row goes to the recycle bin.
    response = save(admin_client, sheet["slug"], token, {"delete": [{"id": created["id"], "version": 1}]})
    assert response.status_code == 200
    assert stored(sheet["slug"], created["id"])["deleted_at"] is not None


def test_a_stale_row_is_a_conflict_with_the_saved_values(sheet, admin_client) -> None:  # noqa: ANN001
    _config, token = page_config(admin_client, sheet["slug"])
    first = sheet["mine"][0]
    assert save(admin_client, sheet["slug"], token, {"changes": [
        {"id": first, "version": 1, "values": {sheet["count"]: "3"}}]}).status_code == 200  # fmt: skip
    response = save(
        admin_client,
        sheet["slug"],
        token,
        {"changes": [{"id": first, "version": 1, "values": {sheet["count"]: "4", sheet["kind"]: "Обычный"}}]},
    )
    assert response.status_code == 409
    conflict = response.get_json()["conflicts"][0]
    assert conflict["version"] == 2 and conflict["text"][sheet["count"]] == "3"
    assert conflict["current"][sheet["count"]]["value"] == 3
    assert (
        stored(sheet["slug"], first)[sheet["count"]] == 3
        and stored(sheet["slug"], first)[sheet["kind"]] is None
    )


def test_saves_refused_without_rights_change_nothing(sheet, staff_client, manager_client) -> None:  # noqa: ANN001
    config, token = page_config(staff_client, sheet["slug"])
    first = sheet["mine"][0]
    # A view-only field and a hidden one are refused at the cell; a record out of reach is refused too.
    body = {
        "changes": [
            {
                "id": first,
                "version": 1,
                "values": {sheet["note"]: "x", sheet["secret"]: "y", sheet["count"]: "9"},
            },
            {"id": sheet["other"], "version": 1, "values": {sheet["name"]: "моя"}},
        ]
    }
    response = save(staff_client, sheet["slug"], token, body)
    assert response.status_code == 422, response.get_json()
    refused = {(r["index"], r.get("field")) for r in response.get_json()["refused"]}
    assert (0, sheet["note"]) in refused and (0, sheet["secret"]) in refused and (1, None) in refused
    assert stored(sheet["slug"], first)[sheet["count"]] == 1
    assert stored(sheet["slug"], sheet["other"])[sheet["name"]] == "Чужая"
    response = save(staff_client, sheet["slug"], token, {**body, "mode": "valid"})
    assert response.status_code == 200
    assert stored(sheet["slug"], first)[sheet["count"]] == 9
    assert stored(sheet["slug"], first)[sheet["note"]] is None
    assert stored(sheet["slug"], sheet["other"])[sheet["name"]] == "Чужая"

    # Without the edit right on the table: 403 and nothing changes.
    staff = role_id("Staff")
    entity_id = current().entity(sheet["slug"]).id
    access.set_table_rights(staff, entity_id, {"edit": False})
    refresh()
    response = save(staff_client, sheet["slug"], token, {"changes": [
        {"id": first, "version": 2, "values": {sheet["count"]: "10"}}]})  # fmt: skip
    assert response.status_code == 403
    assert stored(sheet["slug"], first)[sheet["count"]] == 9
    assert page_config(staff_client, sheet["slug"])[0]["canEdit"] is False
    # Adding needs no edit right: pasted rows past the end are still added.
    response = save(staff_client, sheet["slug"], token, {"create": [{"values": {sheet["name"]: "Ещё"}}]})
    assert response.status_code == 200 and len(response.get_json()["created"]) == 1
    # Without the read right: no grid at all.
    access.set_table_rights(staff, entity_id, {"read": False})
    refresh()
    assert staff_client.get(f"/grid/{sheet['slug']}/").status_code == 403
    assert save(staff_client, sheet["slug"], token, {"changes": []}).status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        [],
        "x",
        {"mode": "maybe"},
        {"changes": "x"},
        {"changes": [{"id": "1", "version": 1, "values": {}}]},
        {"changes": [{"id": 1, "version": True, "values": {}}]},
        {"changes": [{"id": 2**40, "version": 1, "values": {}}]},
        {"changes": [{"id": 1, "version": 1, "values": {"a": {"b": 1}}}]},
        {"create": [{"values": []}]},
        {"delete": [{"id": 1}]},
        {"create": [{"values": {}}] * 5001},
    ],
)
def test_malformed_saves_are_refused_plainly(sheet, admin_client, body) -> None:  # noqa: ANN001
    _config, token = page_config(admin_client, sheet["slug"])
    response = save(admin_client, sheet["slug"], token, body)
    assert response.status_code == 400
    assert response.get_json()["message"]


def test_unknown_fields_and_missing_records_are_refused_not_crashed(sheet, admin_client) -> None:  # noqa: ANN001
    _config, token = page_config(admin_client, sheet["slug"])
    body = {
        "changes": [
            {"id": 2**31 - 1, "version": 1, "values": {sheet["count"]: "1"}},
            {"id": sheet["mine"][1], "version": 1, "values": {"no_such_field": "1", sheet["count"]: "5"}},
        ]
    }
    response = save(admin_client, sheet["slug"], token, body)
    assert response.status_code == 422
    refused = {(r["index"], r.get("field")) for r in response.get_json()["refused"]}
    assert (0, None) in refused and (1, "no_such_field") in refused
    response = save(admin_client, sheet["slug"], token, {**body, "mode": "valid"})
    assert response.status_code == 200
    assert stored(sheet["slug"], sheet["mine"][1])[sheet["count"]] == 5


def test_rows_carry_their_version_and_whether_they_are_editable(sheet, admin_client, staff_client) -> None:  # noqa: ANN001
    """The data endpoint's rows (``versions=1``) carry the version they were read at and the edit right,
    read in the same statement as their values (no second request that a save could slip in between)."""

    def rows(client) -> dict[int, dict[str, Any]]:  # noqa: ANN001
        answer = client.get(f"/api/v1/data/{sheet['slug']}?versions=1").get_json()
        return {row["id"]: row for row in answer["rows"]}

    seen = rows(admin_client)
    assert {pk: (r["_version"], r["_editable"]) for pk, r in seen.items()} == {
        pk: (1, True) for pk in [*sheet["mine"], sheet["other"]]
    }
    assert "_version" not in admin_client.get(f"/api/v1/data/{sheet['slug']}").get_json()["rows"][0]
    assert set(rows(staff_client)) == set(sheet["mine"])  # the other record is out of reach
    records.update(
        sheet["slug"], sheet["mine"][0], {sheet["count"]: 7}, Actor.system_job(), expected_version=None
    )
    db.session.commit()
    assert rows(staff_client)[sheet["mine"][0]]["_version"] == 2
    # Reading every record but editing only their own: the other one is read-only.
    access.set_table_rights(role_id("Staff"), current().entity(sheet["slug"]).id, {"read_scope": "all"})
    refresh()
    seen = rows(staff_client)
    assert {pk: r["_editable"] for pk, r in seen.items()} == {
        sheet["mine"][0]: True,
        sheet["mine"][1]: True,
        sheet["other"]: False,
    }
    assert staff_client.get(f"/grid/{sheet['slug']}/versions?ids=1").status_code == 404  # no second door


JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


def test_no_save_body_makes_a_server_error(sheet, admin_client) -> None:  # noqa: ANN001
    """Any JSON at all, and changes shaped almost right, get an answer, never a 500."""
    _config, token = page_config(admin_client, sheet["slug"])
    names = [sheet["name"], sheet["amount"], sheet["count"], sheet["kind"], "nope"]
    change = st.fixed_dictionaries(
        {"id": st.sampled_from([*sheet["mine"], 0, -1, 2**31]) | JSON, "version": st.integers(-1, 3) | JSON},
        optional={"values": st.dictionaries(st.sampled_from(names), JSON, max_size=4) | JSON},
    )
    body = (
        st.fixed_dictionaries(
            {},
            optional={
                "mode": st.sampled_from(["all", "valid"]) | JSON,
                "changes": st.lists(change, max_size=3) | JSON,
                "create": st.lists(
                    st.fixed_dictionaries({"values": st.dictionaries(st.sampled_from(names), JSON)}),
                    max_size=2,
                ),
                "delete": st.lists(change, max_size=2) | JSON,
            },
        )
        | JSON
    )

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body)
    def answers(payload: Any) -> None:
        response = save(admin_client, sheet["slug"], token, payload)
        assert response.status_code in (200, 400, 403, 404, 409, 422), (payload, response.status_code)
        # JSON, except the app's guard refusing a NUL character anywhere in a request (its 400 page).
        assert response.is_json or response.status_code == 400, payload

    answers()


def test_every_list_links_to_its_grid(sheet, admin_client) -> None:  # noqa: ANN001
    for slug in (sheet["slug"], "companies"):
        page = admin_client.get(f"/t/{slug}/list/").get_data(as_text=True)
        assert f'id="open-grid" href="/grid/{slug}/"' in page


def test_links_pasted_by_label_resolve_within_reach(sheet, admin_client, staff_client) -> None:  # noqa: ANN001
    """Company names pasted into a link column become those records; an unknown, ambiguous or unreadable
    label refuses its cell only, and a record number still works."""
    target = new_table(unique_label("Компании"))
    link = new_field(current().entity(sheet["slug"]), "Компания", "link", settings={"target": target.id})
    label_field = current().entity(target.slug).display_field.name
    admin = Actor.for_user_id(user_id("admin"), "ui")
    staff = Actor.for_user_id(user_id("staff1"), "ui")
    alpha, beta = records.create_many(target.slug, [{label_field: "Альфа"}, {label_field: HOSTILE}], staff)
    records.create_many(target.slug, [{label_field: "Дубль"}, {label_field: "Дубль"}], staff)
    hidden = records.create(target.slug, {label_field: "Чужая компания"}, admin)  # out of staff's reach
    db.session.commit()
    _config, token = page_config(staff_client, sheet["slug"])
    first, second = sheet["mine"]
    body = {
        "changes": [
            {"id": first, "version": 1, "values": {link.name: " Альфа ", sheet["count"]: "5"}},
            {"id": second, "version": 1, "values": {link.name: "Дубль", sheet["count"]: "6"}},
        ],
        "create": [
            {"values": {sheet["name"]: "Новая", link.name: "Чужая компания"}},
            {"values": {sheet["name"]: "Ещё", link.name: HOSTILE}},
            {"values": {sheet["name"]: "Номер", link.name: f"#{alpha.id}"}},
        ],
    }
    response = save(staff_client, sheet["slug"], token, body)
    assert response.status_code == 422, response.get_json()
    refused = {(r["kind"], r["index"], r.get("field")): r["message"] for r in response.get_json()["refused"]}
    assert set(refused) == {("update", 1, link.name), ("create", 0, link.name)}
    assert (
        "Дубль" in refused[("update", 1, link.name)] and "Чужая компания" in refused[("create", 0, link.name)]
    )
    assert stored(sheet["slug"], first)[link.name] is None  # nothing saved yet
    response = save(staff_client, sheet["slug"], token, {**body, "mode": "valid"})
    assert response.status_code == 200, response.get_json()
    assert stored(sheet["slug"], first)[link.name] == alpha.id
    assert (
        stored(sheet["slug"], second)[link.name] is None
        and stored(sheet["slug"], second)[sheet["count"]] == 6
    )
    created = {c["index"]: c for c in response.get_json()["created"]}
    assert stored(sheet["slug"], created[1]["id"])[link.name] == beta.id
    assert stored(sheet["slug"], created[2]["id"])[link.name] == alpha.id
    assert created[1]["values"][link.name]["label"] == HOSTILE
    # The admin reaches the other company by its label.
    _config, token = page_config(admin_client, sheet["slug"])
    response = save(admin_client, sheet["slug"], token, {"changes": [
        {"id": first, "version": 2, "values": {link.name: "Чужая компания"}}]})  # fmt: skip
    assert response.status_code == 200, response.get_json()
    assert stored(sheet["slug"], first)[link.name] == hidden.id
