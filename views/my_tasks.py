"""My tasks: the signed-in user's open tasks (assigned to them, or owned by them and assigned to nobody),
grouped Overdue, Today, Upcoming, No date, each with a "Done" button; and the record pages' quick actions
(``views.related.RecordQuickView``), registered here."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from flask import abort, flash, g, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from custom_fields import access, records, runtime
from custom_fields.access import Actor, Grants
from custom_fields.query import QueryError, TableQuery
from custom_fields.types import local_timezone
from views.related import (
    OPEN_STATUSES,
    TASKS,
    RecordQuickView,
    as_record,
    aware,
    formatted,
    label_of,
    visible_field,
)

LIMIT = 500
DONE_LIMIT = 50
#: Fields shown per task besides its title and due date, when the user may see them.
DETAIL_FIELDS = ("priority", "status", "company_id", "contact_id", "deal_id")


@dataclass
class TaskRow:
    id: int
    version: int
    title: Markup
    url: str
    due: Markup | None
    overdue: bool
    done: bool
    details: list[tuple[str, Markup]] = field(default_factory=list)


@dataclass
class TaskGroup:
    key: str
    title: str
    rows: list[TaskRow] = field(default_factory=list)


def _row(rights: Grants, item: Any, now: dt.datetime) -> TaskRow:
    status = getattr(item, "status", None)
    due = aware(item.due_at) if visible_field(rights, "due_at") else None
    details = []
    for name in DETAIL_FIELDS:
        value = formatted(rights, item, name)
        if value:
            details.append((label_of(rights.entity.field_by_name(name)), value))
    return TaskRow(
        id=item.id,
        version=item.row_version,
        title=formatted(rights, item, "title") or Markup("#{}").format(item.id),
        url=url_for("TableView.show", slug=TASKS, pk=item.id),
        due=formatted(rights, item, "due_at"),
        overdue=status in OPEN_STATUSES and due is not None and due < now,
        done=status not in OPEN_STATUSES,
        details=details,
    )


def _has(query: TableQuery, name: str) -> bool:
    return any(column.name == name for column in query.all_columns)


def _mine(rights: Grants, user_id: int) -> TableQuery | None:
    """The tasks the user may read that are theirs: assigned to them, or theirs with nobody assigned
    (None when they may not see whose a task is)."""
    if rights.actor is None:
        return None
    try:
        query = TableQuery(TASKS, rights.actor)
    except QueryError:
        return None
    if not all(_has(query, name) for name in ("assignee_id", "owner_id", "status")):
        return None
    me = {"field": "assignee_id", "op": "eq", "value": user_id}
    nobody = {"field": "assignee_id", "op": "empty"}
    owned = {"and": [{"field": "owner_id", "op": "eq", "value": user_id}, nobody]}
    return query.where({"or": [me, owned]})


def _by_due(query: TableQuery) -> tuple[str, ...]:
    return ("due_at",) if _has(query, "due_at") else ()


def _read(query: TableQuery, limit: int) -> list[SimpleNamespace]:
    """The first ``limit`` rows as records, with the version a "done" click sends back."""
    rows = query.page(limit).rows
    versions = query.versions(r["id"] for r in rows)
    found = []
    for row in rows:
        item = as_record(row)
        item.row_version = versions.get(row["id"], 1)
        found.append(item)
    return found


def my_tasks(rights: Grants, user_id: int, *, with_done: bool = False) -> list[TaskGroup]:
    """The user's open tasks by group, each sorted by due date (and done ones last, when asked)."""
    query = _mine(rights, user_id)
    opened = [{"field": "status", "op": "eq", "value": status} for status in OPEN_STATUSES]
    open_rows = _read(query.where({"or": opened}).order_by(*_by_due(query)), LIMIT) if query else []
    now = dt.datetime.now(dt.UTC)
    zone = local_timezone()
    today = now.astimezone(zone).date()
    groups = {
        "overdue": TaskGroup("overdue", _("Overdue")),
        "today": TaskGroup("today", _("Today")),
        "upcoming": TaskGroup("upcoming", _("Upcoming")),
        "none": TaskGroup("none", _("No date")),
    }
    for item in open_rows:
        row = _row(rights, item, now)
        due = aware(item.due_at) if visible_field(rights, "due_at") else None
        if due is None:
            key = "none"
        elif row.overdue:
            key = "overdue"
        elif due.astimezone(zone).date() == today:
            key = "today"
        else:
            key = "upcoming"
        groups[key].rows.append(row)
    found = list(groups.values())
    if with_done:
        done = TaskGroup("done", _("Done"))
        if query is not None:
            latest = ("-completed_at", "-id") if _has(query, "completed_at") else ("-id",)
            finished = query.where({"field": "status", "op": "eq", "value": "done"}).order_by(*latest)
            done.rows = [_row(rights, item, now) for item in _read(finished, DONE_LIMIT)]
        found.append(done)
    return found


class MyTasksView(BaseView):
    route_base = "/my-tasks"
    default_view = "tasks"
    class_permission_name = "MyTasks"
    method_permission_name = {"tasks": "read", "done": "write"}

    def _rights(self) -> Grants:
        entity = runtime.current().entities.get(TASKS)
        if entity is None or entity.archived:
            abort(404)
        rights = access.current_grants(entity)
        if not rights.can("read"):
            abort(403)
        return rights

    @expose("/")
    @has_access
    def tasks(self) -> Any:
        rights = self._rights()
        with_done = request.args.get("done") == "1"
        groups = my_tasks(rights, g.user.id, with_done=with_done)
        return self.render_template(
            "tabula/my_tasks.html",
            groups=groups,
            with_done=with_done,
            can_edit=rights.can("edit") and rights.mode("status") == "edit",
            total=sum(len(group.rows) for group in groups if group.key != "done"),
            add_url=url_for("TableView.add", slug=TASKS) if rights.can("add") else None,
        )

    @expose("/<int(max=2147483647):pk>/done", methods=["POST"])
    @has_access
    def done(self, pk: int) -> Any:
        rights = self._rights()
        back = url_for("MyTasksView.tasks", **({"done": "1"} if request.args.get("done") == "1" else {}))
        if not rights.can("edit") or rights.mode("status") != "edit":
            abort(403)
        if not TableQuery(TASKS, Actor.current("ui")).exists(pk):
            abort(404)
        raw = request.form.get("version", "")
        version = int(raw) if isinstance(raw, str) and raw.isdecimal() and len(raw) < 10 else -1
        try:
            records.update(TASKS, pk, {"status": "done"}, Actor.current("ui"), expected_version=version)
        except records.StaleRecord:
            message = _(
                "Someone changed this task since the list was shown; nothing was changed. Check it again."
            )
            flash(message, "warning")
        except records.AccessDenied:
            abort(403)
        except records.RecordNotFound:
            abort(404)
        except records.RecordInvalid as refused:
            flash(str(refused) or _("The task could not be marked as done."), "danger")
        except records.RecordError as refused:
            flash(str(refused), "danger")
        else:
            flash(_("Task marked as done."), "success")
        return redirect(back)


def register(appbuilder: Any) -> None:
    """Add this module's screens (called by ``views.register_views``)."""
    from views import add_view

    add_view(
        appbuilder,
        MyTasksView,
        "My tasks",
        label=_l("My tasks"),
        icon="fa-check-square-o",
        audience="staff",
    )
    add_view(appbuilder, RecordQuickView, None, audience="staff")
