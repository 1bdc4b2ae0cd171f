"""Enqueueing: every job gets a durable ``JobRun`` row before it reaches Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError
from rq import Queue

from app.extensions import db
from app.redis_client import redis_connection
from models import JobRun, JobStatus
from models.system import utcnow

DEFAULT_QUEUE = "default"


class JobQueueUnavailable(RuntimeError):  # noqa: N818 (reads better at the raise site)
    """Redis cannot take the job; the JobRun is marked failed with the reason."""


def get_queue(name: str = DEFAULT_QUEUE) -> Queue:
    return Queue(name, connection=redis_connection())


def rq_job_id(run_id: int) -> str:
    return f"tabula-run-{run_id}"


def enqueue(
    kind: str,
    func: Callable[..., Any],
    *args: Any,
    user_id: int | None = None,
    queue: str = DEFAULT_QUEUE,
    timeout: int = 3600,
) -> JobRun:
    """Record a JobRun, then enqueue ``func(run_id, *args)``; job functions take ids, never objects."""
    run = JobRun(kind=kind, status=JobStatus.queued, created_by_fk=user_id)
    db.session.add(run)
    db.session.commit()
    run.rq_job_id = rq_job_id(run.id)
    db.session.commit()
    try:
        get_queue(queue).enqueue(
            func, run.id, *args, job_id=run.rq_job_id, job_timeout=timeout, result_ttl=86400
        )
    except RedisError as exc:
        run.status = JobStatus.failed
        run.message = f"Redis is unreachable: {exc.__class__.__name__}"
        run.finished_at = utcnow()
        db.session.commit()
        raise JobQueueUnavailable(run.message) from exc
    return run


def cancel_run(run_id: int | None) -> None:
    """Take a queued job out of its queue (a running one is asked to stop by its own means) and mark its
    run failed as cancelled. Redis being unreachable leaves the run to ``runtime.reconcile``."""
    from rq.exceptions import InvalidJobOperation, NoSuchJobError
    from rq.job import Job
    from rq.job import JobStatus as RQStatus

    from jobs.runtime import STOPPED_BY_RQ

    run = db.session.get(JobRun, run_id) if run_id is not None else None
    if run is None:
        return
    if run.rq_job_id:
        try:
            Job.fetch(run.rq_job_id, connection=redis_connection()).cancel()
        except (NoSuchJobError, InvalidJobOperation, RedisError):
            pass
    if run.status in (JobStatus.queued, JobStatus.running):
        run.status = JobStatus.failed
        run.message = STOPPED_BY_RQ[RQStatus.CANCELED]
        run.finished_at = utcnow()
        db.session.commit()
