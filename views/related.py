"""What a record's page shows besides its fields: related lists, one timeline, and actions other modules
offer for the record (convert a lead, merge, log a call ...).

Everything here is generic: a table's related lists are the live tables with a link field pointing at it,
its timeline merges the activities and tasks linked to it with its own history. Every read of records goes
through the query layer (``custom_fields.query``): row scopes, the recycle bin and hidden fields apply there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

from flask import abort, flash, g, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_babel import gettext as _
from markupsafe import Markup, escape
from sqlalchemy import select

from app.extensions import db
from custom_fields import access, hooks, records, runtime
from custom_fields.access import Actor, Grants
from custom_fields.query import QueryError, TableQuery
from custom_fields.spec import EntitySpec, FieldSpec
from custom_fields.types import REGISTRY

RELATED_LIMIT = 10
RELATED_COLUMNS = 5
TIMELINE_EACH = 50
TIMELINE_LIMIT = 100
ACTIVITIES, TASKS = "activities", "tasks"
KIND_ICONS = {
    "call": "fa-phone",
    "email": "fa-envelope",
    "meeting": "fa-users",
    "note": "fa-sticky-note-o",
    "sms": "fa-comment-o",
    "complaint": "fa-exclamation-triangle",
}
OPEN_STATUSES = ("open", "in_progress")


@dataclass(frozen=True)
class RecordAction:
    label: Any
    url: str
    icon: str = "fa-bolt"
    method: str = "get"  # "post" renders a small form with the CSRF token


def record_actions(entity: EntitySpec, rights: Grants, pk: int) -> list[RecordAction]:
    """What the ``record_actions`` hooks offer on this record's page, in the order they registered."""
    offered = hooks.call.record_actions(entity=entity, rights=rights, record_id=pk)
    return [action for found in reversed(offered) for action in (found or [])]


# --- helpers -----------------------------------------------------------------------------------------------


def label_of(spec: FieldSpec | EntitySpec, plural: bool = False) -> str:
    """A field's or table's label as the user reads it (the specs resolve core labels)."""
    return str(spec.plural_label if plural and isinstance(spec, EntitySpec) else spec.label)


def aware(value: Any) -> dt.datetime | None:
    """A stored timestamp as an aware UTC datetime (SQLite hands back naive ones)."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(), dt.UTC)
    return None


def visible_field(rights: Grants, name: str) -> FieldSpec | None:
    spec = rights.entity.field_by_name(name)
    if spec is None or spec.archived or rights.mode(name) == "hidden":
        return None
    return spec


def formatted(rights: Grants, item: Any, name: str) -> Markup | None:
    """A field's value as HTML through its type, or None when the field is hidden or empty."""
    spec = visible_field(rights, name)
    if spec is None:
        return None
    value = getattr(item, name, None)
    if value is None or value == "":
        return None
    return REGISTRY[spec.type].to_html(value, spec)


def links_to(child: EntitySpec, target: EntitySpec) -> list[FieldSpec]:
    """The live link fields of ``child`` that point at ``target``."""
    found = []
    for spec in child.live_fields:
        try:
            if REGISTRY[spec.type].target_entity_id(spec) == target.id:
                found.append(spec)
        except (KeyError, TypeError, ValueError):  # a link whose settings lost their target
            continue
    return found


def readable_links(child: EntitySpec, target: EntitySpec) -> tuple[Grants, list[FieldSpec]] | None:
    """The user's rights on ``child`` and its link fields to ``target`` they may see; None if none."""
    if child.archived:
        return None
    rights = access.current_grants(child)
    if not rights.can("read"):
        return None
    specs = [s for s in links_to(child, target) if rights.mode(s.name) != "hidden"]
    return (rights, specs) if specs else None


def list_filter_url(slug: str, link: FieldSpec, pk: int) -> str | None:
    """The table's list filtered on ``link == pk`` (FAB's ``_flt_<index>_<column>`` argument, the index
    being the operator's position among the field's registry filters); None when it may not filter on it."""
    if not link.searchable:
        return None
    operators = REGISTRY[link.type].operators
    if "eq" not in operators:
        return None
    query = urlencode({f"_flt_{operators.index('eq')}_{link.name}": pk})
    return f"{url_for('TableView.list', slug=slug)}?{query}"


def record_visible(entity: EntitySpec, pk: int) -> bool:
    try:
        return TableQuery(entity.slug, Actor.current("ui")).exists(pk)
    except QueryError:
        return False


# --- related lists -----------------------------------------------------------------------------------------


@dataclass
class RelatedRow:
    id: int
    url: str
    cells: list[Markup]


@dataclass
class RelatedPanel:
    entity: EntitySpec
    link: FieldSpec
    title: str
    icon: str
    columns: list[str]
    rows: list[RelatedRow]
    total: int
    list_url: str | None
    add_url: str | None

    @property
    def key(self) -> str:
        return f"{self.entity.slug}-{self.link.name}"


def related_panels(entity: EntitySpec, pk: int) -> list[RelatedPanel]:
    """For every live table the user may read that links to ``entity``: the linked records they may read,
    newest first."""
    schema = runtime.current()
    panels: list[RelatedPanel] = []
    for child in schema.entities.values():
        found = readable_links(child, entity)
        if found is None:
            continue
        rights, specs = found
        for link in specs:
            panels.append(_panel(child, rights, link, pk, several=len(specs) > 1))
    return panels


def linked_query(child: EntitySpec, specs: list[FieldSpec], pk: int) -> TableQuery | None:
    """The records of ``child`` the user may read whose links in ``specs`` point at ``pk`` (None: none)."""
    try:
        query = TableQuery(child.slug, Actor.current("ui"))
        return query.where({"or": [{"field": s.name, "op": "eq", "value": pk} for s in specs]})
    except QueryError:
        return None


def as_record(row: dict[str, Any]) -> SimpleNamespace:
    """A row of the query layer with its values as attributes (as the formatters read a record)."""
    return SimpleNamespace(**{name: value for name, value in row.items() if name != "_labels"})


def _panel(child: EntitySpec, rights: Grants, link: FieldSpec, pk: int, *, several: bool) -> RelatedPanel:
    query = linked_query(child, [link], pk)
    total = query.count().value if query is not None else 0
    rows_of = query.order_by("-id").page(RELATED_LIMIT).rows if query is not None and total else []
    items = [as_record(row) for row in rows_of]
    shown = [f for f in rights.visible_fields if f.show_in_list and f.name != link.name and f.name != "id"][
        :RELATED_COLUMNS
    ]
    rows = [
        RelatedRow(
            item.id,
            url_for("TableView.show", slug=child.slug, pk=item.id),
            [REGISTRY[f.type].to_html(getattr(item, f.name, None), f) for f in shown],
        )
        for item in items
    ]
    title = label_of(child, plural=True)
    if several:
        title = f"{title} ({label_of(link)})"
    add_url = None
    if rights.can("add") and rights.mode(link.name) == "edit" and not link.settings.get("auto"):
        add_url = url_for("TableView.add", slug=child.slug, **{link.name: pk})
    return RelatedPanel(
        entity=child,
        link=link,
        title=title,
        icon=child.icon or "fa-table",
        columns=[label_of(f) for f in shown],
        rows=rows,
        total=total,
        list_url=list_filter_url(child.slug, link, pk) if total else None,
        add_url=add_url,
    )


# --- one timeline ------------------------------------------------------------------------------------------


@dataclass
class TimelineItem:
    at: dt.datetime
    kind: str  # activity | task | change
    icon: str
    title: Markup
    url: str | None = None
    details: list[tuple[str, Markup]] = field(default_factory=list)
    css: str = ""
    who: str = ""
    change: Any = None  # a history.ChangeSet for kind "change"


def _occurred(item: SimpleNamespace) -> dt.datetime:
    when = aware(getattr(item, "occurred_at", None)) or aware(item.created_at)
    return when or dt.datetime.min.replace(tzinfo=dt.UTC)


def _newest_activities(query: TableQuery | None) -> list[SimpleNamespace]:
    """The ``TIMELINE_EACH`` newest activities by when they happened (when they were logged, if that is
    empty or hidden): the newest of those with a time and of those without, merged."""
    if query is None:
        return []
    newest = ("-created_at", "-id")
    if any(column.name == "occurred_at" for column in query.all_columns):
        timed = query.where({"field": "occurred_at", "op": "nempty"}).order_by("-occurred_at", "-id")
        untimed = query.where({"field": "occurred_at", "op": "empty"}).order_by(*newest)
        rows = timed.page(TIMELINE_EACH).rows + untimed.page(TIMELINE_EACH).rows
    else:
        rows = query.order_by(*newest).page(TIMELINE_EACH).rows
    found = sorted(map(as_record, rows), key=lambda item: (_occurred(item), item.id), reverse=True)
    return found[:TIMELINE_EACH]


def _title(rights: Grants, item: Any, name: str) -> Markup:
    value = formatted(rights, item, name)
    return value if value else Markup("#{}").format(item.id)


def _details(rights: Grants, item: Any, names: tuple[str, ...]) -> list[tuple[str, Markup]]:
    found = []
    for name in names:
        value = formatted(rights, item, name)
        if value:
            found.append((label_of(rights.entity.field_by_name(name)), value))
    return found


def _who(rights: Grants, item: Any, name: str) -> str:
    if visible_field(rights, name) is None or not getattr(item, name, None):
        return ""
    return runtime.user_label(getattr(item, name))


def activity_items(entity: EntitySpec, pk: int) -> list[TimelineItem]:
    schema = runtime.current()
    child = schema.entities.get(ACTIVITIES)
    found = readable_links(child, entity) if child is not None else None
    if found is None:
        return []
    rights, specs = found
    items = []
    for item in _newest_activities(linked_query(child, specs, pk)):
        kind = item.kind if visible_field(rights, "kind") else None
        at = aware(item.occurred_at if visible_field(rights, "occurred_at") else None)
        items.append(
            TimelineItem(
                at=at or aware(item.created_at) or dt.datetime.min.replace(tzinfo=dt.UTC),
                kind="activity",
                icon=KIND_ICONS.get(kind or "", "fa-comments"),
                title=_title(rights, item, "subject"),
                url=url_for("TableView.show", slug=ACTIVITIES, pk=item.id),
                details=_details(
                    rights, item, ("kind", "direction", "outcome", "complaint_category", "resolution")
                ),
                css="complaint" if kind == "complaint" else f"activity-{kind or 'other'}",
                who=_who(rights, item, "owner_id"),
            )
        )
    return items


def task_items(entity: EntitySpec, pk: int) -> list[TimelineItem]:
    schema = runtime.current()
    child = schema.entities.get(TASKS)
    found = readable_links(child, entity) if child is not None else None
    if found is None:
        return []
    rights, specs = found
    query = linked_query(child, specs, pk)
    newest = query.order_by("-created_at", "-id").page(TIMELINE_EACH).rows if query is not None else []
    now = dt.datetime.now(dt.UTC)
    items = []
    for item in map(as_record, newest):
        status = item.status if visible_field(rights, "status") else None
        due = aware(item.due_at) if visible_field(rights, "due_at") else None
        overdue = status in OPEN_STATUSES and due is not None and due < now
        css = "task-done" if status == "done" else ("overdue" if overdue else "task-open")
        items.append(
            TimelineItem(
                at=aware(item.created_at) or dt.datetime.min.replace(tzinfo=dt.UTC),
                kind="task",
                icon="fa-check-square-o" if status == "done" else "fa-square-o",
                title=_title(rights, item, "title"),
                url=url_for("TableView.show", slug=TASKS, pk=item.id),
                details=_details(rights, item, ("status", "due_at", "assignee_id", "priority")),
                css=css,
                who=_who(rights, item, "owner_id"),
            )
        )
    return items


def timeline(entity: EntitySpec, rights: Grants, pk: int, changes: list[Any] | None) -> list[TimelineItem]:
    """Activities and tasks linked to the record and its own history, newest first (empty for tables no
    activity or task links to: their page keeps the plain history)."""
    linked = activity_items(entity, pk) + task_items(entity, pk)
    if not linked:
        return []
    if changes is None:
        from custom_fields import history

        changes = history.timeline(rights, pk)
    merged = linked + [
        TimelineItem(
            at=aware(change.at) or dt.datetime.min.replace(tzinfo=dt.UTC),
            kind="change",
            icon="fa-history",
            title=escape(change.action_label),
            css="change",
            who=change.user,
            change=change,
        )
        for change in changes
    ]
    merged.sort(key=lambda item: item.at, reverse=True)
    return merged[:TIMELINE_LIMIT]


def has_timeline(entity: EntitySpec) -> bool:
    """Whether activities or tasks link to this table (whatever the user may see)."""
    schema = runtime.current()
    return any(
        schema.entities.get(slug) is not None and links_to(schema.entities[slug], entity)
        for slug in (ACTIVITIES, TASKS)
    )


# --- quick actions: log a call, add a task -----------------------------------------------------------------


def quick_link(child_slug: str, entity: EntitySpec) -> tuple[Grants, FieldSpec] | None:
    """The user's rights to add in ``child_slug`` and the link field to ``entity`` they may set, or None."""
    child = runtime.current().entities.get(child_slug)
    if child is None or child.archived:
        return None
    rights = access.current_grants(child)
    if not rights.can("add"):
        return None
    link = next((s for s in links_to(child, entity) if rights.mode(s.name) == "edit"), None)
    return (rights, link) if link is not None else None


def _options(rights: Grants, name: str) -> list[dict[str, str]] | None:
    spec = rights.entity.field_by_name(name)
    if spec is None or spec.archived or rights.mode(name) != "edit":
        return None
    return spec.options


def assignable_users() -> list[tuple[int, str]]:
    from flask_appbuilder.security.sqla.models import User

    users = db.session.scalars(select(User).where(User.active.is_(True)).order_by(User.username).limit(500))
    return [(u.id, runtime.user_label(u.id)) for u in users]


def quick_forms(entity: EntitySpec, pk: int) -> dict[str, Any]:
    found: dict[str, Any] = {}
    call = quick_link(ACTIVITIES, entity)
    if call is not None:
        rights, _link = call
        found["call"] = {
            "url": url_for("RecordQuickView.log_call", slug=entity.slug, pk=pk),
            "outcomes": _options(rights, "outcome"),
            "directions": _options(rights, "direction"),
            "subject": rights.mode("subject") == "edit",
            "body": rights.mode("body") == "edit",
        }
    task = quick_link(TASKS, entity)
    if task is not None:
        rights, _link = task
        me = g.user.id if getattr(g, "user", None) is not None else None
        found["task"] = {
            "url": url_for("RecordQuickView.add_task", slug=entity.slug, pk=pk),
            "due": rights.mode("due_at") == "edit",
            "users": assignable_users() if rights.mode("assignee_id") == "edit" else None,
            "me": me,
        }
    return found


def show_context(entity: EntitySpec, rights: Grants, pk: int) -> dict[str, Any]:
    """Everything the record page adds below the fields."""
    changes = g.get("tabula_timeline")
    return {
        "actions": record_actions(entity, rights, pk),
        "panels": related_panels(entity, pk),
        "timeline": timeline(entity, rights, pk, changes),
        "has_timeline": has_timeline(entity),
        "quick": quick_forms(entity, pk),
    }


def _form_text(name: str, limit: int = 10000) -> str:
    value = request.form.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


def _quick_create(slug: str, pk: int, child_slug: str, build: Callable[[Grants], dict[str, Any]]) -> Any:
    entity = runtime.current().entities.get(slug)
    if entity is None or entity.archived:
        abort(404)
    child = runtime.current().entities.get(child_slug)
    if child is None or child.archived or not access.current_grants(child).can("add"):
        abort(403)
    found = quick_link(child_slug, entity)
    if found is None or not record_visible(entity, pk):
        abort(404)
    rights, link = found
    values = {**build(rights), link.name: pk}
    back = url_for("TableView.show", slug=slug, pk=pk)
    try:
        saved = records.create(child_slug, values, Actor.current("ui"))
    except records.AccessDenied:
        abort(403)
    except records.RecordInvalid as refused:
        for name, message in refused.errors.items():
            spec = child.field_by_name(name)
            flash(f"{label_of(spec) if spec else name}: {message}", "danger")
        if not refused.errors:
            flash(str(refused), "danger")
        return redirect(back)
    except records.RecordError as refused:
        flash(str(refused), "danger")
        return redirect(back)
    if child_slug == ACTIVITIES:
        flash(_("The call was logged."), "success")
    else:
        flash(_("The task was added."), "success")
    return redirect(f"{back}#rec-{child_slug}-{saved.id}")


def _editable(rights: Grants, values: dict[str, Any]) -> dict[str, Any]:
    """Only what the user may set (a field they may not change is left to its default)."""
    return {k: v for k, v in values.items() if rights.mode(k) == "edit"}


class RecordQuickView(BaseView):
    """Small forms on a record's page: log a call, add a task, linked to the record."""

    route_base = "/record"
    default_view = "log_call"
    class_permission_name = "RecordQuickActions"
    method_permission_name = {"log_call": "write", "add_task": "write"}

    @expose("/<slug>/<int(max=2147483647):pk>/log-call", methods=["POST"])
    @has_access
    def log_call(self, slug: str, pk: int) -> Any:
        def build(rights: Grants) -> dict[str, Any]:
            return _editable(
                rights,
                {
                    "kind": "call",
                    "subject": _form_text("subject", 1000) or _("Call"),
                    "outcome": _form_text("outcome", 100) or None,
                    "direction": _form_text("direction", 100) or None,
                    "body": _form_text("body") or None,
                },
            )

        return _quick_create(slug, pk, ACTIVITIES, build)

    @expose("/<slug>/<int(max=2147483647):pk>/add-task", methods=["POST"])
    @has_access
    def add_task(self, slug: str, pk: int) -> Any:
        def build(rights: Grants) -> dict[str, Any]:
            return _editable(
                rights,
                {
                    "title": _form_text("title", 1000),
                    "due_at": _form_text("due_at", 100) or None,
                    "assignee_id": _form_text("assignee_id", 20) or None,
                    "status": "open",
                },
            )

        return _quick_create(slug, pk, TASKS, build)
