"""Saved views of the grid over HTTP (``/grid/<slug>/views``): personal and shared with roles, a hidden field
left out for whoever may not see it, only the owner or an admin changes or deletes, a view changed
meanwhile is not overwritten, one default per table set by admins, a purged field leaves every view, and
nothing is saved from a request the layer refuses."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from app.extensions import db
from custom_fields import service
from models import SavedView
from tests.conftest import DEMO_PASSWORD, csrf_token, login, signed_in
from tests.test_grid import role_id, sheet  # noqa: F401 (the fixture)


def client_of(app, username: str):  # noqa: ANN001, ANN201
    client = app.test_client()
    assert signed_in(login(client, username, DEMO_PASSWORD))
    return client


def token_of(client, slug: str) -> str:  # noqa: ANN001
    return csrf_token(client.get(f"/grid/{slug}/").get_data(as_text=True))


def post(client, url: str, body: Any, token: str):  # noqa: ANN001, ANN201
    return client.post(url, json=body, headers={"X-CSRFToken": token})


def views_of(client, slug: str) -> dict[str, Any]:  # noqa: ANN001
    response = client.get(f"/grid/{slug}/views")
    assert response.status_code == 200, response.get_data(as_text=True)
    return {v["name"]: v for v in response.get_json()["views"]}


def full_state(sheet: dict[str, Any]) -> dict[str, Any]:  # noqa: F811
    return {
        "fields": [sheet["name"], sheet["secret"], sheet["amount"]],
        "widths": {sheet["secret"]: 200, sheet["amount"]: 5, sheet["name"]: 10**9},
        "frozen": 1,
        "filter": {
            "or": [
                {"field": sheet["secret"], "op": "ct", "value": "тайна"},
                {"field": sheet["amount"], "op": "gt", "value": "5"},
            ]
        },
        "sort": [f"-{sheet['secret']}", sheet["amount"]],
        "q": "  Перв  ",
    }


def test_a_personal_view_is_its_owners_alone(app, sheet, admin_client) -> None:  # noqa: ANN001, F811
    slug = sheet["slug"]
    staff1, staff2 = client_of(app, "staff1"), client_of(app, "staff2")
    token = token_of(staff1, slug)
    response = post(
        staff1, f"/grid/{slug}/views", {"name": "  Мои   крупные ", "state": full_state(sheet)}, token
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    view = response.get_json()["view"]
    # Staff may not see the secret: it is not in what was saved, in any part of the state.
    assert view["name"] == "Мои крупные" and view["mine"] and view["canChange"]
    assert view["state"] == {
        "fields": [sheet["name"], sheet["amount"]],
        "widths": {sheet["amount"]: 30, sheet["name"]: 2000},
        "frozen": 1,
        "filter": {"or": [{"field": sheet["amount"], "op": "gt", "value": "5"}]},
        "sort": [sheet["amount"]],
        "q": "Перв",
    }
    stored = db.session.get(SavedView, view["id"])
    assert sheet["secret"] not in str(stored.state)
    assert "Мои крупные" in views_of(staff1, slug)
    # Nobody else finds it: not listed, and changing or deleting it is "not found".
    assert "Мои крупные" not in views_of(staff2, slug)
    other_token = token_of(staff2, slug)
    for url in (f"/grid/{slug}/views/{view['id']}", f"/grid/{slug}/views/{view['id']}/delete"):
        assert post(staff2, url, {"name": "Чужое", "state": {}}, other_token).status_code == 404
    db.session.expire_all()
    assert db.session.get(SavedView, view["id"]).name == "Мои крупные"
    # An admin manages every view (admins see shared and default views, and their own, in the list).
    admin_token = token_of(admin_client, slug)
    assert post(admin_client, f"/grid/{slug}/views/{view['id']}/delete", {}, admin_token).status_code == 404


def test_a_shared_view_leaves_out_what_the_reader_may_not_see(app, sheet, admin_client) -> None:  # noqa: ANN001, F811
    slug = sheet["slug"]
    token = token_of(admin_client, slug)
    staff = role_id("Staff")
    response = post(
        admin_client,
        f"/grid/{slug}/views",
        {"name": "Все", "state": full_state(sheet), "roles": [staff]},
        token,
    )
    assert response.status_code == 201
    view = response.get_json()["view"]
    assert view["roles"] == [staff]
    assert view["state"]["fields"] == [sheet["name"], sheet["secret"], sheet["amount"]]  # the admin sees it
    shared = views_of(client_of(app, "staff2"), slug)["Все"]
    assert not shared["mine"] and not shared["canChange"]
    assert shared["state"]["fields"] == [sheet["name"], sheet["amount"]]
    assert shared["state"]["sort"] == [sheet["amount"]]
    assert sheet["secret"] not in str(shared["state"])
    # A manager (not Staff) does not get it.
    assert "Все" not in views_of(client_of(app, "manager"), slug)
    # Staff may not change it.
    staff2 = client_of(app, "staff2")
    refused = post(
        staff2, f"/grid/{slug}/views/{view['id']}", {"name": "Моё", "state": {}}, token_of(staff2, slug)
    )
    assert refused.status_code == 403
    db.session.expire_all()
    assert db.session.get(SavedView, view["id"]).name == "Все"


def test_sharing_is_limited_to_ones_own_roles(app, sheet) -> None:  # noqa: ANN001, F811
    slug = sheet["slug"]
    staff1 = client_of(app, "staff1")
    token = token_of(staff1, slug)
    before = db.session.query(SavedView).count()
    refused = post(
        staff1, f"/grid/{slug}/views", {"name": "Всем", "state": {}, "roles": [role_id("Admin")]}, token
    )
    assert refused.status_code == 422 and "roles you have" in refused.get_json()["message"]
    assert db.session.query(SavedView).count() == before
    allowed = post(
        staff1, f"/grid/{slug}/views", {"name": "Коллегам", "state": {}, "roles": [role_id("Staff")]}, token
    )
    assert allowed.status_code == 201
    assert "Коллегам" in views_of(client_of(app, "staff2"), slug)


def test_a_view_changed_meanwhile_is_not_overwritten(app, sheet) -> None:  # noqa: ANN001, F811
    slug = sheet["slug"]
    staff1 = client_of(app, "staff1")
    token = token_of(staff1, slug)
    view = post(staff1, f"/grid/{slug}/views", {"name": "Первый", "state": {}}, token).get_json()["view"]
    url = f"/grid/{slug}/views/{view['id']}"
    first = post(staff1, url, {"name": "Второй", "state": {"q": "а"}, "version": view["version"]}, token)
    assert first.status_code == 200 and first.get_json()["view"]["version"] == view["version"] + 1
    stale = post(staff1, url, {"name": "Третий", "state": {"q": "б"}, "version": view["version"]}, token)
    assert stale.status_code == 422
    db.session.expire_all()
    kept = db.session.get(SavedView, view["id"])
    assert (kept.name, kept.state["q"]) == ("Второй", "а")


def test_bad_requests_save_nothing(app, sheet) -> None:  # noqa: ANN001, F811
    slug = sheet["slug"]
    staff1 = client_of(app, "staff1")
    token = token_of(staff1, slug)
    before = db.session.query(SavedView).count()
    cases = [
        ({"name": "", "state": {}}, 422),
        ({"name": "Я" * 101, "state": {}}, 422),
        (
            {"name": "Фильтр", "state": {"filter": {"field": sheet["count"], "op": "gt", "value": "много"}}},
            422,
        ),
        (
            {
                "name": "Фильтр",
                "state": {"filter": {"field": sheet["count"], "op": "no-such-op", "value": 1}},
            },
            422,
        ),
        (
            {
                "name": "Фильтр",
                "state": {
                    "filter": {
                        "and": [
                            {
                                "or": [
                                    {
                                        "and": [
                                            {
                                                "or": [
                                                    {
                                                        "and": [
                                                            {
                                                                "field": sheet["count"],
                                                                "op": "gt",
                                                                "value": "1",
                                                            }
                                                        ]
                                                    }
                                                ]
                                            }
                                        ]
                                    }
                                ]
                            }
                        ]
                    }
                },
            },
            422,
        ),
        ({"name": "Фильтр", "state": {"filter": {"field": ["список"], "op": "eq", "value": 1}}}, 422),
        ([1, 2], 400),
        ("text", 400),
    ]
    for body, status in cases:
        response = post(staff1, f"/grid/{slug}/views", body, token)
        assert response.status_code == status, (body, response.get_data(as_text=True))
        assert response.get_json()["message"]
    assert staff1.post(f"/grid/{slug}/views", data="{", headers={"X-CSRFToken": token}).status_code == 400
    assert post(staff1, "/grid/no_such_table/views", {"name": "x", "state": {}}, token).status_code == 404
    # Without the CSRF token nothing is saved either.
    assert staff1.post(f"/grid/{slug}/views", json={"name": "Без токена", "state": {}}).status_code == 400
    assert db.session.query(SavedView).count() == before


def test_admins_choose_the_default_view_everyone_gets(app, sheet, admin_client) -> None:  # noqa: ANN001, F811
    slug = sheet["slug"]
    token = token_of(admin_client, slug)
    first = post(admin_client, f"/grid/{slug}/views", {"name": "А", "state": {"q": "а"}}, token).get_json()[
        "view"
    ]
    second = post(admin_client, f"/grid/{slug}/views", {"name": "Б", "state": {"q": "б"}}, token).get_json()[
        "view"
    ]
    staff1 = client_of(app, "staff1")
    refused = post(staff1, f"/grid/{slug}/views/{first['id']}/default", {}, token_of(staff1, slug))
    assert refused.status_code in (403, 404)
    assert post(admin_client, f"/grid/{slug}/views/{first['id']}/default", {}, token).status_code == 200
    assert post(admin_client, f"/grid/{slug}/views/{second['id']}/default", {}, token).status_code == 200
    defaults = db.session.scalars(
        select(SavedView.name).where(
            SavedView.entity_id == db.session.get(SavedView, first["id"]).entity_id, SavedView.is_default
        )
    ).all()
    assert defaults == ["Б"]
    # A default view reaches every reader of the table, shared with their role or not.
    listed = views_of(staff1, slug)
    assert listed["Б"]["default"] and "А" not in listed
    config_page = staff1.get(f"/grid/{slug}/").get_data(as_text=True)
    assert config_page  # the page opens; which view it applies is the browser test's business


def test_a_purged_field_leaves_every_view(app, sheet, admin_client) -> None:  # noqa: ANN001, F811
    slug = sheet["slug"]
    token = token_of(admin_client, slug)
    state = {
        "fields": [sheet["name"], sheet["count"]],
        "widths": {sheet["count"]: 120},
        "filter": {"and": [{"field": sheet["count"], "op": "gt", "value": "1"}]},
        "sort": [f"-{sheet['count']}"],
    }
    view = post(admin_client, f"/grid/{slug}/views", {"name": "С количеством", "state": state}, token)
    view_id = view.get_json()["view"]["id"]
    from custom_fields.runtime import current

    spec = current().entity(slug).field_by_name(sheet["count"])
    service.archive_field(spec.id)
    service.purge_field(spec.id, confirm_label=str(spec.label))
    db.session.expire_all()
    kept = db.session.get(SavedView, view_id).state
    assert sheet["count"] not in str(kept)
    assert kept["fields"] == [sheet["name"]] and kept["sort"] == [] and not kept["filter"]


@pytest.mark.parametrize("path", ["/grid/{slug}/views", "/grid/{slug}/views/1/delete"])
def test_anonymous_gets_nothing(app, sheet, path: str) -> None:  # noqa: ANN001, F811
    anonymous = app.test_client()
    url = path.format(slug=sheet["slug"])
    response = anonymous.get(url) if url.endswith("views") else anonymous.post(url)
    assert response.status_code in (302, 400, 401, 403)


def test_admins_manage_every_view_on_the_system_screen(app, sheet, admin_client) -> None:  # noqa: ANN001, F811
    slug = sheet["slug"]
    staff1 = client_of(app, "staff1")
    mine = post(staff1, f"/grid/{slug}/views", {"name": "<b>Личный</b>", "state": {}}, token_of(staff1, slug))
    view_id = mine.get_json()["view"]["id"]
    listing = admin_client.get("/savedviews/list/?_l_=ru").get_data(as_text=True)
    assert "&lt;b&gt;Личный&lt;/b&gt;" in listing and "<b>Личный</b>" not in listing
    assert "Сохранённые виды" in listing
    form = admin_client.get(f"/savedviews/edit/{view_id}").get_data(as_text=True)
    answer = admin_client.post(
        f"/savedviews/edit/{view_id}",
        data={"name": "  Для всех  ", "roles": [str(role_id("Staff"))], "is_default": "y",
              "csrf_token": csrf_token(form)},
    )  # fmt: skip
    assert answer.status_code == 302
    db.session.expire_all()
    view = db.session.get(SavedView, view_id)
    assert (view.name, view.is_default, [r.name for r in view.roles]) == ("Для всех", True, ["Staff"])
    assert views_of(client_of(app, "staff2"), slug)["Для всех"]["default"]
    assert client_of(app, "staff2").get("/savedviews/list/").status_code in (302, 403)
