"""Global search: one query over companies, contacts, leads and deals, as the user may see them.

Every table is searched only if the user may read it, only within their rows (``access.row_filter``: scope
and not in the recycle bin), and only on fields not hidden from them. Matching is case-insensitive (also for
Cyrillic: SQLite gets a Unicode ``lower()``, see ``app.extensions``) and "contains", as each field's type
matches a quick search (``search_condition`` in the field-type registry): a query with at least five digits
also matches phone fields by their digits, however the user typed them.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

from flask import has_request_context, url_for
from sqlalchemy import or_, select

from app.extensions import db
from custom_fields import runtime
from custom_fields.access import Actor, Grants, grants
from custom_fields.query import TableQuery
from custom_fields.spec import EntitySpec, FieldSpec
from custom_fields.types import REGISTRY

#: Per table, the fields the global search looks in (in the order a match is reported).
SEARCHED: dict[str, tuple[str, ...]] = {
    "companies": ("name", "email", "phone", "phone2", "tax_id"),
    "contacts": ("full_name", "email", "email2", "phone", "mobile"),
    "leads": ("title", "contact_name", "company_name", "email", "phone"),
    "deals": ("title",),
}
MAX_QUERY = 100  # characters of the query that are used
MIN_QUERY = 2
DROPDOWN_LIMIT = 8
PAGE_LIMIT = 50


@dataclass(frozen=True)
class Hit:
    slug: str
    id: int
    label: str
    url: str
    detail: str = ""  # "E-mail: ivan@example.com" when the match is not in the label


@dataclass
class Group:
    slug: str
    label: str
    hits: list[Hit] = field(default_factory=list)
    more: bool = False  # more rows matched than the limit

    def as_json(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "label": self.label,
            "more": self.more,
            "results": [{"id": h.id, "label": h.label, "url": h.url, "detail": h.detail} for h in self.hits],
        }


def clean_query(raw: Any) -> str:
    """The query as searched: text only, without control characters (NUL ...), spaces collapsed, at most
    ``MAX_QUERY`` characters."""
    if not isinstance(raw, str):
        return ""
    text = "".join(" " if unicodedata.category(ch).startswith("C") else ch for ch in raw[: MAX_QUERY * 4])
    return " ".join(text.split())[:MAX_QUERY]


def record_url(slug: str, pk: int) -> str:
    """A record's page (also outside a request, e.g. in a job: then relative to the site's root)."""
    if has_request_context():
        return url_for("TableView.show", slug=slug, pk=pk)
    return f"/t/{slug}/show/{pk}"


def label_of(item: Any, entity: EntitySpec, rights: Grants) -> str:
    """The record's label, unless the field it comes from is hidden from the user."""
    shown = entity.display_field
    if shown is None or rights.mode(shown.name) == "hidden":
        return f"#{item.id}"
    return str(item)


def _text(spec: FieldSpec, value: Any) -> str:
    try:
        return REGISTRY[spec.type].to_text(value, spec)
    except (TypeError, ValueError):
        return str(value)


def _fields(entity: EntitySpec, rights: Grants) -> list[FieldSpec]:
    wanted = SEARCHED.get(entity.slug, ())
    found = []
    for name in wanted:
        spec = entity.field_by_name(name)
        if spec is not None and not spec.archived and rights.mode(name) != "hidden":
            found.append(spec)
    return found


def _conditions(model: type, specs: list[FieldSpec], query: str) -> list[Any]:
    found = (REGISTRY[spec.type].search_condition(getattr(model, spec.name), query, spec) for spec in specs)
    return [condition for condition in found if condition is not None]


def _detail(item: Any, specs: list[FieldSpec], entity: EntitySpec, query: str) -> str:
    """Which field matched, when it is not the one the label shows."""
    shown = entity.display_field
    for spec in specs:
        value = getattr(item, spec.name, None)
        if value is not None and REGISTRY[spec.type].search_matches(value, query, spec):
            if shown is not None and spec.name == shown.name:
                return ""
            return f"{spec.label}: {_text(spec, value)}"
    return ""


def search_table(slug: str, query: str, actor: Actor, limit: int) -> Group | None:
    """Matches in one table, or None when the user may not search it."""
    schema = runtime.current()
    entity = schema.entity(slug)
    if entity is None or entity.archived or slug not in schema.classes:
        return None
    rights = grants(actor, entity, schema.access)
    if not rights.can("read"):
        return None
    group = Group(slug, str(entity.plural_label))
    specs = _fields(entity, rights)
    conditions = _conditions(schema.classes[slug], specs, query) if query else []
    if not conditions:
        return group
    model = schema.classes[slug]
    statement = (
        select(model)
        .where(TableQuery.reach(rights.entity.slug, rights.actor), or_(*conditions))
        .order_by(model.id.desc())
        .limit(limit + 1)
    )
    items = list(db.session.scalars(statement))
    group.more = len(items) > limit
    for item in items[:limit]:
        group.hits.append(
            Hit(
                slug,
                item.id,
                label_of(item, entity, rights),
                record_url(slug, item.id),
                _detail(item, specs, entity, query),
            )
        )
    return group


def search(
    raw: Any, actor: Actor, limit: int = DROPDOWN_LIMIT, slugs: tuple[str, ...] | None = None
) -> list[Group]:
    """Groups (per table the user may read) of records matching ``raw``; none for a too short query."""
    query = clean_query(raw)
    if len(query) < MIN_QUERY:
        return []
    groups = []
    for slug in slugs or tuple(SEARCHED):
        group = search_table(slug, query, actor, limit)
        if group is not None:
            groups.append(group)
    return groups
