"""Imports: a file uploaded into a table, read (``exports.readers``), checked row by row
(``exports.import_rows``), written by a job through the write path in batches, undone on request.

The uploaded file waits in the file store (every worker reads it) and is removed once the import has run.
All-or-nothing writes every batch in one transaction: a killed worker leaves nothing. Skip-bad-rows commits
each batch together with the import's counts and its ``ImportItem`` rows: a killed worker leaves an exact
record, and running the import again starts after the last batch written (never a row twice). Every record
an import creates or changes is listed with its version, so undo reverts exactly those, and refuses when
one was changed since.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select, update

from app.extensions import db
from custom_fields import records, runtime
from custom_fields.access import Actor, grants, is_admin
from custom_fields.link_labels import LinkLabels
from custom_fields.query import QueryError, TableQuery
from custom_fields.types import REGISTRY
from exports import readers
from exports.import_rows import ImportRefused, Row, field_specs, matcher, parse_rows, plan
from exports.store import file_store, scratch_dir
from models import Field
from models.imports import MODES, ON_ERROR, ImportItem, ImportRun, ImportStatus
from models.system import utcnow

BATCH = 1_000
PROGRESS_EVERY = 1.0
#: Rows a column's type is inferred from.
INFER_ROWS = 1_000
#: In ``ImportRun.options``: the import makes a new table from its file.
NEW_TABLE = "new_table"
PREVIEW_ROWS = 20
#: Rows of a workbook converted at upload (the titles, to map the columns; the preview reads it whole).
UPLOAD_LOOK = 50
ACTIVE = (ImportStatus.queued, ImportStatus.running, ImportStatus.undoing)
#: First errors kept per column for the result screen.
ERRORS_PER_COLUMN = 5

Progress = Callable[[int, int, bool], None]  # (done, total, durable: may commit)


def allowed(slug: str, actor: Actor) -> bool:
    """Whether ``actor`` may import into the table (the *import* right of the access rules)."""
    schema = runtime.current()
    entity = schema.entity(slug)
    if entity is None or entity.archived:
        return False
    rights = grants(actor, entity, schema.access)
    return rights.can("import") and (rights.can("add") or rights.can("edit"))


def _query(slug: str, actor: Actor) -> TableQuery:
    try:
        query = TableQuery(slug, actor, "read")
    except QueryError as exc:
        raise ImportRefused(str(exc)) from None
    if not query.rights.can("import"):
        raise ImportRefused(_("You may not import into this table."))
    return query


# --- the uploaded file -------------------------------------------------------------------------------------


def upload(slug: str | None, actor: Actor, local: Path, file_name: str, *, language: str = "en") -> ImportRun:
    """Keep an uploaded file (``local``, moved into the file store) for an import into ``slug``, or (None)
    into a new table made from the file (``create_table``: administrators only); raises ``ImportRefused``
    or ``readers.ImportFileError`` (nothing kept then)."""
    config = current_app.config
    try:
        if slug is None and not is_admin(actor):
            raise ImportRefused(_("Only an administrator may create tables."))
        query = _query(slug, actor) if slug is not None else None
        if local.stat().st_size > config["TABULA_IMPORT_MAX_BYTES"]:
            raise ImportRefused(
                _("The file is larger than %(n)d MB.", n=config["TABULA_IMPORT_MAX_BYTES"] // 2**20)
            )
        kind = readers.sniff_kind(local, config["TABULA_IMPORT_MAX_UNPACKED"])
        grid = _read(local, kind, {}, limit=UPLOAD_LOOK)  # the titles, to map the columns
        if not grid.rows:
            raise ImportRefused(_("The file has no rows."))
    except BaseException:
        local.unlink(missing_ok=True)
        raise
    run = ImportRun(
        owner_id=actor.user_id,
        entity_id=query.entity.id if query is not None else None,
        file_name=file_name[:255],
        file_kind=kind,
        options={
            "sheet": grid.sheet,
            "header_row": 1,
            "header_rows": 1,
            **({NEW_TABLE: True} if query is None else {}),
        },
        language=language,
        status=ImportStatus.uploaded,
    )
    db.session.add(run)
    db.session.commit()
    key = f"imports/{actor.user_id}/{run.id}-{secrets.token_hex(8)}.upload"
    file_store().put(local, key)
    run.storage_key = key
    if query is None:  # every column becomes a field once the table is made (``create_table``)
        db.session.commit()
        return run
    titles = readers.headers(grid)
    mapping = readers.auto_map(titles, _fields(query))
    editable = {name for name, _label in _fields(query)}
    remembered = remembered_mapping(query.entity.id, actor.user_id, titles)
    for index, name in remembered.items():
        if name in editable and name not in mapping.values():
            mapping[index] = name
    run.mapping = {str(i): n for i, n in sorted(mapping.items())}
    db.session.commit()
    return run


def is_new_table(item: ImportRun) -> bool:
    """Whether the import makes a new table from its file, which it has not made yet."""
    return item.entity_id is None and bool((item.options or {}).get(NEW_TABLE))


def _entity_of(item: ImportRun) -> Any:
    entity = runtime.current().by_id.get(item.entity_id or 0)
    if entity is None:
        if is_new_table(item):
            raise ImportRefused(_("Create the table from the file first."))
        raise ImportRefused(_("The table no longer exists."))
    return entity


def _fields(query: TableQuery) -> list[tuple[str, str]]:
    return [(spec.name, str(spec.label)) for spec in query.rights.editable_fields]


def _read(path: Path, kind: str, options: dict[str, Any], limit: int | None = None) -> readers.Grid:
    if kind == "csv":
        return readers.read_csv(path.read_bytes(), options.get("encoding"), options.get("delimiter"))
    return readers.read_workbook(path, kind, options.get("sheet"), limit)


@contextmanager
def local_copy(run: ImportRun) -> Iterator[Path]:
    """The uploaded file as a local file for as long as the block runs."""
    if not run.storage_key:
        raise ImportRefused(_("The uploaded file is no longer there: upload it again."))
    target = scratch_dir() / f"import-{run.id}-{secrets.token_hex(6)}"
    try:
        with open(target, "wb") as handle:
            for chunk in file_store().chunks(run.storage_key):
                handle.write(chunk)
    except FileNotFoundError:
        target.unlink(missing_ok=True)
        raise ImportRefused(_("The uploaded file is no longer there: upload it again.")) from None
    try:
        yield target
    finally:
        target.unlink(missing_ok=True)


def clean_options(raw: Any) -> dict[str, Any]:
    """How to read the file, as the user chose: sheet, header row, header rows, encoding, delimiter."""
    raw = raw if isinstance(raw, dict) else {}
    options: dict[str, Any] = {}
    if isinstance(raw.get("sheet"), str):
        options["sheet"] = raw["sheet"][:100]
    for name, top in (("header_row", 1000), ("header_rows", 5)):
        try:
            options[name] = min(top, max(1, int(raw.get(name) or 1)))
        except (TypeError, ValueError):
            raise ImportRefused(_("The header row must be a number.")) from None
    encoding = raw.get("encoding") or None
    if encoding is not None and encoding not in readers.ENCODINGS:
        raise ImportRefused(_("Unknown text encoding."))
    delimiter = raw.get("delimiter") or None
    if delimiter is not None and delimiter not in readers.DELIMITERS:
        raise ImportRefused(_("Unknown delimiter."))
    options.update(encoding=encoding, delimiter=delimiter)
    return options


def preview(run: ImportRun, actor: Actor, raw_options: Any = None) -> dict[str, Any]:
    """What the file holds read with ``raw_options`` (default: the import's): sheets, encoding and delimiter
    found, column titles, the mapping, each column's inferred type, and the first rows parsed."""
    from custom_fields.types import infer_field_type

    options = clean_options(raw_options) if raw_options is not None else dict(run.options)
    new_table = is_new_table(run)
    if new_table and not is_admin(actor):
        raise ImportRefused(_("Only an administrator may create tables."))
    query = None if new_table else _query(_entity_of(run).slug, actor)
    with local_copy(run) as path:
        grid = _read(path, run.file_kind, options)
    titles = readers.headers(grid, options.get("header_row", 1), options.get("header_rows", 1))
    body = readers.data_rows(grid, options.get("header_row", 1), options.get("header_rows", 1))
    sample = body[:INFER_ROWS]
    columns = [[cells[i] if i < len(cells) else None for _n, cells in sample] for i in range(len(titles))]
    inferred = [infer_field_type(values) for values in columns]
    mapping = run.mapping
    if raw_options is not None and query is not None:
        mapping = {str(i): n for i, n in readers.auto_map(titles, _fields(query)).items()}
    return {
        "new_table": new_table,
        "sheets": grid.sheets,
        "sheet": grid.sheet,
        "encoding": grid.encoding,
        "delimiter": grid.delimiter,
        "options": options,
        "titles": titles,
        "rows_total": len(body),
        "mapping": mapping,
        "inferred": [{"type": t, "settings": s} for t, s in inferred],
        "rows": [[number, [_shown(c) for c in cells]] for number, cells in body[:PREVIEW_ROWS]],
    }


def _shown(cell: Any) -> Any:
    if cell is None or isinstance(cell, bool | int | str):
        return cell
    if hasattr(cell, "isoformat"):
        return cell.isoformat()
    return str(cell)


# --- starting and running ----------------------------------------------------------------------------------


def configure(
    run: ImportRun,
    actor: Actor,
    *,
    options: Any,
    mapping: Any,
    mode: str,
    match_on: str | None,
    on_error: str,
) -> ImportRun:
    """Record how the import runs (checked: fields the user may set, a key to match by); not started."""
    if run.status != ImportStatus.uploaded:
        raise ImportRefused(_("This import has already run."))
    if mode not in MODES or on_error not in ON_ERROR:
        raise ImportRefused(_("Unknown import mode."))
    query = _query(_entity_of(run).slug, actor)
    cleaned: dict[int, str] = {}
    for index, name in (mapping or {}).items() if isinstance(mapping, dict) else ():
        if name and isinstance(name, str) and str(index).isdecimal():
            cleaned[int(index)] = name
    if not cleaned:
        raise ImportRefused(_("Map at least one column to a field."))
    field_specs(query, cleaned)
    if mode != "create" and not match_on:
        raise ImportRefused(_("Choose how rows find the records they update."))
    matcher(query, match_on or None, set(cleaned.values()))
    run.options = clean_options(options)
    run.mapping = {str(i): n for i, n in cleaned.items()}
    run.mode, run.match_on, run.on_error = mode, match_on or None, on_error
    db.session.commit()
    return run


def start(run: ImportRun, actor: Actor) -> ImportRun:
    """Hand a configured import to a worker."""
    from jobs.imports import run_import

    if run.status not in (ImportStatus.uploaded, ImportStatus.failed):
        raise ImportRefused(_("This import has already run."))
    _query(_entity_of(run).slug, actor)
    if not run.mapping:
        raise ImportRefused(_("Map at least one column to a field."))
    return _hand_to_worker(run, actor, ImportStatus.queued, "import", run_import, run.id)


def run(import_id: int, report: Progress) -> dict[str, Any]:
    """The job's work (``jobs.imports.run_import``); a finished, refused or undone import is left alone."""
    item = db.session.get(ImportRun, import_id)
    if item is None:
        raise LookupError(f"import {import_id} does not exist")
    if item.status in (ImportStatus.finished, ImportStatus.refused, ImportStatus.undone):
        return {"status": item.status}
    item.status, item.message = ImportStatus.running, ""
    item.started_at = item.started_at or utcnow()
    db.session.commit()
    actor = Actor.for_user_id(item.owner_id, "import")
    try:
        with force_locale(item.language):
            return _run(item, actor, report)
    except (ImportRefused, readers.ImportFileError, QueryError, records.RecordError) as refused:
        db.session.rollback()
        _finish(item, ImportStatus.failed, str(refused))
        return {"status": "failed", "message": str(refused)}


def _run(item: ImportRun, actor: Actor, report: Progress) -> dict[str, Any]:
    entity = _entity_of(item)
    query = _query(entity.slug, actor)
    mapping = {int(i): n for i, n in item.mapping.items()}
    specs = field_specs(query, mapping)
    options = item.options or {}
    with local_copy(item) as path:
        grid = _read(path, item.file_kind, options)
    titles = readers.headers(grid, options.get("header_row", 1), options.get("header_rows", 1))
    body = readers.data_rows(grid, options.get("header_row", 1), options.get("header_rows", 1))
    rows = parse_rows(body, specs, creating=item.mode != "update", labels=LinkLabels(actor))
    plan(rows, query, matcher(query, item.match_on, set(mapping.values())), item.mode)
    labels = {spec.name: str(spec.label) for spec in specs.values()}
    item.rows_total = len(rows)
    item.options = {**options, "titles": [readers.folded(t) for t in titles]}  # remembered for the next
    bad = [row for row in rows if row.action == "refuse"]
    if item.on_error == "all" and bad:
        message = _("%(n)d rows have errors: nothing was imported.", n=len(bad))
        return _refuse_all(item, rows, titles, labels, message)
    writer = _Writer(item, entity.slug, actor, query, labels, report)
    try:
        if item.on_error == "all":
            with records.atomic():  # every batch and the outcome in one transaction
                writer.write(rows)
                _complete(item, rows, titles, labels)
        else:
            writer.write(rows)
            _complete(item, rows, titles, labels)
            db.session.commit()
    except _AllRefused as refused:
        return _refuse_all(item, rows, titles, labels, str(refused))
    _remove_upload(item)
    report(item.rows_total, item.rows_total, True)
    return {
        "status": str(item.status),
        "created": item.created,
        "updated": item.updated,
        "skipped": item.skipped,
        "refused": item.refused,
    }


class _AllRefused(Exception):  # noqa: N818
    pass


class _Writer:
    """Writes the planned rows in batches through the write path, recording each batch."""

    def __init__(
        self,
        item: ImportRun,
        slug: str,
        actor: Actor,
        query: TableQuery,
        labels: dict[str, str],
        report: Progress,
    ) -> None:
        self.item, self.slug, self.actor, self.query, self.labels = item, slug, actor, query, labels
        self.report = report
        self.last = 0.0
        self.late_refusals: dict[str, str] = dict((item.report or {}).get("write_refused") or {})

    def write(self, rows: list[Row]) -> None:
        item = self.item
        durable = item.on_error != "all"
        for row in rows:
            message = self.late_refusals.get(str(row.number))
            if message is not None:
                row.action, row.errors = "refuse", {"": message}
        for start in range(item.rows_done if durable else 0, len(rows), BATCH):
            batch = rows[start : start + BATCH]
            self._batch(batch, start + len(batch))
            if time.monotonic() - self.last >= PROGRESS_EVERY:
                self.last = time.monotonic()
                self.report(start + len(batch), len(rows), durable)

    def _batch(self, batch: list[Row], done: int) -> None:
        while True:
            creates = [row for row in batch if row.action == "create"]
            updates = [row for row in batch if row.action == "update"]
            stage = creates
            try:
                with records.atomic():
                    saved = records.create_many(self.slug, [row.values for row in creates], self.actor)
                    items = [
                        {"import_id": self.item.id, "row_number": row.number, "record_id": s.id,
                         "action": "create", "before": None, "version": s.version}
                        for row, s in zip(creates, saved, strict=True)
                    ]  # fmt: skip
                    stage = updates
                    items += self._update(updates)
                    records.insert_rows(ImportItem.__table__, items)  # in the batch's transaction
                    self._count(batch, done)
                return
            except records.RecordInvalid as exc:
                if self.item.on_error == "all":
                    raise _AllRefused(self._refusal(stage, exc)) from None
                self._refuse(stage, exc)
            except records.RecordError as exc:
                if self.item.on_error == "all":
                    raise _AllRefused(str(exc)) from None
                for row in stage:
                    row.action, row.errors = "refuse", {"": str(exc)}
                    self.late_refusals[str(row.number)] = str(exc)

    def _update(self, updates: list[Row]) -> list[dict[str, Any]]:
        if not updates:
            return []
        names = sorted({name for row in updates for name in row.values})
        current = self.query.fields(*names).rows_of(row.record_id for row in updates)
        versions = self.query.versions(row.record_id for row in updates)
        specs = {spec.name: spec for spec in self.query.entity.live_fields}
        changes, befores = [], []
        for row in updates:
            before = current.get(row.record_id) or {}
            befores.append({n: REGISTRY[specs[n].type].to_json(before.get(n), specs[n]) for n in row.values})
            changes.append((row.record_id, row.values, versions.get(row.record_id)))
        saved = records.update_many(self.slug, changes, self.actor)
        return [
            {"import_id": self.item.id, "row_number": row.number, "record_id": s.id, "action": "update",
             "before": before, "version": s.version}
            for row, s, before in zip(updates, saved, befores, strict=True)
        ]  # fmt: skip

    def _refusal(self, stage: list[Row], exc: records.RecordInvalid) -> str:
        self._refuse(stage, exc)
        bad = [row for row in stage if row.action == "refuse"]
        return _("%(n)d rows have errors: nothing was imported.", n=max(1, len(bad)))

    def _refuse(self, stage: list[Row], exc: records.RecordInvalid) -> None:
        if not exc.rows:
            for row in stage:
                row.action, row.errors = "refuse", {"": str(exc)}
                self.late_refusals[str(row.number)] = str(exc)
            return
        for index, errors in exc.rows.items():
            if 0 <= index < len(stage):
                row = stage[index]
                row.action, row.errors = "refuse", dict(errors)
                self.late_refusals[str(row.number)] = row.error_text(self.labels)

    def _count(self, batch: list[Row], done: int) -> None:
        item = self.item
        item.created += sum(row.action == "create" for row in batch)
        item.updated += sum(row.action == "update" for row in batch)
        item.skipped += sum(row.action == "skip" for row in batch)
        item.refused += sum(row.action == "refuse" for row in batch)
        item.rows_done = done
        item.report = {**(item.report or {}), "write_refused": dict(self.late_refusals)}


def _complete(item: ImportRun, rows: list[Row], titles: list[str], labels: dict[str, str]) -> None:
    """The outcome (the caller commits it): counts kept by the batches, the errors, the refused rows' file."""
    item.report = {**(item.report or {}), **_summary(rows, labels)}
    if any(row.action == "refuse" for row in rows):
        item.refused_key = _refused_file(item, rows, titles, labels)
    item.status, item.finished_at = ImportStatus.finished, utcnow()


def _refuse_all(
    item: ImportRun, rows: list[Row], titles: list[str], labels: dict[str, str], message: str
) -> dict[str, Any]:
    db.session.rollback()
    db.session.refresh(item)
    item.rows_total = len(rows)
    item.created = item.updated = item.rows_done = item.skipped = 0
    item.refused = sum(row.action == "refuse" for row in rows)
    item.report = _summary(rows, labels)
    item.refused_key = _refused_file(item, rows, titles, labels) if item.refused else None
    item.status, item.message, item.finished_at = ImportStatus.refused, message, utcnow()
    db.session.commit()
    return {"status": "refused", "refused": item.refused}


def _summary(rows: list[Row], labels: dict[str, str]) -> dict[str, Any]:
    """Counts and the first errors per column (by the field's label), and the duplicates in the file."""
    columns: dict[str, dict[str, Any]] = {}
    for row in rows:
        for name, message in row.errors.items():
            label = labels.get(name, "") or _("Row in the file")
            entry = columns.setdefault(label, {"count": 0, "first": []})
            entry["count"] += 1
            if len(entry["first"]) < ERRORS_PER_COLUMN:
                entry["first"].append([row.number, message])
    return {"errors": columns}


def _refused_file(item: ImportRun, rows: list[Row], titles: list[str], labels: dict[str, str]) -> str:
    """The refused rows as a workbook: the file's columns as read, and the reason (text stays text)."""
    import xlsxwriter

    target = scratch_dir() / f"import-{item.id}-refused-{secrets.token_hex(6)}.xlsx"
    options = {"constant_memory": True, "strings_to_formulas": False, "strings_to_urls": False,
               "strings_to_numbers": False}  # fmt: skip
    book = xlsxwriter.Workbook(str(target), options)
    sheet = book.add_worksheet(_("Refused rows")[:31])
    day = book.add_format({"num_format": "dd.mm.yyyy"})
    moment = book.add_format({"num_format": "dd.mm.yyyy hh:mm"})
    header = [*titles, _("Row in the file"), _("What is wrong")]
    for column, title in enumerate(header):
        sheet.write_string(0, column, title)
    at = 1
    for row in rows:
        if row.action != "refuse":
            continue
        for column, cell in enumerate(row.cells[: len(titles)]):
            _write_cell(sheet, at, column, cell, day, moment)
        sheet.write_number(at, len(titles), row.number)
        sheet.write_string(at, len(titles) + 1, row.error_text(labels))
        at += 1
    book.close()
    key = f"imports/{item.owner_id}/{item.id}-refused-{secrets.token_hex(8)}.xlsx"
    file_store().put(target, key)
    return key


def _write_cell(sheet: Any, row: int, column: int, cell: Any, day: Any, moment: Any) -> None:
    import datetime as dt

    if cell is None or cell == "":
        return
    if isinstance(cell, bool):
        sheet.write_boolean(row, column, cell)
    elif isinstance(cell, int | float):
        sheet.write_number(row, column, cell)
    elif isinstance(cell, dt.datetime):
        sheet.write_datetime(row, column, cell.replace(tzinfo=None), moment)
    elif isinstance(cell, dt.date):
        sheet.write_datetime(row, column, dt.datetime.combine(cell, dt.time()), day)
    else:
        sheet.write_string(row, column, str(cell)[:32767])


def _remove_upload(item: ImportRun) -> None:
    """The uploaded file, once the outcome is committed (it is needed again until then)."""
    if item.storage_key:
        file_store().delete(item.storage_key)
        item.storage_key = None
        db.session.commit()


def _finish(item: ImportRun, status: ImportStatus, message: str) -> None:
    db.session.refresh(item)
    item.status, item.message, item.finished_at = status, message, utcnow()
    db.session.commit()


# --- what users do with imports ----------------------------------------------------------------------------


def visible_to(item: ImportRun | None, user: Any) -> bool:
    """Only the owner (and admins) ever see an import; everyone else gets "not found"."""
    if item is None or user is None or not getattr(user, "is_authenticated", False):
        return False
    return item.owner_id == user.id or is_admin(Actor.of_user(user))


def reconcile(item: ImportRun) -> ImportRun:
    """An import whose job died (worker killed) is marked failed, keeping the record of what it wrote; it
    may be run again, and starts after the last batch written."""
    if item.status not in ACTIVE or item.job_run_id is None:
        return item
    from jobs.runtime import reconcile as reconcile_run
    from jobs.runtime import translated_message
    from models import JobRun, JobStatus

    job = db.session.get(JobRun, item.job_run_id)
    if job is None:
        return item
    reconcile_run(job)
    if job.status == JobStatus.failed and item.status == ImportStatus.undoing:
        _undo_stopped(item, translated_message(job.message))
    elif job.status == JobStatus.failed:
        for partial in scratch_dir().glob(f"import-{item.id}-*"):
            if partial.is_dir():
                shutil.rmtree(partial, ignore_errors=True)
            else:
                partial.unlink(missing_ok=True)
        db.session.refresh(item)
        if item.status in ACTIVE:
            _finish(item, ImportStatus.failed, translated_message(job.message) or _("The import failed."))
    return item


def refused_chunks(item: ImportRun) -> Iterator[bytes]:
    if not item.refused_key:
        raise FileNotFoundError(item.id)
    return file_store().chunks(item.refused_key)


def request_undo(item: ImportRun, actor: Actor) -> ImportRun:
    """Hand the undo to a worker (30,000 records are more than a request should wait for); the page follows
    its progress. Refused at once when the import is not finished or its table is gone."""
    from jobs.imports import undo_import

    if item.status == ImportStatus.undoing:
        raise ImportRefused(_("This import is being undone."))
    _query(_undo_target(item).slug, actor)
    return _hand_to_worker(
        item, actor, ImportStatus.undoing, "import-undo", undo_import, item.id, actor.user_id
    )


def _hand_to_worker(
    item: ImportRun, actor: Actor, status: ImportStatus, kind: str, job: Any, *args: Any
) -> ImportRun:
    """Enqueue the import's job, ``item`` showing ``status`` meanwhile; Redis unreachable leaves the import
    as it was (JobQueueUnavailable reaches the caller), never waiting for a job that does not exist."""
    from jobs.queues import enqueue

    was = item.status
    claimed = db.session.execute(
        update(ImportRun)
        .where(ImportRun.id == item.id, ImportRun.status == was)
        .values(status=status, message="")
    ).rowcount  # two clicks at once: only one of them starts a job
    db.session.commit()
    db.session.refresh(item)
    if not claimed:
        raise ImportRefused(_("This import has already run."))
    queue = current_app.config.get("TABULA_IMPORT_QUEUE") or "default"
    try:
        run = enqueue(kind, job, *args, user_id=actor.user_id, queue=queue, timeout=6 * 3600)
    except Exception:
        db.session.rollback()
        item.status = was
        db.session.commit()
        raise
    item.job_run_id = run.id
    db.session.commit()
    return item


def run_undo(import_id: int, user_id: int, report: Progress) -> dict[str, Any]:
    """The undo job's work (``jobs.imports.undo_import``). A refusal (records changed since, a value no
    longer valid) leaves the import finished, with the reason as its message."""
    item = db.session.get(ImportRun, import_id)
    if item is None:
        raise LookupError(f"import {import_id} does not exist")
    if item.status != ImportStatus.undoing:
        return {"status": str(item.status)}
    actor = Actor.for_user_id(user_id, "import")
    with force_locale(item.language):
        try:
            return undo(item, actor, report)
        except (ImportRefused, QueryError, records.RecordError) as refused:
            db.session.rollback()
            _undo_stopped(item, str(refused))
            return {"status": "refused", "message": str(refused)}


def _undo_stopped(item: ImportRun, reason: str) -> None:
    """The undo did not happen (one transaction: nothing of it is left): the import is finished again."""
    db.session.refresh(item)
    if item.status == ImportStatus.undoing:
        item.status = ImportStatus.finished
        item.message = (
            _("Nothing was undone: %(reason)s", reason=reason) if reason else _("Nothing was undone.")
        )
        db.session.commit()


def _undo_target(item: ImportRun) -> Any:
    if item.status not in (ImportStatus.finished, ImportStatus.undoing):
        raise ImportRefused(_("Only a finished import can be undone."))
    entity = runtime.current().by_id.get(item.entity_id or 0)
    if entity is None:
        raise ImportRefused(_("The table no longer exists."))
    return entity


def undo(item: ImportRun, actor: Actor, report: Progress | None = None) -> dict[str, int]:
    """Revert what the import created (to the recycle bin) and changed (the values it replaced), in one
    transaction recorded in history as one change set; refused, listing them, when records were changed
    since. ``report`` hears the progress (never durable: a commit would cut the transaction short)."""
    entity = _undo_target(item)
    query = TableQuery(entity.slug, actor, "read")
    items = list(db.session.scalars(select(ImportItem).where(ImportItem.import_id == item.id)))
    versions = query.versions(i.record_id for i in items)
    changed = [i for i in items if i.record_id in versions and versions[i.record_id] != i.version]
    if changed:
        labels = query.labels_of(i.record_id for i in changed[:20])
        names = ", ".join(labels.get(i.record_id, f"#{i.record_id}") for i in changed[:20])
        raise ImportRefused(
            _("%(n)d records were changed after the import: %(names)s.",
              n=len(changed), names=names)
        )  # fmt: skip
    live = [i for i in items if i.record_id in versions]
    updates = [(i.record_id, i.before or {}, i.version) for i in live if i.action == "update"]
    created = [i for i in live if i.action == "create"]
    total, changeset = len(live), records.new_changeset()
    with records.atomic():
        for start in range(0, len(updates), BATCH):
            records.update_many(entity.slug, updates[start : start + BATCH], actor, changeset=changeset)
            if report:
                report(min(start + BATCH, len(updates)), total, False)
        for start in range(0, len(created), BATCH):
            batch = created[start : start + BATCH]
            records.delete_many(
                entity.slug, [i.record_id for i in batch], actor,
                expected_versions=[i.version for i in batch], changeset=changeset,
            )  # fmt: skip
            if report:
                report(len(updates) + start + len(batch), total, False)
        item.status, item.undone_at, item.message = ImportStatus.undone, utcnow(), ""
    return {"reverted": len(updates), "deleted": len(created)}


def mine(user_id: int, limit: int = 100) -> list[ImportRun]:
    found = db.session.scalars(
        select(ImportRun).where(ImportRun.owner_id == user_id).order_by(ImportRun.id.desc()).limit(limit)
    ).all()
    return [reconcile(i) for i in found]


# --- checking before running -------------------------------------------------------------------------------


def check(
    item: ImportRun, actor: Actor, *, options: Any, mapping: Any, mode: str, match_on: str | None
) -> dict[str, Any]:
    """A dry run: every row parsed and matched as the import would, nothing written. Counts of what would
    happen and the first errors per column."""
    if mode not in MODES:
        raise ImportRefused(_("Unknown import mode."))
    query = _query(_entity_of(item).slug, actor)
    cleaned = _clean_mapping(mapping)
    specs = field_specs(query, cleaned)
    chosen = clean_options(options)
    with local_copy(item) as path:
        grid = _read(path, item.file_kind, chosen)
    body = readers.data_rows(grid, chosen.get("header_row", 1), chosen.get("header_rows", 1))
    rows = parse_rows(body, specs, creating=mode != "update", labels=LinkLabels(actor))
    plan(rows, query, matcher(query, match_on or None, set(cleaned.values())), mode)
    labels = {spec.name: str(spec.label) for spec in specs.values()}
    actions = ("create", "update", "skip", "refuse")
    counts = {action: sum(row.action == action for row in rows) for action in actions}
    return {"rows": len(rows), **counts, **_summary(rows, labels)}


def _clean_mapping(mapping: Any) -> dict[int, str]:
    cleaned: dict[int, str] = {}
    for index, name in (mapping or {}).items() if isinstance(mapping, dict) else ():
        if name and isinstance(name, str) and str(index).isdecimal() and int(index) < readers.MAX_COLUMNS:
            cleaned[int(index)] = name
    if not cleaned:
        raise ImportRefused(_("Map at least one column to a field."))
    return cleaned


def remembered_mapping(entity_id: int, owner_id: int, titles: list[str]) -> dict[int, str]:
    """The columns the user's last import into the table mapped, by their titles (what they chose then)."""
    last = db.session.scalars(
        select(ImportRun)
        .where(ImportRun.entity_id == entity_id, ImportRun.owner_id == owner_id)
        .where(ImportRun.status != ImportStatus.uploaded)
        .order_by(ImportRun.id.desc())
        .limit(1)
    ).first()
    if last is None:
        return {}
    by_title = (last.options or {}).get("titles") or []
    chosen = {by_title[int(i)]: n for i, n in (last.mapping or {}).items() if int(i) < len(by_title)}
    return {i: chosen[readers.folded(t)] for i, t in enumerate(titles) if readers.folded(t) in chosen}


def add_columns_as_fields(item: ImportRun, actor: Actor, columns: Any) -> dict[str, str]:
    """New fields for unmapped columns (``columns``: [{"index", "label", "type"}]), with the types the user
    confirmed (settings inferred from the file); admins only, as any schema change. Returns the mapping."""
    from custom_fields import service as schema

    if not is_admin(actor):
        raise ImportRefused(_("Only an administrator may add fields."))
    entity = runtime.current().by_id.get(item.entity_id or 0)
    if entity is None or not isinstance(columns, list) or not columns:
        raise ImportRefused(_("Choose the columns to add as fields."))
    _titles, body = _sample(item, item.options or {})
    mapping = dict(item.mapping or {})
    for index, label, type_name in _chosen_columns(columns, None):
        try:
            row = schema.add_field(
                entity.id, label, type_name, settings=_settings_for(body, index, type_name),
                user_id=actor.user_id,
            )  # fmt: skip
        except schema.SchemaError as exc:
            raise ImportRefused(str(exc)) from None
        mapping[str(index)] = row.name
    runtime.refresh()
    item.mapping = mapping
    db.session.commit()
    return mapping


def _sample(item: ImportRun, options: dict[str, Any]) -> tuple[list[str], list[tuple[int, list[Any]]]]:
    """The file's column titles and its first rows, read with ``options`` (what types are inferred from)."""
    with local_copy(item) as path:
        grid = _read(path, item.file_kind, options)
    header_row, header_rows = options.get("header_row", 1), options.get("header_rows", 1)
    titles = readers.headers(grid, header_row, header_rows)
    return titles, readers.data_rows(grid, header_row, header_rows)[:INFER_ROWS]


def _settings_for(body: list[tuple[int, list[Any]]], index: int, type_name: str) -> dict[str, Any]:
    """The settings the column's values suggest for ``type_name`` (a select's options, a text's length),
    when that is the type they suggest; else the type's defaults."""
    from custom_fields.types import infer_field_type

    inferred, settings = infer_field_type(cells[index] if index < len(cells) else None for _n, cells in body)
    return settings if inferred == type_name else {}


def _chosen_columns(columns: Any, width: int | None) -> list[tuple[int, str, str]]:
    """(index, label, type) of the columns the user chose to make fields of; refused when malformed."""
    if not isinstance(columns, list) or not columns:
        raise ImportRefused(_("Choose the columns to add as fields."))
    chosen: list[tuple[int, str, str]] = []
    for column in columns[: readers.MAX_COLUMNS]:
        if not isinstance(column, dict):
            raise ImportRefused(_("Choose the columns to add as fields."))
        index, type_name = column.get("index"), column.get("type")
        label = str(column.get("label") or "").strip()[:100]
        valid = (
            isinstance(index, int)
            and not isinstance(index, bool)
            and 0 <= index < (width or readers.MAX_COLUMNS)
        )
        if not valid or not label or type_name not in REGISTRY or REGISTRY[type_name].reference is not None:
            raise ImportRefused(_("Choose the columns to add as fields."))
        chosen.append((index, label, type_name))
    if len({i for i, _l, _t in chosen}) < len(chosen):
        raise ImportRefused(_("Choose the columns to add as fields."))
    return chosen


def create_table(
    item: ImportRun, actor: Actor, *, label: Any, display: Any, columns: Any, options: Any
) -> ImportRun:
    """Make the new table an import was uploaded for: the chosen ``columns`` ([{"index", "label", "type"}],
    types as the user confirmed them, settings inferred from the file) become its fields, ``display`` (a
    column's index) its display field, in one schema change (a field refused: no table). The import then
    maps every chosen column to its field and is ready to run. Administrators only."""
    from custom_fields import service as schema

    if not is_admin(actor):
        raise ImportRefused(_("Only an administrator may create tables."))
    if item.status != ImportStatus.uploaded or not is_new_table(item):
        raise ImportRefused(_("The table for this import has already been made."))
    chosen_options = clean_options(options)
    titles, body = _sample(item, chosen_options)
    chosen = _chosen_columns(columns, len(titles))
    named = [c for c in chosen if c[0] == display and not isinstance(display, bool)]
    if not named:
        raise ImportRefused(_("Choose the column that names the records."))
    others = [c for c in chosen if c[0] != display]
    extra = [schema.NewField(lab, kind, _settings_for(body, i, kind)) for i, lab, kind in others]
    try:
        entity = schema.create_entity(
            str(label or "").strip()[: schema.LABEL_LENGTH], user_id=actor.user_id, name_label=named[0][1],
            fields=extra,
        )  # fmt: skip
    except schema.SchemaError as exc:
        db.session.rollback()
        raise ImportRefused(str(exc)) from None
    made = db.session.scalars(select(Field).where(Field.entity_id == entity.id).order_by(Field.id)).all()
    order = [named[0][0]] + [i for i, _l, _k in others]
    item.entity_id = entity.id
    item.options = chosen_options  # from now on an import into that table like any other
    item.mapping = {str(index): row.name for index, row in zip(order, made, strict=True)}
    db.session.commit()
    runtime.refresh()
    return item
