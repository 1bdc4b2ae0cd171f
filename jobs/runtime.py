"""What every job function runs inside: an app context in the worker, progress, and a durable outcome.

Workers are plain ``rq worker`` processes. The app is built once per worker process (``TabulaWorker`` does it
before forking) and its database pool is discarded in each forked work horse, as SQLAlchemy requires.
"""

from __future__ import annotations

import functools
import os
import traceback
from collections.abc import Callable
from typing import Any

from flask import Flask, has_app_context
from redis.exceptions import RedisError
from rq import get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.job import JobStatus as RQStatus

from app.extensions import db
from custom_fields.core import N_
from models import JobRun, JobStatus
from models.system import utcnow

_app: Flask | None = None
_app_pid: int | None = None


def worker_app() -> Flask:
    """The app of this worker process, built on first use; safe across ``fork``."""
    global _app, _app_pid
    if _app is None:
        from app import create_app

        _app = create_app()
        _app_pid = os.getpid()
    elif _app_pid != os.getpid():
        with _app.app_context():
            for engine in db.engines.values():
                engine.dispose(close=False)
        _app_pid = os.getpid()
    return _app


def app_job(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``func(run, *args)`` with the JobRun ``run_id`` tracked: running, then finished or failed.

    A job whose run already finished returns the stored result: a retried job does nothing twice.
    """

    @functools.wraps(func)
    def wrapper(run_id: int, *args: Any, **kwargs: Any) -> Any:
        if has_app_context():
            return _run(func, run_id, *args, **kwargs)
        with worker_app().app_context():
            return _run(func, run_id, *args, **kwargs)

    return wrapper


def _run(func: Callable[..., Any], run_id: int, *args: Any, **kwargs: Any) -> Any:
    from custom_fields.runtime import refresh

    refresh()  # a job sees every table and field as of now, whatever changed since the worker started
    run = db.session.get(JobRun, run_id)
    if run is None:
        raise LookupError(f"JobRun {run_id} does not exist")
    if run.status == JobStatus.finished:
        return run.result
    run.status = JobStatus.running
    run.started_at = utcnow()
    run.message = ""
    db.session.commit()
    try:
        result = func(run, *args, **kwargs)
    except Exception as exc:
        db.session.rollback()
        run = db.session.get(JobRun, run_id)
        run.status = JobStatus.failed
        run.message = "".join(traceback.format_exception_only(exc)).strip()[:2000]
        run.finished_at = utcnow()
        db.session.commit()
        raise
    run.status = JobStatus.finished
    run.result = result
    run.finished_at = utcnow()
    db.session.commit()
    return result


def report_progress(run: JobRun, done: int, total: int | None = None, message: str = "") -> None:
    """Record progress in the database (durable) and in the RQ job's meta (cheap to poll)."""
    run.progress_done = done
    run.progress_total = total
    if message:
        run.message = message
    db.session.commit()
    job = get_current_job()
    if job is not None:
        job.meta["progress"] = {"done": done, "total": total}
        job.save_meta()


WORKER_STOPPED = N_("Worker stopped: the worker running this job stopped before it finished.")
LOST_FROM_QUEUE = N_("The job was lost from the queue.")
NO_LIVE_WORKER = N_("No worker is running for this job's queue: it waits until one starts.")
STOPPED_BY_RQ = {
    RQStatus.FAILED: N_("The job failed."),
    RQStatus.STOPPED: N_("The job was stopped."),
    RQStatus.CANCELED: N_("The job was canceled."),
}
REASONS = frozenset({WORKER_STOPPED, LOST_FROM_QUEUE, NO_LIVE_WORKER, *STOPPED_BY_RQ.values()})
ACTIVE = (JobStatus.queued, JobStatus.running)


def translated_message(message: str) -> str:
    """A run's message for the reader: the reasons this module records, in the reader's language."""
    from flask_babel import gettext

    return gettext(message) if message in REASONS else message


def _mark_failed(run: JobRun, reason: str) -> None:
    db.session.refresh(run)
    if run.status in ACTIVE:
        run.status = JobStatus.failed
        run.message = run.message or reason
        run.finished_at = utcnow()
        db.session.commit()


WORKER_GONE_MARKS = ("AbandonedJobError", "Work-horse terminated unexpectedly")


def _abandoned(job: Job) -> bool:
    """RQ failed the job because the process running it died: its work horse was killed (out of memory,
    a signal) or another worker's registry cleanup found it abandoned. The reader is told the worker
    stopped, not merely that "the job failed"."""
    try:
        result = job.latest_result()
    except RedisError:
        return False
    return result is not None and any(mark in (result.exc_string or "") for mark in WORKER_GONE_MARKS)


def reconcile(run: JobRun) -> JobRun:
    """Mark a run failed when RQ no longer runs it (a lost queue, a job RQ failed) or when the worker that
    took it no longer beats (killed, its machine gone): never stuck 'running'. Called whenever a run is
    shown; Redis being unreachable changes nothing."""
    if run.status not in ACTIVE or not run.rq_job_id:
        return run
    from app.redis_client import redis_connection
    from app.worker_liveness import worker_is_alive

    connection = redis_connection()
    try:
        job = Job.fetch(run.rq_job_id, connection=connection)
        status = job.get_status(refresh=True)
        worker_dead = (
            status == RQStatus.STARTED
            and bool(job.worker_name)
            and not worker_is_alive(connection, job.worker_name)
        )
    except NoSuchJobError:
        _mark_failed(run, LOST_FROM_QUEUE)
        return run
    except RedisError:
        return run
    if worker_dead or (status == RQStatus.FAILED and _abandoned(job)):
        _mark_failed(run, WORKER_STOPPED)
    elif status in STOPPED_BY_RQ:
        _mark_failed(run, STOPPED_BY_RQ[status])
    return run


def reconcile_active(limit: int = 200) -> list[JobRun]:
    """Reconcile the runs still queued or running (the most recent ``limit``); returns them."""
    from sqlalchemy import select

    active = select(JobRun).where(JobRun.status.in_(ACTIVE)).order_by(JobRun.id.desc()).limit(limit)
    return [reconcile(run) for run in db.session.scalars(active).all()]


RECONCILE_SCHEDULE = "*/5 * * * *"  # every five minutes (``tabula cron``)


def scheduled_reconcile() -> int:
    """What the cron scheduler enqueues: fail the runs whose worker died even when nobody looks at them
    (no JobRun of its own: it would fill the Background jobs list). Returns how many are still active."""
    with worker_app().app_context():
        return sum(run.status in ACTIVE for run in reconcile_active())


def waiting_without_worker(run: JobRun) -> bool:
    """A queued run that no live worker listens for (it would wait forever without a word)."""
    if run.status != JobStatus.queued or not run.rq_job_id:
        return False
    from app.redis_client import redis_connection
    from app.worker_liveness import live_workers

    connection = redis_connection()
    try:
        job = Job.fetch(run.rq_job_id, connection=connection)
        return job.get_status(refresh=True) == RQStatus.QUEUED and not live_workers(connection, job.origin)
    except (NoSuchJobError, RedisError):
        return False
