"""Request guards that turn malformed input into a clear 400 before any view or database sees it."""

from __future__ import annotations

from typing import Any

from flask import abort, request
from flask_babel import gettext as _

NUL = "\x00"


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def reject_nul_characters() -> None:
    """No text column can hold NUL (PostgreSQL refuses it): refuse it in the path, query, form or JSON."""
    candidates: list[Any] = [request.path]
    candidates += [item for pair in request.args.items(multi=True) for item in pair]
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        candidates += [item for pair in request.form.items(multi=True) for item in pair]
        if request.is_json:
            candidates.append(request.get_json(silent=True))
    if any(_has_nul(value) for value in candidates):
        abort(400, description=_("Input may not contain NUL characters."))


MAX_ID = 2**31 - 1


def reject_out_of_range_ids() -> None:
    """Record ids in URLs (FAB's ``<pk>`` is any string) beyond what an id column holds are a 404, not a
    database overflow."""
    for key, value in (request.view_args or {}).items():
        if key == "pk" or key.endswith("_id"):
            text = str(value).strip()
            if len(text) > 12 or (text.lstrip("-").isdigit() and abs(int(text)) > MAX_ID):
                abort(404)
