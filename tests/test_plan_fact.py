"""Sales plans and plan vs fact (``exports.plan_fact``): a plan is for a whole month, one per salesperson,
month and currency; plan vs fact equals an independent computation over the rows (plain SQL, the row scope
worked out by hand) for a manager and for a staff user, on SQLite and PostgreSQL; every figure's grid
filter holds exactly its records; the screen answers in Russian and refuses what is not a period."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from app.crm.convert import default_stage_id
from app.extensions import db
from custom_fields import buckets, records
from custom_fields.access import Actor
from custom_fields.query import TableQuery
from custom_fields.types import local_timezone
from exports import plan_fact
from models import Deal, Invoice, SalesPlan, Stage
from tests.test_exports import user_id
from tests.test_standard_reports import readable_owners


def actor_of(who: str) -> Actor:
    return Actor.for_user_id(user_id(who))


def won_stage() -> int:
    return db.session.scalar(select(Stage.id).where(Stage.is_won.is_(True), Stage.deleted_at.is_(None)))


@pytest.fixture
def plan_book(app_ctx) -> dict[str, Any]:  # noqa: ANN001
    """This month's plans of staff1 (roubles and dollars) and staff2, set by the manager; deals staff1 and
    staff2 won this month and last year, one open, one lost; invoices paid in full this month and last
    year."""
    manager = actor_of("manager")
    today = buckets.today()
    tag = uuid.uuid4().hex[:6]
    month = today.replace(day=1)
    # Plans of earlier tests in this database would be twins of these: into the recycle bin with them.
    db.session.execute(update(SalesPlan).values(deleted_at=dt.datetime.now(dt.UTC)))
    db.session.commit()
    for who, amount, count, currency in (
        ("staff1", "100000", 3, "rub"),
        ("staff1", "2000", 1, "usd"),
        ("staff2", "50000", 2, "rub"),
    ):
        values = {"manager_id": who, "month": today.isoformat(), "amount": amount, "deals_count": str(count),
                  "currency": currency}  # fmt: skip
        records.create("sales_plans", values, manager)
    # Many pipelines with many won stages (plan vs fact once listed them all in one filter: over 50 failed).
    admin = actor_of("admin")
    pipeline = records.create("pipelines", {"name": f"Много этапов {tag}"}, admin).id
    many = [{"name": f"Победа {i}", "pipeline_id": str(pipeline), "is_won": "true"} for i in range(55)]
    records.create_many("stages", many, admin)
    won, lost = won_stage(), db.session.scalar(select(Stage.id).where(Stage.is_lost.is_(True)))
    deals = []
    for who, amount, stage in (
        ("staff1", "30000.50", won), ("staff1", "45000", won), ("staff1", "9999", default_stage_id()),
        ("staff1", "7000", lost), ("staff2", "12000", won), ("staff2", "500", won),
    ):  # fmt: skip
        actor = actor_of(who)
        deals.append(records.create("deals", {"title": f"План {tag} {who} {amount}", "amount": amount,
                                              "stage_id": stage}, actor).id)  # fmt: skip
    # staff2's last deal was won last year.
    last_year = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    db.session.execute(update(Deal).where(Deal.id == deals[-1]).values(closed_at=last_year))
    for who, amount in (("staff1", "15000"), ("staff2", "8000"), ("staff2", "300")):
        values = {"number": f"П-{tag}-{who}-{amount}", "amount": amount, "paid_amount": amount}
        records.create("invoices", values, actor_of(who))
    old = db.session.scalar(select(Invoice.id).where(Invoice.number == f"П-{tag}-staff2-300"))
    db.session.execute(
        update(Invoice).where(Invoice.id == old).values(paid_on=today - dt.timedelta(days=400))
    )
    db.session.commit()
    return {"month": month, "tag": tag}


def local_day(moment: dt.datetime) -> dt.date:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return aware.astimezone(local_timezone()).date()


def independent(who: str, first: dt.date, after: dt.date) -> dict[tuple[Any, Any], dict[str, Any]]:
    """{(salesperson, currency): figures} from the rows, read with plain SQL and the scope by hand."""
    owners = readable_owners(who)
    won = {i for i in db.session.scalars(select(Stage.id).where(Stage.is_won.is_(True)))}
    found: dict[tuple[Any, Any], dict[str, Any]] = defaultdict(dict)

    def add(key: tuple[Any, Any], name: str, value: Any) -> None:
        if value is not None:
            found[key][name] = (found[key].get(name) or 0) + value

    for plan in db.session.scalars(select(SalesPlan).where(SalesPlan.deleted_at.is_(None))):
        if {plan.owner_id, plan.manager_id} & owners and first <= plan.month < after:
            add((plan.manager_id, plan.currency), "plan_amount", plan.amount)
            add((plan.manager_id, plan.currency), "plan_count", plan.deals_count)
    for deal in db.session.scalars(select(Deal).where(Deal.deleted_at.is_(None))):
        if deal.owner_id in owners and deal.stage_id in won and deal.closed_at is not None:
            if first <= local_day(deal.closed_at) < after:
                add((deal.owner_id, deal.currency), "won_amount", deal.amount)
                add((deal.owner_id, deal.currency), "won_count", 1)
    for invoice in db.session.scalars(select(Invoice).where(Invoice.deleted_at.is_(None))):
        if invoice.owner_id in owners and invoice.paid_on is not None and first <= invoice.paid_on < after:
            add((invoice.owner_id, invoice.currency), "paid_amount", invoice.amount)
    return found


def same(got: Any, want: Any) -> bool:
    if got is None or want is None:
        return got in (None, 0) and want in (None, 0)
    return abs(Decimal(str(got)) - Decimal(str(want))) < Decimal("0.005")


@pytest.mark.parametrize("kind", ["month", "year"])
@pytest.mark.parametrize("who", ["manager", "staff1"])
def test_plan_vs_fact_equals_an_independent_computation(app_ctx, plan_book, who, kind) -> None:  # noqa: ANN001
    actor = actor_of(who)
    found = plan_fact.run(actor, kind)
    want = independent(who, found.first, found.after)
    got = {(line.manager_id, line.currency): line for line in found.lines}
    assert set(got) == set(want), (who, kind, set(got) ^ set(want))
    for key, figures in want.items():
        for name in plan_fact.FIGURES:
            assert same(got[key].figures.get(name), figures.get(name)), (who, kind, key, name)
    staff1 = user_id("staff1")
    mine = got[(staff1, "rub")]
    if kind == "month":
        assert same(mine.figures["plan_amount"], 100000) and mine.figures["won_count"] >= 2  # and the demo's
    if who == "staff1":  # their own book only: no one else's plan or sales
        assert {key[0] for key in got} == {staff1}


def test_fulfilment_and_each_figures_records(app_ctx, plan_book) -> None:  # noqa: ANN001
    manager = actor_of("manager")
    found = plan_fact.run(manager, "month")
    for line in found.lines:
        for name, (table, drill) in line.filters.items():
            value = line.figures.get(name)
            if value is None:
                continue
            query = TableQuery(table, manager).where(drill)
            measure = {
                "plan_amount": ("sum", "amount"), "plan_count": ("sum", "deals_count"),
                "won_amount": ("sum", "amount"), "won_count": ("count", None),
                "paid_amount": ("sum", "amount"),
            }[name]  # fmt: skip
            [behind] = query.aggregate([], {"v": measure})
            assert same(behind["v"], value), (line.manager_id, line.currency, name)
        if line.figures.get("plan_amount"):
            won = Decimal(str(line.figures.get("won_amount") or 0))
            expected = (won * 100 / Decimal(str(line.figures["plan_amount"]))).quantize(Decimal("0.1"))
            assert line.fulfilled == expected
        else:
            assert line.fulfilled is None


def test_a_plan_is_for_one_month_and_never_twice(app_ctx, plan_book) -> None:  # noqa: ANN001
    manager = actor_of("manager")
    month = plan_book["month"]
    [plan] = [
        p
        for p in db.session.scalars(select(SalesPlan).where(SalesPlan.deleted_at.is_(None)))
        if p.manager_id == user_id("staff2")
    ]
    assert plan.month == month and "· " + month.strftime("%m.%Y") in plan.name
    again = {"manager_id": "staff2", "month": (month + dt.timedelta(days=10)).isoformat(), "amount": "1",
             "currency": "rub"}  # fmt: skip
    with pytest.raises(records.RecordInvalid) as refused:
        records.create("sales_plans", again, manager)
    assert "month" in refused.value.errors
    two = [{**again, "currency": "eur"}, {**again, "currency": "eur"}]  # twice in one paste
    with pytest.raises(records.RecordInvalid):
        records.create_many("sales_plans", two, manager)
    other = records.create("sales_plans", {**again, "currency": "eur"}, manager)  # another currency is fine
    records.update(
        "sales_plans", other.id, {"amount": "2"}, manager, expected_version=None
    )  # itself is no twin
    with pytest.raises(records.AccessDenied):  # staff read their plans; they do not set them
        records.create(
            "sales_plans", {**again, "currency": "usd", "manager_id": "staff1"}, actor_of("staff1")
        )


def test_the_database_holds_one_live_plan_per_month_whatever_saves_overlap(app_ctx, plan_book) -> None:  # noqa: ANN001
    """Two saves at the same moment could both pass the write path's check: the unique index refuses the
    second (here written past the write path, as the race would), and a plan in the recycle bin is no twin."""
    [plan] = [
        p
        for p in db.session.scalars(select(SalesPlan).where(SalesPlan.deleted_at.is_(None)))
        if p.manager_id == user_id("staff2")
    ]
    twin = {
        "name": "Двойник", "manager_id": plan.manager_id, "month": plan.month, "currency": plan.currency,
        "amount": Decimal(1), "row_version": 1, "created_at": dt.datetime.now(dt.UTC),
    }  # fmt: skip
    with pytest.raises(IntegrityError):
        db.session.execute(insert(SalesPlan).values(**twin))
    db.session.rollback()
    binned = {**twin, "deleted_at": dt.datetime.now(dt.UTC)}
    db.session.execute(insert(SalesPlan).values(**binned))
    db.session.rollback()


def test_the_screen_in_russian_and_its_refusals(app, staff_client, plan_book) -> None:  # noqa: ANN001
    page = staff_client.get("/reports/plan", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert "План и факт" in page
    answer = staff_client.get("/reports/plan/run?period=month")
    assert answer.status_code == 200
    lines = answer.get_json()["lines"]
    assert lines and all(line["manager"] for line in lines)
    for link in (url for line in lines for url in line["links"].values()):
        assert link.startswith("/grid/") and json.loads(unquote(link.split("state=", 1)[1]))["filter"]
    for bad in ("week", "", "x" * 300):
        answer = staff_client.get("/reports/plan/run", query_string={"period": bad})
        assert answer.status_code == 400 and answer.get_json()["message"]


@pytest.mark.parametrize("period", ["", "quarter"])
def test_the_plan_card_is_plan_vs_fact_and_its_bars_open_their_records(
    app, manager_client, plan_book, period
) -> None:  # noqa: ANN001
    manager = actor_of("manager")
    staff1 = user_id("staff1")
    answer = manager_client.get(f"/dashboard/card?ref=plan_fact&period={period}&manager={staff1}")
    assert answer.status_code == 200
    card = answer.get_json()
    found = plan_fact.run(manager, period or "month")
    mine = [line for line in found.lines if line.manager_id == staff1]
    assert len(card["rows"]) == len(mine) > 0  # only staff1's lines
    for i, line in enumerate(mine):
        assert card["cells"]["amount"][i] == [
            float(line.figures["plan_amount"]) if line.figures.get("plan_amount") is not None else None,
            float(line.figures["won_amount"]) if line.figures.get("won_amount") is not None else None,
        ]
        for j, (name, measure) in enumerate((("plan_amount", "amount"), ("won_amount", "amount"))):
            link = card["links"][i][j]
            parts = urlsplit(link)
            state = json.loads(parse_qs(parts.query)["state"][0])
            [behind] = (
                TableQuery(parts.path.split("/")[2], manager)
                .where(state["filter"])
                .aggregate([], {"v": ("sum", measure)})
            )
            assert abs(float(behind["v"] or 0) - float(line.figures.get(name) or 0)) < 0.005
    assert manager_client.get("/dashboard/card?ref=plan_fact&period=week").status_code == 400


def test_plan_vs_fact_as_a_workbook_and_its_refusals(app, manager_client, plan_book) -> None:  # noqa: ANN001
    """The manager's workbook (written as the export job writes it): the summary holds every line's figures
    as plan vs fact computes them, with a native chart, and the data sheet the won deals behind them; a
    period that is not one, no form token or no sign-in is refused, nothing recorded (the right to export
    the table is checked as for any export)."""
    import io

    import openpyxl

    from exports import service
    from models.exports import ExportFile
    from tests.conftest import csrf_token
    from tests.test_exports import workbook_rows

    token = csrf_token(manager_client.get("/reports/plan").get_data(as_text=True))
    headers = {"X-CSRFToken": token, "Accept": "application/json"}

    def post(client: Any, body: Any, with_token: bool = True) -> Any:
        return client.post(
            "/reports/plan/export", data=json.dumps(body), content_type="application/json",
            headers=headers if with_token else {"Accept": "application/json"},
        )  # fmt: skip

    answer = post(manager_client, {"period": "month"})
    assert answer.status_code == 202 and answer.get_json()["url"].startswith("/exports/")
    export_id = answer.get_json()["id"]
    assert service.run(export_id, lambda done, total: None)["status"] == "ready"
    response = manager_client.get(f"/exports/{export_id}/download")
    summary = openpyxl.load_workbook(io.BytesIO(response.data)).worksheets[0]
    manager = actor_of("manager")
    found = plan_fact.run(manager, "month")
    lines = [[c.value for c in row] for row in summary.iter_rows(min_row=5, max_row=4 + len(found.lines))]
    for shown, line in zip(lines, found.lines, strict=True):
        assert shown[0] == plan_fact.manager_label(line.manager_id)
        for value, key in zip(shown[2:4], ("plan_amount", "won_amount"), strict=True):
            assert same(value, line.figures.get(key))
        assert same(shown[4], line.fulfilled) and same(shown[7], line.figures.get("won_count"))
    assert summary._charts, "a native chart of planned against won"
    rows = workbook_rows(manager_client, export_id)
    won_total = sum(line.figures.get("won_count") or 0 for line in found.lines)
    data = openpyxl.load_workbook(io.BytesIO(response.data)).worksheets[1]
    assert data.max_row - 1 == won_total and rows
    count = select(func.count()).select_from(ExportFile)
    before = db.session.scalar(count)
    for bad in ({"period": "week"}, {"period": ["month"]}, [], {"period": None}):
        refused = post(manager_client, bad)
        assert refused.status_code == 400 and refused.get_json()["message"], bad
    assert post(manager_client, {"period": "month"}, with_token=False).status_code == 400
    assert post(app.test_client(), {"period": "month"}).status_code in (400, 401, 403)
    assert db.session.scalar(count) == before
