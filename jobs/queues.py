"""Redis connections and enqueueing: every job gets a durable ``JobRun`` row before it reaches Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

from app.extensions import db
from models import JobRun, JobStatus
from models.system import utcnow

DEFAULT_QUEUE = "default"


class JobQueueUnavailable(RuntimeError):  # noqa: N818 (reads better at the raise site)
    """Redis cannot take the job; the JobRun is marked failed with the reason."""


def redis_connection(url: str | None = None) -> Redis:
    """A client for the configured Redis with short timeouts, so a dead Redis is reported, not waited on."""
    if url is None:
        cached = current_app.extensions.get("tabula_redis")
        if cached is not None:
            return cached
    client = Redis.from_url(
        url or current_app.config["REDIS_URL"],
        socket_connect_timeout=3,
        socket_timeout=10,
        health_check_interval=30,
    )
    if url is None:
        current_app.extensions["tabula_redis"] = client
    return client


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
