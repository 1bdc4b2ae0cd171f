"""The read door: every read of a table's records, for one actor and one action.

``TableQuery(slug, actor, action)`` is an immutable builder. Whatever a caller asks, the actor's row scope
and the recycle-bin exclusion are applied inside (``access.row_filter``), and fields hidden from the actor
do not exist here: they cannot be selected, filtered, sorted or searched, and asking for one is the same
error as asking for a field that does not exist. Pages are keyset pages after an opaque cursor (HMAC-signed
with the app's ``SECRET_KEY`` and bound to the query), counts are asked for apart from pages, link and user
fields come back with their labels through outer joins (the label of a record the actor may not read is
not disclosed), and ``stream`` reads everything in constant memory::

    query = TableQuery("deals", actor).where({"field": "amount", "op": "gt", "value": "1000"})
    page = query.order_by("-amount", "title").page(100)          # Page(rows, next_cursor)
    more = query.order_by("-amount", "title").page(100, after=page.next_cursor)
    query.count()                                                  # Count(value, exact)
    for row in query.stream(1000): ...
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from flask import current_app
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    BigInteger,
    Integer,
    Numeric,
    Select,
    and_,
    case,
    distinct,
    false,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.sql.elements import ColumnElement

from app.extensions import db
from custom_fields import buckets, runtime
from custom_fields.access import Actor, Grants, grants, row_filter
from custom_fields.spec import EntitySpec, FieldSpec
from custom_fields.types import OPERATORS, REGISTRY, FieldType, FieldValueError

#: Rows a page may hold, and how many it holds unless asked.
MAX_PAGE = 500
DEFAULT_PAGE = 100
#: Rows a stream reads per statement, at most.
MAX_BATCH = 10_000
#: Counts are exact up to here; above it they are estimated (and say so).
COUNT_LIMIT = 10_000
#: How far filter groups may nest, and how many conditions a filter may hold.
MAX_DEPTH = 4
MAX_CONDITIONS = 50
MAX_SORT = 6
MAX_SEARCH = 100
#: How far into the typed text the quick search looks for its words.
MAX_SEARCH_SCAN = 10_000
MAX_CURSOR = 40_000
#: Entries the schema's memo keeps (per actor and query shape) before it starts again.
MEMO_LIMIT = 5_000
#: ``readable_ids`` asks for this many ids per statement.
ID_CHUNK = 500
#: What only the layer acts for: actions that reach rows (``access.SCOPED_ACTIONS``).
ACTIONS = ("read", "edit", "delete")
#: What ``aggregate`` may compute over a column.
AGGREGATES: dict[str, Any] = {
    "count": func.count,
    "sum": func.sum,
    "min": func.min,
    "max": func.max,
    "avg": func.avg,
}
#: Columns every table has besides its fields (shown when no field of that name exists).
RECORD_COLUMNS: dict[str, tuple[str, Any]] = {
    "owner_id": ("user", _l("Owner")),
    "created_at": ("datetime", _l("Created")),
    "updated_at": ("datetime", _l("Updated")),
}


class QueryError(ValueError):
    """A request the layer refuses; the message is shown to the user as is. ``status`` is the HTTP answer."""

    status = 400


class TableNotFound(QueryError):  # noqa: N818 (refusals, not failures)
    status = 404


class QueryDenied(QueryError):  # noqa: N818 (refusals, not failures)
    status = 403


@dataclass(frozen=True)
class Column:
    """A column the actor may see: a field, or a record column (``id``, the owner ...)."""

    spec: FieldSpec
    record: bool = False
    editable: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def type(self) -> str:
        return self.spec.type

    @property
    def ftype(self) -> FieldType:
        return REGISTRY[self.spec.type]

    @property
    def sortable(self) -> bool:
        return self.ftype.sortable

    @property
    def reference(self) -> str | None:
        return self.ftype.reference

    @property
    def operators(self) -> tuple[str, ...]:
        return self.ftype.operators

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": str(self.spec.label),
            "type": self.type,
            "record": self.record,
            "editable": self.editable,
            "sortable": self.sortable,
            "reference": self.reference,
            "operators": list(self.operators),
            "hints": REGISTRY[self.type].grid_hints(self.spec),
        }


@dataclass(frozen=True)
class Page:
    """Rows (plain dicts of stored values by name, with ``_labels`` for link and user fields: the label,
    or None when it is not disclosed or empty: show ``#id``) and the cursor of the next page (None: last)."""

    rows: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True)
class Count:
    """How many rows match: exact, or (``exact`` False) estimated above ``COUNT_LIMIT`` — PostgreSQL's
    planner estimate (never below ``COUNT_LIMIT + 1``), and on SQLite ``COUNT_LIMIT`` meaning "more"."""

    value: int
    exact: bool


def _unknown_field(name: Any) -> QueryError:
    return QueryError(_("Unknown field: %(name)s.", name=_shown_text(name)))


def _shown_text(value: Any, limit: int = 60) -> str:
    """Text from a request, safe to put into a message (cut short, no lone surrogates)."""
    text = str(value)[:limit]
    return text.encode("utf-8", "replace").decode("utf-8")


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_search(raw: Any) -> str:
    """Quick-search text as searched: no control characters, spaces collapsed (none at either end), at most
    ``MAX_SEARCH`` characters, found among the first ``MAX_SEARCH_SCAN`` typed (blanks before the words
    do not count against the length)."""
    if not isinstance(raw, str):
        return ""
    kept: list[str] = []
    gap = False
    for ch in raw[:MAX_SEARCH_SCAN]:
        if ch.isspace() or unicodedata.category(ch).startswith("C"):
            gap = bool(kept)
            continue
        if gap:
            if len(kept) + 1 >= MAX_SEARCH:
                break
            kept.append(" ")
            gap = False
        kept.append(ch)
        if len(kept) >= MAX_SEARCH:
            break
    return "".join(kept)


def user_text(first_name: str | None, last_name: str | None, username: str | None) -> str | None:
    """A user's label as ``runtime.user_label`` shows it."""
    if username is None:
        return None
    name = " ".join(p for p in (first_name, last_name) if p)
    return f"{name} ({username})" if name else username


class _Reader(NamedTuple):
    """How to read a result row: the names of its first ``width`` values, how many sort keys follow, and
    (name, position of the value, read) for labels."""

    names: tuple[str, ...]
    width: int
    nkeys: int
    labels: tuple[tuple[str, int, Any], ...]
    #: Where the row's version and "the actor may edit it" are (``with_versions``), or None.
    meta: int | None = None


class TableQuery:
    """What ``actor`` may ``action`` ("read", "edit", "delete") in the table ``slug``: an immutable builder
    (every method returns a new query). Raises ``TableNotFound`` for an unknown or archived table and
    ``QueryDenied`` when the actor may not do ``action`` in it."""

    __slots__ = (
        "_action",
        "_actor",
        "_columns",
        "_entity",
        "_filters",
        "_model",
        "_table",
        "_rights",
        "_schema",
        "_search",
        "_selected",
        "_sort",
        "_versions",
    )

    def __init__(self, table: str, actor: Actor, action: str = "read") -> None:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        schema = runtime.current()
        entity = schema.entity(table) if isinstance(table, str) else None
        if entity is None or entity.archived:
            raise TableNotFound(_("No such table."))
        rights = _memo(schema, ("grants", entity.slug, actor), lambda: grants(actor, entity, schema.access))
        if not rights.can(action):
            raise QueryDenied(_("You may not do this in this table."))
        self._schema = schema
        self._entity: EntitySpec = entity
        self._actor = actor
        self._action = action
        self._rights: Grants = rights
        self._model = schema.classes[entity.slug]
        self._table = self._model.__table__
        self._columns: dict[str, Column] = _memo(
            schema, ("columns", entity.slug, actor), lambda: _visible_columns(entity, rights, self._model)
        )
        self._selected: tuple[str, ...] | None = None
        self._filters: tuple[tuple[str, ColumnElement], ...] = ()
        self._search = ""
        self._sort: tuple[tuple[str, bool], ...] = ()
        self._versions = False

    def _copy(self, **changes: Any) -> TableQuery:
        other = object.__new__(TableQuery)
        for name in self.__slots__:
            object.__setattr__(other, name, changes.get(name, getattr(self, name)))
        return other

    # --- what the actor sees ---------------------------------------------------------------------------

    @property
    def entity(self) -> EntitySpec:
        return self._entity

    @property
    def rights(self) -> Grants:
        return self._rights

    @property
    def model(self) -> type:
        return self._model

    @property
    def columns(self) -> tuple[Column, ...]:
        """The columns rows come back with: ``id`` first, then the selected (default: every visible)
        column."""
        if self._selected is None:
            return tuple(self._columns.values())
        return (self._columns["id"], *(self._columns[n] for n in self._selected if n != "id"))

    def columns_json(self) -> list[dict[str, Any]]:
        """``columns`` as JSON, in the request's language: built once per actor, selection and language and
        kept with the schema (every page of the grid sends them), so the caller must not change it."""
        key = ("columns_json", self._entity.slug, self._actor, self._selected, str(get_locale()))
        return _memo(self._schema, key, lambda: [column.as_json() for column in self.columns])

    @property
    def all_columns(self) -> tuple[Column, ...]:
        """Every column the actor may see, filter and sort by (selected or not)."""
        return tuple(self._columns.values())

    def column(self, name: Any) -> Column:
        """A visible column by name; an unknown and a hidden field are the same error."""
        found = self._columns.get(name) if isinstance(name, str) else None
        if found is None:
            raise _unknown_field(name)
        return found

    # --- building ----------------------------------------------------------------------------------------

    def fields(self, *names: str) -> TableQuery:
        """Only these columns in the rows (``id`` always); any visible column may still filter and sort."""
        for name in names:
            self.column(name)
        return self._copy(_selected=tuple(dict.fromkeys(names)))

    def with_versions(self) -> TableQuery:
        """Rows also carry ``_version`` (their ``row_version``) and ``_editable`` (whether the actor may edit
        the row: within its edit scope), read in the same statement as the values: a save naming that
        version is refused if anyone changed the row after it was shown."""
        return self._copy(_versions=True)

    def where(self, spec: Any) -> TableQuery:
        """Add a filter (ANDed with those given before), as plain data::

            {"and": [{"field": "name", "op": "ct", "value": "x"}, {"or": [...]}]}

        A list means "and". A condition whose value is empty is left out (as the list screens do)."""
        if spec is None or spec == {} or spec == []:
            return self
        budget = [MAX_CONDITIONS]
        condition = self._compile(spec, 1, budget)
        if condition is None:
            return self
        canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
        return self._copy(_filters=(*self._filters, (canonical, condition)))

    def only(self, ids: Iterable[int]) -> TableQuery:
        """Only the rows among ``ids`` (a live screen reading the records it was told changed)."""
        wanted = sorted({int(i) for i in ids})
        key = "only:" + ",".join(map(str, wanted))
        return self._copy(_filters=(*self._filters, (key, self._table.c.id.in_(wanted))))

    def search(self, text: Any) -> TableQuery:
        """Quick search: rows where a visible, searchable field matches ``text`` as its type searches."""
        return self._copy(_search=clean_search(text))

    def order_by(self, *keys: str) -> TableQuery:
        """Sort by sortable visible columns, ``-name`` for descending; always ends in ``id``. Empty values
        sort as the largest (last ascending, first descending)."""
        sort: list[tuple[str, bool]] = []
        for key in keys:
            if not isinstance(key, str):
                raise _unknown_field(key)
            desc = key.startswith("-")
            name = key[1:] if desc else key
            column = self.column(name)
            if not column.sortable:
                raise QueryError(_("The field %(field)s cannot be sorted.", field=column.spec.label))
            if name in {n for n, _d in sort}:
                continue
            sort.append((name, desc))
            if name == "id":
                break
        if len(sort) > MAX_SORT:
            raise QueryError(_("Sort by at most %(n)d fields.", n=MAX_SORT))
        return self._copy(_sort=tuple(sort))

    # --- conditions ---------------------------------------------------------------------------------------

    def _attr(self, name: str) -> Any:
        return self._table.c[name]

    def _compile(self, node: Any, depth: int, budget: list[int]) -> ColumnElement | None:
        if depth > MAX_DEPTH:
            raise QueryError(_("Filter groups may nest at most %(n)d levels.", n=MAX_DEPTH))
        if isinstance(node, list):
            node = {"and": node}
        if not isinstance(node, Mapping):
            raise QueryError(_("A filter is an object with field, op and value, or an and/or group."))
        groups = [k for k in ("and", "or") if k in node]
        if groups:
            if len(node) != 1 or not isinstance(node[groups[0]], list):
                raise QueryError(
                    _("A filter group has one key, “and” or “or”, holding a list of conditions.")
                )
            parts = [self._compile(child, depth + 1, budget) for child in node[groups[0]]]
            parts = [p for p in parts if p is not None]
            if not parts:
                return None
            return and_(*parts) if groups[0] == "and" else or_(*parts)
        return self._leaf(node, budget)

    def _leaf(self, node: Mapping[str, Any], budget: list[int]) -> ColumnElement | None:
        budget[0] -= 1
        if budget[0] < 0:
            raise QueryError(_("A filter may have at most %(n)d conditions.", n=MAX_CONDITIONS))
        if set(node) - {"field", "op", "value"} or "field" not in node or "op" not in node:
            raise QueryError(_("A filter is an object with field, op and value, or an and/or group."))
        column = self.column(node["field"])
        spec, op = column.spec, node["op"]
        if not isinstance(op, str) or op not in column.operators:
            raise QueryError(
                _(
                    "“%(op)s” is not a filter operator for %(field)s (use one of: %(ops)s).",
                    op=_shown_text(op, 20),
                    field=spec.label,
                    ops=", ".join(column.operators),
                )
            )
        _label, build, takes_value = OPERATORS[op]
        if not takes_value:
            return build(self._attr(column.name), None)
        raw = node.get("value")
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        if isinstance(raw, list | dict) or (isinstance(raw, str) and not _storable(raw)):
            raise QueryError(_("The filter on %(field)s needs a single value.", field=spec.label))
        if isinstance(raw, float) and raw != raw:  # NaN
            raise QueryError(_("The filter on %(field)s needs a single value.", field=spec.label))
        try:
            value = REGISTRY[spec.type].filter_value(raw, spec)
        except (FieldValueError, TypeError, ValueError, ArithmeticError) as exc:
            raise QueryError(_("%(field)s: %(message)s", field=spec.label, message=str(exc))) from None
        if value is None:
            return None
        attr = self._attr(column.name)
        if isinstance(value, int) and not _holds(attr, value):
            too_large = _("The number is too large.")
            raise QueryError(_("%(field)s: %(message)s", field=spec.label, message=too_large))
        return build(attr, value)

    def _search_condition(self) -> ColumnElement | None:
        if not self._search:
            return None
        found = []
        for column in self._columns.values():
            if column.record or not column.spec.searchable:
                continue
            condition = REGISTRY[column.type].search_condition(
                self._attr(column.name), self._search, column.spec
            )
            if condition is not None:
                found.append(condition)
        return or_(*found) if found else false()

    def condition(self) -> ColumnElement:
        """The WHERE of this query: the actor's row scope for its action, not in the recycle bin, and the
        filters and quick search given."""
        parts = [row_filter(Columns(self._table), self._rights, self._action)]
        parts += [c for _key, c in self._filters]
        searched = self._search_condition()
        if searched is not None:
            parts.append(searched)
        return and_(*parts)

    def ids_statement(self) -> Select:
        """``SELECT id`` of every matching row (for "apply to all matching" and sub-selects)."""
        return select(self._table.c.id).where(self.condition())

    def rows_statement(self, ids: Iterable[int]) -> Select:
        """The whole stored rows (every column, hidden fields too: for the write path, which never shows
        them) with these ids that the action may reach; add ``.with_for_update()`` to lock them."""
        table = self._table
        return select(table).where(table.c.id.in_(sorted({int(i) for i in ids})), self.condition())

    def recycle_bin_condition(self) -> ColumnElement:
        """The WHERE of the rows in the recycle bin (for restoring and the recycle-bin screen): who may
        restore one (an administrator, or its owner with the right to delete) is the write path's
        ``records.can_restore``, checked on each row."""
        return self._table.c.deleted_at.is_not(None)

    # --- reading ------------------------------------------------------------------------------------------

    def _keys(self) -> list[tuple[Column, bool]]:
        keys = [(self._columns[n], d) for n, d in self._sort]
        if not keys or keys[-1][0].name != "id":
            keys.append((self._columns["id"], False))
        return keys

    def _select(self, keys: Sequence[tuple[Column, bool]]) -> tuple[Select, _Reader]:
        """The SELECT of rows (values, then sort keys, then what labels need) and how to read its rows,
        built once per actor and shape (it holds no value from the request: filters come after)."""
        sort = tuple((c.name, d) for c, d in keys)
        shape = ("select", self._entity.slug, self._actor, self._selected, sort, self._versions)
        return _memo(self._schema, shape, lambda: self._build_select(keys))

    def _build_select(self, keys: Sequence[tuple[Column, bool]]) -> tuple[Select, _Reader]:
        shown = [c for c in self.columns if c.name != "id"]
        items: list[Any] = [self._table.c.id, *(self._attr(c.name) for c in shown)]
        items += [self._attr(column.name) for column, _desc in keys]
        labels: list[tuple[str, int, Any]] = []
        joins: list[tuple[Any, Any]] = []
        for index, column in enumerate(shown, start=1):
            read = self._label_reader(index, column, items, joins)
            if read is not None:
                labels.append((column.name, index, read))
        meta = None
        if self._versions:
            meta = len(items)
            items += [self._table.c.row_version, self._editable_expression()]
        statement = select(*items).select_from(self._table)
        for target, on in joins:
            statement = statement.outerjoin(target, on)
        names = ("id", *(c.name for c in shown))
        return statement, _Reader(names, len(names), len(keys), tuple(labels), meta)

    def _editable_expression(self) -> ColumnElement:
        if not self._rights.can("edit"):
            return literal(False)
        editable = row_filter(Columns(self._table), self._rights, "edit")
        return case((editable, literal(True)), else_=literal(False))

    def _label_reader(self, index: int, column: Column, items: list[Any], joins: list) -> Any:
        """Adds the outer join and columns for a link's or user's label (value at ``index`` of a result
        row); returns how to read the label from a row, or None for a column without labels."""
        attr = items[index]
        if column.reference == "user":
            users = runtime.USERS.alias(f"u{index}")
            at = len(items)
            items += [users.c.first_name, users.c.last_name, users.c.username]
            joins.append((users, users.c.id == attr))
            return lambda row: user_text(row[at], row[at + 1], row[at + 2])
        if column.reference != "record":
            return None
        target_id = column.ftype.target_entity_id(column.spec)
        target = self._schema.by_id.get(target_id) if target_id is not None else None
        target_model = self._schema.model(target_id) if target is not None else None
        if target is None or target.archived or target_model is None:
            return lambda row: None
        target_rights = grants(self._actor, target, self._schema.access)
        shown = target.display_field
        if shown is None or not target_rights.can("read") or target_rights.mode(shown.name) == "hidden":
            return lambda row: None
        alias = target_model.__table__.alias(f"r{index}")
        at = len(items)
        items += [alias.c.id, alias.c[shown.name]]
        reach = row_filter(Columns(alias), target_rights, "read")
        joins.append((alias, and_(alias.c.id == attr, reach)))
        to_text = REGISTRY[shown.type].to_text

        def read(row: Sequence[Any]) -> str | None:
            if row[at] is None:  # no such row within the reader's reach
                return None
            return to_text(row[at + 1], shown) or None

        return read

    def _fetch(self, statement: Select, reader: _Reader, as_json: bool = False) -> list[tuple[dict, tuple]]:
        if as_json:
            return self._fetch_json(statement, reader)
        names, width, nkeys, labels, meta = reader
        found = []
        for row in db.session.execute(statement).all():
            item = dict(zip(names, row, strict=False))
            if labels:
                item["_labels"] = {
                    name: (read(row) if row[at] is not None else None) for name, at, read in labels
                }
            if meta is not None:
                item["_version"], item["_editable"] = row[meta], bool(row[meta + 1])
            found.append((item, tuple(row[width : width + nkeys])))
        return found

    def _fetch_json(self, statement: Select, reader: _Reader) -> list[tuple[dict, tuple]]:
        """Result rows straight to what ``json_rows`` makes of them (one pass, for the data endpoint)."""
        names, width, nkeys, labels, meta = reader
        referenced = {name for name, _at, _read in labels}
        plain: list[tuple[str, int]] = []
        converted: list[tuple[str, int, Any, FieldSpec]] = []
        for at, column in enumerate(self.columns):
            if column.name in referenced:
                continue
            if type(column.ftype).to_json is FieldType.to_json:
                plain.append((column.name, at))
            else:
                converted.append((column.name, at, column.ftype.to_json, column.spec))
        found = []
        for row in db.session.execute(statement).all():
            item = {name: row[at] for name, at in plain}
            for name, at, convert, spec in converted:
                item[name] = convert(row[at], spec)
            for name, at, read in labels:
                value = row[at]
                item[name] = None if value is None else {"id": value, "label": read(row)}
            if meta is not None:
                item["_version"], item["_editable"] = row[meta], bool(row[meta + 1])
            found.append((item, tuple(row[width : width + nkeys])))
        return found

    def _page(self, size: int, after: tuple | None, as_json: bool = False) -> tuple[list[dict], tuple | None]:
        keys = self._keys()
        statement, reader = self._select(keys)
        statement = statement.where(self.condition()).order_by(*_ordering(self._attr, keys))
        segments = [None] if after is None else _after(self._attr, keys, after)
        found: list[tuple[dict, tuple]] = []
        for segment in segments:
            chosen = statement if segment is None else statement.where(segment)
            found += self._fetch(chosen.limit(size + 1 - len(found)), reader, as_json)
            if len(found) > size:
                break
        last = found[size - 1][1] if len(found) > size else None
        return [item for item, _k in found[:size]], last

    def page(self, size: int = DEFAULT_PAGE, after: str | None = None, *, as_json: bool = False) -> Page:
        """``size`` rows (1 to ``MAX_PAGE``) after the cursor ``after`` (None: the first page); with
        ``as_json``, the rows as ``json_rows`` gives them."""
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_PAGE:
            raise QueryError(_("A page has from 1 to %(n)d rows.", n=MAX_PAGE))
        values = self._decode(after) if after else None
        rows, last = self._page(size, values, as_json)
        return Page(rows, self._encode(last) if last is not None else None)

    def batches(self, size: int = 1000) -> Iterator[list[dict[str, Any]]]:
        """Every matching row, ``size`` at a time, in this query's order (keyset batches: constant memory,
        no long transaction)."""
        size = max(1, min(int(size), MAX_BATCH))
        after: tuple | None = None
        while True:
            rows, after = self._page(size, after)
            if rows:
                yield rows
            if after is None:
                return

    def stream(self, batch: int = 1000) -> Iterator[dict[str, Any]]:
        """Every matching row, one at a time, read ``batch`` at a time."""
        for rows in self.batches(batch):
            yield from rows

    def get(self, record_id: int) -> dict[str, Any] | None:
        """One matching row by id, or None (not there, in the bin, or out of reach: all the same)."""
        keys = self._keys()
        statement, reader = self._select(keys)
        found = self._fetch(statement.where(self.condition(), self._table.c.id == int(record_id)), reader)
        return found[0][0] if found else None

    def exists(self, record_id: int) -> bool:
        query = select(self._table.c.id).where(self._table.c.id == int(record_id), self.condition())
        return db.session.scalar(query) is not None

    def readable_ids(self, ids: Iterable[int], *, in_bin: bool = False) -> set[int]:
        """Which of ``ids`` match (for a link: the records the actor may point at). ``in_bin``: which of
        them are in the recycle bin and were within the actor's reach when they went there (a live screen
        learns that a record it may have shown is gone); filters and search do not apply then."""
        wanted = sorted({int(i) for i in ids})
        condition = (
            row_filter(Columns(self._table), self._rights, self._action, in_bin=True)
            if in_bin
            else self.condition()
        )
        found: set[int] = set()
        for start in range(0, len(wanted), ID_CHUNK):
            chunk = wanted[start : start + ID_CHUNK]
            found.update(
                db.session.scalars(select(self._table.c.id).where(self._table.c.id.in_(chunk), condition))
            )
        return found

    def count(self) -> Count:
        """How many rows match: exact up to ``COUNT_LIMIT``, estimated above it."""
        limited = select(self._table.c.id).where(self.condition()).limit(COUNT_LIMIT + 1).subquery()
        counted = db.session.scalar(select(func.count()).select_from(limited)) or 0
        if counted <= COUNT_LIMIT:
            return Count(counted, True)
        if db.session.get_bind().dialect.name != "postgresql":
            return Count(COUNT_LIMIT, False)
        return Count(max(self._estimate(), COUNT_LIMIT + 1), False)

    def exact_count(self) -> int:
        """How many rows match, counted in full however many (a confirmation naming the exact number)."""
        return db.session.scalar(select(func.count()).select_from(self.ids_statement().subquery())) or 0

    def id_batches(self, size: int = 1000) -> Iterator[list[int]]:
        """The ids of every matching row in ascending order, ``size`` at a time (keyset on ``id``, read afresh
        for each batch: rows changed between batches do not move the reading on)."""
        size = max(1, min(int(size), MAX_BATCH))
        last = 0
        table = self._table
        while True:
            statement = self.ids_statement().where(table.c.id > last).order_by(table.c.id).limit(size)
            found = list(db.session.scalars(statement))
            if found:
                yield found
            if len(found) < size:
                return
            last = found[-1]

    def _estimate(self) -> int:
        statement = select(self._table.c.id).where(self.condition())
        connection = db.session.connection()
        compiled = statement.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
        plan = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params).scalar()
        if isinstance(plan, str):
            plan = json.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"])

    def cursor_after(self, record_id: int) -> str | None:
        """The cursor of the page that follows the record in this query's order (to open the list at a
        record), or None when the record does not match."""
        keys = self._keys()
        items = [self._attr(column.name) for column, _desc in keys]
        chosen = select(*items).where(self._table.c.id == int(record_id), self.condition())
        found = db.session.execute(chosen).first()
        return None if found is None else self._encode(tuple(found))

    # --- JSON ---------------------------------------------------------------------------------------------

    def to_json(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A row as the data endpoint sends it: values through their type's ``to_json``; a link or user as
        ``{"id", "label"}`` (label null: not disclosed, show ``#id``)."""
        return self.json_rows([row])[0]

    def json_rows(self, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``to_json`` of many rows (the converters are looked up once)."""
        plain: list[str] = []  # stored as sent
        converted: list[tuple[str, Any, FieldSpec]] = []
        references: list[str] = []
        for column in self.columns:
            if column.name == "id":
                continue
            if column.reference is not None:
                references.append(column.name)
            elif type(column.ftype).to_json is FieldType.to_json:
                plain.append(column.name)
            else:
                converted.append((column.name, column.ftype.to_json, column.spec))
        out = []
        for row in rows:
            item = {"id": row["id"]}
            for name in plain:
                item[name] = row[name]
            for name, convert, spec in converted:
                item[name] = convert(row[name], spec)
            if references:
                labels = row.get("_labels") or {}
                for name in references:
                    value = row[name]
                    item[name] = None if value is None else {"id": value, "label": labels.get(name)}
            if self._versions and "_version" in row:
                item["_version"], item["_editable"] = row["_version"], row["_editable"]
            out.append(item)
        return out

    # --- cursors ------------------------------------------------------------------------------------------

    def _binding(self) -> bytes:
        what = [
            self._entity.id,
            self._action,
            self._actor.user_id,
            [[n, d] for n, d in self._sort],
            [key for key, _c in self._filters],
            self._search,
        ]
        return json.dumps(what, separators=(",", ":"), ensure_ascii=True).encode()

    def _encode(self, values: tuple) -> str:
        payload = json.dumps([_encode_value(v) for v in values], separators=(",", ":"), ensure_ascii=True)
        data = payload.encode()
        return f"{_b64(data)}.{_b64(_mac(self._binding(), data))}"

    def _decode(self, cursor: Any) -> tuple:
        refused = QueryError(_("This cursor does not belong to this query: start again from the first page."))
        if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR or cursor.count(".") != 1:
            raise refused
        body, signature = cursor.split(".")
        try:
            data, mac = _unb64(body), _unb64(signature)
        except ValueError:
            raise refused from None
        if not hmac.compare_digest(mac, _mac(self._binding(), data)):
            raise refused
        keys = self._keys()
        try:
            raw = json.loads(data)
            values = tuple(_decode_value(v) for v in raw)
        except (ValueError, TypeError, KeyError):
            raise refused from None
        if len(values) != len(keys):
            raise refused
        for value, (column, _desc) in zip(values, keys, strict=True):
            expected = _python_type(self._table.c[column.name])
            if value is None and column.name == "id":
                raise refused
            # exactly the column's type: a yes/no is an int and a moment a date to isinstance
            if value is not None and expected is not None and type(value) is not expected:
                raise refused  # the column changed type since the cursor was made
        return values

    # --- reach, aggregates and labels (for the screens that group, join or show another record's label) ---

    @classmethod
    def reach(cls, table: str, actor: Actor, action: str = "read") -> ColumnElement:
        """The WHERE of the rows ``actor`` may ``action`` in ``table`` (``condition()`` of a bare query), or
        false when the table is gone or the action denied: for a screen that joins or sub-selects."""
        try:
            return cls(table, actor, action).condition()
        except QueryError:
            return false()

    def aggregate(
        self, group_by: Sequence[str], measures: Mapping[str, tuple[str, str | None]]
    ) -> list[dict[str, Any]]:
        """GROUP BY visible columns over the matching rows: one dict per group with the group's values and
        each measure, ``{"n": ("count", None), "total": ("sum", "amount")}`` (count, count_distinct, sum,
        min, max, avg; sum and avg of numbers only). A group ``"field:month"`` groups a date or date-time by
        a calendar unit its type offers (``bucket_units``), its value the bucket's first day. Ordered by the
        groups, empty values last."""
        if len(group_by) > MAX_SORT:
            raise QueryError(_("Group by at most %(n)d fields.", n=MAX_SORT))
        if not isinstance(measures, Mapping) or not 0 < len(measures) <= MAX_CONDITIONS:
            raise QueryError(_("Ask for from 1 to %(n)d measures.", n=MAX_CONDITIONS))
        dialect = db.session.get_bind().dialect.name
        groups = [self._group(entry, dialect) for entry in dict.fromkeys(group_by)]
        items: list[Any] = [expression for _name, expression, _unit in groups]
        names = [name for name, _expression, _unit in groups]
        for label, measure in measures.items():
            if not isinstance(measure, tuple | list) or len(measure) != 2 or label in names:
                raise QueryError(_("A measure is a function and a field."))
            function, name = measure
            if function == "count" and name is None:
                items.append(func.count(self._table.c.id))
            elif function == "count_distinct" and name is not None:
                items.append(func.count(distinct(self._attr(self.column(name).name))))
            elif function in AGGREGATES and name is not None:
                if function in ("sum", "avg") and not self.can_add_up(name):
                    spec = self.column(name).spec
                    raise QueryError(_("The field %(field)s cannot be added up.", field=spec.label))
                items.append(AGGREGATES[function](self._attr(self.column(name).name)))
            else:
                raise QueryError(_("A measure is a function and a field."))
            names.append(label)
        statement = select(*items).where(self.condition())
        if groups:
            expressions = [expression for _name, expression, _unit in groups]
            order = [part for e in expressions for part in (e.is_(None), e)]
            statement = statement.group_by(*expressions).order_by(*order)
        found = []
        for row in db.session.execute(statement):
            values = dict(zip(names, row, strict=True))
            for name, _expression, unit in groups:
                if unit:
                    values[name] = buckets.read(values[name], unit)
            found.append(values)
        return found

    def can_add_up(self, name: str) -> bool:
        """Whether ``aggregate`` may sum or average the visible field ``name``: numbers, not the ids a link
        or user field stores."""
        column = self.column(name)
        return column.reference is None and isinstance(self._attr(column.name).type, Numeric | Integer)

    def _group(self, entry: Any, dialect: str) -> tuple[str, Any, str | None]:
        """A group of ``aggregate``: (its name, its SQL, its calendar unit or None)."""
        if not isinstance(entry, str):
            raise _unknown_field(entry)
        name, _sep, unit = entry.partition(":")
        column = self.column(name)
        if not unit:
            return entry, self._attr(column.name), None
        if unit not in column.ftype.bucket_units:
            raise QueryError(
                _(
                    "The field %(field)s cannot be grouped by %(unit)s.",
                    field=column.spec.label,
                    unit=buckets.UNIT_LABELS.get(unit, unit),
                )
            )
        return entry, column.ftype.bucket(self._attr(column.name), unit, dialect), unit

    def labels_of(self, ids: Iterable[int]) -> dict[int, str]:
        """The display labels of those of ``ids`` that match (``#id`` when the display field is hidden or
        empty); ids out of reach are left out, so their labels are never disclosed."""
        wanted = sorted({int(i) for i in ids if i is not None})
        shown = self._entity.display_field
        column = self._columns.get(shown.name) if shown is not None else None
        found: dict[int, str] = {}
        for start in range(0, len(wanted), ID_CHUNK):
            chunk = wanted[start : start + ID_CHUNK]
            items = [self._table.c.id] + ([self._attr(column.name)] if column is not None else [])
            statement = select(*items).where(self._table.c.id.in_(chunk), self.condition())
            for row in db.session.execute(statement):
                text = REGISTRY[column.type].to_text(row[1], column.spec) if column is not None else ""
                found[row[0]] = text or f"#{row[0]}"
        return found

    def label(self, row: Mapping[str, Any]) -> str:
        """A row's display label as this actor may see it: its display field (``label_fields``) as text,
        or ``#id`` when that field is hidden from the actor, not among the row's values, or empty."""
        shown = self._entity.display_field
        column = self._columns.get(shown.name) if shown is not None else None
        if column is None or column.name not in row:
            return f"#{row['id']}"
        return REGISTRY[column.type].to_text(row[column.name], column.spec) or f"#{row['id']}"

    @property
    def label_fields(self) -> tuple[str, ...]:
        """What ``fields`` needs for ``label``: the display field when the actor may see it."""
        shown = self._entity.display_field
        return (shown.name,) if shown is not None and shown.name in self._columns else ()

    def ids_labelled(self, label: str, limit: int = 2) -> list[int]:
        """Ids (at most ``limit``, oldest first) of the matching rows whose display field equals ``label``
        (a linked record pasted by its label); none when the display field is hidden from the actor or
        cannot hold such a value."""
        return self.ids_labelled_many([label], max(1, int(limit)))[label]

    def ids_labelled_many(self, labels: Iterable[str], limit: int = 2) -> dict[str, list[int]]:
        """``ids_labelled`` for many labels at once (an import naming 5,000 companies): one query per
        ``ID_CHUNK`` labels. Every label given is a key; those no readable row has map to []."""
        wanted = {label: label.strip() for label in labels if isinstance(label, str)}
        found: dict[str, list[int]] = {label: [] for label in wanted}
        shown = self._entity.display_field
        if shown is None or shown.name not in self._columns:
            return found
        ftype = REGISTRY[shown.type]
        if "eq" not in self.column(shown.name).operators:
            return found
        by_value: dict[Any, list[str]] = {}
        for label, text in wanted.items():
            try:
                value = ftype.filter_value(text, shown) if text and _storable(text) else None
            except (FieldValueError, TypeError, ValueError, ArithmeticError):
                value = None
            if value is not None:
                by_value.setdefault(value, []).append(label)
        column = self._attr(shown.name)
        values = list(by_value)
        for start in range(0, len(values), ID_CHUNK):
            chunk = values[start : start + ID_CHUNK]
            statement = (
                select(self._table.c.id, column)
                .where(column.in_(chunk), self.condition())
                .order_by(self._table.c.id)
            )
            for pk, value in db.session.execute(statement):
                for label in by_value.get(value, ()):
                    if len(found[label]) < limit:
                        found[label].append(pk)
        return found

    def versions(self, ids: Iterable[int]) -> dict[int, int]:
        """``row_version`` of those of ``ids`` that match (each save names the version it read)."""
        wanted = sorted({int(i) for i in ids if i is not None})
        found: dict[int, int] = {}
        table = self._table
        for start in range(0, len(wanted), ID_CHUNK):
            chunk = wanted[start : start + ID_CHUNK]
            statement = select(table.c.id, table.c.row_version).where(table.c.id.in_(chunk), self.condition())
            found.update({pk: version for pk, version in db.session.execute(statement)})
        return found

    def binned(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` rows in the recycle bin that the actor may see there: all of them for an
        administrator (and the system), else their own when they may delete in the table (who may restore
        one, as ``records.can_restore`` decides). Each as ``id``, ``label`` (as ``label``), ``owner_id``
        and ``deleted_at``; the filters and the quick search given apply."""
        table = self._table
        parts = [table.c.deleted_at.is_not(None), *(c for _key, c in self._filters)]
        searched = self._search_condition()
        if searched is not None:
            parts.append(searched)
        if not self._rights.is_admin:
            if not self._rights.can("delete") or self._actor.user_id is None:
                return []
            parts.append(table.c.owner_id == self._actor.user_id)
        names = self.label_fields
        items = [table.c.id, table.c.owner_id, table.c.deleted_at, *(self._attr(n) for n in names)]
        statement = select(*items).where(and_(*parts)).order_by(table.c.deleted_at.desc(), table.c.id.desc())
        found = []
        for row in db.session.execute(statement.limit(max(1, int(limit)))):
            item = {
                "id": row[0],
                "owner_id": row[1],
                "deleted_at": row[2],
                **dict(zip(names, row[3:], strict=True)),
            }
            found.append({**item, "label": self.label(item)})
        return found

    # --- matching on chosen fields (global search, duplicates, lead conversion) ------------------------

    def shown(self, names: Iterable[str]) -> tuple[str, ...]:
        """Those of ``names`` that are fields the actor may see (in that order): what ``search_in`` and
        ``match_any`` look in."""
        return tuple(n for n in dict.fromkeys(names) if n in self._columns and not self._columns[n].record)

    def search_in(self, names: Iterable[str], text: Any) -> TableQuery:
        """Rows where one of the named fields matches ``text`` as its type matches a quick search
        (``search_condition``), e.g. the fields the global search looks in. Fields hidden from the actor
        (or unknown) are not looked in, so a hidden value never decides whether a row is found; when no
        field is left, nothing matches."""
        text = clean_search(text)
        found = []
        for name in self.shown(names):
            column = self._columns[name]
            condition = column.ftype.search_condition(self._attr(name), text, column.spec) if text else None
            if condition is not None:
                found.append(condition)
        key = json.dumps(["search_in", self.shown(names), text], ensure_ascii=True)
        return self._copy(_filters=(*self._filters, (key, or_(*found) if found else false())))

    def match_any(self, tests: Iterable[tuple[str, Any]]) -> TableQuery:
        """Rows where one of ``tests`` holds: ``(field name, test)``, ``test`` making a condition of the
        field's column (a caller's own comparison, e.g. a normalised e-mail or phone). Fields hidden from
        the actor (or unknown) are not tested, so a hidden value never decides a match; when no test is
        left, nothing matches."""
        found = []
        for name, test in tests:
            if self.shown([name]):
                found.append(test(self._attr(name)))
        condition = or_(*found) if found else false()
        compiled = condition.compile()
        key = json.dumps(["match", str(compiled), sorted(compiled.params.items())], default=str)
        return self._copy(_filters=(*self._filters, (key, condition)))

    # --- the named system reads ------------------------------------------------------------------------

    def ids_beyond_reach(self, reason: str, limit: int = 1) -> list[int]:
        """The system read for avoiding duplicates: ids (oldest first, at most ``limit``) of live rows that
        meet this query's filters and search *outside* the actor's row scope too (lead conversion reuses the
        contact it matched even if the user cannot open it). Only ids: no value or label of such a row
        leaves the layer, and the filters still only see the actor's visible fields. Only Python code asks,
        for a named ``reason``; no request value leads here."""
        if not reason:
            raise ValueError("ids_beyond_reach needs a reason")
        parts = [self._table.c.deleted_at.is_(None), *(c for _key, c in self._filters)]
        searched = self._search_condition()
        if searched is not None:
            parts.append(searched)
        statement = select(self._table.c.id).where(and_(*parts)).order_by(self._table.c.id)
        return list(db.session.scalars(statement.limit(max(1, int(limit)))))

    @classmethod
    def system(cls, table: str, reason: str) -> TableQuery:
        """The named system read: every live row and field of ``table``, for what follows from a change and
        answers to no user (a merge moving every link to the record it drops, however hidden from the
        merging user; the default stage of a new deal). Only Python code opens it, for a named ``reason``;
        no request value chooses it. Its rows are not for showing to a user."""
        if not reason:
            raise ValueError("TableQuery.system needs a reason")
        return cls(table, Actor.system_job())

    # --- rows by id (mailings read the contacts of a batch) ----------------------------------------------

    def rows_of(self, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """The matching rows among ``ids``, by id (as ``get`` gives one), ``ID_CHUNK`` ids a statement."""
        wanted = sorted({int(i) for i in ids if i is not None})
        keys = self._keys()
        statement, reader = self._select(keys)
        found: dict[int, dict[str, Any]] = {}
        for start in range(0, len(wanted), ID_CHUNK):
            chunk = wanted[start : start + ID_CHUNK]
            chosen = statement.where(self.condition(), self._table.c.id.in_(chunk))
            found.update((item["id"], item) for item, _keys in self._fetch(chosen, reader))
        return found


# --- helpers -----------------------------------------------------------------------------------------------


def _memo(schema: runtime.RuntimeSchema, key: tuple, build: Any) -> Any:
    """``build()``, kept with the schema (a schema change starts afresh) under ``key``."""
    memo = schema.memo
    found = memo.get(key)
    if found is None:
        if len(memo) >= MEMO_LIMIT:
            memo.clear()
        found = memo[key] = build()
    return found


class Columns:
    """A table's (or an alias's) columns as attributes, which is how ``access.row_filter`` reads a model:
    the layer builds Core statements (no ORM entity to load, and no ORM compile step on every request)."""

    __slots__ = ("_table",)

    def __init__(self, table: Any) -> None:
        self._table = table

    def __getattr__(self, name: str) -> Any:
        try:
            return self._table.c[name]
        except KeyError:
            raise AttributeError(name) from None


def _visible_columns(entity: EntitySpec, rights: Grants, model: type) -> dict[str, Column]:
    table = model.__table__
    columns: dict[str, Column] = {
        "id": Column(_record_spec(entity, "id", "integer", _l("No.")), record=True),
    }
    editable = {f.name for f in rights.editable_fields}
    for spec in rights.visible_fields:
        columns[spec.name] = Column(spec, editable=spec.name in editable)
    names = {f.name for f in entity.fields}
    for name, (type_name, label) in RECORD_COLUMNS.items():
        if name in table.c and name not in names:
            columns[name] = Column(_record_spec(entity, name, type_name, label), record=True)
    return columns


def _record_spec(entity: EntitySpec, name: str, type_name: str, label: Any) -> FieldSpec:
    return FieldSpec(
        id=0,
        entity_id=entity.id,
        name=name,
        column_name=name,
        label=label,
        type=type_name,
        searchable=False,
        is_system=True,
    )


INT32 = 2**31 - 1


def _holds(attr: Any, number: int) -> bool:
    """Whether a whole number fits the column (an ``id`` is 32 bits: PostgreSQL refuses more)."""
    kind = attr.type
    small = isinstance(kind, Integer) and not isinstance(kind, BigInteger)
    return not small or -INT32 - 1 <= number <= INT32


def _nullable(attr: Any) -> bool:
    return bool(getattr(attr, "nullable", True)) and attr.key != "id"


def _ordering(attr_of: Any, keys: Sequence[tuple[Column, bool]]) -> list[Any]:
    """ORDER BY with empty values as the largest: last ascending, first descending (PostgreSQL's own
    order, so a plain index on the column serves it both ways; SQLite honours the explicit NULLS)."""
    order = []
    for column, desc in keys:
        attr = attr_of(column.name)
        if not _nullable(attr):
            order.append(attr.desc() if desc else attr.asc())
        else:
            order.append(attr.desc().nulls_first() if desc else attr.asc().nulls_last())
    return order


def _bound(attr: Any, value: Any) -> Any:
    """A cursor value as a parameter of the column's type (``col > true`` is not built from a bare bool)."""
    return literal(value, attr.type)


def _beyond(attr: Any, desc: bool, value: Any) -> ColumnElement:
    """Rows strictly after ``value`` on one key (empty values the largest)."""
    nullable = _nullable(attr)
    if value is None:
        return attr.is_not(None) if desc else false()
    value = _bound(attr, value)
    if desc:
        return attr < value
    return or_(attr > value, attr.is_(None)) if nullable else attr > value


def _same(attr: Any, value: Any) -> ColumnElement:
    return attr.is_(None) if value is None else attr == _bound(attr, value)


def _rest_after(attr_of: Any, keys: Sequence[tuple[Column, bool]], values: Sequence[Any]) -> ColumnElement:
    if not keys:
        return false()
    (column, desc), value = keys[0], values[0]
    attr = attr_of(column.name)
    return or_(
        _beyond(attr, desc, value), and_(_same(attr, value), _rest_after(attr_of, keys[1:], values[1:]))
    )


def _after(attr_of: Any, keys: Sequence[tuple[Column, bool]], values: Sequence[Any]) -> list[ColumnElement]:
    """Rows strictly after the cursor's ``values``, as segments read one after another: the first key's
    range is a plain comparison an index on it can serve, its empty values a segment of their own."""
    (column, desc), value = keys[0], values[0]
    attr = attr_of(column.name)
    rest = _rest_after(attr_of, keys[1:], values[1:])
    if value is not None:
        value = _bound(attr, value)
    if len(keys) == 1:
        return [attr < value if desc else attr > value]
    if value is None:
        segments = [and_(attr.is_(None), rest)]
        return [*segments, attr.is_not(None)] if desc else segments
    if desc:
        return [and_(attr <= value, or_(attr < value, rest))]
    segments = [and_(attr >= value, or_(attr > value, rest))]
    return [*segments, attr.is_(None)] if _nullable(attr) else segments


def _python_type(column: Any) -> type | None:
    try:
        kind = column.type.python_type
    except NotImplementedError:
        return None
    if kind is float:
        return None
    return kind


def _encode_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        return {"n": str(value)}
    if isinstance(value, dt.datetime):
        return {"t": value.isoformat()}
    if isinstance(value, dt.date):
        return {"d": value.isoformat()}
    return {"s": str(value)}


def _decode_value(raw: Any) -> Any:
    if raw is None or isinstance(raw, bool | int | str):
        return raw
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ValueError(raw)
    ((tag, text),) = raw.items()
    if not isinstance(text, str):
        raise ValueError(raw)
    if tag == "n":
        try:
            number = Decimal(text)
        except ArithmeticError:  # decimal.InvalidOperation: not a number at all
            raise ValueError(raw) from None
        if not number.is_finite():
            raise ValueError(raw)
        return number
    if tag == "t":
        return dt.datetime.fromisoformat(text)
    if tag == "d":
        return dt.date.fromisoformat(text)
    raise ValueError(raw)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError(text) from exc


def _mac(binding: bytes, data: bytes) -> bytes:
    secret = str(current_app.config.get("SECRET_KEY") or "").encode()
    key = hashlib.sha256(b"tabula-query-cursor\x00" + secret).digest()
    return hmac.new(key, binding + b"\x00" + data, hashlib.sha256).digest()[:18]
