"""Export screens: "Export" on a table's list (and, through the same endpoint, the grid), the export's page
with a live progress bar, My exports, and the download, which only the owner (or an admin) ever gets."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from flask import Response, abort, flash, jsonify, redirect, request, stream_with_context, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from werkzeug.datastructures import MultiDict

from app.extensions import db
from custom_fields import runtime, saved_views
from custom_fields.access import Actor
from custom_fields.query import QueryError
from custom_fields.types import REGISTRY
from exports import service
from exports.service import ExportRefused
from models.exports import ExportFile, ExportStatus
from models.system import percent, seconds_left

STATUS_LABELS = {
    ExportStatus.queued: _l("Waiting for a worker"),
    ExportStatus.running: _l("Writing"),
    ExportStatus.ready: _l("Ready"),
    ExportStatus.failed: _l("Failed"),
    ExportStatus.cancelled: _l("Cancelled"),
}


def list_state(slug: str, args: Any) -> dict[str, Any]:
    """A generated list's filters and sort (``_flt_<n>_<field>``, ``_oc_``/``_od_``) as the query layer's
    state. The n-th filter of a field is its type's n-th operator, as the list builds them; anything else in
    the address is ignored, and the query layer judges the rest when the export starts."""
    entity = runtime.current().entity(slug)
    if entity is None:
        return {}
    conditions: list[dict[str, Any]] = []
    sort: list[str] = []
    for key in args:
        if key.startswith("_flt_"):
            index, _sep, name = key[len("_flt_") :].partition("_")
            spec = entity.field_by_name(name)
            if spec is None or not index.isdecimal():
                continue
            operators = REGISTRY[spec.type].operators
            if int(index) < len(operators):
                for value in args.getlist(key):
                    conditions.append({"field": name, "op": operators[int(index)], "value": value})
        elif key.startswith("_oc_") and args.get(key):
            direction = args.get("_od_" + key[len("_oc_") :], "asc")
            sort.append(("-" if direction == "desc" else "") + args.get(key))
    return {"filter": {"and": conditions} if conditions else None, "sort": sort or ["-id"]}


def _own_export(export_id: int, *, to_download: bool = False) -> ExportFile:
    """The export if the signed-in user owns it (or is an admin); with ``to_download``, also if it was mailed
    to them by a schedule. Anyone else gets 404."""
    export = db.session.get(ExportFile, export_id)
    if not service.visible_to(export, current_user, to_download=to_download):
        abort(404)
    return service.reconcile(export)


def _back_to(url: str | None) -> str:
    parts = urlsplit(url or "")
    if parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return ""
    return parts.path + (f"?{parts.query}" if parts.query else "")


def progress(export: ExportFile) -> dict[str, Any]:
    """What the export's page shows, live: status, rows written of the expected total, time left."""
    done, total = export.rows_written or 0, export.rows_expected
    left = seconds_left(done, total, export.started_at) if export.status == ExportStatus.running else None
    return {
        "id": export.id,
        "status": str(export.status),
        "status_label": str(STATUS_LABELS[export.status]),
        "done": done,
        "total": total,
        "estimated": bool(export.rows_estimated),
        "percent": percent(done, total) if total else (100 if export.status == "ready" else 0),
        "seconds_left": left,
        "message": export.message,
        "download": url_for("ExportView.download", export_id=export.id)
        if export.status == ExportStatus.ready
        else None,
        "size": export.size,
    }


class ExportView(BaseView):
    route_base = "/exports"
    default_view = "mine"

    @expose("/")
    @has_access
    def mine(self) -> Any:
        from exports import schedules

        return self.render_template(
            "tabula/exports/list.html",
            exports=service.mine(current_user.id),
            progress=progress,
            schedules=schedules.mine(Actor.current("ui")),
            schedule_title=schedules.title,
            describe=schedules.describe,
            title=_("My exports"),
        )

    @expose("/start/<slug>", methods=["POST"])
    @has_access
    def start(self, slug: str) -> Any:
        file_format = request.form.get("format", "xlsx")
        if request.form.get("state"):
            try:
                state = json.loads(request.form["state"])
            except ValueError:
                abort(400, description=_("The view to export could not be read."))
        else:
            state = list_state(slug, _args_of(request.form.get("list_args", "")))
        back = _back_to(request.form.get("next") or request.referrer)
        locale = get_locale()
        try:
            if request.form.get("view"):  # a saved view by its id, as its reader may see it
                view = saved_views.get(slug, request.form["view"], Actor.current("ui"))
                state = saved_views.applied(view, Actor.current("ui"))
            export = service.start(
                slug,
                Actor.current("ui"),
                state,
                file_format,
                source_url=back,
                language=locale.language if locale else "en",
            )
        except (ExportRefused, QueryError) as refused:
            if request.accept_mimetypes.best == "application/json":
                return jsonify(message=str(refused)), getattr(refused, "status", 403)
            flash(str(refused), "danger")
            return redirect(back or url_for("ExportView.mine"))
        if request.accept_mimetypes.best == "application/json":
            return jsonify(id=export.id, url=url_for("ExportView.show", export_id=export.id)), 202
        return redirect(url_for("ExportView.show", export_id=export.id))

    @expose("/<int(max=2147483647):export_id>")
    @has_access
    def show(self, export_id: int) -> Any:
        export = _own_export(export_id, to_download=True)
        return self.render_template(
            "tabula/exports/show.html",
            export=export,
            state=progress(export),
            owns=service.visible_to(export, current_user),
            title=export.title,
        )

    @expose("/<int(max=2147483647):export_id>/status")
    @has_access
    def status(self, export_id: int) -> Any:
        return jsonify(progress(_own_export(export_id, to_download=True)))

    @expose("/<int(max=2147483647):export_id>/download")
    @has_access
    def download(self, export_id: int) -> Any:
        export = _own_export(export_id, to_download=True)
        try:
            chunks = service.chunks(export)
        except FileNotFoundError:
            abort(404)
        name = f"{export.title} {export.created_at:%Y-%m-%d}.{export.file_format}"
        ascii_name = name.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
        headers = {
            "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}",
            "Content-Length": str(export.size or 0),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
        }
        return Response(
            stream_with_context(chunks), headers=headers, mimetype=service.MEDIA_TYPES[export.file_format]
        )

    @expose("/<int(max=2147483647):export_id>/cancel", methods=["POST"])
    @has_access
    def cancel(self, export_id: int) -> Any:
        service.cancel(_own_export(export_id))
        return redirect(url_for("ExportView.show", export_id=export_id))

    @expose("/<int(max=2147483647):export_id>/delete", methods=["POST"])
    @has_access
    def delete(self, export_id: int) -> Any:
        service.remove(_own_export(export_id))
        flash(_("The export was deleted."), "success")
        return redirect(url_for("ExportView.mine"))


def _args_of(query_string: str) -> MultiDict:
    return MultiDict(parse_qsl(query_string[:8000], keep_blank_values=False))


def may_export(slug: str | None) -> bool:
    """For templates: whether the signed-in user may export the table."""
    return bool(slug) and current_user.is_authenticated and service.allowed(slug, Actor.current("ui"))


def register(appbuilder: Any) -> None:
    from flask import current_app

    from views import DATA_MENU, add_view

    add_view(
        appbuilder,
        ExportView,
        "My exports",
        label=_l("My exports"),
        icon="fa-download",
        audience="staff",
        **DATA_MENU,
    )
    current_app.jinja_env.globals["may_export"] = may_export
