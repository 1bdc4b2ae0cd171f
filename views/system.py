"""Admin screens: system status (database, Redis, workers) and background jobs with live progress."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, jsonify, redirect, url_for
from flask_appbuilder import BaseView, ModelView, expose, has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import pgettext
from sqlalchemy import select

from app.bounded_filters import BoundedInterface
from app.extensions import db
from app.health import health_report
from jobs import JobQueueUnavailable, enqueue
from jobs.overview import overview
from jobs.runtime import (
    NO_LIVE_WORKER,
    reconcile,
    reconcile_active,
    translated_message,
    waiting_without_worker,
)
from models import JobRun, JobStatus


def status_label(status: JobStatus) -> str:
    """A job's status in the reader's language (the stored value is an identifier)."""
    labels = {
        JobStatus.queued: pgettext("job status", "Queued"),
        JobStatus.running: pgettext("job status", "Running"),
        JobStatus.finished: pgettext("job status", "Finished"),
        JobStatus.failed: pgettext("job status", "Failed"),
    }
    return labels.get(status, str(status))


def worker_state_label(state: str) -> str:
    """An RQ worker's state in the reader's language."""
    labels = {
        "busy": pgettext("worker state", "Busy"),
        "idle": pgettext("worker state", "Idle"),
        "started": pgettext("worker state", "Starting"),
        "suspended": pgettext("worker state", "Suspended"),
    }
    return labels.get(state, state)


def job_state(run: JobRun) -> dict:
    """What the job page shows and polls; ``waiting`` says a queued job has no live worker to take it."""
    waiting = waiting_without_worker(run)
    return {
        "id": run.id,
        "kind": run.kind,
        "status": run.status.value,
        "status_label": status_label(run.status),
        "done": run.progress_done,
        "total": run.progress_total,
        "message": translated_message(run.message),
        "result": run.result,
        "waiting": translated_message(NO_LIVE_WORKER) if waiting else "",
    }


class SystemView(BaseView):
    route_base = "/system"
    default_view = "status"
    class_permission_name = "SystemStatus"
    method_permission_name = {
        "status": "read",
        "selfcheck": "write",
        "job": "read",
        "job_state_json": "read",
    }

    @expose("/")
    @has_access
    def status(self):  # noqa: ANN201
        report, _healthy = health_report()
        waiting = [run for run in reconcile_active() if waiting_without_worker(run)]
        runs = db.session.scalars(select(JobRun).order_by(JobRun.id.desc()).limit(20)).all()
        return self.render_template(
            "tabula/system_status.html",
            report=report,
            overview=overview(),
            worker_state_label=worker_state_label,
            runs=runs,
            waiting=waiting,
            message_of=translated_message,
            status_label=status_label,
        )

    @expose("/selfcheck", methods=["POST"])
    @has_access
    def selfcheck(self):  # noqa: ANN201
        from flask import g

        from jobs.system import selfcheck

        try:
            run = enqueue("selfcheck", selfcheck, user_id=g.user.id)
        except JobQueueUnavailable as exc:
            flash(_("The job could not be queued: %(reason)s", reason=str(exc)), "danger")
            return redirect(url_for("SystemView.status"))
        return redirect(url_for("SystemView.job", run_id=run.id))

    @expose("/jobs/<int(max=2147483647):run_id>")
    @has_access
    def job(self, run_id: int):  # noqa: ANN201
        run = db.session.get(JobRun, run_id) or abort(404)
        run = reconcile(run)
        return self.render_template("tabula/job.html", run=run, state=job_state(run))

    @expose("/jobs/<int(max=2147483647):run_id>/state")
    @has_access
    def job_state_json(self, run_id: int):  # noqa: ANN201
        run = db.session.get(JobRun, run_id) or abort(404)
        return jsonify(job_state(reconcile(run)))


class JobRunView(ModelView):
    datamodel = BoundedInterface(JobRun)
    route_base = "/jobs"
    class_permission_name = "BackgroundJob"
    base_permissions = ["can_list", "can_show"]
    base_order = ("id", "desc")
    list_columns = [
        "id",
        "kind",
        "status",
        "progress_done",
        "progress_total",
        "created_at",
        "finished_at",
        "message",
    ]
    show_columns = list_columns + ["started_at", "result", "rq_job_id"]
    search_columns = ["kind", "status", "created_at"]
    label_columns = {
        "id": _l("No."),
        "kind": _l("Kind"),
        "status": _l("Status"),
        "progress_done": _l("Done"),
        "progress_total": _l("Total"),
        "created_at": _l("Created"),
        "started_at": _l("Started"),
        "finished_at": _l("Finished"),
        "message": _l("Message"),
        "result": _l("Result"),
        "rq_job_id": _l("Queue job id"),
    }
    # FAB shows a missing value as the word "None"; stored reasons are shown in the reader's language.
    formatters_columns = {
        **{c: (lambda value: "—" if value is None else value) for c in show_columns},
        "message": lambda value: "—" if value is None else translated_message(value),
        "status": status_label,
    }
    list_title = _l("Background jobs")
    show_title = _l("Background job")

    def _list(self, **kwargs: Any) -> Any:
        reconcile_active()  # a run whose worker died is shown failed, not 'running' for ever
        return super()._list(**kwargs)

    def _show(self, pk: Any) -> Any:
        run = db.session.get(JobRun, int(pk)) if str(pk).isdecimal() else None
        if run is not None:
            reconcile(run)
        return super()._show(pk)
