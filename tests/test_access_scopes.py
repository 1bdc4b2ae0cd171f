"""Row-level access: Staff reach their own records, Managers their teams', Admin everything — on every
route (list, show by address, edit, delete, API, lookup, counts); a task's assignee counts as its owner;
deal lines follow their deal; the access screen's scopes and the teams screen apply at once."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import prison
import pytest
from sqlalchemy import select

from app.crm.convert import default_stage_id
from app.extensions import db
from custom_fields import records
from custom_fields.access import Actor, save_rules
from custom_fields.runtime import current, refresh
from models.records import TableRule
from tests.conftest import ADMIN_PASSWORD, DEMO_PASSWORD, csrf_token, login, signed_in
from views import teams as team_service

OUTSIDER_PASSWORD = "outsider-Пароль-1"


def user_id(username: str) -> int:
    from flask_appbuilder.security.sqla.models import User

    return db.session.scalar(select(User.id).where(User.username == username))


def actor(username: str) -> Actor:
    return Actor.for_user_id(user_id(username), "ui")


def role_id(name: str) -> int:
    from flask_appbuilder.security.sqla.models import Role

    return db.session.scalar(select(Role.id).where(Role.name == name))


def fresh() -> Any:
    """This process's schema as the database has it now (objects this test's session holds are reloaded)."""
    db.session.expire_all()
    return refresh()


def token(client, username: str, password: str) -> dict[str, str]:  # noqa: ANN001
    response = client.post(
        "/api/v1/security/login", json={"username": username, "password": password, "provider": "db"}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def client_for(app, username: str, password: str = DEMO_PASSWORD):  # noqa: ANN001, ANN201
    client = app.test_client()
    assert signed_in(login(client, username, password))
    return client


def listed_ids(client, slug: str, field: str, value: str) -> set[int]:  # noqa: ANN001
    body = client.get(f"/t/{slug}/list/?_flt_0_{field}={value}").get_data(as_text=True)
    return {int(i) for i in re.findall(rf"/t/{slug}/show/(\d+)", body)}


def api_listed(client, headers: dict[str, str], slug: str, field: str, value: str) -> tuple[int, set[int]]:  # noqa: ANN001
    query = prison.dumps({"filters": [{"col": field, "opr": "ct", "value": value}], "columns": ["id"]})
    body = client.get(f"/api/v1/t/{slug}/?q={query}", headers=headers).get_json()
    return body["count"], {row["id"] for row in body["result"]}


def lookup_ids(client, slug: str, term: str) -> set[int]:  # noqa: ANN001
    return {row["id"] for row in client.get(f"/t/{slug}/lookup?q={term}").get_json()["results"]}


@pytest.fixture
def outsider(app_ctx) -> Iterator[str]:  # noqa: ANN001
    """A Staff user in no team."""
    from flask_appbuilder.security.sqla.models import Role

    sm = app_ctx.appbuilder.sm
    username = f"outsider_{uuid.uuid4().hex[:8]}"
    staff = db.session.scalar(select(Role).where(Role.name == "Staff"))
    assert sm.add_user(username, "Вне", "Команды", f"{username}@example.com", staff, OUTSIDER_PASSWORD)
    yield username


@pytest.fixture
def team(app_ctx) -> Iterator[int]:  # noqa: ANN001
    """manager, staff1 and staff2 in one team (made in the test, deleted after)."""
    members = [user_id("manager"), user_id("staff1"), user_id("staff2")]
    team_id = team_service.create_team(f"Команда {uuid.uuid4().hex[:8]}", members)
    fresh()
    yield team_id
    team_service.delete_team(team_id)
    fresh()


@pytest.fixture
def book(app_ctx, outsider, team) -> dict[str, Any]:  # noqa: ANN001
    """A company owned by each of staff1, staff2, the outsider and admin, with a shared unique word."""
    word = f"Скоуп{uuid.uuid4().hex[:8]}"
    ids = {
        who: records.create("companies", {"name": f"{word} {who}"}, actor(who)).id
        for who in ("staff1", "staff2", outsider, "admin")
    }
    return {"word": word, "ids": ids, "outsider": outsider}


def test_list_show_edit_delete_api_and_lookup_follow_the_scopes(app, book, admin_client) -> None:  # noqa: ANN001
    word, ids, outsider = book["word"], book["ids"], book["outsider"]
    expected = {
        "staff1": {ids["staff1"]},
        "staff2": {ids["staff2"]},
        "manager": {ids["staff1"], ids["staff2"]},  # the team's, not the outsider's or admin's
        "admin": set(ids.values()),
        outsider: {ids[outsider]},
    }
    passwords = {"admin": ADMIN_PASSWORD, outsider: OUTSIDER_PASSWORD}
    for who, visible in expected.items():
        client = admin_client if who == "admin" else client_for(app, who, passwords.get(who, DEMO_PASSWORD))
        assert listed_ids(client, "companies", "name", word) == visible, who
        headers = token(client, who, passwords.get(who, DEMO_PASSWORD))
        count, found = api_listed(client, headers, "companies", "name", word)
        assert (count, found) == (len(visible), visible), who
        assert lookup_ids(client, "companies", word) == visible, who
        for owner, pk in ids.items():
            show = client.get(f"/t/companies/show/{pk}")
            api = client.get(f"/api/v1/t/companies/{pk}", headers=headers)
            edit = client.get(f"/t/companies/edit/{pk}")
            if pk in visible:
                assert (show.status_code, api.status_code, edit.status_code) == (200, 200, 200), (who, owner)
            else:
                assert (show.status_code, api.status_code, edit.status_code) == (404, 404, 404), (who, owner)
                page = client.get("/t/companies/add").get_data(as_text=True)
                posted = client.post(
                    f"/t/companies/edit/{pk}", data={"name": "взлом", "csrf_token": csrf_token(page)}
                )
                assert posted.status_code == 404, (who, owner)
                assert (
                    client.post(
                        f"/t/companies/delete/{pk}", data={"csrf_token": csrf_token(page)}
                    ).status_code
                    == 404
                )
                put = client.put(f"/api/v1/t/companies/{pk}", json={"name": "взлом"}, headers=headers)
                assert put.status_code == 404, (who, owner)
                assert client.delete(f"/api/v1/t/companies/{pk}", headers=headers).status_code == 404
    db.session.expire_all()
    model = current().classes["companies"]
    names = set(
        db.session.scalars(select(model.name).where(model.id.in_(ids.values()), model.deleted_at.is_(None)))
    )
    assert len(names) == 4 and "взлом" not in names
    # The write path refuses the same for every route (jobs, imports).
    with pytest.raises(records.RecordNotFound):
        records.update("companies", ids["staff2"], {"name": "x"}, actor("staff1"), expected_version=None)
    with pytest.raises(records.RecordNotFound):
        records.delete("companies", ids[outsider], actor("manager"))
    # Within reach: the manager edits and deletes a team mate's record.
    records.update(
        "companies", ids["staff1"], {"name": f"{word} правка"}, actor("manager"), expected_version=None
    )
    records.delete("companies", ids["staff1"], actor("manager"))


def test_assignee_and_deal_lines(app, book) -> None:  # noqa: ANN001
    word = book["word"]
    task = records.create(
        "tasks", {"title": f"{word} задача", "assignee_id": user_id("staff2")}, actor("staff1")
    ).id
    stage = default_stage_id()
    deal = records.create("deals", {"title": f"{word} сделка", "stage_id": stage}, actor("staff1")).id
    line = records.create(
        "deal_lines", {"deal_id": deal, "description": f"{word} строка", "quantity": 2, "price": 10},
        actor("admin"),
    ).id  # fmt: skip
    staff1, staff2 = client_for(app, "staff1"), client_for(app, "staff2")
    outsider = client_for(app, book["outsider"], OUTSIDER_PASSWORD)
    for client in (staff1, staff2):  # owner and assignee
        assert listed_ids(client, "tasks", "title", word) == {task}
        assert client.get(f"/t/tasks/show/{task}").status_code == 200
    assert outsider.get(f"/t/tasks/show/{task}").status_code == 404
    # The line (owned by admin) follows its deal (owned by staff1).
    assert staff1.get(f"/t/deal_lines/show/{line}").status_code == 200
    assert listed_ids(staff1, "deal_lines", "description", word) == {line}
    assert staff2.get(f"/t/deal_lines/show/{line}").status_code == 404
    assert listed_ids(staff2, "deal_lines", "description", word) == set()
    manager = client_for(app, "manager")
    assert manager.get(f"/t/deal_lines/show/{line}").status_code == 200
    assert outsider.get(f"/t/deals/show/{deal}").status_code == 404


def test_access_screen_scopes_apply_at_once(app, book, admin_client) -> None:  # noqa: ANN001
    word, ids = book["word"], book["ids"]
    staff = role_id("Staff")
    companies = current().entity("companies").id
    rule = db.session.scalar(
        select(TableRule).where(TableRule.role_id == staff, TableRule.entity_id == companies)
    )
    saved = {
        "read": rule.read if rule else None, "read_scope": rule.read_scope if rule else None,
        "delete": rule.delete if rule else None, "delete_scope": rule.delete_scope if rule else None,
    }  # fmt: skip
    default = db.session.scalar(
        select(TableRule).where(TableRule.role_id == staff, TableRule.entity_id.is_(None))
    )
    saved_default = {"edit": default.edit, "edit_scope": default.edit_scope}
    staff1 = client_for(app, "staff1")
    try:
        page = admin_client.get(f"/admin/access/?role={staff}").get_data(as_text=True)
        assert f'name="t{companies}.read"' in page and 'data-scope="read"' in page
        assert re.search(rf'name="t{companies}\.read"[^>]*>\s*<option value="inherit" selected', page)
        form = {f"t{companies}.read": "all", "csrf_token": csrf_token(page)}
        assert admin_client.post(f"/admin/access/{staff}/tables", data=form).status_code == 302
        assert fresh().access.scope(staff, companies, "read") == "all"
        assert listed_ids(staff1, "companies", "name", word) == set(ids.values())
        assert staff1.get(f"/t/companies/show/{ids['staff2']}").status_code == 200
        # Editing stays "own": saving someone else's record is refused (nothing changes).
        add_page = staff1.get("/t/companies/add").get_data(as_text=True)
        refused = staff1.post(
            f"/t/companies/edit/{ids['staff2']}", data={"name": "чужое", "csrf_token": csrf_token(add_page)}
        )
        assert refused.status_code == 404
        page = admin_client.get(f"/admin/access/?role={staff}").get_data(as_text=True)
        assert re.search(rf'name="t{companies}\.read"[^>]*>.*?<option value="all" selected', page, re.S)
        # "none" denies; "team" reaches the team; the default row has no "inherit".
        form = {f"t{companies}.read": "none", "csrf_token": csrf_token(page)}
        admin_client.post(f"/admin/access/{staff}/tables", data=form)
        assert staff1.get("/t/companies/list/").status_code in (302, 403)
        form = {f"t{companies}.read": "team", "csrf_token": csrf_token(page)}
        admin_client.post(f"/admin/access/{staff}/tables", data=form)
        assert listed_ids(staff1, "companies", "name", word) == {ids["staff1"], ids["staff2"]}
        form = {"default.edit": "team", "csrf_token": csrf_token(page)}
        admin_client.post(f"/admin/access/{staff}/tables", data=form)
        assert fresh().access.scope(staff, companies, "edit") == "team"
        assert staff1.get(f"/t/companies/edit/{ids['staff2']}").status_code == 200
        # Unknown values: a clear message, nothing saved, no 500.
        version = fresh().version
        for bad in (
            {f"t{companies}.read": "everything"},
            {"default.read": "inherit"},
            {"default.delete": "x"},
        ):
            response = admin_client.post(
                f"/admin/access/{staff}/tables",
                data={**bad, "csrf_token": csrf_token(page)},
                follow_redirects=True,
            )
            assert response.status_code == 200 and "unknown choice" in response.get_data(as_text=True)
        assert fresh().version == version
    finally:
        save_rules(staff, tables={companies: saved, None: saved_default})
        fresh()
    assert listed_ids(staff1, "companies", "name", word) == {ids["staff1"]}


def test_teams_screen_and_changes_apply_without_restart(app, book, admin_client, staff_client) -> None:  # noqa: ANN001
    word, ids, outsider = book["word"], book["ids"], book["outsider"]
    manager = client_for(app, "manager")
    assert ids[outsider] not in listed_ids(manager, "companies", "name", word)
    page = admin_client.get("/admin/teams/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and outsider in html and 'id="user-teams"' in html
    assert staff_client.get("/admin/teams/").status_code in (302, 403)
    name = f"Новая <команда> {uuid.uuid4().hex[:6]}"
    created = admin_client.post("/admin/teams/create", data={"name": name, "csrf_token": csrf_token(html)})
    assert created.status_code == 302
    team_id = int(re.search(r"/admin/teams/(\d+)", created.headers["Location"]).group(1))
    try:
        team_page = admin_client.get(f"/admin/teams/{team_id}").get_data(as_text=True)
        assert "Новая &lt;команда&gt;" in team_page and "<команда>" not in team_page
        version = fresh().version
        members = [str(user_id("manager")), str(user_id(outsider))]
        saved = admin_client.post(
            f"/admin/teams/{team_id}/members", data={"member": members, "csrf_token": csrf_token(team_page)}
        )
        assert saved.status_code == 302 and fresh().version > version
        # The manager now reaches the outsider's record (no restart; the next request sees it).
        assert ids[outsider] in listed_ids(manager, "companies", "name", word)
        assert manager.get(f"/t/companies/show/{ids[outsider]}").status_code == 200
        assert name in admin_client.get("/admin/teams/").get_data(as_text=True).replace("&lt;", "<").replace(
            "&gt;", ">"
        )
        # Renaming; bad input refused; another team's name refused.
        renamed = admin_client.post(
            f"/admin/teams/{team_id}/rename", data={"name": name + " 2", "csrf_token": csrf_token(team_page)},
            follow_redirects=True,
        )  # fmt: skip
        assert renamed.status_code == 200
        for data in ({"name": "   "}, {"name": "x" * 101}):
            response = admin_client.post(
                f"/admin/teams/{team_id}/rename", data={**data, "csrf_token": csrf_token(team_page)},
                follow_redirects=True,
            )  # fmt: skip
            assert response.status_code == 200 and "alert-danger" in response.get_data(as_text=True)
        response = admin_client.post(
            f"/admin/teams/{team_id}/members", data={"member": ["abc"], "csrf_token": csrf_token(team_page)},
            follow_redirects=True,
        )  # fmt: skip
        assert response.status_code == 200 and "unknown choice" in response.get_data(as_text=True)
        response = admin_client.post(
            f"/admin/teams/{team_id}/members",
            data={"member": ["2000000000"], "csrf_token": csrf_token(team_page)},
            follow_redirects=True,
        )
        assert response.status_code == 200 and "No such user" in response.get_data(as_text=True)
        assert ids[outsider] in listed_ids(manager, "companies", "name", word)  # unchanged
        assert admin_client.get("/admin/teams/2000000000").status_code == 404
        # Removing the outsider takes their records out of the manager's reach at once.
        admin_client.post(
            f"/admin/teams/{team_id}/members",
            data={"member": [str(user_id("manager"))], "csrf_token": csrf_token(team_page)},
        )
        assert manager.get(f"/t/companies/show/{ids[outsider]}").status_code == 404
    finally:
        deleted = admin_client.post(f"/admin/teams/{team_id}/delete", data={"csrf_token": csrf_token(html)})
        assert deleted.status_code == 302
    assert admin_client.get(f"/admin/teams/{team_id}").status_code == 404


@pytest.fixture
def auditor(app_ctx) -> Iterator[tuple[str, int]]:  # noqa: ANN001
    """A user holding two roles: Staff (their own companies) and an auditor role that reads every company
    but has the tax ID hidden."""
    sm = app_ctx.appbuilder.sm
    role = sm.add_role(f"Аудитор {uuid.uuid4().hex[:6]}")
    companies = current().entity("companies")
    tax_id = companies.field_by_name("tax_id")
    save_rules(
        role.id, tables={companies.id: {"read": True, "read_scope": "all"}}, fields={tax_id.id: "hidden"}
    )
    fresh()
    username = f"auditor_{uuid.uuid4().hex[:8]}"
    staff = sm.find_role("Staff")
    assert sm.add_user(username, "Два", "Роли", f"{username}@example.com", [staff, role], OUTSIDER_PASSWORD)
    yield username, role.id


def test_a_user_with_two_roles_gets_the_wider_reach_and_field_mode(app, book, auditor) -> None:  # noqa: ANN001
    """Several roles add up: the auditor role's "all" widens Staff's "own" for reading, Staff's "edit" of
    the tax ID wins over the auditor role hiding it; editing stays Staff's own records only."""
    word, ids = book["word"], book["ids"]
    username, _role = auditor
    mine = records.create("companies", {"name": f"{word} мой", "tax_id": "7707083893"}, actor(username)).id
    client = client_for(app, username, OUTSIDER_PASSWORD)
    everyone = {*ids.values(), mine}
    assert listed_ids(client, "companies", "name", word) == everyone
    headers = token(client, username, OUTSIDER_PASSWORD)
    assert api_listed(client, headers, "companies", "name", word) == (len(everyone), everyone)
    assert client.get(f"/t/companies/show/{ids['staff2']}").status_code == 200
    assert "7707083893" in client.get(f"/t/companies/show/{mine}").get_data(as_text=True)
    assert client.get(f"/api/v1/t/companies/{mine}", headers=headers).get_json()["result"]["tax_id"] == (
        "7707083893"
    )
    # Reading widened, editing did not: another user's record is out of reach for a change.
    assert client.get(f"/t/companies/edit/{ids['staff2']}").status_code == 404
    put = client.put(
        f"/api/v1/t/companies/{ids['staff2']}", json={"name": "чужое", "_version": 1}, headers=headers
    )
    assert put.status_code == 404
    db.session.expire_all()
    model = current().classes["companies"]
    assert db.session.get(model, ids["staff2"]).name == f"{word} staff2"
