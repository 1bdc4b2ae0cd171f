"""The one generator: every table's screens (a FAB ModelView) and REST API (a FAB ModelRestApi), core and
custom alike, built from its metadata and the field-type registry. Registered as a rebuild hook, so each
process rebuilds them whenever the schema version changes; ``views.tables`` serves them."""

from __future__ import annotations

import functools
from typing import Any

from flask import current_app, request
from flask_appbuilder import ModelView
from flask_appbuilder.api import ModelRestApi
from flask_appbuilder.exceptions import DatabaseException
from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.models.sqla.filters import SQLAFilterConverter
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError
from marshmallow import fields as mm_fields
from marshmallow_sqlalchemy import SQLAlchemySchema
from sqlalchemy import false
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from app.extensions import db
from custom_fields import runtime
from custom_fields.service import ENTITY_PERMISSIONS
from custom_fields.spec import EntitySpec, FieldSpec
from custom_fields.types import OPERATORS, REGISTRY, FieldValueError

READ, ADD, EDIT, DELETE = "read", "add", "edit", "delete"
PAGE_SIZE = 25


def display_label(text: str, is_system: bool) -> str:
    """Core tables' and fields' labels are msgids (translated); an admin's own labels are shown as typed."""
    return _(text) if is_system else text


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


class TableInterface(SQLAInterface):
    filter_converter_class = RegistryFilterConverter

    def __init__(self, model: type, entity: EntitySpec | None = None) -> None:
        entity = entity or model.__tabula_entity__  # FAB re-creates interfaces from the model alone
        self.tabula_entity = entity
        self.tabula_fields = {f.name: f for f in entity.live_fields}
        super().__init__(model, db.session)

    # FAB shows a database error's own text (SQL included) or answers 500; say what happened instead.
    def add(self, item: Any, commit: bool = True) -> None:
        self._guarded(super().add, item, commit)

    def edit(self, item: Any, commit: bool = True) -> None:
        self._guarded(super().edit, item, commit)

    def delete(self, item: Any, commit: bool = True) -> None:
        self._guarded(super().delete, item, commit)

    def _guarded(self, write: Any, item: Any, commit: bool) -> None:
        try:
            write(item, commit)
        except (SQLAlchemyError, DatabaseException) as exc:
            self.session.rollback()
            cause = exc.__cause__ if isinstance(exc, DatabaseException) else exc
            if isinstance(cause, IntegrityError):
                message = _(
                    "Not saved: another record already has this value, or a linked record is missing."
                )
            else:
                message = _("Not saved: the database refused the change. Please try again.")
            raise DatabaseException(message) from ValueError(message)


# --- API schemas from the registry -------------------------------------------------------------------------

JSON_TYPES = {"string": "string", "integer": "integer", "boolean": "boolean", "array": "array"}


class RegistryValue(mm_fields.Field):
    """A marshmallow field that parses and dumps through the field's type."""

    def __init__(self, spec: FieldSpec, **kwargs: Any) -> None:
        self.spec = spec
        self.ftype = REGISTRY[spec.type]
        metadata = {"description": spec.label + (f" — {spec.help_text}" if spec.help_text else "")}
        json_type = self.ftype.json_type
        metadata["type"] = json_type
        if json_type == "array":
            metadata["items"] = {"type": "string"}
        # A required field refuses null outright (marshmallow never passes None to _deserialize).
        super().__init__(allow_none=not spec.required, metadata=metadata, **kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return self.ftype.to_json(value, self.spec)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        try:
            parsed = self.ftype.parse(value, self.spec)
            if self.spec.type in ("link", "user"):
                self.ftype.check_exists(parsed, self.spec)
        except FieldValueError as exc:
            raise ValidationError(str(exc)) from None
        if parsed is None and self.spec.required:
            raise ValidationError(_("This field is required."))
        if parsed is not None and self.spec.unique:
            pk = (request.view_args or {}).get("pk") if request else None
            if runtime.value_taken(self.spec, parsed, pk):
                raise ValidationError(_("Another record already has this value."))
        return parsed


def record_schema(model: type, fields: list[FieldSpec], name: str, *, for_add: bool) -> type:
    class Meta:
        load_instance = True
        sqla_session = db.session

    Meta.model = model
    declared: dict[str, Any] = {"Meta": Meta}
    if not for_add:
        declared["id"] = mm_fields.Integer(dump_only=True)
    for spec in fields:
        declared[spec.name] = RegistryValue(spec, required=for_add and spec.required)
    return type(name, (SQLAlchemySchema,), declared)


# --- the generated classes ---------------------------------------------------------------------------------


class RegistrySchemaConverter:
    """FAB builds schemas for a request's ``columns`` selection with this: build them from the registry too,
    so selected columns look exactly like the default ones."""

    def __init__(self, datamodel: TableInterface, validators_columns: Any) -> None:
        self.datamodel = datamodel

    def convert(self, columns: list[str], model: type | None = None, **kwargs: Any) -> Any:
        fields = self.datamodel.tabula_fields
        chosen = [fields[c] for c in columns if c in fields]
        return record_schema(
            self.datamodel.obj, chosen, f"{self.datamodel.obj.__name__}Selected", for_add=False
        )()


class GeneratedModelView(ModelView):
    """Base of every table's screens. Routes come from ``views.tables.TableView``, never a blueprint."""

    base_permissions = ENTITY_PERMISSIONS
    method_permission_name = {
        "list": READ, "show": READ, "download": READ, "add": ADD, "edit": EDIT, "delete": DELETE,
        "action": EDIT, "action_post": EDIT, "api": READ, "api_read": READ, "api_get": READ,
        "api_create": ADD, "api_update": EDIT, "api_delete": DELETE, "api_column_add": ADD,
        "api_column_edit": EDIT, "api_readvalues": READ,
    }  # fmt: skip
    page_size = PAGE_SIZE
    base_order = ("id", "desc")


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
    MAX_PAGE = 10**6

    def get_list_headless(self, **kwargs: Any) -> Any:
        # FAB's rison schema takes any integer as page; a huge one overflows the database's OFFSET.
        query = kwargs.get("rison") or {}
        for key in ("page", "page_size"):
            value = query.get(key)
            if isinstance(value, int) and not 0 <= value <= self.MAX_PAGE:
                return self.response_400(message=f"{key} must be between 0 and {self.MAX_PAGE}")
        return super().get_list_headless(**kwargs)


def _formatter(spec: FieldSpec) -> Any:
    ftype = REGISTRY[spec.type]
    return lambda value: ftype.to_html(value, spec)


def _sortable(spec: FieldSpec) -> bool:
    return spec.type not in ("long_text", "multi_select")


def build_view(entity: EntitySpec, model: type) -> ModelView:
    fields = list(entity.live_fields)
    editable = [f for f in fields if not f.settings.get("auto")]
    labels = {f.name: display_label(f.label, f.is_system) for f in fields}
    labels["id"] = _l("No.")
    title = display_label(entity.plural_label, entity.is_system)
    single = display_label(entity.label, entity.is_system)
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
        "add_title": _("New: %(table)s", table=single),
        "edit_title": _("Edit: %(table)s", table=single),
        "tabula_entity": entity,
    }
    cls = type(view_class_name(entity.slug), (GeneratedModelView,), attrs)
    view = cls()
    view.appbuilder = current_app.appbuilder
    view.endpoint = cls.__name__
    view.route_base = f"/t/{entity.slug}"
    return view


def build_api(entity: EntitySpec, model: type) -> ModelRestApi:
    fields = list(entity.live_fields)
    editable = [f for f in fields if not f.settings.get("auto")]
    name = api_class_name(entity.slug)
    attrs: dict[str, Any] = {
        "datamodel": TableInterface(model, entity),
        "class_permission_name": entity.permission_name,
        "resource_name": entity.slug,
        "route_base": f"/api/v1/t/{entity.slug}",
        "openapi_spec_tag": f"{entity.plural_label} ({entity.slug})",
        "list_columns": ["id", *[f.name for f in fields]],
        "show_columns": ["id", *[f.name for f in fields]],
        "add_columns": [f.name for f in editable],
        "edit_columns": [f.name for f in editable],
        "search_columns": [f.name for f in fields if f.searchable],
        "order_columns": ["id", *[f.name for f in fields if _sortable(f)]],
        "label_columns": {f.name: f.label for f in fields},
        "description_columns": {f.name: f.help_text for f in fields if f.help_text},
        "list_model_schema": record_schema(model, fields, f"{name}List", for_add=False)(),
        "show_model_schema": record_schema(model, fields, f"{name}Show", for_add=False)(),
        "add_model_schema": record_schema(model, editable, f"{name}Post", for_add=True)(),
        "edit_model_schema": record_schema(model, editable, f"{name}Put", for_add=False)(),
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


def build_all(schema: runtime.RuntimeSchema) -> None:
    """Rebuild hook: fresh view and API objects for every live table, swapped in with the schema."""
    for slug, entity in schema.entities.items():
        if entity.archived:
            continue
        model = schema.classes[slug]
        schema.views[slug] = build_view(entity, model)
        schema.apis[slug] = build_api(entity, model)
    from views.tables import install

    install(schema)


runtime.REBUILD_HOOKS.append(build_all)
