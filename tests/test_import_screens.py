"""The import screens over HTTP: upload, preview with other read options, new fields from columns, check,
run, result, refused rows, undo; and the refusals: no import right, someone else's import, no CSRF token."""

from __future__ import annotations

import io
import time
import uuid
from typing import Any

import openpyxl
import pytest
import xlsxwriter
from sqlalchemy import func, select

from app.extensions import db
from custom_fields.runtime import current, refresh
from models import Field, ImportItem, ImportRun
from tests.conftest import csrf_token
from tests.tables_helpers import new_field, new_table


def upload(client, slug: str, data: bytes, name: str = "файл.csv") -> Any:  # noqa: ANN001
    token = csrf_token(client.get("/imports/").get_data(as_text=True))
    return client.post(
        "/imports/upload",
        data={"csrf_token": token, "table": slug, "file": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
    )


def post(client, url: str, body: dict) -> Any:  # noqa: ANN001
    token = csrf_token(client.get("/imports/").get_data(as_text=True))
    return client.post(url, json=body, headers={"X-CSRFToken": token})


def wait_status(client, import_id: int, timeout: float = 60) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"/imports/{import_id}/status").get_json()
        if state["status"] not in ("queued", "running", "undoing"):
            return state
        time.sleep(0.2)
    raise AssertionError(state)


def supplier_book(tag: str) -> bytes:
    out = io.BytesIO()
    book = xlsxwriter.Workbook(out)
    sheet = book.add_worksheet("Поставщики")
    day = book.add_format({"num_format": "dd.mm.yyyy"})
    sheet.write_row(0, 0, ["Name", "ИНН", "Город", "С нами с", "Скидка"])
    cities = [("Москва", 45000), ("Казань", 45100), ("Москва", 45200), ("Казань", 45300)]
    for i, (city, when) in enumerate(cities):
        sheet.write_string(i + 1, 0, f"Поставщик {tag} {i}")
        sheet.write_string(i + 1, 1, f"77070838{i:02d}")
        sheet.write_string(i + 1, 2, city)
        sheet.write_number(i + 1, 3, when, day)
        sheet.write_string(i + 1, 4, "=1+2" if i == 3 else "нет")
    book.close()
    return out.getvalue()


def test_an_admin_uploads_maps_new_fields_checks_runs_and_undoes(app_ctx, admin_client, worker) -> None:  # noqa: ANN001
    tag = uuid.uuid4().hex[:6]
    entity = new_table(f"Поставщики {tag}")
    response = upload(admin_client, entity.slug, supplier_book(tag), "поставщики.xlsx")
    assert response.status_code == 302, response.get_data(as_text=True)
    import_id = int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    page = admin_client.get(f"/imports/{import_id}")
    assert page.status_code == 200 and "поставщики.xlsx" in page.get_data(as_text=True)

    shown = admin_client.get(f"/imports/{import_id}/preview").get_json()
    assert shown["titles"] == ["Name", "ИНН", "Город", "С нами с", "Скидка"]
    assert shown["sheets"] == ["Поставщики"] and shown["rows_total"] == 4
    assert shown["mapping"] == {"0": current().entity(entity.slug).display_field.name}
    inferred = [c["type"] for c in shown["inferred"]]
    assert inferred == ["text", "text", "single_select", "date", "single_select"]
    other = admin_client.get(f"/imports/{import_id}/preview?header_row=2").get_json()
    assert other["titles"][0] == f"Поставщик {tag} 0" and other["rows_total"] == 3

    added = post(admin_client, f"/imports/{import_id}/fields", {
        "options": {}, "columns": [{"index": 1, "label": "ИНН", "type": "text"},
                                   {"index": 2, "label": "Город", "type": "single_select"},
                                   {"index": 3, "label": "С нами с", "type": "date"}],
    })  # fmt: skip
    assert added.status_code == 200, added.get_json()
    mapping = added.get_json()["mapping"]
    refresh()
    city = current().entity(entity.slug).field_by_name(mapping["2"])
    assert city.type == "single_select" and [o["label"] for o in city.options] == ["Москва", "Казань"]

    settings = {"options": {}, "mapping": mapping, "mode": "create", "match_on": "", "on_error": "skip"}
    checked = post(admin_client, f"/imports/{import_id}/check", settings).get_json()
    assert (checked["rows"], checked["create"], checked["refuse"]) == (4, 4, 0)
    started = post(admin_client, f"/imports/{import_id}/start", settings)
    assert started.status_code == 202, started.get_json()
    state = wait_status(admin_client, import_id)
    assert state["status"] == "finished" and state["created"] == 4 and state["can_undo"]
    since = current().entity(entity.slug).field_by_name(mapping["3"])
    from custom_fields.query import TableQuery
    from exports.import_rows import ImportRefused  # noqa: F401  (the screens' refusals)
    from tests.test_imports import admin

    rows = list(TableQuery(entity.slug, admin()).stream())
    dates = sorted(str(r[since.name]) for r in rows)
    assert dates == ["2023-03-15", "2023-06-23", "2023-10-01", "2024-01-09"]

    undone = post(admin_client, f"/imports/{import_id}/undo", {})  # handed to a worker
    assert undone.status_code == 202 and undone.get_json()["status"] in ("undoing", "undone")
    state = wait_status(admin_client, import_id)
    assert state["status"] == "undone" and state["status_label"] == "Undone" and not state["can_undo"]
    assert list(TableQuery(entity.slug, admin()).stream()) == []
    assert post(admin_client, f"/imports/{import_id}/undo", {}).status_code == 422


def test_refused_rows_come_back_as_a_workbook(app_ctx, admin_client, worker) -> None:  # noqa: ANN001
    tag = uuid.uuid4().hex[:6]
    entity = new_table(f"Счета {tag}")
    new_field(entity, "Сумма", "decimal")
    data = f"Name;Сумма\r\nА {tag};1 234,56\r\n=SUM(A1:A2);много\r\n".encode("cp1251")
    import_id = int(upload(admin_client, entity.slug, data).headers["Location"].rstrip("/").rsplit("/", 1)[1])
    shown = admin_client.get(f"/imports/{import_id}/preview").get_json()
    assert len(shown["mapping"]) == 2
    settings = {"options": {}, "mapping": shown["mapping"], "mode": "create", "on_error": "skip"}
    assert post(admin_client, f"/imports/{import_id}/start", settings).status_code == 202
    state = wait_status(admin_client, import_id)
    assert (state["created"], state["refused"]) == (1, 1)
    assert state["errors"]["Сумма"]["first"][0][0] == 3
    response = admin_client.get(state["refused_file"])
    assert response.status_code == 200 and response.headers["Content-Disposition"].startswith("attachment;")
    sheet = openpyxl.load_workbook(io.BytesIO(response.data)).active
    assert sheet.cell(2, 1).value == "=SUM(A1:A2)"
    assert sheet.cell(2, 1).data_type == "s"  # text, not a formula
    assert sheet.cell(1, 4).value == "What is wrong" and "number" in sheet.cell(2, 4).value


def test_without_the_import_right_or_on_someone_elses_import_nothing_happens(
    app_ctx, admin_client, staff_client, worker
) -> None:  # noqa: ANN001
    before = db.session.scalar(select(func.count()).select_from(ImportRun))
    refused = upload(staff_client, "contacts", b"First name\r\nX\r\n")
    assert refused.status_code == 302
    assert "may not import" in staff_client.get("/imports/").get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(ImportRun)) == before

    tag = uuid.uuid4().hex[:6]
    entity = new_table(f"Чужой {tag}")
    response = upload(admin_client, entity.slug, f"Name\r\nА {tag}\r\n".encode())
    import_id = int(response.headers["Location"].rsplit("/", 1)[1])
    fields_before = db.session.scalar(select(func.count()).select_from(Field))
    settings = {"options": {}, "mapping": {"0": "name"}, "mode": "create", "on_error": "skip"}
    for url, body in (
        (f"/imports/{import_id}/start", settings),
        (f"/imports/{import_id}/check", settings),
        (f"/imports/{import_id}/undo", {}),
        (f"/imports/{import_id}/fields", {"columns": [{"index": 0, "label": "X", "type": "text"}]}),
    ):
        assert post(staff_client, url, body).status_code == 404, url
    assert staff_client.get(f"/imports/{import_id}").status_code == 404
    assert staff_client.get(f"/imports/{import_id}/preview").status_code == 404
    db.session.expire_all()
    assert db.session.get(ImportRun, import_id).status == "uploaded"
    assert db.session.scalar(select(func.count()).select_from(Field)) == fields_before
    # and without the CSRF token, the owner's own start is refused
    assert admin_client.post(f"/imports/{import_id}/start", json=settings).status_code == 400
    db.session.expire_all()
    assert db.session.get(ImportRun, import_id).status == "uploaded"
    items = select(func.count()).select_from(ImportItem).where(ImportItem.import_id == import_id)
    assert not db.session.scalar(items)


@pytest.mark.parametrize(
    "body",
    [
        {"mapping": {"0": "no_such_field"}, "mode": "create"},
        {"mapping": {}, "mode": "create"},
        {"mapping": "x", "mode": "upsert", "match_on": "x"},
        {"mapping": {"0": "name"}, "mode": "teleport"},
        {"mapping": {"0": "name"}, "mode": "create", "options": {"encoding": "latin-1"}},
        {"mapping": {"0": "name"}, "mode": "create", "options": {"header_row": "x"}},
    ],
)
def test_bad_settings_are_refused_with_a_message(app_ctx, admin_client, body: dict) -> None:  # noqa: ANN001
    entity = new_table(f"Плохие {uuid.uuid4().hex[:6]}")
    import_id = int(upload(admin_client, entity.slug, b"Name\r\nX\r\n").headers["Location"].rsplit("/", 1)[1])
    for action in ("check", "start"):
        response = post(admin_client, f"/imports/{import_id}/{action}", body)
        assert response.status_code == 422 and response.get_json()["message"], response.get_data(as_text=True)
    assert post(admin_client, f"/imports/{import_id}/fields", {"columns": "x"}).status_code == 422


def test_with_redis_unreachable_an_import_and_its_undo_are_refused_and_left_as_they_were(
    app_ctx, admin_client
) -> None:  # noqa: ANN001
    """(Service level: with Redis down no request gets past the session check, which lives in Redis too.)"""
    from exports import imports
    from jobs import JobQueueUnavailable
    from tests.test_imports import admin

    tag = uuid.uuid4().hex[:6]
    entity = new_table(f"Без Redis {tag}")
    response = upload(admin_client, entity.slug, f"Name\r\nА {tag}\r\n".encode())
    item = db.session.get(ImportRun, int(response.headers["Location"].rsplit("/", 1)[1]))
    mapping = {"0": current().entity(entity.slug).display_field.name}
    imports.configure(item, admin(), options={}, mapping=mapping, mode="create", match_on=None,
                      on_error="skip")  # fmt: skip
    saved = app_ctx.config["REDIS_URL"]
    app_ctx.extensions.pop("tabula_redis", None)
    app_ctx.config["REDIS_URL"] = "redis://127.0.0.1:1/0"
    try:
        with pytest.raises(JobQueueUnavailable, match="Redis is unreachable"):
            imports.start(item, admin())
        db.session.expire_all()
        assert (item.status, item.job_run_id) == ("uploaded", None)  # as it was: may be started again
        item.status = "finished"  # as if it had run: its undo meets the same dead Redis
        db.session.commit()
        with pytest.raises(JobQueueUnavailable, match="Redis is unreachable"):
            imports.request_undo(item, admin())
        db.session.expire_all()
        assert (item.status, item.job_run_id) == ("finished", None)
    finally:
        app_ctx.config["REDIS_URL"] = saved
        app_ctx.extensions.pop("tabula_redis", None)
