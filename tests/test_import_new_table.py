"""A new table made from a file, on both databases with a real worker: the columns become fields of the
types inferred (or chosen), one column names the records, the import then fills the table; refusals change
nothing (no table is left behind); only administrators may do it, over HTTP as in the service."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import pytest
import xlsxwriter
from sqlalchemy import func, select

from app.extensions import db
from custom_fields.query import TableQuery
from custom_fields.runtime import current
from exports import imports
from exports.import_rows import ImportRefused
from models import Entity, ImportRun, ImportStatus
from tests.test_import_screens import post, upload, wait_status
from tests.test_imports import admin, uploaded, user, wait

TITLES = ["Поставщик", "ИНН", "Оборот", "С нами с", "Активен", "E-mail", "Категория", "Заметка"]


def supplier_book(tag: str, rows: int = 40) -> bytes:
    """Suppliers as an accountant's workbook: real dates (serials), numbers as text with spaces and commas,
    да/нет, a category of few values, a blank row and an empty column."""
    out = io.BytesIO()
    book = xlsxwriter.Workbook(out)
    sheet = book.add_worksheet("Поставщики")
    day = book.add_format({"num_format": "dd.mm.yyyy"})
    sheet.write_row(0, 0, TITLES)
    line = 1
    for i in range(rows):
        if i == 5:
            line += 1  # a blank row in the middle
        sheet.write_string(line, 0, f"ООО «Поставщик {tag} {i}»")
        sheet.write_string(line, 1, f"77070838{i:02d}")
        sheet.write_string(line, 2, f"{1_000_234 + i:,},50".replace(",", " ", 2))
        sheet.write_number(line, 3, 45000 + i, day)
        sheet.write_string(line, 4, "да" if i % 2 else "нет")
        sheet.write_string(line, 5, f"s{i}-{tag}@example.ru")
        sheet.write_string(line, 6, ("Опт", "Розница", "Дилер")[i % 3])
        line += 1
    book.close()
    return out.getvalue()


def columns_as_inferred(shown: dict[str, Any], leave_out: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    return [
        {"index": i, "label": title, "type": shown["inferred"][i]["type"]}
        for i, title in enumerate(shown["titles"])
        if i not in leave_out
    ]


def tables() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(Entity))


def test_a_workbook_becomes_a_table_with_the_right_types_and_fills_it(
    app_ctx, worker, tmp_path: Path  # noqa: ANN001
) -> None:  # fmt: skip
    tag = uuid.uuid4().hex[:6]
    actor = admin()
    item = uploaded(tmp_path, None, supplier_book(tag), name="Поставщики.xlsx")
    assert item.entity_id is None and imports.is_new_table(item)
    shown = imports.preview(item, actor)
    assert shown["new_table"] and shown["titles"] == TITLES and shown["rows_total"] == 40
    inferred = [c["type"] for c in shown["inferred"]]
    assert inferred[2:7] == ["decimal", "date", "boolean", "email", "single_select"], inferred
    # Nothing to import into yet: the rows wait for the table.
    with pytest.raises(ImportRefused, match="Create the table"):
        imports.check(item, actor, options={}, mapping={"0": "x"}, mode="create", match_on=None)

    label = f"Поставщики {tag}"
    imports.create_table(
        item, actor, label=label, display=0, columns=columns_as_inferred(shown, leave_out=(7,)), options={},
    )  # fmt: skip
    entity = current().by_id[item.entity_id]
    assert entity.label == label and not imports.is_new_table(item)
    by_label = {str(f.label): f for f in entity.fields}
    assert entity.display_field.label == "Поставщик" and entity.display_field.type == "text"
    assert {name: by_label[name].type for name in TITLES[2:7]} == dict(
        zip(TITLES[2:7], inferred[2:7], strict=True)
    )
    assert "Заметка" not in by_label  # the column left out
    assert [o["label"] for o in by_label["Категория"].options] == ["Опт", "Розница", "Дилер"]
    assert item.mapping == {str(i): by_label[t].name for i, t in enumerate(TITLES[:7])}

    imports.configure(
        item, actor, options=item.options, mapping=item.mapping, mode="create", match_on=None, on_error="all"
    )
    imports.start(item, actor)
    item = wait(item.id)
    assert item.status == ImportStatus.finished, item.message
    assert (item.created, item.refused) == (40, 0)
    rows = {r[entity.display_field.name]: r for r in TableQuery(entity.slug, actor).stream()}
    third = rows[f"ООО «Поставщик {tag} 3»"]
    assert str(third[by_label["Оборот"].name]) == "1000237.50"
    assert str(third[by_label["С нами с"].name]) == "2023-03-18"
    assert third[by_label["Активен"].name] is True
    assert third[by_label["Категория"].name] == by_label["Категория"].options[0]["id"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # two fields of one label
        (
            lambda cols, _d: [dict(c, label=cols[1]["label"]) if c["index"] == 7 else c for c in cols],
            "already has",
        ),
        (lambda cols, _d: [dict(cols[0], type="link")] + cols[1:], "Choose the columns"),  # not a file type
        (lambda cols, _d: [dict(cols[0], index=99)] + cols[1:], "Choose the columns"),  # no such column
        (lambda cols, _d: [c for c in cols if c["index"] != 0], "names the records"),  # display left out
        (lambda _c, _d: "всё", "Choose the columns"),
    ],
)
def test_a_refused_table_leaves_nothing_behind(app_ctx, tmp_path: Path, change: Any, message: str) -> None:  # noqa: ANN001
    actor = admin()
    item = uploaded(tmp_path, None, supplier_book(uuid.uuid4().hex[:6], rows=3), name="s.xlsx")
    shown = imports.preview(item, actor)
    before = tables()
    with pytest.raises(ImportRefused, match=message):
        imports.create_table(
            item, actor, label=f"Т {uuid.uuid4().hex[:6]}", display=0,
            columns=change(columns_as_inferred(shown), 0), options={},
        )  # fmt: skip
    assert tables() == before
    db.session.expire_all()
    assert imports.is_new_table(db.session.get(ImportRun, item.id))


def test_a_table_name_already_taken_is_refused_and_the_import_can_try_again(app_ctx, tmp_path: Path) -> None:  # noqa: ANN001
    actor = admin()
    item = uploaded(tmp_path, None, supplier_book(uuid.uuid4().hex[:6], rows=3), name="s.xlsx")
    shown = imports.preview(item, actor)
    before = tables()
    with pytest.raises(ImportRefused):
        imports.create_table(
            item, actor, label="Contacts", display=0, columns=columns_as_inferred(shown), options={}
        )
    assert tables() == before
    name = f"Новая {uuid.uuid4().hex[:6]}"
    imports.create_table(item, actor, label=name, display=0, columns=columns_as_inferred(shown), options={})
    assert tables() == before + 1
    with pytest.raises(ImportRefused, match="already been made"):
        imports.create_table(
            item, actor, label=name + "2", display=0, columns=columns_as_inferred(shown), options={}
        )
    assert tables() == before + 1


def test_only_administrators_make_tables_from_files(app_ctx, tmp_path: Path) -> None:  # noqa: ANN001
    staff = user("staff1")
    with pytest.raises(ImportRefused, match="administrator"):
        uploaded(tmp_path, None, supplier_book("x", rows=2), actor=staff, name="s.xlsx")
    assert not list(tmp_path.iterdir())  # the upload was not kept


def test_over_http_an_admin_makes_the_table_and_runs_the_import(
    app_ctx, admin_client, staff_client, worker
) -> None:  # noqa: ANN001
    tag = uuid.uuid4().hex[:6]
    mine = admin_client.get("/imports/").get_data(as_text=True)
    assert 'value="+new"' in mine and 'value="+new"' not in staff_client.get("/imports/").get_data(
        as_text=True
    )
    refused = upload(staff_client, "+new", supplier_book(tag, rows=2), "s.xlsx")
    assert refused.status_code == 302 and "/imports/?table=" in refused.headers["Location"]

    response = upload(admin_client, "+new", supplier_book(tag, rows=5), "Поставщики.xlsx")
    assert response.status_code == 302, response.get_data(as_text=True)
    import_id = int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    page = admin_client.get(f"/imports/{import_id}").get_data(as_text=True)
    assert 'id="import-new-table"' in page and 'value="Поставщики"' in page
    shown = admin_client.get(f"/imports/{import_id}/preview").get_json()
    assert shown["new_table"] and shown["mapping"] == {}
    body = {"label": f"Поставщики {tag}", "display": 0, "columns": columns_as_inferred(shown), "options": {}}
    assert post(staff_client, f"/imports/{import_id}/table", body).status_code == 404  # someone else's import
    made = post(admin_client, f"/imports/{import_id}/table", body)
    assert made.status_code == 200, made.get_json()
    assert made.get_json()["url"].endswith(f"/imports/{import_id}")
    assert post(admin_client, f"/imports/{import_id}/table", body).status_code == 422  # made once
    page = admin_client.get(f"/imports/{import_id}").get_data(as_text=True)
    assert 'id="import-new-table"' not in page and f"Поставщики {tag}" in page

    shown = admin_client.get(f"/imports/{import_id}/preview").get_json()
    assert len(shown["mapping"]) == len(TITLES) and not shown["new_table"]
    settings = {"options": {}, "mapping": shown["mapping"], "mode": "create", "on_error": "skip"}
    assert post(admin_client, f"/imports/{import_id}/start", settings).status_code == 202
    state = wait_status(admin_client, import_id)
    assert state["status"] == "finished" and state["created"] == 5, state
