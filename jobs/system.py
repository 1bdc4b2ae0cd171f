"""System jobs."""

from __future__ import annotations

import os
import socket
import time

from flask import current_app
from sqlalchemy import text

from app.extensions import db
from jobs.runtime import app_job, report_progress
from models import JobRun


@app_job
def selfcheck(run: JobRun, steps: int = 5, pause: float = 0.2) -> dict:
    """Prove a worker can reach the database and report progress; returns where it ran."""
    for step in range(1, steps + 1):
        db.session.execute(text("SELECT 1"))
        report_progress(run, step, steps)
        time.sleep(pause)
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "database": db.engine.dialect.name,
        "app": current_app.config["APP_NAME"],
    }
