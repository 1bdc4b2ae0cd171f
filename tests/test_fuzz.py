"""No input gives a 500: the REST API fuzzed from its OpenAPI document (schemathesis), the HTML routes, forms
and list parameters (filters, paging, sorting) and the API's ``q`` and JSON bodies fuzzed with hypothesis;
the malformed requests once reported as 500s are kept here as fixed cases."""

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


@pytest.mark.parametrize("segment", ["²", "-²", "١٢"])  # found by the test above: digits int() may refuse
def test_reported_path_segments_never_give_500(admin_client, segment) -> None:  # noqa: ANN001
    for template in ("/jobs/show/{}", "/t/contacts/show/{}", "/users/show/{}"):
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


# --- the malformed requests of issue 15 (each was a 500): a clear 400 or 422, in the API's JSON shape ---

LIST = "/t/companies/list/?"
VIEW = "TableView_companies"
REPORTED_HTML = [
    LIST + "_flt_7_name=x",
    LIST + "_flt_9_industry=x",
    LIST + f"page_{VIEW}=-1",
    LIST + f"psize_{VIEW}=-1",
    LIST + f"psize_{VIEW}=0",
    LIST + f"page_{VIEW}=x",
    LIST + f"page_{VIEW}=1e9",
    LIST + f"page_{VIEW}=12345678901234",
    LIST + f"psize_{VIEW}=12345678901234",
    LIST + f"_oc_{VIEW}=name&_od_{VIEW}=sideways",
    "/t/contacts/show/1?page_TableView_contacts=x",
    "/jobs/list/?_flt_9_status=x",
    LIST + f"_oc_{VIEW}=nosuch&_od_{VIEW}=asc",
    "/jobs/list/?_oc_JobRunView=nosuch&_od_JobRunView=asc",
    "/users/list/?_oc_UserDBModelView=nosuch&_od_UserDBModelView=desc",
    "/users/list/?_flt_2_active=0",  # found by the hypothesis test below, in FAB's own screen
]
REPORTED_API = [
    "/api/v1/t/companies/?q=((",
    "/api/v1/t/companies/1?q=((",
    "/api/v1/t/deal_lines/_info?q=3.897482194229898e%2B16",
    "/api/v1/t/contacts/_info?q=3.897482194229898e%2B16",
    "/api/v1/t/tasks/?q=3.897482194229898e%2B16",
    "/api/v1/t/companies/?q=" + "(a:" * 40 + "1" + ")" * 40,
    "/api/v1/t/companies/?q=" + quote('{"filters":[{"col":"name","opr":"eq","value":"\\ud800"}]}'),
]
REPORTED_BODIES = [
    "[" * 5000 + "]" * 5000,
    '{"name": "\\ud800"}',
    '{"\\udfff": 1}',
    '{"name": ' + "[" * 40 + "]" * 40 + "}",
]


@pytest.mark.parametrize("url", REPORTED_HTML)
def test_reported_malformed_list_requests_get_a_400_page(admin_client, staff_client, url) -> None:  # noqa: ANN001
    client = staff_client if url.startswith("/t/") else admin_client
    response = client.get(url)
    assert response.status_code == 400, url
    page = response.get_data(as_text=True)
    assert 'id="request-error"' in page and "Internal Server Error" not in page


@pytest.mark.parametrize("url", REPORTED_API)
def test_reported_malformed_api_queries_get_a_json_400(staff_client, url) -> None:  # noqa: ANN001
    response = staff_client.get(url)
    assert response.status_code == 400, url
    assert response.is_json and response.get_json()["message"]


@pytest.mark.parametrize("body", REPORTED_BODIES, ids=["deep", "surrogate", "surrogate-key", "nested-value"])
def test_reported_malformed_json_bodies_get_a_json_400(client, api_token, body) -> None:  # noqa: ANN001
    before = client.get(
        "/api/v1/t/companies/?q=(page_size:1)", headers={"Authorization": f"Bearer {api_token}"}
    )
    for method, url in (("POST", "/api/v1/t/companies/"), ("PUT", "/api/v1/t/companies/1")):
        response = client.open(
            url,
            method=method,
            data=body,
            content_type="application/json",
            headers={"Authorization": f"Bearer {api_token}"},
        )
        assert response.status_code in (400, 422), (method, body[:50])
        assert response.is_json and response.get_json()["message"]
    after = client.get(
        "/api/v1/t/companies/?q=(page_size:1)", headers={"Authorization": f"Bearer {api_token}"}
    )
    assert after.get_json()["count"] == before.get_json()["count"]


# --- hypothesis over the HTML list parameters ------------------------------------------------------------

#: List screens (path, FAB view class, some columns): generated tables as staff sees them, FAB's own as admin.
LIST_SCREENS = [
    ("/t/companies/list/", "TableView_companies", ["name", "industry", "kind", "owner_id"]),
    ("/t/contacts/list/", "TableView_contacts", ["first_name", "company_id", "birthday"]),
    ("/jobs/list/", "JobRunView", ["kind", "status", "created_at", "result"]),
    ("/users/list/", "UserDBModelView", ["username", "active", "roles"]),
]
numbers = st.integers(min_value=-(10**15), max_value=10**15).map(str)
odd_values = numbers | text | st.sampled_from(["", "-1", "0", "1e9", "x", "99999999999999", "asc", "desc"])


@st.composite
def list_arguments(draw) -> tuple[str, dict[str, str]]:  # noqa: ANN001
    path, view, columns = draw(st.sampled_from(LIST_SCREENS))
    column = draw(st.sampled_from(columns) | text)
    keys = st.sampled_from(
        [f"page_{view}", f"psize_{view}", f"_oc_{view}", f"_od_{view}"]
        + [f"_flt_{index}_{column}" for index in range(10)]
    )
    values = odd_values | st.sampled_from(columns)
    return path, draw(st.dictionaries(keys, values, min_size=1, max_size=4))


@FUZZ
@given(case=list_arguments())
def test_list_parameters_never_give_500(admin_client, staff_client, case) -> None:  # noqa: ANN001
    path, params = case
    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in params.items())
    client = staff_client if path.startswith("/t/") else admin_client
    response = client.get(f"{path}?{query}")
    assert response.status_code in (200, 400), (path, query)


rison_text = st.text(alphabet="()!:,'~*-.e+0123456789abcnq ", max_size=30)


@FUZZ
@given(
    path=st.sampled_from(["/api/v1/t/companies/", "/api/v1/t/deal_lines/_info", "/api/v1/t/tasks/1"]),
    q=rison_text | text | numbers,
)
def test_api_q_argument_never_gives_500(staff_client, path, q) -> None:  # noqa: ANN001
    response = staff_client.get(f"{path}?q={quote(q)}")
    assert response.status_code < 500, (path, q)
    assert response.is_json


json_text = st.text(max_size=10) | st.sampled_from(["\ud800", "\udfff", "a\udc80b"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | json_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_text, inner, max_size=3),
    max_leaves=20,
)


@FUZZ
@given(
    body=st.dictionaries(
        st.sampled_from(["name", "industry", "website"]) | json_text, json_values, max_size=3
    )
)
def test_api_json_bodies_never_give_500(client, api_token, body) -> None:  # noqa: ANN001
    import json

    response = client.post(
        "/api/v1/t/companies/",
        # ensure_ascii: a lone surrogate travels as a \\udXXX escape, as an attacker would send it
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {api_token}"},
    )
    assert response.status_code < 500, body
