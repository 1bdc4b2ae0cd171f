"""Import jobs: a file written into a table (``exports.imports``), with progress for the browser."""

from __future__ import annotations

from rq import get_current_job

from jobs.runtime import app_job, report_progress
from models import JobRun


@app_job
def run_import(run: JobRun, import_id: int) -> dict:
    from exports import imports

    def report(done: int, total: int, durable: bool) -> None:
        if durable:
            report_progress(run, done, total)
            return
        # All-or-nothing: one open transaction that a commit here would cut short; progress in Redis only.
        job = get_current_job()
        if job is not None:
            job.meta["progress"] = {"done": done, "total": total}
            job.save_meta()

    return imports.run(import_id, report)
