"""Stage-to-stage conversion (``exports.stage_conversion``): deals moved along known paths in a pipeline of
their own, by staff1 and staff2; what each user sees equals the paths' counts for the owners they may read
(worked out by hand), shares follow, every figure's grid filter holds exactly its deals, the period and
manager narrow it, and the screen answers in Russian, refusing what is not a period or a manager."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custom_fields import records
from custom_fields.access import Actor
from custom_fields.query import TableQuery
from exports import stage_conversion
from tests.test_exports import user_id
from tests.test_standard_reports import readable_owners

HOSTILE = "<script>alert('воронка')</script> \"Тендеры\" " + "Ж" * 40

#: per owner: reached s1, s2, s3, won; lost after s2; never at an open stage
PER_OWNER = {"reached": [5, 4, 2, 1], "lost_after": [0, 1, 0, 0], "unknown": 1}


def actor_of(who: str) -> Actor:
    return Actor.for_user_id(user_id(who))


@pytest.fixture
def paths(app_ctx) -> dict[str, Any]:  # noqa: ANN001
    """A pipeline (hostile name) with three open stages, a won one and a lost one; staff1's and staff2's deals
    take the same paths through it."""
    admin = actor_of("admin")
    name = f"{HOSTILE} {uuid.uuid4().hex[:6]}"
    pipeline = records.create("pipelines", {"name": name}, admin).id
    s1, s2, s3, won, lost = (
        records.create("stages", {"name": name, "pipeline_id": pipeline, "position": i, **extra}, admin).id
        for i, (name, extra) in enumerate(
            (
                ("Квалификация", {}),
                ("Предложение", {}),
                ("Переговоры", {}),
                ("Выиграна", {"is_won": True}),
                ("Проиграна", {"is_lost": True}),
            )
        )
    )
    routes = ([s1], [s1, s2], [s1, s3, s1], [s1, s2, lost], [s1, won], [lost])
    for who in ("staff1", "staff2"):
        actor = actor_of(who)
        for n, route in enumerate(routes):
            deal = records.create("deals", {"title": f"Путь {who} {n}", "stage_id": route[0]}, actor).id
            for stage in route[1:]:
                records.update("deals", deal, {"stage_id": stage}, actor, expected_version=None)
    return {"pipeline": pipeline, "name": name, "stages": [s1, s2, s3, won], "lost": lost}


def funnel_of(found: stage_conversion.Conversion, pipeline: int) -> stage_conversion.Funnel:
    [funnel] = [f for f in found.funnels if f.pipeline_id == pipeline]
    return funnel


def owners_seen(who: str) -> int:
    return len(readable_owners(who) & {user_id("staff1"), user_id("staff2")})


@pytest.mark.parametrize("who", ["manager", "staff1", "admin"])
def test_reached_shares_and_lost_after_as_each_user_sees_them(app_ctx, paths, who) -> None:  # noqa: ANN001
    times = owners_seen(who) if who != "admin" else 2
    funnel = funnel_of(stage_conversion.run(actor_of(who), ""), paths["pipeline"])
    assert funnel.name == paths["name"]
    assert [s.stage_id for s in funnel.steps] == paths["stages"]  # the lost stage is no step
    assert [s.reached for s in funnel.steps] == [n * times for n in PER_OWNER["reached"]]
    assert [s.lost_after for s in funnel.steps] == [n * times for n in PER_OWNER["lost_after"]]
    assert funnel.unknown == PER_OWNER["unknown"] * times
    assert [s.from_previous for s in funnel.steps] == [
        None,
        Decimal("80.0"),
        Decimal("50.0"),
        Decimal("50.0"),
    ]
    assert [s.from_first for s in funnel.steps] == [Decimal(x) for x in ("100.0", "80.0", "40.0", "20.0")]


def test_every_figure_opens_exactly_its_deals(app_ctx, paths) -> None:  # noqa: ANN001
    manager = actor_of("manager")
    funnel = funnel_of(stage_conversion.run(manager, "year"), paths["pipeline"])
    for step in funnel.steps:
        for name in ("reached", "lost_after"):
            behind = TableQuery("deals", manager).where(step.filters[name])
            assert behind.exact_count() == getattr(step, name), (step.name, name)
    lost = TableQuery("deals", manager).where(funnel.steps[1].filters["lost_after"]).stream()
    assert {row["stage_id"] for row in lost} == {paths["lost"]}
    assert TableQuery("deals", manager).where(funnel.unknown_filter).exact_count() == funnel.unknown


def test_the_manager_and_the_period_narrow_it(app_ctx, paths) -> None:  # noqa: ANN001
    manager = actor_of("manager")
    if owners_seen("manager") < 2:
        pytest.skip("the manager's team does not hold both staff users")
    one = funnel_of(stage_conversion.run(manager, "month", user_id("staff2")), paths["pipeline"])
    assert [s.reached for s in one.steps] == PER_OWNER["reached"]
    for step in one.steps:
        assert {
            r["owner_id"] for r in TableQuery("deals", manager).where(step.filters["reached"]).stream()
        } == {user_id("staff2")}
    # Deals created today are in this quarter and this year too.
    for kind in ("quarter", "year"):
        found = funnel_of(stage_conversion.run(manager, kind, user_id("staff2")), paths["pipeline"])
        assert [s.reached for s in found.steps] == PER_OWNER["reached"]
    with pytest.raises(stage_conversion.ReportError):
        stage_conversion.run(manager, "week")


def test_the_screen_in_russian_and_its_refusals(app, manager_client, paths) -> None:  # noqa: ANN001
    page = manager_client.get("/reports/conversion", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert "Конверсия по этапам" in page and "<script>alert" not in page
    answer = manager_client.get("/reports/conversion/run", query_string={"period": "year"})
    assert answer.status_code == 200
    [funnel] = [f for f in answer.get_json()["funnels"] if f["name"] == paths["name"]]
    assert [s["name"] for s in funnel["steps"]] == ["Квалификация", "Предложение", "Переговоры", "Выиграна"]
    for link in (url for s in funnel["steps"] for url in s["links"].values()):
        assert link.startswith("/grid/deals/") and json.loads(unquote(link.split("state=", 1)[1]))["filter"]
    for bad in ({"period": "week"}, {"period": "x" * 300}, {"manager": "abc"}, {"manager": "9" * 30}):
        answer = manager_client.get("/reports/conversion/run", query_string=bad)
        assert answer.status_code == 400 and answer.get_json()["message"], bad


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(period=st.text(max_size=20), manager=st.text(max_size=20))
def test_no_query_gives_a_server_error(app, manager_client, period, manager) -> None:  # noqa: ANN001
    answer = manager_client.get(
        "/reports/conversion/run", query_string={"period": period, "manager": manager}
    )
    assert answer.status_code in (200, 400), (period, manager)
    if answer.status_code == 200:
        assert answer.get_json()["funnels"]


def test_stage_conversion_as_a_workbook_and_its_refusals(app, manager_client, paths) -> None:  # noqa: ANN001
    """The manager's workbook for one salesperson (written as the export job writes it): the summary holds
    every stage's figures as the conversion computes them, with a native chart, and the data sheet exactly
    the deals it counts; what is not a period or a manager, or no form token, is refused, nothing
    recorded."""
    import io

    import openpyxl
    from sqlalchemy import func, select

    from app.extensions import db
    from exports import service
    from models.exports import ExportFile
    from tests.conftest import csrf_token

    token = csrf_token(manager_client.get("/reports/conversion").get_data(as_text=True))

    def post(body: Any, with_token: bool = True) -> Any:
        headers = {"Accept": "application/json", **({"X-CSRFToken": token} if with_token else {})}
        return manager_client.post(
            "/reports/conversion/export",
            data=json.dumps(body),
            content_type="application/json",
            headers=headers,
        )

    staff2 = user_id("staff2")
    answer = post({"period": "year", "manager": str(staff2)})
    assert answer.status_code == 202, answer.get_json()
    export_id = answer.get_json()["id"]
    assert service.run(export_id, lambda done, total: None)["status"] == "ready"
    book = openpyxl.load_workbook(io.BytesIO(manager_client.get(f"/exports/{export_id}/download").data))
    summary, data = book.worksheets[0], book.worksheets[1]
    manager = actor_of("manager")
    found = stage_conversion.run(manager, "year", staff2)
    expected = [
        [funnel.name, step.name, step.reached, step.lost_after]
        for funnel in found.funnels
        for step in funnel.steps
    ]
    shown = [
        [r[0], r[1], r[2], r[5]]
        for r in summary.iter_rows(min_row=5, max_row=4 + len(expected), values_only=True)
    ]
    assert shown == expected
    assert [paths["name"], "Предложение", PER_OWNER["reached"][1], 1] in shown
    assert summary._charts
    behind = TableQuery("deals", manager).where(stage_conversion.deals_of("year", staff2)).exact_count()
    assert data.max_row - 1 == behind > 0
    count = select(func.count()).select_from(ExportFile)
    before = db.session.scalar(count)
    for bad in ({"period": "week"}, {"manager": "abc"}, {"period": 5}, []):
        refused = post(bad)
        assert refused.status_code == 400 and refused.get_json()["message"], bad
    assert post({"period": ""}, with_token=False).status_code == 400
    assert db.session.scalar(count) == before
