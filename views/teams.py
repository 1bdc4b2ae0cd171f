"""Teams screen (System → Teams): create, rename and delete teams and set who is in them.

Team membership is part of the access rules (a role's "team" scope reaches the records of everyone sharing
a team with the user), so every change bumps the schema version in the same transaction: every process
(web and worker) rebuilds its access snapshot on its next request, no restart needed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import abort, flash, g, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_appbuilder.security.sqla.models import User
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from app.extensions import db
from custom_fields.service import SchemaError, bump_schema_version, run_schema_change
from models.teams import Team, team_member
from views import add_system_view

NAME_LENGTH = 100
MAX_ID = 2147483647


# --- the service -------------------------------------------------------------------------------------------


def _clean_name(name: Any, *, exclude_id: int | None = None) -> str:
    text = " ".join(str(name or "").split())
    if not text:
        raise SchemaError(_("Give the team a name."))
    if len(text) > NAME_LENGTH:
        raise SchemaError(_("A team name may have at most %(n)s characters.", n=NAME_LENGTH))
    query = select(Team.id).where(func.lower(Team.name) == text.lower())
    if exclude_id is not None:
        query = query.where(Team.id != exclude_id)
    if db.session.scalar(query) is not None:
        raise SchemaError(_("A team with this name already exists."))
    return text


def _team(team_id: int) -> Team:
    team = db.session.get(Team, team_id)
    if team is None:
        raise SchemaError(_("No such team."))
    return team


def create_team(name: str, member_ids: Iterable[int] = (), *, user_id: int | None = None) -> int:
    """A new team (with its first members); returns its id."""

    def change() -> int:
        team = Team(name=_clean_name(name))
        db.session.add(team)
        db.session.flush()
        _set_members(team, member_ids)
        bump_schema_version(user_id, "teams", f"Team “{team.name}” created", None, None)
        return team.id

    return run_schema_change(change)


def rename_team(team_id: int, name: str, *, user_id: int | None = None) -> None:
    def change() -> None:
        team = _team(team_id)
        new = _clean_name(name, exclude_id=team.id)
        if new != team.name:
            bump_schema_version(user_id, "teams", f"Team “{team.name}” renamed to “{new}”", None, None)
            team.name = new

    run_schema_change(change)


def delete_team(team_id: int, *, user_id: int | None = None) -> None:
    def change() -> None:
        team = _team(team_id)
        bump_schema_version(user_id, "teams", f"Team “{team.name}” deleted", None, None)
        team.members = []
        db.session.flush()
        db.session.delete(team)

    run_schema_change(change)


def set_members(team_id: int, member_ids: Iterable[int], *, user_id: int | None = None) -> None:
    """Exactly these users are the team's members."""

    def change() -> None:
        team = _team(team_id)
        before = {u.id for u in team.members}
        _set_members(team, member_ids)
        after = {u.id for u in team.members}
        if before != after:
            names = ", ".join(sorted(u.username for u in team.members)) or "—"
            bump_schema_version(user_id, "teams", f"Team “{team.name}” members: {names}", None, None)

    run_schema_change(change)


def _set_members(team: Team, member_ids: Iterable[int]) -> None:
    wanted = {int(i) for i in member_ids}
    users = list(db.session.scalars(select(User).where(User.id.in_(wanted)))) if wanted else []
    if len(users) != len(wanted):
        raise SchemaError(_("No such user."))
    team.members = sorted(users, key=lambda u: u.id)
    db.session.flush()


def teams_of_users() -> dict[int, list[str]]:
    """User id -> names of the teams they are in."""
    found: dict[int, list[str]] = {}
    query = (
        select(team_member.c.user_id, Team.name)
        .join(Team, Team.id == team_member.c.team_id)
        .order_by(Team.name)
    )
    for user_id, name in db.session.execute(query):
        found.setdefault(user_id, []).append(name)
    return found


# --- the screen --------------------------------------------------------------------------------------------


def _ids(values: list[str]) -> list[int] | None:
    """User ids from a form, or None when one of them is not a number."""
    ids: list[int] = []
    for value in values:
        if not value.isdecimal() or len(value) > 10 or int(value) > MAX_ID:
            return None
        ids.append(int(value))
    return ids


class TeamsView(BaseView):
    """Teams and their members; every user with their teams."""

    route_base = "/admin/teams"
    default_view = "teams"
    class_permission_name = "Teams"
    method_permission_name = {
        "teams": "read", "team": "read", "create": "write", "rename": "write", "delete": "write",
        "members": "write",
    }  # fmt: skip

    @expose("/")
    @has_access
    def teams(self) -> Any:
        teams = list(db.session.scalars(select(Team).order_by(Team.name)))
        users = list(db.session.scalars(select(User).order_by(User.username)))
        return self.render_template(
            "tabula/teams/list.html", teams=teams, users=users, user_teams=teams_of_users()
        )

    @expose("/<int(max=2147483647):team_id>")
    @has_access
    def team(self, team_id: int) -> Any:
        team = db.session.get(Team, team_id)
        if team is None:
            abort(404)
        users = list(db.session.scalars(select(User).order_by(User.username)))
        members = {u.id for u in team.members}
        return self.render_template(
            "tabula/teams/team.html", team=team, users=users, members=members, user_teams=teams_of_users()
        )

    @expose("/create", methods=["POST"])
    @has_access
    def create(self) -> Any:
        ids = _ids(request.form.getlist("member"))
        if ids is None:
            flash(_("Not saved: an unknown choice was sent."), "danger")
            return redirect(url_for("TeamsView.teams"))
        try:
            team_id = create_team(request.form.get("name", ""), ids, user_id=g.user.id)
        except SchemaError as exc:
            flash(str(exc), "danger")
            return redirect(url_for("TeamsView.teams"))
        flash(_("Team created. It applies at once, in every open session."), "success")
        return redirect(url_for("TeamsView.team", team_id=team_id))

    @expose("/<int(max=2147483647):team_id>/rename", methods=["POST"])
    @has_access
    def rename(self, team_id: int) -> Any:
        if db.session.get(Team, team_id) is None:
            abort(404)
        self._attempt(lambda: rename_team(team_id, request.form.get("name", ""), user_id=g.user.id))
        return redirect(url_for("TeamsView.team", team_id=team_id))

    @expose("/<int(max=2147483647):team_id>/members", methods=["POST"])
    @has_access
    def members(self, team_id: int) -> Any:
        if db.session.get(Team, team_id) is None:
            abort(404)
        ids = _ids(request.form.getlist("member"))
        if ids is None:
            flash(_("Not saved: an unknown choice was sent."), "danger")
        else:
            self._attempt(lambda: set_members(team_id, ids, user_id=g.user.id))
        return redirect(url_for("TeamsView.team", team_id=team_id))

    @expose("/<int(max=2147483647):team_id>/delete", methods=["POST"])
    @has_access
    def delete(self, team_id: int) -> Any:
        if db.session.get(Team, team_id) is None:
            abort(404)
        if self._attempt(lambda: delete_team(team_id, user_id=g.user.id)):
            return redirect(url_for("TeamsView.teams"))
        return redirect(url_for("TeamsView.team", team_id=team_id))

    @staticmethod
    def _attempt(change: Any) -> bool:
        try:
            change()
        except SchemaError as exc:
            flash(str(exc), "danger")
            return False
        flash(_("Teams saved. They apply at once, in every open session."), "success")
        return True


def register(appbuilder: Any) -> None:
    """Add this module's screens (called by ``views.register_views``)."""
    add_system_view(appbuilder, TeamsView, "Teams", _l("Teams"), "fa-users")
