"""Screens around the write path: who may do what (access rules per role, table and field), the recycle
bin, and the audit log of every record change."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

from flask import abort, current_app, flash, g, redirect, request, send_file, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_appbuilder.security.sqla.models import Role, User
from flask_babel import gettext as _
from sqlalchemy import select

from app.extensions import db
from custom_fields import access, history, records, runtime
from custom_fields.access import Actor
from custom_fields.core import N_
from custom_fields.query import QueryError, TableQuery
from custom_fields.service import SchemaError
from custom_fields.types import REGISTRY
from jobs import JobQueueUnavailable, enqueue
from models.records import FIELD_MODES, SCOPED_ACTIONS, SCOPES, TABLE_ACTIONS, RecordChange, TableRule

ACTION_LABELS = {
    "read": N_("Viewing"), "add": N_("Creating"), "edit": N_("Editing"), "delete": N_("Deleting"),
    "export": N_("Export"), "import": N_("Import"), "mail": N_("Mass mail"),
}  # fmt: skip
MODE_LABELS = {"edit": N_("Can edit"), "view": N_("View only"), "hidden": N_("Hidden")}
#: How far read, edit and delete reach: "none" denies the action, the others allow it that far.
SCOPE_LABELS = {
    "inherit": N_("As default"), "none": N_("None"), "own": N_("Own"), "team": N_("Team"), "all": N_("All"),
}  # fmt: skip
SCOPE_CHOICES = ("none", *SCOPES)
#: Earlier form values for scoped actions, still accepted: allow (keep the reach), deny (= none).
LEGACY_CHOICES = ("allow", "deny")
BIN_LIMIT = 200
AUDIT_PAGE = 50


def _int_arg(value: str | None) -> int | None:
    return int(value) if value and value.isdecimal() and len(value) < 10 else None


def _date_arg(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


def scope_choice(rule: TableRule | None, action: str, default: TableRule | None, *, is_default: bool) -> str:
    """What the access screen shows for a scoped action: ``inherit``, ``none``, ``own``, ``team``, ``all``.
    On a role's default row: whether it may, and how far (NULL reach = all). On a table's row: inherit
    when neither the right nor the reach is set; else the effective choice."""
    if is_default:
        if rule is None or not rule.get(action):
            return "none"
        return rule.get_scope(action) or "all"
    if rule is None:
        return "inherit"
    allowed, reach = rule.get(action), rule.get_scope(action)
    if allowed is None and reach is None:
        return "inherit"
    if allowed is False:
        return "none"
    if allowed is None and not (default is not None and default.get(action)):
        return "inherit"  # a reach of its own, but the default denies: effectively as default
    return reach or (default.get_scope(action) if default is not None else None) or "all"


def scope_changes(choice: str, action: str, *, is_default: bool) -> dict[str, bool | str | None]:
    """The rule values (for ``access.save_rules``) that one choice on the access screen stands for."""
    if choice == "allow":
        return {action: True}
    if choice in ("none", "deny"):
        return {action: False} if is_default else {action: False, f"{action}_scope": None}
    if choice == "inherit":
        return {action: None, f"{action}_scope": None}
    return {action: True, f"{action}_scope": choice}


def _editable_roles() -> list[Role]:
    """Roles whose rules an admin sets: not Admin (always everything), not Public (never any table)."""
    fixed = {access.ADMIN_ROLE, current_app.config.get("AUTH_ROLE_PUBLIC", "Public")}
    return [r for r in db.session.scalars(select(Role).order_by(Role.name)) if r.name not in fixed]


class AccessView(BaseView):
    """Per role: a default for every table, overridden per table and action, overridden per field."""

    route_base = "/admin/access"
    default_view = "tables"
    class_permission_name = "AccessRules"
    method_permission_name = {
        "tables": "read", "save_tables": "write", "fields": "read", "save_fields": "write",
    }  # fmt: skip

    def _role(self, role_id: int) -> Role:
        role = db.session.get(Role, role_id)
        if role is None or role not in _editable_roles():
            abort(404)
        return role

    @expose("/")
    @has_access
    def tables(self) -> Any:
        roles = _editable_roles()
        chosen = _int_arg(request.args.get("role"))
        role = next((r for r in roles if r.id == chosen), roles[0] if roles else None)
        schema = runtime.current()
        entities = [e for e in schema.entities.values() if not e.archived]
        rules: dict[int | None, dict[str, bool | None]] = {}
        scopes: dict[int | None, dict[str, str]] = {}
        if role is not None:
            rows = {
                r.entity_id: r
                for r in db.session.scalars(select(TableRule).where(TableRule.role_id == role.id))
            }
            rules = {eid: {a: r.get(a) for a in TABLE_ACTIONS} for eid, r in rows.items()}
            default = rows.get(None)
            scopes = {
                eid: {
                    a: scope_choice(rows.get(eid), a, default, is_default=eid is None) for a in SCOPED_ACTIONS
                }
                for eid in [None, *(e.id for e in entities)]
            }
        return self.render_template(
            "tabula/access/tables.html", roles=roles, role=role, entities=entities, rules=rules,
            scopes=scopes, actions=TABLE_ACTIONS, scoped_actions=SCOPED_ACTIONS,
            scope_choices=SCOPE_CHOICES, scope_labels={k: _(t) for k, t in SCOPE_LABELS.items()},
            action_labels={a: _(t) for a, t in ACTION_LABELS.items()},
        )  # fmt: skip

    @expose("/<int(max=2147483647):role_id>/tables", methods=["POST"])
    @has_access
    def save_tables(self, role_id: int) -> Any:
        """Every table's choices; a scoped action (read, edit, delete) that was left as shown is not
        rewritten, so a rule the screen shows only approximately stays as it was."""
        role = self._role(role_id)
        choices = {"allow": True, "deny": False, "inherit": None}
        tables: dict[int | None, dict[str, Any]] = {}
        live = {e.id for e in runtime.current().entities.values() if not e.archived}
        rows = {
            r.entity_id: r for r in db.session.scalars(select(TableRule).where(TableRule.role_id == role.id))
        }
        for key in ["default", *(f"t{eid}" for eid in sorted(live))]:
            entity_id = None if key == "default" else int(key[1:])
            rights: dict[str, Any] = {}
            for action in TABLE_ACTIONS:
                value = request.form.get(f"{key}.{action}")
                if value is None:
                    continue
                if action in SCOPED_ACTIONS:
                    allowed = (*SCOPE_CHOICES, *LEGACY_CHOICES, *(() if entity_id is None else ("inherit",)))
                    if value not in allowed:
                        return self._refuse(role)
                    shown = scope_choice(
                        rows.get(entity_id), action, rows.get(None), is_default=entity_id is None
                    )
                    if value == shown:
                        continue
                    rights.update(scope_changes(value, action, is_default=entity_id is None))
                    continue
                if value not in choices or (entity_id is None and value == "inherit"):
                    return self._refuse(role)
                rights[action] = choices[value]
            if rights:
                tables[entity_id] = rights
        self._attempt(lambda: access.save_rules(role.id, tables=tables, user_id=g.user.id))
        return redirect(url_for("AccessView.tables", role=role.id))

    @staticmethod
    def _refuse(role: Role) -> Any:
        flash(_("Not saved: an unknown choice was sent."), "danger")
        return redirect(url_for("AccessView.tables", role=role.id))

    @expose("/<int(max=2147483647):role_id>/fields/<slug>")
    @has_access
    def fields(self, role_id: int, slug: str) -> Any:
        role = self._role(role_id)
        entity = runtime.current().entity(slug)
        if entity is None or entity.archived:
            abort(404)
        modes = {
            f.id: runtime.current().access.fields.get((role.id, f.id), "edit") for f in entity.live_fields
        }
        return self.render_template(
            "tabula/access/fields.html", role=role, entity=entity, modes=modes, mode_choices=FIELD_MODES,
            mode_labels={m: _(t) for m, t in MODE_LABELS.items()},
            type_label=lambda f: REGISTRY[f.type].label,
        )  # fmt: skip

    @expose("/<int(max=2147483647):role_id>/fields/<slug>", methods=["POST"])
    @has_access
    def save_fields(self, role_id: int, slug: str) -> Any:
        role = self._role(role_id)
        entity = runtime.current().entity(slug)
        if entity is None or entity.archived:
            abort(404)
        wanted: dict[int, str | None] = {}
        for spec in entity.live_fields:
            value = request.form.get(f"field.{spec.id}")
            if value is None:
                continue
            if value not in FIELD_MODES:
                flash(_("Not saved: an unknown choice was sent."), "danger")
                return redirect(url_for("AccessView.fields", role_id=role.id, slug=slug))
            wanted[spec.id] = value
        self._attempt(lambda: access.save_rules(role.id, fields=wanted, user_id=g.user.id))
        return redirect(url_for("AccessView.fields", role_id=role.id, slug=slug))

    @staticmethod
    def _attempt(change: Any) -> None:
        try:
            change()
            flash(_("Access rules saved. They apply at once, in every open session."), "success")
        except SchemaError as exc:
            flash(str(exc), "danger")


class RecycleBinView(BaseView):
    """Deleted records: admins see and restore all of them; other users the records they own."""

    route_base = "/recycle-bin"
    default_view = "bin"
    class_permission_name = "RecycleBin"
    method_permission_name = {"bin": "read", "restore": "write", "purge": "write"}

    @expose("/")
    @has_access
    def bin(self) -> Any:
        schema = runtime.current()
        actor = Actor.current("ui")
        items = []
        for slug, entity in schema.entities.items():
            if entity.archived:
                continue
            try:
                binned = TableQuery(slug, actor).binned(BIN_LIMIT)
            except QueryError:
                continue
            items += [(entity, SimpleNamespace(**row)) for row in binned]
        items.sort(key=lambda pair: pair[1].deleted_at, reverse=True)
        is_admin = access.is_admin(actor)
        return self.render_template(
            "tabula/access/recycle_bin.html", items=items[:BIN_LIMIT],
            days=current_app.config["RECYCLE_BIN_DAYS"], is_admin=is_admin,
            user_label=runtime.user_label,
        )  # fmt: skip

    @expose("/<slug>/<int(max=2147483647):pk>/restore", methods=["POST"])
    @has_access
    def restore(self, slug: str, pk: int) -> Any:
        try:
            records.restore(slug, pk, Actor.current("ui"))
        except records.RecordNotFound:
            abort(404)
        except records.RecordError as exc:
            flash(str(exc), "danger")
            return redirect(url_for("RecycleBinView.bin"))
        flash(_("Restored, with its history."), "success")
        return redirect(url_for("TableView.show", slug=slug, pk=pk))

    @expose("/purge", methods=["POST"])
    @has_access
    def purge(self) -> Any:
        """Admins start the purge now (it also runs daily); the job page shows its progress."""
        if not access.is_admin(Actor.current()):
            abort(403)
        from jobs.records import purge_recycle_bin

        try:
            run = enqueue("purge_recycle_bin", purge_recycle_bin, user_id=g.user.id)
        except JobQueueUnavailable as exc:
            flash(str(exc), "danger")
            return redirect(url_for("RecycleBinView.bin"))
        return redirect(url_for("SystemView.job", run_id=run.id))


class AuditLogView(BaseView):
    """Every record change, filtered by user, table, source and period."""

    route_base = "/admin/history"
    default_view = "log"
    class_permission_name = "AuditLog"
    method_permission_name = {"log": "read", "archive": "read", "download": "read"}

    @expose("/")
    @has_access
    def log(self) -> Any:
        args = request.args
        user_id = _int_arg(args.get("user"))
        entity_id = _int_arg(args.get("table"))
        source = args.get("source") if args.get("source") in access.SOURCES else None
        since = _date_arg(args.get("from"))
        until = _date_arg(args.get("to"))
        page = _int_arg(args.get("page")) or 0
        query = history.audit_query(
            user_id=user_id,
            entity_id=entity_id,
            source=source,
            since=dt.datetime.combine(since, dt.time(), dt.UTC) if since else None,
            until=dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), dt.UTC) if until else None,
        )
        changes, more = history.audit_page(query, min(page, 10**5), AUDIT_PAGE, Actor.current("ui"))
        users = db.session.scalars(select(User).order_by(User.username)).all()
        used = set(db.session.scalars(select(RecordChange.entity_id).distinct()))
        tables = [e for e in runtime.current().entities.values() if e.id in used or e.id == entity_id]
        return self.render_template(
            "tabula/access/audit_log.html", changes=changes, more=more, page=page, users=users,
            tables=tables, sources=access.SOURCES, source_label=history.source_label,
            page_url=lambda n: url_for("AuditLogView.log", **{**request.args.to_dict(), "page": n}),
            chosen={"user": user_id, "table": entity_id, "source": source, "from": since, "to": until},
            size=history.size(), archives=history.archives(), megabytes=_megabytes,
            archive_default=(dt.date.today() - dt.timedelta(days=365)).isoformat(),
        )  # fmt: skip

    @expose("/archive", methods=["POST"])
    @has_access
    def archive(self) -> Any:
        """Admins move history older than a date into a file they can download (then it leaves the
        database); the audit log and the timelines no longer show what was moved."""
        if not access.is_admin(Actor.current()):
            abort(403)
        before = _date_arg(request.form.get("before"))
        if before is None or before > dt.date.today():
            flash(_("Choose a date that is not in the future."), "danger")
            return redirect(url_for("AuditLogView.log"))
        name, moved = history.archive_before(before)
        if name is None:
            flash(_("No history is older than %(date)s.", date=before.strftime("%d.%m.%Y")), "info")
        else:
            flash(_("%(n)d history rows moved to %(file)s.", n=moved, file=name), "success")
        return redirect(url_for("AuditLogView.log"))

    @expose("/archive/<string:name>")
    @has_access
    def download(self, name: str) -> Any:
        if not access.is_admin(Actor.current()):
            abort(403)
        path = history.archive_path(name)
        if path is None:
            abort(404)
        return send_file(path, mimetype="application/gzip", as_attachment=True, download_name=name)


def _megabytes(size: int | None) -> str:
    return "" if size is None else f"{size / 1_048_576:,.1f}".replace(",", " ")
