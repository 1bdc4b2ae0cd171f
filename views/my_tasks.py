"""My tasks: the signed-in user's open tasks (assigned to them, or owned by them and assigned to nobody),
grouped Overdue, Today, Upcoming, No date, each with a "Done" button; and the record pages' quick actions
(``views.related.RecordQuickView``), registered here."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from flask import abort, flash, g, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy import and_, or_, select

from app.extensions import db
from custom_fields import access, records, runtime
from custom_fields.access import Actor, Grants
from custom_fields.query import TableQuery
from custom_fields.types import local_timezone
from views.related import OPEN_STATUSES, TASKS, RecordQuickView, aware, formatted, label_of, visible_field

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


def my_tasks(rights: Grants, user_id: int, *, with_done: bool = False) -> list[TaskGroup]:
    """The user's open tasks by group, each sorted by due date (and done ones last, when asked)."""
    model = runtime.current().classes[TASKS]
    mine = or_(model.assignee_id == user_id, and_(model.owner_id == user_id, model.assignee_id.is_(None)))
    visible = TableQuery.reach(rights.entity.slug, rights.actor)
    query = (
        select(model)
        .where(visible, mine, model.status.in_(OPEN_STATUSES))
        .order_by(model.due_at.is_(None), model.due_at, model.id)
        .limit(LIMIT)
    )
    now = dt.datetime.now(dt.UTC)
    zone = local_timezone()
    today = now.astimezone(zone).date()
    groups = {
        "overdue": TaskGroup("overdue", _("Overdue")),
        "today": TaskGroup("today", _("Today")),
        "upcoming": TaskGroup("upcoming", _("Upcoming")),
        "none": TaskGroup("none", _("No date")),
    }
    for item in db.session.scalars(query):
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
        order = model.completed_at.desc() if hasattr(model, "completed_at") else model.id.desc()
        finished = (
            select(model)
            .where(visible, mine, model.status == "done")
            .order_by(order, model.id.desc())
            .limit(DONE_LIMIT)
        )
        done.rows = [_row(rights, item, now) for item in db.session.scalars(finished)]
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
        version = int(raw) if isinstance(raw, str) and raw.isdigit() and len(raw) < 10 else -1
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
