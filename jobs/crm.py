"""CRM housekeeping: invoices' days overdue change with the calendar, so they are recounted every night
(``tabula cron``); edits recount them at once (``app.crm.derive``)."""

from __future__ import annotations

from jobs.runtime import app_job, report_progress, worker_app
from models import JobRun

OVERDUE_SCHEDULE = "5 0 * * *"  # daily, 00:05 (the scheduler's clock, UTC)


@app_job
def refresh_overdue_invoices(run: JobRun) -> dict:
    from app.crm.derive import refresh_overdue

    changed = refresh_overdue()
    report_progress(run, changed, changed)
    return {"changed": changed}


def scheduled_overdue() -> int:
    """What the cron scheduler enqueues: a tracked job (a JobRun row, outcome)."""
    from jobs.queues import enqueue

    with worker_app().app_context():
        return enqueue("refresh_overdue_invoices", refresh_overdue_invoices).id
