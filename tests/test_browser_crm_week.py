"""The core CRM issue's "done when", in real chromium: a manager and two staff users, signed in at the same
time in their own browsers, run a week of sales work. Leads come in and are converted, a deal moves
through the funnel on the board, calls and a complaint are logged, tasks are set and done, an invoice goes
overdue; each staff user sees only their own book while the manager sees their team's (both staff)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from flask_appbuilder.security.sqla.models import User
from sqlalchemy import select

from app.extensions import db
from custom_fields import records, runtime
from custom_fields.access import Actor
from models import Team
from tests.conftest import DEMO_PASSWORD
from tests.test_browser_tables import sign_in

pytestmark = pytest.mark.browser


def user_id(username: str) -> int:
    return db.session.scalar(select(User.id).where(User.username == username))


def newest(slug: str, **where: Any) -> Any:
    db.session.expire_all()
    model = runtime.current().classes[slug]
    query = select(model).where(*(getattr(model, k) == v for k, v in where.items())).order_by(model.id.desc())
    return db.session.scalars(query).first()


def submit(page: Any) -> None:
    page.click("form#model_form button[type=submit], form[method=post] button[type=submit]")


def move(page: Any, card: str, stage_id: int) -> None:
    """Drag a card to a stage and wait for the server's answer (the card moves at once; its version changes
    only when the move was saved)."""
    before = page.get_attribute(card, "data-version")
    page.drag_and_drop(card, f"[data-stage-id='{stage_id}'] .board-cards")
    # A selector, not wait_for_function: the Content-Security-Policy refuses the eval that needs.
    page.wait_for_selector(f"{card}:not([data-version='{before}'])", timeout=15000)
    page.wait_for_selector(f"[data-stage-id='{stage_id}'] {card}")


def test_a_week_of_sales_work(app, app_ctx, browser, live_url, tmp_path) -> None:  # noqa: ANN001
    t = uuid.uuid4().hex[:6]
    # The demo book puts the manager and both staff users in one team.
    team = db.session.scalar(select(Team).where(Team.members.any(User.username == "staff1")))
    assert team is not None and {"manager", "staff2"} <= {u.username for u in team.members}
    admin = Actor.system_job()
    pipeline = records.create("pipelines", {"name": f"Неделя {t}", "position": 0}, admin).id
    first, second, won = (
        s.id
        for s in records.create_many(
            "stages",
            [
                {"name": "Первичный контакт", "pipeline_id": pipeline, "position": 1, "probability": "10"},
                {
                    "name": "Коммерческое предложение",
                    "pipeline_id": pipeline,
                    "position": 2,
                    "probability": "50",
                },
                {
                    "name": "Успешно",
                    "pipeline_id": pipeline,
                    "position": 3,
                    "probability": "100",
                    "is_won": True,
                },
            ],
            admin,
        )
    )

    pages = {}
    for name in ("manager", "staff1", "staff2"):
        context = browser.new_context(locale="ru-RU")
        pages[name] = context.new_page()
        sign_in(pages[name], live_url, name, DEMO_PASSWORD)
    staff1, staff2, manager = pages["staff1"], pages["staff2"], pages["manager"]

    # Monday: a lead comes in from the website; staff1 records and converts it.
    staff1.goto(f"{live_url}/t/leads/add")
    staff1.fill("input[name=title]", f"Запрос КП на кирпич {t}")
    staff1.fill("input[name=contact_name]", "Орлова Елена Викторовна")
    staff1.fill("input[name=company_name]", f"ООО «Стройдвор {t}»")
    staff1.fill("input[name=email]", f"orlova-{t}@stroydvor.ru")
    staff1.fill("input[name=phone]", "8 (916) 555-12-34")
    submit(staff1)
    lead = newest("leads", title=f"Запрос КП на кирпич {t}")
    assert lead is not None and lead.owner_id == user_id("staff1")
    staff1.goto(f"{live_url}/t/leads/show/{lead.id}")
    staff1.click("a.tabula-record-action[href$='/convert']")
    staff1.select_option("select[name=stage_id]", str(first))
    staff1.fill("input[name=amount]", "250000")
    staff1.click("form[method=post] button[type=submit]")
    staff1.wait_for_url("**/t/deals/show/*")
    deal = newest("deals", company_id=newest("leads", id=lead.id).company_id)
    contact = newest("contacts", id=deal.contact_id)
    assert contact.full_name == "Елена Викторовна Орлова" and deal.stage_id == first
    company_id = deal.company_id

    # Tuesday: staff1 calls (no answer), sets a task for yesterday (it is overdue), then calls again.
    staff1.goto(f"{live_url}/t/companies/show/{company_id}")
    staff1.fill("#quick-call input[name=subject]", f"Первый звонок {t}")
    staff1.select_option("#quick-call select[name=outcome]", "no_answer")
    staff1.click("#quick-call button[type=submit]")
    staff1.fill("#quick-task input[name=title]", f"Перезвонить Орловой {t}")
    yesterday = (dt.datetime.now() - dt.timedelta(days=1)).strftime("%Y-%m-%dT10:00")
    staff1.fill("#quick-task input[name=due_at]", yesterday)
    staff1.click("#quick-task button[type=submit]")
    calls = newest("activities", company_id=company_id, outcome="no_answer")
    assert calls is not None and calls.subject == f"Первый звонок {t}" and calls.owner_id == user_id("staff1")
    staff1.goto(f"{live_url}/my-tasks/")
    overdue = staff1.locator(".overdue", has_text=f"Перезвонить Орловой {t}")
    assert overdue.count() == 1
    overdue.locator("button[type=submit]").click()
    task = newest("tasks", title=f"Перезвонить Орловой {t}")
    assert task.status == "done" and task.completed_at is not None

    # Wednesday: the deal moves to the proposal stage on the board.
    staff1.goto(f"{live_url}/board/{pipeline}")
    card = f"[data-deal-id='{deal.id}']"
    move(staff1, card, second)
    assert newest("deals", id=deal.id).stage_id == second

    # Meanwhile staff2 works their own customer: a company, a complaint, an invoice that goes overdue.
    staff2.goto(f"{live_url}/t/companies/add")
    staff2.fill("input[name=name]", f"АО «Северный ветер {t}»")
    staff2.fill("input[name=tax_id]", "7707083893")
    submit(staff2)
    theirs = newest("companies", name=f"АО «Северный ветер {t}»")
    assert theirs is not None and theirs.owner_id == user_id("staff2")
    staff2.goto(f"{live_url}/t/activities/add?company_id={theirs.id}&kind=complaint")
    staff2.fill("input[name=subject]", f"Задержка поставки {t}")
    staff2.select_option("select[name=complaint_category]", "delivery")
    submit(staff2)
    complaint = newest("activities", subject=f"Задержка поставки {t}")
    assert (
        complaint.kind == "complaint" and complaint.company_id == theirs.id and complaint.resolution == "open"
    )
    staff2.goto(f"{live_url}/t/invoices/add?company_id={theirs.id}")
    staff2.fill("input[name=number]", f"СЧ-{t}")
    staff2.fill("input[name=amount]", "120 000,00")
    staff2.fill("input[name=due_on]", (dt.date.today() - dt.timedelta(days=5)).isoformat())
    submit(staff2)
    invoice = newest("invoices", number=f"СЧ-{t}")
    assert invoice.overdue_days >= 4 and invoice.balance == invoice.amount
    staff2.goto(f"{live_url}/t/invoices/show/{invoice.id}")
    assert str(invoice.overdue_days) in staff2.inner_text("body")

    # Each staff user sees only their own book; the manager sees both.
    staff2.goto(f"{live_url}/t/companies/show/{company_id}")
    assert "404" in staff2.title() or "Not Found" in staff2.content() or staff2.locator("text=404").count()
    staff2.goto(f"{live_url}/board/{pipeline}")
    assert staff2.locator(card).count() == 0
    staff1.goto(f"{live_url}/t/companies/list/?_flt_0_name=Северный ветер {t}")
    assert f"Северный ветер {t}" not in staff1.inner_text("body")
    manager.goto(f"{live_url}/board/{pipeline}")
    assert manager.locator(card).count() == 1
    for name in (f"Стройдвор {t}", f"Северный ветер {t}"):
        manager.goto(f"{live_url}/t/companies/list/?_flt_0_name={name}")
        assert name in manager.inner_text("body")

    # Friday: the manager closes the deal as won; staff1 sees it, with the whole story on the deal's page.
    manager.goto(f"{live_url}/board/{pipeline}")
    move(manager, card, won)
    closed = newest("deals", id=deal.id)
    assert closed.stage_id == won and closed.closed_at is not None and closed.probability == 100
    staff1.goto(f"{live_url}/t/companies/show/{company_id}")
    timeline = staff1.inner_text("body")
    assert f"Первый звонок {t}" in timeline and f"Перезвонить Орловой {t}" in timeline
    staff1.screenshot(path=str(tmp_path / "company.png"))
