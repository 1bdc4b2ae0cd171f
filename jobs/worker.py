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

    def execute_job(self, job: Any, queue: Any) -> Any:
        # The work horse is a fork of this process: brought up to the current schema here, once per schema
        # version, every job starts with the tables mapped instead of building them again in each fork.
        warm_schema()
        return super().execute_job(job, queue)


def warm_schema() -> None:
    """Bring this process's runtime schema up to date and leave no database connection open to fork."""
    from app.extensions import db
    from custom_fields.runtime import refresh

    app = worker_app()
    try:
        with app.app_context():
            refresh()
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()
    except Exception:  # noqa: BLE001 (the job itself will meet, and report, what failed here)
        app.logger.warning("could not bring the schema up to date before a job", exc_info=True)
