"""Flask-AppBuilder's JWT login API, answering 400 (not 500) when the payload names no provider."""

from __future__ import annotations

from flask import Response, request
from flask_appbuilder.api import expose, safe
from flask_appbuilder.security.api import SecurityApi


class TabulaSecurityApi(SecurityApi):
    @expose("/login", methods=["POST"])
    @safe
    def login(self) -> Response:
        payload = request.get_json(silent=True)
        if isinstance(payload, dict) and "provider" not in payload:
            return self.response_400(message={"provider": ["Missing data for required field."]})
        return SecurityApi.login.__wrapped__(self)

    login.__doc__ = SecurityApi.login.__doc__
