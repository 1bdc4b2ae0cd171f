"""The core CRM tables through the generated screens (every entity: add, show, edit, delete, refused
values) and the rules the write path computes for them (deal amount from lines, stage probability and
closing, overdue invoices, contact names and consent, task completion), on both databases."""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
from flask_appbuilder.security.sqla.models import User
from sqlalchemy import select

from app.crm import derive
from app.extensions import db
from custom_fields import history, records, runtime
from custom_fields.access import Actor
from custom_fields.types import local_timezone
from models import JobRun, JobStatus, RecordChange
from tests.conftest import csrf_token


def tag() -> str:
    return uuid.uuid4().hex[:8]


def actor(username: str) -> Actor:
    return Actor.of_user(db.session.scalar(select(User).where(User.username == username)))


def row(slug: str, pk: int) -> Any:
    db.session.expire_all()
    return db.session.get(runtime.current().classes[slug], pk)


@pytest.fixture
def book(app_ctx) -> dict[str, int]:  # noqa: ANN001
    """A pipeline with an open, a won and a lost stage, a company, a contact, a product, a deal."""
    admin = actor("admin")
    t = tag()
    pipeline = records.create("pipelines", {"name": f"Воронка {t}"}, admin).id
    stages = records.create_many(
        "stages",
        [
            {"name": "Новая", "pipeline_id": pipeline, "position": 1, "probability": "10"},
            {
                "name": "Выиграна",
                "pipeline_id": pipeline,
                "position": 2,
                "probability": "100",
                "is_won": True,
            },
            {
                "name": "Проиграна",
                "pipeline_id": pipeline,
                "position": 3,
                "probability": "0",
                "is_lost": True,
            },
        ],
        admin,
    )
    company = records.create("companies", {"name": f"ООО «Ромашка {t}»", "kind": "customer"}, admin).id
    contact = records.create("contacts", {"first_name": "Иван", "company_id": company}, admin).id
    product = records.create("products", {"name": f"Кирпич {t}", "sku": f"K-{t}", "price": "12,50"}, admin).id
    deal = records.create(
        "deals", {"title": f"Поставка {t}", "stage_id": stages[0].id, "company_id": company}, admin
    ).id
    return {
        "pipeline": pipeline, "open": stages[0].id, "won": stages[1].id, "lost": stages[2].id,
        "company": company, "contact": contact, "product": product, "deal": deal, "tag": t,
    }  # fmt: skip


def minimal_form(slug: str, book: dict[str, Any], t: str) -> dict[str, str]:
    """The fewest values a user types to add a record of each core table."""
    return {
        "companies": {"name": f"АО Тест {t}", "kind": "supplier", "phone": "8 (916) 123-45-67"},
        "contacts": {"first_name": f"Пётр {t}", "last_name": "Сидоров", "company_id": str(book["company"])},
        "leads": {"title": f"Заявка с сайта {t}", "source": "web_form", "email": f"lead-{t}@example.com"},
        "pipelines": {"name": f"Тендеры {t}"},
        "stages": {"name": f"Квалификация {t}", "pipeline_id": str(book["pipeline"]), "probability": "20"},
        "products": {"name": f"Цемент {t}", "sku": f"C-{t}", "price": "450,00", "currency": "rub"},
        "deals": {"title": f"Сделка {t}", "stage_id": str(book["open"]), "amount": "1 000,50"},
        "deal_lines": {
            "deal_id": str(book["deal"]),
            "description": f"Строка {t}",
            "quantity": "2",
            "price": "10",
        },
        "activities": {"kind": "call", "subject": f"Звонок {t}", "outcome": "no_answer"},
        "tasks": {"title": f"Перезвонить {t}", "status": "open", "priority": "high"},
        "invoices": {"number": f"СЧ-{t}", "amount": "5000", "company_id": str(book["company"])},
    }[slug]


SLUGS = (
    "companies", "contacts", "leads", "pipelines", "stages", "products", "deals", "deal_lines", "activities",
    "tasks", "invoices",
)  # fmt: skip


def newest(slug: str) -> int:
    model = runtime.current().classes[slug]
    return db.session.scalar(select(model.id).order_by(model.id.desc()).limit(1))


@pytest.mark.parametrize("slug", SLUGS)
def test_every_core_table_through_its_screens(slug: str, book, admin_client) -> None:  # noqa: ANN001
    t = tag()
    page = admin_client.get(f"/t/{slug}/add")
    assert page.status_code == 200
    form = {"csrf_token": csrf_token(page.get_data(as_text=True)), **minimal_form(slug, book, t)}
    saved = admin_client.post(f"/t/{slug}/add", data=form)
    assert saved.status_code == 302, re.findall(r'class="help-block">([^<]*)', saved.get_data(as_text=True))
    pk = newest(slug)
    assert t in admin_client.get(f"/t/{slug}/show/{pk}").get_data(as_text=True)
    assert t in admin_client.get(f"/t/{slug}/list/").get_data(as_text=True)
    named = next(name for name, value in form.items() if t in value and name != "csrf_token")

    # Edit: change the value naming the record, with the version the page was opened at.
    edit = admin_client.get(f"/t/{slug}/edit/{pk}").get_data(as_text=True)
    version = re.search(r'name="row_version"[^>]*value="(\d+)"', edit) or re.search(
        r'value="(\d+)"[^>]*name="row_version"', edit
    )
    changed = dict(form, csrf_token=csrf_token(edit), row_version=version.group(1))
    changed[named] = f"{form[named]} изменено"
    assert admin_client.post(f"/t/{slug}/edit/{pk}", data=changed).status_code == 302
    assert "изменено" in admin_client.get(f"/t/{slug}/show/{pk}").get_data(as_text=True).lower()

    # Delete: to the recycle bin, gone from the list, kept in history.
    page = admin_client.get(f"/t/{slug}/show/{pk}").get_data(as_text=True)
    assert (
        admin_client.post(f"/t/{slug}/delete/{pk}", data={"csrf_token": csrf_token(page)}).status_code == 302
    )
    assert row(slug, pk).deleted_at is not None
    assert admin_client.get(f"/t/{slug}/show/{pk}").status_code == 404
    entity = runtime.current().entity(slug)
    actions = set(
        db.session.scalars(
            select(RecordChange.action).where(
                RecordChange.entity_id == entity.id, RecordChange.record_id == pk
            )
        )
    )
    assert {"create", "update", "delete"} <= actions


REFUSALS = [
    ("companies", {"name": ""}, "This field is required"),
    ("contacts", {"first_name": "Анна", "email": "не-почта"}, "Expected an e-mail address"),
    ("stages", {"name": "Двойная", "is_won": "y", "is_lost": "y"}, "cannot be both won and lost"),
    ("stages", {"name": "Сверх", "probability": "150"}, "between 0 and 100"),
    ("deals", {"title": "Без этапа"}, "This field is required"),
    ("deal_lines", {"description": "Ноль", "quantity": "0"}, "more than zero"),
    ("activities", {"kind": "телепатия"}, "is not one of the options"),
    ("invoices", {"number": "СЧ-неверный", "amount": "много"}, "Expected a number"),
]


@pytest.mark.parametrize(("slug", "values", "message"), REFUSALS)
def test_refused_values_are_explained_and_save_nothing(slug, values, message, book, admin_client) -> None:  # noqa: ANN001
    if slug == "stages":
        values = {**values, "pipeline_id": str(book["pipeline"])}
    if slug == "deal_lines":
        values = {**values, "deal_id": str(book["deal"])}
    before = newest(slug)
    page = admin_client.get(f"/t/{slug}/add").get_data(as_text=True)
    response = admin_client.post(f"/t/{slug}/add", data={"csrf_token": csrf_token(page), **values})
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    assert newest(slug) == before


def test_deal_amount_follows_its_lines(book) -> None:  # noqa: ANN001
    admin = actor("admin")
    deal = book["deal"]
    first = records.create(
        "deal_lines", {"deal_id": deal, "product_id": book["product"], "quantity": "10"}, admin
    )
    assert row("deal_lines", first.id).price == Decimal("12.50")  # from the product
    assert row("deal_lines", first.id).total == Decimal("125.00")
    records.create("deal_lines", {"deal_id": deal, "quantity": "3", "price": "100", "discount": "10"}, admin)
    assert row("deals", deal).amount == Decimal("395.00")  # 125 + 270
    records.update("deal_lines", first.id, {"quantity": "2"}, admin, expected_version=1)
    assert row("deals", deal).amount == Decimal("295.00")
    records.delete("deal_lines", first.id, admin)
    assert row("deals", deal).amount == Decimal("270.00")
    # The amount of a deal with lines is theirs; typing another is refused, nothing changes.
    with pytest.raises(records.RecordInvalid) as refused:
        records.update("deals", deal, {"amount": "1"}, admin, expected_version=None)
    assert "amount" in refused.value.errors and row("deals", deal).amount == Decimal("270.00")
    # The deal's history names who changed the amount, in the same change set as the line.
    entity = runtime.current().entity("deals")
    amount_field = entity.field_by_name("amount")
    lines = [c for c in history.lines(entity.id, deal) if c.field_id == amount_field.id]
    assert [c.new_value for c in lines][-1] == "270.00" and all(c.user_id == admin.user_id for c in lines)


def test_stage_moves_set_probability_pipeline_and_closing(book) -> None:  # noqa: ANN001
    admin = actor("admin")
    deal = book["deal"]
    assert row("deals", deal).probability == Decimal("10.00")
    assert row("deals", deal).pipeline_id == book["pipeline"]
    version = row("deals", deal).row_version
    records.update("deals", deal, {"stage_id": book["won"]}, admin, expected_version=version)
    won = row("deals", deal)
    assert won.probability == Decimal("100.00") and won.closed_at is not None and won.won is True
    records.update(
        "deals", deal, {"stage_id": book["open"], "probability": "35"}, admin, expected_version=None
    )
    reopened = row("deals", deal)
    assert reopened.closed_at is None and reopened.probability == Decimal("35.00")  # typed beats the stage
    assert reopened.won is False


def test_the_furthest_stage_reached_follows_stage_moves(book) -> None:  # noqa: ANN001
    """Forward moves advance it, a move back keeps it, a lost stage is no progress (the deal keeps where it
    was lost after), a won stage is past every open one whatever its order, another pipeline starts over,
    and nobody sets it by hand."""
    admin = actor("admin")
    second = records.create(
        "stages", {"name": "Переговоры", "pipeline_id": book["pipeline"], "position": 5}, admin
    ).id  # ordered after the won stage (2): still before it
    deal = book["deal"]
    assert row("deals", deal).reached_stage_id == book["open"]

    def move(stage: int) -> int | None:
        records.update("deals", deal, {"stage_id": stage}, admin, expected_version=None)
        return row("deals", deal).reached_stage_id

    assert move(second) == second
    assert move(book["open"]) == second  # back: the furthest stays
    assert move(book["lost"]) == second  # lost after "Переговоры"
    assert move(book["won"]) == book["won"]  # reopened and won: past every open stage
    assert move(second) == book["won"]
    other = records.create("pipelines", {"name": f"Другая {book['tag']}"}, admin).id
    elsewhere = records.create("stages", {"name": "Начало", "pipeline_id": other, "position": 9}, admin).id
    assert move(elsewhere) == elsewhere  # another pipeline starts over
    lost_at_once = records.create("deals", {"title": "Сразу проиграна", "stage_id": book["lost"]}, admin).id
    assert row("deals", lost_at_once).reached_stage_id is None  # never at an open stage
    with pytest.raises(records.RecordError):
        records.update("deals", deal, {"reached_stage_id": book["open"]}, admin, expected_version=None)
    assert row("deals", deal).reached_stage_id == elsewhere


def test_deals_follow_their_stage_marked_won_or_lost(book) -> None:  # noqa: ANN001
    """An admin marks the deal's stage won: the deal is won and closed, in the same change set; then lost:
    closed, not won; then neither: open again. Deals at other stages are untouched."""
    admin = actor("admin")
    deal, other = book["deal"], records.create("deals", {"title": "Рядом", "stage_id": book["won"]}, admin).id
    other_version = row("deals", other).row_version
    records.update("stages", book["open"], {"is_won": True}, admin, expected_version=None)
    won = row("deals", deal)
    assert won.won is True and won.closed_at is not None
    entity = runtime.current().entity("deals")
    [stage_edit] = [c for c in history.lines(runtime.current().entity("stages").id, book["open"])][-1:]
    deal_lines = [c for c in history.lines(entity.id, deal) if c.field_id == entity.field_by_name("won").id]
    assert deal_lines[-1].changeset == stage_edit.changeset and deal_lines[-1].new_value in ("true", True)
    records.update("stages", book["open"], {"is_won": False, "is_lost": True}, admin, expected_version=None)
    lost = row("deals", deal)
    assert lost.won is False and lost.closed_at is not None
    records.update("stages", book["open"], {"is_lost": False}, admin, expected_version=None)
    reopened = row("deals", deal)
    assert reopened.won is False and reopened.closed_at is None
    assert row("deals", other).row_version == other_version


def test_the_weighted_amount_follows_amount_probability_and_lines(book) -> None:  # noqa: ANN001
    """amount × probability / 100, half up to the cent, kept on every way the two change; unknown when
    either is; what the forecast adds up."""
    admin = actor("admin")
    deal = book["deal"]  # at the "open" stage: 10 %
    assert row("deals", deal).weighted_amount is None  # no amount yet
    records.update("deals", deal, {"amount": "1000.05"}, admin, expected_version=None)
    assert row("deals", deal).weighted_amount == Decimal("100.01")  # 100.005 half up
    records.update("deals", deal, {"probability": "50"}, admin, expected_version=None)
    assert row("deals", deal).weighted_amount == Decimal("500.03")  # 500.025 half up
    records.update("deals", deal, {"stage_id": book["won"]}, admin, expected_version=None)
    assert row("deals", deal).weighted_amount == Decimal("1000.05")  # the won stage's 100 %
    records.update("deals", deal, {"probability": ""}, admin, expected_version=None)
    assert row("deals", deal).weighted_amount is None
    records.update("deals", deal, {"probability": "20"}, admin, expected_version=None)
    records.create("deal_lines", {"deal_id": deal, "quantity": "3", "price": "100"}, admin)
    assert row("deals", deal).amount == Decimal("300.00")
    assert row("deals", deal).weighted_amount == Decimal("60.00")  # the lines' amount, weighted
    # A line's total rounds half up too: 1 × 0.05 less 50 % is 0.025, so 0.03.
    half = records.create(
        "deal_lines", {"deal_id": deal, "quantity": "1", "price": "0.05", "discount": "50"}, admin
    )
    assert row("deal_lines", half.id).total == Decimal("0.03")
    records.delete("deal_lines", half.id, admin)
    field = runtime.current().entity("deals").field_by_name("weighted_amount")
    with pytest.raises(records.RecordInvalid):  # filled in by the write path, never typed
        records.update("deals", deal, {"weighted_amount": "1"}, admin, expected_version=None)
    assert field.settings.get("auto") and row("deals", deal).weighted_amount == Decimal("60.00")


def test_a_companys_last_activity_follows_its_live_activities(app_ctx) -> None:  # noqa: ANN001
    """The newest occurred_at of its live activities, on every way they change (new, older, newer, moved to
    another company, deleted, restored); the company's version and history stay as they were."""
    admin = actor("admin")
    t = tag()
    first = records.create("companies", {"name": f"Тихая {t}"}, admin)
    second = records.create("companies", {"name": f"Другая {t}"}, admin)
    assert row("companies", first.id).last_activity_at is None
    zone = local_timezone()

    def at(day: int) -> str:
        return dt.datetime(2026, 11, day, 10, 30, tzinfo=zone).isoformat()

    def last(pk: int) -> dt.datetime | None:
        value = row("companies", pk).last_activity_at
        return value.replace(tzinfo=value.tzinfo or dt.UTC) if value else None

    call = records.create(
        "activities", {"subject": "Звонок", "company_id": first.id, "occurred_at": at(10)}, admin
    )
    assert last(first.id) == dt.datetime.fromisoformat(at(10))
    records.create("activities", {"subject": "Старое", "company_id": first.id, "occurred_at": at(2)}, admin)
    assert last(first.id) == dt.datetime.fromisoformat(at(10))  # an older one changes nothing
    newer = records.create(
        "activities", {"subject": "Встреча", "company_id": first.id, "occurred_at": at(20)}, admin
    )
    assert last(first.id) == dt.datetime.fromisoformat(at(20))
    records.update("activities", newer.id, {"company_id": second.id}, admin, expected_version=None)
    assert last(first.id) == dt.datetime.fromisoformat(at(10)) and last(
        second.id
    ) == dt.datetime.fromisoformat(at(20))
    records.delete("activities", call.id, admin)
    assert last(first.id) == dt.datetime.fromisoformat(at(2))
    records.restore("activities", call.id, admin)
    assert last(first.id) == dt.datetime.fromisoformat(at(10))
    records.delete("activities", newer.id, admin)
    assert last(second.id) is None  # no live activity left: never
    company = row("companies", first.id)
    assert company.row_version == 1  # nobody's change of the company: no version, no history
    entity = runtime.current().entity("companies")
    assert all(
        c.field_id != entity.field_by_name("last_activity_at").id for c in history.lines(entity.id, first.id)
    )


def test_a_leads_first_response_follows_its_outbound_activities(app_ctx) -> None:  # noqa: ANN001
    """The earliest live outbound call, letter, meeting or SMS with the lead (a failed attempt counts; a
    note, an inbound call or a complaint does not) and the hours from the lead's arrival to it, on every way
    they change; the lead's version stays as it was."""
    admin = actor("admin")
    t = tag()
    lead = records.create("leads", {"title": f"Заявка {t}"}, admin)
    other = records.create("leads", {"title": f"Другая {t}"}, admin)
    arrived = row("leads", lead.id).created_at
    arrived = arrived.replace(tzinfo=arrived.tzinfo or dt.UTC)

    def after(minutes: int) -> str:
        return (arrived + dt.timedelta(minutes=minutes)).isoformat()

    def response(pk: int) -> tuple[dt.datetime | None, Decimal | None]:
        found = row("leads", pk)
        at = found.first_response_at
        return (at.replace(tzinfo=at.tzinfo or dt.UTC) if at else None), found.response_hours

    for kind, direction in (("note", None), ("call", "inbound"), ("complaint", "inbound")):
        values = {
            "subject": kind,
            "kind": kind,
            "direction": direction,
            "lead_id": lead.id,
            "occurred_at": after(5),
        }
        records.create("activities", values, admin)
    assert response(lead.id) == (None, None)
    call = records.create(
        "activities",
        {"kind": "call", "direction": "outbound", "outcome": "no_answer", "lead_id": lead.id,
         "occurred_at": after(125)},
        admin,
    )  # fmt: skip
    assert response(lead.id) == (arrived + dt.timedelta(minutes=125), Decimal("2.1"))  # 2.083 h
    letter = records.create(
        "activities",
        {"kind": "email", "direction": "outbound", "lead_id": lead.id, "occurred_at": after(45)},
        admin,
    )
    assert response(lead.id) == (arrived + dt.timedelta(minutes=45), Decimal("0.8"))  # 0.75 half up
    records.update("activities", letter.id, {"lead_id": other.id}, admin, expected_version=None)
    assert response(lead.id)[1] == Decimal("2.1")
    assert response(other.id)[0] == arrived + dt.timedelta(minutes=45)  # the other lead came a moment later
    assert response(other.id)[1] in (Decimal("0.7"), Decimal("0.8"))
    records.delete("activities", call.id, admin)
    assert response(lead.id) == (None, None)
    records.restore("activities", call.id, admin)
    assert response(lead.id)[1] == Decimal("2.1")
    early = records.create(
        "activities",
        {"kind": "sms", "direction": "outbound", "lead_id": lead.id, "occurred_at": after(-60)},
        admin,
    )
    assert response(lead.id) == (arrived - dt.timedelta(minutes=60), Decimal("0.0"))  # before arrival: none
    records.delete("activities", early.id, admin)
    assert row("leads", lead.id).row_version == 1  # nobody's change of the lead


def test_a_complaints_time_to_resolve(app_ctx) -> None:  # noqa: ANN001
    """Resolved (or rejected) stamps when, and the days from the complaint to it; resolved then rejected
    keeps the first stamp; reopened clears both; other activities have none."""
    admin = actor("admin")
    came = dt.datetime.now(dt.UTC) - dt.timedelta(days=2, hours=3)
    complaint = records.create(
        "activities",
        {"kind": "complaint", "direction": "inbound", "subject": "Брак", "occurred_at": came.isoformat()},
        admin,
    ).id
    assert (
        row("activities", complaint).resolution == "open" and row("activities", complaint).resolved_at is None
    )
    records.update("activities", complaint, {"resolution": "resolved"}, admin, expected_version=None)
    settled = row("activities", complaint)
    stamped = settled.resolved_at.replace(tzinfo=settled.resolved_at.tzinfo or dt.UTC)
    assert abs(stamped - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert settled.resolution_days == Decimal("2.1")  # 2 days 3 hours
    records.update("activities", complaint, {"resolution": "rejected"}, admin, expected_version=None)
    assert row("activities", complaint).resolved_at == settled.resolved_at
    records.update("activities", complaint, {"resolution": "in_progress"}, admin, expected_version=None)
    reopened = row("activities", complaint)
    assert reopened.resolved_at is None and reopened.resolution_days is None
    call = records.create("activities", {"kind": "call", "resolution": "resolved"}, admin).id
    assert row("activities", call).resolved_at is None


def test_invoices_balance_status_and_days_overdue(app_ctx) -> None:  # noqa: ANN001
    admin = actor("admin")
    t = tag()
    today = derive.today()
    late = records.create(
        "invoices",
        {
            "number": f"П-{t}",
            "amount": "1000",
            "due_on": (today - dt.timedelta(days=12)).isoformat(),
            "paid_amount": "400",
        },
        admin,
    ).id
    invoice = row("invoices", late)
    assert (invoice.status, invoice.balance, invoice.overdue_days) == ("partly_paid", Decimal("600.00"), 12)
    assert invoice.paid_on is None
    records.update("invoices", late, {"paid_amount": "1000"}, admin, expected_version=None)
    invoice = row("invoices", late)
    assert (invoice.status, invoice.balance, invoice.overdue_days) == ("paid", Decimal("0.00"), 0)
    assert invoice.paid_on == today  # the day it was paid in full
    # A payment day given by hand stays; an invoice that is no longer paid has none.
    three_days_ago = (today - dt.timedelta(days=3)).isoformat()
    records.update("invoices", late, {"paid_on": three_days_ago}, admin, expected_version=None)
    assert row("invoices", late).paid_on == today - dt.timedelta(days=3)
    records.update("invoices", late, {"paid_amount": "900"}, admin, expected_version=None)
    assert (row("invoices", late).status, row("invoices", late).paid_on) == ("partly_paid", None)
    records.update("invoices", late, {"paid_amount": "1000"}, admin, expected_version=None)
    assert row("invoices", late).paid_on == today
    due_today = records.create(
        "invoices", {"number": f"С-{t}", "amount": "10", "due_on": today.isoformat()}, admin
    ).id
    assert row("invoices", due_today).overdue_days == 0
    # Tomorrow it is one day overdue: the nightly recount sees that without anyone editing it.
    assert derive.refresh_overdue(today + dt.timedelta(days=1)) >= 1
    assert row("invoices", due_today).overdue_days == 1
    derive.refresh_overdue(today)
    assert row("invoices", due_today).overdue_days == 0


def test_nightly_overdue_job_runs_on_a_real_worker(app, worker) -> None:  # noqa: ANN001
    from jobs.crm import scheduled_overdue
    from jobs.queues import get_queue

    with app.app_context():
        t = tag()
        pk = records.create(
            "invoices", {"number": f"Н-{t}", "amount": "10", "due_on": "2020-01-01"}, actor("admin")
        ).id
        table = runtime.current().classes["invoices"].__table__
        db.session.execute(table.update().where(table.c.id == pk).values(overdue_days=0))  # as if yesterday
        db.session.commit()
        last_run = db.session.scalar(select(JobRun.id).order_by(JobRun.id.desc())) or 0
        get_queue().enqueue(scheduled_overdue)  # what `tabula cron` enqueues at 00:05
        deadline = time.monotonic() + 30
        run = None
        while time.monotonic() < deadline:
            db.session.expire_all()
            run = db.session.scalar(
                select(JobRun).where(JobRun.id > last_run, JobRun.kind == "refresh_overdue_invoices")
            )
            if run is not None and run.status in (JobStatus.finished, JobStatus.failed):
                break
            time.sleep(0.2)
        assert run is not None and run.status == JobStatus.finished
        assert row("invoices", pk).overdue_days == (derive.today() - dt.date(2020, 1, 1)).days


def test_contacts_tasks_activities_fill_in_what_follows(book) -> None:  # noqa: ANN001
    staff = actor("staff1")
    contact = records.create(
        "contacts",
        {"first_name": "Мария", "middle_name": "Ивановна", "last_name": "Петрова", "email_consent": True},
        staff,
    ).id
    person = row("contacts", contact)
    assert person.full_name == "Мария Ивановна Петрова" and person.email_consent_at is not None
    assert person.owner_id == staff.user_id
    task = records.create("tasks", {"title": "Отправить КП", "status": "open"}, staff).id
    assert row("tasks", task).assignee_id == staff.user_id and row("tasks", task).completed_at is None
    records.update("tasks", task, {"status": "done"}, staff, expected_version=1)
    assert row("tasks", task).completed_at is not None
    call = records.create(
        "activities", {"kind": "complaint", "contact_id": book["contact"]}, actor("admin")
    ).id
    logged = row("activities", call)
    assert (
        logged.company_id == book["company"]
        and logged.resolution == "open"
        and logged.occurred_at is not None
    )
