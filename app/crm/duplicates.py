"""Likely duplicates of a record about to be saved (same normalised e-mail, phone or tax id)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from custom_fields.access import Grants


@dataclass(frozen=True)
class Duplicate:
    slug: str
    id: int
    label: str
    reason: str
    url: str


def find(slug: str, values: dict[str, Any], rights: Grants, exclude_id: int | None = None) -> list[Duplicate]:
    """Records of ``slug`` the actor may read that share an identifying value with ``values``."""
    return []
