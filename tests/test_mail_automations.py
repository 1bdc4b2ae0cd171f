"""Automatic mailings against a real SMTP server: one overdue-invoice reminder per step and one birthday
greeting and task reminder per occasion, however often the scheduler fires."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import select

from app.crm import mail_audience
from app.extensions import db
from custom_fields import records
from jobs import mail_automations, mailings
from models import MailAutomationLog
from tests.mail_helpers import admin, make_contacts
from tests.test_mailings import smtp  # noqa: F401 (the fixture)


def _switch_on(kind: str, subject: str, html: str, **days: str) -> None:
    actor = admin()
    template = mailings.save_template(actor, {"name": f"Авто {uuid.uuid4().hex[:6]}", "subject": subject,
                                              "html": html})  # fmt: skip
    mail_automations.configure(kind, actor, {"enabled": "on", "template_id": str(template.id), **days})


def test_overdue_invoice_reminders_go_once_per_step_even_when_the_scheduler_fires_twice(smtp) -> None:  # noqa: ANN001, F811
    actor = admin()
    address = f"billing-{uuid.uuid4().hex[:6]}@example.com"
    company = records.create("companies", {"name": "ООО «Должник»", "email": address}, actor).id
    today = dt.date.today()
    number = f"СЧ-{uuid.uuid4().hex[:6]}"
    invoice = records.create(
        "invoices",
        {"number": number, "company_id": company, "amount": "1500", "status": "issued",
         "due_on": (today - dt.timedelta(days=10)).isoformat()},
        actor,
    ).id  # fmt: skip
    _switch_on(
        "overdue_invoice",
        "Счёт {{ invoice.number }} просрочен на {{ invoice.days_overdue }} дн.",
        "<p>{{ company.name }}, долг {{ invoice.balance }}.</p>",
        first_after_days="3",
        every_days="7",
    )
    for _fired in range(2):
        mail_automations.run("overdue_invoice", today=today)
    mine = [m for m in smtp.parsed() if address in m["To"]]
    assert len(mine) == 1
    assert mine[0]["Subject"] == f"Счёт {number} просрочен на 10 дн."
    assert "ООО «Должник», долг 1" in mine[0].get_payload()[1].get_content()
    # a week later: the next step, once
    for _fired in range(2):
        mail_automations.run("overdue_invoice", today=today + dt.timedelta(days=7))
    assert len([m for m in smtp.parsed() if address in m["To"]]) == 2
    logged = select(MailAutomationLog.step).where(MailAutomationLog.record_id == invoice)
    steps = db.session.scalars(logged.where(MailAutomationLog.state == "sent")).all()
    assert sorted(steps) == ["2", "3"]
    # paid: no more reminders
    records.update("invoices", invoice, {"paid_amount": "1500"}, actor, expected_version=None)
    mail_automations.run("overdue_invoice", today=today + dt.timedelta(days=14))
    assert len([m for m in smtp.parsed() if address in m["To"]]) == 2


def test_birthdays_and_task_reminders_go_once(smtp, app_ctx) -> None:  # noqa: ANN001, F811
    from zoneinfo import ZoneInfo

    actor = admin()
    today = dt.datetime.now(ZoneInfo(app_ctx.config["BABEL_DEFAULT_TIMEZONE"])).date()
    born = today.replace(year=1990) if (today.month, today.day) != (2, 29) else dt.date(1992, 2, 29)
    happy, quiet = f"bd-{uuid.uuid4().hex[:6]}@example.com", f"bd-{uuid.uuid4().hex[:6]}@example.com"
    make_contacts(actor, [
        {"first_name": "Ольга", "email": happy, "birthday": born.isoformat()},
        {"first_name": "Пётр", "email": quiet, "birthday": born.isoformat()},
    ])  # fmt: skip
    mail_audience.opt_out(quiet, "link", None)
    _switch_on("birthday", "С днём рождения, {{ contact.first_name }}!", "<p>Поздравляем!</p>")
    assert mail_automations.run("birthday") >= 1
    assert mail_automations.run("birthday") == 0
    delivered = smtp.delivered()
    assert delivered[happy] == 1 and quiet not in delivered

    user = app_ctx.appbuilder.sm.find_user(username="admin")
    now = dt.datetime.now(dt.UTC)
    records.create(
        "tasks",
        {"title": f"Позвонить {uuid.uuid4().hex[:4]}", "assignee_id": user.id,
         "reminder_at": (now - dt.timedelta(minutes=1)).isoformat()},
        actor,
    )  # fmt: skip
    _switch_on("task_reminder", "Напоминание: {{ task.title }}", "<p>{{ owner.name }}, пора.</p>")
    before = smtp.delivered()[user.email]
    mail_automations.run("task_reminder", now=now)
    mail_automations.run("task_reminder", now=now)
    assert smtp.delivered()[user.email] == before + 1


def test_only_admins_configure_automatic_mailings(app_ctx, staff_client) -> None:  # noqa: ANN001
    from custom_fields.access import Actor
    from custom_fields.query import QueryDenied

    staff = Actor.for_user_id(app_ctx.appbuilder.sm.find_user(username="staff1").id)
    with pytest.raises(QueryDenied):
        mail_automations.configure("birthday", staff, {"enabled": "on"})
    found = mail_automations.automation("birthday")
    before = (found.enabled, found.template_id)
    from tests.conftest import csrf_token

    token = csrf_token(staff_client.get("/mailings/").get_data(as_text=True))
    answer = staff_client.post("/mailings/automations/birthday", data={"enabled": "", "csrf_token": token})
    assert answer.status_code == 403
    db.session.expire_all()
    found = mail_automations.automation("birthday")
    assert (found.enabled, found.template_id) == before
