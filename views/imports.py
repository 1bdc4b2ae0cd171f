"""Import screens: My imports (with the upload form), the import's page (read options, live preview, mapping,
check, run with a progress bar, result with the refused rows and Undo). The page's script speaks to the JSON
routes here; the rules live in ``exports.imports``."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any
from urllib.parse import quote

from flask import (
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    request,
    stream_with_context,
    url_for,
)
from flask_appbuilder import BaseView, expose, has_access
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from app.extensions import db
from custom_fields import records, runtime
from custom_fields.access import Actor, is_admin
from custom_fields.query import QueryError
from custom_fields.spec import label_of
from custom_fields.types import REGISTRY
from exports import imports
from exports.import_rows import MATCH_KINDS, ImportRefused
from exports.readers import DELIMITERS, ENCODINGS, ImportFileError
from exports.store import scratch_dir
from jobs.queues import JobQueueUnavailable
from models.imports import ImportRun, ImportStatus
from models.system import percent, seconds_left

IMPORT_ID = "<int(max=2147483647):import_id>"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: The upload form's choice for "a new table from the file" (no table's slug looks like it).
NEW_TABLE_CHOICE = "+new"
STATUS_LABELS = {
    ImportStatus.uploaded: _l("Not started"),
    ImportStatus.queued: _l("Waiting for a worker"),
    ImportStatus.running: _l("Importing"),
    ImportStatus.finished: _l("Finished"),
    ImportStatus.refused: _l("Refused: nothing was imported"),
    ImportStatus.failed: _l("Stopped"),
    ImportStatus.undoing: _l("Undoing"),
    ImportStatus.undone: _l("Undone"),
}
MODE_LABELS = {
    "create": _l("Only add new records"),
    "update": _l("Only update records found"),
    "upsert": _l("Update records found, add the rest"),
}
ON_ERROR_LABELS = {"skip": _l("Skip bad rows, import the rest"), "all": _l("All or nothing")}
MATCH_LABELS = {"email": _l("E-mail (as the CRM matches)"), "phone": _l("Phone (as the CRM matches)"),
                "tax_id": _l("Tax ID (as the CRM matches)")}  # fmt: skip
DELIMITER_LABELS = {
    ";": _l("Semicolon"),
    ",": _l("Comma"),
    "\t": _l("Tab character"),
    "|": _l("Vertical bar"),
}
REFUSALS = (ImportRefused, ImportFileError, QueryError, records.RecordError)


def _json(code: int, **payload: Any) -> Response:
    response = jsonify(payload)
    response.status_code = code
    return response


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(_json(400, message=_("The request could not be read.")))
    return body


def _own(import_id: int) -> ImportRun:
    item = db.session.get(ImportRun, import_id)
    if not imports.visible_to(item, current_user):
        abort(404)
    return imports.reconcile(item)


def _slug(item: ImportRun) -> str | None:
    entity = runtime.current().by_id.get(item.entity_id or 0)
    return entity.slug if entity is not None else None


def progress(item: ImportRun) -> dict[str, Any]:
    """What the page shows, live: status, rows done of the total, time left, the outcome."""
    done, total = item.rows_done or 0, item.rows_total or 0
    started = item.started_at
    if item.status == ImportStatus.running:
        done = max(done, _job_progress(item)[0])
    if item.status in (ImportStatus.finished, ImportStatus.undone):
        done = total
    if item.status == ImportStatus.undoing:  # records reverted of those the import wrote
        done, total = _job_progress(item)
        total = total or (item.created + item.updated)
        started = _job_started(item)
    active = item.status in (ImportStatus.running, ImportStatus.undoing)
    left = seconds_left(done, total, started) if active else None
    return {
        "id": item.id,
        "status": str(item.status),
        "status_label": str(STATUS_LABELS[ImportStatus(item.status)]),
        "done": done,
        "total": total,
        "percent": percent(done, total),
        "seconds_left": left,
        "message": item.message,
        "created": item.created,
        "updated": item.updated,
        "skipped": item.skipped,
        "refused": item.refused,
        "errors": (item.report or {}).get("errors") or {},
        "refused_file": url_for("ImportView.refused_rows", import_id=item.id) if item.refused_key else None,
        "can_undo": item.status == ImportStatus.finished and bool(item.created or item.updated),
        "can_rerun": item.status == ImportStatus.failed and bool(item.storage_key),
        "table_url": url_for("GridView.table", slug=_slug(item)) if _slug(item) else None,
    }


def _job_progress(item: ImportRun) -> tuple[int, int]:
    """(done, total) of the import's job: the RQ job's meta (one open transaction reports only there),
    else what the job committed."""
    from redis.exceptions import RedisError
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    from app.redis_client import redis_connection
    from models import JobRun

    run = db.session.get(JobRun, item.job_run_id) if item.job_run_id else None
    if run is None or not run.rq_job_id:
        return 0, 0
    durable = run.progress_done or 0, run.progress_total or 0
    try:
        meta = Job.fetch(run.rq_job_id, connection=redis_connection()).get_meta(refresh=True)
    except (NoSuchJobError, RedisError):
        return durable
    live = meta.get("progress") or {}
    return int(live.get("done") or durable[0]), int(live.get("total") or durable[1])


def _job_started(item: ImportRun) -> dt.datetime | None:
    from models import JobRun

    run = db.session.get(JobRun, item.job_run_id) if item.job_run_id else None
    return run.started_at if run is not None else None


def importable_tables(actor: Actor) -> list[tuple[str, str]]:
    """(slug, label) of the tables the user may import into."""
    schema = runtime.current()
    found = [(e.slug, str(label_of(e, "plural_label"))) for e in schema.entities.values() if not e.archived]
    return sorted(((s, lab) for s, lab in found if imports.allowed(s, actor)), key=lambda t: t[1].casefold())


class ImportView(BaseView):
    route_base = "/imports"
    default_view = "mine"

    @expose("/")
    @has_access
    def mine(self) -> Any:
        actor = Actor.current("ui")
        return self.render_template(
            "tabula/imports/list.html",
            imports=imports.mine(current_user.id),
            tables=importable_tables(actor),
            can_create=is_admin(actor),
            new_table_choice=NEW_TABLE_CHOICE,
            chosen=request.args.get("table", ""),
            status_labels={str(k): str(v) for k, v in STATUS_LABELS.items()},
            max_mb=current_app.config["TABULA_IMPORT_MAX_BYTES"] // 2**20,
            title=_("My imports"),
        )

    @expose("/upload", methods=["POST"])
    @has_access
    def upload(self) -> Any:
        slug = request.form.get("table", "")
        sent = request.files.get("file")
        limit = current_app.config["TABULA_IMPORT_MAX_BYTES"]
        if sent is None or not sent.filename:
            flash(_("Choose a file to import."), "danger")
            return redirect(url_for("ImportView.mine", table=slug))
        local = scratch_dir() / f"upload-{secrets.token_hex(8)}"
        written = 0
        with open(local, "wb") as handle:
            while chunk := sent.stream.read(1 << 20):
                written += len(chunk)
                if written > limit:
                    break
                handle.write(chunk)
        if written > limit:
            local.unlink(missing_ok=True)
            flash(_("The file is larger than %(n)d MB.", n=limit // 2**20), "danger")
            return redirect(url_for("ImportView.mine", table=slug))
        locale = get_locale()
        try:
            item = imports.upload(
                None if slug == NEW_TABLE_CHOICE else slug, Actor.current("ui"), local, sent.filename,
                language=locale.language if locale else "en",
            )  # fmt: skip
        except REFUSALS as refused:
            local.unlink(missing_ok=True)
            flash(str(refused), "danger")
            return redirect(url_for("ImportView.mine", table=slug))
        return redirect(url_for("ImportView.show", import_id=item.id))

    @expose(f"/{IMPORT_ID}")
    @has_access
    def show(self, import_id: int) -> Any:
        item = _own(import_id)
        slug = _slug(item)
        entity = runtime.current().entity(slug) if slug else None
        new_table = imports.is_new_table(item)
        table = label_of(entity, "plural_label") if entity is not None else ""
        stem = item.file_name.rsplit(".", 1)[0] if "." in item.file_name else item.file_name
        return self.render_template(
            "tabula/imports/show.html",
            item=item,
            new_table=new_table,
            table_name=stem.strip()[:100],
            state=progress(item),
            table=table,
            modes=MODE_LABELS,
            on_error=ON_ERROR_LABELS,
            encodings=ENCODINGS,
            delimiters=[(d, DELIMITER_LABELS[d]) for d in DELIMITERS],
            types=[(name, str(t.label)) for name, t in REGISTRY.items() if t.reference is None],
            admin=is_admin(Actor.current("ui")),
            title=_("New table from a file") if new_table else _("Import into %(table)s", table=table),
        )

    @expose(f"/{IMPORT_ID}/preview")
    @has_access
    def preview(self, import_id: int) -> Response:
        """The file read with the options in the address (none: as the import keeps them)."""
        item = _own(import_id)
        actor = Actor.current("ui")
        names = ("sheet", "header_row", "header_rows", "encoding", "delimiter")
        options = {n: request.args[n] for n in names if n in request.args} or None
        try:
            shown = imports.preview(item, actor, options)
            fields, matches = self._fields(item, actor)
        except REFUSALS as refused:
            return _json(422, message=str(refused))
        return _json(200, **shown, fields=fields, matches=matches)

    def _fields(self, item: ImportRun, actor: Actor) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        from app.crm.matching import IDENTIFYING
        from custom_fields.query import TableQuery

        slug = _slug(item)
        if slug is None:  # a new table from the file: no fields yet
            return [], []
        query = TableQuery(slug, actor)
        fields = [
            {"name": s.name, "label": str(s.label), "type": str(REGISTRY[s.type].label)}
            for s in query.rights.editable_fields
        ]
        matches = [{"name": s.name, "label": str(s.label)} for s in query.rights.editable_fields]
        kinds = [k for k in MATCH_KINDS if k in IDENTIFYING.get(slug, {})]
        matches = [{"name": k, "label": str(MATCH_LABELS[k])} for k in kinds] + matches
        return fields, matches

    @expose(f"/{IMPORT_ID}/check", methods=["POST"])
    @has_access
    def check(self, import_id: int) -> Response:
        item = _own(import_id)
        body = _body()
        try:
            found = imports.check(
                item, Actor.current("ui"), options=body.get("options"), mapping=body.get("mapping"),
                mode=str(body.get("mode") or "create"), match_on=_text(body.get("match_on")),
            )  # fmt: skip
        except REFUSALS as refused:
            return _json(422, message=str(refused))
        return _json(200, **found)

    @expose(f"/{IMPORT_ID}/fields", methods=["POST"])
    @has_access
    def add_fields(self, import_id: int) -> Response:
        item = _own(import_id)
        body = _body()
        try:
            item.options = imports.clean_options(body.get("options"))
            mapping = imports.add_columns_as_fields(item, Actor.current("ui"), body.get("columns"))
        except REFUSALS as refused:
            db.session.rollback()
            return _json(422, message=str(refused))
        return _json(200, mapping=mapping)

    @expose(f"/{IMPORT_ID}/table", methods=["POST"])
    @has_access
    def create_table(self, import_id: int) -> Response:
        """A new table from the file: its columns become fields with the types the admin confirmed."""
        item = _own(import_id)
        body = _body()
        try:
            imports.create_table(
                item, Actor.current("ui"), label=body.get("label"), display=body.get("display"),
                columns=body.get("columns"), options=body.get("options"),
            )  # fmt: skip
        except REFUSALS as refused:
            db.session.rollback()
            return _json(422, message=str(refused))
        return _json(200, url=url_for("ImportView.show", import_id=item.id))

    @expose(f"/{IMPORT_ID}/start", methods=["POST"])
    @has_access
    def start(self, import_id: int) -> Response:
        item = _own(import_id)
        body = _body()
        actor = Actor.current("ui")
        try:
            if item.status == ImportStatus.uploaded:
                imports.configure(
                    item, actor, options=body.get("options"), mapping=body.get("mapping"),
                    mode=str(body.get("mode") or "create"), match_on=_text(body.get("match_on")),
                    on_error=str(body.get("on_error") or "skip"),
                )  # fmt: skip
            imports.start(item, actor)
        except REFUSALS as refused:
            return _json(422, message=str(refused))
        except JobQueueUnavailable as unavailable:
            return _json(503, message=str(unavailable))
        return _json(202, **progress(item))

    @expose(f"/{IMPORT_ID}/status")
    @has_access
    def status(self, import_id: int) -> Response:
        return _json(200, **progress(_own(import_id)))

    @expose(f"/{IMPORT_ID}/undo", methods=["POST"])
    @has_access
    def undo(self, import_id: int) -> Response:
        item = _own(import_id)
        try:
            imports.request_undo(item, Actor.current("import"))
        except REFUSALS as refused:
            return _json(422, message=str(refused))
        except JobQueueUnavailable as unavailable:
            return _json(503, message=str(unavailable))
        return _json(202, **progress(item))

    @expose(f"/{IMPORT_ID}/refused_rows")
    @has_access
    def refused_rows(self, import_id: int) -> Any:
        item = _own(import_id)
        try:
            chunks = imports.refused_chunks(item)
        except FileNotFoundError:
            abort(404)
        name = f"{_('Refused rows')} {item.file_name.rsplit('.', 1)[0]}.xlsx"
        ascii_name = name.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
        headers = {
            "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
        }
        return Response(stream_with_context(chunks), headers=headers, mimetype=XLSX)


def _text(raw: Any) -> str | None:
    return raw if isinstance(raw, str) and raw else None


def register(appbuilder: Any) -> None:
    from views import DATA_MENU, add_view

    add_view(
        appbuilder,
        ImportView,
        "My imports",
        label=_l("My imports"),
        icon="fa-upload",
        audience="staff",
        **DATA_MENU,
    )
