"""Exports of a table's view: started by a user, written by a job, served to their owner until they expire.

The job reads through the query layer (``custom_fields.query``) as the user who started it, with the
screen's filters, sort, quick search and columns: a hidden field or a row out of their reach never reaches
the file, and neither does the label of a linked record they may not read. The export right
(``access``'s "export" action) is checked when it starts and again when the job runs.
"""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select

from app.extensions import db
from custom_fields import runtime
from custom_fields.access import Actor, grants
from custom_fields.query import QueryError, TableQuery
from custom_fields.types import REGISTRY
from exports.csv_file import CsvWriter
from exports.store import file_store, scratch_dir
from exports.xlsx import Column, WorkbookWriter, Written
from models.exports import ExportFile, ExportStatus
from models.system import utcnow

FORMATS = ("xlsx", "csv")
MEDIA_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
}
BATCH = 2_000
#: Progress is written at most this often (seconds): a million rows do not mean a million commits.
PROGRESS_EVERY = 1.0
ACTIVE = (ExportStatus.queued, ExportStatus.running)


class ExportRefused(Exception):  # noqa: N818 (a refusal, not a failure)
    """An export that cannot start; the message is for the user."""


class ExportCancelled(Exception):  # noqa: N818
    pass


def clean_state(raw: Any) -> dict[str, Any]:
    """The screen's state as an export keeps it: filter (query-layer JSON), sort keys, quick search,
    columns. Unknown keys are dropped; the query layer judges the rest."""
    state = raw if isinstance(raw, dict) else {}
    sort = state.get("sort") or []
    fields = state.get("fields") or []
    return {
        "filter": state.get("filter"),
        "sort": [s for s in sort if isinstance(s, str)][:10] if isinstance(sort, list) else [],
        "q": state.get("q") if isinstance(state.get("q"), str) else "",
        "fields": [f for f in fields if isinstance(f, str)][:500] if isinstance(fields, list) else [],
    }


def query_for(slug: str, actor: Actor, state: dict[str, Any]) -> TableQuery:
    """The query the export reads, for ``actor``; raises ``ExportRefused`` without the export right and
    ``QueryError`` for a state the query layer refuses."""
    query = TableQuery(slug, actor, "read")
    if not query.rights.can("export"):
        raise ExportRefused(_("You may not export this table."))
    query = query.where(state.get("filter")).search(state.get("q") or "")
    if state.get("sort"):
        query = query.order_by(*state["sort"])
    if state.get("fields"):
        query = query.fields(*state["fields"])
    return query


def start(
    slug: str,
    actor: Actor,
    raw_state: Any,
    file_format: str = "xlsx",
    *,
    source_url: str = "",
    language: str = "en",
    report: dict[str, Any] | None = None,
    title: str | None = None,
) -> ExportFile:
    """Check and record an export, then hand it to a worker. Raises ``ExportRefused`` or ``QueryError``."""
    from jobs.exports import run_export
    from jobs.queues import JobQueueUnavailable, enqueue

    export = record(
        slug,
        actor,
        raw_state,
        file_format,
        source_url=source_url,
        language=language,
        report=report,
        title=title,
    )
    queue = current_app.config.get("TABULA_EXPORT_QUEUE") or "default"
    try:
        run = enqueue("export", run_export, export.id, user_id=actor.user_id, queue=queue, timeout=6 * 3600)
    except JobQueueUnavailable as unavailable:  # never "waiting" for a job that does not exist
        export.status, export.message, export.finished_at = ExportStatus.failed, str(unavailable), utcnow()
        db.session.commit()
        raise
    export.job_run_id = run.id
    db.session.commit()
    return export


def record(
    slug: str,
    actor: Actor,
    raw_state: Any,
    file_format: str = "xlsx",
    *,
    source_url: str = "",
    language: str = "en",
    shared_with: Sequence[int] = (),
    report: dict[str, Any] | None = None,
    title: str | None = None,
) -> ExportFile:
    """Check and record an export for ``run`` to write (``start`` hands it to a worker; a schedule's job
    writes it itself). ``report`` makes it a report's workbook (``{"spec": ..., "labels": ..., "chart":
    ...}``): its summary and chart before the records. Raises ``ExportRefused`` or ``QueryError``."""
    if file_format not in FORMATS:
        raise ExportRefused(_("Unknown file format."))
    if actor.user_id is None:
        raise ExportRefused(_("You may not export this table."))
    state = clean_state(raw_state)
    if report is not None:
        state["report"] = report
    query = query_for(slug, actor, state)
    expected = query.count()
    export = ExportFile(
        owner_id=actor.user_id,
        entity_id=query.entity.id,
        title=(title or str(query.entity.plural_label))[:200],
        file_format=file_format,
        view_state=state,
        source_url=source_url[:2000],
        language=language,
        rows_expected=expected.value,
        rows_estimated=not expected.exact,
        shared_with=[int(u) for u in shared_with],
    )
    db.session.add(export)
    db.session.commit()
    return export


def cells_of(query: TableQuery) -> tuple[list[Column], Callable[[dict[str, Any]], list[Any]]]:
    columns = [c for c in query.columns if c.name != "id"] or list(query.columns)
    headers = [Column(str(c.spec.label), REGISTRY[c.type].xlsx_format(c.spec)) for c in columns]

    plan = [(c.name, c.reference is not None, REGISTRY[c.type].export_value, c.spec) for c in columns]

    def cells(row: dict[str, Any]) -> list[Any]:
        labels = row.get("_labels") or {}
        out: list[Any] = []
        for name, reference, export_value, spec in plan:
            value = row.get(name)
            if value is not None and reference:
                out.append(labels.get(name) or f"#{value}")  # an undisclosed label shows the link only
            else:
                out.append(export_value(value, spec))
        return out

    return headers, cells


def write(
    export: ExportFile,
    query: TableQuery,
    target: Path,
    on_progress: Callable[[int], None],
    prelude: Callable[[Any], None] | None = None,
) -> Written:
    """Write every row of ``query`` to ``target``; ``on_progress(rows)`` after each batch (it may raise
    ``ExportCancelled``). ``prelude`` writes a workbook's first sheets (a report's summary). An exception
    leaves no file."""
    headers, cells = cells_of(query)
    if export.file_format == "csv":
        writer: Any = CsvWriter(target, [c.header for c in headers], language=export.language)
    else:
        owner = _owner_name(export.owner_id)
        writer = WorkbookWriter(target, headers, title=export.title, author=owner, prelude=prelude)
    with writer:
        done = 0
        for batch in query.batches(BATCH):
            writer.write([cells(row) for row in batch])
            done += len(batch)
            on_progress(done)
        return writer.close()


def _report_summary(export: ExportFile, actor: Actor) -> Callable[[Any], None]:
    """The summary sheet and chart of an exported report, computed now as its owner may see it."""
    from exports import report_workbook, reports

    saved = export.view_state["report"]
    if saved.get("kind") == "plan_fact":
        from exports import plan_fact

        return plan_fact.workbook_summary(plan_fact.run(actor, saved.get("period")), export.title)
    if saved.get("kind") == "stage_conversion":
        from exports import stage_conversion

        found = stage_conversion.run(actor, saved.get("period"), saved.get("manager"))
        return stage_conversion.workbook_summary(found, export.title)
    spec = reports.ReportSpec.from_json(saved.get("spec"))
    pivot = reports.run(spec, actor)
    return report_workbook.summary_sheet(pivot, export.title, saved.get("labels") or {}, saved.get("chart"))


def _owner_name(user_id: int) -> str:
    return runtime.user_label(user_id) if user_id else ""


def run(export_id: int, report: Callable[[int, int | None], None]) -> dict[str, Any]:
    """The job's work (``jobs.exports.run_export``): idempotent — a ready export is left as it is."""
    export = db.session.get(ExportFile, export_id)
    if export is None:
        raise LookupError(f"export {export_id} does not exist")
    if export.status in (ExportStatus.ready, ExportStatus.cancelled):
        return {"status": str(export.status), "rows": export.rows_written}
    export.status, export.started_at, export.message = ExportStatus.running, utcnow(), ""
    db.session.commit()
    actor = Actor.for_user_id(export.owner_id, "job")
    target = scratch_dir() / f"export-{export.id}-{secrets.token_hex(6)}.{export.file_format}"
    last = [0.0]

    def on_progress(done: int) -> None:
        if time.monotonic() - last[0] < PROGRESS_EVERY:
            return
        last[0] = time.monotonic()
        db.session.refresh(export)
        if export.cancel_requested:
            raise ExportCancelled
        export.rows_written = done
        report(done, export.rows_expected)

    try:
        with force_locale(export.language):
            entity = runtime.current().by_id.get(export.entity_id or 0)
            if entity is None:
                raise ExportRefused(_("The table no longer exists."))
            query = query_for(entity.slug, actor, export.view_state or {})
            prelude = _report_summary(export, actor) if (export.view_state or {}).get("report") else None
            written = write(export, query, target, on_progress, prelude)
        key = f"exports/{export.owner_id}/{export.id}-{secrets.token_hex(8)}.{export.file_format}"
        file_store().put(written.path, key)
    except ExportCancelled:
        target.unlink(missing_ok=True)
        _finish(export, ExportStatus.cancelled, _("Cancelled."))
        return {"status": "cancelled"}
    except (ExportRefused, QueryError) as refused:
        target.unlink(missing_ok=True)
        _finish(export, ExportStatus.failed, str(refused))
        return {"status": "failed", "message": str(refused)}
    except BaseException:
        target.unlink(missing_ok=True)
        db.session.rollback()
        _finish(export, ExportStatus.failed, _("The export failed."))
        raise
    # Published: the file is whole in the store, and the row says so in one commit.
    export.storage_key, export.size, export.sha256 = key, written.size, written.sha256
    export.rows_written = written.rows
    export.expires_at = utcnow() + dt.timedelta(days=current_app.config.get("TABULA_EXPORT_DAYS", 7))
    _finish(export, ExportStatus.ready, "")
    report(written.rows, written.rows)
    return {"status": "ready", "rows": written.rows, "size": written.size}


def _finish(export: ExportFile, status: ExportStatus, message: str) -> None:
    export.status, export.message, export.finished_at = status, message, utcnow()
    db.session.commit()


# --- what users do with their exports ----------------------------------------------------------------------


def visible_to(export: ExportFile | None, user: Any, *, to_download: bool = False) -> bool:
    """Only the owner (and admins) ever see an export; everyone else gets "not found". The recipients of the
    schedule that made it may also open and download it (``to_download``), not cancel or delete it."""
    if export is None or user is None or not getattr(user, "is_authenticated", False):
        return False
    from custom_fields.access import is_admin

    if export.owner_id == user.id or is_admin(Actor.of_user(user)):
        return True
    return to_download and user.id in (export.shared_with or [])


def reconcile(export: ExportFile) -> ExportFile:
    """An export whose job died (worker killed, job lost) is failed with the job's reason, and whatever it
    had written removed: it is never left "running" nor offered."""
    if export.status not in ACTIVE or export.job_run_id is None:
        return export
    from jobs.runtime import reconcile as reconcile_run
    from jobs.runtime import translated_message
    from models import JobRun, JobStatus

    job = db.session.get(JobRun, export.job_run_id)
    if job is None:
        return export
    reconcile_run(job)
    if job.status == JobStatus.failed:
        remove_partial(export.id)
        db.session.refresh(export)
        if export.status in ACTIVE:
            _finish(export, ExportStatus.failed, translated_message(job.message) or _("The export failed."))
    return export


def remove_partial(export_id: int) -> None:
    """Whatever a job writing the export left in the scratch folder (the file, the writer's parts)."""
    for partial in scratch_dir().glob(f"export-{export_id}-*"):
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)


def cancel(export: ExportFile) -> None:
    if export.status == ExportStatus.queued:
        from jobs.queues import cancel_run

        cancel_run(export.job_run_id)
        _finish(export, ExportStatus.cancelled, _("Cancelled."))
    elif export.status == ExportStatus.running:
        export.cancel_requested = True
        db.session.commit()


def remove(export: ExportFile) -> None:
    """Delete an export and its file."""
    if export.status in ACTIVE:
        cancel(export)
    if export.storage_key:
        file_store().delete(export.storage_key)
    db.session.delete(export)
    db.session.commit()


def chunks(export: ExportFile) -> Iterator[bytes]:
    if export.status != ExportStatus.ready or not export.storage_key:
        raise FileNotFoundError(export.id)
    return file_store().chunks(export.storage_key)


def purge_expired(now: dt.datetime | None = None) -> int:
    """Remove the files and rows of expired exports (the daily job). Returns how many."""
    now = now or utcnow()
    expired = list(db.session.scalars(select(ExportFile).where(ExportFile.expires_at < now)))
    for export in expired:
        remove(export)
    return len(expired)


def mine(user_id: int, limit: int = 200) -> Sequence[ExportFile]:
    exports = db.session.scalars(
        select(ExportFile).where(ExportFile.owner_id == user_id).order_by(ExportFile.id.desc()).limit(limit)
    ).all()
    return [reconcile(e) for e in exports]


def allowed(slug: str, actor: Actor) -> bool:
    """Whether ``actor`` may export the table (to show the button)."""
    schema = runtime.current()
    entity = schema.entity(slug)
    if entity is None or entity.archived:
        return False
    rights = grants(actor, entity, schema.access)
    return rights.can("read") and rights.can("export")
