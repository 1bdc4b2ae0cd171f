"""What a record's page shows besides its fields: related lists, one timeline, and actions other modules
offer for the record (convert a lead, merge, log a call ...)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from custom_fields.access import Grants
from custom_fields.spec import EntitySpec


@dataclass(frozen=True)
class RecordAction:
    label: Any
    url: str
    icon: str = "fa-bolt"
    method: str = "get"  # "post" renders a small form with the CSRF token


#: Per table slug: functions (entity, rights, pk) -> actions to offer on the record's page (or none).
RECORD_ACTIONS: dict[str, list[Callable[[EntitySpec, Grants, int], list[RecordAction]]]] = {}


def record_actions(entity: EntitySpec, rights: Grants, pk: int) -> list[RecordAction]:
    found: list[RecordAction] = []
    for provider in RECORD_ACTIONS.get(entity.slug, []) + RECORD_ACTIONS.get("*", []):
        found.extend(provider(entity, rights, pk))
    return found


def show_context(entity: EntitySpec, rights: Grants, pk: int) -> dict[str, Any]:
    """Everything the record page adds below the fields (filled in by the related-lists work)."""
    return {"actions": record_actions(entity, rights, pk)}
