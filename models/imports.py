"""Imports: a file a user uploaded into a table, how its columns map to fields, and what the import did,
row by row where it wrote (what undo needs)."""

from __future__ import annotations

import datetime as dt
import enum

from flask_appbuilder import Model
from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.system import utcnow


class ImportStatus(enum.StrEnum):  # noqa: N815 (member names equal their values, as JobStatus)
    uploaded = "uploaded"  # read and previewed, not started
    queued = "queued"
    running = "running"
    finished = "finished"  # written (skipped and refused rows counted)
    refused = "refused"  # all-or-nothing with bad rows: nothing written
    failed = "failed"  # the job stopped (a killed worker, an error); see ``rows_done``
    undoing = "undoing"  # a worker reverts it, in one transaction (back to finished if it cannot)
    undone = "undone"


#: What an import does with a row: make a new record, change the record it matches, or either.
MODES = ("create", "update", "upsert")
#: What to do with a bad row: refuse the whole file, or skip the row (and write the rest).
ON_ERROR = ("all", "skip")


class ImportRun(Model):
    """One import. In skip-bad-rows mode each batch commits with ``rows_done`` and its ``ImportItem`` rows, so
    a killed worker leaves an exact record and a re-run starts after the last batch written; all-or-nothing
    commits once, with the final counts."""

    __tablename__ = "tabula_import"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(
        ForeignKey("ab_user.id", ondelete="CASCADE"), nullable=False, index=True
    )
    entity_id: Mapped[int | None] = mapped_column(ForeignKey("tabula_entity.id", ondelete="SET NULL"))
    file_name: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    file_kind: Mapped[str] = mapped_column(String(8), nullable=False, default="csv")
    #: The uploaded file in the file store (removed once the import has run).
    storage_key: Mapped[str | None] = mapped_column(String(300))
    #: How the file is read: {"sheet", "header_row", "header_rows", "encoding", "delimiter"}.
    options: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    #: Column index (as text) -> field name.
    mapping: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    mode: Mapped[str] = mapped_column(String(8), nullable=False, default="create")
    #: How a row finds its record: a field name, or "email" / "phone" / "tax_id" (the CRM's matching rules).
    match_on: Mapped[str | None] = mapped_column(String(63))
    on_error: Mapped[str] = mapped_column(String(8), nullable=False, default="skip")
    language: Mapped[str] = mapped_column(String(8), nullable=False, default="en")
    status: Mapped[str] = mapped_column(String(12), nullable=False, default=ImportStatus.uploaded)
    rows_total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    #: Rows of the file (after the header) taken care of by the batches committed so far.
    rows_done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    skipped: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    refused: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    #: {"columns": {title: [first messages]}, "duplicates": [[row, first row]], ...} for the result screen.
    report: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    #: The refused rows as a workbook (original columns and an error column), in the file store.
    refused_key: Mapped[str | None] = mapped_column(String(300))
    message: Mapped[str] = mapped_column(Text, nullable=False, default="")
    job_run_id: Mapped[int | None] = mapped_column(ForeignKey("tabula_job_run.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    undone_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    def __repr__(self) -> str:
        return f"<ImportRun {self.id} {self.status}>"


class ImportItem(Model):
    """A record an import created or changed: for a change, the values it replaced (each field type's JSON
    form); ``version`` is the record's ``row_version`` right after the import wrote it (undo refuses a
    record changed since)."""

    __tablename__ = "tabula_import_item"
    __table_args__ = (Index("ix_tabula_import_item_import", "import_id", "record_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("tabula_import.id", ondelete="CASCADE"), nullable=False)
    row_number: Mapped[int] = mapped_column(Integer, nullable=False)
    record_id: Mapped[int] = mapped_column(Integer, nullable=False)
    action: Mapped[str] = mapped_column(String(8), nullable=False)
    before: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
    version: Mapped[int] = mapped_column(Integer, nullable=False)
