"""The one write path: field and table permissions on every route, optimistic locking, history for every
source, the recycle bin, batches, and a property test that history replays to the stored state."""

from __future__ import annotations

import datetime as dt
import json
import re

import prison
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from app.extensions import db
from custom_fields import access, history, records
from custom_fields.access import Actor
from custom_fields.runtime import current, refresh
from custom_fields.types import REGISTRY
from models import Entity, Field, JobRun, JobStatus
from tests.conftest import DEMO_PASSWORD, csrf_token, login, signed_in
from tests.tables_helpers import new_field, new_table, unique_label


def token(client, username: str, password: str) -> dict[str, str]:  # noqa: ANN001
    response = client.post(
        "/api/v1/security/login", json={"username": username, "password": password, "provider": "db"}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def role_id(name: str) -> int:
    from flask_appbuilder.security.sqla.models import Role

    return db.session.scalar(select(Role.id).where(Role.name == name))


def user_actor(username: str, source: str = "job") -> Actor:
    from flask_appbuilder.security.sqla.models import User

    return Actor.for_user_id(db.session.scalar(select(User.id).where(User.username == username)), source)


def admin_actor(source: str = "job") -> Actor:
    return user_actor("admin", source)


#: A role's reach over every record of a table (the seeded one is its own records for Staff, its team's for
#: Manager): for tests whose users work on records someone else created.
EVERY_ROW = {"read_scope": "all", "edit_scope": "all", "delete_scope": "all"}


@pytest.fixture
def guarded_table(app_ctx):  # noqa: ANN001, ANN201
    """A table with a secret (hidden from Staff), a locked (view-only for Staff) and a free field."""
    entity = new_table(unique_label("Права"))
    name = db.session.get(Field, entity.display_field_id)
    secret = new_field(entity, "Секрет", "text")
    locked = new_field(entity, "Скидка", "integer")
    access.save_rules(
        role_id("Staff"), tables={entity.id: EVERY_ROW}, fields={secret.id: "hidden", locked.id: "view"}
    )
    refresh()
    saved = records.create(
        entity.slug, {name.name: "Запись", secret.name: "тайна-42", locked.name: 7}, admin_actor("ui")
    )
    return entity, name, secret, locked, saved.id


def edit_form(client, entity: Entity, pk: int) -> tuple[str, dict[str, str]]:  # noqa: ANN001
    html = client.get(f"/t/{entity.slug}/edit/{pk}").get_data(as_text=True)
    version = re.search(r'name="row_version"[^>]*value="(\d+)"', html) or re.search(
        r'value="(\d+)"[^>]*name="row_version"', html
    )
    assert version, "the edit form carries the record's version"
    return html, {"csrf_token": csrf_token(html), "row_version": version.group(1)}


# --- permissions --------------------------------------------------------------------------------------------


def test_hidden_and_view_only_fields_on_every_route(guarded_table, app, admin_client) -> None:  # noqa: ANN001
    entity, name, secret, locked, pk = guarded_table
    staff = app.test_client()
    assert signed_in(login(staff, "staff1", DEMO_PASSWORD))
    base = f"/t/{entity.slug}"

    # HTML: the hidden field is nowhere; the view-only one is shown but not in forms.
    for path in (f"{base}/list/", f"{base}/show/{pk}", f"{base}/edit/{pk}", f"{base}/add"):
        html = staff.get(path).get_data(as_text=True)
        assert "тайна-42" not in html and secret.name not in html and "Секрет" not in html, path
    show = staff.get(f"{base}/show/{pk}").get_data(as_text=True)
    assert "Скидка" in show and ">7<" in show.replace(" ", "")
    edit_html, data = edit_form(staff, entity, pk)
    assert f'name="{locked.name}"' not in edit_html and f'name="{name.name}"' in edit_html
    # ... while the admin sees and edits both.
    admin_edit = admin_client.get(f"{base}/edit/{pk}").get_data(as_text=True)
    assert f'name="{secret.name}"' in admin_edit and f'name="{locked.name}"' in admin_edit

    # HTML writes: smuggled values for the locked and hidden fields change nothing.
    data.update({name.name: "Переименовано", locked.name: "999", secret.name: "взлом"})
    assert staff.post(f"{base}/edit/{pk}", data=data).status_code == 302
    db.session.expire_all()
    row = db.session.get(current().classes[entity.slug], pk)
    assert (getattr(row, name.name), getattr(row, locked.name), getattr(row, secret.name)) == (
        "Переименовано", 7, "тайна-42",
    )  # fmt: skip

    # Filters and sorting by the hidden field are ignored in HTML and refused in the API.
    filtered = staff.get(f"{base}/list/?_flt_0_{secret.name}=тайна").get_data(as_text=True)
    assert "Переименовано" in filtered  # the filter did not apply (and did not leak)
    records.create(entity.slug, {name.name: "Вторая", secret.name: "а-первая"}, admin_actor())
    view = f"TableView_{entity.slug}"
    for direction in ("asc", "desc"):  # sorting by the hidden field is ignored: the order stays by number
        listed = staff.get(f"{base}/list/?_oc_{view}={secret.name}&_od_{view}={direction}").get_data(
            as_text=True
        )
        assert listed.index("Вторая") < listed.index("Переименовано")
    headers = token(app.test_client(), "staff1", DEMO_PASSWORD)
    api = app.test_client()
    query = prison.dumps({"filters": [{"col": secret.name, "opr": "eq", "value": "тайна-42"}]})
    assert api.get(f"/api/v1/t/{entity.slug}/?q={query}", headers=headers).status_code == 400
    query = prison.dumps({"order_column": secret.name, "order_direction": "asc"})
    assert api.get(f"/api/v1/t/{entity.slug}/?q={query}", headers=headers).status_code == 400
    query = prison.dumps({"columns": [secret.name, name.name]})
    selected = api.get(f"/api/v1/t/{entity.slug}/?q={query}", headers=headers)
    assert selected.status_code in (200, 400) and "тайна" not in selected.get_data(as_text=True)

    # API reads: absent from list, item, _info and the OpenAPI document; the view-only field is shown.
    listed = api.get(f"/api/v1/t/{entity.slug}/", headers=headers).get_json()
    assert secret.name not in json.dumps(listed) and listed["result"][0][locked.name] == 7
    item = api.get(f"/api/v1/t/{entity.slug}/{pk}", headers=headers).get_json()["result"]
    assert secret.name not in item and item[locked.name] == 7
    info = api.get(f"/api/v1/t/{entity.slug}/_info", headers=headers).get_json()
    assert secret.name not in json.dumps(info)
    openapi = json.dumps(api.get("/api/v1/_openapi", headers=headers).get_json())
    assert entity.slug in openapi and secret.name not in openapi
    admin_headers = token(app.test_client(), "admin", __import__("tests.conftest").conftest.ADMIN_PASSWORD)
    assert secret.name in json.dumps(api.get("/api/v1/_openapi", headers=admin_headers).get_json())

    # API writes: the locked and the hidden field are refused, with nothing applied.
    version = item["_version"]
    put = api.put(
        f"/api/v1/t/{entity.slug}/{pk}", json={locked.name: 1, "_version": version}, headers=headers
    )
    assert put.status_code == 422 and locked.name in put.get_json()["message"]
    put = api.put(
        f"/api/v1/t/{entity.slug}/{pk}", json={secret.name: "x", "_version": version}, headers=headers
    )
    assert put.status_code == 422 and "No such field" in json.dumps(put.get_json())
    post = api.post(f"/api/v1/t/{entity.slug}/", json={name.name: "Новая", locked.name: 5}, headers=headers)
    assert post.status_code == 422
    db.session.expire_all()
    assert getattr(db.session.get(current().classes[entity.slug], pk), locked.name) == 7

    # The write path refuses a job acting for a staff user in the same way.
    with pytest.raises(records.RecordInvalid) as refused:
        records.update(entity.slug, pk, {locked.name: 3}, user_actor("staff1"), expected_version=None)
    assert locked.name in refused.value.errors

    # History shown to staff leaves the hidden field out.
    timeline = history.timeline(access.grants(user_actor("staff1"), current().entity(entity.slug)), pk)
    assert all(line.field != "Секрет" for change in timeline for line in change.lines)
    admin_view = history.timeline(access.grants(admin_actor(), current().entity(entity.slug)), pk)
    assert any(line.field == "Секрет" for change in admin_view for line in change.lines)


@pytest.mark.parametrize(
    ("action", "screen", "api_call"),
    [
        ("read", "/t/{slug}/list/", ("get", "/api/v1/t/{slug}/")),
        ("add", "/t/{slug}/add", ("post", "/api/v1/t/{slug}/")),
        ("edit", "/t/{slug}/edit/{pk}", ("put", "/api/v1/t/{slug}/{pk}")),
        ("delete", None, ("delete", "/api/v1/t/{slug}/{pk}")),
    ],
)
def test_table_rights_cascade_default_table_and_role(app_ctx, app, action, screen, api_call) -> None:  # noqa: ANN001
    """Denied on the table (over an allowing default) -> refused on screens and API; back to the default ->
    allowed again; the Manager role is untouched."""
    entity = new_table(unique_label("Каскад"))
    name = db.session.get(Field, entity.display_field_id)
    pk = records.create(entity.slug, {name.name: "Строка"}, admin_actor()).id
    staff_role = role_id("Staff")
    for role in (staff_role, role_id("Manager")):  # both reach the admin's record: only the action varies
        access.save_rules(role, tables={entity.id: EVERY_ROW})

    def attempt(username: str) -> tuple[int | None, int]:
        client = app.test_client()
        assert signed_in(login(client, username, DEMO_PASSWORD))
        html_status = None
        if screen:
            html_status = client.get(screen.format(slug=entity.slug, pk=pk)).status_code
        method, path = api_call
        headers = token(app.test_client(), username, DEMO_PASSWORD)
        db.session.expire_all()
        row = db.session.get(current().classes[entity.slug], pk)
        version = row.row_version if row is not None else 1
        body = {"post": {name.name: "Из API"}, "put": {name.name: "Из API", "_version": version}}.get(method)
        api_status = getattr(app.test_client(), method)(
            path.format(slug=entity.slug, pk=pk), json=body, headers=headers
        ).status_code
        return html_status, api_status

    access.set_table_rights(staff_role, entity.id, {action: False})
    refresh()
    html_status, api_status = attempt("staff1")
    assert html_status in (None, 302, 403) and api_status in (401, 403)
    if action == "delete":
        staff = app.test_client()
        assert signed_in(login(staff, "staff1", DEMO_PASSWORD))
        html = staff.get(f"/t/{entity.slug}/edit/{pk}").get_data(as_text=True)
        staff.post(f"/t/{entity.slug}/delete/{pk}", data={"csrf_token": csrf_token(html)})
        db.session.expire_all()  # the record is still there
        assert db.session.get(current().classes[entity.slug], pk).deleted_at is None
    manager_html, manager_api = attempt("manager")
    assert manager_html in (None, 200) and manager_api in (200, 201)

    access.set_table_rights(staff_role, entity.id, {action: None})  # back to "as the default"
    refresh()
    html_status, api_status = attempt("staff1")
    assert html_status in (None, 200) and api_status in (200, 201, 404)  # 404: deleted by the manager


def test_access_screen_changes_rules_in_the_browser_routes(app_ctx, admin_client, staff_client) -> None:  # noqa: ANN001
    entity = new_table(unique_label("Экран"))
    name = db.session.get(Field, entity.display_field_id)
    staff = role_id("Staff")
    page = admin_client.get(f"/admin/access/?role={staff}").get_data(as_text=True)
    assert f'name="t{entity.id}.read"' in page
    form = {f"t{entity.id}.read": "deny", "csrf_token": csrf_token(page)}
    assert admin_client.post(f"/admin/access/{staff}/tables", data=form).status_code == 302
    assert staff_client.get(f"/t/{entity.slug}/list/").status_code in (302, 403)
    assert entity.plural_label not in staff_client.get("/").get_data(as_text=True)

    form = {f"t{entity.id}.read": "inherit", "csrf_token": csrf_token(page)}
    admin_client.post(f"/admin/access/{staff}/tables", data=form)
    assert staff_client.get(f"/t/{entity.slug}/list/").status_code == 200
    menu = staff_client.get("/").get_data(as_text=True)
    assert entity.plural_label in menu and f"/grid/{entity.slug}/" in menu

    fields_page = admin_client.get(f"/admin/access/{staff}/fields/{entity.slug}").get_data(as_text=True)
    form = {f"field.{name.id}": "hidden", "csrf_token": csrf_token(fields_page)}
    assert admin_client.post(f"/admin/access/{staff}/fields/{entity.slug}", data=form).status_code == 302
    assert refresh().access.fields[(staff, name.id)] == "hidden"
    # Bad input changes nothing and says so; the Admin role cannot be restricted; staff cannot get in.
    form = {f"field.{name.id}": "sideways", "csrf_token": csrf_token(fields_page)}
    response = admin_client.post(
        f"/admin/access/{staff}/fields/{entity.slug}", data=form, follow_redirects=True
    )
    assert "unknown choice" in response.get_data(as_text=True)
    assert admin_client.get(f"/admin/access/{role_id('Admin')}/fields/{entity.slug}").status_code == 404
    assert admin_client.post(f"/admin/access/{staff}/tables", data={"default.read": "inherit",
        "csrf_token": csrf_token(page)}, follow_redirects=True).status_code == 200  # fmt: skip
    assert refresh().access.allowed(staff, 0, "read")  # the default stayed "allow"
    assert staff_client.get("/admin/access/").status_code in (302, 403)
    assert staff_client.post(f"/admin/access/{staff}/tables", data=form).status_code in (302, 400, 403)


# --- optimistic locking -------------------------------------------------------------------------------------


def test_two_tabs_editing_the_same_record_over_html(app_ctx, app) -> None:  # noqa: ANN001
    entity = new_table(unique_label("Вкладки"))
    name = db.session.get(Field, entity.display_field_id)
    note = new_field(entity, "Заметка", "text")
    pk = records.create(entity.slug, {name.name: "Исходное"}, admin_actor()).id
    first, second = app.test_client(), app.test_client()
    assert signed_in(login(first, "staff1", DEMO_PASSWORD))
    assert signed_in(login(second, "staff2", DEMO_PASSWORD))
    assert first.get(f"/t/{entity.slug}/edit/{pk}").status_code == 404  # the admin's: out of Staff's reach
    access.save_rules(role_id("Staff"), tables={entity.id: EVERY_ROW})
    refresh()
    _html1, form1 = edit_form(first, entity, pk)
    _html2, form2 = edit_form(second, entity, pk)

    assert (
        first.post(f"/t/{entity.slug}/edit/{pk}", data={**form1, name.name: "Первая вкладка"}).status_code
        == 302
    )
    refused = second.post(
        f"/t/{entity.slug}/edit/{pk}", data={**form2, name.name: "Вторая", note.name: "моё"}
    )
    html = refused.get_data(as_text=True)
    assert refused.status_code == 200 and 'id="conflict"' in html
    assert "Первая вкладка" in html  # the value saved now is shown ...
    assert 'value="Вторая"' in html and 'value="моё"' in html  # ... and the user's input is kept
    db.session.expire_all()
    assert getattr(db.session.get(current().classes[entity.slug], pk), name.name) == "Первая вкладка"
    # Saving again from the conflict form is a deliberate choice, and applies.
    new_version = re.search(r'name="row_version"[^>]*value="(\d+)"', html) or re.search(
        r'value="(\d+)"[^>]*name="row_version"', html
    )
    assert new_version.group(1) == "2"
    again = {**form2, "row_version": "2", name.name: "Вторая", note.name: "моё"}
    assert second.post(f"/t/{entity.slug}/edit/{pk}", data=again).status_code == 302
    # A form without its version is treated as stale, never applied blindly.
    stale = {"csrf_token": form2["csrf_token"], name.name: "Без версии"}
    assert 'id="conflict"' in second.post(f"/t/{entity.slug}/edit/{pk}", data=stale).get_data(as_text=True)


def test_stale_update_over_the_api_is_409_with_current_values(app_ctx, app) -> None:  # noqa: ANN001
    entity = new_table(unique_label("Версии"))
    name = db.session.get(Field, entity.display_field_id)
    pk = records.create(entity.slug, {name.name: "А"}, user_actor("staff1", "api")).id
    headers = token(app.test_client(), "staff1", DEMO_PASSWORD)
    api = app.test_client()
    base = f"/api/v1/t/{entity.slug}/{pk}"
    # Another staff user's record is out of reach: not found, whatever the version.
    others = token(app.test_client(), "staff2", DEMO_PASSWORD)
    assert api.get(base, headers=others).status_code == 404
    assert api.put(base, json={name.name: "Чужое", "_version": 1}, headers=others).status_code == 404
    assert api.put(base, json={name.name: "Б", "_version": 1}, headers=headers).status_code == 200
    stale = api.put(base, json={name.name: "В", "_version": 1}, headers=headers)
    body = stale.get_json()
    assert stale.status_code == 409 and body["current"][name.name] == "Б" and body["_version"] == 2
    assert api.put(base, json={name.name: "В"}, headers={**headers, "If-Match": '"2"'}).status_code == 200
    assert api.get(base, headers=headers).get_json()["result"][name.name] == "В"
    assert api.put(base, json={name.name: "Г", "_version": "x"}, headers=headers).status_code == 428


def test_a_conflict_never_shows_a_field_hidden_from_the_user(guarded_table, app) -> None:  # noqa: ANN001
    """Someone saves the record (a hidden field included) while a staff user edits it: the staff user's
    "someone changed this record" answer, over the API (409) and on the form, names the values they may
    see and nothing of the hidden field."""
    entity, name, secret, _locked, pk = guarded_table
    staff = app.test_client()
    assert signed_in(login(staff, "staff1", DEMO_PASSWORD))
    _html, form = edit_form(staff, entity, pk)
    headers = token(app.test_client(), "staff1", DEMO_PASSWORD)
    records.update(
        entity.slug, pk, {name.name: "Сохранено админом", secret.name: "тайна-43"}, admin_actor("ui"),
        expected_version=int(form["row_version"]),
    )  # fmt: skip

    api = staff.put(
        f"/api/v1/t/{entity.slug}/{pk}",
        json={name.name: "Моё", "_version": int(form["row_version"])},
        headers=headers,
    )
    assert api.status_code == 409
    body = api.get_json()
    assert body["current"][name.name] == "Сохранено админом"  # what the user may see is there ...
    assert secret.name not in body["current"]  # ... the hidden field is not, by name or by value
    assert "тайна" not in api.get_data(as_text=True)

    page = staff.post(f"/t/{entity.slug}/edit/{pk}", data={**form, name.name: "Моё"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="conflict"' in html
    assert "Сохранено админом" in html
    assert "тайна" not in html and "Секрет" not in html and secret.name not in html
    db.session.expire_all()
    row = db.session.get(current().classes[entity.slug], pk)
    assert (getattr(row, name.name), getattr(row, secret.name)) == ("Сохранено админом", "тайна-43")


# --- history ------------------------------------------------------------------------------------------------


def lines(entity_id: int, pk: int) -> list[history.Line]:
    return history.lines(entity_id, pk)


def test_history_records_every_source_with_old_and_new_values(app_ctx, app, admin_client) -> None:  # noqa: ANN001
    entity = new_table(unique_label("История"))
    name = db.session.get(Field, entity.display_field_id)
    amount = new_field(entity, "Сумма", "money")
    staff_id = user_actor("staff1").user_id
    pk = records.create(
        entity.slug, {name.name: "Создано", amount.name: "10"}, user_actor("staff1", "import")
    ).id
    records.update(entity.slug, pk, {amount.name: "1 234,5"}, user_actor("staff1", "job"), expected_version=1)
    headers = token(app.test_client(), "staff1", DEMO_PASSWORD)
    app.test_client().put(
        f"/api/v1/t/{entity.slug}/{pk}", json={name.name: "Из API", "_version": 2}, headers=headers
    )
    _html, form = edit_form(admin_client, entity, pk)
    admin_client.post(
        f"/t/{entity.slug}/edit/{pk}", data={**form, name.name: "Из формы", amount.name: "1234.50"}
    )

    rows = [(r.source, r.action, r.field_id, r.old_value, r.new_value) for r in lines(entity.id, pk)]
    assert ("import", "create", name.id, None, "Создано") in rows
    assert ("import", "create", amount.id, None, "10.00") in rows
    assert ("job", "update", amount.id, "10.00", "1234.50") in rows
    assert ("api", "update", name.id, "Создано", "Из API") in rows
    assert ("ui", "update", name.id, "Из API", "Из формы") in rows
    assert not [r for r in rows if r[0] == "ui" and r[2] == amount.id]  # unchanged values are not history
    assert {r.user_id for r in lines(entity.id, pk) if r.source != "ui"} == {staff_id}

    show = admin_client.get(f"/t/{entity.slug}/show/{pk}").get_data(as_text=True)
    assert 'id="timeline"' in show and "Из API" in show and "1,234.50 RUB" in show
    log = admin_client.get(f"/admin/history/?table={entity.id}&source=api").get_data(as_text=True)
    assert "Из API" in log and "Создано" in log
    assert "1234.50" not in log and "1 234,50" not in log  # the job's change is not an API change
    log = admin_client.get(f"/admin/history/?table={entity.id}&source=import").get_data(as_text=True)
    assert "Создано" in log and "Из формы" not in log
    # The period is whole days (UTC), both ends included: today's change is in "today to today" only.
    today = dt.datetime.now(dt.UTC).date()

    def in_period(start: dt.date | None, end: dt.date | None) -> bool:
        period = "".join(
            f"&{key}={day.isoformat()}" for key, day in (("from", start), ("to", end)) if day is not None
        )
        return "Из формы" in admin_client.get(f"/admin/history/?table={entity.id}{period}").get_data(
            as_text=True
        )

    assert in_period(today, today) and in_period(today, None) and in_period(None, today)
    assert not in_period(today + dt.timedelta(days=1), None)
    assert not in_period(None, today - dt.timedelta(days=1))
    assert not in_period(today - dt.timedelta(days=3), today - dt.timedelta(days=1))
    for bad in ("?user=abc", "?from=31.02.2025", "?page=-1", "?table=99999999999"):
        assert admin_client.get(f"/admin/history/{bad}").status_code == 200
    payload = "<script>alert('xss')</script>"
    answer = admin_client.get("/admin/history/", query_string={"table": entity.id, "source": payload})
    assert answer.status_code == 200
    log = answer.get_data(as_text=True)
    assert "alert('xss')" not in log and "<script>alert" not in log  # not echoed, not even inside a link
    # An unknown source filters nothing: every source's changes are listed, "Any source" stays chosen.
    assert "Из API" in log and "Из формы" in log
    source_select = log[log.index('name="source"') : log.index("</select>", log.index('name="source"'))]
    assert " selected" not in source_select


# --- recycle bin --------------------------------------------------------------------------------------------


def test_delete_is_soft_and_restore_brings_the_history_back(app_ctx, app, admin_client) -> None:  # noqa: ANN001
    entity = new_table(unique_label("Корзина"))
    name = db.session.get(Field, entity.display_field_id)
    owner = user_actor("staff1", "ui")
    pk = records.create(entity.slug, {name.name: "Удаляемая"}, owner).id
    records.update(entity.slug, pk, {name.name: "Переименованная"}, owner, expected_version=1)

    staff = app.test_client()
    assert signed_in(login(staff, "staff1", DEMO_PASSWORD))
    html = staff.get(f"/t/{entity.slug}/edit/{pk}").get_data(as_text=True)
    assert (
        staff.post(f"/t/{entity.slug}/delete/{pk}", data={"csrf_token": csrf_token(html)}).status_code == 302
    )
    assert staff.get(f"/t/{entity.slug}/show/{pk}").status_code == 404
    assert "Переименованная" not in staff.get(f"/t/{entity.slug}/list/").get_data(as_text=True)
    headers = token(app.test_client(), "staff1", DEMO_PASSWORD)
    assert app.test_client().get(f"/api/v1/t/{entity.slug}/{pk}", headers=headers).status_code == 404
    assert staff.get(f"/t/{entity.slug}/lookup?q=Переименованная").get_json()["results"] == []

    # Another staff user neither sees it in the bin nor restores it; its owner does.
    other = app.test_client()
    assert signed_in(login(other, "staff2", DEMO_PASSWORD))
    other_bin = other.get("/recycle-bin/").get_data(as_text=True)
    assert "Переименованная" not in other_bin
    bin_html = staff.get("/recycle-bin/").get_data(as_text=True)
    assert "Переименованная" in bin_html
    other_token = csrf_token(other.get(f"/t/{entity.slug}/add").get_data(as_text=True))
    refused = other.post(f"/recycle-bin/{entity.slug}/{pk}/restore", data={"csrf_token": other_token},
                         follow_redirects=True)  # fmt: skip
    assert "owner" in refused.get_data(as_text=True)
    restored = staff.post(
        f"/recycle-bin/{entity.slug}/{pk}/restore", data={"csrf_token": csrf_token(bin_html)}
    )
    assert restored.status_code == 302 and f"/t/{entity.slug}/show/{pk}" in restored.headers["Location"]
    show = staff.get(f"/t/{entity.slug}/show/{pk}").get_data(as_text=True)
    assert "Удаляемая" in show and "Переименованная" in show  # the full history came back with it
    actions = [r.action for r in lines(entity.id, pk) if r.field_id is None]
    assert actions == ["create", "delete", "restore"]
    # Restoring twice is a clear refusal, not a 500.
    again = staff.post(f"/recycle-bin/{entity.slug}/{pk}/restore", data={"csrf_token": csrf_token(bin_html)})
    assert again.status_code == 404


def test_unique_values_held_in_the_bin_are_named(app_ctx) -> None:  # noqa: ANN001
    entity = new_table(unique_label("Уникальные"))
    name = db.session.get(Field, entity.display_field_id)
    code = new_field(entity, "Код", "text", unique=True)
    pk = records.create(entity.slug, {name.name: "Один", code.name: "A-1"}, admin_actor()).id
    records.delete(entity.slug, pk, admin_actor())
    with pytest.raises(records.RecordInvalid) as refused:
        records.create(entity.slug, {name.name: "Два", code.name: "A-1"}, admin_actor())
    assert "recycle bin" in refused.value.errors[code.name]


def test_purge_job_removes_only_expired_records_on_a_real_worker(app_ctx, worker) -> None:  # noqa: ANN001
    from jobs import enqueue
    from jobs.records import purge_recycle_bin

    entity = new_table(unique_label("Очистка"))
    name = db.session.get(Field, entity.display_field_id)
    model = current().classes[entity.slug]
    old, recent, alive = (
        records.create(entity.slug, {name.name: label}, admin_actor()).id
        for label in ("Старая", "Свежая", "Живая")
    )
    records.delete(entity.slug, old, admin_actor())
    records.delete(entity.slug, recent, admin_actor())
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    db.session.execute(update(model.__table__).where(model.__table__.c.id == old).values(deleted_at=long_ago))
    db.session.commit()

    run = enqueue("purge_recycle_bin", purge_recycle_bin)
    deadline = dt.datetime.now() + dt.timedelta(seconds=30)
    while dt.datetime.now() < deadline:
        db.session.expire_all()
        if db.session.get(JobRun, run.id).status in (JobStatus.finished, JobStatus.failed):
            break
    finished = db.session.get(JobRun, run.id)
    assert finished.status == JobStatus.finished, finished.message
    assert finished.result["purged"] >= 1
    db.session.expire_all()
    assert db.session.get(model, old) is None
    assert db.session.get(model, recent) is not None and db.session.get(model, alive) is not None
    assert [r.action for r in lines(entity.id, old) if r.field_id is None][-1] == "purge"


def test_only_an_admin_may_empty_the_recycle_bin(app_ctx, app, staff_client, manager_client, client) -> None:  # noqa: ANN001
    """Staff and managers may use the recycle bin (restore their own records) but posting to its purge
    endpoint, with a valid form token, is refused: no purge job starts and the expired record stays."""
    entity = new_table(unique_label("Не очищать"))
    name = db.session.get(Field, entity.display_field_id)
    model = current().classes[entity.slug]
    pk = records.create(entity.slug, {name.name: "Давно удалена"}, admin_actor()).id
    records.delete(entity.slug, pk, admin_actor())
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    db.session.execute(update(model.__table__).where(model.__table__.c.id == pk).values(deleted_at=long_ago))
    db.session.commit()

    def purge_runs() -> int:
        db.session.expire_all()
        return len(db.session.scalars(select(JobRun.id).where(JobRun.kind == "purge_recycle_bin")).all())

    before = purge_runs()
    for who in (staff_client, manager_client):
        assert who.get("/recycle-bin/").status_code == 200  # they may use the bin ...
        token = csrf_token(who.get("/t/companies/add").get_data(as_text=True))
        refused = who.post("/recycle-bin/purge", data={"csrf_token": token})
        assert refused.status_code == 403  # ... but not empty it (the form token was valid: not a 400)
    anonymous = client.post("/recycle-bin/purge")
    assert anonymous.status_code in (302, 400, 401, 403)
    assert "/system/jobs/" not in anonymous.headers.get("Location", "")
    assert purge_runs() == before
    db.session.expire_all()
    assert db.session.get(model, pk) is not None


# --- batches ------------------------------------------------------------------------------------------------


def test_batches_are_all_or_nothing_with_errors_per_row(app_ctx) -> None:  # noqa: ANN001
    entity = new_table(unique_label("Пакет"))
    name = db.session.get(Field, entity.display_field_id)
    count = new_field(entity, "Количество", "integer")
    code = new_field(entity, "Код", "text", unique=True)
    rows = [{name.name: f"Строка {i}", count.name: str(i), code.name: f"K{i}"} for i in range(1200)]
    rows[700][count.name] = "много"
    rows[900][code.name] = "K1"
    with pytest.raises(records.RecordInvalid) as refused:
        records.create_many(entity.slug, rows, admin_actor("import"))
    assert set(refused.value.rows) == {700, 900}  # 900 repeats row 1's unique value
    model = current().classes[entity.slug]
    assert db.session.scalar(select(model.id).limit(1)) is None

    rows[700][count.name] = "700"
    rows[900][code.name] = "K900"
    saved = records.create_many(entity.slug, rows, admin_actor("import"))
    assert len(saved) == 1200 and [s.id for s in saved] == sorted(s.id for s in saved)
    changes = [(s.id, {count.name: 50000}, 1) for s in saved[:600]] + [(saved[600].id, {count.name: 1}, 99)]
    with pytest.raises(records.StaleRecord):
        records.update_many(entity.slug, changes, admin_actor("job"))
    assert db.session.scalar(select(model.id).where(getattr(model, count.name) == 50000).limit(1)) is None
    updated = records.update_many(entity.slug, changes[:-1], admin_actor("job"))
    assert {s.version for s in updated} == {2}
    twice = [(saved[0].id, {count.name: 1}, 2), (saved[0].id, {name.name: "Дважды"}, 2)]
    assert records.update_many(entity.slug, twice, admin_actor("job")) == [records.Saved(saved[0].id, 3)]
    row = db.session.get(model, saved[0].id)
    db.session.refresh(row)
    assert (getattr(row, count.name), getattr(row, name.name)) == (1, "Дважды")
    assert records.delete_many(entity.slug, [s.id for s in saved[:10]], admin_actor()) == 10


# --- history replays to the stored state --------------------------------------------------------------------

OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["create", "update", "delete", "restore"]),
        st.integers(min_value=0, max_value=4),
        st.text(alphabet="абвгд xyzЁ", min_size=0, max_size=8),
        st.one_of(st.none(), st.integers(min_value=-1000, max_value=1000)),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_history_replays_to_the_current_state(app_ctx, replay_table, operations) -> None:  # noqa: ANN001
    entity, name, number = replay_table
    actor = admin_actor("job")
    created: list[int] = []
    for op, index, text, value in operations:
        try:
            if op == "create" or not created:
                created.append(
                    records.create(entity.slug, {name.name: text or "·", number.name: value}, actor).id
                )
            elif op == "update":
                records.update(entity.slug, created[index % len(created)], {name.name: text or "·",
                               number.name: value}, actor, expected_version=None)  # fmt: skip
            elif op == "delete":
                records.delete(entity.slug, created[index % len(created)], actor)
            else:
                records.restore(entity.slug, created[index % len(created)], actor)
        except (records.RecordNotFound, records.RecordInvalid):
            pass  # deleting a deleted record, restoring a live one: refusals that change nothing
    model = current().classes[entity.slug]
    spec = current().entity(entity.slug)
    for pk in created:
        db.session.expire_all()
        row = db.session.get(model, pk)
        replayed = history.replay(entity.id, pk)
        assert replayed is not None
        values, deleted = replayed
        assert deleted == (row.deleted_at is not None)
        for field_spec in spec.live_fields:
            stored = REGISTRY[field_spec.type].to_json(getattr(row, field_spec.name), field_spec)
            assert values.get(field_spec.id) == stored, (pk, field_spec.name)


@pytest.fixture
def replay_table(app_ctx):  # noqa: ANN001, ANN201
    entity = new_table(unique_label("Реплей"))
    name = db.session.get(Field, entity.display_field_id)
    number = new_field(entity, "Число", "integer")
    return entity, name, number


def test_core_tables_share_the_write_path(app_ctx, staff_client) -> None:  # noqa: ANN001
    contacts = db.session.scalar(select(Entity).where(Entity.slug == "contacts"))
    page = staff_client.get("/t/contacts/add").get_data(as_text=True)
    response = staff_client.post(
        "/t/contacts/add",
        data={"csrf_token": csrf_token(page), "first_name": "Ирина", "email": "irina@пример.рф"},
    )
    assert response.status_code == 302
    pk = db.session.scalar(
        select(current().classes["contacts"].id).order_by(current().classes["contacts"].id.desc())
    )
    rows = lines(contacts.id, pk)
    assert (
        rows[0].action == "create"
        and rows[0].source == "ui"
        and rows[0].user_id == user_actor("staff1").user_id
    )
    row = db.session.get(current().classes["contacts"], pk)
    assert row.owner_id == user_actor("staff1").user_id and row.row_version == 1
