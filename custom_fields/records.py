"""The one write path: every create, update, delete and restore, from a form, the API, an import or a job.

Each call checks the actor's rights (``custom_fields.access``), parses and validates every value through
the field-type registry (one message per refused value; nothing is written unless everything is valid),
refuses a stale update (optimistic locking on ``row_version``), writes the history of every changed field,
and commits once. Deleting is soft (the recycle bin); ``purge_expired`` removes for good.

The ``*_many`` variants take batches: one query per batch for reads and checks and one executemany for
writes, so the grid and import never pay a round trip per row.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
import gc
import operator
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import sqlalchemy as sa
from flask_babel import gettext as _
from sqlalchemy import Table, and_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError, OperationalError

from app.extensions import db
from custom_fields import ddl, hooks, live, runtime
from custom_fields.access import Actor, Grants, grants, scope_holder_ids
from custom_fields.query import QueryError, TableQuery
from custom_fields.spec import EntitySpec, FieldSpec
from custom_fields.types import REGISTRY, FieldType, FieldValueError
from models.records import RecordChange
from models.system import utcnow

BATCH = 500


class RecordError(Exception):
    """A write that was refused; the message is for the user, and nothing was changed."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class AccessDenied(RecordError):  # noqa: N818 (refusals, not failures)
    pass


class RecordNotFound(RecordError):  # noqa: N818 (refusals, not failures)
    pass


class RecordInvalid(RecordError):  # noqa: N818 (refusals, not failures)
    """Values that do not fit: ``errors`` maps a field name to its message; ``rows`` does the same per row
    index for a batch."""

    def __init__(self, errors: dict[str, str] | None = None, rows: dict[int, dict[str, str]] | None = None):
        self.errors = errors or {}
        self.rows = rows or ({0: self.errors} if self.errors else {})
        first = next(iter(self.rows.values()), {})
        super().__init__("; ".join(f"{name}: {text}" for name, text in list(first.items())[:5]))


class StaleRecord(RecordError):  # noqa: N818 (refusals, not failures)
    """Someone saved the record after the actor read it: nothing was applied. ``current`` holds the values
    now stored (the fields the actor may see, as text), ``version`` the version to send with a retry."""

    def __init__(
        self, record_id: int, version: int, current: dict[str, str], by: str, at: dt.datetime | None
    ):
        self.record_id = record_id
        self.version = version
        self.current = current
        self.changed_by = by
        self.changed_at = at
        super().__init__(
            _("Someone else changed this record since you opened it; your changes were not saved.")
        )


@dataclass(frozen=True)
class Saved:
    id: int
    version: int


@dataclass
class _Context:
    entity: EntitySpec
    table: Table
    grants: Grants
    actor: Actor
    changeset: str = field(default_factory=lambda: uuid.uuid4().hex)
    at: dt.datetime = field(default_factory=utcnow)
    #: Links may name records the actor may not read (changes that follow from another write).
    links_unchecked: bool = False
    #: Whose reach the rows are read with (None: the actor's; the system's for changes that follow).
    reader: Actor | None = None
    #: History rows waiting for ``flush_history``: one per record and action (a write merges the changes
    #: of a record named twice before it writes), its fields inside.
    history: list[dict[str, Any]] = field(default_factory=list)

    def entry(
        self, record_id: int, action: str, changes: list[list[Any]] | None = None, note: Any = None
    ) -> None:
        """A new history row for one record (``changes``: ``[field_id, old, new]`` in the fields' order)."""
        self.history.append({
            "changeset": self.changeset, "at": self.at, "user_id": self.actor.user_id,
            "source": self.actor.source, "entity_id": self.entity.id, "record_id": record_id,
            "action": action, "changes": [] if changes is None else changes, "note": note,
        })  # fmt: skip

    def flush_history(self) -> None:
        live.announce_history(db.session, self.history, scope_holder_ids(self.entity))
        write_history(self.history)
        self.history.clear()


#: Rows from which PostgreSQL gets history (and new records) by COPY instead of an INSERT statement.
COPY_FROM = 50
_HISTORY_COLUMNS = (
    "changeset",
    "at",
    "user_id",
    "source",
    "entity_id",
    "record_id",
    "action",
    "changes",
    "note",
)


def write_history(rows: Sequence[dict[str, Any]]) -> None:
    """Insert history rows (in order, so ids follow it) in the current transaction."""
    if not rows:
        return
    if _copyable(len(rows)):
        _copy(RecordChange.__tablename__, _HISTORY_COLUMNS, text=_history_copy_text(rows))
        return
    dialect = db.session.get_bind().dialect
    if dialect.name != "sqlite":
        params = [{**r, "changes": r["changes"] or None} for r in rows]
        for chunk in _chunks(params, BATCH):
            db.session.execute(sa.insert(RecordChange.__table__), chunk)
        return
    # SQLite: straight to the driver. The rows of a batch share their moment, converted once as the
    # column's type does; the values go as JSON text (read back by the JSON type as any other).
    convert = RecordChange.__table__.c.at.type.dialect_impl(dialect).bind_processor(dialect)
    moments: dict[Any, Any] = {}
    dumps = _json_text
    params = []
    for r in rows:
        at = moments.get(r["at"])
        if at is None:
            at = moments[r["at"]] = convert(r["at"]) if convert else r["at"]
        changes, note = r["changes"], r["note"]
        params.append(
            (
                r["changeset"], at, r["user_id"], r["source"], r["entity_id"], r["record_id"], r["action"],
                dumps(changes) if changes else None, None if note is None else dumps(note),
            )
        )  # fmt: skip
    marks = ", ".join("?" * len(_HISTORY_COLUMNS))
    statement = f"INSERT INTO {RecordChange.__tablename__} ({', '.join(_HISTORY_COLUMNS)}) VALUES ({marks})"  # noqa: S608
    connection = db.session.connection()
    for chunk in _chunks(params, BATCH * 10):
        connection.exec_driver_sql(statement, list(chunk))


def _history_copy_text(rows: Sequence[dict[str, Any]]) -> str:
    """History rows in COPY's text format, written out here rather than value by value by the driver
    (the rows of a batch share their change set, moment, user, source and table: that part is written
    once; JSON text holds no tab or newline, only backslashes to double)."""
    dumps = _json_text
    heads: dict[tuple[Any, ...], tuple[str, str]] = {}
    out = []
    for r in rows:
        key = (r["changeset"], r["at"], r["user_id"], r["source"], r["entity_id"], r["action"])
        parts = heads.get(key)
        if parts is None:
            changeset, at, user, source, entity, action = key
            before_id = "\t".join(
                (
                    _copy_word(changeset), at.isoformat(), "\\N" if user is None else str(int(user)),
                    _copy_word(source), str(int(entity)), "",
                )
            )  # fmt: skip
            parts = heads[key] = (before_id, f"\t{_copy_word(action)}\t")
        changes, note = r["changes"], r["note"]
        out.append(
            f"{parts[0]}{int(r['record_id'])}{parts[1]}"
            + (dumps(changes).replace("\\", "\\\\") if changes else "\\N")
            + "\t"
            + ("\\N" if note is None else dumps(note).replace("\\", "\\\\"))
        )
    out.append("")
    return "\n".join(out)


_encode_json = msgspec.json.Encoder().encode


def _json_text(value: Any) -> str:
    """History's values as compact JSON text (UTF-8 letters as they are, control characters escaped):
    msgspec's encoder, several times faster than ``json.dumps`` on the write path's hot loop."""
    return _encode_json(value).decode()


@functools.lru_cache(maxsize=1024)
def _copy_word(text: str) -> str:
    """A short name the write path made (a change set, a source, an action), checked to need no escaping."""
    if not text.isascii() or any(c in text for c in "\\\t\n\r"):
        raise ValueError(f"not a plain word: {text!r}")
    return text


def _copyable(count: int) -> bool:
    return count >= COPY_FROM and db.session.get_bind().dialect.name == "postgresql"


def _copy(
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]] = (),
    *,
    text: str | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> None:
    """PostgreSQL COPY into ``table`` inside the session's transaction, of ``rows`` (the driver writes
    each value) or of ``text`` already in COPY's text format; the driver's refusals become SQLAlchemy's
    errors, as a statement's would. ``meanwhile`` runs once everything is sent, while the server is still
    taking the rows in (Python's next work overlaps the server's instead of waiting for it)."""
    import psycopg

    raw = db.session.connection().connection.driver_connection
    names = ", ".join(f'"{ddl.check_identifier(c)}"' for c in columns)
    statement = f'COPY "{ddl.check_identifier(table)}" ({names}) FROM STDIN'  # generated names only
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            if text is not None:
                copy.write(text)
            for row in rows:
                copy.write_row(row)
            if meanwhile is not None:
                meanwhile()
    except psycopg.IntegrityError as exc:
        raise IntegrityError(statement, None, exc) from exc
    except psycopg.OperationalError as exc:
        raise OperationalError(statement, None, exc) from exc


def insert_rows(table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows into a table that holds no records (an import's list of what it wrote), in the current
    transaction: COPY on PostgreSQL when there are many (JSON columns as their text), else one
    executemany; either way the columns left out get their defaults. Not for record tables: their rows
    go through ``create_many``."""
    if not rows:
        return
    if not _copyable(len(rows)):
        db.session.execute(sa.insert(table), list(rows))
        return
    rows = _with_python_defaults(table, rows)
    columns = [c for c in table.columns if c.name in rows[0]]
    as_json = [isinstance(c.type, sa.JSON) for c in columns]
    dumps = _json_text
    _copy(
        table.name,
        [c.name for c in columns],
        (
            [None if v is None else dumps(v) if j else v
             for v, j in zip((row[c.name] for c in columns), as_json, strict=True)]
            for row in rows
        ),
    )  # fmt: skip


#: A batch writing at least this share of the rows a table's statistics know of has PostgreSQL refresh
#: them (1: the batch at least doubles the table, as known).
STALE_SHARE = 1.0


def _refresh_statistics(tbl: Table, written: int) -> None:
    """ANALYZE a table (inside the batch's transaction, which sees its own rows) that was never analyzed,
    or that this batch grows by ``STALE_SHARE`` of what its statistics know, rather than wait for
    autovacuum (a minute later, or never when it is off): without statistics PostgreSQL takes a batch's
    rows, found by id, for a handful, and may rescan the batch once per row. Stale ones do less harm
    (the ends of the id range are looked up in the index), and analyzing costs about a sample of 30 000
    rows each time, hence only when the table doubled."""
    known = db.session.scalar(
        sa.text("SELECT reltuples FROM pg_class WHERE oid = CAST(:name AS regclass)"), {"name": tbl.name}
    )
    if known < 0 or written >= STALE_SHARE * known:  # -1: never analyzed
        db.session.execute(sa.text(f'ANALYZE "{ddl.check_identifier(tbl.name)}"'))


#: The context a write's hooks get (``hooks.call.derive`` / ``after_write``): its table, actor, rights and
#: change set, and what ``cascade_update`` needs as its cause.
WriteContext = _Context


def _context(slug: str, actor: Actor, action: str | None) -> _Context:
    """The table, its rights for ``actor`` and a new change set; refuses when ``action`` is not allowed
    (None: the caller checks rights itself)."""
    schema = runtime.current()
    entity = schema.entity(slug)
    if entity is None or entity.archived:
        raise RecordNotFound(_("No such table."))
    rights = grants(actor, entity, schema.access)
    if action is not None and not rights.can(action):
        raise AccessDenied(_("You may not do this in this table."))
    return _Context(entity, schema.classes[slug].__table__, rights, actor)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


_OUTER = "tabula_atomic"

#: Why the writes of this block may link records their actor may not read (``linking_unreadable``).
_UNREADABLE_LINKS: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tabula_unreadable_links", default=None
)


@contextlib.contextmanager
def linking_unreadable(reason: str) -> Iterator[None]:
    """The system path for links: inside, a write may link a record its actor may not read (it must
    still exist). Only Python code that decided so itself opens it, for a named ``reason`` (lead conversion
    linking the company it matched, a merge moving references); nothing from a request reaches it, and
    every other write refuses such a link as if the record did not exist."""
    if not reason:
        raise ValueError("linking_unreadable needs a reason")
    token = _UNREADABLE_LINKS.set(reason)
    try:
        yield
    finally:
        _UNREADABLE_LINKS.reset(token)


@contextlib.contextmanager
def atomic() -> Iterator[None]:
    """Several write-path calls as one transaction (lead conversion, merging): inside, each call flushes
    instead of committing; the block commits once at the end, or rolls everything back when anything in it
    fails. Nested blocks join the outer one."""
    info = db.session().info
    if info.get(_OUTER):
        yield
        return
    info[_OUTER] = True
    try:
        yield
    except BaseException:
        info.pop(_OUTER, None)
        db.session.rollback()
        raise
    info.pop(_OUTER, None)
    _transaction(lambda: None)


def _transaction(work: Any, ctx: _Context | None = None) -> Any:
    """Run ``work`` and commit, or roll everything back; database refusals become clear messages (a unique
    index of ``ctx``'s table refusing a value: the same message at the field as the check before writing,
    for writes that overlapped it). Inside ``atomic`` the outer block commits or rolls back."""
    outer = db.session().info.get(_OUTER)
    try:
        result = work()
        if outer:
            db.session.flush()
        else:
            db.session.commit()
        return result
    except RecordError:
        if not outer:
            db.session.rollback()
        raise
    except IntegrityError as exc:
        if not outer:
            db.session.rollback()
        if ddl.CONVERTING_MESSAGE in str(exc.orig):
            raise RecordError(
                _("Not saved: a field of this table is changing its type. Please try again in a minute.")
            ) from exc
        field_name = _unique_field_refusing(ctx, exc) if ctx is not None else None
        if field_name is not None:
            raise RecordInvalid({field_name: _("Another record already has this value.")}) from exc
        raise RecordError(
            _("Not saved: another record already has this value, or a linked record is missing.")
        ) from exc
    except OperationalError as exc:
        if not outer:
            db.session.rollback()
        raise RecordError(_("Not saved: the database is busy. Please try again.")) from exc
    except BaseException:
        if not outer:
            db.session.rollback()
        raise


def _unique_field_refusing(ctx: _Context, exc: IntegrityError) -> str | None:
    """The unique field whose index refused the write, from the driver's report (PostgreSQL names the
    index; SQLite names the index, or the table and column)."""
    diag = getattr(exc.orig, "diag", None)
    named = getattr(diag, "constraint_name", None)
    # SQLite: "UNIQUE constraint failed: index 'uq_t_5_f_12'" or "... failed: t_5.f_12"
    targets = {named} if named else {p.strip() for p in str(exc.orig).split(":", 1)[-1].split(",")}
    table = ctx.table.name
    for spec in ctx.entity.live_fields:
        index = ddl.index_name(table, spec.column_name, unique=True)
        if spec.unique and targets & {index, f"index '{index}'", f"{table}.{spec.column_name}"}:
            return spec.name
    return None


# --- validation --------------------------------------------------------------------------------------------


class Parsed(dict[str, Any]):
    """A row's values by field name as the registry's parsers of ``specs`` gave them a moment ago (an
    import checks every row before writing any): the write path takes a value as it is while its field is
    still that very spec (a schema change since then means parsing again). Rights, required fields,
    defaults, links, unique values and derived fields are checked as for any row."""

    __slots__ = ("specs",)

    def __init__(self, specs: Mapping[str, FieldSpec]) -> None:  # dict.__init__ has nothing to add
        self.specs = specs


class _Parser:
    """Raw values by field name -> (stored values, errors by field name), field rights included. Each
    field's parser and the actor's mode are looked up once per batch, not once per value."""

    def __init__(self, ctx: _Context, *, creating: bool) -> None:
        self.ctx = ctx
        self.creating = creating
        self.fields: dict[Any, tuple[Any, FieldSpec | None, str | None]] = {}
        live = ctx.entity.live_fields
        self.required = [spec.name for spec in live if spec.required]
        # Fields filled in automatically get their value from the write path (``_stamps``, derive hooks).
        self.defaults = (
            [(spec.name, runtime.column_default(spec)) for spec in live if not spec.settings.get("auto")]
            if creating
            else []
        )

    def resolve(self, name: Any) -> tuple[Any, FieldSpec | None, str | None]:
        """(parser, spec, None) for a field the actor may set, else (None, error key, message)."""
        ctx = self.ctx
        spec = ctx.entity.field_by_name(name)
        mode = ctx.grants.mode(name)
        if spec is None or spec.archived or mode == "hidden":
            return None, str(name)[:100], _("No such field.")
        if spec.settings.get("auto"):
            return None, name, _("This field is filled in automatically.")
        if mode != "edit":
            return None, name, _("You may not change this field.")
        return REGISTRY[spec.type].parser(spec), spec, None

    def __call__(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        parsed: dict[str, Any] = {}
        errors: dict[str, str] = {}
        fields = self.fields
        given = values.specs if type(values) is Parsed else None
        for name, raw in values.items():
            entry = fields.get(name)
            if entry is None:
                entry = fields[name] = self.resolve(name)
            parse, spec, message = entry
            if message is not None:
                errors[spec] = message  # type: ignore[index]  (the error key, for a refused field)
                continue
            if given is not None and given.get(name) is spec:
                parsed[name] = raw  # parsed by this field's own parser already (``Parsed``)
                continue
            try:
                parsed[name] = parse(raw)
            except FieldValueError as exc:
                errors[name] = str(exc)
        for name, default in self.defaults:
            if name not in parsed:
                parsed[name] = default
        for name in self.required:
            if name in parsed and parsed[name] is None and name not in errors:
                errors[name] = _("This field is required.")
        return parsed, errors


def _parse(
    ctx: _Context, values: Mapping[str, Any], *, creating: bool
) -> tuple[dict[str, Any], dict[str, str]]:
    """Raw values by field name -> (stored values, errors by field name), field rights included."""
    return _Parser(ctx, creating=creating)(values)


def _check_references_and_unique(
    ctx: _Context, rows: list[dict[str, Any]], pks: list[int | None]
) -> dict[int, dict[str, str]]:
    """Links that point nowhere and values a unique field already holds, for a whole batch: one query
    per field, not per row."""
    errors: dict[int, dict[str, str]] = {}
    unreadable_allowed = ctx.links_unchecked or ctx.actor.system or _UNREADABLE_LINKS.get() is not None
    for spec in ctx.entity.live_fields:
        reference = REGISTRY[spec.type].reference
        if reference is None and not spec.unique:
            continue
        wanted = {i: row[spec.name] for i, row in enumerate(rows) if row.get(spec.name) is not None}
        if not wanted:
            continue
        if reference is not None:
            target = _reference_table(spec)
            ids = set(wanted.values())
            if reference == "record" and not unreadable_allowed:
                # Linking needs the right to read the target: a record out of the actor's reach is
                # refused as a missing one (never confirming it exists).
                found = _readable_targets(spec, ctx.actor, ids)
            else:
                found = _existing(target, ids)
            for i, value in wanted.items():
                if value not in found:
                    errors.setdefault(i, {})[spec.name] = _("Record %(id)s does not exist.", id=value)
        if spec.unique:
            # Compared as the field type compares (``RACE-SKU-1`` = ``race-sku-1``), the way its unique
            # index does; records in the recycle bin keep their values.
            ftype = REGISTRY[spec.type]
            key = ftype.unique_expression(ctx.table.c[spec.column_name])
            wanted = {i: ftype.unique_key(value) for i, value in wanted.items()}
            holders: dict[Any, tuple[int, bool]] = {}
            values = list(set(wanted.values()))
            for chunk in _chunks(values, BATCH):
                for rid, value, deleted in db.session.execute(
                    select(ctx.table.c.id, key, ctx.table.c.deleted_at).where(key.in_(chunk))
                ):
                    holders[ftype.unique_key(value)] = (rid, deleted is not None)
            seen: dict[Any, int] = {}
            for i, value in wanted.items():
                holder = holders.get(value)
                if value in seen or (holder is not None and holder[0] != pks[i]):
                    message = (
                        _("A record in the recycle bin already has this value.")
                        if holder is not None and holder[1] and value not in seen
                        else _("Another record already has this value.")
                    )
                    errors.setdefault(i, {})[spec.name] = message
                seen[value] = i
    return errors


def _check_records(
    ctx: _Context, rows: list[dict[str, Any]], changed: list[dict[str, Any]]
) -> dict[int, dict[str, str]]:
    """Each field type's checks against the rest of the record (a Russian tax id unless the company is
    foreign), for the values that changed or whose fields they depend on changed; values saved before a
    check existed stay until someone changes them."""
    errors: dict[int, dict[str, str]] = {}
    for spec in ctx.entity.live_fields:
        ftype = REGISTRY[spec.type]
        if type(ftype).check_record is FieldType.check_record:  # the type checks nothing record-wide
            continue
        watched = {spec.name, *ftype.depends_on(spec)}
        for i, (row, diff) in enumerate(zip(rows, changed, strict=True)):
            if spec.name not in row or not watched & diff.keys():
                continue
            try:
                ftype.check_record(row[spec.name], spec, row)
            except FieldValueError as exc:
                errors.setdefault(i, {})[spec.name] = str(exc)
    return errors


def _merge_errors(into: dict[int, dict[str, str]], found: dict[int, dict[str, str]]) -> None:
    """Adds ``found`` to ``into``, keeping the first message per field."""
    for i, row_errors in found.items():
        target = into.setdefault(i, {})
        for name, message in row_errors.items():
            target.setdefault(name, message)


def _existing(target: Table, ids: set[Any]) -> set[Any]:
    """Which of ``ids`` are live rows of ``target``."""
    found: set[Any] = set()
    values = sorted(ids)
    for chunk in _chunks(values, BATCH):
        conditions = [target.c.id.in_(chunk)]
        if "deleted_at" in target.c:
            conditions.append(target.c.deleted_at.is_(None))
        found.update(db.session.scalars(select(target.c.id).where(*conditions)))
    return found


def _readable_targets(spec: FieldSpec, actor: Actor, ids: set[Any]) -> set[Any]:
    """Which of ``ids`` the actor may read in the link's target table (none if it may not read it)."""
    schema = runtime.current()
    target = schema.by_id.get(REGISTRY[spec.type].target_entity_id(spec))
    if target is None:
        raise RecordError(_("The linked table no longer exists."))
    try:
        return TableQuery(target.slug, actor).readable_ids(ids)
    except QueryError:
        return set()


def _reference_table(spec: FieldSpec) -> Table:
    ftype = REGISTRY[spec.type]
    if ftype.reference == "user":
        return runtime.USERS
    target_id = ftype.target_entity_id(spec)
    target = runtime.current().model(target_id) if target_id is not None else None
    if target is None:
        raise RecordError(_("The linked table no longer exists."))
    return target.__table__


# --- create ------------------------------------------------------------------------------------------------


def _batch(write: Callable[..., Any]) -> Callable[..., Any]:
    """Pauses Python's cycle collector during a batch: a batch allocates thousands of small dicts and
    lists that live until it ends, and each collection would walk them all again (a third of a big
    batch's time); nothing in a batch makes cycles that reference counting would not free."""

    @functools.wraps(write)
    def paused(*args: Any, **kwargs: Any) -> Any:
        if not gc.isenabled():
            return write(*args, **kwargs)
        gc.disable()
        try:
            return write(*args, **kwargs)
        finally:
            gc.enable()

    return paused


def create(slug: str, values: Mapping[str, Any], actor: Actor) -> Saved:
    """One new record; raises RecordInvalid (errors by field), AccessDenied or RecordError."""
    return create_many(slug, [values], actor)[0]


@_batch
def create_many(slug: str, rows: Iterable[Mapping[str, Any]], actor: Actor) -> list[Saved]:
    """New records, all or none: any invalid row refuses the whole batch (errors per row index)."""
    ctx = _context(slug, actor, "add")
    parse = _Parser(ctx, creating=True)
    parsed_rows: list[dict[str, Any]] = []
    errors: dict[int, dict[str, str]] = {}
    for i, values in enumerate(rows):
        parsed, row_errors = parse(values)
        parsed_rows.append(parsed)
        if row_errors:
            errors[i] = row_errors
    _merge_errors(errors, _check_references_and_unique(ctx, parsed_rows, [None] * len(parsed_rows)))
    _merge_errors(errors, _check_records(ctx, parsed_rows, parsed_rows))
    if errors:
        raise _invalid(errors)
    specs = [(spec.id, spec.name, _json_of(spec), spec) for spec in ctx.entity.live_fields]

    def work() -> list[Saved]:
        _derive(ctx, parsed_rows, [None] * len(parsed_rows))
        # The owner is whoever creates the record, unless the table has an Owner field and it was given.
        stamps = _stamps(ctx, created=True)
        entry = ctx.entry

        def log_created(ids: list[int]) -> None:
            for record_id, row in zip(ids, parsed_rows, strict=True):
                entry(
                    record_id,
                    "create",
                    [
                        [fid, None, value if to_json is None else to_json(value, spec)]
                        for fid, name, to_json, spec in specs  # in the fields' order
                        if (value := row.get(name)) is not None
                    ],
                )

        ids = _insert(
            ctx,
            [
                {**row, **stamps, "row_version": 1, "owner_id": row.get("owner_id") or actor.user_id}
                for row in parsed_rows
            ],
            meanwhile=log_created,  # the history lines made while PostgreSQL takes the rows in
        )
        _after(ctx, [{**row, "id": pk} for row, pk in zip(parsed_rows, ids, strict=True)])
        ctx.flush_history()
        return [Saved(pk, 1) for pk in ids]

    return _transaction(work, ctx)


def _json_of(spec: FieldSpec) -> Callable[[Any, FieldSpec], Any] | None:
    """How history writes a value of ``spec``: its type's ``to_json``, or None where that is the value itself
    (no call per value on the bulk paths)."""
    ftype = REGISTRY[spec.type]
    return None if type(ftype).to_json is FieldType.to_json else ftype.to_json


def _stamps(ctx: _Context, *, created: bool = False) -> dict[str, dt.datetime]:
    """When the change set writes: the record's last change (and, new, its creation), as its history says."""
    names = ("created_at", "updated_at") if created else ("updated_at",)
    return {name: ctx.at for name in names if name in ctx.table.c}


def _insert(
    ctx: _Context, params: list[dict[str, Any]], meanwhile: Callable[[list[int]], None] | None = None
) -> list[int]:
    """Insert rows (parameters by column key) and return their new ids, in order. PostgreSQL takes a
    large batch by COPY with ids drawn from the table's sequence first; otherwise ``INSERT ... RETURNING``
    in batches. ``meanwhile(ids)`` runs once the rows are sent (during the COPY: while PostgreSQL takes
    them in), before this returns."""
    if _copyable(len(params)) and _copy_fits(ctx.table, list(params[0]), params):
        copied = _insert_by_copy(ctx.table, params, meanwhile)
        if copied is not None:
            return copied
    ids = _insert_by_statements(ctx.table, params)
    if meanwhile is not None:
        meanwhile(ids)
    return ids


def _insert_by_copy(
    tbl: Table, params: list[dict[str, Any]], meanwhile: Callable[[list[int]], None] | None
) -> list[int] | None:
    """PostgreSQL: the rows by COPY, their ids drawn from the table's sequence first; None (nothing
    written) when the table has no sequence."""
    params = _with_python_defaults(tbl, params)
    keys = list(params[0])
    sequence = db.session.scalar(sa.select(sa.func.pg_get_serial_sequence(tbl.name, "id")))
    if sequence is None:
        return None
    ids = sorted(
        db.session.scalars(
            sa.select(sa.func.nextval(sequence)).select_from(sa.func.generate_series(1, len(params)))
        )
    )
    _copy(
        tbl.name,
        ["id", *(tbl.c[k].name for k in keys)],
        ((pk, *[p[k] for k in keys]) for pk, p in zip(ids, params, strict=True)),
        meanwhile=None if meanwhile is None else lambda: meanwhile(ids),
    )
    _refresh_statistics(tbl, len(ids))
    return ids


def _insert_by_statements(tbl: Table, params: list[dict[str, Any]]) -> list[int]:
    if not params:
        return []
    if db.session.get_bind().dialect.name == "sqlite" and len(params) > 1:
        # SQLite returns the ids of a multi-row INSERT in no promised order, so SQLAlchemy would send
        # one statement per row. The first row's insert takes the database's write lock, and its id is
        # above every id in use (max + 1): the next ids are free until the commit.
        first = db.session.scalar(sa.insert(tbl).returning(tbl.c.id), params[0])
        ids = list(range(first, first + len(params)))
        rest = [{**p, "id": pk} for pk, p in zip(ids[1:], params[1:], strict=True)]
        for chunk in _chunks(rest, BATCH):
            db.session.execute(sa.insert(tbl), chunk)
        return ids
    statement = sa.insert(tbl).returning(tbl.c.id, sort_by_parameter_order=True)
    ids = []
    for chunk in _chunks(params, BATCH):
        ids.extend(db.session.scalars(statement, chunk))
    return ids


def _copy_fits(tbl: Table, keys: list[str], params: list[dict[str, Any]]) -> bool:
    """Whether COPY writes what the INSERT statement would: the same columns in every row, none whose
    values SQLAlchemy converts on the way (JSON ...), no column left out that has a Python-side default."""
    columns = tbl.c
    if "id" in keys or any(k not in columns for k in keys):
        return False
    if not all(_driver_takes(columns[key]) for key in keys):
        return False
    given = set(keys)
    for column in columns:
        default = column.default
        if column.key in given or column.key == "id" or default is None:
            continue
        if not (default.is_scalar or (default.is_callable and not default.is_sequence)):
            return False
    first = params[0].keys()
    return all(p.keys() == first for p in params)


def _driver_takes(column: sa.Column) -> bool:
    """Whether the driver takes the column's values as they are (SQLAlchemy converts none of them on the
    way; its Boolean only checks them)."""
    dialect = db.session.get_bind().dialect
    return (
        isinstance(column.type, sa.Boolean)
        or column.type.dialect_impl(dialect).bind_processor(dialect) is None
    )


def _with_python_defaults(tbl: Table, params: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
    """The rows with the values SQLAlchemy would give the columns they leave out (a created-at moment,
    a counter's 0), which COPY does not: new rows when a column is missing, else the rows given."""
    missing = [c for c in tbl.c if c.key not in params[0] and c.key != "id" and c.default is not None]
    if not missing:
        return params
    defaults = [(c.key, c.default) for c in missing]
    return [
        {**p, **{key: default.arg(None) if default.is_callable else default.arg for key, default in defaults}}
        for p in params
    ]


def _derived_tables() -> set[str]:
    return {slug for found in hooks.call.derived_tables() for slug in found or ()}


def _derive(ctx: _Context, rows: list[dict[str, Any]], befores: list[dict[str, Any] | None]) -> None:
    """The ``derive`` hooks fill derived fields in place; their refusals (by row index) are merged."""
    errors: dict[int, dict[str, str]] = {}
    for found in hooks.call.derive(ctx=ctx, rows=rows, befores=befores):
        if found:
            _merge_errors(errors, found)
    if errors:
        raise _invalid(errors)


def _after(ctx: _Context, touched: list[dict[str, Any]]) -> None:
    if touched:
        hooks.call.after_write(ctx=ctx, touched=touched)


def _invalid(errors: dict[int, dict[str, str]]) -> RecordInvalid:
    if list(errors) == [0]:
        return RecordInvalid(errors[0])
    return RecordInvalid(rows=errors)


# --- update ------------------------------------------------------------------------------------------------


def new_changeset() -> str:
    """A change-set id for ``update_many(..., changeset=)``."""
    return uuid.uuid4().hex


def update(
    slug: str, record_id: int, values: Mapping[str, Any], actor: Actor, *, expected_version: int | None
) -> Saved:
    """Change some fields of one record. ``expected_version`` is the ``row_version`` the actor's values
    were based on; if the record changed since, StaleRecord is raised and nothing applied. Only jobs that
    own their data pass None."""
    return update_many(slug, [(record_id, values, expected_version)], actor)[0]


@_batch
def update_many(
    slug: str,
    changes: Sequence[tuple[int, Mapping[str, Any], int | None]],
    actor: Actor,
    *,
    changeset: str | None = None,
) -> list[Saved]:
    """Updates of many records, all or none (a stale record refuses the batch with StaleRecord). The same
    record named twice gets both changes, the later winning. One UPDATE statement per set of changed
    columns, executed for all its records at once. ``changeset`` (a ``new_changeset()``) puts the history
    of several batches into one change set (a bulk edit committed batch by batch)."""
    ctx = _context(slug, actor, "edit")
    if changeset is not None:
        ctx.changeset = changeset
    merged: dict[int, tuple[dict[str, Any], int | None]] = {}
    for pk, values, expected in changes:
        if pk in merged:
            before, first_expected = merged[pk]
            merged[pk] = ({**before, **values}, first_expected)
        else:
            merged[pk] = (values, expected)  # type: ignore[assignment]  (read, never changed)
    pks = list(merged)
    parse = _Parser(ctx, creating=False)
    parsed_rows: list[dict[str, Any]] = []
    errors: dict[int, dict[str, str]] = {}
    for i, pk in enumerate(pks):
        parsed, row_errors = parse(merged[pk][0])
        parsed_rows.append(parsed)
        if row_errors:
            errors[i] = row_errors
    if errors:
        raise _invalid(errors)

    expected = {pk: merged[pk][1] for pk in pks}
    return _transaction(lambda: _apply(ctx, pks, parsed_rows, expected), ctx)


def _apply(
    ctx: _Context, pks: list[int], parsed_rows: list[dict[str, Any]], expected: Mapping[int, int | None]
) -> list[Saved]:
    """Write parsed changes to records (inside the caller's transaction): optimistic lock, derived fields,
    one UPDATE per set of changed columns, history, and what depends on the records elsewhere."""
    specs = {f.name: f for f in ctx.entity.live_fields}
    # Rows are locked while read when the write depends on more than their versions: a job's change (no
    # version to hold it to) or a table whose rules read and write other rows. Otherwise the UPDATE's own
    # version condition refuses a record saved in between, with the same StaleRecord, without a lock on
    # every row of a big batch.
    tbl = ctx.table
    bulk = _copyable(len(pks)) and all(_driver_takes(tbl.c[name]) for name in specs)
    derived = ctx.entity.slug in _derived_tables()
    lock = not bulk or len(expected) < len(pks) or any(expected.get(pk) is None for pk in pks) or derived
    if bulk:
        _refresh_statistics(tbl, len(pks))
    current = _load(ctx, pks, lock=lock, action="edit")
    full_rows: list[dict[str, Any]] = []
    for pk, parsed in zip(pks, parsed_rows, strict=True):
        row = current.get(pk)
        if row is None:
            raise RecordNotFound(_("Record %(id)s does not exist.", id=pk))
        if expected.get(pk) is not None and row["row_version"] != expected[pk]:
            raise _stale(ctx, row)
        full_rows.append({**row, **parsed})
    _derive(ctx, full_rows, [current[pk] for pk in pks])
    # Stored forms compared as their type compares them: an untouched value retyped (``1 234,50``,
    # another time zone) is no change, and a save that changes nothing writes nothing. Most types compare
    # by their JSON form, which history stores too: it is computed once for both.
    fields = {
        name: (
            name,
            spec.id,
            _json_of(spec),
            None if type(ftype).same is FieldType.same else ftype.same,
            spec,
        )
        for name, spec in specs.items()
        for ftype in (REGISTRY[spec.type],)
    }
    diffs: list[dict[str, Any]] = []
    facts: list[list[list[Any]]] = []  # [field id, old, new] per changed field, in the columns' order
    # Without derive hooks only the given fields can differ from the stored row: only those are compared.
    # Either way in the stored row's (the columns') order, worked out once per set of names.
    compared: dict[tuple[str, ...], list[tuple[str, int, Any, Any, FieldSpec]]] = {}
    for pk, full, parsed in zip(pks, full_rows, parsed_rows, strict=True):
        stored = current[pk]
        diff = {}
        changed_facts = []
        given = tuple(full) if derived else tuple(parsed)
        entries = compared.get(given)
        if entries is None:
            entries = compared[given] = [fields[n] for n in stored if n in given and n in fields]
        for n, fid, to_json, is_same, spec in entries:
            v = full[n]
            old = stored[n]
            if v is old:  # an untouched value is the stored object itself
                continue
            if is_same is not None:
                if is_same(old, v, spec):
                    continue
                old_json, new_json = (old, v) if to_json is None else (to_json(old, spec), to_json(v, spec))
            elif to_json is None:
                if old == v:
                    continue
                old_json, new_json = old, v
            else:
                old_json, new_json = to_json(old, spec), to_json(v, spec)
                if old_json == new_json:
                    continue
            diff[n] = v
            changed_facts.append([fid, old_json, new_json])
        diffs.append(diff)
        facts.append(changed_facts)
    check = _check_references_and_unique(ctx, diffs, pks)
    _merge_errors(check, _check_records(ctx, full_rows, diffs))
    if check:
        raise _invalid(check)
    # One statement per set of columns written: the fields given with the record, unchanged ones at their
    # stored value, so that a batch whose records name the same fields is one statement, however their
    # changes differ. A group holds (id, version, values in the names' order).
    groups: dict[tuple[str, ...], list[tuple[int, int, list[Any]]]] = {}
    saved: list[Saved] = []
    written: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, ...]] = {}
    for pk, diff, parsed, changed_facts in zip(pks, diffs, parsed_rows, facts, strict=True):
        stored = current[pk]
        version = stored["row_version"]
        if not diff:
            saved.append(Saved(pk, version))
            continue
        given = (tuple(diff), tuple(parsed))
        names = written.get(given)
        if names is None:
            names = written[given] = tuple(sorted(diff.keys() | (parsed.keys() & specs.keys())))
        values = [diff[name] if name in diff else stored[name] for name in names]
        groups.setdefault(names, []).append((pk, version, values))
        ctx.entry(pk, "update", changed_facts)
        saved.append(Saved(pk, version + 1))
    for names, group in groups.items():
        if bulk:
            _bulk_update(ctx, names, group, current)
        else:
            _update_each(ctx, names, group, current)
    changed = [pk for pk, diff in zip(pks, diffs, strict=True) if diff]
    _after(ctx, [current[pk] for pk in changed] + [f for f, d in zip(full_rows, diffs, strict=True) if d])
    ctx.flush_history()
    return saved


def _update_each(
    ctx: _Context,
    names: tuple[str, ...],
    group: list[tuple[int, int, list[Any]]],
    current: dict[int, dict[str, Any]],
) -> None:
    """One UPDATE ... WHERE id and version per record, sent as an executemany."""
    tbl = ctx.table
    statement = (
        sa.update(tbl)
        .where(
            tbl.c.id == bindparam("_id"),
            tbl.c.row_version == bindparam("_version"),
            tbl.c.deleted_at.is_(None),
        )
        .values(
            {
                **{name: bindparam(f"_v_{name}") for name in names},
                **_stamps(ctx),
                "row_version": bindparam("_new_version"),
            }
        )
    )
    keys = ("_id", "_version", "_new_version", *(f"_v_{name}" for name in names))
    if db.session.get_bind().dialect.name == "sqlite":
        run = _sqlite_executemany(statement, keys)
    else:

        def run(chunk: Sequence[Sequence[Any]]) -> int:
            return db.session.execute(statement, [dict(zip(keys, p, strict=True)) for p in chunk]).rowcount

    for chunk in _chunks(group, BATCH):
        done = run([(pk, version, version + 1, *values) for pk, version, values in chunk])
        if done != len(chunk):
            # Someone changed one of them after we read it (the locks make this rare).
            now = _load(ctx, [pk for pk, _, _ in chunk], lock=False, action="edit")
            moved = next(
                (pk for pk, version, _ in chunk if now.get(pk, {}).get("row_version") != version + 1),
                chunk[0][0],  # saved in between to the very version this write gave the rest: not told apart
            )
            raise _stale(ctx, now.get(moved) or current[moved])


def _sqlite_executemany(statement: Any, keys: Sequence[str]) -> Callable[[Sequence[Sequence[Any]]], int]:
    """A runner of ``statement`` for many parameter sets at once, straight to SQLite's driver, compiled
    once: each value converted by its column type's bind processor, as SQLAlchemy would, without the
    per-set work SQLAlchemy's executemany does besides. A parameter set is a sequence of values named by
    ``keys``; the statement's other values (a moment) are its own, converted once. The runner returns the
    count of rows changed."""
    dialect = db.session.get_bind().dialect
    compiled = statement.compile(dialect=dialect)
    binds = [compiled.binds[name] for name in compiled.positiontup]
    converters = [bind.type.dialect_impl(dialect).bind_processor(dialect) for bind in binds]
    given = {key: i for i, key in enumerate(keys)}
    fixed: list[Any] = []  # after the given values in each set, at the positions below
    positions = []
    converts = []
    for i, (bind, convert) in enumerate(zip(binds, converters, strict=True)):
        if bind.key in given:
            positions.append(given[bind.key])
            if convert is not None:
                converts.append((i, convert))
        else:
            positions.append(len(keys) + len(fixed))
            fixed.append(convert(bind.effective_value) if convert else bind.effective_value)
    pick = operator.itemgetter(*positions)
    single = len(binds) == 1  # itemgetter of one position gives the value itself, not a tuple
    extra = tuple(fixed)

    def run(params: Sequence[Sequence[Any]]) -> int:
        rows = []
        for p in params:
            picked = pick((*p, *extra) if extra else p)
            if converts:
                values = [picked] if single else list(picked)
                for i, convert in converts:
                    values[i] = convert(values[i])
                picked = tuple(values)
            elif single:
                picked = (picked,)
            rows.append(picked)
        return db.session.connection().exec_driver_sql(compiled.string, rows).rowcount

    return run


def _bulk_update(
    ctx: _Context,
    names: tuple[str, ...],
    group: list[tuple[int, int, list[Any]]],
    current: dict[int, dict[str, Any]],
) -> None:
    """PostgreSQL: one UPDATE for the whole group, its values as one array per column (``unnest``), instead
    of a statement per record (columns the driver takes as they are); the ids it wrote tell a record saved
    in between."""
    tbl = ctx.table
    dialect = db.session.get_bind().dialect
    columns = [tbl.c[name] for name in names]

    def quoted(name: str) -> str:
        return f'"{ddl.check_identifier(name)}"'

    arrays = ", ".join(
        [
            "CAST(:_id AS INTEGER[])",
            "CAST(:_version AS INTEGER[])",
            *(f"CAST(:v{i} AS {c.type.compile(dialect)}[])" for i, c in enumerate(columns)),
        ]
    )
    aliases = ", ".join(["_id", "_version", *(f"v{i}" for i in range(len(columns)))])
    stamped = [f"{quoted(name)} = :_at" for name in _stamps(ctx)]
    sets = ", ".join(
        [
            *(f"{quoted(c.name)} = v.v{i}" for i, c in enumerate(columns)),
            *stamped,
            "row_version = v._version + 1",
        ]
    )
    # The range of the ids lets PostgreSQL read only that part of the primary key (a batch's ids are
    # mostly adjacent), not the whole table.
    statement = sa.text(
        f"UPDATE {quoted(tbl.name)} AS t SET {sets} FROM unnest({arrays}) AS v({aliases}) "  # noqa: S608 (generated names)
        "WHERE t.id BETWEEN :lo AND :hi AND t.id = v._id AND t.row_version = v._version "
        "AND t.deleted_at IS NULL RETURNING t.id"
    )
    ids = [pk for pk, _version, _values in group]
    params = {
        "_id": _array_text(ids),
        "_version": _array_text([version for _pk, version, _values in group]),
        "lo": min(ids),
        "hi": max(ids),
        "_at": ctx.at,
    }
    params.update({f"v{i}": _array_text([values[i] for _pk, _v, values in group]) for i in range(len(names))})
    written = set(db.session.execute(statement, params).scalars().all())
    missed = [pk for pk in ids if pk not in written]
    if missed:  # saved by someone between our read and this write
        now = _load(ctx, missed[:1], lock=False, action="edit")
        raise _stale(ctx, now.get(missed[0]) or current[missed[0]])


def _array_text(values: Sequence[Any]) -> str:
    """A PostgreSQL array in its text form, to CAST to the column's array type: of values the driver takes
    as they are (numbers, text, dates, date-times, booleans), each written as its ``str``. psycopg writes a
    list value by value in Python, at three times the cost, and PostgreSQL then estimates how many rows
    ``unnest`` gives all the same."""
    if all(type(v) is int for v in values):
        return "{" + ",".join(map(str, values)) + "}"
    return (
        "{"
        + ",".join(
            "NULL" if v is None else '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
            for v in values
        )
        + "}"
    )


def cascade_update(slug: str, changes: Mapping[int, Mapping[str, Any]], cause: _Context) -> list[Saved]:
    """Apply changes that follow from ``cause`` (stored values, already parsed) to records of another
    table, in the same transaction and change set, whatever the actor's rights on that table: e.g. a
    deal's amount when someone edits its lines."""
    schema = runtime.current()
    entity = schema.entity(slug)
    rights = grants(Actor.system_job(), entity, schema.access)
    ctx = _Context(
        entity,
        schema.classes[slug].__table__,
        rights,
        cause.actor,
        changeset=cause.changeset,
        at=cause.at,
        links_unchecked=True,
        reader=Actor.system_job(),
    )
    pks = list(changes)
    return _apply(ctx, pks, [dict(changes[pk]) for pk in pks], {})


def store_calendar_values(slug: str, values: Mapping[int, Mapping[str, Any]], reason: str) -> int:
    """Store values that follow from the calendar or from other records, not from an edit of these (an
    invoice's days overdue, recounted nightly; a company's last activity): no history line, no new version,
    no hooks, as such a value was never anyone's change of this record. Every
    row gives the same fields. Only Python code calls it, for a named ``reason``; returns the rows written."""
    if not reason:
        raise ValueError("store_calendar_values needs a reason")
    if not values:
        return 0
    table = runtime.current().classes[slug].__table__
    names = sorted(next(iter(values.values())))
    if any(sorted(row) != names for row in values.values()) or any(n not in table.c for n in names):
        raise ValueError(f"store_calendar_values: every row gives the same columns of {slug}")
    statement = (
        sa.update(table)
        .where(table.c.id == bindparam("_id"))
        .values({name: bindparam(f"_value_{name}") for name in names})
    )
    params = [{"_id": pk, **{f"_value_{n}": row[n] for n in names}} for pk, row in values.items()]
    db.session.execute(statement, params)
    return len(params)


def _load(
    ctx: _Context, pks: list[int], *, lock: bool, action: str = "read", deleted: bool = False
) -> dict[int, dict[str, Any]]:
    """Current rows by id that ``action`` may reach (or those in the recycle bin), values keyed by field
    name; a row out of the actor's scope is not there, as if it did not exist."""
    rows: dict[int, dict[str, Any]] = {}
    try:
        reach = TableQuery(ctx.entity.slug, ctx.reader or ctx.actor, action)
    except QueryError:
        return rows
    condition = reach.recycle_bin_condition() if deleted else reach.condition()
    tbl = ctx.table
    keys = [c.key for c in tbl.c]
    postgres = db.session.get_bind().dialect.name == "postgresql"
    if not postgres:
        # One statement for every chunk, its ids one expanding parameter (a list given to ``in_`` is looked
        # through value by value each time the statement is built).
        by_ids = select(tbl).where(tbl.c.id.in_(bindparam("ids", expanding=True)), condition)
        if lock:
            by_ids = by_ids.with_for_update(of=tbl)
    for chunk in _chunks(sorted(set(pks)), BATCH * 10 if postgres else BATCH):
        if postgres:
            # The ids as one array, written as text (psycopg would write a list value by value in Python),
            # joined, and their range: a batch's ids are mostly adjacent, and with only ``id = ANY(array)``
            # the planner reads the whole table for a big array.
            array = sa.cast(sa.literal(_array_text([int(pk) for pk in chunk])), ARRAY(sa.Integer))
            given = sa.func.unnest(array).table_valued("id").render_derived()
            query = (
                select(tbl)
                .join(given, given.c.id == tbl.c.id)
                .where(tbl.c.id.between(chunk[0], chunk[-1]), condition)
            )
            if lock:
                query = query.with_for_update(of=tbl)
            found = db.session.execute(query).all()
        else:
            found = db.session.execute(by_ids, {"ids": chunk}).all()
        for row in found:
            values = dict(zip(keys, row, strict=True))
            rows[values["id"]] = values
    return rows


def _stale(ctx: _Context, row: dict[str, Any]) -> StaleRecord:
    shown = {
        f.name: REGISTRY[f.type].to_text(row.get(f.name), f)
        for f in ctx.entity.live_fields
        if ctx.grants.mode(f.name) != "hidden"
    }
    last = db.session.execute(
        select(RecordChange.user_id, RecordChange.at)
        .where(RecordChange.entity_id == ctx.entity.id, RecordChange.record_id == row["id"])
        .order_by(RecordChange.id.desc())
        .limit(1)
    ).first()
    by = runtime.user_label(last.user_id) if last and last.user_id else ""
    return StaleRecord(row["id"], row["row_version"], shown, by, last.at if last else None)


# --- delete, restore, purge --------------------------------------------------------------------------------


def delete(slug: str, record_id: int, actor: Actor, *, expected_version: int | None = None) -> None:
    """Move a record to the recycle bin (its data and history stay until the purge)."""
    delete_many(
        slug, [record_id], actor, expected_versions=None if expected_version is None else [expected_version]
    )


def delete_many(
    slug: str,
    record_ids: Sequence[int],
    actor: Actor,
    *,
    expected_versions: Sequence[int] | None = None,
    changeset: str | None = None,
) -> int:
    ctx = _context(slug, actor, "delete")
    if changeset is not None:
        ctx.changeset = changeset

    def work() -> int:
        current = _load(ctx, list(record_ids), lock=True, action="delete")
        for i, pk in enumerate(record_ids):
            row = current.get(pk)
            if row is None:
                raise RecordNotFound(_("Record %(id)s does not exist.", id=pk))
            if expected_versions is not None and row["row_version"] != expected_versions[i]:
                raise _stale(ctx, row)
        _mark(ctx, current, deleted=True)
        return len(current)

    return _transaction(work)


def restore(slug: str, record_id: int, actor: Actor) -> None:
    """Bring a record back from the recycle bin, with its history. Admins may restore any record; others
    the records they own, if they may delete in the table."""
    ctx = _context(slug, actor, None)
    if not ctx.grants.is_admin and not ctx.grants.can("delete"):
        raise AccessDenied(_("Only an administrator or the record's owner may restore it."))

    def work() -> None:
        row = _load(ctx, [record_id], lock=True, deleted=True).get(record_id)
        if row is None:
            raise RecordNotFound(_("Record %(id)s is not in the recycle bin.", id=record_id))
        if not can_restore(ctx.grants, actor, row.get("owner_id")):
            raise AccessDenied(_("Only an administrator or the record's owner may restore it."))
        _mark(ctx, {record_id: row}, deleted=False)

    _transaction(work)


def can_restore(rights: Grants, actor: Actor, owner_id: int | None) -> bool:
    return rights.is_admin or (owner_id is not None and owner_id == actor.user_id and rights.can("delete"))


def _mark(ctx: _Context, rows: dict[int, dict[str, Any]], *, deleted: bool) -> None:
    if not rows:
        return
    tbl = ctx.table
    statement = (
        sa.update(tbl)
        .where(tbl.c.id == bindparam("_id"), tbl.c.row_version == bindparam("_version"))
        .values(deleted_at=ctx.at if deleted else None, row_version=bindparam("_new_version"), **_stamps(ctx))
    )
    params = [
        {"_id": pk, "_version": row["row_version"], "_new_version": row["row_version"] + 1}
        for pk, row in rows.items()
    ]
    for chunk in _chunks(params, BATCH):
        if db.session.execute(statement, chunk).rowcount != len(chunk):
            raise RecordError(_("Someone else changed these records at the same time; nothing was changed."))
    for pk in rows:
        ctx.entry(pk, "delete" if deleted else "restore")
    _after(ctx, list(rows.values()))
    ctx.flush_history()


def purge_expired(older_than: dt.timedelta, *, progress: Any = None) -> int:
    """Remove for good what has been in the recycle bin longer than ``older_than``, table by table, in
    batches (each one committed). History stays, with a "purge" line."""
    schema = runtime.current()
    cutoff = utcnow() - older_than
    actor = Actor.system_job()
    total = 0
    for slug, entity in schema.entities.items():
        tbl = schema.classes[slug].__table__
        while True:
            ids = list(
                db.session.scalars(
                    select(tbl.c.id)
                    .where(tbl.c.deleted_at.is_not(None), tbl.c.deleted_at < cutoff)
                    .order_by(tbl.c.id)
                    .limit(BATCH)
                )
            )
            if not ids:
                break
            ctx = _Context(entity, tbl, grants(actor, entity, schema.access), actor)

            def work(ids: list[int] = ids, ctx: _Context = ctx) -> int:
                tbl = ctx.table
                result = db.session.execute(
                    sa.delete(tbl).where(and_(tbl.c.id.in_(ids), tbl.c.deleted_at < cutoff))
                )
                for pk in ids:
                    ctx.entry(pk, "purge")
                ctx.flush_history()
                return result.rowcount

            total += _transaction(work)
            if progress is not None:
                progress(total)
    return total


# --- a unit of work ----------------------------------------------------------------------------------------


class Work:
    """Several steps on records of one table as one change set and one transaction (``unit_of_work``):
    merging reads two records, fills one, moves links and bins the other, all or nothing."""

    def __init__(self, slug: str, actor: Actor, actions: Sequence[str]) -> None:
        self._contexts: dict[str, _Context] = {}
        self._versions: dict[int, int] = {}
        first: _Context | None = None
        for action in actions:
            ctx = _context(slug, actor, action)
            if first is not None:
                ctx.changeset, ctx.at = first.changeset, first.at
            first = first or ctx
            self._contexts[action] = ctx
        if first is None:
            raise ValueError("a unit of work needs an action")
        self._first = first

    def _ctx(self, action: str) -> _Context:
        ctx = self._contexts.get(action)
        if ctx is None:
            raise ValueError(f"this unit of work was not opened for {action!r}")
        return ctx

    @property
    def entity(self) -> EntitySpec:
        return self._first.entity

    @property
    def rights(self) -> Grants:
        return self._first.grants

    def load(self, ids: Sequence[int], action: str = "edit") -> dict[int, dict[str, Any]]:
        """The current rows (locked until the end) that ``action`` may reach, values by field name."""
        rows = _load(self._ctx(action), list(ids), lock=True, action=action)
        self._versions.update({pk: row["row_version"] for pk, row in rows.items()})
        return rows

    def parse(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """Raw values -> (stored values, errors by field), the actor's field rights included."""
        return _Parser(self._ctx("edit"), creating=False)(values)

    def note(self, record_id: int, action: str, note: Any, *, on: str = "edit") -> None:
        """A line of the record's history for ``action`` (e.g. "merge") with ``note``."""
        self._ctx(on).entry(record_id, action, note=note)

    def update(self, record_id: int, parsed: Mapping[str, Any], expected_version: int | None) -> Saved:
        """Write parsed values to one record (checks, derived fields, history); a change of nothing still
        writes the history lines noted, and counts as a new version when a line was noted."""
        ctx = self._ctx("edit")
        noted = any(row["record_id"] == record_id for row in ctx.history)
        saved = _apply(ctx, [record_id], [dict(parsed)], {record_id: expected_version})[0]
        if noted and saved.version == self._versions.get(record_id):
            # Only noted lines, no value changed: the record still gets a new version.
            table = ctx.table
            db.session.execute(
                sa.update(table)
                .where(table.c.id == record_id)
                .values(row_version=table.c.row_version + 1, **_stamps(ctx))
            )
            saved = Saved(record_id, saved.version + 1)
        return saved

    def cascade_update(self, slug: str, changes: Mapping[int, Mapping[str, Any]]) -> list[Saved]:
        """Changes that follow, to records of any table, in this change set (``records.cascade_update``)."""
        return cascade_update(slug, changes, self._first)

    def delete(self, ids: Sequence[int]) -> int:
        """Move records the actor may delete to the recycle bin; a missing one refuses the whole work."""
        ctx = self._ctx("delete")
        current = _load(ctx, list(ids), lock=True, action="delete")
        for pk in ids:
            if pk not in current:
                raise RecordNotFound(_("Record %(id)s does not exist.", id=pk))
        _mark(ctx, current, deleted=True)
        return len(current)


@contextlib.contextmanager
def unit_of_work(slug: str, actor: Actor, *actions: str) -> Iterator[Work]:
    """A ``Work`` on ``slug`` for ``actions`` (each one checked now), committed once at the end of the
    block or rolled back entirely; database refusals become the write path's messages."""
    work = Work(slug, actor, actions or ("edit",))
    try:
        with atomic():
            yield work
    except IntegrityError as exc:
        raise RecordError(
            _("Not saved: another record already has this value, or a linked record is missing.")
        ) from exc
    except OperationalError as exc:
        raise RecordError(_("Not saved: the database is busy. Please try again.")) from exc
