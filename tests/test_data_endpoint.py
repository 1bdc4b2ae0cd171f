"""The grid's data endpoint (``views.data``): ``GET /api/v1/data/<slug>`` and ``/count`` answer what the
query layer answers for the signed-in user (browser session or API token), page by page by cursor; 401
anonymous, 403 without the right to read, 404 for unknown and archived tables, 400 with a message for any
malformed parameter (fuzzed: never a 500); hidden fields cannot be asked for; the OpenAPI document lists
both routes."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from app.extensions import db
from custom_fields import service
from custom_fields.access import Actor
from custom_fields.query import TableQuery
from custom_fields.runtime import refresh
from tests.conftest import ADMIN_PASSWORD, login, signed_in
from tests.test_query import PASSWORD, World, expected_ids, world  # noqa: F401 (the fixture)


def session_for(app: Any, username: str) -> Any:
    client = app.test_client()
    assert signed_in(login(client, username, PASSWORD))
    return client


def bearer(client: Any, username: str) -> dict[str, str]:
    response = client.post(
        "/api/v1/security/login", json={"username": username, "password": PASSWORD, "provider": "db"}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def url(slug: str, suffix: str = "", **params: Any) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"/api/v1/data/{slug}{suffix}" + (f"?{query}" if query else "")


def walk(client: Any, slug: str, headers: dict[str, str] | None = None, **params: Any) -> list[dict]:
    rows: list[dict] = []
    after = None
    for _ in range(200):
        response = client.get(url(slug, after=after, **params), headers=headers or {})
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        rows += body["rows"]
        after = body["next"]
        if after is None:
            return rows
    raise AssertionError("too many pages")


@pytest.fixture
def own_client(app, world: World) -> Any:  # noqa: ANN001, F811
    return session_for(app, world.usernames["own"])


def test_pages_by_cursor_are_what_the_layer_answers(app, app_ctx, world, own_client) -> None:  # noqa: ANN001, F811
    n = world.names
    spec = {
        "or": [{"field": n["amount"], "op": "gt", "value": 0}, {"field": n["name"], "op": "ct", "value": "a"}]
    }
    sort = f"-{n['amount']},{n['name']}"
    rows = walk(own_client, world.slug, size=4, sort=sort, filter=json.dumps(spec))
    assert [r["id"] for r in rows] == expected_ids(world, "own", spec, [f"-{n['amount']}", n["name"]])
    layer = TableQuery(world.slug, world.actor("own")).where(spec).order_by(f"-{n['amount']}", n["name"])
    assert rows == [layer.to_json(r) for r in layer.stream()]
    count = own_client.get(url(world.slug, "/count", filter=json.dumps(spec))).get_json()
    assert count == {"count": len(rows), "exact": True}
    # The same with an API token, and the quick search.
    headers = bearer(app.test_client(), world.usernames["all"])
    searched = walk(app.test_client(), world.slug, headers, q="ab", size=500)
    expected = [r["id"] for r in TableQuery(world.slug, world.actor("all")).search("ab").stream()]
    assert [r["id"] for r in searched] == expected


def test_columns_and_a_subset_of_fields(app_ctx, world, own_client) -> None:  # noqa: ANN001, F811
    n = world.names
    response = own_client.get(url(world.slug, size=2))
    assert response.headers["Cache-Control"] == "private, no-store"
    body = response.get_json()
    names = [c["name"] for c in body["columns"]]
    assert names[0] == "id" and n["secret"] not in names and "owner_id" in names
    assert all(n["secret"] not in row for row in body["rows"])
    link = next(c for c in body["columns"] if c["name"] == n["partner"])
    assert link["reference"] == "record" and "eq" in link["operators"]
    body = own_client.get(url(world.slug, fields=f"{n['amount']},{n['partner']}")).get_json()
    assert [c["name"] for c in body["columns"]] == ["id", n["amount"], n["partner"]]
    assert all(set(r) == {"id", n["amount"], n["partner"]} for r in body["rows"])
    for row in body["rows"]:
        if row[n["partner"]] is not None:
            owner = world.partners[row[n["partner"]]["id"]]
            assert (row[n["partner"]]["label"] is not None) == (owner == world.users["own"])


def test_column_labels_follow_the_language_and_a_renamed_field(app_ctx, world, own_client) -> None:  # noqa: ANN001, F811
    from custom_fields import service
    from custom_fields.runtime import current

    def labels(language: str) -> dict[str, str]:
        body = own_client.get(url(world.slug, size=1), headers={"Accept-Language": language}).get_json()
        return {c["name"]: c["label"] for c in body["columns"]}

    assert labels("ru")["owner_id"] == "Ответственный" and labels("en")["owner_id"] == "Owner"
    assert labels("ru")["owner_id"] == "Ответственный"  # the kept columns are per language
    amount = world.names["amount"]
    field = current().entity(world.slug).field_by_name(amount)
    before = field.label
    service.update_field(field.id, label=f'Сумма <b>"переименована"</b> {amount}')
    try:
        assert labels("ru")[amount] == f'Сумма <b>"переименована"</b> {amount}'
    finally:
        service.update_field(field.id, label=before)
    assert labels("en")[amount] == before


def test_anonymous_forbidden_unknown_and_archived(app, app_ctx, world, client) -> None:  # noqa: ANN001, F811
    for suffix in ("", "/count"):
        assert client.get(url(world.slug, suffix)).status_code == 401
        bad = {"Authorization": "Bearer not.a.token"}
        assert client.get(url(world.slug, suffix), headers=bad).status_code == 401
        assert client.get(url(world.slug, suffix), headers={"Authorization": "Basic eA=="}).status_code == 401
    # A role that may not read the table.
    sm = app.appbuilder.sm
    username = f"q_none_{uuid.uuid4().hex[:6]}"
    role = sm.add_role(f"Query none {uuid.uuid4().hex[:6]}")
    assert sm.add_user(username, "Без", "Прав", f"{username}@example.com", role, PASSWORD)
    nobody = session_for(app, username)
    for suffix in ("", "/count"):
        response = nobody.get(url(world.slug, suffix))
        assert response.status_code == 403 and response.get_json()["message"]
    own = session_for(app, world.usernames["own"])
    assert own.get(url("no_such_table")).status_code == 404
    archived = service.create_entity(f"Архив {uuid.uuid4().hex[:6]}", "")
    service.archive_entity(archived.id)
    refresh()
    assert own.get(url(archived.slug)).status_code == 404
    assert own.get(url(archived.slug, "/count")).status_code == 404


def test_malformed_parameters_are_a_400_with_a_message(app_ctx, world, own_client) -> None:  # noqa: ANN001, F811
    n = world.names
    cursor = own_client.get(url(world.slug, size=2)).get_json()["next"]
    deep = "[" * 5000 + "]" * 5000
    cases = [
        {"size": "0"},
        {"size": "501"},
        {"size": "abc"},
        {"size": "-1"},
        {"size": "1e3"},
        {"filter": "{not json"},
        {"filter": deep},
        {"filter": json.dumps({"field": n["secret"], "op": "eq", "value": "x"})},
        {"filter": json.dumps({"field": n["amount"], "op": "gt", "value": "lots"})},
        {"filter": json.dumps({"field": n["amount"], "op": "ct", "value": "1"})},
        {"filter": "x" * 30_000},
        {"sort": n["secret"]},
        {"sort": f"-{n['secret']}"},
        {"sort": "nope"},
        {"sort": n["tags"]},
        {"sort": "," * 300},
        {"fields": n["secret"]},
        {"fields": "nope"},
        {"after": cursor + "x"},
        {"after": cursor, "sort": "-id"},
        {"after": "x" * 50_000},
    ]
    for params in cases:
        for suffix in ("", "/count"):
            if suffix and not set(params) & {"filter"}:
                continue
            response = own_client.get(url(world.slug, suffix, **params))
            assert response.status_code == 400, (params, response.get_data(as_text=True)[:300])
            assert response.get_json()["message"], params
    # The hidden field is refused exactly as a missing one.
    hidden = own_client.get(url(world.slug, sort=n["secret"])).get_json()["message"]
    missing = own_client.get(url(world.slug, sort="nope")).get_json()["message"]
    assert hidden.replace(n["secret"], "nope") == missing


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
TEXT = st.text(max_size=40) | st.sampled_from(["", "-", ",", "id", "-id", "0", "500", "null", "{}", "[]"])


@FUZZ
@given(
    size=st.none() | TEXT | st.integers(-5, 600).map(str),
    after=st.none() | TEXT,
    sort=st.none() | TEXT,
    q=st.none() | TEXT,
    filter_=st.none()
    | TEXT
    | st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from(["and", "or", "field", "op", "value"]), inner, max_size=3)
        ),
        max_leaves=8,
    ).map(json.dumps),
    fields=st.none() | TEXT,
)
def test_fuzzed_parameters_never_give_a_server_error(
    app_ctx,
    world,  # noqa: F811
    own_client,
    size,
    after,
    sort,
    q,
    filter_,
    fields,  # noqa: ANN001, F811
) -> None:
    params = {"size": size, "after": after, "sort": sort, "q": q, "filter": filter_, "fields": fields}
    for suffix in ("", "/count"):
        response = own_client.get(url(world.slug, suffix, **params))
        assert response.status_code in (200, 400), (params, response.get_data(as_text=True)[:300])
        assert response.is_json


def test_the_openapi_document_lists_the_data_routes(app, app_ctx, world) -> None:  # noqa: ANN001, F811
    client = app.test_client()
    token = client.post(
        "/api/v1/security/login", json={"username": "admin", "password": ADMIN_PASSWORD, "provider": "db"}
    ).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    document = client.get("/api/v1/_openapi", headers=headers).get_json()
    assert "/api/v1/data/{slug}" in document["paths"] and "/api/v1/data/{slug}/count" in document["paths"]
    parameters = {p["name"] for p in document["paths"]["/api/v1/data/{slug}"]["get"]["parameters"]}
    assert {"slug", "size", "after", "sort", "q", "filter", "fields"} <= parameters


def test_a_job_reads_with_the_same_rules(app_ctx, world) -> None:  # noqa: ANN001, F811
    """What a job acting for a user streams is what that user pages through."""
    from flask_appbuilder.security.sqla.models import User

    user_id = db.session.scalar(select(User.id).where(User.username == world.usernames["team"]))
    job = TableQuery(world.slug, Actor.for_user_id(user_id, "job"))
    assert [r["id"] for r in job.stream(5)] == expected_ids(world, "team", None, [])


@FUZZ
@given(data=st.data())
def test_fuzzed_filters_on_real_fields_never_give_a_server_error(app_ctx, world, own_client, data) -> None:  # noqa: ANN001, F811
    """Conditions on the table's own fields, with every operator and any JSON value, as a page, a count
    and a sort: 200 or 400, never a 500 (values the database cannot hold are refused first)."""
    from custom_fields.types import OPERATORS

    names = [*world.names.values(), "id", "owner_id"]
    value = st.one_of(
        st.integers(),
        st.floats(),
        st.text(max_size=12),
        st.booleans(),
        st.none(),
        st.sampled_from(
            ["31.12.2025", "0001-01-01", "9999-12-31 23:59", "1e400", "-0", "NaN", "да", "Новая"]
        ),
    )
    leaf = st.fixed_dictionaries(
        {"field": st.sampled_from(names), "op": st.sampled_from(sorted(OPERATORS)), "value": value}
    )
    spec = data.draw(st.lists(leaf, min_size=1, max_size=3).map(lambda xs: {"or": xs}))
    sort = data.draw(st.lists(st.sampled_from(names), max_size=2).map(",".join))
    for suffix in ("", "/count"):
        response = own_client.get(url(world.slug, suffix, filter=json.dumps(spec), sort=sort or None))
        assert response.status_code in (200, 400), (spec, sort, response.get_data(as_text=True)[:300])
