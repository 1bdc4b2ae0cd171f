"""Immutable snapshots of the metadata, shared by every process-local structure built from it.

Views, schemas and filters keep these rather than ORM rows, so nothing they hold is bound to a session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask_babel import gettext as translate  # (no literal here for the extractor)
from flask_babel.speaklater import LazyString
from markupsafe import Markup, escape
from sqlalchemy import Column

from models import Entity, Field
from models.metadata import table_permission

#: The menu categories tables are listed under, by name (the screens give them labels and icons): core
#: tables under "CRM", the admins' own under "Tables".
SYSTEM_CATEGORY_NAME = "CRM"
CUSTOM_CATEGORY_NAME = "Tables"

#: Core options with their labels translated, per locale, field and option list.
_TRANSLATED: dict[tuple[str, int, tuple[tuple[str, str], ...]], list[dict[str, str]]] = {}


class CoreText(LazyString):
    """Text Tabula ships with a core table (a label, plural, help text) that no admin has changed: a msgid,
    shown in the reader's language whenever it is turned into text. Lazy, because views, forms and menus
    built during one user's request serve every user after it, in their own languages."""

    def __init__(self, msgid: str) -> None:
        super().__init__(translate, msgid)
        self.msgid = msgid

    def __html__(self) -> Markup:
        return escape(str(self))  # (flask-babel's LazyString would mark its text safe unescaped)

    def __format__(self, format_spec: str) -> str:
        return format(str(self), format_spec)


def shown(stored: str, shipped: str | None) -> str:
    """The one rule for core text: as shipped, it follows the user's language; once an admin has changed
    it, it shows as typed."""
    return CoreText(stored) if shipped and stored == shipped else stored


def stored_text(text: str) -> str:
    """What is stored (the msgid of core text that follows the language)."""
    return text.msgid if isinstance(text, CoreText) else str(text)


def label_of(thing: Any, attr: str = "label") -> str:
    """A table's or field's label (``attr``: ``label``, ``plural_label``, ``help_text``) as users read it,
    for metadata rows as well as the specs (whose labels are resolved already)."""
    if isinstance(thing, Entity):
        shipped = core_entity_text(thing.slug, attr) if thing.is_system else None
        return shown(getattr(thing, attr) or "", shipped)
    if isinstance(thing, Field):
        shipped = core_field_text(thing.entity.slug, thing.name, attr) if thing.is_system else None
        return shown(getattr(thing, attr) or "", shipped)
    return getattr(thing, attr)


def core_entity_text(slug: str, attr: str) -> str | None:
    from custom_fields.core import CORE

    shipped = CORE.get(slug)
    if shipped is None:
        return None
    return {"label": shipped[1], "plural_label": shipped[2]}.get(attr)


def core_field_text(slug: str, name: str, attr: str) -> str | None:
    from custom_fields.core import CORE

    hints = CORE[slug][5].get(name, {}) if slug in CORE else {}
    return hints.get({"label": "label", "help_text": "help"}.get(attr, attr))


def core_integer_limit(slug: str, column_name: str) -> int | None:
    """2**31 - 1 for a core table's 32-bit integer column (the registry's integers are 64-bit)."""
    from sqlalchemy import BigInteger, Integer

    from custom_fields.core import CORE

    if slug not in CORE:
        return None
    column = CORE[slug][0].__table__.c.get(column_name)
    if column is None or not isinstance(column.type, Integer) or isinstance(column.type, BigInteger):
        return None
    return 2**31 - 1


def core_options(slug: str, name: str) -> tuple[tuple[str, str], ...]:
    from custom_fields.core import CORE

    hints = CORE[slug][5].get(name, {}) if slug in CORE else {}
    return tuple((o["id"], o["label"]) for o in hints.get("options", ()))


def core_column_indexed(slug: str, column_name: str) -> bool:
    """Whether a core table's column leads an index its model declares (its id, a foreign key, a phone)."""
    from custom_fields.core import CORE

    if slug not in CORE:
        return False
    table = CORE[slug][0].__table__
    if column_name in table.primary_key.columns:
        return True
    leading = (index.expressions[0] for index in table.indexes if index.expressions)
    return any(isinstance(first, Column) and first.name == column_name for first in leading)


def has_builtin_index(row: Field) -> bool:
    """Whether the field's column has an index whatever the admin chooses: a unique field's, a link's or a
    user's (``indexed_by_default``), or a core column's declared in code."""
    from custom_fields.types import REGISTRY

    if row.unique or REGISTRY[row.type].indexed_by_default:
        return True
    return bool(row.is_system) and core_column_indexed(row.entity.slug, row.column_name)


def category_of(entity: Any) -> str:
    """The menu category (its name) a table is listed under."""
    return SYSTEM_CATEGORY_NAME if entity.is_system else CUSTOM_CATEGORY_NAME


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
    #: Whether the column has an index sorting and filtering can use: one an admin asked for ("Indexed")
    #: or one it has anyway (``has_builtin_index``).
    indexed: bool = False
    #: A core field's options as shipped, (id, label): these follow the user's language.
    shipped_options: tuple[tuple[str, str], ...] = field(default=(), hash=False, compare=False)
    #: The largest whole number the column holds, when it is narrower than the type's own (a core table's
    #: 32-bit ``position``).
    int_limit: int | None = field(default=None, hash=False, compare=False)
    #: The type a background job is converting the field to ("" when none): screens say so meanwhile.
    converting_to: str = ""

    @classmethod
    def of(cls, row: Field) -> FieldSpec:
        slug = row.entity.slug if row.is_system else ""
        return cls(
            id=row.id,
            entity_id=row.entity_id,
            name=row.name,
            column_name=row.column_name,
            label=label_of(row),
            type=row.type,
            required=row.required,
            unique=row.unique,
            default=row.default,
            help_text=label_of(row, "help_text"),
            settings=dict(row.settings or {}),
            position=row.position,
            show_in_list=row.show_in_list,
            searchable=row.searchable,
            is_system=row.is_system,
            archived=row.archived_at is not None,
            indexed=bool(row.indexed) or has_builtin_index(row),
            shipped_options=core_options(slug, row.name) if slug else (),
            int_limit=core_integer_limit(slug, row.column_name) if slug else None,
            converting_to=row.converting_to or "",
        )

    @property
    def options(self) -> list[dict[str, str]]:
        """The choices; a core field's options as shipped in the user's language, renamed ones as typed."""
        if not self.shipped_options:
            return self.stored_options
        from flask_babel import get_locale

        stored = self.stored_options
        key = (str(get_locale()), self.id, tuple((o["id"], o["label"]) for o in stored))
        if key not in _TRANSLATED:  # parsing a batch asks for every value; gettext once per locale
            shipped = set(self.shipped_options)
            _TRANSLATED[key] = [
                {**o, "label": translate(o["label"])} if (o["id"], o["label"]) in shipped else o
                for o in stored
            ]
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
            label=label_of(row),
            plural_label=label_of(row, "plural_label"),
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
