"""No input gives a 500: the REST API fuzzed from its OpenAPI document (schemathesis), and the HTML
routes and forms fuzzed with hypothesis."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from tests.conftest import ADMIN_PASSWORD, csrf_token

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)

#: Generated API cases in all (about 0.1 s each): keeps the API fuzz within the per-test timeout.
FUZZ_BUDGET = 1600


@pytest.fixture
def api_token(client) -> str:  # noqa: ANN001
    response = client.post(
        "/api/v1/security/login", json={"username": "admin", "password": ADMIN_PASSWORD, "provider": "db"}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["access_token"]


@pytest.fixture
def api_schema(app, api_token):  # noqa: ANN001, ANN201
    return schemathesis.openapi.from_wsgi(
        "/api/v1/_openapi", app, headers={"Authorization": f"Bearer {api_token}"}
    )


def test_api_never_answers_500(api_schema, api_token) -> None:  # noqa: ANN001
    # Each operation is driven by hypothesis directly: schemathesis' lazy pytest fixture does not yet
    # work with pytest 9.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert operations, "the OpenAPI document lists no operation"
    headers = {"Authorization": f"Bearer {api_token}"}
    # Every operation of every table (eleven core CRM tables, and whatever earlier tests created) within
    # one budget: 40 cases each while they are few, never fewer than 10.
    budget = settings(FUZZ, max_examples=max(10, min(40, FUZZ_BUDGET // len(operations))))
    for operation in operations:

        @budget
        @given(case=operation.as_strategy())
        def fuzz(case) -> None:  # noqa: ANN001
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        fuzz()


def test_openapi_document_requires_a_token(client) -> None:  # noqa: ANN001
    assert client.get("/api/v1/_openapi").status_code == 401


text = st.text(max_size=40)
PATHS = [
    "/",
    "/health",
    "/login/",
    "/system/",
    "/jobs/list/",
    "/users/list/",
    "/roles/list/",
    "/system/jobs/1",
    "/system/jobs/1/state",
    "/admin/tables/",
    "/admin/tables/1/",
    "/admin/tables/fields/1/",
    "/admin/tables/changes",
    "/admin/access/",
    "/admin/access/3/fields/contacts",
    "/admin/history/",
    "/recycle-bin/",
    "/t/contacts/list/",
    "/t/companies/list/",
    "/t/contacts/add",
    "/t/contacts/lookup",
    "/t/_users/lookup",
    "/api/v1/t/contacts/",
    "/api/v1/t/contacts/_info",
]


@FUZZ
@given(path=st.sampled_from(PATHS), params=st.dictionaries(text, text, max_size=4))
def test_query_parameters_never_give_500(admin_client, worker, path, params) -> None:  # noqa: ANN001
    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in params.items())
    response = admin_client.get(f"{path}?{query}")
    assert response.status_code < 500, (path, query)


@FUZZ
@given(segment=st.text(min_size=1, max_size=30))
def test_path_segments_never_give_500(admin_client, segment) -> None:  # noqa: ANN001
    for template in (
        "/lang/{}",
        "/system/jobs/{}",
        "/system/jobs/{}/state",
        "/jobs/show/{}",
        "/users/show/{}",
        "/t/{}/list/",
        "/t/contacts/show/{}",
        "/admin/tables/{}/",
        "/admin/access/{}/fields/contacts",
        "/admin/access/3/fields/{}",
        "/api/v1/t/{}/",
    ):
        response = admin_client.get(template.format(quote(segment, safe="")))
        assert response.status_code < 500, (template, segment)


@pytest.fixture
def throwaway_role(app) -> int:  # noqa: ANN001
    """A role of its own: fuzzed access forms must not change what other tests' users may do."""
    with app.app_context():
        sm = app.appbuilder.sm
        role = sm.find_role("Fuzz") or sm.add_role("Fuzz")
        return role.id


FORM_KEYS = st.sampled_from(["default.read", "t1.add", "t2.mail", "field.1", "field.x", "t9.x"]) | text


@FUZZ
@given(
    form=st.dictionaries(
        FORM_KEYS, st.sampled_from(["allow", "deny", "inherit", "hidden"]) | text, max_size=5
    )
)
def test_access_forms_never_give_500(admin_client, throwaway_role, form) -> None:  # noqa: ANN001
    token = csrf_token(admin_client.get("/admin/access/").get_data(as_text=True))
    for role in (throwaway_role, 99999):
        for path in (f"/admin/access/{role}/tables", f"/admin/access/{role}/fields/contacts"):
            response = admin_client.post(path, data={**form, "csrf_token": token})
            assert response.status_code < 500, (path, form)


@FUZZ
@given(username=text, password=text)
def test_login_form_never_gives_500(client, username, password) -> None:  # noqa: ANN001
    token = csrf_token(client.get("/login/").get_data(as_text=True))
    response = client.post("/login/", data={"username": username, "password": password, "csrf_token": token})
    if "\x00" in username + password:
        assert response.status_code == 400
    else:
        assert response.status_code in (200, 302)


def test_nul_characters_are_refused_with_a_clear_400(client) -> None:  # noqa: ANN001
    token = csrf_token(client.get("/login/").get_data(as_text=True))
    response = client.post("/login/", data={"username": "ad\x00min", "password": "x", "csrf_token": token})
    assert response.status_code == 400
    assert "NUL" in response.get_data(as_text=True)
    assert client.get("/login/?next=%00").status_code == 400
    api = client.post("/api/v1/security/login", json={"username": "a\x00", "password": "x", "provider": "db"})
    assert api.status_code == 400


def test_api_login_without_provider_is_400(client) -> None:  # noqa: ANN001
    response = client.post("/api/v1/security/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 400
    assert "provider" in response.get_json()["message"]
    ok = client.post(
        "/api/v1/security/login", json={"username": "admin", "password": ADMIN_PASSWORD, "provider": "db"}
    )
    assert ok.status_code == 200 and ok.get_json()["access_token"]
