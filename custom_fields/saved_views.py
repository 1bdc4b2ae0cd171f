"""Saved views: a table's grid state (columns, their order, widths and freezing, filters, sort, quick search)
under a name, personal or shared with roles, and one default view per table set by an admin.

A view is cleaned for whoever opens it: a field the reader may not see (or that no longer exists) is simply
left out of its columns, widths, sort and filters, so a shared view never reveals or filters by a hidden
field. Its filter is checked by the query layer when it is saved. A purged field leaves every view
(``hooks.field_purged``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

from flask_appbuilder.security.sqla.models import Role
from flask_babel import gettext as _
from sqlalchemy import or_, select

from app.extensions import db
from custom_fields import hooks, runtime
from custom_fields.access import Actor, is_admin
from custom_fields.query import MAX_DEPTH, QueryDenied, QueryError, TableQuery
from models import Entity, SavedView, saved_view_role

NAME_LENGTH = 100
SEARCH_LENGTH = 100
MIN_WIDTH, MAX_WIDTH = 30, 2000
MAX_VIEWS_PER_USER_AND_TABLE = 200


class ViewError(QueryError):
    """A view that cannot be saved or changed; the message is for the user."""


class ViewNotFound(ViewError):  # noqa: N818 (a refusal, as QueryDenied)
    status = 404


# --- the state ----------------------------------------------------------------------------------------------


def _names(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _prune(node: Any, keep: Callable[[Any], bool], depth: int = 0) -> Any:
    """The filter without the conditions whose field ``keep`` refuses (an emptied group goes too)."""
    if depth > MAX_DEPTH:
        return node  # too deep: left for the query layer to refuse
    if isinstance(node, list):
        node = {"and": node}
    if not isinstance(node, dict):
        return None
    for key in ("and", "or"):
        if key in node and isinstance(node[key], list):
            kept = [p for p in (_prune(child, keep, depth + 1) for child in node[key]) if p is not None]
            return {key: kept} if kept else None
    return node if keep(node.get("field")) else None


def clean_state(query: TableQuery, raw: Any) -> dict[str, Any]:
    """``raw`` as the reader of ``query`` may have it: only visible fields; the filter checked by the query
    layer (``QueryError`` for one it refuses). Unknown keys are dropped."""
    state = raw if isinstance(raw, dict) else {}
    visible = {c.name for c in query.all_columns}
    sortable = {c.name for c in query.all_columns if c.sortable}
    fields = [n for n in dict.fromkeys(_names(state.get("fields"))) if n in visible]
    widths_raw = state.get("widths") if isinstance(state.get("widths"), dict) else {}
    widths = {
        name: min(max(int(px), MIN_WIDTH), MAX_WIDTH)
        for name, px in widths_raw.items()
        if name in visible and isinstance(px, int | float) and not isinstance(px, bool) and math.isfinite(px)
    }
    frozen = state.get("frozen")
    frozen = min(max(int(frozen), 0), len(fields) or len(visible)) if isinstance(frozen, int) else 0
    sort = [s for s in _names(state.get("sort")) if s.removeprefix("-") in sortable][:10]
    search = state.get("q") if isinstance(state.get("q"), str) else ""
    # A field that is not a name is kept for the query layer to refuse (a 422, not a crash on hashing it).
    keep = lambda field: not isinstance(field, str) or field in visible  # noqa: E731
    condition = _prune(state.get("filter"), keep) if state.get("filter") else None
    if condition is not None:
        query.where(condition)  # refuses what the query layer would refuse
    return {
        "fields": fields,
        "widths": widths,
        "frozen": frozen,
        "filter": condition,
        "sort": sort,
        "q": search.strip()[:SEARCH_LENGTH],
    }


def applied(view: SavedView, actor: Actor) -> dict[str, Any]:
    """The view's state for ``actor``: what they may not see left out."""
    entity = runtime.current().by_id.get(view.entity_id)
    if entity is None:
        raise ViewNotFound(_("The view does not exist."))
    query = TableQuery(entity.slug, actor)
    try:
        return clean_state(query, view.state)
    except QueryError:  # a filter that no longer holds (an option removed, a type changed): shown without it
        return clean_state(query, {**(view.state or {}), "filter": None})


# --- who sees and changes what ------------------------------------------------------------------------------


def _reader_query(slug: str, actor: Actor) -> TableQuery:
    query = TableQuery(slug, actor)
    if actor.user_id is None:
        raise QueryDenied(_("Sign in to save views."))
    return query


def listed(slug: str, actor: Actor) -> list[SavedView]:
    """The views of a table ``actor`` may open: their own, those shared with one of their roles and the
    table's default; admins also see everyone's shared views (to manage them)."""
    query = _reader_query(slug, actor)
    shared = select(saved_view_role.c.view_id)
    if not is_admin(actor):
        shared = shared.where(saved_view_role.c.role_id.in_(sorted(actor.role_ids) or [-1]))
    statement = (
        select(SavedView)
        .where(
            SavedView.entity_id == query.entity.id,
            or_(SavedView.owner_id == actor.user_id, SavedView.is_default, SavedView.id.in_(shared)),
        )
        .order_by(SavedView.is_default.desc(), SavedView.name, SavedView.id)
    )
    return list(db.session.scalars(statement))


def get(slug: str, view_id: Any, actor: Actor) -> SavedView:
    """A view of the table ``actor`` may open; any other (another table's, a stranger's) is not found."""
    if isinstance(view_id, bool) or not isinstance(view_id, int | str) or not str(view_id).isdecimal():
        raise ViewNotFound(_("The view does not exist."))
    wanted = int(view_id)
    found = next((v for v in listed(slug, actor) if v.id == wanted), None)
    if found is None:
        raise ViewNotFound(_("The view does not exist."))
    return found


def may_change(view: SavedView, actor: Actor) -> bool:
    return is_admin(actor) or (view.owner_id is not None and view.owner_id == actor.user_id)


def _roles(role_ids: Any, actor: Actor) -> list[Role]:
    """The roles a view is shared with: any role for an admin, the user's own roles for anyone else."""
    wanted = (
        {int(r) for r in role_ids if isinstance(r, int | str) and str(r).isdecimal()}
        if isinstance(role_ids, list)
        else set()
    )
    if not is_admin(actor):
        refused = wanted - set(actor.role_ids)
        if refused:
            raise ViewError(_("You may share a view only with roles you have."))
    if not wanted:
        return []
    return list(db.session.scalars(select(Role).where(Role.id.in_(sorted(wanted)))))


def _name(raw: Any) -> str:
    name = " ".join(str(raw or "").split())
    if not name:
        raise ViewError(_("A view needs a name."))
    if len(name) > NAME_LENGTH:
        raise ViewError(_("A view's name has at most %(n)d characters.", n=NAME_LENGTH))
    return name


def save(
    slug: str,
    actor: Actor,
    name: Any,
    state: Any,
    roles: Any = None,
    *,
    view_id: Any = None,
    version: Any = None,
) -> SavedView:
    """Create a view (``view_id`` None) or change one the actor owns (admins: any). ``version`` is the one
    the user started from: a view changed meanwhile is refused, not overwritten."""
    query = _reader_query(slug, actor)
    cleaned = clean_state(query, state)
    if view_id is None:
        count = db.session.scalar(
            select(db.func.count(SavedView.id)).where(
                SavedView.entity_id == query.entity.id, SavedView.owner_id == actor.user_id
            )
        )
        if (count or 0) >= MAX_VIEWS_PER_USER_AND_TABLE:
            raise ViewError(_("You have too many views of this table; delete some first."))
        view = SavedView(entity_id=query.entity.id, owner_id=actor.user_id, version=1)
        db.session.add(view)
    else:
        view = get(slug, view_id, actor)
        if not may_change(view, actor):
            raise QueryDenied(_("Only the view's owner or an admin may change it."))
        if version is not None and str(version) != str(view.version):
            raise ViewError(_("Someone changed this view meanwhile; open it again to see their changes."))
        view.version += 1
    view.name = _name(name)
    view.state = cleaned
    if roles is not None or view_id is None:
        view.roles = _roles(roles or [], actor)
    db.session.commit()
    return view


def delete(slug: str, view_id: Any, actor: Actor) -> None:
    view = get(slug, view_id, actor)
    if not may_change(view, actor):
        raise QueryDenied(_("Only the view's owner or an admin may delete it."))
    db.session.delete(view)
    db.session.commit()


def make_default(slug: str, view_id: Any, actor: Actor, default: bool = True) -> SavedView:
    """Admins choose the view a table opens with (or none)."""
    if not is_admin(actor):
        raise QueryDenied(_("Only admins choose a table's default view."))
    view = get(slug, view_id, actor)
    for other in db.session.scalars(
        select(SavedView).where(SavedView.entity_id == view.entity_id, SavedView.is_default)
    ):
        other.is_default = False
    view.is_default = bool(default)
    db.session.commit()
    return view


def default_view(slug: str, actor: Actor) -> SavedView | None:
    return next((v for v in listed(slug, actor) if v.is_default), None)


def as_json(view: SavedView, actor: Actor) -> dict[str, Any]:
    return {
        "id": view.id,
        "name": view.name,
        "mine": view.owner_id == actor.user_id,
        "canChange": may_change(view, actor),
        "default": view.is_default,
        "roles": sorted(r.id for r in view.roles),
        "version": view.version,
        "state": applied(view, actor),
    }


# --- a purged field leaves every view -----------------------------------------------------------------------


def without_field(state: dict[str, Any], name: str) -> dict[str, Any]:
    """``state`` with no trace of the field ``name``."""
    state = dict(state or {})
    state["fields"] = [n for n in _names(state.get("fields")) if n != name]
    state["widths"] = {k: v for k, v in (state.get("widths") or {}).items() if k != name}
    state["sort"] = [s for s in _names(state.get("sort")) if s.removeprefix("-") != name]
    if state.get("filter"):
        state["filter"] = _prune(state["filter"], lambda field: field != name)
    return state


@hooks.hookimpl
def field_purged(field_id: int, name: str, slug: str) -> None:
    entity_id = db.session.scalar(select(Entity.id).where(Entity.slug == slug))
    if entity_id is None:
        return
    for view in db.session.scalars(select(SavedView).where(SavedView.entity_id == entity_id)):
        view.state = without_field(view.state, name)
    db.session.commit()


def role_choices(actor: Actor) -> Sequence[tuple[int, str]]:
    """The roles ``actor`` may share a view with, as (id, name)."""
    statement = select(Role.id, Role.name).order_by(Role.name)
    if not is_admin(actor):
        statement = statement.where(Role.id.in_(sorted(actor.role_ids) or [-1]))
    return [(row.id, row.name) for row in db.session.execute(statement)]


hooks.register(sys.modules[__name__])
