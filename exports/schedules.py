"""Scheduled exports: a saved view (or a saved report, as its workbook) written to a file on a calendar and
e-mailed to chosen users.

The calendar is local time of ``TABULA_TIMEZONE`` (daily; weekly on chosen weekdays; monthly on a day, the
month's last day when it is shorter). ``tabula cron`` calls ``dispatch`` every ``TABULA_SCHEDULE_SECONDS``:
each due schedule gets one run for its latest slot (after downtime the missed slots are one run, not one
each; the unique (schedule, slot) makes a second scheduler a no-op) and a job that exports the view as its
owner and mails it. An owner who lost the right to export the table, or to open the view, stops the
schedule and gets a message saying so. Files above ``TABULA_EXPORT_ATTACH_MB`` are linked, not attached;
the link opens for the recipients only (after signing in).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from dateutil import rrule
from flask import current_app
from flask_appbuilder.security.sqla.models import User
from flask_babel import force_locale
from flask_babel import gettext as _
from markupsafe import escape
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.mailer import MailError, deliver, new_message
from custom_fields import runtime, saved_views
from custom_fields.access import Actor
from custom_fields.query import QueryError, TableQuery
from exports import reports, saved_reports, service
from exports.service import ExportRefused
from models.exports import ExportFile, ExportSchedule, ExportScheduleRun, ExportStatus
from models.reports import SavedReport
from models.saved_views import SavedView
from models.system import utcnow

FREQUENCIES = ("daily", "weekly", "monthly")
TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
#: Recipients besides the owner, at most.
MAX_RECIPIENTS = 50


class ScheduleError(ValueError):
    """A schedule that cannot be saved; the message is for the user."""


# --- the calendar ------------------------------------------------------------------------------------------


def zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["BABEL_DEFAULT_TIMEZONE"])


def _rule(schedule: ExportSchedule, start: dt.datetime) -> rrule.rrule:
    hour, minute = (int(part) for part in schedule.at_time.split(":"))
    common: dict[str, Any] = {"dtstart": start, "byhour": hour, "byminute": minute, "bysecond": 0}
    if schedule.frequency == "weekly":
        return rrule.rrule(rrule.WEEKLY, byweekday=sorted(schedule.weekdays), **common)
    if schedule.frequency == "monthly":
        day = schedule.month_day or 1
        # Day 31 in a 30-day month is its last day: the largest of the days that exist, up to the one asked.
        days = list(range(min(day, 28), day + 1))
        return rrule.rrule(rrule.MONTHLY, bymonthday=days, bysetpos=-1, **common)
    return rrule.rrule(rrule.DAILY, **common)


def _local(moment: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return aware.astimezone(tz).replace(tzinfo=None)


def _utc(local: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    return local.replace(tzinfo=tz).astimezone(dt.UTC)


def next_slot(schedule: ExportSchedule, after: dt.datetime) -> dt.datetime:
    """The first slot strictly after ``after`` (UTC)."""
    tz = zone()
    local = _local(after, tz)
    found = _rule(schedule, local.replace(hour=0, minute=0, second=0, microsecond=0)).after(local)
    return _utc(found, tz)


def latest_slot(schedule: ExportSchedule, now: dt.datetime) -> dt.datetime | None:
    """The last slot at or before ``now`` (UTC), looking back at most 40 days (every calendar has one)."""
    tz = zone()
    local = _local(now, tz)
    start = (local - dt.timedelta(days=40)).replace(hour=0, minute=0, second=0, microsecond=0)
    found = _rule(schedule, start).before(local, inc=True)
    return _utc(found, tz) if found else None


# --- what a user saves -------------------------------------------------------------------------------------


@dataclasses.dataclass
class Choice:
    """A saved view a user may schedule: their own or shared with them, of a table they may export."""

    view: SavedView
    slug: str
    table: str


def choices(actor: Actor) -> list[Choice]:
    found = []
    for entity in runtime.current().entities.values():
        if entity.archived or not service.allowed(entity.slug, actor):
            continue
        for view in saved_views.listed(entity.slug, actor):
            found.append(Choice(view, entity.slug, str(entity.plural_label)))
    return found


@dataclasses.dataclass
class ReportChoice:
    """A saved report a user may schedule: their own or shared with them, of a table they may export."""

    report: SavedReport
    slug: str
    table: str


def report_choices(actor: Actor) -> list[ReportChoice]:
    schema = runtime.current()
    found = []
    for report in saved_reports.listed(actor):
        entity = schema.by_id.get(report.entity_id)
        if entity is not None and service.allowed(entity.slug, actor):
            found.append(ReportChoice(report, entity.slug, str(entity.plural_label)))
    return found


def recipient_choices() -> Sequence[tuple[int, str]]:
    """Active users with an e-mail address, by name (their addresses are not shown to whoever schedules)."""
    users = db.session.scalars(select(User).where(User.active.is_(True)).order_by(User.username)).all()
    return [(u.id, runtime.user_label(u.id)) for u in users if u.email]


def save(
    actor: Actor,
    data: dict[str, Any],
    schedule: ExportSchedule | None = None,
    *,
    language: str = "en",
) -> ExportSchedule:
    """Create (or change) ``actor``'s schedule from form data; raises ``ScheduleError``, changing nothing."""
    if actor.user_id is None:
        raise ScheduleError(_("Sign in to schedule exports."))
    view_id, report_id = data.get("view_id"), data.get("report_id")
    chosen: Choice | None = None
    chosen_report: ReportChoice | None = None
    if report_id not in (None, ""):
        chosen_report = next((c for c in report_choices(actor) if str(c.report.id) == str(report_id)), None)
        if chosen_report is None:
            raise ScheduleError(_("Choose a saved report of a table you may export."))
    else:
        chosen = next((c for c in choices(actor) if str(c.view.id) == str(view_id)), None)
        if chosen is None:
            raise ScheduleError(_("Choose a saved view of a table you may export."))
    frequency = data.get("frequency")
    if frequency not in FREQUENCIES:
        raise ScheduleError(_("Choose how often to send it."))
    weekdays = sorted({int(d) for d in data.get("weekdays") or [] if str(d) in "0123456"})
    if frequency == "weekly" and not weekdays:
        raise ScheduleError(_("Choose at least one day of the week."))
    month_day = data.get("month_day")
    if frequency == "monthly":
        if not str(month_day or "").isdecimal() or not 1 <= int(month_day) <= 31:
            raise ScheduleError(_("The day of the month is a number from 1 to 31."))
        month_day = int(month_day)
    else:
        month_day = None
    at_time = str(data.get("at_time") or "").strip()
    if not TIME.match(at_time):
        raise ScheduleError(_("The time is hours and minutes, like 08:30."))
    file_format = "xlsx" if chosen_report else data.get("file_format") or "xlsx"  # a report is a workbook
    if file_format not in service.FORMATS:
        raise ScheduleError(_("Unknown file format."))
    allowed_ids = {user_id for user_id, _label in recipient_choices()}
    recipients = sorted({int(r) for r in data.get("recipient_ids") or [] if str(r).isdecimal()})
    if any(r not in allowed_ids for r in recipients):
        raise ScheduleError(_("Recipients are active users with an e-mail address."))
    if len(recipients) > MAX_RECIPIENTS:
        raise ScheduleError(_("At most %(count)d recipients.", count=MAX_RECIPIENTS))
    to_owner = bool(data.get("to_owner"))
    if not recipients and not to_owner:
        raise ScheduleError(_("Choose who receives it."))
    if schedule is None:
        schedule = ExportSchedule(owner_id=actor.user_id)
        db.session.add(schedule)
    schedule.view_id = chosen.view.id if chosen else None
    schedule.report_id = chosen_report.report.id if chosen_report else None
    schedule.frequency, schedule.weekdays, schedule.month_day = frequency, weekdays, month_day
    schedule.at_time, schedule.file_format = at_time, file_format
    schedule.recipient_ids, schedule.to_owner = recipients, to_owner
    schedule.language = language
    schedule.active, schedule.stopped_reason = True, ""
    schedule.next_run_at = next_slot(schedule, utcnow())
    db.session.commit()
    return schedule


def mine(actor: Actor) -> list[ExportSchedule]:
    statement = select(ExportSchedule).where(ExportSchedule.owner_id == actor.user_id)
    return list(db.session.scalars(statement.order_by(ExportSchedule.id)))


def own(schedule_id: int, user: Any) -> ExportSchedule | None:
    """The schedule if ``user`` owns it (or is an admin); otherwise None (shown as not found)."""
    from custom_fields.access import is_admin

    schedule = db.session.get(ExportSchedule, schedule_id)
    if schedule is None or user is None or not getattr(user, "is_authenticated", False):
        return None
    if schedule.owner_id == user.id or is_admin(Actor.of_user(user)):
        return schedule
    return None


def pause(schedule: ExportSchedule) -> None:
    schedule.active = False
    db.session.commit()


def resume(schedule: ExportSchedule) -> None:
    """Back on the calendar from now: slots missed while paused are not sent."""
    schedule.active, schedule.stopped_reason = True, ""
    schedule.next_run_at = next_slot(schedule, utcnow())
    db.session.commit()


def remove(schedule: ExportSchedule) -> None:
    db.session.delete(schedule)
    db.session.commit()


def runs(schedule: ExportSchedule, limit: int = 100) -> list[ExportScheduleRun]:
    statement = select(ExportScheduleRun).where(ExportScheduleRun.schedule_id == schedule.id)
    found = list(db.session.scalars(statement.order_by(ExportScheduleRun.slot_at.desc()).limit(limit)))
    return [reconcile(r) for r in found]


def reconcile(slot_run: ExportScheduleRun) -> ExportScheduleRun:
    """A run whose job died (worker killed, job lost) is failed with the job's reason, its unfinished
    export with it: never left "running" in the log."""
    if slot_run.status not in ("queued", "running") or slot_run.job_run_id is None:
        return slot_run
    from jobs.runtime import reconcile as reconcile_job
    from jobs.runtime import translated_message
    from models import JobRun, JobStatus

    job = db.session.get(JobRun, slot_run.job_run_id)
    if job is None:
        return slot_run
    reconcile_job(job)
    if job.status == JobStatus.failed:
        export = db.session.get(ExportFile, slot_run.export_id) if slot_run.export_id else None
        if export is not None and export.status in service.ACTIVE:
            service.remove_partial(export.id)
            export.status, export.message = ExportStatus.failed, translated_message(job.message)
        _finish(slot_run, "failed", translated_message(job.message) or _("The export failed."))
    return slot_run


def describe(schedule: ExportSchedule) -> str:
    """ "Every Monday and Friday at 08:00", in the current language."""
    if schedule.frequency == "daily":
        return _("Every day at %(time)s", time=schedule.at_time)
    if schedule.frequency == "monthly":
        return _("Monthly on day %(day)d at %(time)s", day=schedule.month_day or 1, time=schedule.at_time)
    names = weekday_names()
    days = ", ".join(names[d] for d in schedule.weekdays if 0 <= d < 7)
    return _("Weekly: %(days)s at %(time)s", days=days, time=schedule.at_time)


def weekday_names() -> list[str]:
    return [_("Monday"), _("Tuesday"), _("Wednesday"), _("Thursday"), _("Friday"), _("Saturday"), _("Sunday")]


# --- the scheduler's side ----------------------------------------------------------------------------------


def dispatch(now: dt.datetime | None = None, enqueue: Callable[[int], int | None] | None = None) -> list[int]:
    """Record one run for each due schedule (its latest slot) and hand it to ``enqueue``; returns the runs'
    ids. Safe to call from several schedulers at once: a slot already taken is skipped."""
    now = now or utcnow()
    due = db.session.scalars(
        select(ExportSchedule).where(ExportSchedule.active.is_(True), ExportSchedule.next_run_at <= now)
    ).all()
    started = []
    for schedule in due:
        slot = latest_slot(schedule, now) or schedule.next_run_at
        run = ExportScheduleRun(schedule_id=schedule.id, slot_at=slot, status="queued")
        schedule.next_run_at = next_slot(schedule, now)
        db.session.add(run)
        try:
            db.session.commit()
        except IntegrityError:  # another scheduler took this slot
            db.session.rollback()
            continue
        if enqueue is not None:
            run.job_run_id = enqueue(run.id)
            db.session.commit()
            if run.job_run_id is None:  # the queue could not be reached: the slot is logged as failed
                _finish(run, "failed", _("The job queue is unreachable; try again later."))
                continue
        started.append(run.id)
    return started


def run(run_id: int, report: Callable[[int, int | None], None]) -> dict[str, Any]:
    """The job's work: export the view as its owner, then mail it. A finished run is left as it is."""
    slot_run = db.session.get(ExportScheduleRun, run_id)
    if slot_run is None:
        raise LookupError(f"schedule run {run_id} does not exist")
    if slot_run.status not in ("queued", "running"):
        return {"status": slot_run.status}
    schedule = db.session.get(ExportSchedule, slot_run.schedule_id)
    slot_run.status = "running"
    db.session.commit()
    with force_locale(schedule.language):
        owner = db.session.get(User, schedule.owner_id)
        try:
            export = _export(schedule, owner)
        except (ExportRefused, QueryError, saved_views.ViewError) as refused:
            return _stop(schedule, slot_run, owner, str(refused))
        slot_run.export_id, export.job_run_id = export.id, slot_run.job_run_id
        db.session.commit()
        service.run(export.id, report)
        db.session.refresh(export)
        if export.status != ExportStatus.ready:
            return _finish(slot_run, "failed", export.message or _("The export failed."))
        recipients = _recipients(schedule, owner)
        if not recipients:
            return _finish(
                slot_run, "failed", _("None of the recipients is an active user with an e-mail address.")
            )
        attach = (export.size or 0) <= current_app.config["TABULA_EXPORT_ATTACH_MB"] * 1024 * 1024
        try:
            deliver(_message(schedule, export, [u.email for u in recipients], attach))
        except MailError as failure:
            return _finish(slot_run, "failed", str(failure))
        slot_run.recipients = len(recipients)
        return _finish(slot_run, "sent" if attach else "linked", "")


def _export(schedule: ExportSchedule, owner: User | None) -> ExportFile:
    actor = Actor.of_user(owner, "job")
    if actor.user_id is None:
        raise ExportRefused(_("The owner of the schedule can no longer sign in."))
    if schedule.report_id is not None:
        return _report_export(schedule, actor)
    view = db.session.get(SavedView, schedule.view_id)
    entity = runtime.current().by_id.get(view.entity_id) if view else None
    if view is None or entity is None or entity.archived:
        raise ExportRefused(_("The table no longer exists."))
    opened = saved_views.get(entity.slug, view.id, actor)  # a view no longer shared with them: refused
    # Not ``applied``: a filter that no longer holds fails the run rather than mail every row.
    state = saved_views.clean_state(TableQuery(entity.slug, actor), opened.state)
    return service.record(
        entity.slug,
        actor,
        state,
        schedule.file_format,
        source_url=f"/grid/{entity.slug}/?view={view.id}",
        language=schedule.language,
        shared_with=schedule.recipient_ids,
    )


def _report_export(schedule: ExportSchedule, actor: Actor) -> ExportFile:
    """A saved report as its owner may see it now (its period as of today): its workbook."""
    report = saved_reports.get(schedule.report_id, actor)  # no longer theirs to open: refused
    definition = saved_reports.definition(report)
    spec = definition.resolved(actor)
    return service.record(
        spec.table,
        actor,
        {"filter": spec.filter, "q": spec.q},
        "xlsx",
        source_url=f"/reports/?report={report.id}",
        language=schedule.language,
        shared_with=schedule.recipient_ids,
        report=reports.workbook_settings(spec, definition.chart, actor),
        title=report.name,
    )


def _recipients(schedule: ExportSchedule, owner: User | None) -> list[User]:
    ids = set(schedule.recipient_ids or []) | ({schedule.owner_id} if schedule.to_owner else set())
    users = db.session.scalars(select(User).where(User.id.in_(sorted(ids)) if ids else False)).all()
    return sorted((u for u in users if u.active and u.email), key=lambda u: u.id)


def title(schedule: ExportSchedule) -> str:
    if schedule.report_id is not None:
        report = db.session.get(SavedReport, schedule.report_id)
        return report.name if report else "?"
    view = db.session.get(SavedView, schedule.view_id)
    entity = runtime.current().by_id.get(view.entity_id) if view else None
    table = str(entity.plural_label) if entity else "?"
    return f"{table}: {view.name}" if view else table


def _message(schedule: ExportSchedule, export: ExportFile, to: list[str], attach: bool) -> Any:
    name = title(schedule)
    when = _local(export.created_at, zone()).strftime("%d.%m.%Y")
    subject = _("%(view)s — export of %(date)s", view=name, date=when)
    lines = [
        _("The scheduled export “%(view)s”: %(rows)d rows.", view=name, rows=export.rows_written),
        describe(schedule) + ".",
    ]
    link = f"{current_app.config['TABULA_BASE_URL']}/exports/{export.id}"
    if attach:
        lines.append(_("The file is attached."))
    else:
        megabytes = (export.size or 0) / 1024 / 1024
        lines.append(
            _(
                "The file (%(size).1f MB) is too large to attach; download it here (sign in first): %(link)s",
                size=megabytes,
                link=link,
            )
        )
    text = "\n\n".join(lines) + "\n"
    html = "".join(f"<p>{escape(line)}</p>" for line in lines)
    message = new_message(to, subject, text, html)
    if attach:
        data = b"".join(service.chunks(export))  # at most TABULA_EXPORT_ATTACH_MB
        maintype, subtype = service.MEDIA_TYPES[export.file_format].split(";")[0].split("/", 1)
        message.add_attachment(
            data, maintype=maintype, subtype=subtype, filename=f"{name} {when}.{export.file_format}"
        )
    return message


def _finish(slot_run: ExportScheduleRun, status: str, message: str) -> dict[str, Any]:
    slot_run.status, slot_run.message, slot_run.finished_at = status, message, utcnow()
    db.session.commit()
    return {"status": status, "message": message}


def _stop(schedule: ExportSchedule, slot_run: ExportScheduleRun, owner: User | None, reason: str) -> dict:
    """The owner may no longer export what the schedule sends: it stops, and they are told why."""
    schedule.active, schedule.stopped_reason = False, reason
    db.session.commit()
    told = ""
    if owner is not None and owner.email:
        text = _(
            "Your scheduled export “%(view)s” has stopped: %(reason)s",
            view=title(schedule),
            reason=reason,
        )
        try:
            deliver(new_message([owner.email], _("A scheduled export has stopped"), text + "\n"))
        except MailError as failure:
            told = " " + str(failure)
    return _finish(slot_run, "stopped", reason + told)
