"""Core CRM models become system entities: their code-defined columns are recorded as system fields, so
the same generator serves them as custom tables, and admins add custom fields to them.

``sync_core_entities`` runs in ``tabula init``: it adds what is missing and never touches an admin's
labels or custom fields.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Date, DateTime, Integer, Numeric, String, Text, select, update

from app.extensions import db
from models import Company, Contact, Entity, Field, SchemaState


def N_(text: str) -> str:  # noqa: N802
    """Marks a core label for translation (``make extract-messages``); it is stored in English and shown
    translated, unless an admin renames it."""
    return text


# slug -> (model, label, plural label, icon, display column, {column: field settings})
CORE: dict[str, tuple[type, str, str, str, str, dict[str, dict[str, Any]]]] = {
    "companies": (
        Company, N_("Company"), N_("Companies"), "fa-building", "name",
        {
            "name": {"label": N_("Name"), "required": True},
            "tax_id": {"label": N_("Tax ID")},
            "email": {"label": N_("E-mail"), "type": "email"},
            "phone": {"label": N_("Phone"), "type": "phone"},
            "website": {"label": N_("Website"), "type": "url"},
            "notes": {"label": N_("Notes"), "show_in_list": False},
            "created_at": {"label": N_("Created"), "auto": True},
        },
    ),
    "contacts": (
        Contact, N_("Contact"), N_("Contacts"), "fa-user", "first_name",
        {
            "first_name": {"label": N_("First name"), "required": True},
            "last_name": {"label": N_("Last name")},
            "company_id": {"label": N_("Company"), "type": "link", "target": "companies"},
            "position": {"label": N_("Job title")},
            "email": {"label": N_("E-mail"), "type": "email"},
            "phone": {"label": N_("Phone"), "type": "phone"},
            "birthday": {"label": N_("Birthday"), "show_in_list": False},
            "created_at": {"label": N_("Created"), "auto": True},
        },
    ),
}  # fmt: skip


def _type_of(col: Any, hints: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if "type" in hints:
        return hints["type"], {}
    sql_type = col.type
    if isinstance(sql_type, Boolean):
        return "boolean", {}
    if isinstance(sql_type, DateTime):
        return "datetime", {}
    if isinstance(sql_type, Date):
        return "date", {}
    if isinstance(sql_type, Numeric):
        return "decimal", {"scale": sql_type.scale or 0}
    if isinstance(sql_type, Integer):
        return "integer", {}
    if isinstance(sql_type, Text):
        return "long_text", {}
    if isinstance(sql_type, String):
        return "text", {"max_length": sql_type.length or 255}
    raise TypeError(f"no field type for {col}")


def sync_core_entities() -> int:
    """Record every core model and its columns as system metadata; returns how many rows were added."""
    added = 0
    slugs = {e.slug: e for e in db.session.scalars(select(Entity).where(Entity.is_system.is_(True)))}
    for position, (slug, (model, label, plural, icon, _display, _fields)) in enumerate(CORE.items(), start=1):
        if slug not in slugs:
            entity = Entity(
                slug=slug, table_name=model.__tablename__, label=label, plural_label=plural, icon=icon,
                is_system=True, position=-100 + position,
            )  # fmt: skip
            db.session.add(entity)
            db.session.flush()
            slugs[slug] = entity
            added += 1
    for slug, (model, _label, _plural, _icon, display, columns) in CORE.items():
        entity = slugs[slug]
        existing = {f.name: f for f in db.session.scalars(select(Field).where(Field.entity_id == entity.id))}
        for position, (name, hints) in enumerate(columns.items(), start=1):
            if name in existing:
                continue
            col = model.__table__.c[name]
            type_name, settings = _type_of(col, hints)
            if type_name == "link":
                settings = {"target": slugs[hints["target"]].id}
            if hints.get("auto"):
                settings["auto"] = True
            row = Field(
                entity_id=entity.id, name=name, column_name=name, label=hints["label"], type=type_name,
                required=bool(hints.get("required")), unique=False, settings=settings, position=position,
                show_in_list=hints.get("show_in_list", True), searchable=not hints.get("auto"),
                is_system=True,
            )  # fmt: skip
            db.session.add(row)
            db.session.flush()
            existing[name] = row
            added += 1
        if entity.display_field_id is None:
            entity.display_field_id = existing[display].id
    if added:
        db.session.execute(
            update(SchemaState).where(SchemaState.id == 1).values(version=SchemaState.version + 1)
        )
    db.session.commit()
    return added
