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
