"""Schema jobs: a field's type change on a big table (``custom_fields.conversion_jobs``), with progress for
the browser, a cancel, and recovery when its worker dies."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_babel import gettext as _

from app.extensions import db
from custom_fields import conversion_jobs
from jobs.queues import JobQueueUnavailable, cancel_run, enqueue
from jobs.runtime import RECONCILE_SCHEDULE, app_job, report_progress, translated_message, worker_app
from jobs.runtime import reconcile as reconcile_run
from models import FieldConversion, JobRun, JobStatus

TIMEOUT = 24 * 3600


@app_job
def run_type_change(run: JobRun, conversion_id: int) -> dict:
    from rq import get_current_job

    def report(done: int, total: int) -> None:
        if db.engine.dialect.name == "postgresql":
            report_progress(run, done, total)
            return
        # SQLite: the conversion's one transaction is open; progress in Redis only.
        job = get_current_job()
        if job is not None:
            job.meta["progress"] = {"done": done, "total": total}
            job.save_meta()

    return conversion_jobs.run(conversion_id, report)


def start(
    field_id: int, new_type: str, settings: dict[str, Any] | None, *, user_id: int | None = None
) -> FieldConversion:
    """Record the type change (the field shows "converting") and hand it to a worker. ``SchemaError`` when
    it cannot be made; ``JobQueueUnavailable`` (the field as it was) when Redis does not take the job."""
    record = conversion_jobs.request(field_id, new_type, settings, user_id=user_id)
    try:
        queue = current_app.config.get("TABULA_SCHEMA_QUEUE") or "default"
        run = enqueue(
            "change_type", run_type_change, record.id, user_id=user_id, queue=queue, timeout=TIMEOUT
        )
    except JobQueueUnavailable as exc:
        conversion_jobs.finish(record.id, "failed", str(exc))
        raise
    db.session.refresh(record)
    record.job_run_id = run.id
    db.session.commit()
    return record


def live_progress(record: FieldConversion) -> dict[str, Any] | None:
    """The job's progress as it left it in Redis (SQLite writes none to the database meanwhile)."""
    if record.job_run_id is None or record.status != "running":
        return None
    from redis.exceptions import RedisError
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    from app.redis_client import redis_connection
    from jobs.queues import rq_job_id

    try:
        return (
            Job.fetch(rq_job_id(record.job_run_id), connection=redis_connection()).get_meta().get("progress")
        )
    except (NoSuchJobError, RedisError):
        return None


def reconcile(record: FieldConversion) -> FieldConversion:
    """A conversion whose job died (worker killed, job lost) is cleaned up and failed with the reason:
    the field is as it was, and no longer "converting". Called whenever the conversion is shown."""
    if not record.active or record.job_run_id is None:
        return record
    run = db.session.get(JobRun, record.job_run_id)
    if run is None:
        return record
    reconcile_run(run)
    if run.status == JobStatus.failed:
        reason = translated_message(run.message) or _("The conversion failed; the field is as it was.")
        conversion_jobs.recover(record.id, reason)
        db.session.expire_all()
        record = db.session.get(FieldConversion, record.id) or record
    return record


def reconcile_active() -> int:
    """Reconcile every unfinished conversion; returns how many still run."""
    from sqlalchemy import select

    active = db.session.scalars(
        select(FieldConversion).where(FieldConversion.status.in_(FieldConversion.ACTIVE))
    ).all()
    return sum(reconcile(record).active for record in active)


#: ``tabula cron`` cleans up conversions whose worker died as often as it fails their runs.
CONVERSIONS_SCHEDULE = RECONCILE_SCHEDULE


def scheduled_reconcile() -> int:
    """What the cron scheduler enqueues: a conversion whose worker died is cleaned up and its field freed
    (on PostgreSQL its trigger refuses writes to the field until then) even when nobody opens its page.
    Returns how many conversions still run."""
    with worker_app().app_context():
        return reconcile_active()


def cancel(record: FieldConversion) -> bool:
    """The admin's cancel: a queued job leaves its queue; a running one undoes itself."""
    if record.status == "queued" and record.job_run_id is not None:
        cancel_run(record.job_run_id)
    return conversion_jobs.cancel(record)
