"""Helpers shared by the metadata-engine tests."""

from __future__ import annotations

import uuid
from typing import Any

from custom_fields import service
from custom_fields.runtime import refresh
from models import Entity, Field


def unique_label(prefix: str = "Таблица") -> str:
    return f"{prefix} {uuid.uuid4().hex[:6]}"


def new_table(label: str | None = None) -> Entity:
    entity = service.create_entity(label or unique_label(), "")
    refresh()
    return entity


def new_field(entity: Entity, label: str, type_name: str, **options: Any) -> Field:
    row = service.add_field(entity.id, label, type_name, **options)
    refresh()
    return row


def insert(entity: Entity, **values: Any) -> int:
    """A record through the mapped class of the current schema (values by field name)."""
    from app.extensions import db
    from custom_fields.runtime import current

    model = current().classes[entity.slug]
    item = model(**values)
    db.session.add(item)
    db.session.commit()
    return item.id


def valid_inn(prefix: str = "77") -> str:
    """A random 10-digit INN (an organisation's) with its check digit, starting with ``prefix``."""
    import random

    body = prefix + "".join(random.choice("0123456789") for _ in range(9 - len(prefix)))  # noqa: S311
    weights = (2, 4, 10, 3, 5, 9, 4, 6, 8)
    return body + str(sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11 % 10)
