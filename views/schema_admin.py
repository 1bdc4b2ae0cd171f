"""Admin screens for the metadata: tables, their fields, type changes, archive/restore/purge, and the log
of schema changes. Every change goes through ``custom_fields.service``; refusals come back as messages."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import abort, flash, g, jsonify, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from redis.exceptions import RedisError
from sqlalchemy import func, select

from app.extensions import db
from custom_fields import conversion_jobs, service
from custom_fields.core import N_
from custom_fields.runtime import refresh
from custom_fields.service import ICON_CHOICES, ConversionRefused, SchemaError
from custom_fields.spec import has_builtin_index, label_of
from custom_fields.types import REGISTRY, type_choices
from jobs import schema as schema_jobs
from jobs.queues import JobQueueUnavailable
from models import Entity, Field, FieldConversion, SchemaChange

MAX_NEW_OPTION_ROWS = 5
CONVERSION_LABELS = {
    "queued": _l("Waiting for a worker"),
    "running": _l("Converting"),
    "done": _l("Converted"),
    "refused": _l("Not converted: some values do not convert"),
    "cancelled": _l("Cancelled"),
    "failed": _l("Failed"),
}
#: How long the field's page keeps showing a finished background conversion.
CONVERSION_SHOWN = dt.timedelta(days=1)
#: The schema change log in the reader's language; the stored summary (English, as written at the time,
#: with the labels of then) stays available under "Details".
CHANGE_TEXTS = {
    "create_table": N_("Table created"),
    "update_table": N_("Table settings changed"),
    "archive_table": N_("Table archived"),
    "restore_table": N_("Table restored"),
    "add_field": N_("Field added"),
    "update_field": N_("Field changed"),
    "archive_field": N_("Field archived"),
    "restore_field": N_("Field restored"),
    "purge_field": N_("Field and its data purged"),
    "change_type": N_("Field type changed"),
    "access": N_("Access rules changed"),
    "teams": N_("Teams changed"),
}


def change_text(change: SchemaChange) -> str:
    """What a logged schema change did, and to which table and field (their labels as users read them)."""
    parts = [_(CHANGE_TEXTS[change.action]) if change.action in CHANGE_TEXTS else change.action]
    if change.entity is not None:
        parts.append(f"«{label_of(change.entity, 'plural_label')}»")
    if change.field_id is not None:
        row = db.session.get(Field, change.field_id)
        if row is not None:
            parts.append(f"«{label_of(row)}»")
    return " · ".join(parts)


def _form_int(name: str) -> int | None:
    """A whole number from the form, or None; never more digits than an id or position column holds."""
    text = request.form.get(name, "").strip()
    return int(text) if text.lstrip("-").isdecimal() and len(text) < 10 else None


def _flag(name: str) -> bool:
    return request.form.get(name) in ("y", "on", "true", "1")


def _options_from_form() -> list[dict[str, str]]:
    """Option rows from the form (id, label, colour, position), in the order of their positions."""
    ids = request.form.getlist("opt_id")
    labels = request.form.getlist("opt_label")
    colors = request.form.getlist("opt_color")
    positions = request.form.getlist("opt_pos")
    rows = []
    for index, label in enumerate(labels):
        try:
            position = (
                float(positions[index]) if index < len(positions) and positions[index] else index + 1000
            )
        except ValueError:
            position = index + 1000
        rows.append(
            (
                position,
                index,
                {
                    "id": ids[index] if index < len(ids) else "",
                    "label": label,
                    "color": colors[index] if index < len(colors) else "",
                },
            )
        )
    return [row for _p, _i, row in sorted(rows, key=lambda r: (r[0], r[1])) if row["label"].strip()]


def setting_types() -> dict[str, str]:
    """For each settings input of the field forms, the types that show it (``data-for`` of its block)."""
    shown: dict[str, list[str]] = {}
    for name, ftype in REGISTRY.items():
        for key in ftype.admin_settings:
            shown.setdefault(key, []).append(name)
    return {key: " ".join(names) for key, names in shown.items()}


def setting_choices(key: str) -> list[tuple[str, Any]]:
    """The choices of a settings input chosen from a list (the same for every type that shows it)."""
    for ftype in REGISTRY.values():
        if key in ftype.admin_settings and ftype.setting_choices(key):
            return ftype.setting_choices(key)
    return []


def _settings_from_form(type_name: str) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    ftype = REGISTRY.get(type_name)
    for key in ftype.admin_settings if ftype is not None else ():
        if key == "options":
            settings["options"] = _options_from_form()
        else:
            settings[key] = request.form.get(key, "").strip()
    return settings


class SchemaAdminView(BaseView):
    route_base = "/admin/tables"
    default_view = "tables"
    class_permission_name = "SchemaAdmin"
    method_permission_name = {
        "tables": "read", "table": "read", "changes": "read", "field": "read",
        "create_table": "write", "update_table": "write", "archive_table": "write", "restore_table": "write",
        "add_field": "write", "update_field": "write", "change_field_type": "write", "archive_field": "write",
        "restore_field": "write", "purge_field": "write",
        "conversion_status": "read", "cancel_conversion": "write",
    }  # fmt: skip

    def _user_id(self) -> int | None:
        return getattr(g.user, "id", None)

    def _render(self, template: str, **context: Any) -> Any:
        return self.render_template(
            template,
            type_choices=type_choices(),
            registry=REGISTRY,
            icons=ICON_CHOICES,
            setting_types=setting_types(),
            setting_choices=setting_choices,
            builtin_index=has_builtin_index,
            new_option_rows=MAX_NEW_OPTION_ROWS,
            **context,
        )

    # tables

    @expose("/")
    @has_access
    def tables(self) -> Any:
        entities = db.session.scalars(
            select(Entity).order_by(Entity.archived_at.is_not(None), Entity.position)
        ).all()
        counts = dict(
            db.session.execute(
                select(Field.entity_id, func.count())
                .where(Field.archived_at.is_(None))
                .group_by(Field.entity_id)
            ).all()
        )
        return self._render("tabula/schema/tables.html", entities=entities, counts=counts)

    @expose("/create", methods=["POST"])
    @has_access
    def create_table(self) -> Any:
        try:
            entity = service.create_entity(
                request.form.get("label", ""),
                request.form.get("plural_label", ""),
                request.form.get("icon", "fa-table"),
                user_id=self._user_id(),
            )
        except SchemaError as exc:
            flash(str(exc), "danger")
            return redirect(url_for("SchemaAdminView.tables"))
        refresh()
        flash(_("Table “%(label)s” created.", label=entity.label), "success")
        return redirect(url_for("SchemaAdminView.table", entity_id=entity.id))

    @expose("/<int(max=2147483647):entity_id>/")
    @has_access
    def table(self, entity_id: int) -> Any:
        entity = db.session.get(Entity, entity_id) or abort(404)
        fields = db.session.scalars(
            select(Field).where(Field.entity_id == entity_id).order_by(Field.position, Field.id)
        ).all()
        targets = db.session.scalars(
            select(Entity).where(Entity.archived_at.is_(None)).order_by(Entity.position)
        )
        return self._render(
            "tabula/schema/table.html",
            entity=entity,
            live=[f for f in fields if f.archived_at is None],
            archived=[f for f in fields if f.archived_at is not None],
            targets=list(targets),
        )

    @expose("/<int(max=2147483647):entity_id>/update", methods=["POST"])
    @has_access
    def update_table(self, entity_id: int) -> Any:
        self._attempt(
            lambda: service.update_entity(
                entity_id,
                label=request.form.get("label", ""),
                plural_label=request.form.get("plural_label", ""),
                icon=request.form.get("icon", ""),
                display_field_id=_form_int("display_field_id"),
                user_id=self._user_id(),
            ),
            _("Saved."),
        )
        return redirect(url_for("SchemaAdminView.table", entity_id=entity_id))

    @expose("/<int(max=2147483647):entity_id>/archive", methods=["POST"])
    @has_access
    def archive_table(self, entity_id: int) -> Any:
        self._attempt(
            lambda: service.archive_entity(entity_id, user_id=self._user_id()),
            _("Table archived; its data is kept and it can be restored."),
        )
        return redirect(url_for("SchemaAdminView.table", entity_id=entity_id))

    @expose("/<int(max=2147483647):entity_id>/restore", methods=["POST"])
    @has_access
    def restore_table(self, entity_id: int) -> Any:
        self._attempt(
            lambda: service.restore_entity(entity_id, user_id=self._user_id()), _("Table restored.")
        )
        return redirect(url_for("SchemaAdminView.table", entity_id=entity_id))

    # fields

    @expose("/<int(max=2147483647):entity_id>/fields/add", methods=["POST"])
    @has_access
    def add_field(self, entity_id: int) -> Any:
        type_name = request.form.get("type", "")
        try:
            row = service.add_field(
                entity_id,
                request.form.get("label", ""),
                type_name,
                settings=_settings_from_form(type_name),
                required=_flag("required"),
                unique=_flag("unique"),
                default=request.form.get("default"),
                help_text=request.form.get("help_text", ""),
                position=_form_int("position"),
                show_in_list=_flag("show_in_list"),
                searchable=_flag("searchable"),
                indexed=_flag("indexed"),
                user_id=self._user_id(),
            )
            flash(_("Field “%(label)s” added.", label=row.label), "success")
        except SchemaError as exc:
            flash(str(exc), "danger")
        return redirect(url_for("SchemaAdminView.table", entity_id=entity_id))

    @expose("/fields/<int(max=2147483647):field_id>/")
    @has_access
    def field(self, field_id: int) -> Any:
        row = db.session.get(Field, field_id) or abort(404)
        shown = _shown_conversion(field_id)
        row = db.session.get(Field, field_id) or abort(404)  # a dead job's recovery may have changed it
        targets = db.session.scalars(
            select(Entity).where(Entity.archived_at.is_(None)).order_by(Entity.position)
        )
        return self._render(
            "tabula/schema/field.html",
            field=row,
            entity=row.entity,
            targets=list(targets),
            indexed_anyway=has_builtin_index(row),
            conversion=shown,
            conversion_state=_conversion_state(shown) if shown is not None else None,
        )

    @expose("/conversions/<int(max=2147483647):conversion_id>/status")
    @has_access
    def conversion_status(self, conversion_id: int) -> Any:
        record = db.session.get(FieldConversion, conversion_id) or abort(404)
        return jsonify(_conversion_state(schema_jobs.reconcile(record)))

    @expose("/conversions/<int(max=2147483647):conversion_id>/cancel", methods=["POST"])
    @has_access
    def cancel_conversion(self, conversion_id: int) -> Any:
        record = db.session.get(FieldConversion, conversion_id) or abort(404)
        field_id = record.field_id
        try:
            if schema_jobs.cancel(schema_jobs.reconcile(record)):
                flash(_("Cancelling: the field stays exactly as it was."), "success")
            else:
                flash(_("The conversion has already ended."), "warning")
        except RedisError:  # nothing was changed
            flash(_("The job queue cannot be reached; try again in a moment."), "danger")
        return redirect(url_for("SchemaAdminView.field", field_id=field_id))

    @expose("/fields/<int(max=2147483647):field_id>/update", methods=["POST"])
    @has_access
    def update_field(self, field_id: int) -> Any:
        row = db.session.get(Field, field_id) or abort(404)
        has_options = REGISTRY[row.type].has_options
        # A field indexed anyway shows "Indexed" ticked and locked (not sent): keep what the admin chose.
        indexed = None if has_builtin_index(row) else _flag("indexed")
        self._attempt(
            lambda: service.update_field(
                field_id,
                label=request.form.get("label", ""),
                help_text=request.form.get("help_text", ""),
                options=_options_from_form() if has_options else None,
                position=_form_int("position"),
                show_in_list=_flag("show_in_list"),
                searchable=_flag("searchable"),
                required=_flag("required"),
                unique=_flag("unique"),
                indexed=indexed,
                default=request.form.get("default"),
                user_id=self._user_id(),
                clear_removed_options=has_options and _flag("clear_removed_options"),
            ),
            _("Saved."),
        )
        return redirect(url_for("SchemaAdminView.field", field_id=field_id))

    @expose("/fields/<int(max=2147483647):field_id>/type", methods=["POST"])
    @has_access
    def change_field_type(self, field_id: int) -> Any:
        row = db.session.get(Field, field_id) or abort(404)
        type_name = request.form.get("type", "")
        try:
            if conversion_jobs.needs_job(field_id):
                schema_jobs.start(
                    field_id, type_name, _settings_from_form(type_name), user_id=self._user_id()
                )
                flash(_("The conversion runs in the background; this page shows its progress."), "success")
                return redirect(url_for("SchemaAdminView.field", field_id=field_id))
            service.change_type(field_id, type_name, _settings_from_form(type_name), user_id=self._user_id())
            flash(_("Type changed; every value was converted."), "success")
        except JobQueueUnavailable:
            flash(_("The job queue cannot be reached; nothing was changed. Try again in a moment."), "danger")
        except ConversionRefused as exc:
            db.session.expire_all()
            targets = db.session.scalars(select(Entity).where(Entity.archived_at.is_(None)))
            refused_row = db.session.get(Field, field_id)
            return self._render(
                "tabula/schema/field.html",
                field=refused_row,
                entity=row.entity,
                targets=list(targets),
                indexed_anyway=has_builtin_index(refused_row),
                refused=exc,
            ), 409
        except SchemaError as exc:
            flash(str(exc), "danger")
        return redirect(url_for("SchemaAdminView.field", field_id=field_id))

    @expose("/fields/<int(max=2147483647):field_id>/archive", methods=["POST"])
    @has_access
    def archive_field(self, field_id: int) -> Any:
        return self._field_action(field_id, service.archive_field, _("Field archived; its data is kept."))

    @expose("/fields/<int(max=2147483647):field_id>/restore", methods=["POST"])
    @has_access
    def restore_field(self, field_id: int) -> Any:
        return self._field_action(field_id, service.restore_field, _("Field restored."))

    @expose("/fields/<int(max=2147483647):field_id>/purge", methods=["POST"])
    @has_access
    def purge_field(self, field_id: int) -> Any:
        row = db.session.get(Field, field_id) or abort(404)
        entity_id = row.entity_id
        confirm = request.form.get("confirm", "")
        self._attempt(
            lambda: service.purge_field(field_id, confirm_label=confirm, user_id=self._user_id()),
            _("Field and its data purged."),
        )
        return redirect(url_for("SchemaAdminView.table", entity_id=entity_id))

    def _field_action(self, field_id: int, action: Any, done: str) -> Any:
        row = db.session.get(Field, field_id) or abort(404)
        entity_id = row.entity_id
        self._attempt(lambda: action(field_id, user_id=self._user_id()), done)
        return redirect(url_for("SchemaAdminView.table", entity_id=entity_id))

    @staticmethod
    def _attempt(change: Any, done: str) -> None:
        """Make a schema change; flash what happened, or the service's reason for refusing."""
        try:
            change()
            flash(done, "success")
        except SchemaError as exc:
            flash(str(exc), "danger")

    @expose("/changes")
    @has_access
    def changes(self) -> Any:
        page = request.args.get("page", "1")
        page_number = int(page) if page.isdecimal() and 0 < len(page) < 7 else 1
        rows = db.session.scalars(
            select(SchemaChange).order_by(SchemaChange.id.desc()).offset((page_number - 1) * 50).limit(51)
        ).all()
        return self._render(
            "tabula/schema/changes.html",
            rows=rows[:50],
            page=page_number,
            more=len(rows) > 50,
            change_text=change_text,
        )


def _shown_conversion(field_id: int) -> FieldConversion | None:
    """The field's background conversion the page shows: one still running (reconciled: a dead job's is
    cleaned up), or one that ended within ``CONVERSION_SHOWN``."""
    record = conversion_jobs.latest(field_id)
    if record is None:
        return None
    record = schema_jobs.reconcile(record)
    if record.active:
        return record
    ended = record.finished_at
    if ended is not None and ended.tzinfo is None:
        ended = ended.replace(tzinfo=dt.UTC)
    return record if ended is not None and dt.datetime.now(dt.UTC) - ended < CONVERSION_SHOWN else None


def _conversion_state(record: FieldConversion) -> dict[str, Any]:
    state = conversion_jobs.progress_of(record, schema_jobs.live_progress(record))
    state["status_label"] = str(CONVERSION_LABELS.get(record.status, record.status))
    state["to_type"] = str(REGISTRY[record.to_type].label) if record.to_type in REGISTRY else record.to_type
    return state
