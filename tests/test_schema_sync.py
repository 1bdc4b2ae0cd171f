"""A schema change made in one process is live in every other process without a restart: a gunicorn with
two workers (another OS process) serves a new table and new fields on its very next request (every request
checks the schema version first, so no waiting is needed or allowed), and an RQ worker that was already
running sees them in its next job. Correctness, not speed: no timing is asserted (a loaded machine made a
2-second limit flaky)."""

from __future__ import annotations

import requests
from sqlalchemy import select

from app.extensions import db
from custom_fields import service
from jobs import enqueue
from jobs.testing import describe_table
from models import Entity, JobStatus
from tests.conftest import ADMIN_PASSWORD
from tests.tables_helpers import insert, new_table, unique_label
from tests.test_jobs import wait_done


def api_headers(base: str) -> dict[str, str]:
    response = requests.post(
        f"{base}/api/v1/security/login",
        json={"username": "admin", "password": ADMIN_PASSWORD, "provider": "db"},
        timeout=TIMEOUT,
    )
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


TIMEOUT = 60  # per request, for a loaded machine; the assertions never wait for a later request


def test_another_process_serves_new_tables_and_fields_on_its_next_request(app_ctx, other_process) -> None:  # noqa: ANN001
    headers = api_headers(other_process)
    label = unique_label("Поставщики")
    entity = service.create_entity(label, label)
    rating = service.add_field(entity.id, "Рейтинг", "integer")
    contacts = db.session.scalar(select(Entity).where(Entity.slug == "contacts"))
    telegram = service.add_field(contacts.id, unique_label("Telegram"), "text")

    def served() -> bool:
        # Several calls, so both gunicorn workers answer at least once each.
        for _ in range(4):
            info = requests.get(
                f"{other_process}/api/v1/t/{entity.slug}/_info", headers=headers, timeout=TIMEOUT
            )
            contact_info = requests.get(
                f"{other_process}/api/v1/t/contacts/_info", headers=headers, timeout=TIMEOUT
            )
            if info.status_code != 200 or contact_info.status_code != 200:
                return False
            if rating.name not in {c["name"] for c in info.json()["add_columns"]}:
                return False
            if telegram.name not in {c["name"] for c in contact_info.json()["add_columns"]}:
                return False
        return True

    assert served()  # the first requests after the change already see it, in both gunicorn workers
    created = requests.post(
        f"{other_process}/api/v1/t/{entity.slug}/",
        json={f"f_{entity.display_field_id}": "ООО Север", rating.name: 7},
        headers=headers,
        timeout=TIMEOUT,
    )
    assert created.status_code == 201, created.text
    document = requests.get(f"{other_process}/api/v1/_openapi", headers=headers, timeout=TIMEOUT).json()
    assert f"/api/v1/t/{entity.slug}/" in document["paths"]

    # A type change and an archive reach the other process too.
    service.archive_field(rating.id)

    def archived() -> bool:
        info = requests.get(
            f"{other_process}/api/v1/t/{entity.slug}/_info", headers=headers, timeout=TIMEOUT
        ).json()
        return rating.name not in {c["name"] for c in info["add_columns"]}

    assert archived()


def test_a_running_worker_sees_new_fields_in_its_next_job(app_ctx, worker) -> None:  # noqa: ANN001
    entity = new_table()
    first = wait_done(enqueue("test", describe_table, entity.slug).id)
    assert first.status == JobStatus.finished, first.message
    added = service.add_field(entity.id, "Добавлено позже", "date")
    insert(entity)
    second = wait_done(enqueue("test", describe_table, entity.slug).id)
    assert second.status == JobStatus.finished, second.message
    assert added.name in second.result["fields"] and added.name not in first.result["fields"]
    assert second.result["count"] == 1 and second.result["version"] > first.result["version"]
