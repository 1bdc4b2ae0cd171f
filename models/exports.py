"""Exports: a view of a table written to a file in the background, kept for its owner until it expires."""

from __future__ import annotations

import datetime as dt
import enum

from flask_appbuilder import Model
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.system import utcnow


class ExportStatus(enum.StrEnum):  # noqa: N815 (member names equal their values, as JobStatus)
    queued = "queued"
    running = "running"
    ready = "ready"
    failed = "failed"
    cancelled = "cancelled"


class ExportFile(Model):
    """One export. ``ready`` is set in the same commit that records the file's size and checksum, after the
    file is complete in the store: a row that says ready always has a whole file behind it."""

    __tablename__ = "tabula_export"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(
        ForeignKey("ab_user.id", ondelete="CASCADE"), nullable=False, index=True
    )
    entity_id: Mapped[int | None] = mapped_column(ForeignKey("tabula_entity.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    file_format: Mapped[str] = mapped_column(String(8), nullable=False, default="xlsx")
    #: What was exported: {"filter": ..., "sort": [...], "q": "...", "fields": [...]} (the screen's state).
    view_state: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    #: The address of the screen it came from (to go back to it).
    source_url: Mapped[str] = mapped_column(String(2000), nullable=False, default="")
    language: Mapped[str] = mapped_column(String(8), nullable=False, default="en")
    status: Mapped[ExportStatus] = mapped_column(
        Enum(ExportStatus, name="tabula_export_status"), nullable=False, default=ExportStatus.queued
    )
    rows_written: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    rows_expected: Mapped[int | None] = mapped_column(BigInteger)
    rows_estimated: Mapped[bool] = mapped_column(default=False)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    storage_key: Mapped[str | None] = mapped_column(String(300))
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text, nullable=False, default="")
    job_run_id: Mapped[int | None] = mapped_column(ForeignKey("tabula_job_run.id", ondelete="SET NULL"))
    #: Users besides the owner who may download the file: the recipients of the schedule that made it.
    shared_with: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), index=True)

    def __repr__(self) -> str:
        return f"<ExportFile {self.id} {self.status}>"


class ExportSchedule(Model):
    """A saved view (or a saved report: ``report_id``) exported on a calendar (in ``TABULA_TIMEZONE``) and
    e-mailed to chosen users. It reads as its owner, each time: an owner who lost the right to export the
    table stops it."""

    __tablename__ = "tabula_export_schedule"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(
        ForeignKey("ab_user.id", ondelete="CASCADE"), nullable=False, index=True
    )
    view_id: Mapped[int | None] = mapped_column(
        ForeignKey("tabula_saved_view.id", ondelete="CASCADE"), nullable=True, index=True
    )
    #: A saved report instead of a view: its workbook (summary, chart, the records behind it) is sent.
    report_id: Mapped[int | None] = mapped_column(
        ForeignKey("tabula_saved_report.id", ondelete="CASCADE"), nullable=True, index=True
    )
    file_format: Mapped[str] = mapped_column(String(8), nullable=False, default="xlsx")
    #: "daily", "weekly" (``weekdays``, 0 = Monday) or "monthly" (``month_day``; shorter months: last day)
    frequency: Mapped[str] = mapped_column(String(10), nullable=False, default="weekly")
    weekdays: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    month_day: Mapped[int | None] = mapped_column(Integer)
    #: "HH:MM", local time of ``TABULA_TIMEZONE``
    at_time: Mapped[str] = mapped_column(String(5), nullable=False, default="08:00")
    #: Users it is mailed to besides the owner (who gets it when ``to_owner``).
    recipient_ids: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    to_owner: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    language: Mapped[str] = mapped_column(String(8), nullable=False, default="en")
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    #: Why the system stopped it (the owner lost the export right, the view is gone); empty if paused by hand.
    stopped_reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    next_run_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)

    def __repr__(self) -> str:
        return f"<ExportSchedule {self.id} {self.frequency} {self.at_time}>"


class ExportScheduleRun(Model):
    """One slot of a schedule, run once: the unique (schedule, slot) makes a second scheduler, or the same
    one firing twice, a no-op. After downtime the missed slots are one run (the latest), not one each."""

    __tablename__ = "tabula_export_schedule_run"
    __table_args__ = (UniqueConstraint("schedule_id", "slot_at", name="uq_tabula_export_schedule_run_slot"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(
        ForeignKey("tabula_export_schedule.id", ondelete="CASCADE"), nullable=False, index=True
    )
    slot_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    #: queued, running, sent (attached), linked (too big: a link), failed, stopped (the right was lost)
    status: Mapped[str] = mapped_column(String(10), nullable=False, default="queued")
    export_id: Mapped[int | None] = mapped_column(ForeignKey("tabula_export.id", ondelete="SET NULL"))
    job_run_id: Mapped[int | None] = mapped_column(ForeignKey("tabula_job_run.id", ondelete="SET NULL"))
    recipients: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    message: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class StoredFileChunk(Model):
    """A piece of a file kept in the database (``TABULA_FILE_STORE=database``: every machine that reaches the
    database serves the file, no shared folder needed)."""

    __tablename__ = "tabula_file_chunk"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
