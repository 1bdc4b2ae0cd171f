"""The import's happy path in real chromium: upload a cp1251 CSV into a table, see the preview follow a
changed delimiter, check every row, run it with the progress bar, read the result, undo it. No console
error on the way."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect

from custom_fields.access import Actor
from custom_fields.query import TableQuery
from tests.conftest import ADMIN_PASSWORD
from tests.tables_helpers import new_field, new_table
from tests.test_browser_tables import sign_in

pytestmark = pytest.mark.browser


def test_an_admin_imports_a_csv_and_undoes_it(browser, live_url, app_ctx, worker, tmp_path: Path) -> None:  # noqa: ANN001
    tag = uuid.uuid4().hex[:6]
    entity = new_table(f"Клиенты {tag}")
    new_field(entity, "Сумма", "decimal")
    csv_file = tmp_path / "клиенты.csv"
    csv_file.write_bytes(
        f"Name;Сумма\r\nООО Ромашка {tag};1 234.56\r\nИП Сидоров {tag};много\r\n".encode("cp1251")
    )

    context = browser.new_context(locale="en-US", viewport={"width": 1366, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, live_url, "admin", ADMIN_PASSWORD)
    page.goto(f"{live_url}/imports/?table={entity.slug}")
    page.set_input_files("#import-file", str(csv_file))
    page.click("#import-upload button[type=submit]")
    page.wait_for_url(f"{live_url}/imports/*")
    page.wait_for_selector("#import-preview tbody tr")
    assert page.inner_text("#import-found").startswith("2 rows") and "cp1251" in page.inner_text(
        "#import-found"
    )
    assert page.locator("#import-preview tbody tr").count() == 2
    # a wrong delimiter: one column; back to detection: two, mapped by their titles
    page.select_option("#import-delimiter", ",")
    expect(page.locator("#import-preview thead tr:first-child th")).to_have_count(2)
    page.select_option("#import-delimiter", "")
    expect(page.locator("#import-preview thead tr:first-child th")).to_have_count(3)
    assert page.locator(".import-map").nth(1).input_value() != ""

    page.click("#import-check")
    page.wait_for_selector("#import-check-result p")
    assert "1 to add" in page.inner_text("#import-check-result")
    assert "row 3" in page.inner_text("#import-check-result")
    page.click("#import-start")
    page.wait_for_selector("#import-result:not(:empty)", timeout=60_000)
    assert "1 added" in page.inner_text("#import-result") and "1 refused" in page.inner_text("#import-result")
    assert page.is_visible("#import-refused") and page.is_visible("#import-undo")
    admin = Actor.of_user(app_ctx.appbuilder.sm.find_user(username="admin"), "ui")
    assert [r["id"] for r in TableQuery(entity.slug, admin).stream()]

    page.click("#import-undo")
    expect(page.locator("#import-status")).to_have_text("Undone", timeout=60_000)  # a worker undid it
    assert page.is_hidden("#import-undo") and page.inner_text("#import-message") == "The import was undone."
    assert list(TableQuery(entity.slug, admin).stream()) == []
    assert not problems, problems
    context.close()


def test_an_admin_makes_a_new_table_from_a_workbook_in_russian(
    browser, live_url, app_ctx, worker, tmp_path: Path
) -> None:  # noqa: ANN001
    from tests.test_import_new_table import TITLES, supplier_book

    tag = uuid.uuid4().hex[:6]
    book = tmp_path / "Поставщики.xlsx"
    book.write_bytes(supplier_book(tag, rows=12))
    context = browser.new_context(locale="ru-RU", viewport={"width": 1366, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("dialog", lambda dialog: problems.append(f"dialog: {dialog.message}") or dialog.dismiss())
    sign_in(page, live_url, "admin", ADMIN_PASSWORD)
    page.goto(f"{live_url}/imports/?table=%2Bnew")
    assert page.input_value("#import-table") == "+new"
    page.set_input_files("#import-file", str(book))
    page.click("#import-upload button[type=submit]")
    page.wait_for_url(f"{live_url}/imports/*")
    page.wait_for_selector("#import-preview tbody tr")
    assert page.inner_text("h2").startswith("Новая таблица из файла")
    assert page.is_visible("#import-new-table") and not page.is_visible("#import-rows-panel")
    assert page.input_value("#import-table-name") == "Поставщики"
    assert page.input_value("#import-display") == "0"  # the first text column names the records
    types = page.locator(".import-type")
    assert types.count() == len(TITLES) and types.nth(3).input_value() == "date"
    assert [page.locator(".import-map").nth(i).input_value() for i in range(len(TITLES))] == ["new:"] * len(
        TITLES
    )
    page.locator(".import-map").nth(7).select_option("")  # the empty column is left out
    types.nth(1).select_option("text")  # the tax ids stay text
    page.fill("#import-table-name", f"Поставщики {tag}")
    page.click("#import-create")
    page.wait_for_selector("#import-rows-panel:not(.hidden)")
    assert page.inner_text("h2").startswith(f"Импорт в таблицу «Поставщики {tag}»")
    page.wait_for_selector("#import-preview tbody tr")
    page.click("#import-start")
    page.wait_for_selector("#import-result:not(:empty)", timeout=60_000)
    assert page.inner_text("#import-status") == "Завершена" and "12" in page.inner_text("#import-result")

    from custom_fields.runtime import refresh

    entity = next(e for e in refresh().entities.values() if e.label == f"Поставщики {tag}")
    by_label = {str(f.label): f for f in entity.fields}
    assert (
        by_label["ИНН"].type == "text" and by_label["С нами с"].type == "date" and "Заметка" not in by_label
    )
    admin = Actor.of_user(app_ctx.appbuilder.sm.find_user(username="admin"), "ui")
    assert len(list(TableQuery(entity.slug, admin).stream())) == 12
    assert not problems, problems
    context.close()
