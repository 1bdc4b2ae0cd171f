"""Merging two companies or two contacts: one is kept, the other goes to the recycle bin.

Everything happens in one transaction of the write path (``custom_fields.records``): the kept record gets
the other's values where it had none (or the values the user chose), every live record of every table that
links to the dropped record is moved to the kept one (``records.cascade_update``: history records each
move), both records get a "merge" line in their history naming the other, and the dropped record is moved
to the recycle bin (it can be restored). On any error nothing is changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select

from app.extensions import db
from custom_fields import records, runtime
from custom_fields.access import Actor, Grants, grants
from custom_fields.query import TableQuery
from custom_fields.spec import EntitySpec, FieldSpec
from custom_fields.types import REGISTRY

#: Tables whose records may be merged.
MERGEABLE = ("companies", "contacts")
#: Roles that may merge (besides the tables' edit and delete rights).
MERGE_ROLES = ("Admin", "Manager")
#: Why a merge reads and links records beyond the user's reach (the named system paths).
REASON = "merge"

# The history's label for the merge line (history shows unknown actions by their name otherwise).


@dataclass(frozen=True)
class MergeResult:
    kept: int
    dropped: int
    filled: tuple[str, ...]  # fields of the kept record that changed
    moved: int  # references moved to the kept record


def may_merge(user: Any) -> bool:
    """Whether the user has a role that may merge records (Admin or Manager)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    return any(getattr(role, "name", None) in MERGE_ROLES for role in getattr(user, "roles", []) or [])


def actor_may_merge(actor: Actor) -> bool:
    """The same, for an actor (role ids)."""
    if actor.system:
        return True
    if not actor.role_ids:
        return False
    from flask_appbuilder.security.sqla.models import Role

    names = set(db.session.scalars(select(Role.name).where(Role.id.in_(sorted(actor.role_ids)))))
    return bool(names & set(MERGE_ROLES))


def merge_fields(entity: EntitySpec, rights: Grants) -> list[FieldSpec]:
    """Fields a merge may set on the kept record: visible and editable by the user, not computed."""
    return [f for f in rights.editable_fields if not f.settings.get("derived")]


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def same(spec: FieldSpec, a: Any, b: Any) -> bool:
    ftype = REGISTRY[spec.type]
    return ftype.to_json(a, spec) == ftype.to_json(b, spec)


def references(entity: EntitySpec) -> list[tuple[EntitySpec, FieldSpec]]:
    """Every live link field, in any table, that points at ``entity``."""
    found = []
    for other in runtime.current().entities.values():
        for spec in other.live_fields:
            if REGISTRY[spec.type].target_entity_id(spec) == entity.id:
                found.append((other, spec))
    return found


def merge(
    slug: str, keep_id: int, drop_id: int, actor: Actor, values: Mapping[str, Any] | None = None
) -> MergeResult:
    """Merge record ``drop_id`` into ``keep_id``. ``values`` (stored values by field name) are set on the kept
    record as chosen; other fields empty on the kept record are filled from the dropped one. Raises
    ``records.AccessDenied`` (not a Manager/Admin, or no edit/delete right), ``records.RecordNotFound``
    (a record out of reach) or another ``records.RecordError``; nothing is changed then."""
    if slug not in MERGEABLE:
        raise records.RecordError(_("Records of this table cannot be merged."))
    if keep_id == drop_id:
        raise records.RecordError(_("Choose two different records to merge."))
    if not actor_may_merge(actor):
        raise records.AccessDenied(_("Only managers and administrators may merge records."))
    chosen = dict(values or {})
    # The dropped record's links (its company) may be out of the user's reach; the merge keeps them.
    with records.linking_unreadable(REASON), records.unit_of_work(slug, actor, "edit", "delete") as work:
        keep = work.load([keep_id], "edit").get(keep_id)
        drop = work.load([drop_id], "delete").get(drop_id)
        if keep is None:
            raise records.RecordNotFound(_("Record %(id)s does not exist.", id=keep_id))
        if drop is None:
            raise records.RecordNotFound(_("Record %(id)s does not exist.", id=drop_id))
        # What the kept record gets: the chosen values, else the dropped record's where it has none.
        fields = {f.name: f for f in merge_fields(work.entity, work.rights)}
        unknown = [name for name in chosen if name not in fields]
        if unknown:
            raise records.RecordInvalid({name: _("You may not change this field.") for name in unknown})
        changes: dict[str, Any] = {}
        for name, spec in fields.items():
            if name in chosen:
                value = chosen[name]
            elif is_empty(keep.get(name)) and not is_empty(drop.get(name)) and not spec.unique:
                value = drop[name]
            else:
                continue
            if not same(spec, value, keep.get(name)):
                changes[name] = REGISTRY[spec.type].to_json(value, spec)
        parsed, errors = work.parse(changes)
        if errors:
            raise records.RecordInvalid(errors)
        # The kept record: its merge line first (the change set reads as a merge), then its new values;
        # nothing filled still makes the merge a new version.
        work.note(keep_id, "merge", {"merged": drop_id})
        work.update(keep_id, parsed, keep["row_version"])
        # Every link to the dropped record now points at the kept one.
        moved = 0
        for other, spec in references(work.entity):
            query = linking(other.slug, spec.name, drop_id, slug)
            pks = [row["id"] for row in query.stream(1000)]
            if pks:
                work.cascade_update(other.slug, {pk: {spec.name: keep_id} for pk in pks})
                moved += len(pks)
        # The dropped record: its merge line, then the recycle bin.
        work.note(drop_id, "merge", {"into": keep_id}, on="delete")
        work.delete([drop_id])
        return MergeResult(keep_id, drop_id, tuple(changes), moved)


def linking(slug: str, field: str, record_id: int, record_slug: str) -> TableQuery:
    """The live records of ``slug`` whose link ``field`` names the record ``record_id`` of ``record_slug``
    (not that record itself): all of them, readable by the merging user or not, their link hidden from them
    or not (a merge moves every link, or the dropped record would keep some): the named system read."""
    query = TableQuery.system(slug, REASON).where({"field": field, "op": "eq", "value": record_id})
    if slug == record_slug:
        query = query.where({"field": "id", "op": "neq", "value": record_id})
    return query.fields().order_by("id")


def merge_rights(slug: str, actor: Actor) -> Grants | None:
    """The actor's rights on ``slug`` when they may merge there (role, edit and delete), else None."""
    schema = runtime.current()
    entity = schema.entity(slug)
    if slug not in MERGEABLE or entity is None or entity.archived:
        return None
    rights = grants(actor, entity, schema.access)
    if not (rights.can("read") and rights.can("edit") and rights.can("delete")):
        return None
    return rights if actor_may_merge(actor) else None
