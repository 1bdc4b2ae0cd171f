"""The RQ worker class used by ``tabula worker``: builds the app once, before forking work horses."""

from __future__ import annotations

from typing import Any

from rq import Worker

from jobs.runtime import worker_app

#: An idle RQ worker only renews its heartbeat when its blocking dequeue times out (``worker_ttl - 15`` s,
#: 405 s by default). /health counts a worker as alive while its heartbeat is younger than
#: TABULA_WORKER_STALE_SECONDS (120 s), so an idle worker must wake up more often than that.
MAX_WORKER_TTL = 60


class TabulaWorker(Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        worker_app()
        super().__init__(*args, **kwargs)
        self.worker_ttl = min(self.worker_ttl, MAX_WORKER_TTL)
        # While a job runs, the worker beats this often: the web side judges a silent worker dead (and fails
        # its job) after TABULA_WORKER_STALE_SECONDS.
        self.job_monitoring_interval = worker_app().config["TABULA_WORKER_HEARTBEAT_SECONDS"]
