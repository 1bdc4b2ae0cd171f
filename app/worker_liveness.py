"""Which RQ workers are alive, judged by their heartbeat in Redis (any machine): a worker killed outright
(``kill -9``, a lost machine) leaves its key behind for minutes but stops renewing ``last_heartbeat``."""

from __future__ import annotations

import datetime as dt

from flask import current_app
from redis import Redis
from rq import Queue, Worker


def _stale_after() -> dt.timedelta:
    return dt.timedelta(seconds=current_app.config["TABULA_WORKER_STALE_SECONDS"])


def is_fresh(worker: Worker, now: dt.datetime | None = None) -> bool:
    beat = worker.last_heartbeat
    if beat is None:
        return False
    beat = beat if beat.tzinfo else beat.replace(tzinfo=dt.UTC)
    return (now or dt.datetime.now(dt.UTC)) - beat < _stale_after()


def live_workers(connection: Redis, queue: str | None = None) -> list[Worker]:
    """Workers with a recent heartbeat, those listening to ``queue`` when given."""
    on_queue = Queue(queue, connection=connection) if queue else None
    listening = Worker.all(connection=connection, queue=on_queue)
    now = dt.datetime.now(dt.UTC)
    return [worker for worker in listening if is_fresh(worker, now)]


def worker_is_alive(connection: Redis, name: str) -> bool:
    worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + name, connection=connection)
    return worker is not None and is_fresh(worker)
