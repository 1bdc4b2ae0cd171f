"""System tables: settings, seeded role grants, and the durable record of every background job."""

from __future__ import annotations

import datetime as dt
import enum

from flask_appbuilder import Model
from sqlalchemy import JSON, DateTime, Enum, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def seconds_left(done: int, total: int | None, started: dt.datetime | None) -> int | None:
    """Time left of a long run at the pace so far (imports, exports, conversions), None until it is known.
    ``started`` without a zone is UTC (SQLite keeps none)."""
    if not (started and total and done):
        return None
    started = started if started.tzinfo else started.replace(tzinfo=dt.UTC)
    elapsed = (utcnow() - started).total_seconds()
    return max(0, round(elapsed / done * max(total - done, 0)))


def percent(done: int, total: int | None) -> int:
    return min(100, round(100 * done / total)) if total else 0


class AppSetting(Model):
    """A key/value fact about this installation (e.g. when demo data was loaded)."""

    __tablename__ = "tabula_setting"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False, default="")


class SeededGrant(Model):
    """A permission the role seeder once granted, so that a grant an admin later revokes stays revoked."""

    __tablename__ = "tabula_seeded_grant"
    __table_args__ = (UniqueConstraint("role_name", "permission", "view_menu"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role_name: Mapped[str] = mapped_column(String(64), nullable=False)
    permission: Mapped[str] = mapped_column(String(100), nullable=False)
    view_menu: Mapped[str] = mapped_column(String(250), nullable=False)


class JobStatus(enum.StrEnum):  # noqa: N815 (see below)
    # Member names equal their values: FAB's enum search fields look members up by stored value.
    queued = "queued"
    running = "running"
    finished = "finished"
    failed = "failed"


class JobRun(Model):
    """One background job as the user sees it: progress while it runs, its outcome after Redis forgets it."""

    __tablename__ = "tabula_job_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50), nullable=False, index=True)
    status: Mapped[JobStatus] = mapped_column(
        Enum(JobStatus, name="tabula_job_status"),
        nullable=False,
        default=JobStatus.queued,
    )
    progress_done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    progress_total: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text, nullable=False, default="")
    result: Mapped[dict | None] = mapped_column(JSON)
    rq_job_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_by_fk: Mapped[int | None] = mapped_column(ForeignKey("ab_user.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    def __repr__(self) -> str:
        return f"<JobRun {self.id} {self.kind} {self.status}>"
