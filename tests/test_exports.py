"""Exports: started from a list, written by a real worker through the query layer as the user who asked,
downloaded only by them; what they may not see never reaches the file."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import time
import uuid
from typing import Any

import openpyxl
import pytest
from sqlalchemy import select

from app.extensions import db
from custom_fields import records
from custom_fields.access import Actor, save_rules, set_field_mode
from models.exports import ExportFile, ExportStatus
from tests.conftest import DEMO_PASSWORD, csrf_token, login, signed_in
from tests.tables_helpers import new_field, new_table


def user_id(username: str) -> int:
    from flask_appbuilder.security.sqla.models import User

    return db.session.scalar(select(User.id).where(User.username == username))


def role_id(name: str) -> int:
    from flask_appbuilder.security.sqla.models import Role

    return db.session.scalar(select(Role.id).where(Role.name == name))


def wait_export(export_id: int, timeout: float = 60) -> ExportFile:
    from exports.service import reconcile

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.expire_all()
        export = reconcile(db.session.get(ExportFile, export_id))
        if export.status not in (ExportStatus.queued, ExportStatus.running):
            return export
        time.sleep(0.1)
    raise AssertionError(f"export {export_id} still {export.status}")


def start(client, slug: str, state: dict[str, Any] | None = None, fmt: str = "xlsx", **form: str) -> Any:  # noqa: ANN001
    page = client.get("/exports/").get_data(as_text=True)
    data = {"csrf_token": csrf_token(page), "format": fmt, **form}
    if state is not None:
        data["state"] = json.dumps(state)
    return client.post(f"/exports/start/{slug}", data=data, headers={"Accept": "application/json"})


def workbook_rows(client, export_id: int) -> list[tuple]:  # noqa: ANN001
    response = client.get(f"/exports/{export_id}/download")
    assert response.status_code == 200, response.status_code
    assert response.headers["Content-Disposition"].startswith("attachment;")
    book = openpyxl.load_workbook(io.BytesIO(response.data))
    return [tuple(row) for sheet in book for row in sheet.iter_rows(values_only=True)]


@pytest.fixture
def deals_table(app_ctx) -> dict[str, Any]:  # noqa: ANN001
    """A custom table with typed fields, one Staff may not see, rows of staff1 and staff2."""
    entity = new_table(f"Сделки {uuid.uuid4().hex[:6]}")
    new_field(entity, "Сумма", "money", settings={"currency": "RUB"})
    new_field(entity, "Когда", "date")
    new_field(entity, "Секрет", "text")
    new_field(
        entity, "Этап", "single_select", settings={"options": [{"label": "Новая"}, {"label": "Выиграна"}]}
    )
    new_field(entity, "Компания", "link", settings={"target": _companies_id()})
    db.session.expire_all()
    from custom_fields.runtime import refresh

    schema = refresh()
    spec = schema.entity(entity.slug)
    names = {f.label: f.name for f in spec.fields}
    staff = role_id("Staff")
    save_rules(staff, tables={entity.id: {"export": True, "read_scope": "own"}})
    secret = next(f for f in spec.fields if f.label == "Секрет")
    set_field_mode(staff, secret.id, "hidden")
    refresh()
    hidden_company = records.create(
        "companies", {"name": "Чужая компания"}, Actor.for_user_id(user_id("admin"))
    ).id
    rows = {}
    admin = Actor.for_user_id(user_id("admin"))
    for who, title, amount in [
        ("staff1", "=1+2", "1234.5"),
        ("staff1", "Моя сделка", "10"),
        ("staff2", "Чужая", "99"),
    ]:
        values = {
            spec.display_field.name: title,
            names["Сумма"]: amount,
            names["Когда"]: "31.12.2026",
            names["Этап"]: "Выиграна",
        }
        rows[title] = records.create(entity.slug, values, Actor.for_user_id(user_id(who))).id
        # Set by the admin: staff may not see the secret, nor link to a company they cannot read.
        admin_values = {names["Секрет"]: "тайна", names["Компания"]: hidden_company}
        records.update(entity.slug, rows[title], admin_values, admin, expected_version=None)
    return {"entity": entity, "slug": entity.slug, "names": names, "rows": rows, "company": hidden_company}


def _companies_id() -> int:
    from custom_fields.runtime import current

    return current().entity("companies").id


def test_admin_exports_typed_cells(app, deals_table, admin_client, worker) -> None:  # noqa: ANN001
    slug, names = deals_table["slug"], deals_table["names"]
    response = start(admin_client, slug, {"sort": [names["Сумма"]]})
    assert response.status_code == 202, response.get_data(as_text=True)
    export = wait_export(response.get_json()["id"])
    assert export.status == ExportStatus.ready, export.message
    assert export.rows_written == 3 and export.size and len(export.sha256) == 64
    rows = workbook_rows(admin_client, export.id)
    header = rows[0]
    assert "Секрет" in header and "Сумма" in header
    body = [dict(zip(header, r, strict=True)) for r in rows[1:]]
    assert [r["Сумма"] for r in body] == [10, 99, 1234.5]
    first = body[-1]
    assert first["Когда"] == dt.datetime(2026, 12, 31)
    assert first["Этап"] == "Выиграна"
    assert first["Компания"] == "Чужая компания"  # the admin may read it
    assert first[header[0]] == "=1+2"  # text, never a formula
    # The status answer the progress bar polls.
    status = admin_client.get(f"/exports/{export.id}/status").get_json()
    assert status["status"] == "ready" and status["percent"] == 100 and status["download"]


def test_staff_export_holds_only_their_rows_and_no_hidden_field(app, deals_table, worker) -> None:  # noqa: ANN001
    client = app.test_client()
    assert signed_in(login(client, "staff1", DEMO_PASSWORD))
    response = start(client, deals_table["slug"], {})
    assert response.status_code == 202, response.get_data(as_text=True)
    export = wait_export(response.get_json()["id"])
    assert export.status == ExportStatus.ready, export.message
    rows = workbook_rows(client, export.id)
    flat = [str(v) for row in rows for v in row]
    assert "Секрет" not in rows[0] and "тайна" not in flat
    assert "Чужая" not in flat and len(rows) == 3  # header + staff1's two rows
    # The company staff1 may not read: the link shows, its name does not.
    assert "Чужая компания" not in flat and f"#{deals_table['company']}" in flat

    # Nobody else gets the file, its page or its progress: not even a hint that it exists.
    other = app.test_client()
    assert signed_in(login(other, "staff2", DEMO_PASSWORD))
    for path in ("", "/status", "/download"):
        assert other.get(f"/exports/{export.id}{path}").status_code == 404
    assert f'data-id="{export.id}"' not in other.get("/exports/").get_data(as_text=True)
    assert f'data-id="{export.id}"' in client.get("/exports/").get_data(as_text=True)


def test_without_the_export_right_nothing_starts(app, deals_table) -> None:  # noqa: ANN001
    save_rules(role_id("Staff"), tables={deals_table["entity"].id: {"export": False}})
    from custom_fields.runtime import refresh

    refresh()
    client = app.test_client()
    assert signed_in(login(client, "staff1", DEMO_PASSWORD))
    before = db.session.scalar(select(db.func.count()).select_from(ExportFile))
    response = start(client, deals_table["slug"], {})
    assert response.status_code == 403
    assert db.session.scalar(select(db.func.count()).select_from(ExportFile)) == before
    page = client.get(f"/t/{deals_table['slug']}/list/").get_data(as_text=True)
    assert "export-xlsx" not in page


def test_a_bad_view_is_refused_with_a_message(app, deals_table, admin_client) -> None:  # noqa: ANN001
    names = deals_table["names"]
    for state in (
        {"sort": ["no_such_field"]},
        {"filter": {"field": names["Сумма"], "op": "ct", "value": "1"}},
    ):
        response = start(admin_client, deals_table["slug"], state)
        assert response.status_code == 400
        assert response.get_json()["message"]
    assert (
        admin_client.post(
            f"/exports/start/{deals_table['slug']}", data={"format": "xlsx", "state": "{}"}
        ).status_code
        == 400
    )  # no CSRF token


def test_list_filters_and_sort_become_the_exported_view(app, deals_table, admin_client, worker) -> None:  # noqa: ANN001
    slug, names = deals_table["slug"], deals_table["names"]
    list_page = admin_client.get(f"/t/{slug}/list/?_flt_0_{names['Сумма']}=99").get_data(as_text=True)
    assert 'id="export-xlsx"' in list_page
    args = re.search(r'name="list_args" value="([^"]*)"', list_page).group(1)
    response = start(admin_client, slug, None, list_args=args.replace("&amp;", "&"))
    export = wait_export(response.get_json()["id"])
    rows = workbook_rows(admin_client, export.id)
    assert len(rows) == 2 and "Чужая" in rows[1]


def test_csv_for_russian_excel(app, deals_table, worker) -> None:  # noqa: ANN001
    client = app.test_client()
    assert signed_in(login(client, "staff1", DEMO_PASSWORD))
    client.get("/lang/ru")
    export = wait_export(
        start(client, deals_table["slug"], {"sort": [deals_table["names"]["Сумма"]]}, "csv").get_json()["id"]
    )
    body = client.get(f"/exports/{export.id}/download").data
    text = body.decode("utf-8-sig")
    assert body.startswith(b"\xef\xbb\xbf") and ";" in text.splitlines()[0]
    assert "'=1+2" in text and "1234,50" in text


def test_cancel_a_queued_export_and_delete_it(app, deals_table, admin_client) -> None:  # noqa: ANN001
    # No worker here: the export waits in the queue until cancelled.
    export_id = start(admin_client, deals_table["slug"], {}).get_json()["id"]
    page = admin_client.get(f"/exports/{export_id}").get_data(as_text=True)
    response = admin_client.post(f"/exports/{export_id}/cancel", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(ExportFile, export_id).status == ExportStatus.cancelled
    response = admin_client.post(f"/exports/{export_id}/delete", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(ExportFile, export_id) is None


def test_expired_exports_are_removed_with_their_files(app, deals_table, admin_client, worker) -> None:  # noqa: ANN001
    from exports import service
    from exports.store import file_store

    export = wait_export(start(admin_client, deals_table["slug"], {}).get_json()["id"])
    key = export.storage_key
    assert file_store().exists(key)
    assert service.purge_expired(export.expires_at + dt.timedelta(seconds=1)) >= 1
    db.session.expire_all()
    assert db.session.get(ExportFile, export.id) is None and not file_store().exists(key)


def test_a_worker_killed_mid_export_leaves_a_failed_export_and_no_file(
    app_ctx,
    admin_client,
    env,
    redis_url,  # noqa: ANN001
) -> None:
    """SIGKILL the worker (and its work horse) while it writes: the export is failed with the reason, nothing
    is offered for download, and the partial file is gone."""
    import signal

    import psutil
    from sqlalchemy import insert

    from exports.store import scratch_dir
    from tests.conftest import start_worker, stop_worker
    from tests.test_jobs import _worker_on

    queue = "doomed-exports"
    entity = new_table(f"Много строк {uuid.uuid4().hex[:6]}")
    new_field(entity, "Число", "integer")
    from custom_fields.runtime import refresh

    spec = refresh().entity(entity.slug)
    model = refresh().classes[entity.slug]
    number = next(f for f in spec.fields if f.label == "Число")
    now = dt.datetime.now(dt.UTC)
    rows = [
        {spec.display_field.name: f"Строка {i}", number.name: i, "created_at": now, "updated_at": now}
        for i in range(60_000)
    ]
    db.session.execute(insert(model.__table__), rows)
    db.session.commit()

    process = start_worker({**env, "TABULA_WORKER_HEARTBEAT_SECONDS": "1"}, queue)
    saved = app_ctx.config["TABULA_WORKER_STALE_SECONDS"], app_ctx.config["TABULA_EXPORT_QUEUE"]
    doomed = None
    try:
        doomed = _worker_on(redis_url, queue)
        app_ctx.config["TABULA_WORKER_STALE_SECONDS"], app_ctx.config["TABULA_EXPORT_QUEUE"] = 4, queue
        export_id = start(admin_client, entity.slug, {}).get_json()["id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = admin_client.get(f"/exports/{export_id}/status").get_json()
            if state["done"] > 0:
                break
            time.sleep(0.05)
        assert state["status"] == "running" and 0 < state["done"] < 60_000, state
        assert list(scratch_dir().glob(f"export-{export_id}-*")), "the job writes to a temporary file"

        horses = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGKILL)
        for horse in horses:
            horse.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

        deadline = time.monotonic() + 30
        while (state := admin_client.get(f"/exports/{export_id}/status").get_json())["status"] == "running":
            assert time.monotonic() < deadline, state
            time.sleep(0.5)
        assert state["status"] == "failed" and "Worker stopped" in state["message"]
        assert state["download"] is None
        assert admin_client.get(f"/exports/{export_id}/download").status_code == 404
        assert not list(scratch_dir().glob(f"export-{export_id}-*"))
        db.session.expire_all()
        assert db.session.get(ExportFile, export_id).storage_key is None
    finally:
        app_ctx.config["TABULA_WORKER_STALE_SECONDS"], app_ctx.config["TABULA_EXPORT_QUEUE"] = saved
        if process.poll() is None:
            stop_worker(process)
        elif doomed is not None:
            doomed.register_death()


@pytest.mark.parametrize("where", ["folder", "database"])
def test_file_stores_keep_a_file_whole(app_ctx, tmp_path, where: str) -> None:  # noqa: ANN001
    import os

    from exports.store import DatabaseStore, FolderStore, file_store

    saved = app_ctx.config["TABULA_FILE_STORE"]
    app_ctx.config["TABULA_FILE_STORE"] = "database" if where == "database" else str(tmp_path / "files")
    try:
        store = file_store()
        assert isinstance(store, DatabaseStore if where == "database" else FolderStore)
        content = os.urandom(2 * 1024 * 1024 + 123)
        local = tmp_path / "export.xlsx"
        local.write_bytes(content)
        key = f"exports/1/{uuid.uuid4().hex}.xlsx"
        assert not store.exists(key)
        store.put(local, key)
        assert not local.exists() and store.exists(key)
        assert b"".join(store.chunks(key)) == content
        store.delete(key)
        assert not store.exists(key)
        with pytest.raises(FileNotFoundError):
            b"".join(store.chunks(key))
        if where == "folder":
            with pytest.raises(ValueError):
                store.put(local, "../outside.xlsx")
    finally:
        app_ctx.config["TABULA_FILE_STORE"] = saved


def test_nobody_else_cancels_or_deletes_an_export(app, deals_table, admin_client, monkeypatch) -> None:  # noqa: ANN001
    """Another user's cancel or delete (with a valid form token) is a 404 and changes nothing."""
    # A queue no worker listens on (a worker another test left running takes the default queue's jobs).
    monkeypatch.setitem(app.config, "TABULA_EXPORT_QUEUE", f"nobody-{uuid.uuid4().hex[:8]}")
    export_id = start(admin_client, deals_table["slug"], {}).get_json()["id"]  # stays queued
    other = app.test_client()
    assert signed_in(login(other, "manager", DEMO_PASSWORD))
    token = csrf_token(other.get("/exports/").get_data(as_text=True))
    for action in ("cancel", "delete"):
        assert other.post(f"/exports/{export_id}/{action}", data={"csrf_token": token}).status_code == 404
    anonymous = app.test_client()
    assert anonymous.post(f"/exports/{export_id}/delete").status_code in (302, 400, 401)
    db.session.expire_all()
    export = db.session.get(ExportFile, export_id)
    assert export is not None and export.status == ExportStatus.queued and not export.cancel_requested
