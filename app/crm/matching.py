"""How the CRM recognises the same person or company twice: normalised e-mail, phone and tax id. Lead
conversion and the duplicate check on create both ask here."""

from __future__ import annotations

import re
from typing import Any

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
