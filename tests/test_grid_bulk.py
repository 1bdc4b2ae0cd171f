"""The grid's bulk edit over HTTP, on both databases: the exact count first, the confirmed count checked,
only rows the user may edit, never a hidden or view-only field, a refused value changing nothing, one change
set in history across batches, and a big edit as an RQ job with progress."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from app.extensions import db
from custom_fields import bulk, records
from custom_fields.access import Actor
from models import RecordChange
from tests.test_grid import page_config, role_id, sheet, stored, user_id  # noqa: F401 (a fixture)
from tests.test_live import newest, notes_after
from views import grid_bulk


def post(client, slug: str, token: str, body: Any):  # noqa: ANN001, ANN201
    return client.post(f"/grid/{slug}/bulk", json=body, headers={"X-CSRFToken": token})


def counts(slug: str, ids: list[int], name: str) -> list[Any]:
    return [stored(slug, pk)[name] for pk in ids]


def test_selected_rows_and_all_matching_with_the_exact_count(sheet, admin_client, staff_client) -> None:  # noqa: ANN001, F811
    slug, mine, other = sheet["slug"], sheet["mine"], sheet["other"]
    _config, token = page_config(admin_client, slug)
    everyone = {"all": True, "filter": None, "q": "", "field": sheet["count"], "value": "7"}
    assert post(admin_client, slug, token, {**everyone, "preview": True}).get_json() == {"count": 3}
    # Staff reach only their own two rows, whatever the request names.
    _config, staff_token = page_config(staff_client, slug)
    assert post(staff_client, slug, staff_token, {**everyone, "preview": True}).get_json() == {"count": 2}
    named = {"ids": [*mine, other], "field": sheet["count"], "value": "5"}
    assert post(staff_client, slug, staff_token, {**named, "preview": True}).get_json() == {"count": 2}

    # A filter (the grid's header filters and search) chooses the matching rows.
    first_only = {"and": [{"field": sheet["name"], "op": "eq", "value": "Первая"}]}
    body = {**everyone, "filter": first_only, "value": "1 234"}
    assert post(admin_client, slug, token, {**body, "preview": True}).get_json() == {"count": 1}
    answer = post(admin_client, slug, token, {**body, "count": 1})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["changed"] == 1 and answer.get_json()["done"] is True
    assert counts(slug, [*mine, other], sheet["count"]) == [1234, 2, None]

    # The confirmed count must still be right: a changed count is refused with the new one.
    answer = post(staff_client, slug, staff_token, {**named, "count": 3})
    assert answer.status_code == 409 and answer.get_json()["count"] == 2
    assert counts(slug, mine, sheet["count"]) == [1234, 2]
    answer = post(staff_client, slug, staff_token, {**named, "count": 2})
    assert answer.status_code == 200 and answer.get_json()["changed"] == 2
    assert counts(slug, [*mine, other], sheet["count"]) == [5, 5, None]


def test_hidden_view_only_and_refused_values_change_nothing(sheet, admin_client, staff_client) -> None:  # noqa: ANN001, F811
    slug, mine = sheet["slug"], sheet["mine"]
    _config, token = page_config(staff_client, slug)
    base = {"ids": mine, "count": 2}
    for name in (sheet["secret"], sheet["note"], "no_such_field", "id", None):  # hidden, view-only, unknown
        answer = post(staff_client, slug, token, {**base, "field": name, "value": "x"})
        assert answer.status_code == 422, (name, answer.get_json())
        assert answer.get_json()["message"]
    answer = post(staff_client, slug, token, {**base, "field": sheet["count"], "value": "много"})
    assert answer.status_code == 422 and answer.get_json()["message"]
    assert counts(slug, mine, sheet["count"]) == [1, 2]
    # Nothing selected that the user may change, and a bad filter: clear answers.
    answer = post(staff_client, slug, token, {"ids": [sheet["other"]], "count": 0, "field": sheet["count"]})
    assert answer.status_code == 422
    bad = {
        "all": True,
        "filter": {"and": [{"field": "nope", "op": "eq", "value": 1}]},
        "field": sheet["count"],
    }
    assert post(staff_client, slug, token, {**bad, "preview": True}).status_code == 400
    # Without the CSRF token, and without the edit right: refused, nothing changed.
    response = staff_client.post(f"/grid/{slug}/bulk", json={**base, "field": sheet["count"], "value": "3"})
    assert response.status_code in (400, 403)
    from custom_fields import access
    from custom_fields.runtime import current, refresh

    access.set_table_rights(role_id("Staff"), current().entity(slug).id, {"edit": False})
    refresh()
    answer = post(staff_client, slug, token, {**base, "field": sheet["count"], "value": "3"})
    assert answer.status_code == 403
    assert counts(slug, mine, sheet["count"]) == [1, 2]


def test_batches_share_one_change_set(sheet, admin_client, monkeypatch) -> None:  # noqa: ANN001, F811
    slug = sheet["slug"]
    ids = [*sheet["mine"], sheet["other"]]
    monkeypatch.setattr(bulk, "BATCH", 1)
    _config, token = page_config(admin_client, slug)
    body = {"ids": ids, "count": 3, "field": sheet["amount"], "value": "99,5"}
    answer = post(admin_client, slug, token, body)
    assert answer.status_code == 200 and answer.get_json()["changed"] == 3
    db.session.rollback()
    changesets = db.session.scalars(
        select(RecordChange.changeset).where(
            RecordChange.record_id.in_(ids), RecordChange.entity_id == sheet_entity_id(slug)
        )
    ).all()
    latest = [c for c in changesets if changesets.count(c) == 3]
    assert len(set(latest)) == 1, changesets


def sheet_entity_id(slug: str) -> int:
    from custom_fields.runtime import current

    return current().entity(slug).id


def test_a_big_edit_runs_as_a_job_with_progress(sheet, admin_client, monkeypatch, worker) -> None:  # noqa: ANN001, F811
    slug = sheet["slug"]
    more = records.create_many(
        slug, [{sheet["name"]: f"Ещё {i}"} for i in range(7)], Actor.for_user_id(user_id("admin"), "ui")
    )
    db.session.commit()
    monkeypatch.setattr(grid_bulk, "INLINE_ROWS", 2)
    _config, token = page_config(admin_client, slug)
    body = {"all": True, "filter": None, "q": "Ещё", "field": sheet["count"], "value": "8"}
    assert post(admin_client, slug, token, {**body, "preview": True}).get_json() == {"count": 7}
    since = newest()
    answer = post(admin_client, slug, token, {**body, "count": 7})
    assert answer.status_code == 202, answer.get_json()
    status_url = answer.get_json()["progress"]
    deadline = time.monotonic() + 60
    while True:
        state = admin_client.get(status_url).get_json()
        if state["finished"] or state["failed"]:
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    assert state["finished"], state
    assert state["done"] == state["total"] == 7 and state["percent"] == 100
    assert state["result"]["changed"] == 7 and state["message"]
    assert counts(slug, [s.id for s in more], sheet["count"]) == [8] * 7
    assert counts(slug, sheet["mine"], sheet["count"]) == [1, 2]
    # The worker's commits were announced to open grids (after each batch's commit, by the write path).
    announced = [n for n in notes_after(since) if n["k"] == "rows" and n["e"] == sheet_entity_id(slug)]
    assert {int(i) for n in announced for i in n["r"]} == {s.id for s in more}
    assert {n["u"] for n in announced} == {user_id("admin")}
    # Someone else's job is not theirs to watch.
    from tests.conftest import DEMO_PASSWORD, login

    other = admin_client.application.test_client()
    login(other, "staff1", DEMO_PASSWORD)
    assert other.get(status_url).status_code == 404


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.dictionaries(
        st.sampled_from(["ids", "all", "filter", "q", "field", "value", "count", "preview"]),
        st.none()
        | st.booleans()
        | st.integers()
        | st.text(max_size=10)
        | st.lists(st.integers(), max_size=3),
        max_size=8,
    )
)
def test_fuzzed_bulk_requests_never_give_a_server_error(sheet, admin_client, body) -> None:  # noqa: ANN001, F811
    _config, token = page_config(admin_client, sheet["slug"])
    response = post(admin_client, sheet["slug"], token, body)
    assert response.status_code < 500, (body, response.get_data(as_text=True)[:300])
