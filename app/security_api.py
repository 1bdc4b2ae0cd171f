"""Flask-AppBuilder's JWT login API, answering 400 (not 500) when the payload names no provider, and 429
while the user name or the client's address is locked out (``app.login_throttle``)."""

from __future__ import annotations

from flask import Response, request
from flask_appbuilder.api import expose, safe
from flask_appbuilder.security.api import SecurityApi

from app.login_throttle import LoginLocked


class TabulaSecurityApi(SecurityApi):
    @expose("/login", methods=["POST"])
    @safe
    def login(self) -> Response:
        payload = request.get_json(silent=True)
        if isinstance(payload, dict) and "provider" not in payload:
            return self.response_400(message={"provider": ["Missing data for required field."]})
        try:
            return SecurityApi.login.__wrapped__(self)
        except LoginLocked as locked:
            response = self.response(429, message=locked.message)
            response.headers["Retry-After"] = str(locked.retry_after)
            return response

    login.__doc__ = SecurityApi.login.__doc__
