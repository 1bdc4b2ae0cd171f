"""The dashboard (``exports.dashboard``, ``views.dashboard``): the home page of signed-in users, their
pinned reports (the standard cards until they change it) narrowed by one period and one manager; every
figure's click-through shows exactly its records; pinning, unpinning and moving change only the user's own
list; bad input is refused with a message and changes nothing."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update

from app.crm.convert import default_stage_id
from app.extensions import db
from custom_fields import buckets, records
from custom_fields.access import Actor
from custom_fields.query import QueryError, TableQuery
from custom_fields.types import local_timezone
from exports import dashboard, reports, saved_reports
from models import DashboardLayout, Deal
from tests.conftest import csrf_token
from tests.test_exports import user_id
from tests.test_route_authorization import database_digest
from tests.test_standard_reports import readable_owners


def actor_of(who: str) -> Actor:
    return Actor.for_user_id(user_id(who))


@pytest.fixture
def fresh_layouts(app_ctx) -> None:  # noqa: ANN001
    """Every user starts from the standard cards."""
    db.session.execute(delete(DashboardLayout))
    db.session.commit()


def token(client: Any) -> str:
    return csrf_token(client.get("/dashboard/").get_data(as_text=True))


def post(client: Any, url: str, body: Any, csrf: str | None) -> Any:
    headers = {"X-CSRFToken": csrf} if csrf else {}
    return client.post(url, data=json.dumps(body), content_type="application/json", headers=headers)


def refs(answer: Any) -> list[str]:
    return [c["ref"] for c in answer.get_json()["cards"]]


def drill_count(link: str, actor: Actor) -> int:
    """The number of records the grid behind a figure's link shows ``actor``."""
    parts = urlsplit(link)
    slug = parts.path.split("/")[2]
    state = json.loads(parse_qs(parts.query)["state"][0])
    return TableQuery(slug, actor).where(state["filter"]).count().value


def test_signed_in_users_land_on_their_dashboard(app, client, staff_client, fresh_layouts) -> None:  # noqa: ANN001
    assert client.get("/").status_code == 200  # a visitor: the welcome page and the sign-in
    home = staff_client.get("/", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert 'id="tabula-dashboard"' in home  # the home page is the dashboard
    page = staff_client.get("/dashboard/", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert "Сводка" in page and "Воронка продаж" in page
    config = json.loads(_config_of(page))
    assert [c["ref"] for c in config["cards"]] == list(dashboard.DEFAULT_CARDS)
    assert config["managers"] == []  # staff see their own book: nobody to choose


def _config_of(page: str) -> str:
    import html
    import re

    return html.unescape(re.search(r'data-config="([^"]*)"', page).group(1))


def test_whose_book_a_manager_may_choose(app_ctx) -> None:  # noqa: ANN001
    manager = actor_of("manager")
    mates = readable_owners("manager")
    assert {i for i, _ in dashboard.manager_choices(manager)} == mates
    admin = {i for i, _ in dashboard.manager_choices(actor_of("admin"))}
    assert mates <= admin and user_id("staff2") in admin
    assert dashboard.manager_choices(actor_of("staff1")) == []


@pytest.mark.parametrize("period", list(dashboard.PERIODS))
@pytest.mark.parametrize("who", ["manager", "staff1"])
def test_every_figure_of_every_card_clicks_through_to_exactly_its_records(
    app, app_ctx, fresh_layouts, who, period
) -> None:  # noqa: ANN001
    from views.reports import result

    actor = actor_of(who)
    managers = [None, *(i for i, _ in dashboard.manager_choices(actor))][:3]
    for card in dashboard.pinned(actor):
        if card.ref == dashboard.PLAN_FACT:
            continue  # below
        for manager in managers:
            spec = dashboard.spec_of(card, actor, period, manager)
            pivot = reports.run(spec, actor)
            with app.test_request_context():
                with_links = result(spec, pivot)
            if "count__rows" not in pivot.cells:
                continue
            assert drill_count(with_links["total_link"], actor) == (pivot.grand_totals["count__rows"] or 0)
            for i, row in enumerate(pivot.cells["count__rows"]):
                for j, figure in enumerate(row):
                    if figure is not None:
                        assert drill_count(with_links["links"][i][j], actor) == figure, (card.ref, i, j)


def test_the_period_and_the_manager_narrow_a_card_as_counted_by_hand(app_ctx, fresh_layouts) -> None:  # noqa: ANN001
    """The funnel for the manager, narrowed to staff1's deals created this month, counts what plain SQL
    counts; a deal created last year and one of staff2 are left out."""
    staff1, staff2 = actor_of("staff1"), actor_of("staff2")
    tag = uuid.uuid4().hex[:8]
    this_month = records.create(
        "deals", {"title": f"Этот месяц {tag}", "stage_id": default_stage_id()}, staff1
    )
    old = records.create("deals", {"title": f"Давняя {tag}", "stage_id": default_stage_id()}, staff1)
    records.create("deals", {"title": f"Чужая {tag}", "stage_id": default_stage_id()}, staff2)
    db.session.execute(
        update(Deal)
        .where(Deal.id == old.id)
        .values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=400))
    )
    db.session.commit()
    manager = actor_of("manager")
    funnel = dashboard.card("std:funnel", manager)
    pivot = reports.run(dashboard.spec_of(funnel, manager, "month", user_id("staff1")), manager)
    today = buckets.today()
    first = today.replace(day=1)

    def local(moment: dt.datetime) -> dt.date:
        aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
        return aware.astimezone(local_timezone()).date()

    by_hand = [
        d
        for d in db.session.scalars(select(Deal).where(Deal.deleted_at.is_(None)))
        if d.owner_id == user_id("staff1") and first <= local(d.created_at) <= today
    ]
    assert pivot.grand_totals["count__rows"] == len(by_hand)
    assert this_month.id in {d.id for d in by_hand} and old.id not in {d.id for d in by_hand}
    # Each report's own period: the old deal counts again.
    whole = reports.run(dashboard.spec_of(funnel, manager, "", user_id("staff1")), manager)
    assert whole.grand_totals["count__rows"] == pivot.grand_totals["count__rows"] + len(
        [d for d in db.session.scalars(select(Deal).where(Deal.deleted_at.is_(None)))
         if d.owner_id == user_id("staff1") and local(d.created_at) < first]
    )  # fmt: skip
    # A picture of now (receivables aging) ignores the period.
    aging = dashboard.card("std:receivables_managers", manager)
    assert dashboard.spec_of(aging, manager, "month") == dashboard.spec_of(aging, manager, "")


def test_a_manager_outside_ones_reach_shows_nothing_more(app_ctx) -> None:  # noqa: ANN001
    """Staff choosing someone else's id only narrow their own book further: no figure of anyone else."""
    staff1 = actor_of("staff1")
    funnel = dashboard.card("std:funnel", staff1)
    pivot = reports.run(dashboard.spec_of(funnel, staff1, "", user_id("staff2")), staff1)
    assert (pivot.grand_totals["count__rows"] or 0) == 0


def test_pin_move_unpin_and_reset(app, staff_client, fresh_layouts) -> None:  # noqa: ANN001
    csrf = token(staff_client)
    staff1 = actor_of("staff1")
    mine = saved_reports.save(
        staff1, f"Мой отчёт {uuid.uuid4().hex[:6]}", {"table": "deals", "rows": ["stage_id"]}
    )
    ref = f"saved:{mine.id}"
    answer = post(staff_client, "/dashboard/pin", {"ref": ref}, csrf)
    assert answer.status_code == 200 and refs(answer) == [*dashboard.DEFAULT_CARDS, ref]
    again = post(staff_client, "/dashboard/pin", {"ref": ref}, csrf)
    assert refs(again) == refs(answer)  # pinned once
    moved = post(staff_client, "/dashboard/move", {"ref": ref, "offset": -1}, csrf)
    assert refs(moved)[-2:] == [ref, dashboard.DEFAULT_CARDS[-1]]
    first = post(staff_client, "/dashboard/move", {"ref": dashboard.DEFAULT_CARDS[0], "offset": -1}, csrf)
    assert refs(first) == refs(moved)  # the first stays first
    gone = post(staff_client, "/dashboard/unpin", {"ref": "std:funnel"}, csrf)
    assert "std:funnel" not in refs(gone) and len(refs(gone)) == len(dashboard.DEFAULT_CARDS)
    card = staff_client.get(f"/dashboard/card?ref={ref}&period=month")
    assert card.status_code == 200 and card.get_json()["rows"] is not None
    # A deleted report leaves the dashboard with it.
    saved_reports.delete(mine.id, staff1)
    assert ref not in [c.ref for c in dashboard.pinned(staff1)]
    # Still in the stored list, no longer shown: not movable.
    gone_move = post(staff_client, "/dashboard/move", {"ref": ref, "offset": -1}, csrf)
    assert gone_move.status_code == 404 and gone_move.get_json()["message"]
    reset = post(staff_client, "/dashboard/reset", {}, csrf)
    assert refs(reset) == list(dashboard.DEFAULT_CARDS)
    assert db.session.get(DashboardLayout, user_id("staff1")) is None


def test_a_standard_card_added_later_joins_a_changed_dashboard(app_ctx, fresh_layouts) -> None:  # noqa: ANN001
    """A layout stored before the forecast card existed: the forecast joins it at the end; once unpinned it
    stays away; a layout that never knew a card it holds keeps it once."""
    staff1 = actor_of("staff1")
    older = [ref for ref in dashboard.DEFAULT_CARDS if ref != "std:forecast"]
    db.session.add(DashboardLayout(user_id=user_id("staff1"), cards=older[::-1], known=older, version=3))
    db.session.commit()
    assert [c.ref for c in dashboard.pinned(staff1)] == [*older[::-1], "std:forecast"]
    dashboard.unpin(staff1, "std:forecast")
    assert [c.ref for c in dashboard.pinned(staff1)] == older[::-1]
    stored = db.session.get(DashboardLayout, user_id("staff1"))
    assert stored.known == list(dashboard.DEFAULT_CARDS) and stored.version == 4
    db.session.delete(stored)
    db.session.add(DashboardLayout(user_id=user_id("staff1"), cards=["std:forecast"], known=[], version=1))
    db.session.commit()
    refs_now = [c.ref for c in dashboard.pinned(staff1)]
    assert refs_now[0] == "std:forecast" and refs_now.count("std:forecast") == 1
    assert sorted(refs_now) == sorted(dashboard.DEFAULT_CARDS)


def test_refused_changes_change_nothing(app, client, staff_client, manager_client, fresh_layouts) -> None:  # noqa: ANN001
    csrf = token(staff_client)
    manager = actor_of("manager")
    private = saved_reports.save(manager, f"Личный {uuid.uuid4().hex[:6]}", {"table": "deals"})
    post(staff_client, "/dashboard/unpin", {"ref": "std:activity"}, csrf)
    before = database_digest()
    for bad in (
        {"ref": f"saved:{private.id}"},  # someone else's report, not shared
        {"ref": "std:nope"},
        {"ref": "saved:99999999"},
        {"ref": None},
        {"ref": ["std:funnel"]},
        {},
    ):
        answer = post(staff_client, "/dashboard/pin", bad, csrf)
        assert answer.status_code == 404 and answer.get_json()["message"], bad
    for offset in (0, 2, "1", True, None, 1.0, -1.0):
        answer = post(staff_client, "/dashboard/move", {"ref": "std:funnel", "offset": offset}, csrf)
        assert answer.status_code == 400 and answer.get_json()["message"]
    assert post(staff_client, "/dashboard/move", {"ref": "std:nope", "offset": 1}, csrf).status_code == 404
    unpinned = {"ref": "std:activity", "offset": 1}
    assert post(staff_client, "/dashboard/move", unpinned, csrf).status_code == 404
    assert post(staff_client, "/dashboard/pin", {"ref": "std:activity"}, None).status_code == 400  # no token
    for url in ("/dashboard/pin", "/dashboard/unpin", "/dashboard/move", "/dashboard/reset"):
        assert post(client, url, {"ref": "std:funnel", "offset": 1}, csrf).status_code in (400, 401, 403)
    assert staff_client.post("/dashboard/pin", data="{", content_type="application/json",
                             headers={"X-CSRFToken": csrf}).status_code == 404  # fmt: skip
    assert database_digest() == before
    # The manager's own list is theirs: staff changed nothing of it.
    assert db.session.get(DashboardLayout, user_id("manager")) is None


def test_a_full_dashboard_refuses_more(app_ctx, fresh_layouts) -> None:  # noqa: ANN001
    staff1 = actor_of("staff1")
    made = [
        saved_reports.save(staff1, f"Отчёт {i} {uuid.uuid4().hex[:6]}", {"table": "deals"})
        for i in range(dashboard.MAX_CARDS)
    ]
    for report in made[: dashboard.MAX_CARDS - len(dashboard.DEFAULT_CARDS)]:
        dashboard.pin(staff1, f"saved:{report.id}")
    with pytest.raises(QueryError, match="at most"):
        dashboard.pin(staff1, f"saved:{made[-1].id}")
    assert len(dashboard.pinned(staff1)) == dashboard.MAX_CARDS
    for report in made:
        saved_reports.delete(report.id, staff1)


def test_a_card_refuses_what_it_cannot_answer(app, staff_client) -> None:  # noqa: ANN001
    for query in (
        "ref=std:funnel&period=week",
        "ref=std:funnel&manager=abc",
        "ref=std:funnel&manager=-1",
        "ref=std:funnel&manager=99999999999999",
        "ref=std:nope",
        "ref=saved:abc",
        "",
    ):
        answer = staff_client.get(f"/dashboard/card?{query}")
        assert answer.status_code in (400, 404) and answer.get_json()["message"], query


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ref=st.one_of(st.sampled_from(list(dashboard.DEFAULT_CARDS)), st.text(max_size=30)),
    period=st.one_of(st.sampled_from(list(dashboard.PERIODS)), st.text(max_size=12)),
    manager=st.one_of(st.integers(-5, 10**12).map(str), st.text(max_size=12)),
)
def test_no_card_request_gives_a_server_error(app, staff_client, ref, period, manager) -> None:  # noqa: ANN001
    answer = staff_client.get(
        "/dashboard/card", query_string={"ref": ref, "period": period, "manager": manager}
    )
    assert answer.status_code in (200, 400, 404), answer.get_data(as_text=True)[:300]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-2, 2) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    url=st.sampled_from(["/dashboard/pin", "/dashboard/unpin", "/dashboard/move"]),
    ref=st.one_of(st.sampled_from([*dashboard.DEFAULT_CARDS, "saved:1"]), JSON_VALUES),
    offset=st.one_of(st.sampled_from([1, -1, 1.0, -1.0, True]), JSON_VALUES),
)
def test_no_dashboard_change_gives_a_server_error(app, staff_client, url, ref, offset) -> None:  # noqa: ANN001
    csrf = token(staff_client)
    answer = post(staff_client, url, {"ref": ref, "offset": offset}, csrf)
    assert answer.status_code in (200, 400, 404), answer.get_data(as_text=True)[:300]
