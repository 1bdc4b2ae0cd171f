"""Error answers: the API's JSON shape (``{"message": ...}``) under ``/api/``; a page for a refused screen
request (400, 422) that says what was wrong instead of a bare server page."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g, jsonify, render_template, request
from flask_login import current_user
from werkzeug.exceptions import HTTPException

HTML_PAGES = (400, 422)


def answer_http_error(error: HTTPException) -> Any:
    if request.path.startswith("/api/"):
        response = jsonify(message=error.description)
        response.status_code = error.code or 500
        return response
    if error.code in HTML_PAGES:
        appbuilder = current_app.appbuilder  # FAB's templates expect what its views pass them
        if "user" not in g:  # a guard refused the request before FAB's own before_request ran
            g.user = current_user
        page = render_template(
            "tabula/error.html",
            error=error,
            back=request.path,
            appbuilder=appbuilder,
            base_template=appbuilder.base_template,
        )
        return page, error.code
    return error


def register(app: Flask) -> None:
    app.register_error_handler(HTTPException, answer_http_error)
