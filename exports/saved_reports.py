"""Saved reports: the builder's report under a name, personal or shared with roles.

Only the owner (or an admin) renames, changes or deletes one; the others it is shared with open it
read-only. A saved report keeps its definition only: every figure is computed when it is opened, with the
reader's own rights (their row scope, their visible fields), so sharing a report never shares data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask_appbuilder.security.sqla.models import Role
from flask_babel import gettext as _
from sqlalchemy import delete as delete_rows
from sqlalchemy import func, or_, select

from app.extensions import db
from custom_fields import runtime
from custom_fields.access import Actor, grants, is_admin
from custom_fields.query import QueryDenied
from exports import reports
from exports.reports import Definition, ReportError
from models import ExportSchedule, ExportScheduleRun, SavedReport, saved_report_role

NAME_LENGTH = 100
MAX_REPORTS_PER_USER = 500


class ReportNotFound(ReportError):  # noqa: N818 (a refusal, as QueryDenied)
    status = 404


def _readable_entity_ids(actor: Actor) -> list[int]:
    schema = runtime.current()
    return sorted(
        e.id
        for e in schema.entities.values()
        if not e.archived and grants(actor, e, schema.access).can("read")
    )


def listed(actor: Actor) -> list[SavedReport]:
    """The reports ``actor`` may open: their own and those shared with one of their roles (admins: every
    shared one, to manage them), of tables they may read."""
    if actor.user_id is None:
        return []
    shared = select(saved_report_role.c.report_id)
    if not is_admin(actor):
        shared = shared.where(saved_report_role.c.role_id.in_(sorted(actor.role_ids) or [-1]))
    statement = (
        select(SavedReport)
        .where(
            SavedReport.entity_id.in_(_readable_entity_ids(actor) or [-1]),
            or_(SavedReport.owner_id == actor.user_id, SavedReport.id.in_(shared)),
        )
        .order_by(SavedReport.name, SavedReport.id)
    )
    return list(db.session.scalars(statement))


def get(report_id: Any, actor: Actor) -> SavedReport:
    """A report ``actor`` may open; any other is not found."""
    if isinstance(report_id, bool) or not isinstance(report_id, int | str) or not str(report_id).isdecimal():
        raise ReportNotFound(_("The report does not exist."))
    wanted = int(report_id)
    found = next((r for r in listed(actor) if r.id == wanted), None)
    if found is None:
        raise ReportNotFound(_("The report does not exist."))
    return found


def may_change(report: SavedReport, actor: Actor) -> bool:
    return is_admin(actor) or (report.owner_id is not None and report.owner_id == actor.user_id)


def definition(report: SavedReport) -> Definition:
    return Definition.from_json(report.definition)


def _name(raw: Any) -> str:
    name = " ".join(str(raw or "").split()) if isinstance(raw, str | None) else ""
    if not name:
        raise ReportError(_("A report needs a name."))
    if len(name) > NAME_LENGTH:
        raise ReportError(_("A report's name has at most %(n)d characters.", n=NAME_LENGTH))
    return name


def _roles(role_ids: Any, actor: Actor) -> list[Role]:
    """Any role for an admin; the user's own roles for anyone else."""
    if role_ids is not None and not isinstance(role_ids, list):
        raise ReportError(_("Share a report with roles."))
    wanted = {int(r) for r in role_ids or [] if isinstance(r, int | str) and str(r).isdecimal()}
    if not is_admin(actor) and wanted - set(actor.role_ids):
        raise ReportError(_("You may share a report only with roles you have."))
    if not wanted:
        return []
    return list(db.session.scalars(select(Role).where(Role.id.in_(sorted(wanted)))))


def save(
    actor: Actor,
    name: Any,
    raw: Any,
    roles: Any = None,
    *,
    report_id: Any = None,
    version: Any = None,
) -> SavedReport:
    """Create a report (``report_id`` None) or change one the actor owns (admins: any); ``raw`` None keeps
    the definition (a rename). The definition is checked by running it as ``actor``; ``version`` is the
    one they started from: a report changed meanwhile is refused, not overwritten. Raises ``QueryError``,
    changing nothing."""
    if actor.user_id is None:
        raise QueryDenied(_("Sign in to save reports."))
    report = None
    if report_id is not None:
        report = get(report_id, actor)
        if not may_change(report, actor):
            raise QueryDenied(_("Only the report's owner or an admin may change it."))
        if version is not None and str(version) != str(report.version):
            raise ReportError(_("Someone changed this report meanwhile; open it again to see their changes."))
    name = _name(name)
    shared = _roles(roles, actor) if roles is not None or report is None else None
    found = definition(report) if raw is None and report is not None else Definition.from_json(raw)
    reports.run(found.resolved(actor), actor)  # refuses what the actor may not ask (a hidden field ...)
    entity = runtime.current().entity(found.spec.table)
    if report is None:
        count = db.session.scalar(
            select(func.count(SavedReport.id)).where(SavedReport.owner_id == actor.user_id)
        )
        if (count or 0) >= MAX_REPORTS_PER_USER:
            raise ReportError(_("You have too many reports; delete some first."))
        report = SavedReport(owner_id=actor.user_id, version=1)
        db.session.add(report)
    else:
        report.version += 1
    report.entity_id = entity.id
    report.name = name
    report.definition = found.as_json()
    if shared is not None:
        report.roles = shared
    db.session.commit()
    return report


def delete(report_id: Any, actor: Actor) -> None:
    report = get(report_id, actor)
    if not may_change(report, actor):
        raise QueryDenied(_("Only the report's owner or an admin may delete it."))
    # Its schedules go with it (SQLite does not enforce the foreign key's cascade).
    doomed = select(ExportSchedule.id).where(ExportSchedule.report_id == report.id)
    db.session.execute(delete_rows(ExportScheduleRun).where(ExportScheduleRun.schedule_id.in_(doomed)))
    db.session.execute(delete_rows(ExportSchedule).where(ExportSchedule.report_id == report.id))
    db.session.delete(report)
    db.session.commit()


def as_json(report: SavedReport, actor: Actor) -> dict[str, Any]:
    return {
        "id": report.id,
        "name": report.name,
        "mine": report.owner_id == actor.user_id,
        "canChange": may_change(report, actor),
        "owner": runtime.user_label(report.owner_id) if report.owner_id else "",
        "roles": sorted(r.id for r in report.roles),
        "version": report.version,
        "definition": report.definition,
    }


def role_choices(actor: Actor) -> Sequence[tuple[int, str]]:
    """The roles ``actor`` may share a report with, as (id, name)."""
    statement = select(Role.id, Role.name).order_by(Role.name)
    if not is_admin(actor):
        statement = statement.where(Role.id.in_(sorted(actor.role_ids) or [-1]))
    return [(row.id, row.name) for row in db.session.execute(statement)]
