"""Likely duplicates of a record about to be saved (same normalised e-mail, phone or tax id), among the
records the user may read, compared only on the fields they may see (``TableQuery.match_any``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from app.crm.matching import IDENTIFYING, NORMALISE, match_reason, same_value
from app.crm.search import record_url
from custom_fields.access import Actor, Grants
from custom_fields.query import QueryError, TableQuery

LIMIT = 10
#: Besides its own table, where a new record of a table may already be known (a lead's person or company).
ALSO_IN: dict[str, tuple[str, ...]] = {"leads": ("contacts", "companies")}


@dataclass(frozen=True)
class Duplicate:
    slug: str
    id: int
    label: str
    reason: str
    url: str


def identifying_values(slug: str, values: dict[str, Any]) -> dict[str, set[str]]:
    """Normalised e-mails, phones and tax ids among ``values`` (by kind)."""
    found: dict[str, set[str]] = {}
    for kind, names in IDENTIFYING.get(slug, {}).items():
        for name in names:
            normal = NORMALISE[kind](values.get(name))
            if normal:
                found.setdefault(kind, set()).add(normal)
    return found


def _search(slug: str, wanted: dict[str, set[str]], actor: Actor, exclude_id: int | None) -> list[Duplicate]:
    try:
        query = TableQuery(slug, actor)
    except QueryError:
        return []
    kinds = [(kind, names) for kind, names in IDENTIFYING.get(slug, {}).items() if kind in wanted]
    compared = [(kind, name) for kind, names in kinds for name in query.shown(names)]
    if not compared:
        return []
    query = query.match_any(test for kind, _names in kinds for test in same_value(slug, kind, wanted[kind]))
    if exclude_id is not None:
        query = query.where({"field": "id", "op": "neq", "value": exclude_id})
    names = tuple(dict.fromkeys(name for _kind, name in compared))
    page = query.fields(*names, *query.label_fields).order_by("-id").page(LIMIT)
    found: list[Duplicate] = []
    for row in page.rows:
        reasons = []
        for kind, name in compared:
            normal = NORMALISE[kind](row.get(name))
            if normal and normal in wanted[kind]:
                text = match_reason(kind, normal)
                if text not in reasons:
                    reasons.append(text)
        found.append(
            Duplicate(slug, row["id"], query.label(row), "; ".join(reasons), record_url(slug, row["id"]))
        )
    return found


def find(slug: str, values: dict[str, Any], rights: Grants, exclude_id: int | None = None) -> list[Duplicate]:
    """Records of ``slug`` the actor may read that share an identifying value with ``values``."""
    wanted = identifying_values(slug, values or {})
    if not wanted or rights.actor is None:
        return []
    actor = rights.actor
    found = _search(slug, wanted, actor, exclude_id)
    for other in ALSO_IN.get(slug, ()):
        # The same kinds of value, looked up in the other table's fields of that kind.
        other_wanted = {k: v for k, v in wanted.items() if k in IDENTIFYING.get(other, {})}
        if not other_wanted:
            continue
        for dup in _search(other, other_wanted, actor, None):
            table = TableQuery(other, actor).entity.label
            found.append(replace(dup, label=f"{table}: {dup.label}"))
    return found[: LIMIT * 2]
