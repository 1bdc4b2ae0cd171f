"""Error answers: the API's JSON shape (``{"message": ...}``) under ``/api/``; a page for a refused screen
request (400, 422) that says what was wrong instead of a bare server page."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g, jsonify, render_template, request
from flask_babel import force_locale, gettext
from flask_login import current_user
from markupsafe import escape
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException, InternalServerError

from custom_fields.core import N_

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


REDIS_DOWN = N_(
    "The CRM cannot reach its Redis server, where sessions and background jobs live. Nothing was changed. "
    "Try again in a minute; if it lasts, tell your administrator."
)


def answer_redis_down(error: Exception) -> Any:
    """Redis unreachable (sessions, queues; a job that could not be queued): a 503 that says so in the
    reader's language (taken from the browser: the session that holds their choice is in Redis), never a
    bare 500."""
    from jobs.queues import JobQueueUnavailable

    original = getattr(error, "original_exception", error)
    if not isinstance(original, RedisError | JobQueueUnavailable):
        return answer_http_error(error)  # any other 500: as every HTTP error is answered
    current_app.logger.error("Redis is unreachable: %s", original)
    language = request.accept_languages.best_match(["en", "ru"]) or "en"
    with force_locale(language):
        message = gettext(REDIS_DOWN)
    if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
        response = jsonify(message=message)
    else:
        response = current_app.response_class(
            f'<!doctype html><html lang="{language}"><meta charset="utf-8"><title>503</title>'
            f'<p id="redis-down">{escape(message)}</p></html>',
            mimetype="text/html",
        )
    response.status_code = 503
    response.headers["Retry-After"] = "60"
    return response


def register(app: Flask) -> None:
    app.register_error_handler(HTTPException, answer_http_error)
    from jobs.queues import JobQueueUnavailable  # (here: jobs needs the app package whole)

    app.register_error_handler(RedisError, answer_redis_down)
    app.register_error_handler(JobQueueUnavailable, answer_redis_down)
    app.register_error_handler(InternalServerError, answer_redis_down)  # Redis failing as a session opens
