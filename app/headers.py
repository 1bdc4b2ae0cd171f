"""Security headers of every answer: a Content-Security-Policy that runs no inline script (a script tag
without the request's nonce, or an inline event handler, is refused), through Flask-Talisman, whose
``csp_nonce()`` FAB's templates already put on their scripts."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_talisman import Talisman

#: Scripts and everything else from this origin only; inline styles stay allowed (select2 and Bootstrap set
#: style attributes), inline scripts do not.
CONTENT_SECURITY_POLICY: dict[str, Any] = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": ["'self'", "'unsafe-inline'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'", "data:"],
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'self'",
}


def talisman_config(secure_cookies: bool) -> dict[str, Any]:
    """Flask-Talisman's settings (``TALISMAN_CONFIG``); HTTPS is the reverse proxy's business."""
    return {
        "content_security_policy": CONTENT_SECURITY_POLICY,
        "content_security_policy_nonce_in": ["script-src"],
        "force_https": False,
        "session_cookie_secure": secure_cookies,
        "frame_options": "SAMEORIGIN",
        "referrer_policy": "same-origin",
    }


def install_security_headers(app: Flask) -> None:
    if app.config.get("TALISMAN_ENABLED", True):
        config = app.config.get("TALISMAN_CONFIG") or talisman_config(app.config["SESSION_COOKIE_SECURE"])
        Talisman(app, **config)
