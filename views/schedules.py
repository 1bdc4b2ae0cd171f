"""Scheduled exports: a saved view mailed on a calendar. Made from My exports (or a grid's saved view); each
schedule's page shows its settings, its log and the actions (send now, pause, resume, delete). Only the owner
(and admins) reach a schedule: anyone else gets 404."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from app.extensions import db
from custom_fields.access import Actor
from custom_fields.formats import datetime_text
from exports import schedules
from exports.schedules import ScheduleError
from jobs.exports import run_schedule
from jobs.queues import JobQueueUnavailable, enqueue
from models.exports import ExportSchedule, ExportScheduleRun
from models.system import utcnow

RUN_LABELS = {
    "queued": _l("Waiting for a worker"),
    "running": _l("Writing"),
    "sent": _l("Sent with the file attached"),
    "linked": _l("Sent with a link (too large to attach)"),
    "failed": _l("Failed"),
    "stopped": _l("Stopped"),
}


def _form_data() -> dict[str, Any]:
    form = request.form
    return {
        "view_id": form.get("view_id"),
        "report_id": form.get("report_id") or None,
        "frequency": form.get("frequency"),
        "weekdays": form.getlist("weekdays"),
        "month_day": form.get("month_day"),
        "at_time": form.get("at_time"),
        "file_format": form.get("file_format"),
        "recipient_ids": form.getlist("recipient_ids"),
        "to_owner": form.get("to_owner") == "y",
    }


def _language() -> str:
    locale = get_locale()
    return locale.language if locale else "en"


def _own(schedule_id: int) -> ExportSchedule:
    schedule = schedules.own(schedule_id, current_user)
    if schedule is None:
        abort(404)
    return schedule


class ExportScheduleView(BaseView):
    route_base = "/exports/schedules"
    default_view = "new"

    def _render(self, schedule: ExportSchedule | None, values: dict[str, Any], status: int = 200) -> Any:
        actor = Actor.current("ui")
        page = self.render_template(
            "tabula/exports/schedule.html",
            schedule=schedule,
            values=values,
            choices=schedules.choices(actor),
            report_choices=schedules.report_choices(actor),
            recipients=schedules.recipient_choices(),
            weekdays=schedules.weekday_names(),
            runs=schedules.runs(schedule) if schedule else [],
            run_labels=RUN_LABELS,
            describe=schedules.describe,
            timezone=schedules.zone().key,
            title=_("Scheduled e-mail") if schedule is None else schedules.title(schedule),
        )
        return page, status

    @expose("/new", methods=["GET", "POST"])
    @has_access
    def new(self) -> Any:
        if request.method == "POST":
            try:
                schedule = schedules.save(Actor.current("ui"), _form_data(), language=_language())
            except ScheduleError as refused:
                flash(str(refused), "danger")
                return self._render(None, _form_data(), 422)
            flash(_("The schedule was saved. Next: %(when)s.", when=_next(schedule)), "success")
            return redirect(url_for("ExportScheduleView.show", schedule_id=schedule.id))
        view, report = request.args.get("view", ""), request.args.get("report", "")
        values = {
            "view_id": view if view.isdecimal() else None,
            "report_id": report if report.isdecimal() else None,
            "frequency": "weekly",
            "weekdays": ["0"],
            "month_day": "1",
            "at_time": "08:00",
            "file_format": "xlsx",
            "recipient_ids": [],
            "to_owner": True,
        }
        return self._render(None, values)

    @expose("/<int(max=2147483647):schedule_id>", methods=["GET", "POST"])
    @has_access
    def show(self, schedule_id: int) -> Any:
        schedule = _own(schedule_id)
        if request.method == "POST":
            owner = Actor.for_user_id(schedule.owner_id, "ui")
            try:
                schedules.save(owner, _form_data(), schedule, language=_language())
            except ScheduleError as refused:
                db.session.rollback()
                flash(str(refused), "danger")
                return self._render(schedule, _form_data(), 422)
            flash(_("The schedule was saved. Next: %(when)s.", when=_next(schedule)), "success")
            return redirect(url_for("ExportScheduleView.show", schedule_id=schedule.id))
        values = {
            "view_id": str(schedule.view_id) if schedule.view_id else None,
            "report_id": str(schedule.report_id) if schedule.report_id else None,
            "frequency": schedule.frequency,
            "weekdays": [str(d) for d in schedule.weekdays],
            "month_day": str(schedule.month_day or 1),
            "at_time": schedule.at_time,
            "file_format": schedule.file_format,
            "recipient_ids": [str(r) for r in schedule.recipient_ids],
            "to_owner": schedule.to_owner,
        }
        return self._render(schedule, values)

    @expose("/<int(max=2147483647):schedule_id>/send", methods=["POST"])
    @has_access
    def send(self, schedule_id: int) -> Any:
        """Send now, outside the calendar (the log shows it as its own run)."""
        schedule = _own(schedule_id)
        slot_run = ExportScheduleRun(schedule_id=schedule.id, slot_at=utcnow(), status="queued")
        db.session.add(slot_run)
        db.session.commit()
        try:
            slot_run.job_run_id = enqueue(
                "export_schedule", run_schedule, slot_run.id, user_id=current_user.id, timeout=6 * 3600
            ).id
        except JobQueueUnavailable:
            slot_run.status, slot_run.message = "failed", _("The job queue is unreachable; try again later.")
            flash(slot_run.message, "danger")
        else:
            flash(_("It is being sent; the log below shows when it is done."), "success")
        db.session.commit()
        return redirect(url_for("ExportScheduleView.show", schedule_id=schedule.id))

    @expose("/<int(max=2147483647):schedule_id>/pause", methods=["POST"])
    @has_access
    def pause(self, schedule_id: int) -> Any:
        schedules.pause(_own(schedule_id))
        flash(_("The schedule is paused."), "success")
        return redirect(url_for("ExportScheduleView.show", schedule_id=schedule_id))

    @expose("/<int(max=2147483647):schedule_id>/resume", methods=["POST"])
    @has_access
    def resume(self, schedule_id: int) -> Any:
        schedule = _own(schedule_id)
        schedules.resume(schedule)
        flash(_("The schedule is on again. Next: %(when)s.", when=_next(schedule)), "success")
        return redirect(url_for("ExportScheduleView.show", schedule_id=schedule_id))

    @expose("/<int(max=2147483647):schedule_id>/delete", methods=["POST"])
    @has_access
    def delete(self, schedule_id: int) -> Any:
        schedules.remove(_own(schedule_id))
        flash(_("The schedule was deleted."), "success")
        return redirect(url_for("ExportView.mine"))


def _next(schedule: ExportSchedule) -> str:
    return datetime_text(schedule.next_run_at) if schedule.next_run_at else "—"


def register(appbuilder: Any) -> None:
    from views import add_view

    add_view(appbuilder, ExportScheduleView, None, audience="staff")
