"""Bulk edit: one field set to one value in many records (the grid's selected rows, or every row matching its
filter and search), through the write path in batches whose history is one change set.

Only rows the actor may edit are reached (the query layer's edit scope), only a field the actor may edit
is accepted (a hidden or view-only one is the same refusal as an unknown one), and the value is checked by a
dry run of the first batch before anything is written: a value the write path refuses changes nothing.
A batch the write path refuses later (a rule on some rows) is retried row by row; the refused rows are
counted and the others saved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _

from custom_fields import records
from custom_fields.access import Actor
from custom_fields.query import QueryError, TableQuery

#: Records per write-path batch.
BATCH = 500
#: Ids a request may name (the selected rows).
MAX_IDS = 5_000


class BulkRefused(ValueError):  # noqa: N818 (a refusal, shown as is)
    """A bulk edit that cannot run: unknown or non-editable field, a value the write path refuses."""


@dataclass(frozen=True)
class Target:
    """Which rows: the ``ids`` given, or (``ids`` None) every row matching ``filter`` and ``q``."""

    ids: tuple[int, ...] | None = None
    filter: Any = None
    q: str = ""


@dataclass(frozen=True)
class Outcome:
    changed: int
    refused: int = 0
    message: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"changed": self.changed, "refused": self.refused, "message": self.message}


def editable_field(slug: str, actor: Actor, name: Any) -> str:
    """``name`` when the actor may edit that field of the table, else BulkRefused."""
    query = TableQuery(slug, actor, "edit")
    if not isinstance(name, str) or name not in {f.name for f in query.rights.editable_fields}:
        raise BulkRefused(_("Choose a field you may change."))
    return name


def rows_query(slug: str, actor: Actor, target: Target) -> TableQuery:
    """The rows the edit reaches: the target's, within the actor's edit scope."""
    query = TableQuery(slug, actor, "edit")
    if target.ids is not None:
        return query
    return query.where(target.filter).search(target.q)


def count(slug: str, actor: Actor, target: Target) -> int:
    """How many rows the edit would change (exact)."""
    query = rows_query(slug, actor, target)
    if target.ids is not None:
        return len(query.readable_ids(target.ids))
    return query.exact_count()


def id_batches(slug: str, actor: Actor, target: Target) -> Iterator[list[int]]:
    query = rows_query(slug, actor, target)
    if target.ids is None:
        yield from query.id_batches(BATCH)
        return
    found = sorted(query.readable_ids(target.ids))
    for start in range(0, len(found), BATCH):
        yield found[start : start + BATCH]


class _DryRun(Exception):  # noqa: N818 (a signal)
    pass


def check(slug: str, actor: Actor, name: str, value: Any, target: Target) -> None:
    """Refuse (BulkRefused with the write path's message) a value the write path would refuse in the first
    batch; nothing is written."""
    first = next(id_batches(slug, actor, target), [])
    if not first:
        return
    try:
        with records.atomic():
            records.update_many(slug, [(pk, {name: value}, None) for pk in first], actor)
            raise _DryRun
    except _DryRun:
        return
    except records.RecordError as refused:
        raise BulkRefused(_refusal_text(refused)) from None


def run(
    slug: str,
    actor: Actor,
    name: str,
    value: Any,
    target: Target,
    progress: Callable[[int], None] | None = None,
) -> Outcome:
    """Set ``name`` to ``value`` in the target's rows, batch by batch (each committed), one change set."""
    changeset = records.new_changeset()
    changed = refused = 0
    message = ""
    for batch in id_batches(slug, actor, target):
        try:
            changed += len(
                records.update_many(slug, _changes(batch, name, value), actor, changeset=changeset)
            )
        except records.AccessDenied:
            raise
        except records.RecordError:
            for pk in batch:  # a rule refusing some rows: save the others
                try:
                    records.update_many(slug, _changes([pk], name, value), actor, changeset=changeset)
                    changed += 1
                except records.AccessDenied:
                    raise
                except records.RecordError as one:
                    refused += 1
                    message = message or _refusal_text(one)
        if progress is not None:
            progress(changed + refused)
    return Outcome(changed, refused, message)


def _changes(ids: Iterable[int], name: str, value: Any) -> list[tuple[int, dict[str, Any], None]]:
    return [(pk, {name: value}, None) for pk in ids]


def _refusal_text(refused: records.RecordError) -> str:
    if isinstance(refused, records.RecordInvalid) and refused.rows:
        for row in refused.rows.values():
            for text in row.values():
                return str(text)
    return str(refused) or _("Not saved.")


__all__ = ["BATCH", "MAX_IDS", "BulkRefused", "Outcome", "QueryError", "Target", "check", "count", "run"]
