"""Schema changes an admin makes in the browser: tables and fields. Each change is one transaction holding
the metadata, the DDL, the schema version bump and the audit record, so it happens whole or not at all
(PostgreSQL and SQLite both run DDL inside transactions)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy import column as sql_column
from sqlalchemy import func, select, table, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from app.extensions import db
from custom_fields import conversion, ddl, hooks, live, online, schema_signal, shadow_table, short_locks
from custom_fields.conversion import Conversion
from custom_fields.spec import FieldSpec, has_builtin_index, label_of
from custom_fields.types import REGISTRY, FieldValueError, SettingsError
from models import Entity, Field, FieldConversion, SchemaChange, SchemaState

MAX_FIELDS_PER_TABLE = 200
MAX_TABLES = 500
LABEL_LENGTH = 100
HELP_LENGTH = 500
MAX_OFFENDERS = 20
BATCH = 2000
ICON_CHOICES = (
    "fa-table", "fa-building", "fa-user", "fa-users", "fa-truck", "fa-briefcase", "fa-cube", "fa-tag",
    "fa-file-text", "fa-handshake-o", "fa-calendar", "fa-star", "fa-book", "fa-envelope", "fa-phone",
)  # fmt: skip


class SchemaError(Exception):
    """A change that cannot be made; the message is for the admin, and nothing was changed."""


@dataclass
class ConversionRefused(SchemaError):  # noqa: N818 (a refusal, not a failure)
    message: str
    offenders: list[tuple[int, str, str]] = field(default_factory=list)  # (record id, value, reason)
    total: int = 0

    def __str__(self) -> str:
        return self.message


# --- helpers -----------------------------------------------------------------------------------------------


def clean_label(raw: Any, plural: bool = False) -> str:
    label = " ".join(str(raw or "").split())
    if not label:
        raise SchemaError(
            _("The plural name may not be empty.") if plural else _("The name may not be empty.")
        )
    if len(label) > LABEL_LENGTH:
        raise SchemaError(_("A name may have at most %(n)d characters.", n=LABEL_LENGTH))
    if "\x00" in label:
        raise SchemaError(_("Input may not contain NUL characters."))
    return label


def _shown_names(rows: list[Any], attrs: tuple[str, ...]) -> set[str]:
    """Labels of tables or fields as stored and as shown in every UI language (a core label follows the
    language), case-folded: what a new or renamed label may not repeat."""
    from flask import current_app
    from flask_babel import force_locale

    names: set[str] = set()
    for language in current_app.config.get("LANGUAGES") or ["en"]:
        with force_locale(language):
            for row in rows:
                for attr in attrs:
                    names |= {getattr(row, attr).casefold(), str(label_of(row, attr)).casefold()}
    return names


def _refuse_taken_table_name(names: tuple[str, ...], exclude_id: int | None = None) -> None:
    """Two live tables may not share a name or plural, case-insensitively, as users read them (a core
    table's shipped name in every language it is shown in: "Companies" and "Компании")."""
    others = db.session.scalars(
        select(Entity).where(Entity.archived_at.is_(None), Entity.id != (exclude_id or 0))
    ).all()
    taken = _shown_names(others, ("label", "plural_label"))
    clash = next((n for n in names if n.casefold() in taken), None)
    if clash is not None:
        raise SchemaError(_("A table named “%(label)s” already exists.", label=clash))


def _field_label_taken(entity_id: int, label: str, exclude_id: int | None = None) -> bool:
    """Whether another live field of the table is called so, as stored or as shown in any language."""
    others = db.session.scalars(
        select(Field).where(
            Field.entity_id == entity_id, Field.archived_at.is_(None), Field.id != (exclude_id or 0)
        )
    ).all()
    return label.casefold() in _shown_names(others, ("label",))


def clean_help(raw: Any) -> str:
    text = str(raw or "").strip()
    if len(text) > HELP_LENGTH:
        raise SchemaError(_("The help text may have at most %(n)d characters.", n=HELP_LENGTH))
    return text


def bump_schema_version(
    user_id: int | None,
    action: str,
    summary: str,
    entity_id: int | None,
    field_id: int | None,
    *,
    log: bool = True,
) -> int:
    """Bump the schema version first thing (it also serialises concurrent schema changes) and record it in
    the schema change log. Every change to metadata that processes build from (fields, access rules,
    teams) calls it inside its transaction."""
    ddl.set_lock_timeout(db.session.connection())
    # Incremented in SQL: the row lock (PostgreSQL) or write lock (SQLite) orders concurrent changes.
    db.session.execute(update(SchemaState).where(SchemaState.id == 1).values(version=SchemaState.version + 1))
    schema_signal.mark_changed(db.session)
    live.announce_schema(db.session, entity_id)
    version = db.session.scalar(select(SchemaState.version).where(SchemaState.id == 1))
    if version is None:
        raise SchemaError("the schema state row is missing; run `tabula init`")
    if not log:  # a state every process must learn (a field converting), not a change of its own
        return version
    db.session.add(
        SchemaChange(
            user_id=user_id,
            entity_id=entity_id,
            field_id=field_id,
            action=action,
            summary=summary[:2000],
            version=version,
        )
    )
    return version


def run_schema_change(change: Callable[[], Any]) -> Any:
    """Run a schema change as one transaction (commit, or roll back on any error); turn database refusals
    into clear messages (``SchemaError``)."""
    try:
        result = change()
        db.session.commit()
        return result
    except SchemaError:
        db.session.rollback()
        raise
    except OperationalError as exc:
        db.session.rollback()
        if _is_lock_problem(exc):
            raise SchemaError(
                _("The table is in use by another transaction; nothing was changed. Try again in a moment.")
            ) from exc
        raise
    except IntegrityError as exc:
        db.session.rollback()
        raise SchemaError(
            _("Existing records conflict with this change: %(reason)s", reason=_reason(exc))
        ) from exc
    except BaseException:
        db.session.rollback()
        raise


def _is_lock_problem(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return "lock" in text or "locked" in text or getattr(exc.orig, "sqlstate", "") == "55P03"


def _reason(exc: DBAPIError) -> str:
    lines = str(exc.orig).strip().splitlines()
    return lines[0][:200] if lines else exc.__class__.__name__


def _entity(entity_id: int) -> Entity:
    entity = db.session.get(Entity, entity_id)
    if entity is None:
        raise SchemaError(_("No such table."))
    return entity


def field_row(field_id: int) -> Field:
    """The field's metadata row, or ``SchemaError``."""
    row = db.session.get(Field, field_id)
    if row is None:
        raise SchemaError(_("No such field."))
    return row


def _settings(
    type_name: str, raw: dict[str, Any] | None, existing: FieldSpec | None = None
) -> dict[str, Any]:
    try:
        return REGISTRY[type_name].clean_settings(dict(raw or {}), existing)
    except SettingsError as exc:
        raise SchemaError(str(exc)) from None


def _spec_of(row: Field) -> FieldSpec:
    return FieldSpec.of(row)


def _check_default(type_name: str, spec: FieldSpec, raw: Any) -> str | None:
    if raw is None or str(raw).strip() == "":
        return None
    try:
        value = REGISTRY[type_name].parse(raw, spec)
        REGISTRY[type_name].check_record(value, spec, {})  # as on a new record with nothing else set
    except FieldValueError as exc:
        raise SchemaError(_("The default value does not fit: %(reason)s", reason=str(exc))) from None
    return REGISTRY[type_name].to_text(value, spec)


# --- tables ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewField:
    """A field a new table is created with (``create_entity(fields=...)``)."""

    label: str
    type_name: str
    settings: dict[str, Any] = field(default_factory=dict)


def create_entity(
    label: str,
    plural_label: str = "",
    icon: str = "fa-table",
    *,
    user_id: int | None = None,
    name_label: str | None = None,
    fields: Sequence[NewField] = (),
) -> Entity:
    """A new real table ``t_<id>`` with a first text field "Name" (or ``name_label``) that is its display
    field, and ``fields`` after it: all in one schema change, so a field refused leaves no table behind."""
    label = clean_label(label)
    plural = clean_label(plural_label or label, plural=True)
    icon = icon if icon in ICON_CHOICES else "fa-table"

    def change() -> Entity:
        if db.session.scalar(select(func.count()).select_from(Entity)) >= MAX_TABLES:
            raise SchemaError(_("At most %(n)d tables.", n=MAX_TABLES))
        _refuse_taken_table_name((label, plural))
        version = bump_schema_version(user_id, "create_table", f"Created table “{label}”", None, None)
        position = (db.session.scalar(select(func.max(Entity.position))) or 0) + 1
        entity = Entity(
            slug=f"pending_{version}", table_name=f"pending_{version}", label=label, plural_label=plural,
            icon=icon, position=position,
        )  # fmt: skip
        db.session.add(entity)
        db.session.flush()
        entity.table_name = ddl.table_name_for(entity.id)
        entity.slug = entity.table_name
        db.session.flush()
        ddl.create_table(db.session.connection(), entity.table_name)
        name_field = _add_field(
            entity, name_label or _("Name"), "text", settings={"max_length": 255}, required=True
        )
        entity.display_field_id = name_field.id
        for extra in fields:
            _add_field(entity, extra.label, extra.type_name, settings=extra.settings)
        db.session.execute(
            update(SchemaChange).where(SchemaChange.version == version).values(entity_id=entity.id)
        )
        return entity

    return run_schema_change(change)


def update_entity(
    entity_id: int,
    *,
    label: str,
    plural_label: str,
    icon: str,
    display_field_id: int | None = None,
    user_id: int | None = None,
) -> Entity:
    def change() -> Entity:
        entity = _entity(entity_id)
        new_label, new_plural = clean_label(label), clean_label(plural_label or label, plural=True)
        if {new_label, new_plural} != {entity.label, entity.plural_label}:
            _refuse_taken_table_name((new_label, new_plural), exclude_id=entity.id)
        entity.label, entity.plural_label = new_label, new_plural
        entity.icon = icon if icon in ICON_CHOICES else entity.icon
        if display_field_id is not None:
            chosen = db.session.get(Field, display_field_id)
            if chosen is None or chosen.entity_id != entity.id or chosen.archived_at is not None:
                raise SchemaError(_("The display field must be a field of this table."))
            entity.display_field_id = chosen.id
        bump_schema_version(
            user_id, "update_table", f"Table “{entity.label}”: labels and display field", entity.id, None
        )
        return entity

    return run_schema_change(change)


def archive_entity(entity_id: int, *, user_id: int | None = None) -> Entity:
    def change() -> Entity:
        entity = _entity(entity_id)
        if entity.is_system:
            raise SchemaError(_("Core tables cannot be archived."))
        if entity.archived_at is None:
            entity.archived_at = dt.datetime.now(dt.UTC)
            bump_schema_version(user_id, "archive_table", f"Archived table “{entity.label}”", entity.id, None)
        return entity

    return run_schema_change(change)


def restore_entity(entity_id: int, *, user_id: int | None = None) -> Entity:
    def change() -> Entity:
        entity = _entity(entity_id)
        if entity.archived_at is not None:
            _refuse_taken_table_name((entity.label, entity.plural_label), exclude_id=entity.id)
            entity.archived_at = None
            bump_schema_version(user_id, "restore_table", f"Restored table “{entity.label}”", entity.id, None)
        return entity

    return run_schema_change(change)


# --- fields ------------------------------------------------------------------------------------------------


def _add_field(
    entity: Entity,
    label: str,
    type_name: str,
    *,
    settings: dict[str, Any] | None = None,
    required: bool = False,
    unique: bool = False,
    default: Any = None,
    help_text: str = "",
    position: int | None = None,
    show_in_list: bool = True,
    searchable: bool = True,
    defer_index: bool = False,
) -> Field:
    """``defer_index``: on PostgreSQL the field's own index (a link's or user's, a unique one) is left to
    be built CONCURRENTLY once the change is committed (``add_field``), and a unique field is marked
    unique only then; inside this transaction the build would hold the table's lock from the new column
    (readers and writers wait) for as long as the index takes to build."""
    if type_name not in REGISTRY:
        raise SchemaError(_("Unknown field type."))
    ftype = REGISTRY[type_name]
    label = clean_label(label)
    siblings = db.session.scalars(select(Field).where(Field.entity_id == entity.id)).all()
    if len(siblings) >= MAX_FIELDS_PER_TABLE:
        raise SchemaError(_("A table may have at most %(n)d fields.", n=MAX_FIELDS_PER_TABLE))
    if _field_label_taken(entity.id, label):
        raise SchemaError(_("This table already has a field “%(label)s”.", label=label))
    if unique and not ftype.can_unique:
        raise SchemaError(_("Fields of this type cannot be unique."))
    cleaned = _settings(type_name, settings)
    row = Field(
        entity_id=entity.id, name="pending", column_name="pending", label=label, type=type_name,
        required=bool(required), unique=bool(unique), help_text=clean_help(help_text), settings=cleaned,
        position=position if position is not None else max((f.position for f in siblings), default=0) + 1,
        show_in_list=bool(show_in_list), searchable=bool(searchable),
    )  # fmt: skip
    db.session.add(row)
    db.session.flush()
    row.column_name = ddl.column_name_for(row.id)
    row.name = row.column_name
    row.default = _check_default(type_name, _spec_of(row), default)
    db.session.flush()
    conn = db.session.connection()
    spec = _spec_of(row)
    ddl.add_column(
        conn, entity.table_name, row.column_name, ftype.column_type(spec), ftype.target_table(spec)
    )
    if defer_index and _index_deferred(type_name, row.unique):
        row.unique = False  # until its index is valid (``_make_unique_concurrently``)
        return row
    _create_builtin_index(row)
    return row


def _index_deferred(type_name: str, unique: bool) -> bool:
    """Whether a new field's own index is built CONCURRENTLY after its change commits (PostgreSQL)."""
    concurrently = ddl.builds_concurrently(db.session.connection())
    return concurrently and (unique or REGISTRY[type_name].indexed_by_default)


def _builtin_index_missing(row: Field) -> bool:
    """PostgreSQL: a link's or user's index that is not (yet) valid: a deferred build failed or was cut
    off. Saving the field again builds it (``update_field``)."""
    conn = db.session.connection()
    if row.unique or not REGISTRY[row.type].indexed_by_default or not ddl.builds_concurrently(conn):
        return False
    name = ddl.index_name(row.entity.table_name, row.column_name, False)
    return ddl.index_state(conn, name) != "valid"


def _build_builtin_index(field_id: int, table_name: str, column_name: str) -> None:
    """After the change committed (PostgreSQL): a link's or user's index, CONCURRENTLY (reads and writes
    go on). A failure is reported; the field works meanwhile, only unindexed, until it is saved again."""
    try:
        ddl.create_index_concurrently(db.engine, table_name, column_name, unique=False)
    except ddl.IndexBuildFailed as exc:
        raise IndexBuildFailed(
            _(
                "The field is saved, but its index could not be built (%(reason)s), so it stays unindexed. "
                "Try again when the table is less busy.",
                reason=exc.reason,
            )
        ) from None


# --- indexes -----------------------------------------------------------------------------------------------


def _create_builtin_index(row: Field) -> None:
    """The index a field has anyway: a unique field's (on what its type compares), a link's or a user's."""
    conn, table_name = db.session.connection(), row.entity.table_name
    ftype = REGISTRY[row.type]
    if row.unique:
        ddl.create_index(conn, table_name, row.column_name, unique=True, key=ftype.unique_expression)
    elif ftype.indexed_by_default:
        ddl.create_index(conn, table_name, row.column_name, unique=False)


def _apply_indexed(row: Field, wanted: bool) -> tuple[str, str] | None:
    """Inside a schema change: give the field the index the admin asked for (``wanted``), or none (also
    when it has one anyway). Returns (table, column) of an index still to be built CONCURRENTLY once the
    change is committed (PostgreSQL): ``row.indexed`` is set only once that index is valid, so the flag
    never claims an index that a cut-off build did not finish. On SQLite it is built here."""
    conn, table_name = db.session.connection(), row.entity.table_name
    if not wanted or has_builtin_index(row):
        row.indexed = wanted
        ddl.drop_chosen_index(conn, table_name, row.column_name)
        return None
    if not ddl.builds_concurrently(conn):
        row.indexed = True
        ddl.create_chosen_index(conn, table_name, row.column_name)
        return None
    if ddl.index_state(conn, ddl.chosen_index_name(table_name, row.column_name)) == "valid":
        row.indexed = True
        return None
    return table_name, row.column_name


class IndexBuildFailed(SchemaError):  # noqa: N818 (what the admin is told)
    """The field was saved, but the index asked for could not be built; the field stays unindexed."""


def _build_chosen_index(pending: tuple[str, str] | None, field_id: int, user_id: int | None) -> None:
    """After the schema change committed: build its index without blocking the table, then mark the field
    indexed (a schema change of its own, so every process learns it). If the build fails, the field stays
    (or becomes) unindexed, the change log says why, and ``IndexBuildFailed`` is raised."""
    if pending is None:
        return
    table_name, column_name = pending
    try:
        ddl.build_chosen_index_concurrently(db.engine, table_name, column_name)
    except ddl.IndexBuildFailed as exc:
        reason = exc.reason

        def failed() -> None:
            row = field_row(field_id)
            row.indexed = False
            summary = (
                f"Table “{row.entity.label}”: field “{row.label}” not indexed: the build failed ({reason})"
            )
            bump_schema_version(user_id, "update_field", summary, row.entity_id, row.id)

        run_schema_change(failed)
        raise IndexBuildFailed(
            _(
                "The field is saved, but its index could not be built (%(reason)s), so it stays unindexed. "
                "Try again when the table is less busy.",
                reason=reason,
            )
        ) from None

    def built() -> None:
        row = field_row(field_id)
        if row.column_name != column_name or row.archived_at is not None:
            return  # its type changed meanwhile (the index went with the old column), or it was archived
        row.indexed = True
        summary = f"Table “{row.entity.label}”: field “{row.label}” indexed"
        bump_schema_version(user_id, "update_field", summary, row.entity_id, row.id)

    run_schema_change(built)


def add_field(
    entity_id: int, label: str, type_name: str, *, user_id: int | None = None, **options: Any
) -> Field:
    """Add a real column (NULL-able, so no table rewrite) to the entity's table. With ``indexed=True`` its
    index is built CONCURRENTLY on PostgreSQL once the field is saved (``IndexBuildFailed`` if it cannot
    be)."""

    indexed = bool(options.pop("indexed", False))

    def change() -> tuple[Field, int, tuple[str, str] | None]:
        entity = _entity(entity_id)
        _refuse_while_table_converts(entity.id)
        bump_schema_version(
            user_id,
            "add_field",
            f"Table “{entity.label}”: added field “{label}” ({type_name})",
            entity.id,
            None,
        )
        row = _add_field(entity, label, type_name, defer_index=True, **options)
        _tag_change(row)
        unique = bool(options.get("unique"))
        deferred = (
            (unique, entity.table_name, row.column_name) if _index_deferred(type_name, unique) else None
        )
        if deferred is not None:  # it has an index anyway: the admin's choice is kept, no second index
            row.indexed = indexed
            return row, row.id, None, deferred
        return row, row.id, _apply_indexed(row, indexed), deferred

    # The id as of the transaction: reading the committed row again would begin a transaction that the
    # concurrent build waits for.
    row, row_id, pending, deferred = run_schema_change(change)
    if deferred is not None:
        unique, table_name, column_name = deferred
        if unique:
            row = _make_unique_concurrently(row_id, user_id)
        else:
            _build_builtin_index(row_id, table_name, column_name)
    _build_chosen_index(pending, row_id, user_id)
    return row


def _tag_change(row: Field) -> None:
    version = db.session.scalar(select(SchemaState.version).where(SchemaState.id == 1))
    db.session.execute(update(SchemaChange).where(SchemaChange.version == version).values(field_id=row.id))


def update_field(
    field_id: int,
    *,
    label: str | None = None,
    help_text: str | None = None,
    options: list[dict[str, Any]] | None = None,
    position: int | None = None,
    show_in_list: bool | None = None,
    searchable: bool | None = None,
    required: bool | None = None,
    unique: bool | None = None,
    indexed: bool | None = None,
    default: Any = ...,
    user_id: int | None = None,
    clear_removed_options: bool = False,
) -> Field:
    """Labels, help, order, visibility, required, unique, indexed, default and select options: no data
    changes (making a field unique is refused while values repeat; removing an option records use is
    refused, unless ``clear_removed_options``: then those records lose it, on PostgreSQL in short
    batches once the option is gone from the field, ``online.clear_options``). A new index is built
    CONCURRENTLY on PostgreSQL once the rest is saved (``IndexBuildFailed`` if it cannot be)."""

    clearing: list[str] = []  # removed options to clear from the records holding them, after the change
    # PostgreSQL: a unique index is built CONCURRENTLY before anything is saved; its build is the check for
    # repeated values (a separate count would read the whole table once more).
    unique_built = _build_unique_first(field_id) if unique else None

    # the field, an index and unique to build, and a link's or user's own index still missing
    def change() -> tuple[Field, tuple[str, str] | None, bool, tuple[str, str] | None]:
        nonlocal clearing
        row = field_row(field_id)
        indexes_change = (indexed is not None and bool(indexed) != row.indexed) or (
            unique is not None and bool(unique) != row.unique and not row.is_system
        )
        if indexes_change:  # an index made or dropped changes the table's shape
            _refuse_while_table_converts(row.entity_id)
        version = bump_schema_version(user_id, "update_field", "", row.entity_id, row.id)
        was_indexed = row.indexed
        changes: list[str] = []
        if label is not None and clean_label(label) != row.label:
            new_label = clean_label(label)
            if _field_label_taken(row.entity_id, new_label, exclude_id=row.id):
                raise SchemaError(_("This table already has a field “%(label)s”.", label=new_label))
            changes.append(f"label “{row.label}” → “{new_label}”")
            row.label = new_label
        if help_text is not None:
            row.help_text = clean_help(help_text)
        if position is not None:
            row.position = int(position)
        if show_in_list is not None:
            row.show_in_list = bool(show_in_list)
        if searchable is not None:
            row.searchable = bool(searchable)
        if required is not None and not row.is_system:
            row.required = bool(required)
        if options is not None:
            if not REGISTRY[row.type].has_options:
                raise SchemaError(_("Only select fields have options."))
            new_options = _settings(row.type, {"options": options})["options"]
            if clear_removed_options:
                clearing = _removed_options(row, new_options)
            else:
                _refuse_removed_options_in_use(row, new_options)
            row.settings = {**row.settings, "options": new_options}
            changes.append("options")
        if default is not ...:
            row.default = _check_default(row.type, _spec_of(row), default)
        if clearing and not ddl.builds_concurrently(db.session.connection()):
            # SQLite: in this transaction (the single-user default; nobody else writes meanwhile).
            cleared = _clear_in_transaction(row, clearing)
            changes.append(f"{cleared} records cleared of removed options")
            clearing = []
        if unique_built is not None:
            if row.column_name != unique_built:
                raise SchemaError(_("The field was changed meanwhile; nothing was changed."))
            _mark_unique(row)
            changes.append("unique")
        elif unique is not None and bool(unique) != row.unique and not row.is_system:
            _set_unique(row, bool(unique))
            changes.append("unique" if unique else "not unique")
        wanted = row.indexed if indexed is None else bool(indexed)
        pending = _apply_indexed(row, wanted)
        if pending is not None:
            changes.append("index requested")
        elif row.indexed != was_indexed:
            changes.append("indexed" if row.indexed else "not indexed")
        entity = row.entity
        what = ", ".join(changes) or "settings"
        summary = f"Table “{entity.label}”: field “{row.label}” {what}"
        db.session.execute(
            update(SchemaChange).where(SchemaChange.version == version).values(summary=summary)
        )
        missing = (entity.table_name, row.column_name) if _builtin_index_missing(row) else None
        return row, pending, missing

    try:
        row, pending, missing = run_schema_change(change)
    except BaseException:
        if unique_built is not None:
            _drop_unique_index(field_id, unique_built)
        raise
    if clearing:
        _clear_removed_options(field_id, clearing, user_id)
    if missing is not None:
        _build_builtin_index(field_id, *missing)
    _build_chosen_index(pending, field_id, user_id)
    return row


def _build_unique_first(field_id: int) -> str | None:
    """PostgreSQL, a field becoming unique: its unique index built CONCURRENTLY now, before the change is
    saved (reads and writes go on meanwhile); the column it indexes, or None when the change makes the
    index in its own transaction (SQLite, already unique, a core field). Repeated values (also written
    during the build) fail it: ``SchemaError`` saying how many, and nothing changed."""
    row = field_row(field_id)
    table_name, column_name, type_name = row.entity.table_name, row.column_name, row.type
    wanted = not row.unique and not row.is_system and ddl.builds_concurrently(db.session.connection())
    if wanted:
        _refuse_while_table_converts(row.entity_id)
    db.session.rollback()  # no transaction of ours open: the concurrent build would wait for it
    if not wanted:
        return None
    if not REGISTRY[type_name].can_unique:
        raise SchemaError(_("Fields of this type cannot be unique."))
    key = REGISTRY[type_name].unique_expression
    try:
        ddl.create_index_concurrently(db.engine, table_name, column_name, unique=True, key=key)
    except ddl.IndexBuildFailed as exc:
        if exc.busy:
            raise SchemaError(
                _("The table is in use by another transaction; nothing was changed. Try again in a moment.")
            ) from None
        repeated = duplicates_for_unique(table_name, column_name, key)
        db.session.rollback()
        if repeated:
            raise SchemaError(_repeated_values_message(repeated)) from None
        raise SchemaError(
            _("Existing records conflict with this change: %(reason)s", reason=exc.reason)
        ) from None
    return column_name


def _mark_unique(row: Field) -> None:
    """The field is unique now that its unique index is built: the plain and the chosen index go (the
    unique one serves), waiting at most ``ddl.LOCK_TIMEOUT`` for the table."""
    conn = db.session.connection()
    ddl.set_lock_timeout(conn)
    ddl.drop_index(conn, row.entity.table_name, row.column_name, unique=False)
    ddl.drop_chosen_index(conn, row.entity.table_name, row.column_name)
    row.unique = True


def _drop_unique_index(field_id: int, column_name: str) -> None:
    """The unique index ``_build_unique_first`` built, dropped again (the change it was for failed)."""
    table_name = field_row(field_id).entity.table_name
    db.session.rollback()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        ddl.drop_index(conn, table_name, column_name, unique=True)


def _make_unique_concurrently(field_id: int, user_id: int | None) -> Field:
    """PostgreSQL: the unique index built CONCURRENTLY (reads and writes go on), then the field marked
    unique. A duplicate written meanwhile fails the build: the field stays as it was."""
    row = field_row(field_id)
    table_name, column_name, key = (
        row.entity.table_name,
        row.column_name,
        REGISTRY[row.type].unique_expression,
    )
    db.session.rollback()
    try:
        ddl.create_index_concurrently(db.engine, table_name, column_name, unique=True, key=key)
    except ddl.IndexBuildFailed as exc:
        if exc.busy:
            raise SchemaError(
                _(
                    "The field is saved, but not unique yet: other transactions kept the table busy while "
                    "its unique index was being built. Save the field again when the table is less busy."
                )
            ) from None
        raise SchemaError(
            _("Existing records conflict with this change: %(reason)s", reason=exc.reason)
        ) from None

    def mark() -> Field:
        row = field_row(field_id)
        if row.column_name != column_name:
            raise SchemaError(_("The field was changed meanwhile; nothing was changed."))
        _mark_unique(row)
        bump_schema_version(
            user_id, "update_field", f"Table “{row.entity.label}”: field “{row.label}” unique", row.entity_id,
            row.id,
        )  # fmt: skip
        return row

    try:
        return run_schema_change(mark)
    except SchemaError:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            ddl.drop_index(conn, table_name, column_name, unique=True)
        raise


def _refuse_repeated_values(row: Field) -> None:
    if not REGISTRY[row.type].can_unique:
        raise SchemaError(_("Fields of this type cannot be unique."))
    key = REGISTRY[row.type].unique_expression
    repeated = duplicates_for_unique(row.entity.table_name, row.column_name, key)
    if repeated:
        raise SchemaError(_repeated_values_message(repeated))


def _repeated_values_message(repeated: int) -> str:
    return ngettext(
        "%(num)d value occurs in more than one record; make it unique first.",
        "%(num)d values occur in more than one record; make them unique first.",
        repeated,
    )


def _set_unique(row: Field, unique: bool) -> None:
    table_name = row.entity.table_name
    conn = db.session.connection()
    if unique:
        _refuse_repeated_values(row)
        key = REGISTRY[row.type].unique_expression
        ddl.drop_index(conn, table_name, row.column_name, unique=False)
        ddl.create_index(conn, table_name, row.column_name, unique=True, key=key)
        row.unique = True
    else:
        ddl.drop_index(conn, table_name, row.column_name, unique=True)
        row.unique = False
        _create_builtin_index(row)


def _removed_options(row: Field, new_options: list[dict[str, str]]) -> list[str]:
    kept = {o["id"] for o in new_options}
    return [o["id"] for o in row.settings.get("options", []) if o["id"] not in kept]


def _clear_in_transaction(row: Field, option_ids: list[str]) -> int:
    tbl = table(
        row.entity.table_name, sql_column("id"), sql_column("row_version"), sql_column(row.column_name)
    )
    col, ftype, cleared = tbl.c[row.column_name], REGISTRY[row.type], 0
    for option_id in option_ids:
        statement = (
            update(tbl)
            .where(ftype.option_condition(col, option_id))
            .values(
                {row.column_name: ftype.without_option(col, option_id), "row_version": tbl.c.row_version + 1}
            )
        )
        cleared += db.session.execute(statement).rowcount or 0
    return cleared


def _clear_removed_options(field_id: int, option_ids: list[str], user_id: int | None) -> None:
    """PostgreSQL, after the options were saved (nobody can choose a removed one any more): the records
    holding one lose it, in short batches; then a second pass for what a process with the old options
    wrote meanwhile; the count goes to the schema change log."""
    row = field_row(field_id)
    table_name, column_name, type_name = row.entity.table_name, row.column_name, row.type
    db.session.rollback()
    cleared = sum(
        online.clear_options(db.engine, table_name, column_name, type_name, option_ids) for _pass in range(2)
    )

    def logged() -> None:
        row = field_row(field_id)
        summary = (
            f"Table “{row.entity.label}”: field “{row.label}”: {cleared} records cleared of removed options"
        )
        bump_schema_version(user_id, "update_field", summary, row.entity_id, row.id)

    run_schema_change(logged)


def _refuse_removed_options_in_use(row: Field, new_options: list[dict[str, str]]) -> None:
    kept = {o["id"] for o in new_options}
    removed = [o for o in row.settings.get("options", []) if o["id"] not in kept]
    if not removed:
        return
    tbl = table(row.entity.table_name, sql_column("id"), sql_column(row.column_name))
    col = tbl.c[row.column_name]
    for option in removed:
        condition = REGISTRY[row.type].option_condition(col, option["id"])
        count = db.session.scalar(select(func.count()).select_from(tbl).where(condition))
        if count:
            raise SchemaError(
                ngettext(
                    "The option “%(label)s” is used by %(num)d record; change it first, or keep the option.",
                    "The option “%(label)s” is used by %(num)d records; change them first, or keep the "
                    "option.",
                    count,
                    label=option["label"],
                )
            )  # fmt: skip


def archive_field(field_id: int, *, user_id: int | None = None) -> Field:
    """Hide a field everywhere; its column and data stay until an explicit purge."""

    def change() -> Field:
        row = field_row(field_id)
        if row.is_system:
            raise SchemaError(_("Core fields cannot be archived."))
        entity = row.entity
        if entity.display_field_id == row.id:
            raise SchemaError(_("This is the table's display field; choose another display field first."))
        if row.archived_at is None:
            row.archived_at = dt.datetime.now(dt.UTC)
            bump_schema_version(
                user_id,
                "archive_field",
                f"Table “{entity.label}”: archived field “{row.label}”",
                entity.id,
                row.id,
            )
        return row

    return run_schema_change(change)


def restore_field(field_id: int, *, user_id: int | None = None) -> Field:
    def change() -> Field:
        row = field_row(field_id)
        if row.archived_at is not None:
            if _field_label_taken(row.entity_id, row.label, exclude_id=row.id):
                raise SchemaError(
                    _("Another field is now called “%(label)s”; rename it first.", label=row.label)
                )
            row.archived_at = None
            summary = f"Table “{row.entity.label}”: restored field “{row.label}”"
            bump_schema_version(user_id, "restore_field", summary, row.entity_id, row.id)
        return row

    return run_schema_change(change)


def purge_field(field_id: int, *, confirm_label: str, user_id: int | None = None) -> None:
    """Drop an archived field's column and data for good; the admin confirms by typing its label."""

    def change() -> tuple[int, str, str]:
        row = field_row(field_id)
        if row.archived_at is None:
            raise SchemaError(_("Archive the field before purging it."))
        if (confirm_label or "").strip() != row.label:
            raise SchemaError(_("Type the field's label exactly to confirm the purge."))
        _refuse_if_converting(row, None)
        _refuse_while_table_converts(row.entity_id)
        entity = row.entity
        summary = f"Table “{entity.label}”: purged field “{row.label}” and its data"
        bump_schema_version(user_id, "purge_field", summary, entity.id, None)
        conn = db.session.connection()
        ddl.drop_index(conn, entity.table_name, row.column_name, unique=True)
        ddl.drop_index(conn, entity.table_name, row.column_name, unique=False)
        ddl.drop_chosen_index(conn, entity.table_name, row.column_name)
        ddl.drop_column(conn, entity.table_name, row.column_name)
        purged = (row.id, row.name, entity.slug)
        db.session.delete(row)
        return purged

    field_id, name, slug = run_schema_change(change)
    # Features that name fields (saved views, filters, templates) forget this one (``hooks.field_purged``).
    hooks.call.field_purged(field_id=field_id, name=name, slug=slug)


def change_type(
    field_id: int,
    new_type: str,
    settings: dict[str, Any] | None = None,
    *,
    user_id: int | None = None,
    progress: online.Progress | None = None,
    conversion_id: int | None = None,
) -> Field:
    """Convert a field to another type (or new settings such as a shorter text) in the database.

    Every stored value is converted through the registry (in SQL where it can, ``conversion``); if any
    does not convert, nothing changes and ``ConversionRefused`` lists up to 20 offending records. Otherwise
    a new column is filled, the old one dropped, and the field points at the new column. On SQLite all in
    one transaction; on PostgreSQL online (``_change_type_online``): the table stays readable and writable.
    ``progress(rows done, rows in all)`` is called as the values are written (it may raise to stop: nothing
    changes). ``conversion_id``: the background job's record (``FieldConversion``), marked done in the same
    transaction as the field changes.
    """
    if new_type not in REGISTRY:
        raise SchemaError(_("Unknown field type."))
    if db.engine.dialect.name == "postgresql":
        return _change_type_online(field_id, new_type, settings, user_id, progress, conversion_id)

    def change() -> Field:
        row = field_row(field_id)
        if row.is_system:
            raise SchemaError(_("The type of a core field cannot be changed."))
        _refuse_if_converting(row, conversion_id)
        entity = row.entity
        old_spec = _spec_of(row)
        new_settings = _settings(new_type, settings, old_spec)
        if row.unique and not REGISTRY[new_type].can_unique:
            raise SchemaError(_("Fields of this type cannot be unique."))
        generation = _generation(row.column_name) + 1
        new_column = ddl.column_name_for(row.id, generation)
        new_spec = FieldSpec(**{**old_spec.__dict__, "type": new_type, "settings": new_settings,
                                "column_name": new_column})  # fmt: skip
        summary = f"Table “{entity.label}”: field “{row.label}” {row.type} → {new_type}"
        version = bump_schema_version(user_id, "change_type", summary, entity.id, row.id)
        conn = db.session.connection()
        plan = conversion_plan(conn, entity.table_name, old_spec, new_spec)
        refuse_offenders(conn, plan)
        target = REGISTRY[new_type]
        ddl.add_column(conn, entity.table_name, new_column, target.column_type(new_spec),
                       target.target_table(new_spec))  # fmt: skip
        converted = conversion_fill(conn, plan, progress)
        db.session.execute(
            update(SchemaChange)
            .where(SchemaChange.version == version)
            .values(summary=f"{summary} ({converted_summary(converted)})")
        )
        for unique in (True, False):
            ddl.drop_index(conn, entity.table_name, row.column_name, unique=unique)
        ddl.drop_chosen_index(conn, entity.table_name, row.column_name)
        ddl.drop_column(conn, entity.table_name, row.column_name)
        row.type = new_type
        row.settings = new_settings
        row.column_name = new_column
        _create_builtin_index(row)
        if row.indexed and not has_builtin_index(row):
            # In this transaction: the table is locked for the rewrite of the column anyway.
            ddl.create_chosen_index(conn, entity.table_name, new_column)
        if row.default is not None:
            try:
                row.default = _check_default(new_type, new_spec, row.default)
            except SchemaError:
                row.default = None
        _conversion_done(row, conversion_id, converted)
        return row

    return run_schema_change(change)


def _refuse_while_table_converts(entity_id: int) -> None:
    """While a background job converts a field of the table, its shape stays as it is: on PostgreSQL the
    job copies the table and would have to refuse its swap after all its work."""
    converting = db.session.scalar(
        select(Field.label).where(Field.entity_id == entity_id, Field.converting_to.is_not(None)).limit(1)
    )
    if converting is not None:
        raise SchemaError(
            _(
                "The field “%(label)s” of this table is being converted; make this change once that is done.",
                label=converting,
            )
        )


def _refuse_if_converting(row: Field, conversion_id: int | None) -> None:
    """While a background job converts the field, no other type change (nor a purge) of it."""
    if row.converting_to and conversion_id is None:
        raise SchemaError(_("The field is being converted; wait until that finishes or cancel it."))


def _conversion_done(row: Field, conversion_id: int | None, converted: int) -> None:
    """In the transaction that makes the field read its new column: the job's record says done, and the
    field is no longer "converting" (so the two never disagree, whatever happens to the job after)."""
    if conversion_id is None:
        return
    record = db.session.get(FieldConversion, conversion_id)
    if record is not None:
        record.status, record.converted, record.finished_at = "done", converted, dt.datetime.now(dt.UTC)
        record.rows_done = record.rows_total or record.rows_done
    row.converting_to = None


def planned_type_change(
    field_id: int, new_type: str, settings: dict[str, Any] | None
) -> tuple[FieldSpec, FieldSpec]:
    """The field as it is and as it will be (its new column named), or ``SchemaError``."""
    if new_type not in REGISTRY:
        raise SchemaError(_("Unknown field type."))
    return _planned_type_change(field_id, new_type, settings)


def _planned_type_change(
    field_id: int, new_type: str, settings: dict[str, Any] | None
) -> tuple[FieldSpec, FieldSpec]:
    """The field as it is and as it will be (its new column named), or ``SchemaError``."""
    row = field_row(field_id)
    if row.is_system:
        raise SchemaError(_("The type of a core field cannot be changed."))
    old_spec = _spec_of(row)
    new_settings = _settings(new_type, settings, old_spec)
    if row.unique and not REGISTRY[new_type].can_unique:
        raise SchemaError(_("Fields of this type cannot be unique."))
    new_column = ddl.column_name_for(row.id, _generation(row.column_name) + 1)
    new_spec = FieldSpec(**{**old_spec.__dict__, "type": new_type, "settings": new_settings,
                            "column_name": new_column})  # fmt: skip
    return old_spec, new_spec


def _change_type_online(
    field_id: int, new_type: str, settings: dict[str, Any] | None, user_id: int | None,
    progress: online.Progress | None, conversion_id: int | None = None,
) -> Field:  # fmt: skip
    """PostgreSQL: check (nothing locked), add the new column with its keep-in-step trigger, fill it in
    short transactions, build its indexes CONCURRENTLY, then swap it in under a lock of milliseconds. Any
    failure or a cancel (``progress`` raising) drops what was added: the field is exactly as it was."""
    try:
        old_spec, new_spec = _planned_type_change(field_id, new_type, settings)
        _refuse_if_converting(field_row(field_id), conversion_id)
        table_name = _entity(old_spec.entity_id).table_name
    finally:
        db.session.rollback()  # no transaction of ours stays open: the steps below lock the table
    try:
        with online.converting(db.engine, field_id, old_spec.entity_id):
            return _convert_online(field_id, table_name, old_spec, new_spec, user_id, progress, conversion_id)
    except short_locks.TableBusy:
        raise SchemaError(
            _("The table is in use by another transaction; nothing was changed. Try again in a moment.")
        ) from None


def _convert_online(
    field_id: int, table_name: str, old_spec: FieldSpec, new_spec: FieldSpec, user_id: int | None,
    progress: online.Progress | None, conversion_id: int | None,
) -> Field:  # fmt: skip
    online.clean_up_leftovers(db.engine)  # of a conversion whose process died
    with db.engine.connect() as conn:
        plan = conversion.plan(conn, table_name, old_spec, new_spec)
        shadow = shadow_table.prepare(conn, plan)
    if shadow is not None:
        converted_by_copy = _convert_by_copy(field_id, plan, shadow, user_id, progress, conversion_id)
        if converted_by_copy is not None:
            return converted_by_copy
    # The check runs once the trigger is in place: from then on no value SQL cannot convert is written, so
    # when none is there now, the fill needs no Python pass (a second read of every batch).
    online.install(db.engine, plan)
    try:
        with db.engine.connect() as conn:
            in_python = refuse_offenders(conn, plan)
        converted = online.fill(db.engine, plan, progress, python=in_python > 0)
        _build_new_indexes(plan)
        return _swap_in(field_id, plan, converted, user_id, conversion_id)
    except BaseException as exc:
        online.remove(db.engine, plan)
        failure = _online_failure(exc)
        if failure is exc:
            raise
        raise failure from None


def _convert_by_copy(
    field_id: int, plan: Conversion, shadow: shadow_table.Shadow, user_id: int | None,
    progress: online.Progress | None, conversion_id: int | None,
) -> Field | None:  # fmt: skip
    """The conversion by copy and swap (``shadow_table``); None, having changed nothing, when some values
    need Python to convert (the in-place conversion does that)."""
    short_locks.with_short_locks(db.engine, lambda conn: shadow_table.install(conn, shadow, plan))
    try:
        with db.engine.connect() as conn:  # with the trigger in place (as in ``_convert_online``)
            in_python = refuse_offenders(conn, plan)
        if in_python:
            short_locks.with_short_locks(db.engine, lambda conn: shadow_table.remove(conn, shadow))
            return None
        shadow_table.copy(db.engine, shadow, plan, progress, online.fill_batch())
        # One round before the indexes: batches copied at different moments can hold a unique value twice
        # (moved from a copied record to one not copied yet); after a round the copy is of one moment.
        shadow_table.catch_up(db.engine, shadow, plan, rounds=1)
        shadow_table.build_indexes(db.engine, shadow)
        _build_new_indexes(plan, on_table=shadow.shadow)
        shadow_table.catch_up(db.engine, shadow, plan)
        converted = shadow_table.converted_count(db.engine, shadow)
        row = _swap_in(field_id, plan, converted, user_id, conversion_id, shadow=shadow)
    except BaseException as exc:
        short_locks.with_short_locks(db.engine, lambda conn: shadow_table.remove(conn, shadow))
        failure = _online_failure(exc)
        if failure is exc:
            raise
        raise failure from None
    unchecked = shadow_table.validate(db.engine, shadow)
    if unchecked:  # enforced for every write; only the copied rows' old check is not repeated
        logging.getLogger(__name__).warning(
            "foreign keys of %s left NOT VALID after a type change: %s", shadow.live, ", ".join(unchecked)
        )
    return row


def _online_failure(exc: BaseException) -> BaseException:
    """What the admin is told when an online conversion failed (the field is as it was)."""
    if isinstance(exc, FieldValueError):  # a value written after the check no longer converts
        return SchemaError(
            _("A value changed meanwhile does not convert: %(reason)s. Nothing was changed.", reason=str(exc))
        )
    if isinstance(exc, short_locks.TableBusy) or (isinstance(exc, ddl.IndexBuildFailed) and exc.busy):
        return SchemaError(
            _("The table is in use by another transaction; nothing was changed. Try again in a moment.")
        )
    if isinstance(exc, ddl.IndexBuildFailed):
        return SchemaError(_("Existing records conflict with this change: %(reason)s", reason=exc.reason))
    if isinstance(exc, IntegrityError):  # the copy's unique index refused a value (written meanwhile)
        return SchemaError(_("Existing records conflict with this change: %(reason)s", reason=_reason(exc)))
    if isinstance(exc, shadow_table.TableChanged):
        return SchemaError(
            _("Another change was made to the table while the field converted; nothing was changed. "
              "Try again.")
        )  # fmt: skip
    return exc


def _build_new_indexes(plan: Conversion, on_table: str | None = None) -> None:
    """The new column's indexes, CONCURRENTLY, before it is swapped in (a unique one refuses duplicates
    written meanwhile, through the trigger); ``on_table``: plain builds on the shadow table that will take
    the table's place (nobody else uses it), named as the table's."""
    new, table_name = plan.new, plan.table.name
    target = REGISTRY[new.type]
    row = field_row(new.id)
    chosen = bool(row.indexed) and not new.unique and not target.indexed_by_default
    db.session.rollback()
    if on_table is not None:
        with db.engine.begin() as conn:
            if new.unique or target.indexed_by_default:
                key = target.unique_expression if new.unique else None
                ddl.create_index(
                    conn, table_name, new.column_name, unique=new.unique, key=key, on_table=on_table
                )
            elif chosen:
                ddl.create_chosen_index(conn, table_name, new.column_name, on_table=on_table)
        return
    if new.unique:
        ddl.create_index_concurrently(
            db.engine, table_name, new.column_name, unique=True, key=target.unique_expression
        )
    elif target.indexed_by_default:
        ddl.create_index_concurrently(db.engine, table_name, new.column_name, unique=False)
    if chosen:
        ddl.build_chosen_index_concurrently(db.engine, table_name, new.column_name)


def _swap_in(
    field_id: int, plan: Conversion, converted: int, user_id: int | None, conversion_id: int | None = None,
    *, shadow: shadow_table.Shadow | None = None,
) -> Field:  # fmt: skip
    """The field now reads the new column (``shadow``: the shadow table becomes the table): one short
    transaction, retried while the table is busy."""
    old, new = plan.old, plan.new
    table_name = plan.table.name

    def change() -> Field:
        row = field_row(field_id)
        if row.column_name != old.column_name or row.type != old.type:
            raise SchemaError(_("The field was changed meanwhile; nothing was changed."))
        entity = row.entity
        what = f"{old.type} → {new.type} ({converted_summary(converted)})"
        summary = f"Table “{entity.label}”: field “{row.label}” {what}"
        bump_schema_version(user_id, "change_type", summary, entity.id, row.id)
        conn = db.session.connection()
        short_locks.lock_timeout(conn)
        if shadow is not None:
            shadow_table.swap(conn, shadow, plan)
        else:
            ddl.drop_conversion_trigger(conn, table_name, old.column_name)
            for unique in (True, False):
                ddl.drop_index(conn, table_name, old.column_name, unique=unique)
            ddl.drop_chosen_index(conn, table_name, old.column_name)
            ddl.drop_column(conn, table_name, old.column_name)
        row.type = new.type
        row.settings = new.settings
        row.column_name = new.column_name
        if row.default is not None:
            try:
                row.default = _check_default(new.type, new, row.default)
            except SchemaError:
                row.default = None
        _conversion_done(row, conversion_id, converted)
        return row

    return short_locks.retried(lambda: run_schema_change(change))  # a lock timeout comes as its cause


def _generation(column_name: str) -> int:
    parts = column_name.split("_")
    return int(parts[2]) if len(parts) == 3 and parts[2].isdecimal() else 1


def conversion_plan(conn: Connection, table_name: str, old: FieldSpec, new: FieldSpec) -> Conversion:
    return conversion.plan(conn, table_name, old, new)


def refuse_offenders(conn: Connection, plan: Conversion) -> int:
    """``ConversionRefused`` with the first offenders when any stored value would not convert; else how
    many values Python converts."""
    failed, offenders, in_python = conversion.check(conn, plan)
    if failed:
        raise ConversionRefused(
            ngettext(
                "%(num)d record has a value that cannot become “%(type)s”; fix it first. Nothing was "
                "changed.",
                "%(num)d records have values that cannot become “%(type)s”; fix them first. Nothing was "
                "changed.",
                failed,
                type=str(REGISTRY[plan.new.type].label),
            ),
            offenders,
            failed,
        )  # fmt: skip
    return in_python


def conversion_fill(conn: Connection, plan: Conversion, progress: online.Progress | None = None) -> int:
    """Fill the new column inside the caller's transaction (SQLite); with ``progress``, by ranges of ids,
    reporting after each (it may raise: the caller's transaction rolls back)."""
    try:
        if progress is None:
            return conversion.fill(conn, plan)
        low, high = conversion.id_range(conn, plan.table.name)
        total, written, batch = max(high - low + 1, 0), 0, online.fill_batch()
        for start in range(low, high + 1, batch):
            written += conversion.fill(conn, plan, start, start + batch - 1)
            progress(min(start + batch, high + 1) - low, total)
        return written
    except FieldValueError as exc:  # a value changed since the check (SQLite: nobody else writes)
        raise SchemaError(str(exc)) from None


def converted_summary(count: int) -> str:
    return f"{count} values converted"


def duplicates_for_unique(table_name: str, column_name: str, key: ddl.IndexKey | None = None) -> int:
    """How many values occur more than once, compared as the unique index will (``key(column)``)."""
    tbl = table(table_name, sql_column(column_name))
    col = key(tbl.c[column_name]) if key is not None else tbl.c[column_name]
    subquery = select(col).where(col.is_not(None)).group_by(col).having(func.count() > 1).subquery()
    return db.session.scalar(select(func.count()).select_from(subquery)) or 0


# --- permissions -------------------------------------------------------------------------------------------

#: The permission names a table's generated screens and API declare; ``custom_fields.access`` answers them.
ENTITY_PERMISSIONS = ["can_read", "can_add", "can_edit", "can_delete", "menu_access"]
