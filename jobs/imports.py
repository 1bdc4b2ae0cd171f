"""Import jobs: a file written into a table (``exports.imports``), with progress for the browser."""

from __future__ import annotations

from collections.abc import Callable

from rq import get_current_job

from jobs.runtime import app_job, report_progress
from models import JobRun


def _reporter(run: JobRun) -> Callable[[int, int, bool], None]:
    def report(done: int, total: int, durable: bool) -> None:
        if durable:
            report_progress(run, done, total)
            return
        # One open transaction (all-or-nothing, undo) that a commit here would cut short: progress in Redis.
        job = get_current_job()
        if job is not None:
            job.meta["progress"] = {"done": done, "total": total}
            job.save_meta()

    return report


@app_job
def run_import(run: JobRun, import_id: int) -> dict:
    from exports import imports

    return imports.run(import_id, _reporter(run))


@app_job
def undo_import(run: JobRun, import_id: int, user_id: int) -> dict:
    from exports import imports

    return imports.run_undo(import_id, user_id, _reporter(run))
