"""Reading record history: a record's timeline, the admin audit log, replaying history into values, and
keeping the history table's size in check (its size for admins, archiving old lines to a file).

Rows are written by ``custom_fields.records``, one per record a change set touched, the changed fields
inside as ``[field_id, old, new]`` (each field type's JSON form); ``lines`` reads them back one line per
value, the shape history had before revision 0006.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import Select, delete, func, select, text
from sqlalchemy.exc import OperationalError

from app.extensions import db
from custom_fields import runtime
from custom_fields.access import Actor, Grants, grants, is_admin
from custom_fields.core import N_
from custom_fields.query import QueryError, TableQuery
from custom_fields.spec import EntitySpec, FieldSpec
from custom_fields.types import REGISTRY
from models.records import RecordChange

TIMELINE_LIMIT = 200
ACTION_LABELS = {
    "create": N_("Created"),
    "update": N_("Changed"),
    "delete": N_("Moved to the recycle bin"),
    "restore": N_("Restored from the recycle bin"),
    "purge": N_("Deleted for good"),
    "merge": N_("Merged"),
}
SOURCE_LABELS = {"ui": N_("Browser"), "api": N_("API"), "import": N_("Import"), "job": N_("Background job")}


def action_label(action: str) -> str:
    return _(ACTION_LABELS.get(action, action))


def source_label(source: str) -> str:
    return _(SOURCE_LABELS.get(source, source))


@dataclass
class ChangeLine:
    field: str
    old: str
    new: str


@dataclass
class ChangeSet:
    """One save (or delete, restore ...) of one record, as a person reads it."""

    at: dt.datetime
    user: str
    source: str
    action: str
    entity: EntitySpec | None
    record_id: int
    lines: list[ChangeLine] = field(default_factory=list)

    @property
    def action_label(self) -> str:
        return action_label(self.action)

    @property
    def source_label(self) -> str:
        return source_label(self.source)


def _field_spec(entity: EntitySpec | None, field_id: int | None) -> FieldSpec | None:
    if entity is None or field_id is None:
        return None
    return next((f for f in entity.fields if f.id == field_id), None)


def _text(spec: FieldSpec | None, value: Any) -> str:
    """A stored JSON value as its field type shows it (``01.12.2026 13:54``, ``да``); the raw value for
    fields since changed or removed."""
    if value is None:
        return ""
    if spec is None:
        return str(value)
    ftype = REGISTRY[spec.type]
    try:
        return ftype.display(ftype.parse(value, spec), spec)
    except (ValueError, TypeError):
        return str(value)


@dataclass(frozen=True)
class Line:
    """One fact of history, as stored before revision 0006 (one line per value): a change set's line for
    the record (``field_id`` None; ``new_value`` a merge's note) or one field's old and new value."""

    id: int
    changeset: str
    at: dt.datetime
    user_id: int | None
    source: str
    entity_id: int
    record_id: int
    action: str
    field_id: int | None
    old_value: Any
    new_value: Any


def row_lines(row: RecordChange) -> list[Line]:
    """A stored row as the lines it holds: the record's own line first (every action but an update has
    one), then one per field."""
    common = (
        row.id,
        row.changeset,
        row.at,
        row.user_id,
        row.source,
        row.entity_id,
        row.record_id,
        row.action,
    )
    out = [] if row.action == "update" else [Line(*common, None, None, row.note)]
    out.extend(Line(*common, fid, old, new) for fid, old, new in row.changes or ())
    return out


def lines(
    entity_id: int | None = None, record_id: int | None = None, query: Select | None = None
) -> list[Line]:
    """History as lines, oldest first: a record's (``entity_id`` and ``record_id``), a table's, or the
    rows of ``query`` (a select of RecordChange)."""
    if query is None:
        query = select(RecordChange)
        if entity_id is not None:
            query = query.where(RecordChange.entity_id == entity_id)
        if record_id is not None:
            query = query.where(RecordChange.record_id == record_id)
    rows = db.session.scalars(query.order_by(RecordChange.id))
    return [line for row in rows for line in row_lines(row)]


def _group(rows: list[RecordChange], visible: Any) -> list[ChangeSet]:
    """Stored rows -> change sets, newest first; ``visible(entity, spec)`` drops what the reader may not
    see."""
    schema = runtime.current()
    sets: dict[str, ChangeSet] = {}
    for row in rows:
        entity = schema.by_id.get(row.entity_id)
        key = f"{row.changeset}:{row.entity_id}:{row.record_id}"
        change = sets.get(key)
        if change is None:
            user = runtime.user_label(row.user_id) if row.user_id else _("System")
            change = sets[key] = ChangeSet(row.at, user, row.source, row.action, entity, row.record_id)
        # A change set of several rows reads as its first (a merge's note comes before its new values).
        change.action = row.action
        # Rows come newest first, and so do a row's values (as when history was one line per value).
        for field_id, old, new in reversed(row.changes or ()):
            spec = _field_spec(entity, field_id)
            if not visible(entity, spec):
                continue
            if spec is None:
                name = _("Deleted field #%(id)s", id=field_id)
            else:
                name = spec.label  # the spec resolves a core label into the reader's language
            change.lines.append(ChangeLine(name, _text(spec, old), _text(spec, new)))
    return list(sets.values())


def timeline(rights: Grants, record_id: int, limit: int = TIMELINE_LIMIT) -> list[ChangeSet]:
    """A record's history, newest first, without fields hidden from the reader; nothing when the reader may
    not read the record (asked through the query layer: scope, recycle bin)."""
    if rights.actor is None or not _readable(rights.entity.slug, rights.actor, [record_id]):
        return []
    rows = list(
        db.session.scalars(
            select(RecordChange)
            .where(RecordChange.entity_id == rights.entity.id, RecordChange.record_id == record_id)
            .order_by(RecordChange.id.desc())
            .limit(limit * 4)
        )
    )

    def visible(entity: EntitySpec | None, spec: FieldSpec | None) -> bool:
        return spec is None or rights.mode(spec.name) != "hidden"

    return _group(rows, visible)[:limit]


def audit_query(
    *,
    user_id: int | None = None,
    entity_id: int | None = None,
    source: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Select:
    query = select(RecordChange)
    if user_id is not None:
        query = query.where(RecordChange.user_id == user_id)
    if entity_id is not None:
        query = query.where(RecordChange.entity_id == entity_id)
    if source:
        query = query.where(RecordChange.source == source)
    if since is not None:
        query = query.where(RecordChange.at >= since)
    if until is not None:
        query = query.where(RecordChange.at < until)
    return query


def audit_page(
    query: Select, page: int, per_page: int, actor: Actor | None = None
) -> tuple[list[ChangeSet], bool]:
    """One page of the audit log; returns the change sets and whether more follow. Administrators (and no
    ``actor``: the system) see every change and field; anyone else only changes of records they may read now
    (through the query layer), without fields hidden from them."""
    rows = list(
        db.session.scalars(query.order_by(RecordChange.id.desc()).offset(page * per_page).limit(per_page + 1))
    )
    more = len(rows) > per_page
    rows = rows[:per_page]
    if actor is None or is_admin(actor):
        return _group(rows, lambda entity, spec: True), more
    schema = runtime.current()
    readable: dict[int, set[int]] = {}
    for entity_id in {row.entity_id for row in rows}:
        entity = schema.by_id.get(entity_id)
        ids = [row.record_id for row in rows if row.entity_id == entity_id]
        readable[entity_id] = _readable(entity.slug, actor, ids) if entity is not None else set()
    rights = {e: grants(actor, schema.by_id[e], schema.access) for e, ids in readable.items() if ids}

    def visible(entity: EntitySpec | None, spec: FieldSpec | None) -> bool:
        return entity is not None and (spec is None or rights[entity.id].mode(spec.name) != "hidden")

    shown = [row for row in rows if row.record_id in readable[row.entity_id]]
    return _group(shown, visible), more


def _readable(slug: str, actor: Actor, ids: list[int]) -> set[int]:
    """Which of the records ``ids`` of ``slug`` the actor may read (the query layer's answer)."""
    try:
        return TableQuery(slug, actor).readable_ids(ids)
    except QueryError:
        return set()


def replay(entity_id: int, record_id: int) -> tuple[dict[int, Any], bool] | None:
    """The values (JSON form, by field id) and deleted flag that a record's history adds up to; None if
    it has no history or was purged."""
    values: dict[int, Any] = {}
    deleted = False
    seen = False
    rows = db.session.execute(
        select(RecordChange.action, RecordChange.changes)
        .where(RecordChange.entity_id == entity_id, RecordChange.record_id == record_id)
        .order_by(RecordChange.id)
    )
    for action, changes in rows:
        seen = True
        if action == "purge":
            return None
        if action in ("delete", "restore"):
            deleted = action == "delete"
        for field_id, _old, new in changes or ():
            values[field_id] = new
    return (values, deleted) if seen else None


def values_at(entity_id: int, record_id: int, version: int) -> dict[int, Any] | None:
    """The values (JSON form, by field id) a record had at ``row_version`` = ``version``: each change set
    (create, update, delete, restore) raised the version by one. None when the history does not reach
    back that far (records written before history was kept, or history archived since)."""
    values: dict[int, Any] = {}
    changesets: list[str] = []
    rows = db.session.execute(
        select(RecordChange.changeset, RecordChange.changes)
        .where(RecordChange.entity_id == entity_id, RecordChange.record_id == record_id)
        .order_by(RecordChange.id)
    )
    for changeset, changes in rows:
        if not changesets or changesets[-1] != changeset:
            if len(changesets) == version:
                break
            changesets.append(changeset)
        for field_id, _old, new in changes or ():
            values[field_id] = new
    return values if len(changesets) == version else None


# --- the table's size, and archiving old lines --------------------------------------------------------------

ARCHIVE_DIR = "history_archive"
ARCHIVE_NAME = re.compile(r"^history-before-\d{4}-\d{2}-\d{2}-\d{8}T\d{6}Z\.jsonl\.gz$")
ARCHIVE_PAGE = 5_000


@dataclass(frozen=True)
class Size:
    """How big history is: rows (one per record change; estimated on PostgreSQL when large), the lines
    they hold are not counted; bytes on disk with its indexes (None where the database does not say);
    the oldest change kept."""

    rows: int
    estimated: bool
    bytes: int | None
    oldest: dt.datetime | None


def size() -> Size:
    table = RecordChange.__tablename__
    oldest = db.session.scalar(select(func.min(RecordChange.at)))
    if db.session.get_bind().dialect.name == "postgresql":
        estimate, total = db.session.execute(
            text(
                "SELECT reltuples::bigint, pg_total_relation_size(oid) FROM pg_class"
                " WHERE oid = CAST(:t AS regclass)"
            ),
            {"t": table},
        ).one()
        if estimate is not None and estimate > 100_000:
            return Size(int(estimate), True, int(total), oldest)
        rows = db.session.scalar(select(func.count()).select_from(RecordChange))
        return Size(rows, False, int(total), oldest)
    rows = db.session.scalar(select(func.count()).select_from(RecordChange))
    try:
        used = db.session.scalar(
            text("SELECT sum(pgsize) FROM dbstat WHERE name = :t OR name LIKE :i"),
            {"t": table, "i": "ix_tabula_record_change_%"},
        )
    except OperationalError:  # SQLite built without the dbstat table
        db.session.rollback()
        used = None
    return Size(rows, False, None if used is None else int(used), oldest)


def archive_dir() -> Path:
    path = Path(current_app.config["TABULA_INSTANCE_DIR"]) / ARCHIVE_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def archives() -> list[tuple[str, int]]:
    """Archive files (name, bytes), newest first."""
    files = [p for p in archive_dir().iterdir() if ARCHIVE_NAME.match(p.name)]
    return [(p.name, p.stat().st_size) for p in sorted(files, key=lambda p: p.name, reverse=True)]


def archive_path(name: str) -> Path | None:
    """The archive file called ``name``, or None (only names this module made are served)."""
    if not ARCHIVE_NAME.match(name):
        return None
    path = archive_dir() / name
    return path if path.is_file() else None


def archive_before(before: dt.date) -> tuple[str | None, int]:
    """Moves every history row older than ``before`` (UTC midnight) into a gzipped JSON-lines file in
    the instance folder, one line per stored fact as ``lines`` reads it, then deletes the rows; returns
    the file's name (None when nothing was that old) and the number of rows moved. The rows go only once
    the file is complete on disk; a failure leaves them all in place."""
    cutoff = dt.datetime.combine(before, dt.time(), dt.UTC)
    now = dt.datetime.now(dt.UTC)
    name = f"history-before-{before.isoformat()}-{now:%Y%m%dT%H%M%S}Z.jsonl.gz"
    target = archive_dir() / name
    partial = target.with_suffix(".part")
    moved = 0
    last_id = 0
    renamed = False
    try:
        with gzip.open(partial, "wt", encoding="utf-8") as out:
            while True:
                rows = list(
                    db.session.scalars(
                        select(RecordChange)
                        .where(RecordChange.at < cutoff, RecordChange.id > last_id)
                        .order_by(RecordChange.id)
                        .limit(ARCHIVE_PAGE)
                    )
                )
                if not rows:
                    break
                for row in rows:
                    for line in row_lines(row):
                        out.write(json.dumps({**asdict(line), "at": line.at.isoformat()}, ensure_ascii=False))
                        out.write("\n")
                moved += len(rows)
                last_id = rows[-1].id
                db.session.expunge_all()
            out.flush()
            os.fsync(out.fileno())
        if not moved:
            partial.unlink()
            return None, 0
        partial.rename(target)
        renamed = True
        db.session.execute(delete(RecordChange).where(RecordChange.at < cutoff, RecordChange.id <= last_id))
        db.session.commit()
    except BaseException:
        db.session.rollback()
        partial.unlink(missing_ok=True)
        if renamed:
            target.unlink(missing_ok=True)  # the rows stayed: no file claims to hold them
        raise
    return name, moved
