"""Roles seeded idempotently, role checks on every screen, CSRF, cookies, hashed passwords."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.bootstrap import initialize
from app.extensions import db
from app.security import ADMIN, MANAGER, STAFF
from tests.conftest import ADMIN_PASSWORD, csrf_token, login, signed_in

ADMIN_ONLY_PAGES = ["/users/list/", "/roles/list/", "/system/", "/jobs/list/", "/permissions/list/"]


def role_permissions(app, name: str) -> set[tuple[str, str]]:  # noqa: ANN001
    with app.app_context():
        role = app.appbuilder.sm.find_role(name)
        return {(p.permission.name, p.view_menu.name) for p in role.permissions}


def test_builtin_roles_exist(app) -> None:  # noqa: ANN001
    with app.app_context():
        for name in (ADMIN, MANAGER, STAFF, "Public"):
            assert app.appbuilder.sm.find_role(name) is not None


def test_admin_has_everything_staff_has_no_admin_screens(app) -> None:  # noqa: ANN001
    with app.app_context():
        sm = app.appbuilder.sm
        everything = {(p.permission.name, p.view_menu.name) for p in sm.get_all_permissions_views_objs()}
    assert role_permissions(app, ADMIN) == everything
    for role in (MANAGER, STAFF):
        granted = role_permissions(app, role)
        assert ("can_this_form_post", "ResetMyPasswordView") in granted
        assert not {
            p
            for p in granted
            if p[1] in ("UserDBModelView", "RoleModelView", "SystemStatus")
            and p[0] not in ("can_userinfo", "resetmypassword", "userinfoedit")
        }


def test_init_is_idempotent(app) -> None:  # noqa: ANN001
    from models import SeededGrant

    def counts() -> tuple:
        with app.app_context():
            return (
                db.session.scalar(select(func.count()).select_from(SeededGrant)),
                len(app.appbuilder.sm.get_all_roles()),
                len(app.appbuilder.sm.get_all_users()),
                {r: len(role_permissions(app, r)) for r in (ADMIN, MANAGER, STAFF)},
            )

    before = counts()
    report = initialize(app, echo=lambda _m: None)
    assert report.admin_created is None and not report.demo_loaded
    assert report.grants == {MANAGER: 0, STAFF: 0, ADMIN: 0}
    assert counts() == before


def test_revoked_permission_stays_revoked(app) -> None:  # noqa: ANN001
    key = ("can_this_form_get", "UserInfoEditView")
    with app.app_context():
        sm = app.appbuilder.sm
        role = sm.find_role(STAFF)
        pvm = sm.find_permission_view_menu(*key)
        sm.del_permission_role(role, pvm)
    initialize(app, echo=lambda _m: None)
    try:
        assert key not in role_permissions(app, STAFF)
    finally:
        with app.app_context():
            sm = app.appbuilder.sm
            sm.add_permission_role(sm.find_role(STAFF), sm.find_permission_view_menu(*key))


@pytest.mark.parametrize("page", ADMIN_ONLY_PAGES)
def test_admin_pages_refused_to_staff_and_manager(staff_client, manager_client, admin_client, page) -> None:  # noqa: ANN001
    for client in (staff_client, manager_client):
        assert client.get(page).status_code == 403
    assert admin_client.get(page).status_code == 200


@pytest.mark.parametrize("page", ["/", "/system/", "/users/list/", "/jobs/list/"])
def test_anonymous_is_sent_to_login(client, page) -> None:  # noqa: ANN001
    response = client.get(page)
    if page == "/":
        assert response.status_code == 200 and "/login/" in response.get_data(as_text=True)
    else:
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_login_without_csrf_token_is_refused(client) -> None:  # noqa: ANN001
    client.get("/login/")
    response = client.post("/login/", data={"username": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 400
    assert client.get("/system/").status_code == 302


def test_wrong_password_does_not_sign_in(client) -> None:  # noqa: ANN001
    assert not signed_in(login(client, "admin", "wrong"))
    assert client.get("/system/").status_code == 302


def test_post_without_csrf_is_refused(admin_client) -> None:  # noqa: ANN001
    assert admin_client.post("/system/selfcheck").status_code == 400


def test_session_cookie_flags(client) -> None:  # noqa: ANN001
    page = client.get("/login/")
    token = csrf_token(page.get_data(as_text=True))
    response = client.post(
        "/login/", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token}
    )
    cookies = [v for k, v in response.headers.items() if k == "Set-Cookie" and v.startswith("session=")]
    assert cookies
    assert "HttpOnly" in cookies[-1] and "SameSite=Lax" in cookies[-1]


def test_passwords_are_hashed(app) -> None:  # noqa: ANN001
    with app.app_context():
        user = app.appbuilder.sm.find_user(username="admin")
        assert ADMIN_PASSWORD not in user.password
        assert user.password.startswith(("scrypt:", "pbkdf2:"))


def test_admin_creates_a_role_in_the_browser_and_it_takes_effect(app, admin_client) -> None:  # noqa: ANN001
    from tests.conftest import csrf_token, login, signed_in

    with app.app_context():
        sm = app.appbuilder.sm
        wanted = [
            sm.find_permission_view_menu("can_list", "BackgroundJob"),
            sm.find_permission_view_menu("menu_access", "Background jobs"),
            sm.find_permission_view_menu("menu_access", "System"),
        ]
        ids = [str(p.id) for p in wanted]
    form = admin_client.get("/roles/add").get_data(as_text=True)
    response = admin_client.post(
        "/roles/add", data={"csrf_token": csrf_token(form), "name": "Бухгалтер", "permissions": ids}
    )
    assert response.status_code == 302
    with app.app_context():
        sm = app.appbuilder.sm
        role = sm.find_role("Бухгалтер")
        assert role is not None
        sm.add_user("buh", "Ольга", "Бухова", "buh@example.ru", role, "Пароль-бух-1")
    accountant = app.test_client()
    assert signed_in(login(accountant, "buh", "Пароль-бух-1"))
    assert accountant.get("/jobs/list/").status_code == 200
    assert accountant.get("/system/").status_code == 403
    assert "Background jobs" in accountant.get("/").get_data(as_text=True)  # the menu entry
