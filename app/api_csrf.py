"""The JSON API's second wall against cross-site requests.

Flask-AppBuilder exempts its APIs from CSRF because scripts call them with ``Authorization: Bearer`` tokens.
A browser, though, also sends the ``session`` cookie: a write under ``/api/`` from a signed-in session without
a bearer token must show it comes from our own pages, by the CSRF header (``X-CSRFToken``, the token of the
session, as the app's own scripts send it) or by an ``Origin`` naming this site (scheme, host and
port alike). Otherwise: 403, in the API's JSON shape.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Response, current_app, jsonify, request, session
from flask_babel import gettext as _
from flask_wtf.csrf import validate_csrf
from wtforms import ValidationError

WRITES = ("POST", "PUT", "PATCH", "DELETE")
# Signing in for a token changes nothing and sets no cookie; a cross-site page cannot read the token.
SIGN_IN_PATH = "/api/v1/security/login"


def refuse_cross_site_api_writes() -> Response | None:
    if request.method not in WRITES or not request.path.startswith("/api/") or request.path == SIGN_IN_PATH:
        return None
    if request.headers.get("Authorization", "").lower().startswith("bearer "):
        return None
    if not session.get("_user_id"):
        return None  # no signed-in session: the API itself answers 401 where sign-in is needed
    if _same_origin() or _valid_csrf_header():
        return None
    response = jsonify(
        message=_("This request needs the CSRF token header (X-CSRFToken) or an Origin of this site.")
    )
    response.status_code = 403
    return response


def _same_origin() -> bool:
    origin = request.headers.get("Origin", "")
    if not origin or origin == "null":
        return False
    parts = urlsplit(origin)
    # scheme and host[:port] both: http://host is another origin than https://host
    return f"{parts.scheme}://{parts.netloc}".lower() == f"{request.scheme}://{request.host}".lower()


def _valid_csrf_header() -> bool:
    for header in current_app.config.get("WTF_CSRF_HEADERS", ["X-CSRFToken", "X-CSRF-Token"]):
        token = request.headers.get(header)
        if token:
            try:
                validate_csrf(token)
            except ValidationError:
                return False
            return True
    return False
