"""How the CRM recognises the same person or company twice: normalised e-mail, phone and tax id. Lead
conversion and the duplicate check on create both ask here."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import func

from custom_fields.types import REGISTRY, FieldValueError

#: Per table: the fields holding e-mails, phones and tax ids (what identifies a record).
IDENTIFYING: dict[str, dict[str, tuple[str, ...]]] = {
    "companies": {"email": ("email",), "phone": ("phone", "phone2"), "tax_id": ("tax_id",)},
    "contacts": {"email": ("email", "email2"), "phone": ("phone", "mobile")},
    "leads": {"email": ("email",), "phone": ("phone",), "tax_id": ("tax_id",)},
}


def normal_email(raw: Any) -> str | None:
    """Lower-case, trimmed; None when it is not an e-mail address."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        value = REGISTRY["email"].parse(raw, None)  # type: ignore[arg-type]
    except FieldValueError:
        return None
    return value.lower()


def normal_phone(raw: Any) -> str | None:
    """The form the phone field stores (+79161234567), whatever way it was typed; None if not a phone."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        return REGISTRY["phone"].parse(raw, None)  # type: ignore[arg-type]
    except FieldValueError:
        return None


def normal_tax_id(raw: Any) -> str | None:
    if raw is None:
        return None
    digits = re.sub(r"[\s\-.]", "", str(raw)).upper()
    return digits or None


#: How each kind of identifying value is normalised.
NORMALISE: dict[str, Callable[[Any], str | None]] = {
    "email": normal_email,
    "phone": normal_phone,
    "tax_id": normal_tax_id,
}


def normalised_column(kind: str, column: Any) -> Any:
    """The SQL form of a stored value that compares with ``NORMALISE[kind]``'s result."""
    if kind == "email":
        return func.lower(func.trim(column))
    if kind == "tax_id":
        return func.upper(func.replace(func.replace(func.replace(column, " ", ""), "-", ""), ".", ""))
    return column  # phones are stored normalised


def same_value(slug: str, kind: str, normals: Iterable[str]) -> list[tuple[str, Callable[[Any], Any]]]:
    """Tests for ``TableQuery.match_any``: a record of ``slug`` holds one of ``normals`` in a field of that
    kind (the layer applies them only to the fields its reader may see)."""
    wanted = sorted(set(normals))

    def test(column: Any) -> Any:
        expression = normalised_column(kind, column)
        return expression == wanted[0] if len(wanted) == 1 else expression.in_(wanted)

    return [(name, test) for name in IDENTIFYING[slug][kind]]


def match_reason(kind: str, value: str) -> str:
    if kind == "email":
        return _("Same e-mail: %(value)s", value=value)
    if kind == "phone":
        return _("Same phone: %(value)s", value=value)
    return _("Same tax ID: %(value)s", value=value)
