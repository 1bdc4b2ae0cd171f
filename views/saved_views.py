"""The grid's saved views as JSON (``/grid/<slug>/views``): list, create, change, delete, and the table's
default view (admins). The rules live in ``custom_fields.saved_views``; this module only speaks HTTP."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from flask_appbuilder import BaseView, ModelView, expose
from flask_appbuilder.security.decorators import has_access_api
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from app.bounded_filters import BoundedInterface
from app.extensions import db
from custom_fields import saved_views
from custom_fields.access import Actor, is_admin
from custom_fields.formats import datetime_text
from custom_fields.query import QueryError, user_text
from custom_fields.spec import label_of
from models import SavedView
from views import add_view

VIEW_ID = "<int(max=2147483647):view_id>"


def _json(status: int, **payload: Any) -> Response:
    response = jsonify(payload)
    response.status_code = status
    return response


def _body() -> dict[str, Any] | None:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else None


class SavedViewApi(BaseView):
    route_base = "/grid"
    class_permission_name = "Grid"
    method_permission_name = {
        "listing": "read",
        "create": "read",
        "change": "read",
        "delete": "read",
        "default": "read",
    }

    @expose("/<slug>/views")
    @has_access_api
    def listing(self, slug: str) -> Response:
        actor = Actor.current("ui")
        try:
            views = [saved_views.as_json(v, actor) for v in saved_views.listed(slug, actor)]
        except QueryError as refused:
            return _json(refused.status, message=str(refused))
        return _json(200, views=views, roles=saved_views.role_choices(actor), admin=is_admin(actor))

    @expose("/<slug>/views", methods=["POST"])
    @has_access_api
    def create(self, slug: str) -> Response:
        return self._save(slug, None)

    @expose(f"/<slug>/views/{VIEW_ID}", methods=["POST"])
    @has_access_api
    def change(self, slug: str, view_id: int) -> Response:
        return self._save(slug, view_id)

    def _save(self, slug: str, view_id: int | None) -> Response:
        body = _body()
        if body is None:
            return _json(400, message=_("The view could not be read."))
        actor = Actor.current("ui")
        try:
            view = saved_views.save(
                slug,
                actor,
                body.get("name"),
                body.get("state"),
                body.get("roles"),
                view_id=view_id,
                version=body.get("version"),
            )
        except QueryError as refused:
            status = refused.status if refused.status != 400 else 422
            return _json(status, message=str(refused))
        return _json(201 if view_id is None else 200, view=saved_views.as_json(view, actor))

    @expose(f"/<slug>/views/{VIEW_ID}/delete", methods=["POST"])
    @has_access_api
    def delete(self, slug: str, view_id: int) -> Response:
        try:
            saved_views.delete(slug, view_id, Actor.current("ui"))
        except QueryError as refused:
            return _json(refused.status, message=str(refused))
        return _json(200, deleted=view_id)

    @expose(f"/<slug>/views/{VIEW_ID}/default", methods=["POST"])
    @has_access_api
    def default(self, slug: str, view_id: int) -> Response:
        body = _body() or {}
        actor = Actor.current("ui")
        try:
            view = saved_views.make_default(slug, view_id, actor, body.get("default", True) is not False)
        except QueryError as refused:
            return _json(refused.status, message=str(refused))
        return _json(200, view=saved_views.as_json(view, actor))


class SavedViewAdmin(ModelView):
    """System → Saved views: every user's views of every table, for admins to rename, share, make a table's
    default or delete (what a view shows is changed in the grid)."""

    datamodel = BoundedInterface(SavedView)
    route_base = "/savedviews"
    class_permission_name = "SavedViewAdmin"
    base_permissions = ["can_list", "can_show", "can_edit", "can_delete"]
    base_order = ("id", "desc")
    list_columns = ["name", "entity", "owner", "roles", "is_default", "updated_at"]
    show_columns = list_columns + ["created_at"]
    edit_columns = ["name", "roles", "is_default"]
    search_columns = ["name", "entity", "owner", "is_default"]
    label_columns = {
        "name": _l("Name of the view"),
        "entity": _l("Table"),
        "owner": _l("Owner"),
        "roles": _l("Shared with roles"),
        "is_default": _l("The table opens with it"),
        "created_at": _l("Created"),
        "updated_at": _l("Updated"),
    }
    formatters_columns = {
        "entity": lambda entity: label_of(entity, "plural_label") if entity is not None else "—",
        "owner": lambda owner: (
            user_text(owner.first_name, owner.last_name, owner.username) if owner is not None else "—"
        ),
        "roles": lambda roles: ", ".join(sorted(r.name for r in roles or [])) or "—",
        "updated_at": lambda value: datetime_text(value),
        "created_at": lambda value: datetime_text(value),
    }
    list_title = _l("Saved views")
    show_title = _l("Saved view")
    edit_title = _l("Saved view")

    def pre_update(self, item: SavedView) -> None:
        name = " ".join(str(item.name or "").split())
        if not name or len(name) > saved_views.NAME_LENGTH:
            raise ValueError(_("A view's name has at most %(n)d characters.", n=saved_views.NAME_LENGTH))
        item.name = name
        item.version += 1
        if item.is_default:
            for other in db.session.query(SavedView).filter(
                SavedView.entity_id == item.entity_id, SavedView.id != item.id, SavedView.is_default
            ):
                other.is_default = False


def register(appbuilder: Any) -> None:
    from views import add_system_view

    add_view(appbuilder, SavedViewApi, None, audience="staff")
    add_system_view(appbuilder, SavedViewAdmin, "Saved views", _l("Saved views"), "fa-bookmark")
