"""The process-local schema: mapped classes for every table, built from the metadata, rebuilt when any
process changes the schema (a newer ``tabula_schema_state.version``), without a restart.

Each version gets its own SQLAlchemy ``registry``; a new one is built completely, then swapped in, so a
request never sees half a schema. The version before the previous one is disposed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app, g, has_request_context, url_for
from markupsafe import Markup
from sqlalchemy import Column, Integer, MetaData, Table, column, exists, select, table
from sqlalchemy.orm import registry, selectinload

from app.extensions import db
from custom_fields import hooks, schema_signal
from custom_fields.access import AccessSnapshot, load_snapshot
from custom_fields.spec import EntitySpec, FieldSpec
from custom_fields.types import REGISTRY, FieldType
from models import Entity, SchemaState
from models.records import record_columns
from models.system import utcnow

EXTENSION_KEY = "tabula_schema"
#: (the change signal's epoch, time.monotonic()) when this process last read the version
CHECKED_KEY = "tabula_schema_checked"
_build_lock = threading.Lock()


@dataclass
class RuntimeSchema:
    version: int
    registry: registry
    entities: dict[str, EntitySpec]  # by slug
    classes: dict[str, type]  # by slug
    by_id: dict[int, EntitySpec] = field(default_factory=dict)
    access: AccessSnapshot = field(default_factory=AccessSnapshot)
    # Generated screens and APIs, per table and per access signature (hidden, read-only fields): users whose
    # rules hide or lock the same fields share one; built on first use by ``views.generator``.
    views: dict[tuple[str, Any], Any] = field(default_factory=dict)
    apis: dict[tuple[str, Any], Any] = field(default_factory=dict)
    # What the query layer derives per actor and query shape (rights, visible columns, SELECT lists).
    memo: dict[Any, Any] = field(default_factory=dict)
    previous: RuntimeSchema | None = None

    def entity(self, slug: str) -> EntitySpec | None:
        return self.entities.get(slug)

    def model(self, entity_id: int) -> type | None:
        spec = self.by_id.get(entity_id)
        return self.classes.get(spec.slug) if spec else None


def read_version() -> int:
    return db.session.scalar(select(SchemaState.version).where(SchemaState.id == 1)) or 0


def load_specs() -> list[EntitySpec]:
    rows = db.session.scalars(
        select(Entity).options(selectinload(Entity.fields)).order_by(Entity.position, Entity.id)
    )
    return [EntitySpec.of(row) for row in rows]


def _display(spec: EntitySpec) -> Callable[[Any], str]:
    def __str__(self: Any) -> str:  # noqa: N807
        shown = spec.display_field
        if shown is None:
            return f"#{self.id}"
        text = REGISTRY[shown.type].to_text(getattr(self, shown.name, None), shown)
        return text or f"#{self.id}"

    return __str__


def column_default(spec: FieldSpec) -> Any:
    """What a new record gets when it names no value: now, for automatic timestamps; else the admin's
    default (checked when it was set, so it parses)."""
    if spec.settings.get("derived"):
        return None  # computed by the write path (``app.crm.derive``)
    if spec.settings.get("auto"):
        return utcnow
    if spec.default is None:
        return None
    try:
        return REGISTRY[spec.type].parse(spec.default, spec)
    except ValueError:
        return None


def build_classes(specs: list[EntitySpec]) -> tuple[registry, dict[str, type]]:
    """One mapped class per table, with a column per field (archived ones too: their data stays) and the
    write path's record columns (``row_version``, ``deleted_at``, ``owner_id``)."""
    reg = registry(metadata=MetaData())
    base = reg.generate_base()
    classes: dict[str, type] = {}
    for spec in specs:
        columns = [Column("id", Integer, primary_key=True)]
        for fld in spec.fields:
            ftype = REGISTRY[fld.type]
            columns.append(
                Column(fld.column_name, ftype.column_type(fld), key=fld.name, default=column_default(fld))
            )
        named = {c.name for c in columns}  # a core table's owner is also a field ("Owner")
        extra = [c for c in record_columns() if c.name not in named]
        tbl = Table(spec.table_name, reg.metadata, *columns, *extra)
        classes[spec.slug] = type(
            f"T_{spec.slug}",
            (base,),
            {"__table__": tbl, "__str__": _display(spec), "__tabula_entity__": spec},
        )
    return reg, classes


def build_schema(version: int) -> RuntimeSchema:
    specs = load_specs()
    reg, classes = build_classes(specs)
    schema = RuntimeSchema(
        version=version,
        registry=reg,
        entities={s.slug: s for s in specs},
        classes=classes,
        by_id={s.id: s for s in specs},
        access=load_snapshot(),
    )
    hooks.call.schema_rebuilt(schema=schema)
    return schema


def current(app: Flask | None = None) -> RuntimeSchema:
    """This process's schema, built on first use."""
    app = app or current_app._get_current_object()
    schema = app.extensions.get(EXTENSION_KEY)
    if schema is None:
        schema = refresh(app, force=True)
    return schema


def refresh(app: Flask | None = None, *, force: bool = False) -> RuntimeSchema:
    """Rebuild when the database holds a newer schema version than this process (one SELECT otherwise)."""
    app = app or current_app._get_current_object()
    version = read_version()
    schema = app.extensions.get(EXTENSION_KEY)
    if schema is not None and schema.version == version and not force:
        return schema
    with _build_lock:
        schema = app.extensions.get(EXTENSION_KEY)
        if schema is not None and schema.version == version and not force:
            return schema
        new = build_schema(version)
        if schema is not None:
            if schema.previous is not None:
                schema.previous.registry.dispose()
                schema.previous = None
            new.previous = schema
        app.extensions[EXTENSION_KEY] = new
        return new


def follow(app: Flask | None = None) -> RuntimeSchema:
    """Once per request: rebuild when another process changed the schema. One Redis ``GET`` while nothing
    changed; the database's version (``refresh``) when the change signal moved, when Redis does not
    answer, and at least every ``schema_signal.BACKSTOP_S`` seconds (``custom_fields.schema_signal``)."""
    app = app or current_app._get_current_object()
    epoch = schema_signal.read_epoch()
    schema = app.extensions.get(EXTENSION_KEY)
    checked = app.extensions.get(CHECKED_KEY)
    now = time.monotonic()
    if (
        schema is not None
        and checked is not None
        and epoch is not schema_signal.UNKNOWN
        and checked[0] == epoch
        and now - checked[1] < schema_signal.BACKSTOP_S
    ):
        return schema
    schema = refresh(app)
    app.extensions[CHECKED_KEY] = (epoch, now)  # the epoch read before the version: a later change moves it
    return schema


# --- lookups the field types use ---------------------------------------------------------------------------


def entity_exists(entity_id: int) -> bool:
    return (
        db.session.scalar(select(exists().where(Entity.id == entity_id, Entity.archived_at.is_(None))))
        or False
    )


def table_name_of(entity_id: int) -> str:
    spec = current().by_id.get(entity_id)
    if spec is None:
        name = db.session.scalar(select(Entity.table_name).where(Entity.id == entity_id))
        if name is None:
            raise LookupError(entity_id)
        return name
    return spec.table_name


def record_exists(table_name: str, record_id: int) -> bool:
    tbl = table(table_name, column("id"))
    return db.session.scalar(select(exists().where(tbl.c.id == record_id))) or False


def _memo() -> dict:
    if has_request_context():
        return g.setdefault("tabula_labels", {})
    return {}


def record_label(entity_id: int, record_id: int) -> str:
    """A record's label as the signed-in user may see it, read through the query layer: ``#id`` when
    they may not read the record (or its display field), so a label is never disclosed."""
    from custom_fields.access import Actor
    from custom_fields.query import QueryError, TableQuery

    actor = Actor.current("ui")
    key = ("record", entity_id, record_id, actor.user_id)
    memo = _memo()
    if key not in memo:
        spec = current().by_id.get(entity_id)
        label = None
        if spec is not None:
            try:
                label = TableQuery(spec.slug, actor).labels_of([record_id]).get(record_id)
            except QueryError:
                label = None
        memo[key] = label or f"#{record_id}"
    return memo[key]


def record_link(entity_id: int, record_id: int) -> Markup:
    spec = current().by_id.get(entity_id)
    label = record_label(entity_id, record_id)
    if spec is None:
        return Markup("{}").format(label)
    href = url_for("TableView.show", slug=spec.slug, pk=record_id)
    return Markup('<a href="{}">{}</a>').format(href, label)


USERS = table(
    "ab_user", column("id"), column("username"), column("first_name"), column("last_name"), column("active")
)


def _user_row(user_id: int) -> Any:
    key = ("user", user_id)
    memo = _memo()
    if key not in memo:
        memo[key] = db.session.execute(select(USERS).where(USERS.c.id == user_id)).first()
    return memo[key]


def user_label(user_id: int) -> str:
    row = _user_row(user_id)
    if row is None:
        return f"#{user_id}"
    name = " ".join(p for p in (row.first_name, row.last_name) if p)
    return f"{name} ({row.username})" if name else row.username


def username_of(user_id: int) -> str:
    row = _user_row(user_id)
    return row.username if row is not None else str(user_id)


def active_users(among: Iterable[int] | None = None) -> list[tuple[int, str]]:
    """Active users (or those of ``among`` who are) as (id, label), by label."""
    statement = select(USERS.c.id).where(USERS.c.active.is_(True))
    if among is not None:
        statement = statement.where(USERS.c.id.in_(sorted(among) or [-1]))
    found = [(user_id, user_label(user_id)) for user_id in db.session.scalars(statement)]
    return sorted(found, key=lambda pair: pair[1].lower())


def user_id_by_username(username: str) -> int | None:
    return db.session.scalar(select(USERS.c.id).where(USERS.c.username == username))


def lookup_url(ftype: FieldType, spec: FieldSpec) -> str:
    if ftype.reference == "user":
        return url_for("TableView.users_lookup")
    target = current().by_id.get(int(spec.settings["target"]))
    return url_for("TableView.lookup", slug=target.slug) if target else ""


def value_taken(spec: FieldSpec, value: Any, exclude_pk: Any = None) -> bool:
    """Whether another record of the field's table already holds ``value`` (the form's unique check)."""
    model = current().model(spec.entity_id)
    if model is None:
        return False
    attribute = getattr(model, spec.name)
    query = select(exists().where(attribute == value, *([model.id != int(exclude_pk)] if exclude_pk else [])))
    return db.session.scalar(query) or False
