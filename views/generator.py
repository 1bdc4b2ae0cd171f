"""The one generator: every table's screens (a FAB ModelView) and REST API (a FAB ModelRestApi), core and
custom alike, built from its metadata and the field-type registry. Registered as a rebuild hook, so each
process rebuilds them whenever the schema version changes (the ``schema_rebuilt`` hook); ``views.tables``
serves them."""

from __future__ import annotations

import functools
import sys
import threading
from typing import Any
from urllib.parse import urlsplit

from flask import abort, current_app, flash, g, redirect, request, url_for
from flask_appbuilder import ModelView
from flask_appbuilder.api import ModelRestApi
from flask_appbuilder.exceptions import InvalidColumnFilterFABException, InvalidOperationFilterFABException
from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.models.sqla.filters import SQLAFilterConverter
from flask_appbuilder.widgets import FormWidget, ListWidget
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import escape
from marshmallow import Schema
from marshmallow import fields as mm_fields
from sqlalchemy import false
from wtforms import HiddenField

from app.bounded_filters import BoundedInterface
from app.extensions import db
from custom_fields import access, history, hooks, records, runtime
from custom_fields.access import Actor, Grants
from custom_fields.query import QueryError, TableQuery
from custom_fields.service import ENTITY_PERMISSIONS
from custom_fields.spec import EntitySpec, FieldSpec, stored_text
from custom_fields.types import OPERATORS, REGISTRY, FieldValueError
from views import live, related

READ, ADD, EDIT, DELETE = "read", "add", "edit", "delete"
PAGE_SIZE = 25


class EscapedText:
    """A label put into a lazily translated sentence: FAB shows the sentence as markup (a lazy string's
    ``__html__`` is its text), so the label goes in escaped, and is read in the viewer's language."""

    def __init__(self, text: Any) -> None:
        self.text = text

    def __str__(self) -> str:
        return str(escape(str(self.text)))


# --- search filters from the registry ----------------------------------------------------------------------


class RegistryFilter(BaseFilter):
    """One operator on one field; the value a user typed is parsed by the field's type."""

    op = "eq"

    def apply(self, query: Any, value: Any) -> Any:
        spec: FieldSpec = self.datamodel.tabula_fields[self.column_name]
        ftype = REGISTRY[spec.type]
        _label, build, takes_value = OPERATORS[self.op]
        parsed = None
        if takes_value:
            try:
                parsed = ftype.filter_value(value, spec)
            except (FieldValueError, TypeError, ValueError):
                return query.filter(false())
            if parsed is None:
                return query
        return query.filter(build(getattr(self.model, self.column_name), parsed))


@functools.cache
def filter_class(op: str) -> type[RegistryFilter]:
    label = OPERATORS[op][0]
    return type(f"Filter_{op}", (RegistryFilter,), {"op": op, "arg_name": op, "name": label})


class RegistryFilterConverter(SQLAFilterConverter):
    def convert(self, col_name: str) -> list[BaseFilter]:
        spec = self.datamodel.tabula_fields.get(col_name)
        if spec is None:
            return super().convert(col_name) or []
        return [filter_class(op)(col_name, self.datamodel) for op in REGISTRY[spec.type].operators]


class TableInterface(BoundedInterface):
    """FAB's data interface for reading a generated table (filters from the registry). Writes never go
    through it: they go through ``custom_fields.records``."""

    filter_converter_class = RegistryFilterConverter

    def __init__(self, model: type, entity: EntitySpec | None = None) -> None:
        entity = entity or model.__tabula_entity__  # FAB re-creates interfaces from the model alone
        self.tabula_entity = entity
        self.tabula_fields = {f.name: f for f in entity.live_fields}
        super().__init__(model, db.session)


class VisibleRows(BaseFilter):
    """The base filter of every generated screen and API: only rows the user may see (not in the recycle
    bin; row scopes join in ``access.row_filter``). Applies to lists, counts, show, edit and delete."""

    name = "visible"
    arg_name = "visible"

    def apply(self, query: Any, value: Any) -> Any:
        rights = access.current_grants(self.datamodel.tabula_entity)
        return query.filter(TableQuery.reach(rights.entity.slug, rights.actor))


BASE_FILTERS = [["id", VisibleRows, None]]


# --- API schemas from the registry -------------------------------------------------------------------------

JSON_TYPES = {"string": "string", "integer": "integer", "boolean": "boolean", "array": "array"}


class RegistryValue(mm_fields.Field):
    """A marshmallow field that dumps through the field's type and documents it in OpenAPI. Incoming
    values are not loaded here: the write path parses and validates them (``custom_fields.records``)."""

    def __init__(self, spec: FieldSpec, **kwargs: Any) -> None:
        self.spec = spec
        self.ftype = REGISTRY[spec.type]
        metadata = {"description": spec.label + (f" — {spec.help_text}" if spec.help_text else "")}
        json_type = self.ftype.json_type
        metadata["type"] = json_type
        if json_type == "array":
            metadata["items"] = {"type": "string"}
        super().__init__(allow_none=not spec.required, metadata=metadata, **kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return self.ftype.to_json(value, self.spec)


VERSION_DOC = "The record's version: send it back with PUT (or as If-Match); a stale one is refused with 409."


def record_schema(fields: list[FieldSpec], name: str, *, for_add: bool, version: bool = True) -> type:
    declared: dict[str, Any] = {}
    if not for_add:
        declared["id"] = mm_fields.Integer(dump_only=True)
        if version:
            declared["row_version"] = mm_fields.Integer(
                data_key="_version", metadata={"description": VERSION_DOC}
            )
    for spec in fields:
        declared[spec.name] = RegistryValue(spec, required=for_add and spec.required)
    return type(name, (Schema,), declared)


# --- the generated classes ---------------------------------------------------------------------------------


class RegistrySchemaConverter:
    """FAB builds schemas for a request's ``columns`` selection with this: build them from the registry too,
    so selected columns look exactly like the default ones."""

    def __init__(self, datamodel: TableInterface, validators_columns: Any) -> None:
        self.datamodel = datamodel

    def convert(self, columns: list[str], model: type | None = None, **kwargs: Any) -> Any:
        fields = self.datamodel.tabula_fields
        chosen = [fields[c] for c in columns if c in fields]
        name = f"{self.datamodel.obj.__name__}Selected"
        return record_schema(chosen, name, for_add=False, version="row_version" in columns)()


def _attach_errors(form: Any, errors: dict[str, str]) -> None:
    """The write path's refusals, shown at the fields they concern (the user's input stays in the form)."""
    for name, message in errors.items():
        if name in form:
            form[name].errors = [*form[name].errors, message]
        else:
            flash(message, "danger")


#: A value history kept that its field type no longer reads: it is the same as no other value.
_UNREADABLE = object()


def _stored_from_history(spec: FieldSpec, value: Any) -> Any:
    """A value as history keeps it (its JSON form) -> as stored, to compare with the field type's ``same``."""
    try:
        return REGISTRY[spec.type].parse(value, spec)
    except FieldValueError:
        return _UNREADABLE


def _form_version(form: Any) -> int:
    try:
        return int(form.row_version.data)
    except (TypeError, ValueError):
        return -1  # a form without its version is treated as stale: the user sees the current values


class TableListWidget(ListWidget):
    """FAB's list, keeping its column heads when there are no records yet."""

    template = "tabula/widgets/list.html"


class TableFormWidget(FormWidget):
    """FAB's add and edit form, showing each field's error as text (not through gettext, as FAB does)."""

    template = "tabula/widgets/form.html"


class GeneratedModelView(ModelView):
    """Base of every table's screens. Routes come from ``views.tables.TableView``, never a blueprint; every
    write goes through ``custom_fields.records``."""

    base_permissions = ENTITY_PERMISSIONS
    method_permission_name = {
        "list": READ, "show": READ, "download": READ, "add": ADD, "edit": EDIT, "delete": DELETE,
        "action": EDIT, "action_post": EDIT, "api": READ, "api_read": READ, "api_get": READ,
        "api_create": ADD, "api_update": EDIT, "api_delete": DELETE, "api_column_add": ADD,
        "api_column_edit": EDIT, "api_readvalues": READ,
    }  # fmt: skip
    page_size = PAGE_SIZE
    base_order = ("id", "desc")
    base_filters = BASE_FILTERS
    list_widget = TableListWidget
    add_widget = edit_widget = TableFormWidget
    list_template = "tabula/record_list.html"
    show_template = "tabula/record_show.html"
    add_template = "tabula/record_add.html"
    edit_template = "tabula/record_edit.html"
    tabula_entity: EntitySpec

    def _get_list_widget(self, filters: Any, order_column: str = "", **kwargs: Any) -> Any:
        # FAB sorts by any column named in the URL; only sortable, visible ones are allowed here.
        if order_column not in self.order_columns:
            order_column, kwargs["order_direction"] = "", ""
        return super()._get_list_widget(filters, order_column=order_column, **kwargs)

    def _write(self, attempt: Any, form: Any) -> bool:
        """Run one write; True when it was saved, else the form shows why."""
        try:
            attempt()
        except records.StaleRecord as stale:
            self._merge_conflict(form, stale)
        except records.RecordInvalid as refused:
            _attach_errors(form, refused.errors)
        except records.AccessDenied:
            abort(403)
        except records.RecordNotFound:
            abort(404)
        except records.RecordError as refused:
            flash(str(refused), "danger")
        else:
            return True
        return False

    def _merge_conflict(self, form: Any, stale: records.StaleRecord) -> None:
        """Someone saved in between: the form keeps what this user changed and takes the rest from the record
        as saved now, so saving again loses nobody's work; fields both changed are named."""
        entity = self.tabula_entity
        base = history.values_at(entity.id, stale.record_id, _form_version(form))
        db.session.expire_all()
        item = self.datamodel.get(stale.record_id, self._base_filters)
        if item is None:  # out of the reader's reach since (or in the recycle bin)
            abort(404)
        both: list[str] = []
        changed: list[str] = []  # what the other save changed (or, without history, what differs from mine)
        for name in self.edit_columns:
            spec = self.datamodel.tabula_fields[name]
            ftype = REGISTRY[spec.type]

            def same(a: Any, b: Any, ftype: Any = ftype, spec: FieldSpec = spec) -> bool:
                # As the write path compares (one instant whatever its offset, 1234.5 = 1234.50).
                return a is not _UNREADABLE and b is not _UNREADABLE and ftype.same(a, b, spec)

            mine, saved = form[name].data, getattr(item, name)
            before = _stored_from_history(spec, base.get(spec.id)) if base is not None else saved
            if not same(saved, before) or (base is None and not same(saved, mine)):
                changed.append(name)
            if base is not None and same(mine, before):
                form[name].data = getattr(item, name)  # untouched here: take the saved value
                form[name].raw = None
            elif not same(saved, before) and not same(mine, saved):
                both.append(self.label_columns.get(name, name))
        form.row_version.data = stale.version
        g.tabula_conflict = stale
        g.tabula_conflict_saved = [
            (
                self.label_columns.get(name, name),
                _formatter(self.datamodel.tabula_fields[name])(getattr(item, name)),
            )
            for name in changed
        ]
        g.tabula_conflict_both = both

    def _add(self) -> Any:
        form = self.add_form.refresh()
        if request.method == "POST" and form.validate():
            values = {c: form[c].data for c in self.add_columns}
            slug = self.tabula_entity.slug
            if not request.form.get("_save_duplicate"):
                from app.crm import duplicates

                g.tabula_duplicates = duplicates.find(slug, values, access.current_grants(self.tabula_entity))
            if g.get("tabula_duplicates"):
                flash(_("This looks like a record that already exists. Check before saving."), "warning")
            elif self._write(lambda: records.create(slug, values, Actor.current("ui")), form):
                flash(self.add_row_message, "success")
                return None
        elif request.method != "POST":
            self.update_redirect()
            self._prefill(form)
        return self._get_add_widget(form=form, exclude_cols=[])

    def _prefill(self, form: Any) -> None:
        """A new record's values from the address (``?company_id=5&kind=call``): quick actions and "add"
        links from related lists open the form already filled; values that do not parse are ignored."""
        for name in self.add_columns:
            raw = request.args.get(name)
            spec = self.datamodel.tabula_fields.get(name)
            if raw is None or spec is None:
                continue
            try:
                form[name].data = REGISTRY[spec.type].parse(raw, spec)
            except ValueError:
                continue

    def _reachable(self, pk: Any, action: str) -> bool:
        """Whether the record is within the user's reach for ``action`` (edit and delete may reach fewer
        rows than reading does)."""
        try:
            return TableQuery(self.tabula_entity.slug, Actor.current("ui"), action).exists(int(pk))
        except QueryError:
            return False

    def _edit(self, pk: Any) -> Any:
        item = self.datamodel.get(pk, self._base_filters)
        if not item or not self._reachable(pk, "edit"):
            abort(404)
        if request.method == "POST":
            form = self.edit_form.refresh(request.form)
            form._id = pk
            if form.validate():
                values = {c: form[c].data for c in self.edit_columns}
                slug, version = self.tabula_entity.slug, _form_version(form)

                def attempt() -> Any:
                    actor = Actor.current("ui")
                    return records.update(slug, int(pk), values, actor, expected_version=version)

                if self._write(attempt, form):
                    flash(self.edit_row_message, "success")
                    g.tabula_saved_next = self._back_to(form.next_url.data) or url_for(
                        "TableView.show", slug=slug, pk=pk
                    )
                    return None
        else:
            form = self.edit_form.refresh(obj=item)
            form.next_url.data = self._back_to(request.referrer)
        return self._get_edit_widget(form=form, exclude_cols=[])

    def _back_to(self, url: str | None) -> str | None:
        """Where a saved edit returns: this table's list or record page it was opened from (with its filters
        and page), never another site or screen; None when it was opened from anywhere else (a typed or
        pasted address, a bookmark): then it lands on the record."""
        parts = urlsplit(url or "")
        if parts.netloc and parts.netloc != request.host:
            return None
        base = f"/t/{self.tabula_entity.slug}/"
        if not parts.path.startswith((f"{base}list/", f"{base}show/")) or "//" in parts.path:
            return None
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def post_edit_redirect(self) -> Any:
        return redirect(g.get("tabula_saved_next") or self.get_redirect())

    def _delete(self, pk: Any) -> None:
        if not self.datamodel.get(pk, self._base_filters) or not self._reachable(pk, "delete"):
            abort(404)
        try:
            records.delete(self.tabula_entity.slug, int(pk), Actor.current("ui"))
        except records.AccessDenied:
            abort(403)
        except records.RecordError as refused:
            flash(str(refused), "danger")
        else:
            flash(_("Moved to the recycle bin."), "success")
        self.update_redirect()

    def _show(self, pk: Any) -> Any:
        widgets = super()._show(pk)
        rights = access.current_grants(self.tabula_entity)
        slug = self.tabula_entity.slug
        g.tabula_timeline = history.timeline(rights, int(pk))
        g.tabula_related = related.show_context(self.tabula_entity, rights, int(pk))
        g.tabula_record_links = {
            "edit": url_for("TableView.edit", slug=slug, pk=pk) if rights.can("edit") else None,
            "delete": url_for("TableView.delete", slug=slug, pk=pk) if rights.can("delete") else None,
            "live": live.stream_url(slug, int(pk)),
        }
        return widgets


class GeneratedApi(ModelRestApi):
    base_permissions = ENTITY_PERMISSIONS
    allow_browser_login = True
    include_route_methods = {"get_list", "get", "post", "put", "delete", "info"}
    method_permission_name = {
        "get_list": READ, "get": READ, "info": READ, "post": ADD, "put": EDIT, "delete": DELETE,
    }  # fmt: skip
    max_page_size = 500
    page_size = PAGE_SIZE
    model2schemaconverter = RegistrySchemaConverter
    base_filters = BASE_FILTERS
    MAX_PAGE = 10**6
    tabula_entity: EntitySpec

    def get_list_headless(self, **kwargs: Any) -> Any:
        # FAB's rison schema takes any integer as page; a huge one overflows the database's OFFSET.
        query = kwargs.get("rison") or {}
        for key in ("page", "page_size"):
            value = query.get(key)
            if isinstance(value, int) and not 0 <= value <= self.MAX_PAGE:
                return self.response_400(message=f"{key} must be between 0 and {self.MAX_PAGE}")
        return super().get_list_headless(**kwargs)

    def _get_field_info(
        self, field: Any, filter_rel_field: Any, page: Any = None, page_size: Any = None
    ) -> Any:
        # FAB passes labels through gettext again, and gettext("") of a field without help text answers
        # the catalog's header: give the labels as the specs resolved them.
        info = super()._get_field_info(field, filter_rel_field, page=page, page_size=page_size)
        info["label"] = str(self.label_columns.get(field.name, ""))
        info["description"] = str(self.description_columns.get(field.name, ""))
        return info

    def _handle_filters_args(self, rison_args: dict[str, Any]) -> Any:
        """FAB looks a filter's operator up in a process-wide map first, where any view's filter of the same
        name (e.g. FAB's own ``gt``) may win; resolve it among this column's registry filters only."""
        self._filters.clear_filters()
        for item in rison_args.get("filters", []):
            col, opr = item.get("col"), item.get("opr")
            if col not in self.search_columns:
                raise InvalidColumnFilterFABException(f"Filter column: {col} not allowed to filter")
            chosen = next((f for f in self._filters._search_filters.get(col, []) if f.arg_name == opr), None)
            if chosen is None:
                raise InvalidOperationFilterFABException(f"Filter operation: {opr} not allowed on {col}")
            self._filters.add_filter(col, type(chosen), item.get("value"))
        return self._filters.get_joined_filters(self._base_filters)

    def _json_body(self) -> dict[str, Any] | None:
        data = request.get_json(silent=True) if request.is_json else None
        return data if isinstance(data, dict) else None

    def _refusal(self, refused: records.RecordError) -> Any:
        if isinstance(refused, records.StaleRecord):
            return self.response(
                409, message=str(refused), current=refused.current, **{"_version": refused.version}
            )
        if isinstance(refused, records.RecordInvalid):
            return self.response_422(message={k: [v] for k, v in refused.errors.items()} or str(refused))
        if isinstance(refused, records.AccessDenied):
            return self.response(403, message=str(refused))
        if isinstance(refused, records.RecordNotFound):
            return self.response_404()
        return self.response_422(message=str(refused))

    def _dump(self, record_id: int) -> Any:
        item = self.datamodel.get(record_id, self._base_filters)
        return self.show_model_schema.dump(item) if item is not None else {}

    def post_headless(self) -> Any:
        data = self._json_body()
        if data is None:
            return self.response_400(message="Send a JSON object")
        try:
            saved = records.create(self.tabula_entity.slug, data, Actor.current("api"))
        except records.RecordError as refused:
            return self._refusal(refused)
        return self.response(201, id=saved.id, result=self._dump(saved.id))

    def put_headless(self, pk: Any) -> Any:
        if not self.datamodel.get(pk, self._base_filters):
            return self.response_404()
        data = self._json_body()
        if data is None:
            return self.response_400(message="Send a JSON object")
        version = data.pop("_version", None)
        if version is None and request.if_match.as_set():
            version = next(iter(request.if_match.as_set()))
        try:
            version = int(version)
        except (TypeError, ValueError):
            return self.response(
                428, message="Send the _version you last read (in the body or as If-Match); it guards "
                "against overwriting someone else's change."
            )  # fmt: skip
        try:
            actor = Actor.current("api")
            records.update(self.tabula_entity.slug, int(pk), data, actor, expected_version=version)
        except records.RecordError as refused:
            return self._refusal(refused)
        return self.response(200, result=self._dump(int(pk)))

    def delete_headless(self, pk: Any) -> Any:
        if not self.datamodel.get(pk, self._base_filters):
            return self.response_404()
        try:
            records.delete(self.tabula_entity.slug, int(pk), Actor.current("api"))
        except records.RecordError as refused:
            return self._refusal(refused)
        return self.response(200, message="OK")


def _formatter(spec: FieldSpec) -> Any:
    ftype = REGISTRY[spec.type]
    return lambda value: ftype.to_html(value, spec)


def _sortable(spec: FieldSpec) -> bool:
    return REGISTRY[spec.type].sortable


def build_view(entity: EntitySpec, model: type, rights: Grants) -> ModelView:
    """The screens of one table for users with ``rights``' signature (hidden fields left out everywhere,
    read-only ones left out of the forms)."""
    fields = list(rights.visible_fields)
    editable = list(rights.editable_fields)
    labels = {f.name: f.label for f in fields}
    labels["id"] = _l("No.")
    title, single = entity.plural_label, entity.label
    attrs: dict[str, Any] = {
        "datamodel": TableInterface(model, entity),
        "class_permission_name": entity.permission_name,
        "list_columns": [f.name for f in fields if f.show_in_list] or ["id"],
        "show_columns": ["id", *[f.name for f in fields]],
        "add_columns": [f.name for f in editable],
        "edit_columns": [f.name for f in editable],
        "search_columns": [f.name for f in fields if f.searchable],
        "order_columns": ["id", *[f.name for f in fields if _sortable(f)]],
        "label_columns": labels,
        "description_columns": {f.name: f.help_text for f in fields if f.help_text},
        "formatters_columns": {f.name: _formatter(f) for f in fields},
        "add_form_extra_fields": {f.name: REGISTRY[f.type].form_field(f) for f in editable},
        "edit_form_extra_fields": {f.name: REGISTRY[f.type].form_field(f) for f in editable},
        "search_form_extra_fields": {f.name: REGISTRY[f.type].form_field(f, search=True) for f in fields},
        "list_title": title,
        "show_title": single,
        "add_title": _l("New: %(table)s", table=EscapedText(single)),
        "edit_title": _l("Edit: %(table)s", table=EscapedText(single)),
        "tabula_entity": entity,
    }
    cls = type(view_class_name(entity.slug), (GeneratedModelView,), attrs)
    view = cls()
    # The version the form was opened at travels with it (optimistic locking), filled from the record.
    # The page it was opened from travels too: a saved edit returns there (or to the record).
    hidden = {"row_version": HiddenField(), "next_url": HiddenField()}
    view.edit_form = type(view.edit_form.__name__, (view.edit_form,), hidden)
    view.appbuilder = current_app.appbuilder
    view.endpoint = cls.__name__
    view.route_base = f"/t/{entity.slug}"
    return view


def build_api(entity: EntitySpec, model: type, rights: Grants) -> ModelRestApi:
    fields = list(rights.visible_fields)
    editable = list(rights.editable_fields)
    name = api_class_name(entity.slug)
    columns = ["id", "row_version", *[f.name for f in fields]]
    attrs: dict[str, Any] = {
        "datamodel": TableInterface(model, entity),
        "class_permission_name": entity.permission_name,
        "resource_name": entity.slug,
        "route_base": f"/api/v1/t/{entity.slug}",
        "openapi_spec_tag": f"{stored_text(entity.plural_label)} ({entity.slug})",
        "list_columns": columns,
        "show_columns": columns,
        "add_columns": [f.name for f in editable],
        "edit_columns": [f.name for f in editable],
        "search_columns": [f.name for f in fields if f.searchable],
        "order_columns": ["id", *[f.name for f in fields if _sortable(f)]],
        "label_columns": {"row_version": "_version", **{f.name: f.label for f in fields}},
        "description_columns": {f.name: f.help_text for f in fields if f.help_text},
        "list_model_schema": record_schema(fields, f"{name}List", for_add=False)(),
        "show_model_schema": record_schema(fields, f"{name}Show", for_add=False)(),
        "add_model_schema": record_schema(editable, f"{name}Post", for_add=True)(),
        "edit_model_schema": record_schema(editable, f"{name}Put", for_add=False)(),
        "tabula_entity": entity,
    }
    cls = type(name, (GeneratedApi,), attrs)
    api = cls()
    api.appbuilder = current_app.appbuilder
    api.endpoint = name
    return api


def view_class_name(slug: str) -> str:
    return f"TableView_{slug}"


def api_class_name(slug: str) -> str:
    return f"TableApi_{slug}"


_build_lock = threading.Lock()


def _generated(kind: str, slug: str, rights: Grants | None = None) -> Any:
    """The screens (``views``) or API (``apis``) of a table for the signed-in user's field rights, built
    once per schema version and access signature."""
    schema = runtime.current()
    entity = schema.entity(slug)
    if entity is None or entity.archived:
        return None
    rights = rights or access.current_grants(entity)
    cache = getattr(schema, kind)
    key = (slug, rights.signature)
    built = cache.get(key)
    if built is None:
        with _build_lock:
            built = cache.get(key)
            if built is None:
                build = build_view if kind == "views" else build_api
                built = cache[key] = build(entity, schema.classes[slug], rights)
    return built


def view_for(slug: str) -> ModelView | None:
    return _generated("views", slug)


def api_for(slug: str, rights: Grants | None = None) -> ModelRestApi | None:
    return _generated("apis", slug, rights)


@hooks.hookimpl
def schema_rebuilt(schema: runtime.RuntimeSchema) -> None:
    build_all(schema)


def build_all(schema: runtime.RuntimeSchema) -> None:
    """Every live table's screens and API with all fields (what FAB's registry of views,
    used by its templates, holds), swapped in with the schema."""
    full = {}
    for slug, entity in schema.entities.items():
        if entity.archived:
            continue
        model = schema.classes[slug]
        rights = access.grants(access.Actor.system_job(), entity, schema.access)
        schema.views[(slug, rights.signature)] = full[slug] = build_view(entity, model, rights)
        schema.apis[(slug, rights.signature)] = build_api(entity, model, rights)
    from views.tables import install

    install(schema, list(full.values()))


hooks.register(sys.modules[__name__])
