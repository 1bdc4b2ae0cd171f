"""Every endpoint that changes data has a test in which a user without the right is refused and nothing
changes. ``REFUSAL_TESTS`` maps each such route of the app (every POST, PUT, PATCH or DELETE rule, and the
GET routes in ``CHANGING_GETS``) to that test; ``test_every_data_changing_route_has_a_refusal_test`` fails
the day a route is added without one (or a listed test is renamed). The admin-only routes are tried below
by staff, a manager and an anonymous visitor, each with a valid form token, against a digest of the whole
database."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import inspect, select, text

from app.extensions import db
from custom_fields import access, service
from custom_fields.runtime import current, refresh
from models import Field, FieldConversion, JobRun, JobStatus, SavedView
from tests.conftest import DEMO_PASSWORD, csrf_token, login, signed_in
from tests.tables_helpers import new_field, new_table, unique_label

HERE = "tests/test_route_authorization.py"
WRITING_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
#: GET routes that change stored data (none today: FAB refuses a GET delete while CSRF is on).
CHANGING_GETS: set[str] = set()

ADMIN_ONLY = f"{HERE}::test_admin_only_routes_refuse_others_and_change_nothing"
FAB_ADMIN = f"{HERE}::test_security_screens_refuse_others_and_change_nothing"
ACCOUNT = f"{HERE}::test_account_forms_refuse_anonymous_visitors"
API_LOGIN = f"{HERE}::test_api_sign_in_refuses_wrong_passwords_and_missing_tokens"
ADD_RIGHT = f"{HERE}::test_adding_without_the_add_right_is_refused"
IMPORTS = (
    "tests/test_import_screens.py::test_without_the_import_right_or_on_someone_elses_import_nothing_happens"
)
SCOPES = "tests/test_access_scopes.py::test_list_show_edit_delete_api_and_lookup_follow_the_scopes"


def _fab_model_view(prefix: str) -> dict[str, str]:
    return {f"{prefix}.{m}": FAB_ADMIN for m in ("add", "edit", "delete", "action", "action_post")}


#: endpoint -> the test (file::function) in which a user without the right is refused and nothing changes.
#: A new data-changing route needs an entry here, next to its test.
REFUSAL_TESTS: dict[str, str] = {
    # access rules, teams, schema, system: admins only
    "AccessView.save_tables": ADMIN_ONLY,
    "AccessView.save_fields": ADMIN_ONLY,
    "AuditLogView.archive": ADMIN_ONLY,
    "TeamsView.create": ADMIN_ONLY,
    "TeamsView.rename": ADMIN_ONLY,
    "TeamsView.members": ADMIN_ONLY,
    "TeamsView.delete": ADMIN_ONLY,
    "SchemaAdminView.create_table": ADMIN_ONLY,
    "SchemaAdminView.update_table": ADMIN_ONLY,
    "SchemaAdminView.archive_table": ADMIN_ONLY,
    "SchemaAdminView.restore_table": ADMIN_ONLY,
    "SchemaAdminView.add_field": ADMIN_ONLY,
    "SchemaAdminView.update_field": ADMIN_ONLY,
    "SchemaAdminView.change_field_type": ADMIN_ONLY,
    "SchemaAdminView.archive_field": ADMIN_ONLY,
    "SchemaAdminView.restore_field": ADMIN_ONLY,
    "SchemaAdminView.purge_field": ADMIN_ONLY,
    "SchemaAdminView.cancel_conversion": ADMIN_ONLY,
    "SystemView.selfcheck": ADMIN_ONLY,
    # FAB's security screens and the job list
    **_fab_model_view("UserDBModelView"),
    **_fab_model_view("RoleModelView"),
    **_fab_model_view("UserGroupModelView"),
    **_fab_model_view("PermissionModelView"),
    **_fab_model_view("PermissionViewModelView"),
    **_fab_model_view("ViewMenuModelView"),
    **_fab_model_view("JobRunView"),
    **_fab_model_view("SavedViewAdmin"),
    "ResetPasswordView.this_form_post": FAB_ADMIN,
    # one's own account; signing in
    "ResetMyPasswordView.this_form_post": ACCOUNT,
    "UserInfoEditView.this_form_post": ACCOUNT,
    "TabulaAuthDBView.login": "tests/test_security.py::test_wrong_password_does_not_sign_in",
    "TabulaAuthDBView.logout": "tests/test_auth_hardening.py::test_sign_out_needs_a_post_with_the_csrf_token",
    "SignInSecurityView.unlock": "tests/test_auth_hardening.py::test_an_admin_unlocks_a_name",
    "TabulaSecurityApi.login": API_LOGIN,
    "TabulaSecurityApi.refresh": API_LOGIN,
    # records: table rights, row scopes, the recycle bin
    "TableView.add": ADD_RIGHT,
    "table_api.api_post": ADD_RIGHT,
    "TableView.edit": SCOPES,
    "TableView.delete": SCOPES,
    "table_api.api_put": SCOPES,
    "table_api.api_delete": SCOPES,
    "RecycleBinView.restore": (
        "tests/test_write_path.py::test_delete_is_soft_and_restore_brings_the_history_back"
    ),
    "RecycleBinView.purge": "tests/test_write_path.py::test_only_an_admin_may_empty_the_recycle_bin",
    # CRM screens
    "DealBoardView.move": "tests/test_board.py::test_staff_may_not_move_someone_elses_deal",
    "GridView.save": "tests/test_grid.py::test_saves_refused_without_rights_change_nothing",
    "GridView.bulk": "tests/test_grid_bulk.py::test_hidden_view_only_and_refused_values_change_nothing",
    "ExportView.start": "tests/test_exports.py::test_without_the_export_right_nothing_starts",
    "SavedViewApi.create": "tests/test_saved_views.py::test_sharing_is_limited_to_ones_own_roles",
    "SavedViewApi.change": (
        "tests/test_saved_views.py::test_a_shared_view_leaves_out_what_the_reader_may_not_see"
    ),
    "SavedViewApi.delete": "tests/test_saved_views.py::test_a_personal_view_is_its_owners_alone",
    "SavedViewApi.default": "tests/test_saved_views.py::test_admins_choose_the_default_view_everyone_gets",
    "ExportView.cancel": "tests/test_exports.py::test_nobody_else_cancels_or_deletes_an_export",
    "ExportView.delete": "tests/test_exports.py::test_nobody_else_cancels_or_deletes_an_export",
    **{
        f"ExportScheduleView.{action}": "tests/test_export_schedules.py::test_schedule_screens"
        for action in ("new", "show", "send", "pause", "resume", "delete")
    },
    # reads only (a report is posted as JSON); its refusals are tried with a digest of the database
    "ReportView.run": "tests/test_report_screens.py::test_refusals_change_nothing",
    "ReportView.export": "tests/test_report_screens.py::test_refusals_change_nothing",
    "ReportView.plan_export": "tests/test_plan_fact.py::test_plan_vs_fact_as_a_workbook_and_its_refusals",
    "ReportView.conversion_export": (
        "tests/test_stage_conversion.py::test_stage_conversion_as_a_workbook_and_its_refusals"
    ),
    # saved reports: the owner (or an admin) changes or deletes; readers of a shared one are refused
    **dict.fromkeys(
        ("ReportView.create", "ReportView.change", "ReportView.delete"),
        "tests/test_saved_reports.py::test_saved_reports_are_shared_read_only_and_computed_for_each_reader",
    ),
    # a user's own dashboard: only its owner changes it, only to reports offered to them
    **dict.fromkeys(
        ("DashboardView.pin", "DashboardView.unpin", "DashboardView.move", "DashboardView.reset"),
        "tests/test_dashboard.py::test_refused_changes_change_nothing",
    ),
    "ImportView.upload": IMPORTS,
    "ImportView.check": IMPORTS,
    "ImportView.add_fields": IMPORTS,
    "ImportView.create_table": (
        "tests/test_import_new_table.py::test_over_http_an_admin_makes_the_table_and_runs_the_import"
    ),
    "ImportView.start": IMPORTS,
    "ImportView.undo": IMPORTS,
    "LeadConvertView.convert": "tests/test_leads.py::test_staff_converts_own_leads_only",
    "MergeView.apply": "tests/test_search_merge.py::test_staff_may_not_merge",
    "RecordQuickView.log_call": "tests/test_related.py::test_quick_actions_refused_without_rights_or_record",
    "RecordQuickView.add_task": "tests/test_related.py::test_quick_actions_refused_without_rights_or_record",
    "MyTasksView.done": "tests/test_related.py::test_my_tasks_refuses_bad_input_and_other_users_tasks",
    # mailings: the mail right on contacts, one's own mailings
    **dict.fromkeys(
        [
            f"MailingsView.{name}"
            for name in (
                "save_template",
                "send_test",
                "create",
                "start",
                "pause",
                "resume",
                "cancel",
                "send_again",
            )
        ],
        "tests/test_mailing_screens.py::test_without_the_mail_right_or_for_someone_elses_mailing_nothing_changes",
    ),  # fmt: skip
    "MailingsView.configure_automation": (
        "tests/test_mail_automations.py::test_only_admins_configure_automatic_mailings"
    ),
    # public: the signed token in the address is the right (a forged one is refused, nothing recorded)
    "mail_unsubscribe.unsubscribe": (
        "tests/test_mailings.py::test_one_click_unsubscribe_over_http_is_honoured_by_the_next_mailing"
    ),
}


def data_changing_routes(app: Any) -> dict[str, str]:
    """endpoint -> "METHODS rule" for every route that may change data."""
    found: dict[str, str] = {}
    for rule in app.url_map.iter_rules():
        methods = (rule.methods or set()) - {"HEAD", "OPTIONS"}
        if methods & WRITING_METHODS or rule.endpoint in CHANGING_GETS:
            found[rule.endpoint] = f"{','.join(sorted(methods))} {rule.rule}"
    return found


def test_every_data_changing_route_has_a_refusal_test(app) -> None:  # noqa: ANN001
    routes = data_changing_routes(app)
    missing = [
        f"{route} ({endpoint})" for endpoint, route in sorted(routes.items()) if endpoint not in REFUSAL_TESTS
    ]
    assert not missing, (
        "These routes change data but no test shows that a user without the right is refused and nothing "
        f"changes; write one and add the route to REFUSAL_TESTS in {HERE}:\n  " + "\n  ".join(missing)
    )
    gone = sorted(set(REFUSAL_TESTS) - set(routes))
    assert not gone, f"REFUSAL_TESTS in {HERE} lists endpoints the app no longer has: {gone}"
    for endpoint, target in sorted(REFUSAL_TESTS.items()):
        path, _sep, name = target.partition("::")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert callable(getattr(module, name, None)), f"{endpoint}: {target} does not exist"


# --- trying the routes as someone without the right ---------------------------------------------------------


def database_digest() -> str:
    """Every row of every table, hashed: equal digests mean nothing was written."""
    db.session.expire_all()
    connection = db.session.connection()
    quote = connection.dialect.identifier_preparer.quote
    digest = hashlib.sha256()
    for name in sorted(inspect(connection).get_table_names()):
        rows = connection.execute(text(f"SELECT * FROM {quote(name)}"))  # noqa: S608 (names from the catalogue)
        digest.update(name.encode())
        for row in sorted(repr(tuple(r)) for r in rows):
            digest.update(row.encode())
    db.session.rollback()
    return digest.hexdigest()


@dataclass
class Visitor:
    name: str
    client: Any
    token: str
    signed_in: bool


@pytest.fixture
def visitors(app, staff_client, manager_client) -> list[Visitor]:  # noqa: ANN001
    """Staff, a manager and an anonymous visitor, each with a form token valid for their session (so a
    refusal is about rights, not a missing token)."""
    anonymous = app.test_client()
    found = [
        Visitor("anonymous", anonymous, csrf_token(anonymous.get("/login/").get_data(as_text=True)), False)
    ]
    for name, client in (("staff", staff_client), ("manager", manager_client)):
        found.append(
            Visitor(name, client, csrf_token(client.get("/t/companies/add").get_data(as_text=True)), True)
        )
    return found


def assert_refused(visitor: Visitor, response: Any, route: str) -> None:
    if visitor.signed_in:
        assert response.status_code == 403, (visitor.name, route, response.status_code)
    else:
        location = response.headers.get("Location", "")
        assert response.status_code == 401 or (response.status_code == 302 and "/login" in location), (
            visitor.name, route, response.status_code, location,
        )  # fmt: skip


@pytest.fixture
def targets(app_ctx) -> dict[str, Any]:  # noqa: ANN001
    """Real things for every route to aim at: a table with a field, a team, roles, users, a job run."""
    from flask_appbuilder.security.sqla.models import Permission, PermissionView, Role, User, ViewMenu

    from views import teams

    entity = new_table(unique_label("Чужая"))
    field = new_field(entity, "Поле", "text")
    archived = new_field(entity, "В архиве", "text")
    service.archive_field(archived.id)
    refresh()
    team = teams.create_team(f"Команда {uuid.uuid4().hex[:6]}", [])
    run = JobRun(kind="selfcheck", status=JobStatus.finished)
    db.session.add(run)
    view = SavedView(entity_id=entity.id, name="Вид", state={}, version=1)
    db.session.add(view)
    conversion = FieldConversion(
        field_id=field.id, from_type="text", to_type="integer", settings={}, status="queued", rows_done=0,
        offenders=[], offenders_total=0, message="",
    )  # fmt: skip
    db.session.add(conversion)
    db.session.commit()
    staff = db.session.scalar(select(Role).where(Role.name == "Staff"))
    user = db.session.scalar(select(User).where(User.username == "staff2"))
    return {
        "entity": entity.id,
        "slug": entity.slug,
        "field": field.id,
        "archived": archived.id,
        "team": team,
        "role": staff.id,
        "user": user.id,
        "run": run.id,
        "saved_view": view.id,
        "conversion": conversion.id,
        "permission": db.session.scalar(select(Permission.id).limit(1)),
        "view_menu": db.session.scalar(select(ViewMenu.id).limit(1)),
        "permission_view": db.session.scalar(select(PermissionView.id).limit(1)),
    }


#: Admin-only routes -> (address, values that would change something were the request let through).
ADMIN_ROUTES: dict[str, Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]] = {
    "AccessView.save_tables": lambda t: (
        f"/admin/access/{t['role']}/tables",
        {"default.read": "none", "default.export": "allow"},
    ),
    "AccessView.save_fields": lambda t: (
        f"/admin/access/{t['role']}/fields/{t['slug']}",
        {f"field.{t['field']}": "hidden"},
    ),
    "AuditLogView.archive": lambda t: ("/admin/history/archive", {"before": dt.date.today().isoformat()}),
    "TeamsView.create": lambda t: ("/admin/teams/create", {"name": "Захват"}),
    "TeamsView.rename": lambda t: (f"/admin/teams/{t['team']}/rename", {"name": "Переименована"}),
    "TeamsView.members": lambda t: (f"/admin/teams/{t['team']}/members", {"member": [str(t["user"])]}),
    "TeamsView.delete": lambda t: (f"/admin/teams/{t['team']}/delete", {}),
    "SchemaAdminView.create_table": lambda t: ("/admin/tables/create", {"label": "Захват"}),
    "SchemaAdminView.update_table": lambda t: (f"/admin/tables/{t['entity']}/update", {"label": "Другая"}),
    "SchemaAdminView.archive_table": lambda t: (f"/admin/tables/{t['entity']}/archive", {}),
    "SchemaAdminView.restore_table": lambda t: (f"/admin/tables/{t['entity']}/restore", {}),
    "SchemaAdminView.add_field": lambda t: (
        f"/admin/tables/{t['entity']}/fields/add",
        {"label": "Новое", "type": "text"},
    ),
    "SchemaAdminView.update_field": lambda t: (
        f"/admin/tables/fields/{t['field']}/update",
        {"label": "Иное"},
    ),
    "SchemaAdminView.change_field_type": lambda t: (
        f"/admin/tables/fields/{t['field']}/type",
        {"type": "integer"},
    ),
    "SchemaAdminView.archive_field": lambda t: (f"/admin/tables/fields/{t['field']}/archive", {}),
    "SchemaAdminView.restore_field": lambda t: (f"/admin/tables/fields/{t['archived']}/restore", {}),
    "SchemaAdminView.cancel_conversion": lambda t: (
        f"/admin/tables/conversions/{t['conversion']}/cancel",
        {},
    ),
    "SchemaAdminView.purge_field": lambda t: (
        f"/admin/tables/fields/{t['archived']}/purge",
        {"confirm": "В архиве"},
    ),
    "SystemView.selfcheck": lambda t: ("/system/selfcheck", {}),
}


def test_admin_only_routes_refuse_others_and_change_nothing(app_ctx, targets, visitors) -> None:  # noqa: ANN001
    assert set(ADMIN_ROUTES) == {e for e, test in REFUSAL_TESTS.items() if test == ADMIN_ONLY}
    before = database_digest()
    for endpoint, aim in ADMIN_ROUTES.items():
        route, data = aim(targets)
        for visitor in visitors:
            response = visitor.client.post(route, data={**data, "csrf_token": visitor.token})
            assert_refused(visitor, response, f"{endpoint} {route}")
    assert database_digest() == before


#: FAB's security screens (and the job list): prefix -> (view, the record aimed at, values that would change
#: something, the view's actions (None: it has none)).
FAB_ROUTES: dict[str, tuple[str, Callable[[dict[str, Any]], str], dict[str, Any], str | None]] = {
    "users": ("UserDBModelView", lambda t: str(t["user"]), {
        "first_name": "Взлом", "last_name": "Взлом", "username": "hijack", "email": "hijack@example.com",
        "active": "y", "roles": ["1"], "password": "x-Пароль-1", "conf_password": "x-Пароль-1",
    }, "resetpasswords"),
    "roles": ("RoleModelView", lambda t: str(t["role"]), {"name": "Захват", "permissions": ["1"]},
              "copyrole"),
    "groups": ("UserGroupModelView", lambda t: "1", {"name": "Захват", "label": "Захват"}, None),
    "permissions": ("PermissionModelView", lambda t: str(t["permission"]), {"name": "can_hijack"}, None),
    "viewmenus": ("ViewMenuModelView", lambda t: str(t["view_menu"]), {"name": "Hijack"}, None),
    "permissionviews": ("PermissionViewModelView", lambda t: str(t["permission_view"]), {}, None),
    "jobs": ("JobRunView", lambda t: str(t["run"]), {"kind": "hijack", "message": "x"}, None),
    "savedviews": ("SavedViewAdmin", lambda t: str(t["saved_view"]), {"name": "Захват", "is_default": "y"},
                   None),
}  # fmt: skip


def test_security_screens_refuse_others_and_change_nothing(app_ctx, app, targets, visitors) -> None:  # noqa: ANN001
    """add, edit and delete are refused like any screen; FAB answers a refused action with a redirect and
    a message instead. Views without actions are skipped here: an action name they do not have is a 404
    (``test_an_unknown_action_is_not_found_rather_than_a_server_error``)."""
    assert {f"{view}.{m}" for view, *_ in FAB_ROUTES.values() for m in ("add", "edit", "delete", "action",
            "action_post")} == {e for e, test in REFUSAL_TESTS.items() if test == FAB_ADMIN} - {
        "ResetPasswordView.this_form_post"}  # fmt: skip
    before = database_digest()
    for prefix, (_view, pk, data, action) in FAB_ROUTES.items():
        key = pk(targets)
        for route, values in {
            f"/{prefix}/add": data, f"/{prefix}/edit/{key}": data, f"/{prefix}/delete/{key}": {},
        }.items():  # fmt: skip
            for visitor in visitors:
                response = visitor.client.post(route, data={**values, "csrf_token": visitor.token})
                assert_refused(visitor, response, route)
        if action is None:
            continue
        for route, values in {
            f"/{prefix}/action/{action}/{key}": {},
            f"/{prefix}/action_post": {"action": action, "rowid": [key]},
        }.items():  # fmt: skip
            for visitor in visitors:
                response = visitor.client.post(route, data={**values, "csrf_token": visitor.token})
                assert response.status_code == 302, (visitor.name, route, response.status_code)
    reset = {"password": "x-Пароль-1", "conf_password": "x-Пароль-1"}
    for visitor in visitors:
        route = f"/resetpassword/form?pk={targets['user']}"
        assert_refused(
            visitor, visitor.client.post(route, data={**reset, "csrf_token": visitor.token}), route
        )
    assert database_digest() == before
    staff2 = app.test_client()
    assert signed_in(login(staff2, "staff2", DEMO_PASSWORD))  # the password was not reset


def test_an_unknown_action_is_not_found_rather_than_a_server_error(app_ctx, visitors) -> None:  # noqa: ANN001
    for visitor in visitors:
        for route, values in {
            "/groups/action/nosuch/1": {},
            "/groups/action_post": {"action": "nosuch"},
        }.items():
            response = visitor.client.post(route, data={**values, "csrf_token": visitor.token})
            assert response.status_code in (302, 400, 403, 404), (visitor.name, route, response.status_code)


def test_account_forms_refuse_anonymous_visitors(app_ctx, visitors) -> None:  # noqa: ANN001
    anonymous = next(v for v in visitors if not v.signed_in)
    before = database_digest()
    forms = {
        "/resetmypassword/form": {"password": "x-Пароль-1", "conf_password": "x-Пароль-1"},
        "/userinfoeditview/form": {"first_name": "Аноним", "last_name": "Аноним"},
    }
    for route, values in forms.items():
        assert_refused(
            anonymous, anonymous.client.post(route, data={**values, "csrf_token": anonymous.token}), route
        )
    assert database_digest() == before


def test_api_sign_in_refuses_wrong_passwords_and_missing_tokens(app) -> None:  # noqa: ANN001
    client = app.test_client()
    wrong = client.post(
        "/api/v1/security/login", json={"username": "staff1", "password": "wrong", "provider": "db"}
    )
    assert wrong.status_code == 401 and "access_token" not in (wrong.get_json() or {})
    assert client.post("/api/v1/security/refresh").status_code == 401
    right = client.post(
        "/api/v1/security/login", json={"username": "staff1", "password": DEMO_PASSWORD, "provider": "db"}
    ).get_json()
    # An access token is not a refresh token.
    access_only = {"Authorization": f"Bearer {right['access_token']}"}
    assert client.post("/api/v1/security/refresh", headers=access_only).status_code in (401, 422)


def test_adding_without_the_add_right_is_refused(app_ctx, app, staff_client, client) -> None:  # noqa: ANN001
    """A table Staff may read and edit but not add to: the form, the API and the write path refuse a new
    record, and the table stays empty."""
    from custom_fields import records
    from custom_fields.access import Actor

    entity = new_table(unique_label("Без добавления"))
    name = db.session.get(Field, entity.display_field_id)
    staff = app.appbuilder.sm.find_role("Staff")
    access.save_rules(staff.id, tables={entity.id: {"add": False}})
    refresh()
    model = current().classes[entity.slug]

    def count() -> int:
        db.session.expire_all()
        return len(db.session.scalars(select(model.id)).all())

    assert staff_client.get(f"/t/{entity.slug}/list/").status_code == 200  # reading is still allowed
    token = csrf_token(staff_client.get("/t/companies/add").get_data(as_text=True))
    form = staff_client.post(f"/t/{entity.slug}/add", data={name.name: "Запрещено", "csrf_token": token})
    assert form.status_code in (302, 403)
    assert "/login" in form.headers.get("Location", "/login")
    response = client.post(
        "/api/v1/security/login", json={"username": "staff1", "password": DEMO_PASSWORD, "provider": "db"}
    )
    headers = {"Authorization": f"Bearer {response.get_json()['access_token']}"}
    api = client.post(f"/api/v1/t/{entity.slug}/", json={name.name: "Запрещено"}, headers=headers)
    assert api.status_code in (401, 403)
    staff1 = Actor.for_user_id(db.session.scalar(select(app.appbuilder.sm.user_model.id).where(
        app.appbuilder.sm.user_model.username == "staff1")), "import")  # fmt: skip
    with pytest.raises(records.AccessDenied):
        records.create(entity.slug, {name.name: "Запрещено"}, staff1)
    assert count() == 0
    # The same request by someone with the right does add (the refusals above were about the right).
    access.save_rules(staff.id, tables={entity.id: {"add": None}})
    refresh()
    assert (
        staff_client.post(f"/t/{entity.slug}/add", data={name.name: "Можно", "csrf_token": token}).status_code
        == 302
    )
    assert count() == 1
