"""Global search: one query over companies, contacts, leads and deals, as the user may see them.

Every table is searched through the query layer (``TableQuery.search_in``): only if the user may read it,
only within their rows (scope, not in the recycle bin), and only on fields not hidden from them. Matching
is case-insensitive (also for Cyrillic: SQLite gets a Unicode ``lower()``, see ``app.extensions``) and
"contains", as each field's type matches a quick search (``search_condition`` in the field-type registry):
a query with at least five digits also matches phone fields by their digits, however the user typed them.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

from flask import has_request_context, url_for

from custom_fields.access import Actor
from custom_fields.query import MAX_PAGE, QueryError, TableQuery
from custom_fields.spec import FieldSpec
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


def _text(spec: FieldSpec, value: Any) -> str:
    try:
        return REGISTRY[spec.type].to_text(value, spec)
    except (TypeError, ValueError):
        return str(value)


def _detail(row: dict[str, Any], query: TableQuery, names: tuple[str, ...], text: str) -> str:
    """Which field matched, when it is not the one the label shows."""
    for name in names:
        spec = query.column(name).spec
        value = row.get(name)
        if value is not None and REGISTRY[spec.type].search_matches(value, text, spec):
            if name in query.label_fields:
                return ""
            return f"{spec.label}: {_text(spec, value)}"
    return ""


def search_table(slug: str, query: str, actor: Actor, limit: int) -> Group | None:
    """Matches in one table, or None when the user may not search it. The query layer looks only in the
    table's searched fields the user may see (``TableQuery.search_in``), within their rows."""
    try:
        found = TableQuery(slug, actor)
    except QueryError:
        return None
    group = Group(slug, str(found.entity.plural_label))
    names = found.shown(SEARCHED.get(slug, ()))
    if not query or not names:
        return group
    found = found.search_in(names, query)
    page = found.fields(*names, *found.label_fields).order_by("-id").page(max(1, min(limit, MAX_PAGE)))
    group.more = page.next_cursor is not None
    for row in page.rows:
        pk = row["id"]
        detail = _detail(row, found, names, query)
        group.hits.append(Hit(slug, pk, found.label(row), record_url(slug, pk), detail))
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
