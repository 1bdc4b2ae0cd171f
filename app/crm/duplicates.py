"""Likely duplicates of a record about to be saved (same normalised e-mail, phone or tax id)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import or_, select

from app.crm.matching import IDENTIFYING, NORMALISE, match_reason, normalised_column
from app.extensions import db
from custom_fields import runtime
from custom_fields.access import Grants, grants
from custom_fields.query import TableQuery

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


def _search(
    slug: str, wanted: dict[str, set[str]], rights: Grants, exclude_id: int | None
) -> list[Duplicate]:
    from app.crm.search import label_of, record_url

    schema = runtime.current()
    entity = schema.entity(slug)
    if entity is None or entity.archived or slug not in schema.classes or not rights.can("read"):
        return []
    model = schema.classes[slug]
    checks: list[tuple[str, str, Any]] = []  # (kind, field name, condition)
    for kind, names in IDENTIFYING.get(slug, {}).items():
        if kind not in wanted:
            continue
        for name in names:
            spec = entity.field_by_name(name)
            if spec is None or spec.archived or rights.mode(name) == "hidden":
                continue
            expression = normalised_column(kind, getattr(model, name))
            checks.append((kind, name, expression.in_(sorted(wanted[kind]))))
    if not checks:
        return []
    statement = select(model).where(
        TableQuery.reach(rights.entity.slug, rights.actor), or_(*(c for _k, _n, c in checks))
    )
    if exclude_id is not None:
        statement = statement.where(model.id != exclude_id)
    found: list[Duplicate] = []
    for item in db.session.scalars(statement.order_by(model.id.desc()).limit(LIMIT)):
        reasons = []
        for kind, name, _condition in checks:
            normal = NORMALISE[kind](getattr(item, name))
            if normal and normal in wanted[kind]:
                text = match_reason(kind, normal)
                if text not in reasons:
                    reasons.append(text)
        found.append(
            Duplicate(
                slug=slug,
                id=item.id,
                label=label_of(item, entity, rights),
                reason="; ".join(reasons),
                url=record_url(slug, item.id),
            )
        )
    return found


def find(slug: str, values: dict[str, Any], rights: Grants, exclude_id: int | None = None) -> list[Duplicate]:
    """Records of ``slug`` the actor may read that share an identifying value with ``values``."""
    wanted = identifying_values(slug, values or {})
    if not wanted:
        return []
    found = _search(slug, wanted, rights, exclude_id)
    schema = runtime.current()
    for other in ALSO_IN.get(slug, ()):
        entity = schema.entity(other)
        if entity is None or rights.actor is None:
            continue
        # The same kinds of value, looked up in the other table's fields of that kind.
        other_wanted = {k: v for k, v in wanted.items() if k in IDENTIFYING.get(other, {})}
        if other_wanted:
            table = entity.label
            for dup in _search(other, other_wanted, grants(rights.actor, entity, schema.access), None):
                found.append(replace(dup, label=f"{table}: {dup.label}"))
    return found[: LIMIT * 2]
