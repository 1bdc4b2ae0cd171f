"""Export jobs: write a view to a file (``exports.service``), and remove expired files every night."""

from __future__ import annotations

from jobs.runtime import app_job, report_progress, worker_app
from models import JobRun

PURGE_SCHEDULE = "20 0 * * *"  # daily, 00:20 (the scheduler's clock, UTC)


@app_job
def run_export(run: JobRun, export_id: int) -> dict:
    from exports import service

    return service.run(export_id, lambda done, total: report_progress(run, done, total))


@app_job
def purge_expired_exports(run: JobRun) -> dict:
    from exports import service

    removed = service.purge_expired()
    report_progress(run, removed, removed)
    return {"removed": removed}


def scheduled_purge() -> int:
    """What the cron scheduler enqueues."""
    from jobs.queues import enqueue

    with worker_app().app_context():
        return enqueue("purge_expired_exports", purge_expired_exports).id


@app_job
def run_schedule(run: JobRun, schedule_run_id: int) -> dict:
    from exports import schedules

    return schedules.run(schedule_run_id, lambda done, total: report_progress(run, done, total))


def dispatch_schedules() -> list[int]:
    """What the cron scheduler calls every ``TABULA_SCHEDULE_SECONDS``: a tracked job for each due schedule
    (none, and no record, when nothing is due)."""
    from exports import schedules
    from jobs.queues import JobQueueUnavailable, enqueue

    def start(schedule_run_id: int) -> int | None:
        try:
            return enqueue("export_schedule", run_schedule, schedule_run_id, timeout=6 * 3600).id
        except JobQueueUnavailable:
            return None

    with worker_app().app_context():
        return schedules.dispatch(enqueue=start)
