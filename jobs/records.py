"""Record housekeeping: the recycle-bin purge, run daily by ``tabula cron`` and on demand by admins."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import current_app

from custom_fields import records
from jobs.runtime import app_job, report_progress, worker_app
from models import JobRun

PURGE_SCHEDULE = "30 3 * * *"  # daily, 03:30 (the scheduler's clock, UTC)


@app_job
def purge_recycle_bin(run: JobRun) -> dict:
    """Delete for good what has been in the recycle bin longer than ``RECYCLE_BIN_DAYS``."""
    days = int(current_app.config["RECYCLE_BIN_DAYS"])
    purged = records.purge_expired(
        dt.timedelta(days=days), progress=lambda done: report_progress(run, done, None, f"{done} purged")
    )
    report_progress(run, purged, purged)
    return {"purged": purged, "days": days}


def scheduled_purge() -> int:
    """What the cron scheduler enqueues: a tracked purge job (a JobRun row, progress, outcome)."""
    from jobs.queues import enqueue

    with worker_app().app_context():
        return enqueue("purge_recycle_bin", purge_recycle_bin).id


@app_job
def bulk_edit(run: JobRun, slug: str, user_id: int, name: str, value: Any, spec: dict) -> dict:
    """The grid's bulk edit of many rows (``custom_fields.bulk``): ``spec`` holds the target (``ids``, or
    ``filter`` and ``q``) and the count confirmed (``total``); progress as rows are written."""
    from custom_fields import bulk
    from custom_fields.access import Actor

    actor = Actor.for_user_id(user_id, "ui")
    ids = spec.get("ids")
    target = bulk.Target(tuple(ids) if ids is not None else None, spec.get("filter"), spec.get("q") or "")
    total = spec.get("total")
    report_progress(run, 0, total)
    outcome = bulk.run(
        slug, actor, name, value, target, progress=lambda done: report_progress(run, done, total)
    )
    report_progress(run, outcome.changed + outcome.refused, total)
    return {"slug": slug, "field": name, **outcome.as_json()}
