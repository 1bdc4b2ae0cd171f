"""The dispatcher: fixed routes registered once at start-up that serve every table's generated screens and
API, including tables created after the first request (Flask takes no new blueprints then).

``/t/<slug>/list/``, ``/show/<pk>``, ``/add``, ``/edit/<pk>``, ``/delete/<pk>`` and ``/lookup`` for the
screens; ``/api/v1/t/<slug>/`` (GET, POST), ``/<pk>`` (GET, PUT, DELETE) and ``/_info`` for the API. The
generated views' own FAB permission checks (``has_access`` / ``protect``) apply to every call.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, jsonify, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.api import BaseApi, protect, safe
from flask_appbuilder.api import expose as api_expose
from flask_appbuilder.api.manager import OpenApi, SwaggerView
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import func, or_, select

from app.extensions import db
from custom_fields import access, formats, runtime
from custom_fields.access import Actor
from custom_fields.query import Column, Page, QueryError, TableQuery
from custom_fields.spec import CUSTOM_CATEGORY_NAME, SYSTEM_CATEGORY_NAME, category_of, label_of

SYSTEM_CATEGORY = (SYSTEM_CATEGORY_NAME, _l("CRM"), "fa-address-book")
CUSTOM_CATEGORY = (CUSTOM_CATEGORY_NAME, _l("Tables"), "fa-th")
CATEGORIES = {SYSTEM_CATEGORY_NAME: SYSTEM_CATEGORY, CUSTOM_CATEGORY_NAME: CUSTOM_CATEGORY}
#: Menu categories that list tables: shown to whoever may read one of their tables.
TABLE_CATEGORIES = (SYSTEM_CATEGORY[0], CUSTOM_CATEGORY[0])
LOOKUP_LIMIT = 20
#: How far a lookup scrolls (pages of ``LOOKUP_LIMIT``): past that, type more of the name.
LOOKUP_PAGES = 25
VIEW_METHODS = {"list", "show", "add", "edit", "delete"}


def _view(slug: str) -> Any:
    from views.generator import view_for

    view = view_for(slug)
    if view is None:
        abort(404)
    return view


class TableView(BaseView):
    """Routes only; each call is delegated to the table's generated ModelView and its permission checks."""

    route_base = "/t"
    default_view = "lookup"

    @expose("/<slug>/list/")
    def list(self, slug: str) -> Any:
        return _view(slug).list()

    @expose("/<slug>/show/<int(max=2147483647):pk>")
    def show(self, slug: str, pk: int) -> Any:
        return _view(slug).show(pk)

    @expose("/<slug>/add", methods=["GET", "POST"])
    def add(self, slug: str) -> Any:
        return _view(slug).add()

    @expose("/<slug>/edit/<int(max=2147483647):pk>", methods=["GET", "POST"])
    def edit(self, slug: str, pk: int) -> Any:
        return _view(slug).edit(pk)

    @expose("/<slug>/delete/<int(max=2147483647):pk>", methods=["POST"])
    def delete(self, slug: str, pk: int) -> Any:
        return _view(slug).delete(pk)

    @expose("/<slug>/lookup")
    def lookup(self, slug: str) -> Any:
        """Search-as-you-type for link fields: ``{"results": [{"id", "text"}]}`` by the display field."""
        schema = runtime.current()
        entity = schema.entity(slug)
        if entity is None or entity.archived:
            abort(404)
        _require("can_read", entity.permission_name)
        term = request.args.get("q", "")[:100].strip()
        try:
            query = TableQuery(slug, Actor.current("ui"))
        except QueryError:
            return jsonify(results=[], pagination={"more": False})
        shown = entity.display_field
        column = next((c for c in query.all_columns if shown is not None and c.name == shown.name), None)
        if column is not None:
            query = query.fields(column.name)
        if term:
            query = query.where({"or": _lookup_conditions(query, column, term)})
        if column is not None and column.sortable:
            query = query.order_by(column.name)
        page: Page | None = query.page(LOOKUP_LIMIT)
        for _number in range(_lookup_page() - 1):
            if page is None or page.next_cursor is None:
                page = None
                break
            page = query.page(LOOKUP_LIMIT, after=page.next_cursor)
        rows = page.rows if page is not None else []
        pagination = {"more": page is not None and page.next_cursor is not None}
        results = []
        for row in rows:
            text = column.ftype.to_text(row[column.name], column.spec) if column is not None else ""
            results.append({"id": row["id"], "text": text or f"#{row['id']}"})
        return jsonify(results=results, pagination=pagination)

    @expose("/_users/lookup")
    def users_lookup(self) -> Any:
        _require(None, None)
        users = runtime.USERS
        term = request.args.get("q", "")[:100].strip().lower()
        query = select(users)
        if term:
            like = f"%{term}%"
            query = query.where(
                or_(
                    func.lower(users.c.username).like(like),
                    func.lower(users.c.first_name).like(like),
                    func.lower(users.c.last_name).like(like),
                )
            )
        offset = _lookup_offset()
        rows = db.session.execute(
            query.order_by(users.c.username, users.c.id).offset(offset).limit(LOOKUP_LIMIT + 1)
        ).all()
        results = [{"id": row.id, "text": runtime.user_label(row.id)} for row in rows[:LOOKUP_LIMIT]]
        return jsonify(results=results, pagination={"more": len(rows) > LOOKUP_LIMIT})


def _lookup_page() -> int:
    """Which page of lookup answers is asked (select2 asks page 2, 3, ... while scrolling), at most
    ``LOOKUP_PAGES``."""
    page = request.args.get("page", "1")
    number = int(page) if page.isdecimal() and len(page) < 6 else 1
    return min(max(number, 1), LOOKUP_PAGES)


def _lookup_conditions(query: TableQuery, column: Column | None, term: str) -> list[dict[str, Any]]:
    """A lookup matches a record's number, or its label (contains the text, or equals it for a label
    that is not text). A label the reader may not see is not searched."""
    found: list[dict[str, Any]] = []
    if term.isdecimal() and len(term) < 10:
        found.append({"field": "id", "op": "eq", "value": term})
    if column is not None:
        for op in ("ct", "eq"):
            if op in column.operators:
                condition = {"field": column.name, "op": op, "value": term}
                try:
                    query.where(condition)
                except QueryError:
                    break  # the text is not a value of this field
                found.append(condition)
                break
    return found or [{"field": "id", "op": "empty"}]  # nothing matches


def _lookup_offset() -> int:
    """Where the asked page of lookup answers starts (select2 asks page 2, 3, ... while scrolling)."""
    page = request.args.get("page", "1")
    number = int(page) if page.isdecimal() and len(page) < 6 else 1
    return (max(number, 1) - 1) * LOOKUP_LIMIT


def _require(permission: str | None, view_menu: str | None) -> None:
    if not current_user.is_authenticated:
        abort(401)
    if permission and not current_app.appbuilder.sm.has_access(permission, view_menu):
        abort(403)


api = Blueprint("table_api", __name__, url_prefix="/api/v1/t")


def _api(slug: str) -> Any:
    from flask_jwt_extended import verify_jwt_in_request

    from views.generator import api_for

    if not current_user.is_authenticated:
        # Which fields the API shows depends on who asks: read the token before choosing it.
        verify_jwt_in_request(optional=True)
    handler = api_for(slug)
    if handler is None:
        abort(404)
    return handler


@api.route("/<slug>/", methods=["GET"])
def api_list(slug: str) -> Any:
    return _api(slug).get_list()


@api.route("/<slug>/", methods=["POST"])
def api_post(slug: str) -> Any:
    return _api(slug).post()


@api.route("/<slug>/_info", methods=["GET"])
def api_info(slug: str) -> Any:
    return _api(slug).info()


@api.route("/<slug>/<int(max=2147483647):pk>", methods=["GET"])
def api_get(slug: str, pk: int) -> Any:
    return _api(slug).get(pk)


@api.route("/<slug>/<int(max=2147483647):pk>", methods=["PUT"])
def api_put(slug: str, pk: int) -> Any:
    return _api(slug).put(pk)


@api.route("/<slug>/<int(max=2147483647):pk>", methods=["DELETE"])
def api_delete(slug: str, pk: int) -> Any:
    return _api(slug).delete(pk)


# --- links to generated views and the menu -----------------------------------------------------------------


def build_url_for_generated_view(error: Exception, endpoint: str, values: dict[str, Any]) -> str:
    """FAB's templates build links as ``url_for('<view class>.<method>')``: send those to the dispatcher."""
    view_name, _dot, method = endpoint.partition(".")
    if view_name.startswith("TableView_") and method in VIEW_METHODS:
        slug = view_name[len("TableView_") :]
        values = {k: v for k, v in values.items() if k not in ("_external", "_anchor", "_method", "_scheme")}
        return url_for(f"TableView.{method}", slug=slug, **values)
    raise error


def install(schema: runtime.RuntimeSchema, views: list[Any]) -> None:
    """Swap the new generated screens into FAB's registry of views (its templates look there) and rebuild
    this process's menu entries for tables. APIs are not registered there: the OpenAPI document is built
    per user (``TableOpenApi``), so hidden fields stay out of it."""
    appbuilder = current_app.appbuilder
    generated = tuple(views)
    appbuilder.baseviews[:] = [
        v for v in appbuilder.baseviews if not getattr(v, "tabula_generated", False)
    ] + list(generated)
    for item in generated:
        item.tabula_generated = True
    _rebuild_menu(appbuilder, schema, {v.tabula_entity.slug for v in views})


def _rebuild_menu(appbuilder: Any, schema: runtime.RuntimeSchema, built: set[str]) -> None:
    menu = appbuilder.menu
    for name, _label, _icon in (SYSTEM_CATEGORY, CUSTOM_CATEGORY):
        category = menu.find(name)
        if category is not None:
            category.childs = [c for c in category.childs if not str(c.name).startswith("Table ")]
    for entity in sorted(schema.entities.values(), key=lambda e: (not e.is_system, e.id)):
        if entity.archived or entity.slug not in built:
            continue
        name, label, icon = CATEGORIES[category_of(entity)]
        menu.add_link(
            entity.permission_name,
            href=f"/grid/{entity.slug}/",  # the grid is each table's screen; its list is one click away
            icon=entity.icon,
            label=entity.plural_label,  # plain text, or CoreText (translated per request)
            category=name,
            category_icon=icon,
            category_label=label,
        )
    menu.menu[:] = [m for m in menu.menu if m.childs or m.href or m.name not in ("CRM", "Tables")]
    from views import order_menu

    order_menu(appbuilder)


class TableOpenApi(OpenApi):
    """FAB's OpenAPI document, plus each table's API as the signed-in user may use it: tables they may
    not read are left out, and so are fields hidden from them."""

    class_permission_name = "OpenApi"

    @api_expose("/<version>/_openapi")
    @protect()
    @safe
    def get(self, version: str) -> Any:
        """Endpoint that renders the OpenAPI document for one API version
        ---
        get:
          description: >-
            Get the OpenAPI spec for a specific API version
          parameters:
          - in: path
            schema:
              type: string
            name: version
          responses:
            200:
              description: The OpenAPI spec
              content:
                application/json:
                  schema:
                    type: object
            404:
              $ref: '#/components/responses/404'
        """
        from views.generator import api_for

        api_spec = self._create_api_spec(version)
        apis = [v for v in current_app.appbuilder.baseviews if isinstance(v, BaseApi)]
        for slug, entity in sorted(runtime.current().entities.items()):
            if entity.archived:
                continue
            rights = access.current_grants(entity)
            if rights.can("read"):
                apis.append(api_for(slug, rights))
        found = False
        for item in apis:
            if item.version == version:
                item.add_api_spec(api_spec)
                found = True
        return self.response(200, **api_spec.to_dict()) if found else self.response_404()


def register(appbuilder: Any) -> None:
    from app.extensions import csrf

    appbuilder.add_view_no_menu(TableView)
    appbuilder.add_api(TableOpenApi)
    current_app.jinja_env.globals["table_label"] = label_of
    current_app.jinja_env.globals["label_of"] = label_of
    current_app.jinja_env.filters.update(  # dates and numbers read one way per language, everywhere
        datetime_text=formats.datetime_text, date_text=formats.date_text, number_text=formats.number_text
    )
    appbuilder.add_view_no_menu(SwaggerView)
    # Every signed-in user may read the API document: it describes only what they may use.
    audiences: dict[str, str] = appbuilder.__dict__.setdefault("tabula_audiences", {})
    audiences.update({"OpenApi": "staff", "SwaggerView": "staff"})
    app = current_app._get_current_object()
    app.register_blueprint(api)
    csrf.exempt(api)
    app.url_build_error_handlers.append(build_url_for_generated_view)
