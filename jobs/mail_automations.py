"""Automatic mailings, run by RQ's scheduler (``tabula cron``): birthday greetings (daily, in
``TABULA_TIMEZONE``), overdue-invoice reminders (``first_after_days`` after the due date, then every
``every_days`` until paid, to the company's e-mail, logged in the company's history) and task reminders (to
the assignee at the task's reminder time).

Exactly once per occasion: a log row per (automation, record, step) under a unique constraint is committed
as ``sending`` before the message goes out; a second run (the scheduler firing twice, two workers) cannot
insert it again and sends nothing. Opted-out addresses are skipped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from flask_appbuilder.security.sqla.models import User
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.crm import mail_audience, mail_render
from app.extensions import db
from custom_fields import records
from custom_fields.access import Actor, is_admin
from custom_fields.query import QueryDenied, QueryError, TableQuery
from custom_fields.records import RecordError
from jobs import mail_sender
from jobs.runtime import app_job, report_progress, worker_app
from models import JobRun, MailAutomation, MailAutomationLog, MailTemplate
from models.mailings import AUTOMATION_KINDS
from models.system import utcnow

DAILY_SCHEDULE = "0 6 * * *"  # birthdays and invoices, daily at 06:00 (the scheduler's clock, UTC)
TASK_SCHEDULE = "*/5 * * * *"  # task reminders, every five minutes
DAILY_KINDS = ("birthday", "overdue_invoice")
#: A task reminder older than this is not sent any more (the scheduler was down).
TASK_LATENESS = dt.timedelta(days=1)


@dataclass(frozen=True)
class Occasion:
    record_id: int
    step: str
    email: str
    values: dict[str, dict[str, Any]]
    activity: dict[str, Any] | None  # what goes into the history, when something does


def automation(kind: str) -> MailAutomation:
    """The automation of ``kind`` (made, switched off, on first use)."""
    if kind not in AUTOMATION_KINDS:
        raise QueryError(_("Not found."))
    found = db.session.scalar(select(MailAutomation).where(MailAutomation.kind == kind))
    if found is None:
        found = MailAutomation(kind=kind, enabled=False, first_after_days=3, every_days=7)
        db.session.add(found)
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            found = db.session.scalar(select(MailAutomation).where(MailAutomation.kind == kind))
    return found


def configure(kind: str, actor: Actor, values: dict[str, Any]) -> MailAutomation:
    """Admins switch an automation on or off and choose its template and days."""
    if not is_admin(actor):
        raise QueryDenied(_("Only admins configure automatic mailings."))
    found = automation(kind)
    enabled = str(values.get("enabled") or "") in ("1", "on", "true", "y")
    raw_template = str(values.get("template_id") or "")
    template = db.session.get(MailTemplate, int(raw_template)) if raw_template.isdecimal() and len(
        raw_template) < 12 else None  # fmt: skip
    if enabled and template is None:
        raise QueryError(_("Choose a template to switch it on."))
    days = []
    for name, default in (("first_after_days", found.first_after_days), ("every_days", found.every_days)):
        raw = str(values.get(name) or default)
        if not raw.isdecimal() or not 1 <= int(raw) <= 3650:
            raise QueryError(_("Days: a whole number from 1 to 3650."))
        days.append(int(raw))
    found.enabled, found.template_id, found.owner_id = (
        enabled,
        template.id if template else None,
        actor.user_id,
    )
    found.first_after_days, found.every_days = days
    db.session.commit()
    return found


def log_of(found: MailAutomation, limit: int = 50) -> list[MailAutomationLog]:
    statement = (
        select(MailAutomationLog)
        .where(MailAutomationLog.automation_id == found.id)
        .order_by(MailAutomationLog.id.desc())
        .limit(limit)
    )
    return list(db.session.scalars(statement))


# --- what is due ----------------------------------------------------------------------------------------


def _today() -> dt.date:
    return dt.datetime.now(ZoneInfo(current_app.config["BABEL_DEFAULT_TIMEZONE"])).date()


def _is_birthday(born: dt.date, today: dt.date) -> bool:
    if (born.month, born.day) == (today.month, today.day):
        return True
    leap_day = (born.month, born.day) == (2, 29)
    not_leap = today.year % 4 != 0 or (today.year % 100 == 0 and today.year % 400 != 0)
    return leap_day and not_leap and (today.month, today.day) == (2, 28)


def birthdays(actor: Actor, found: MailAutomation, today: dt.date) -> Iterator[Occasion]:
    query = mail_audience.mailing_query(actor).where({"field": "birthday", "op": "nempty"})
    for batch in query.fields("id", "birthday", "email", "email_consent").order_by("id").batches(2000):
        due = [r for r in batch if r["email_consent"] and r["email"] and _is_birthday(r["birthday"], today)]
        values = mail_render.merge_values(actor, [r["id"] for r in due])
        for row in due:
            if row["id"] in values:
                activity = {"contact_id": row["id"]}
                yield Occasion(row["id"], str(today.year), row["email"], values[row["id"]], activity)


def overdue_invoices(actor: Actor, found: MailAutomation, today: dt.date) -> Iterator[Occasion]:
    first, every = found.first_after_days, found.every_days
    invoices = TableQuery("invoices", actor)
    unpaid = [{"field": "status", "op": "neq", "value": s} for s in ("paid", "cancelled", "draft")]
    due = {"field": "due_on", "op": "le", "value": (today - dt.timedelta(days=first)).isoformat()}
    query = invoices.where([*unpaid, due])
    try:
        companies_query = TableQuery("companies", actor)
    except QueryError:
        return
    for batch in query.order_by("id").batches(1000):
        companies = companies_query.rows_of(r.get("company_id") for r in batch)
        for row in batch:
            company = companies.get(row.get("company_id"))
            if company is None or not company.get("email") or row.get("due_on") is None:
                continue
            overdue = (today - row["due_on"]).days
            step = (overdue - first) // every
            invoice = {**mail_render.shown(invoices, row), "days_overdue": str(overdue)}
            values = {"company": mail_render.shown(companies_query, company), "invoice": invoice}
            activity = {"company_id": company["id"], "deal_id": row.get("deal_id")}
            yield Occasion(row["id"], str(step + 1), company["email"], values, activity)


def task_reminders(actor: Actor, found: MailAutomation, now: dt.datetime) -> Iterator[Occasion]:
    tasks = TableQuery("tasks", actor)
    query = tasks.where([
        {"field": "reminder_at", "op": "le", "value": now.isoformat()},
        {"field": "reminder_at", "op": "ge", "value": (now - TASK_LATENESS).isoformat()},
        {"field": "status", "op": "neq", "value": "done"},
        {"field": "status", "op": "neq", "value": "cancelled"},
    ])  # fmt: skip
    for batch in query.order_by("id").batches(1000):
        assignees = {r.get("assignee_id") for r in batch} - {None}
        users = {u.id: u for u in db.session.scalars(select(User).where(User.id.in_(sorted(assignees))))}
        for row in batch:
            user = users.get(row.get("assignee_id"))
            if user is None or not user.email:
                continue
            name = " ".join(p for p in (user.first_name, user.last_name) if p) or user.username
            values = {"task": mail_render.shown(tasks, row), "owner": {"name": name, "email": user.email}}
            yield Occasion(row["id"], row["reminder_at"].isoformat()[:40], user.email, values, None)


DUE = {"birthday": birthdays, "overdue_invoice": overdue_invoices, "task_reminder": task_reminders}


# --- sending once -----------------------------------------------------------------------------------------


def _send_once(found: MailAutomation, template: MailTemplate, occasion: Occasion, actor: Actor) -> bool:
    """Sends the occasion's message unless a log row for it exists already; True when this call sent it."""
    email = mail_render.normalise_email(occasion.email)
    opted = mail_audience.is_opted_out(email)
    log = MailAutomationLog(
        automation_id=found.id, record_id=occasion.record_id, step=occasion.step, email=email[:320],
        state="skipped" if opted else "sending", reason="opted out" if opted else "",
    )  # fmt: skip
    db.session.add(log)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return False  # another run has (or had) this occasion
    if opted:
        return False
    unsubscribe = mail_render.unsubscribe_url(email, None)
    try:
        rendered = mail_render.render(
            template.subject, template.html, template.text, occasion.values, unsubscribe
        )
    except mail_render.TemplateError as exc:
        log.state, log.reason = "failed", str(exc)[:500]
        db.session.commit()
        return False
    digest = hashlib.sha256(f"{found.id}:{occasion.record_id}:{occasion.step}".encode()).hexdigest()[:16]
    sender = current_app.config["MAIL_FROM"]
    domain = mail_render.parseaddr_email(sender).rpartition("@")[2] or "localhost"
    message = mail_render.build_message(
        rendered, sender=sender, to_email=email, unsubscribe=unsubscribe,
        msg_id=f"<tabula.auto.{found.id}.{occasion.record_id}.{digest}@{domain}>",
    )  # fmt: skip
    link = mail_sender.SmtpLink(current_app.config)
    try:
        failure = mail_sender.deliver(link, message, mail_render.parseaddr_email(sender), email)
    finally:
        link.close()
    log.state, log.reason = ("sent", "") if failure is None else ("failed", failure.reason[:500])
    db.session.commit()
    if failure is None and occasion.activity is not None:
        _log_activity(occasion, rendered.subject, actor)
    return failure is None


def _log_activity(occasion: Occasion, subject: str, actor: Actor) -> None:
    links = {k: v for k, v in (occasion.activity or {}).items() if v is not None}
    values = {"kind": "email", "direction": "outbound", "outcome": "done", "occurred_at": utcnow(),
              "subject": subject[:255], **links}  # fmt: skip
    try:
        records.create("activities", values, actor)
    except RecordError as exc:
        db.session.rollback()
        current_app.logger.warning("automatic mailing: activity not written: %s", exc)


def run(kind: str, today: dt.date | None = None, now: dt.datetime | None = None) -> int:
    """Send what is due for the automation of ``kind``; returns how many this run sent."""
    found = automation(kind)
    template = db.session.get(MailTemplate, found.template_id) if found.template_id else None
    if not found.enabled or template is None or not current_app.config["SMTP_CONFIGURED"]:
        return 0
    actor = Actor.job_of(found.owner_id)
    when = now or dt.datetime.now(dt.UTC) if kind == "task_reminder" else today or _today()
    sent = 0
    for occasion in list(DUE[kind](actor, found, when)):
        sent += _send_once(found, template, occasion, actor)
    found.last_run_at = utcnow()
    db.session.commit()
    return sent


@app_job
def run_automations(run_row: JobRun, kinds: list[str]) -> dict:
    sent = {kind: run(kind) for kind in kinds}
    report_progress(run_row, sum(sent.values()), sum(sent.values()))
    return sent


def _scheduled(kinds: tuple[str, ...]) -> int:
    from jobs.queues import enqueue

    with worker_app().app_context():
        return enqueue("mail_automations", run_automations, list(kinds)).id


def scheduled_daily() -> int:
    """What the cron scheduler enqueues every morning: birthdays and overdue invoices."""
    return _scheduled(DAILY_KINDS)


def scheduled_tasks() -> int:
    """What the cron scheduler enqueues every five minutes: task reminders."""
    return _scheduled(("task_reminder",))
