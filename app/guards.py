"""Request guards that turn malformed input into a clear 400 before any view or database sees it.

Registered for every request (``create_app``); the error handlers in ``app.errors`` answer in the API's JSON
shape under ``/api/`` and with a page elsewhere.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

import prison
from flask import abort, current_app, request
from flask_babel import gettext as _

NUL = "\x00"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
#: Deeper than any document the product sends or reads; Python's parsers recurse per level.
MAX_NESTING = 32


def _strings(value: Any) -> Iterator[str]:
    """Every key and string within ``value``, iteratively (no recursion, whatever the depth)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level > MAX_NESTING:
                break
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800": no database column can hold it
        return False
    return True


def refuse_unstorable(value: Any, what: str) -> None:
    """A decoded JSON or Rison document nested too deeply or holding text no column can store: 400."""
    if _depth(value) > MAX_NESTING:
        abort(400, description=_("%(what)s is nested too deeply.", what=what))
    if not all(_encodable(text) for text in _strings(value)):
        abort(400, description=_("%(what)s contains characters that are not valid Unicode.", what=what))


def reject_malformed_json() -> None:
    """A JSON body the parser cannot even read (thousands of nested arrays) or cannot store: 400."""
    if request.method not in WRITE_METHODS or not request.is_json:
        return
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        abort(400, description=_("%(what)s is nested too deeply.", what=_("The JSON body")))
    refuse_unstorable(data, _("The JSON body"))


#: API routes whose ``q`` is plain text (the data endpoint's quick search), not FAB's Rison.
PLAIN_Q_PREFIXES = ("/api/v1/data/",)


def reject_malformed_rison() -> None:
    """FAB's API reads ``?q=`` as Rison (else JSON) and expects an object; anything else is a 400 here,
    before its parser can recurse without end (``q=((``) or fail on a number (``q=1e+16``)."""
    value = request.args.get("q")
    if not value or not request.path.startswith("/api/") or request.path.startswith(PLAIN_Q_PREFIXES):
        return
    try:
        parsed = prison.loads(value)
    except Exception:  # noqa: BLE001 (prison raises ParserException, ValueError, RecursionError...)
        try:  # FAB's own fallback: the same text as JSON
            parsed = json.loads(urllib.parse.parse_qs(f"q={value}").get("q", [""])[0])
        except (ValueError, RecursionError):
            parsed = None
    if not isinstance(parsed, dict):
        abort(400, description=_("The q argument must be a Rison or JSON object, such as (page:0)."))
    refuse_unstorable(parsed, _("The q argument"))


#: FAB's list screens read ``page_<view>``, ``psize_<view>`` anywhere in an argument's name, as integers.
LIST_NUMBERS = {"page_": (0, 10**6), "psize_": (1, 500)}
ORDER_DIRECTIONS = ("asc", "desc")


def reject_malformed_list_arguments() -> None:
    """Paging arguments of list screens must be whole numbers in range; sort columns ones the view sorts by,
    directions asc or desc."""
    for key, value in request.args.items(multi=True):
        for marker, (low, high) in LIST_NUMBERS.items():
            if marker in key and not (re.fullmatch(r"\d{1,9}", value) and low <= int(value) <= high):
                abort(
                    400,
                    description=_(
                        "%(name)s must be a whole number from %(low)s to %(high)s.",
                        name=key, low=low, high=high,
                    ),
                )  # fmt: skip
        if key.startswith("_od_") and value not in ORDER_DIRECTIONS:
            abort(400, description=_("%(name)s must be asc or desc.", name=key))
        sortable = _order_columns(key.partition("_oc_")[2]) if "_oc_" in key else None
        if sortable is not None and value not in sortable:
            abort(400, description=_("%(name)s cannot sort by %(column)s.", name=key, column=value))


def _order_columns(view_name: str) -> list[str] | None:
    """The columns FAB's list view of that class name may sort by (FAB sorts by whatever it is told, and
    an unknown column is a 500); nothing to check for a name no view has."""
    for view in current_app.appbuilder.baseviews:
        if view.__class__.__name__ == view_name:
            return [*getattr(view, "order_columns", ()), ""]
    return None


def reject_nul_characters() -> None:
    """No text column can hold NUL (PostgreSQL refuses it): refuse it in the path, query, form or JSON."""
    candidates: list[Any] = [request.path]
    candidates += [item for pair in request.args.items(multi=True) for item in pair]
    if request.method in WRITE_METHODS:
        candidates += [item for pair in request.form.items(multi=True) for item in pair]
        if request.is_json:
            candidates.append(request.get_json(silent=True))
    if any(NUL in text for text in _strings(candidates)):
        abort(400, description=_("Input may not contain NUL characters."))


MAX_ID = 2**31 - 1


def reject_out_of_range_ids() -> None:
    """Record ids in URLs (FAB's ``<pk>`` is any string) beyond what an id column holds are a 404, not a
    database overflow."""
    for key, value in (request.view_args or {}).items():
        if key == "pk" or key.endswith("_id"):
            text = str(value).strip()
            # isdecimal, not isdigit: "²" is a digit that int() refuses (the fuzzer's 500 on /jobs/show/²)
            if len(text) > 12 or (text.lstrip("-").isdecimal() and abs(int(text)) > MAX_ID):
                abort(404)


def reject_unknown_actions() -> None:
    """FAB's ``/<view>/action/<name>/<pk>`` and ``/<view>/action_post`` look the action up before any
    check (an unknown name is a 500 for anyone, signed in or not): a name the view has no action for is a
    404."""
    endpoint = request.endpoint or ""
    if not endpoint.endswith((".action", ".action_post")):
        return
    view = getattr(current_app.view_functions.get(endpoint), "__self__", None)
    actions = getattr(view, "actions", None)
    if actions is None:
        return
    if endpoint.endswith(".action"):
        name = (request.view_args or {}).get("name")
    else:
        name = request.form.get("action")
    if name not in actions:
        abort(404)


#: In the order they run: the JSON body is read safely before any other guard reads it.
GUARDS = (
    reject_malformed_json,
    reject_nul_characters,
    reject_malformed_rison,
    reject_malformed_list_arguments,
    reject_out_of_range_ids,
    reject_unknown_actions,
)
