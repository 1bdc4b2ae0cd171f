"""What an admin sees of the job system: every queue with its counts, every worker with its state and the
job it runs (read from Redis, on any number of machines)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import current_app
from redis.exceptions import RedisError
from rq import Queue, Worker

from app.redis_client import redis_connection
from app.worker_liveness import is_fresh

RUN_PREFIX = "tabula-run-"


@dataclass(frozen=True)
class QueueState:
    name: str
    queued: int
    running: int
    failed: int
    scheduled: int
    workers: int


@dataclass(frozen=True)
class WorkerState:
    name: str
    hostname: str
    pid: int | None
    state: str
    alive: bool
    queues: tuple[str, ...]
    run_id: int | None
    last_heartbeat: dt.datetime | None
    started: dt.datetime | None
    successful: int
    failed: int


@dataclass(frozen=True)
class Overview:
    queues: tuple[QueueState, ...]
    workers: tuple[WorkerState, ...]
    error: str = ""


def run_id_of(rq_job_id: str | None) -> int | None:
    """The JobRun behind an RQ job id (``tabula-run-<n>``), if it is one of ours."""
    if rq_job_id and rq_job_id.startswith(RUN_PREFIX) and rq_job_id[len(RUN_PREFIX) :].isdecimal():
        return int(rq_job_id[len(RUN_PREFIX) :])
    return None


def overview() -> Overview:
    """Queues (those RQ knows and those this installation uses) and workers; Redis being down is an
    answer (``error``), not an exception."""
    connection = redis_connection()
    try:
        workers = Worker.all(connection=connection)
        names = {q.name for q in Queue.all(connection=connection)}
        names |= {"default", current_app.config.get("TABULA_EXPORT_QUEUE") or "default"}
        now = dt.datetime.now(dt.UTC)
        worker_states = tuple(sorted((_worker(w, now) for w in workers), key=lambda w: (w.hostname, w.name)))
        queues = tuple(_queue(Queue(name, connection=connection), worker_states) for name in sorted(names))
    except RedisError as exc:
        return Overview((), (), error=exc.__class__.__name__)
    return Overview(queues, worker_states)


def _queue(queue: Queue, workers: tuple[WorkerState, ...]) -> QueueState:
    return QueueState(
        name=queue.name,
        queued=queue.count,
        running=queue.started_job_registry.count,
        failed=queue.failed_job_registry.count,
        scheduled=queue.scheduled_job_registry.count + queue.deferred_job_registry.count,
        workers=sum(1 for w in workers if w.alive and queue.name in w.queues),
    )


def _worker(worker: Worker, now: dt.datetime) -> WorkerState:
    job_id = worker.get_current_job_id()
    return WorkerState(
        name=worker.name,
        hostname=worker.hostname or "",
        pid=worker.pid,
        state=str(getattr(worker.get_state(), "value", worker.get_state()) or ""),
        alive=is_fresh(worker, now),
        queues=tuple(worker.queue_names()),
        run_id=run_id_of(job_id),
        last_heartbeat=worker.last_heartbeat,
        started=worker.birth_date,
        successful=worker.successful_job_count or 0,
        failed=worker.failed_job_count or 0,
    )
