"""Immutable snapshots of the metadata, shared by every process-local structure built from it.

Views, schemas and filters keep these rather than ORM rows, so nothing they hold is bound to a session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models import Entity, Field
from models.metadata import table_permission

#: Core options with their labels translated, per locale and option list.
_TRANSLATED: dict[tuple[str, tuple[tuple[str, str], ...]], list[dict[str, str]]] = {}


@dataclass(frozen=True)
class FieldSpec:
    id: int
    entity_id: int
    name: str
    column_name: str
    label: str
    type: str
    required: bool = False
    unique: bool = False
    default: str | None = None
    help_text: str = ""
    settings: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    position: int = 0
    show_in_list: bool = True
    searchable: bool = True
    is_system: bool = False
    archived: bool = False

    @classmethod
    def of(cls, row: Field) -> FieldSpec:
        return cls(
            id=row.id,
            entity_id=row.entity_id,
            name=row.name,
            column_name=row.column_name,
            label=row.label,
            type=row.type,
            required=row.required,
            unique=row.unique,
            default=row.default,
            help_text=row.help_text or "",
            settings=dict(row.settings or {}),
            position=row.position,
            show_in_list=row.show_in_list,
            searchable=row.searchable,
            is_system=row.is_system,
            archived=row.archived_at is not None,
        )

    @property
    def options(self) -> list[dict[str, str]]:
        """The choices, with a core field's labels in the user's language (unless an admin renamed them)."""
        if not self.is_system:
            return self.stored_options
        from flask_babel import get_locale
        from flask_babel import gettext as translate  # (not a literal: nothing for the extractor here)

        stored = self.stored_options
        key = (str(get_locale()), tuple((o["id"], o["label"]) for o in stored))
        if key not in _TRANSLATED:  # parsing a batch asks for every value; gettext once per locale
            _TRANSLATED[key] = [{**o, "label": translate(o["label"])} for o in stored]
        return [dict(o) for o in _TRANSLATED[key]]

    @property
    def stored_options(self) -> list[dict[str, str]]:
        return list(self.settings.get("options") or [])


@dataclass(frozen=True)
class EntitySpec:
    id: int
    slug: str
    table_name: str
    label: str
    plural_label: str
    icon: str
    is_system: bool
    archived: bool
    display_field_id: int | None
    fields: tuple[FieldSpec, ...]

    @classmethod
    def of(cls, row: Entity) -> EntitySpec:
        return cls(
            id=row.id,
            slug=row.slug,
            table_name=row.table_name,
            label=row.label,
            plural_label=row.plural_label,
            icon=row.icon,
            is_system=row.is_system,
            archived=row.archived_at is not None,
            display_field_id=row.display_field_id,
            fields=tuple(FieldSpec.of(f) for f in row.fields),
        )

    @property
    def permission_name(self) -> str:
        return table_permission(self.slug)

    @property
    def live_fields(self) -> tuple[FieldSpec, ...]:
        """Fields users see: not archived, in the admin's order."""
        return tuple(sorted((f for f in self.fields if not f.archived), key=lambda f: (f.position, f.id)))

    @property
    def display_field(self) -> FieldSpec | None:
        live = self.live_fields
        chosen = next((f for f in live if f.id == self.display_field_id), None)
        return chosen or (live[0] if live else None)

    def field_by_name(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.name == name), None)
