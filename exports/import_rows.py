"""The rows of an import, before anything is written: each cell parsed by its field's type, duplicates inside
the file found, and each row matched with the record it updates (read through the query layer, within the
importing user's reach, by a key field or by the CRM's matching rules for e-mails, phones and tax ids)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask_babel import gettext as _

from app.crm.matching import IDENTIFYING, NORMALISE, same_value
from custom_fields.link_labels import LinkLabels
from custom_fields.query import TableQuery
from custom_fields.records import Parsed
from custom_fields.spec import FieldSpec
from custom_fields.types import REGISTRY, FieldValueError

#: Ways of matching a row with a record besides a key field (``app.crm.matching``'s kinds).
MATCH_KINDS = ("email", "phone", "tax_id")
CHUNK = 500


class ImportRefused(Exception):  # noqa: N818 (a refusal, not a failure)
    """An import that cannot run as asked; the message is for the user."""


@dataclass
class Row:
    number: int  # the row's number in the file
    cells: list[Any]
    values: dict[str, Any] = field(default_factory=dict)  # ``Parsed`` once ``parse_rows`` filled them
    errors: dict[str, str] = field(default_factory=dict)  # field name (or "") -> message
    key: Any = None
    record_id: int | None = None
    action: str = ""  # create | update | skip | refuse

    def error_text(self, labels: dict[str, str]) -> str:
        return "; ".join(f"{labels[n]}: {m}" if n in labels else m for n, m in self.errors.items())


@dataclass
class Matcher:
    """How a row finds its record: the key's value of a row, and the records holding given keys."""

    describe: str
    key_of: Callable[[dict[str, Any]], Any]
    find: Callable[[TableQuery, list[Any]], dict[Any, list[int]]]


def field_specs(query: TableQuery, mapping: dict[int, str]) -> dict[int, FieldSpec]:
    """Column index -> the field it fills; refuses a field the user may not set (or that does not exist)."""
    editable = {spec.name: spec for spec in query.rights.editable_fields}
    specs: dict[int, FieldSpec] = {}
    for index, name in mapping.items():
        spec = editable.get(name)
        if spec is None:
            raise ImportRefused(_("You may not fill the field “%(name)s”.", name=str(name)[:60]))
        specs[index] = spec
    if len(set(mapping.values())) != len(mapping):
        raise ImportRefused(_("Two columns are mapped to the same field."))
    return specs


def matcher(query: TableQuery, match_on: str | None, mapped: set[str]) -> Matcher | None:
    """The matcher for ``match_on`` (a mapped field, or a kind the table's CRM rules know), or None."""
    if not match_on:
        return None
    slug = query.entity.slug
    if match_on in MATCH_KINDS:
        names = [n for n in IDENTIFYING.get(slug, {}).get(match_on, ()) if n in mapped]
        if not names:
            raise ImportRefused(_("Map a column to the field the rows are matched by."))
        return _kind_matcher(slug, match_on, names)
    spec = query.entity.field_by_name(match_on)
    if spec is None or match_on not in mapped:
        raise ImportRefused(_("Map a column to the field the rows are matched by."))
    return _field_matcher(spec)


def _field_matcher(spec: FieldSpec) -> Matcher:
    ftype = REGISTRY[spec.type]
    name = spec.name

    def key_of(values: dict[str, Any]) -> Any:
        value = values.get(name)
        return None if value is None else ftype.unique_key(value)

    def find(query: TableQuery, keys: list[Any]) -> dict[Any, list[int]]:
        found: dict[Any, list[int]] = {}
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]

            def test(column: Any, chunk: list[Any] = chunk) -> Any:
                return ftype.unique_expression(column).in_(chunk)

            for batch in query.match_any([(name, test)]).fields(name).batches(CHUNK):
                for row in batch:
                    found.setdefault(ftype.unique_key(row[name]), []).append(row["id"])
        return found

    return Matcher(str(spec.label), key_of, find)


def _kind_matcher(slug: str, kind: str, names: list[str]) -> Matcher:
    normalise = NORMALISE[kind]

    def key_of(values: dict[str, Any]) -> Any:
        for name in names:
            normal = normalise(values.get(name))
            if normal:
                return normal
        return None

    def find(query: TableQuery, keys: list[Any]) -> dict[Any, list[int]]:
        found: dict[Any, list[int]] = {}
        shown = query.shown(IDENTIFYING[slug][kind])
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            wanted = set(chunk)
            matched = query.match_any(same_value(slug, kind, chunk)).fields(*shown)
            for batch in matched.batches(CHUNK):
                for row in batch:
                    for name in shown:
                        normal = normalise(row.get(name))
                        if normal in wanted and row["id"] not in found.get(normal, []):
                            found.setdefault(normal, []).append(row["id"])
        return found

    return Matcher(kind, key_of, find)


def _by_label(spec: FieldSpec, labels: LinkLabels | None) -> bool:
    return labels is not None and REGISTRY[spec.type].reference == "record"


def parse_rows(
    raw_rows: Sequence[tuple[int, list[Any]]],
    specs: dict[int, FieldSpec],
    *,
    creating: bool,
    labels: LinkLabels | None = None,
) -> list[Row]:
    """Every row's cells through its field's ``import_parser``; a blank cell sets nothing. With ``labels``,
    a link cell may name the linked record by its label (a company's name in a Company column)."""
    parsers = [
        (index, spec.name, REGISTRY[spec.type].import_parser(spec), spec if _by_label(spec, labels) else None)
        for index, spec in specs.items()
    ]
    required = [spec.name for spec in specs.values() if spec.required]
    by_name = {spec.name: spec for spec in specs.values()}
    if labels is not None:
        labels.prefetch(
            (link, cells[index]) for _n, cells in raw_rows for index, _name, _p, link in parsers
            if link is not None and index < len(cells)
        )  # fmt: skip
    rows: list[Row] = []
    for number, cells in raw_rows:
        row = Row(number, cells, Parsed(by_name))  # the write path does not parse these values again
        for index, name, parse, link in parsers:
            raw = cells[index] if index < len(cells) else None
            if raw is None or raw == "":
                continue
            if link is not None and labels is not None:
                found = labels.resolve(link, raw)
                if found is not None and not found[0]:
                    row.errors[name] = found[1]
                    continue
                raw = found[1] if found is not None else raw
            try:
                value = parse(raw)
            except FieldValueError as exc:
                row.errors[name] = str(exc)
                continue
            except (ValueError, TypeError, OverflowError, ArithmeticError):
                row.errors[name] = _("This value cannot be read.")
                continue
            if value is not None:
                row.values[name] = value
        if creating:
            for name in required:
                if name not in row.values and name not in row.errors:
                    row.errors[name] = _("This field is required.")
        if not row.values and not row.errors:
            row.action = "skip"
        rows.append(row)
    return rows


def _whole_row_key(values: dict[str, Any]) -> Any:
    """What makes two rows the same without a key field: their values, field by field (``parse_rows``
    fills every row's values in the mapping's order). Hashed once, by ``plan``."""
    return tuple(values.items())


def _listed_row_key(values: dict[str, Any]) -> Any:
    """``_whole_row_key`` of a row holding lists (multiple choices): its values by their text."""
    return tuple(sorted((k, repr(v)) for k, v in values.items()))


def plan(rows: list[Row], query: TableQuery, match: Matcher | None, mode: str) -> None:
    """Decide each row's action (create, update, skip or refuse): duplicates inside the file are refused
    with the row they repeat; a row matching a record updates it (update, upsert) or is skipped (create);
    a row matching none is created (create, upsert) or skipped (update)."""
    first_of: dict[Any, int] = {}
    for row in rows:
        if row.action == "skip":
            continue
        if match is not None:
            row.key = match.key_of(row.values)
        else:
            row.key = _whole_row_key(row.values)
        if row.key is None:
            if mode == "update" and not row.errors:
                row.errors[""] = _("No value to find the record by (%(key)s).", key=match.describe)
            continue
        try:
            first = first_of.setdefault(row.key, row.number)
        except TypeError:  # unhashable: a list among the values
            if match is not None:
                raise
            row.key = _listed_row_key(row.values)
            first = first_of.setdefault(row.key, row.number)
        if first != row.number:
            row.errors.setdefault("", _("Repeats row %(n)d of the file.", n=first))
    existing: dict[Any, list[int]] = {}
    if match is not None:
        keys = sorted({row.key for row in rows if row.key is not None}, key=repr)
        existing = match.find(query, keys)
    for row in rows:
        if row.action == "skip":
            continue
        if row.errors:
            row.action = "refuse"
            continue
        found = existing.get(row.key, []) if row.key is not None else []
        if len(found) > 1:
            row.errors[""] = _("Matches several records: %(ids)s.", ids=", ".join(f"#{i}" for i in found[:5]))
            row.action = "refuse"
        elif found:
            row.record_id = found[0]
            row.action = "update" if mode in ("update", "upsert") else "skip"
        else:
            row.action = "create" if mode in ("create", "upsert") else "skip"
