"""Redis unreachable (it holds sessions and queues): a signed-in user gets a 503 that says so in their
browser's language, never a bare 500, and the API answers in its JSON shape."""

from __future__ import annotations

import pytest


@pytest.fixture
def redis_down(app):  # noqa: ANN001, ANN201
    saved = app.config["REDIS_URL"]
    app.extensions.pop("tabula_redis", None)
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"
    yield
    app.config["REDIS_URL"] = saved
    app.extensions.pop("tabula_redis", None)


def test_a_page_says_redis_is_unreachable_in_the_browsers_language(admin_client, redis_down) -> None:  # noqa: ANN001
    english = admin_client.get("/imports/", headers={"Accept-Language": "en-US,en;q=0.8"})
    assert english.status_code == 503 and english.headers["Retry-After"] == "60"
    assert "cannot reach its Redis server" in english.get_data(as_text=True)
    russian = admin_client.get("/imports/", headers={"Accept-Language": "ru-RU,ru;q=0.9"})
    assert russian.status_code == 503 and "Redis" in russian.get_data(as_text=True)
    assert "cannot reach" not in russian.get_data(as_text=True)
    assert 'lang="ru"' in russian.get_data(as_text=True)


def test_the_api_answers_redis_down_as_json(admin_client, redis_down) -> None:  # noqa: ANN001
    answer = admin_client.get("/imports/", headers={"Accept": "application/json"})
    assert answer.status_code == 503 and "Redis" in answer.get_json()["message"]


def test_other_server_errors_keep_flasks_answer(app) -> None:  # noqa: ANN001
    from werkzeug.exceptions import InternalServerError

    from app.errors import answer_redis_down

    with app.test_request_context("/"):
        error = InternalServerError(original_exception=ValueError("x"))
        assert answer_redis_down(error) is error
    with app.test_request_context("/api/v1/contacts/"):  # the API keeps its JSON shape
        response = answer_redis_down(InternalServerError(original_exception=ValueError("x")))
        assert response.status_code == 500 and "message" in response.get_json()


def test_an_export_that_cannot_be_queued_is_failed_with_the_reason_not_left_waiting(app_ctx) -> None:  # noqa: ANN001
    from sqlalchemy import select

    from app.extensions import db
    from exports import service
    from jobs.queues import JobQueueUnavailable
    from models.exports import ExportFile, ExportStatus
    from tests.test_imports import admin

    saved = app_ctx.config["REDIS_URL"]
    app_ctx.extensions.pop("tabula_redis", None)
    app_ctx.config["REDIS_URL"] = "redis://127.0.0.1:1/0"
    try:
        with pytest.raises(JobQueueUnavailable, match="Redis is unreachable"):
            service.start("contacts", admin(), {})
    finally:
        app_ctx.config["REDIS_URL"] = saved
        app_ctx.extensions.pop("tabula_redis", None)
    export = db.session.scalars(select(ExportFile).order_by(ExportFile.id.desc())).first()
    assert export.status == ExportStatus.failed and "Redis is unreachable" in export.message
    assert export.job_run_id is None and export.finished_at is not None


def test_a_job_that_cannot_be_queued_answers_503_not_500(app) -> None:  # noqa: ANN001
    from app.errors import answer_redis_down
    from jobs.queues import JobQueueUnavailable

    with app.test_request_context("/exports/start/contacts", headers={"Accept": "application/json"}):
        response = answer_redis_down(JobQueueUnavailable("Redis is unreachable: ConnectionError"))
    assert response.status_code == 503 and "Redis server" in response.get_json()["message"]
