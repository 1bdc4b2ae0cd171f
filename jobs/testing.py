"""Job functions that exist to exercise the job runtime (failures, crashes); safe in production."""

from __future__ import annotations

import os
import signal

from jobs.runtime import app_job
from models import JobRun


@app_job
def fail(run: JobRun, message: str) -> None:
    raise ValueError(message)


@app_job
def die(run: JobRun) -> None:
    """The work horse kills itself, as an out-of-memory kill would."""
    os.kill(os.getpid(), signal.SIGKILL)


@app_job
def describe_table(run: JobRun, slug: str) -> dict:
    """What this worker sees of a table: its live fields and its count of live rows (follows schema
    changes), read by the named system read."""
    from custom_fields.query import TableQuery
    from custom_fields.runtime import current

    schema = current()
    return {
        "version": schema.version,
        "fields": [f.name for f in schema.entities[slug].live_fields],
        "count": TableQuery.system(slug, "a test describes the table").count().value,
    }
