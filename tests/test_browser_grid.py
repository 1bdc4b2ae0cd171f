"""The grid in real chromium, in Russian at 1366x768: an edit refused at its cell, a pasted 3×3 block from
Excel (CRLF, a quoted cell with a tab, a line break and quotes, Russian decimals), a paste past the end that
appends rows, fill-down, undo of a paste, two browsers editing one row (the second is refused, nothing is
lost), Staff's read-only and hidden columns, and hostile labels shown as text. Any console error or dialog
fails the test."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from playwright.sync_api import expect
from sqlalchemy import func, select

from app.extensions import db
from custom_fields import access, records
from custom_fields.access import Actor
from custom_fields.runtime import current, refresh
from tests.conftest import ADMIN_PASSWORD, DEMO_PASSWORD
from tests.tables_helpers import new_field, new_table, unique_label
from tests.test_browser_tables import sign_in

pytestmark = pytest.mark.browser

HOSTILE = '<script>alert("x")</script> \'"'
LONG_CYRILLIC = "Щ" * 100
VIEWPORT = {"width": 1366, "height": 768}


def user_id(username: str) -> int:
    from flask_appbuilder.security.sqla.models import User

    return db.session.scalar(select(User.id).where(User.username == username))


def role_id(name: str) -> int:
    from flask_appbuilder.security.sqla.models import Role

    return db.session.scalar(select(Role.id).where(Role.name == name))


@pytest.fixture
def sheet(app_ctx) -> dict[str, Any]:  # noqa: ANN001
    entity = new_table(unique_label(f"{HOSTILE} Лист"))
    amount = new_field(entity, "Сумма", "money")
    count = new_field(entity, "Количество", "integer")
    kind = new_field(entity, LONG_CYRILLIC, "single_select", settings={"options": [HOSTILE, "Обычный"]})
    note = new_field(entity, "Заметка", "text")
    secret = new_field(entity, "Секрет", "text")
    manager = new_field(entity, "Менеджер", "user")
    trusted = new_field(entity, "Надёжный", "boolean")
    staff = role_id("Staff")
    access.set_field_mode(staff, note.id, "view")
    access.set_field_mode(staff, secret.id, "hidden")
    refresh()
    name = current().entity(entity.slug).display_field.name
    options = {o["label"]: o["id"] for o in kind.settings["options"]}
    saved = records.create_many(
        entity.slug,
        [{name: f"Строка {i}", amount.name: str(10 * i), count.name: i} for i in (1, 2, 3)],
        Actor.for_user_id(user_id("staff1"), "ui"),
    )
    records.update_many(
        entity.slug,
        [(s.id, {note.name: "заметка", secret.name: "тайна"}, None) for s in saved]
        + [(saved[0].id, {kind.name: options[HOSTILE]}, None)],
        Actor.system_job(),
    )
    db.session.rollback()
    return {
        "slug": entity.slug,
        "name": name,
        "amount": amount.name,
        "count": count.name,
        "kind": kind.name,
        "note": note.name,
        "secret": secret.name,
        "manager": manager.name,
        "trusted": trusted.name,
        "ids": [s.id for s in saved],
    }


def watch(page) -> list[str]:  # noqa: ANN001
    problems: list[str] = []

    def on_dialog(dialog) -> None:  # noqa: ANN001
        problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    def on_console(msg) -> None:  # noqa: ANN001
        # A refused or conflicting save answers 422 or 409 by design; chromium logs every such answer.
        expected = "/save" in (msg.location or {}).get("url", "") and any(
            f"status of {code}" in msg.text for code in (409, 422)
        )
        if msg.type == "error" and not expected:
            problems.append(f"console: {msg.text}")

    page.on("dialog", on_dialog)
    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    return problems


def open_grid(browser, live_url: str, slug: str, username: str = "admin", password: str = ADMIN_PASSWORD):  # noqa: ANN001, ANN201
    context = browser.new_context(locale="ru-RU", viewport=VIEWPORT)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_url)
    page = context.new_page()
    problems = watch(page)
    sign_in(page, live_url, username, password)
    page.goto(f"{live_url}/grid/{slug}/")
    page.locator(".tabulator-row").first.wait_for(timeout=10_000)
    return page, problems


def address_state(page) -> dict | None:  # noqa: ANN001
    """The grid's state as its address holds it (None before the first change). Asked of the page: the
    sync API's ``page.url`` moves only while Playwright is called."""
    given = parse_qs(urlsplit(page.evaluate("location.href")).query).get("state")
    return json.loads(given[0]) if given else None


def cell(page, row: int, field: str):  # noqa: ANN001, ANN201
    return page.locator(".tabulator-row").nth(row).locator(f'.tabulator-cell[tabulator-field="{field}"]')


def settle(page, timeout: float = 10) -> None:  # noqa: ANN001
    """Until the grid has no save in flight (wait_for_function cannot run under the CSP)."""
    deadline = time.monotonic() + timeout
    page.wait_for_timeout(100)
    while page.evaluate("window.TabulaGrid.busy()"):
        assert time.monotonic() < deadline, "a save never finished"
        page.wait_for_timeout(50)
    page.wait_for_timeout(100)


def paste(page, text: str) -> None:  # noqa: ANN001
    page.evaluate("text => navigator.clipboard.writeText(text)", text)
    page.keyboard.press("Control+v")
    settle(page)


def stored(slug: str, pk: int) -> dict[str, Any]:
    db.session.rollback()
    model = current().classes[slug]
    row = db.session.execute(select(model.__table__).where(model.id == pk)).mappings().one()
    return {model.__table__.c[k].key: v for k, v in row.items()}


def test_edit_paste_fill_and_undo_in_russian(browser, live_url, sheet, tmp_path) -> None:  # noqa: ANN001
    slug, ids = sheet["slug"], sheet["ids"]
    page, problems = open_grid(browser, live_url, slug)
    # Russian number format and hostile option labels as text.
    assert cell(page, 0, sheet["amount"]).inner_text().replace("\u00a0", " ") == "10,00 RUB"
    assert cell(page, 0, sheet["kind"]).inner_text() == HOSTILE
    assert LONG_CYRILLIC in page.inner_text(".tabulator-header")
    expect(page.locator("#grid-count")).to_have_text("Строк: 3")  # the count comes after the rows

    # A value that does not fit stays in its cell with the message.
    cell(page, 0, sheet["count"]).click()
    page.keyboard.type("abc")
    page.keyboard.press("Enter")
    settle(page)
    refused = cell(page, 0, sheet["count"])
    assert "grid-refused" in refused.get_attribute("class")
    assert refused.inner_text() == "abc" and refused.get_attribute("title")
    assert page.inner_text("#grid-status").strip()
    assert stored(slug, ids[0])[sheet["count"]] == 1

    # F2 edits: a valid value replaces it.
    cell(page, 0, sheet["count"]).click()
    page.keyboard.press("F2")
    page.keyboard.press("Control+a")
    page.keyboard.type("11")
    page.keyboard.press("Enter")
    settle(page)
    assert stored(slug, ids[0])[sheet["count"]] == 11
    assert "grid-refused" not in cell(page, 0, sheet["count"]).get_attribute("class")

    # A 3×3 block from Excel: CRLF, a quoted cell with a tab, a line break and doubled quotes.
    cell(page, 0, sheet["name"]).click()
    block = 'Альфа\t1 234,50\t5\r\n"Бета\t""кв""\r\nстрока"\t2,5\t6\r\nГамма\t0,75\t7\r\n'
    paste(page, block)
    rows = [stored(slug, pk) for pk in ids]
    assert [r[sheet["name"]] for r in rows] == ["Альфа", 'Бета\t"кв"\r\nстрока', "Гамма"]
    assert [r[sheet["amount"]] for r in rows] == [Decimal("1234.50"), Decimal("2.50"), Decimal("0.75")]
    assert [r[sheet["count"]] for r in rows] == [5, 6, 7]
    page.screenshot(path=str(tmp_path / "grid.png"))
    assert cell(page, 0, sheet["amount"]).inner_text().replace("\u00a0", " ") == "1 234,50 RUB"

    # Undo of the paste puts every cell back through the write path.
    page.keyboard.press("Control+z")
    settle(page)
    rows = [stored(slug, pk) for pk in ids]
    assert [r[sheet["name"]] for r in rows] == ["Строка 1", "Строка 2", "Строка 3"]
    assert [r[sheet["count"]] for r in rows] == [11, 2, 3]

    # Fill down: the first row's count into the two below.
    cell(page, 0, sheet["count"]).click()
    cell(page, 2, sheet["count"]).click(modifiers=["Shift"])
    page.keyboard.press("Control+d")
    settle(page)
    assert [stored(slug, pk)[sheet["count"]] for pk in ids] == [11, 11, 11]

    # Past the end: new rows are appended through the write path.
    model = current().classes[slug]
    before = db.session.scalar(select(func.count()).select_from(model))
    cell(page, 2, sheet["name"]).click()
    paste(page, "Последняя\t1\r\nНовая 1\t2\r\nНовая 2\t3,5\r\n")
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(model)) == before + 2
    assert stored(slug, ids[2])[sheet["name"]] == "Последняя"
    assert page.locator(".tabulator-row").count() == 5
    # Undoing that paste: the row it changed comes back, the rows it added go to the recycle bin.
    page.keyboard.press("Control+z")
    settle(page)
    page.wait_for_timeout(300)
    assert stored(slug, ids[2])[sheet["name"]] == "Строка 3"
    db.session.rollback()
    live = select(func.count()).select_from(model).where(model.deleted_at.is_(None))
    assert db.session.scalar(live) == before
    assert page.locator(".tabulator-row").count() == 3
    assert not problems, "\n".join(problems)
    page.context.close()


def test_a_refused_paste_offers_a_choice(browser, live_url, sheet) -> None:  # noqa: ANN001
    slug, ids = sheet["slug"], sheet["ids"]
    page, problems = open_grid(browser, live_url, slug)
    cell(page, 0, sheet["count"]).click()
    paste(page, "4\r\nмного\r\n6\r\n")
    assert page.locator("#grid-choice").is_visible()
    assert "2" in page.inner_text("#grid-choice-text") and "1" in page.inner_text("#grid-choice-text")
    assert [stored(slug, pk)[sheet["count"]] for pk in ids] == [1, 2, 3]  # nothing saved yet
    page.click("#grid-choice-yes")  # save the valid ones
    settle(page)
    assert [stored(slug, pk)[sheet["count"]] for pk in ids] == [4, 2, 6]
    assert "grid-refused" in cell(page, 1, sheet["count"]).get_attribute("class")

    # Ctrl+C copies the selected range as TSV, as it is shown (the refused value as typed).
    cell(page, 0, sheet["name"]).click()
    cell(page, 1, sheet["count"]).click(modifiers=["Shift"])
    page.keyboard.press("Control+c")
    copied = page.evaluate("navigator.clipboard.readText()").replace("\u00a0", " ")
    assert copied == "Строка 1\t10,00 RUB\t4\r\nСтрока 2\t20,00 RUB\tмного\r\n"

    # Deleting the selected rows asks first, naming how many.
    page.click("#grid-delete")
    assert "(2)" in page.inner_text("#grid-choice-text")
    page.click("#grid-choice-yes")
    settle(page)
    assert stored(slug, ids[0])["deleted_at"] is not None and stored(slug, ids[1])["deleted_at"] is not None
    assert stored(slug, ids[2])["deleted_at"] is None
    assert page.locator(".tabulator-row").count() == 1
    assert not problems, "\n".join(problems)
    page.context.close()


def test_two_browsers_edit_one_row_and_nothing_is_lost(browser, live_url, sheet) -> None:  # noqa: ANN001
    slug, first = sheet["slug"], sheet["ids"][0]
    one, problems_one = open_grid(browser, live_url, slug)
    two, problems_two = open_grid(browser, live_url, slug)
    # Two saves within the moment a change takes to reach the other grid: the live stream is off here, so
    # each grid keeps the version it loaded and the version check is what guards (tests/test_browser_live.py
    # shows the grids following each other).
    for page in (one, two):
        page.wait_for_function("window.TabulaGrid.live")
        page.evaluate("window.TabulaGrid.live.close()")
    cell(one, 0, sheet["count"]).click()
    one.keyboard.type("41")
    one.keyboard.press("Enter")
    settle(one)
    assert stored(slug, first)[sheet["count"]] == 41

    cell(two, 0, sheet["count"]).click()
    two.keyboard.type("42")
    two.keyboard.press("Enter")
    settle(two)
    conflict = cell(two, 0, sheet["count"])
    assert "grid-conflict" in conflict.get_attribute("class")
    assert "42" in conflict.inner_text() and "41" in conflict.inner_text()
    assert stored(slug, first)[sheet["count"]] == 41, "the second save overwrote the first"
    assert two.locator("#grid-choice").is_visible()
    two.click("#grid-choice-yes")  # keep mine: saved over the version now known
    settle(two)
    assert stored(slug, first)[sheet["count"]] == 42
    assert "grid-conflict" not in cell(two, 0, sheet["count"]).get_attribute("class")

    # The first browser, still at the old version, is refused in turn and takes the saved value.
    cell(one, 0, sheet["count"]).click()
    one.keyboard.type("43")
    one.keyboard.press("Enter")
    settle(one)
    assert "grid-conflict" in cell(one, 0, sheet["count"]).get_attribute("class")
    one.click("#grid-choice-no")
    assert cell(one, 0, sheet["count"]).inner_text() == "42"
    assert stored(slug, first)[sheet["count"]] == 42
    cell(one, 0, sheet["count"]).click()
    one.keyboard.type("44")
    one.keyboard.press("Enter")
    settle(one)
    assert stored(slug, first)[sheet["count"]] == 44

    # A pasted block over a row changed meanwhile: the list names the cell and the value saved now; the
    # other row's cell can still be saved alone, the changed one is not overwritten.
    cell(two, 0, sheet["count"]).click()
    paste(two, "7\r\n8\r\n")
    assert two.locator("#grid-choice").is_visible()
    assert "Количество: " in two.inner_text("#grid-choice-list") and "44" in two.inner_text(
        "#grid-choice-list"
    )
    two.click("#grid-choice-yes")
    settle(two)
    assert stored(slug, first)[sheet["count"]] == 44 and stored(slug, sheet["ids"][1])[sheet["count"]] == 8
    assert not problems_one and not problems_two, problems_one + problems_two
    one.context.close()
    two.context.close()


def test_staff_sees_read_only_and_no_hidden_columns(browser, live_url, sheet) -> None:  # noqa: ANN001
    slug, ids = sheet["slug"], sheet["ids"]
    # Staff read every record of the table but edit only their own.
    admins = records.create(slug, {sheet["name"]: "Не моя"}, Actor.for_user_id(user_id("admin"), "ui"))
    access.set_table_rights(role_id("Staff"), current().entity(slug).id, {"read_scope": "all"})
    refresh()
    db.session.rollback()
    page, problems = open_grid(browser, live_url, slug, "staff1", DEMO_PASSWORD)
    assert page.locator(".tabulator-row").count() == 4
    other = page.locator(".tabulator-row", has_text="Не моя").locator(f'[tabulator-field="{sheet["name"]}"]')
    assert "grid-readonly" in other.get_attribute("class")
    other.click()
    page.keyboard.type("z")
    page.keyboard.press("Enter")
    settle(page)
    assert stored(slug, admins.id)[sheet["name"]] == "Не моя"
    header = page.inner_text(".tabulator-header")
    assert "Секрет" not in header and "Заметка" in header
    assert page.locator(f'.tabulator-cell[tabulator-field="{sheet["secret"]}"]').count() == 0
    note = cell(page, 0, sheet["note"])
    assert "grid-readonly" in note.get_attribute("class")
    note.click()
    page.keyboard.type("x")
    page.keyboard.press("Enter")
    settle(page)
    assert page.locator(".tabula-grid-editor").count() == 0
    assert stored(slug, ids[0])[sheet["note"]] == "заметка"
    # Pasting over it changes only the editable cells.
    cell(page, 0, sheet["kind"]).click()
    paste(page, "Обычный\tчужое\r\n")
    assert stored(slug, ids[0])[sheet["kind"]] == next(
        o["id"]
        for o in current().entity(slug).field_by_name(sheet["kind"]).options
        if o["label"] == "Обычный"
    )
    assert stored(slug, ids[0])[sheet["note"]] == "заметка"
    assert not problems, "\n".join(problems)
    page.context.close()


def test_sort_filter_search_count_and_hostile_labels(browser, live_url, sheet) -> None:  # noqa: ANN001
    slug = sheet["slug"]
    page, problems = open_grid(browser, live_url, slug)
    assert HOSTILE in page.inner_text(".tabula-grid-title"), "the table's label is shown as text"
    # one read of every row's cell: counting rows first and reading them one by one races a re-render
    names = lambda: page.locator(  # noqa: E731
        f'.tabulator-row [tabulator-field="{sheet["name"]}"]'
    ).all_inner_texts()
    header = page.locator(f'.tabulator-col[tabulator-field="{sheet["count"]}"] .tabulator-col-title')
    header.click()
    page.wait_for_timeout(300)
    header.click()  # descending
    # A sort alone is in the address already (a link copied now opens the grid sorted).
    wait_until(lambda: (address_state(page) or {}).get("sort") == [f"-{sheet['count']}"])
    assert address_state(page)["filter"] is None
    wait_until(lambda: names() == ["Строка 3", "Строка 2", "Строка 1"])

    count_filter = page.locator(
        f'.tabulator-col[tabulator-field="{sheet["count"]}"] .tabulator-header-filter input'
    )
    count_filter.click()
    page.keyboard.type(">1")
    wait_until(lambda: sorted(names()) == ["Строка 2", "Строка 3"])
    expect(page.locator("#grid-count")).to_have_text("Строк: 2")
    count_filter.click()
    page.keyboard.press("Backspace")
    page.keyboard.press("Backspace")
    wait_until(lambda: len(names()) == 3)

    cell(page, 0, sheet["name"]).click()
    page.keyboard.press("Control+f")
    assert page.evaluate("document.activeElement.id") == "grid-search"
    page.keyboard.type("Строка 2")
    wait_until(lambda: names() == ["Строка 2"])
    expect(page.locator("#grid-count")).to_have_text("Строк: 1")

    # Hiding a column; the menu shows hostile labels as text.
    page.click("#grid-columns-button")
    assert LONG_CYRILLIC in page.inner_text("#grid-columns-menu")
    page.locator(f'#grid-columns-menu input[value="{sheet["note"]}"]').uncheck()
    assert "Заметка" not in page.inner_text(".tabulator-header")
    page.locator(f'#grid-columns-menu input[value="{sheet["note"]}"]').check()
    assert "Заметка" in page.inner_text(".tabulator-header")
    assert not problems, "\n".join(problems)
    page.context.close()


def test_export_takes_what_the_grid_shows(browser, live_url, sheet, worker) -> None:  # noqa: ANN001
    """ "Export to Excel" on the grid writes its visible columns in their order, its filter, sort and search:
    the workbook holds what the screen holds."""
    import io

    import openpyxl

    page, problems = open_grid(browser, live_url, sheet["slug"])
    header = page.locator(f'.tabulator-col[tabulator-field="{sheet["count"]}"] .tabulator-col-title')
    header.click()
    page.wait_for_timeout(300)
    header.click()  # descending
    # A sort alone is in the address already (a link copied now opens the grid sorted).
    wait_until(lambda: (address_state(page) or {}).get("sort") == [f"-{sheet['count']}"])
    assert address_state(page)["filter"] is None
    count_filter = page.locator(
        f'.tabulator-col[tabulator-field="{sheet["count"]}"] .tabulator-header-filter input'
    )
    count_filter.click()
    page.keyboard.type(">1")
    page.wait_for_timeout(1000)
    page.click("#grid-columns-button")
    page.locator(f'#grid-columns-menu input[value="{sheet["secret"]}"]').uncheck()
    page.click("#grid-columns-button")
    titles = page.locator(".tabulator-header .tabulator-col[tabulator-field]:visible .tabulator-col-title")
    shown = [t.strip() for t in titles.all_inner_texts() if t.strip()]
    name_title = page.locator(f'.tabulator-col[tabulator-field="{sheet["name"]}"] .tabulator-col-title')
    name_header = name_title.inner_text().strip()
    page.click("#grid-export-xlsx")
    page.wait_for_url("**/exports/*")
    page.locator("#export-download:not(.hidden)").wait_for(timeout=60_000)
    answer = page.request.get(live_url + page.locator("#export-download").get_attribute("href"))
    assert answer.status == 200
    rows = list(openpyxl.load_workbook(io.BytesIO(answer.body())).active.iter_rows(values_only=True))
    assert list(rows[0]) == shown and "Секрет" not in rows[0]
    name, count = rows[0].index(name_header), rows[0].index("Количество")
    assert [(r[name], r[count]) for r in rows[1:]] == [("Строка 3", 3), ("Строка 2", 2)]
    assert not problems, "\n".join(problems)
    page.context.close()


def test_a_saved_view_reopens_by_its_address_for_a_colleague(browser, live_url, sheet) -> None:  # noqa: ANN001
    """Sort, filter, hide and freeze columns, save it as a view shared with Staff (a hostile name), and the
    view's address opens the same grid in a new browser context, for the admin and for a Staff colleague."""
    slug = sheet["slug"]
    page, problems = open_grid(browser, live_url, slug)
    names = lambda p: p.locator(f'.tabulator-row [tabulator-field="{sheet["name"]}"]').all_inner_texts()  # noqa: E731
    header = page.locator(f'.tabulator-col[tabulator-field="{sheet["count"]}"] .tabulator-col-title')
    header.click()
    page.wait_for_timeout(300)
    header.click()  # descending
    # A sort alone is in the address already (a link copied now opens the grid sorted).
    wait_until(lambda: (address_state(page) or {}).get("sort") == [f"-{sheet['count']}"])
    assert address_state(page)["filter"] is None
    page.locator(f'.tabulator-col[tabulator-field="{sheet["count"]}"] .tabulator-header-filter input').click()
    page.keyboard.type(">1")
    page.wait_for_timeout(1000)
    page.click("#grid-columns-button")
    page.locator(f'#grid-columns-menu input[value="{sheet["note"]}"]').uncheck()
    page.select_option("#grid-frozen", "1")
    page.wait_for_timeout(500)
    kept_sort = page.evaluate("TabulaGrid.currentState().sort")
    assert kept_sort == [f"-{sheet['count']}"], "freezing keeps the sort"
    page.click("#grid-columns-button")
    wait_until(lambda: names(page) == ["Строка 3", "Строка 2"])
    assert "view" not in page.url and "state=" in page.url, "the address follows the grid"

    page.click("#grid-views-button")
    view_name = f"Крупные {HOSTILE}"
    page.fill("#grid-view-new input[name=name]", view_name)
    page.locator("#grid-view-roles label", has_text="Staff").locator("input").check()
    page.click("#grid-view-save-as")
    page.wait_for_url("**view=*")
    page.locator(".tabulator-row").first.wait_for()
    address = page.url
    assert "state=" not in address
    assert page.inner_text("#grid-view-name") == view_name
    # The open view can be e-mailed on a schedule: the link names it.
    view_id = address.split("view=")[1].split("&")[0]
    page.click("#grid-views-button")
    schedule = page.locator("#grid-view-schedule")
    assert schedule.is_visible() and schedule.get_attribute("href").endswith(
        f"/exports/schedules/new?view={view_id}"
    )
    schedule.click()
    page.wait_for_url("**/exports/schedules/new?view=*")
    assert page.locator(f'#view_id option[value="{view_id}"]').get_attribute("selected") is not None
    assert not problems, "\n".join(problems)
    page.context.close()

    for username, password in (("admin", ADMIN_PASSWORD), ("staff1", DEMO_PASSWORD)):
        context = browser.new_context(locale="ru-RU", viewport=VIEWPORT)
        other = context.new_page()
        trouble = watch(other)
        sign_in(other, live_url, username, password)
        other.goto(address)
        other.locator(".tabulator-row").first.wait_for(timeout=10_000)
        wait_until(lambda p=other: names(p) == ["Строка 3", "Строка 2"])
        assert other.inner_text("#grid-view-name") == view_name
        note_header = other.locator(f'.tabulator-col[tabulator-field="{sheet["note"]}"]')
        assert note_header.count() == 0 or not note_header.is_visible()
        count_filter = other.locator(
            f'.tabulator-col[tabulator-field="{sheet["count"]}"] .tabulator-header-filter input'
        )
        assert count_filter.input_value() == ">1"
        frozen = other.locator(".tabulator-header .tabulator-col.tabulator-frozen[tabulator-field]")
        assert frozen.count() == 1 and frozen.get_attribute("tabulator-field") == sheet["name"]
        assert not trouble, "\n".join(trouble)
        context.close()


def test_a_user_is_chosen_by_typing_and_shown_by_name(browser, live_url, sheet) -> None:  # noqa: ANN001
    slug, first = sheet["slug"], sheet["ids"][0]
    page, problems = open_grid(browser, live_url, slug)
    cell(page, 0, sheet["manager"]).click()
    page.keyboard.type("staff1")
    page.locator(".tabula-grid-suggest li.active a", has_text="staff1").wait_for(timeout=10_000)
    page.keyboard.press("Enter")
    settle(page)
    assert stored(slug, first)[sheet["manager"]] == user_id("staff1")
    assert "staff1" in cell(page, 0, sheet["manager"]).inner_text()
    assert page.locator(".tabula-grid-suggest").count() == 0
    # Ctrl+Z puts the empty value back.
    page.keyboard.press("Control+z")
    settle(page)
    assert stored(slug, first)[sheet["manager"]] is None
    # A yes/no cell toggles with the space bar; Esc drops a refused value and shows the saved one.
    cell(page, 0, sheet["trusted"]).click()
    page.keyboard.press(" ")
    settle(page)
    assert stored(slug, first)[sheet["trusted"]] is True
    assert cell(page, 0, sheet["trusted"]).inner_text() == "✓"
    cell(page, 1, sheet["count"]).click()
    page.keyboard.type("dva")
    page.keyboard.press("Enter")
    settle(page)
    assert "grid-refused" in cell(page, 1, sheet["count"]).get_attribute("class")
    cell(page, 1, sheet["count"]).click()
    page.keyboard.press("Escape")
    assert cell(page, 1, sheet["count"]).inner_text() == "2"
    assert "grid-refused" not in cell(page, 1, sheet["count"]).get_attribute("class")
    # Ctrl+Enter puts the typed value into every selected cell.
    cell(page, 0, sheet["count"]).click()
    cell(page, 2, sheet["count"]).click(modifiers=["Shift"])
    page.keyboard.type("7")
    page.keyboard.press("Control+Enter")
    settle(page)
    assert [stored(slug, pk)[sheet["count"]] for pk in sheet["ids"]] == [7, 7, 7]
    # The estimated count reads as words.
    assert page.evaluate("window.TabulaGrid.countText(1234567, false)") == "Строк: около 1,2 миллиона"
    assert page.evaluate("window.TabulaGrid.countText(1234, true)").replace("\u00a0", " ") == "Строк: 1 234"
    assert not problems, "\n".join(problems)
    page.context.close()


EXCEL_CASES = [
    ("a\tb\r\nc\td\r\n", [["a", "b"], ["c", "d"]]),
    ('"x\ty"\t"1""2"\r\n"line1\r\nline2"\tz\r\n', [["x\ty", '1"2'], ["line1\r\nline2", "z"]]),
    ("a\tb", [["a", "b"]]),
    ("a\nb\n", [["a"], ["b"]]),
    ("\t\r\n", [["", ""]]),
    ("\r\n", [[""]]),
    ('1 234,50\t"3"""\r\n', [["1 234,50", '3"']]),
]
CELL = st.text(alphabet=st.sampled_from(["a", "Ж", '"', "\t", "\r", "\n", " ", "1", ","]), max_size=8)


def test_the_clipboard_parser_reads_what_excel_writes(browser, live_url) -> None:  # noqa: ANN001
    """Excel's TSV (CRLF, quoted cells with tabs, line breaks and doubled quotes, a last CRLF) parses into
    its cells, and whatever the grid copies parses back into the same cells (on a core table's grid)."""
    page, problems = open_grid(browser, live_url, "companies")
    parse = "text => window.TabulaGrid.parseClipboard(text)"
    for text, cells in EXCEL_CASES:
        assert page.evaluate(parse, text) == cells, text

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.lists(CELL, min_size=1, max_size=4), min_size=1, max_size=4))
    def round_trip(rows: list[list[str]]) -> None:
        copied = page.evaluate("rows => window.TabulaGrid.toClipboard(rows)", rows)
        assert copied.endswith("\r\n")
        assert page.evaluate(parse, copied) == rows

    round_trip()
    assert not problems, "\n".join(problems)
    page.context.close()


def test_rows_load_by_cursor_as_the_user_scrolls(browser, live_url, sheet) -> None:  # noqa: ANN001
    slug = sheet["slug"]
    records.create_many(
        slug, [{sheet["name"]: f"Ряд {i:03}", sheet["count"]: i} for i in range(247)], Actor.system_job()
    )
    db.session.rollback()
    page, problems = open_grid(browser, live_url, slug)
    expect(page.locator("#grid-count")).to_have_text("Строк: 250")
    loaded = "window.TabulaGrid.table.getDataCount()"
    assert page.evaluate(loaded) == 100
    holder = page.locator(".tabulator-tableholder")
    for _ in range(40):  # scroll to the end until every page has come
        holder.evaluate("el => { el.scrollTop = el.scrollHeight; }")
        page.wait_for_timeout(250)
        if page.evaluate(loaded) == 250:
            break
    assert page.evaluate(loaded) == 250
    ids = page.evaluate("window.TabulaGrid.table.getData().map(r => r.id)")
    assert len(set(ids)) == 250 and ids == sorted(ids)
    # Every row got its version (for the optimistic lock of its next save).
    assert (
        page.evaluate(
            "window.TabulaGrid.table.getData().every(r => Number.isInteger(r._version) && r._version >= 1)"
        )
        is True
    )
    assert not problems, "\n".join(problems)
    page.context.close()


def test_every_core_table_opens_as_a_grid(browser, live_url, app_ctx) -> None:  # noqa: ANN001
    slugs = sorted(
        slug for slug, entity in current().entities.items() if entity.is_system and not entity.archived
    )
    context = browser.new_context(locale="ru-RU", viewport=VIEWPORT)
    page = context.new_page()
    problems = watch(page)
    sign_in(page, live_url, "admin", ADMIN_PASSWORD)
    for slug in slugs:
        page.goto(f"{live_url}/grid/{slug}/")
        page.locator("#grid-count:not(:empty)").wait_for(timeout=10_000)
        if page.inner_text("#grid-count") != "Строк: 0":
            page.locator(".tabulator-row").first.wait_for(timeout=10_000)
    assert not problems, "\n".join(problems)
    context.close()


def wait_until(check, timeout: float = 20) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.2)


def test_bulk_edit_of_all_matching_rows_and_of_the_selection(
    browser, live_url, sheet, worker, monkeypatch
) -> None:  # noqa: ANN001
    from views import grid_bulk

    slug, ids = sheet["slug"], sheet["ids"]
    monkeypatch.setattr(grid_bulk, "INLINE_ROWS", 1)  # two rows are "many": a job with a progress bar
    page, problems = open_grid(browser, live_url, slug, "staff1", DEMO_PASSWORD)  # their own rows
    page.locator(f'.tabulator-col[tabulator-field="{sheet["count"]}"] .tabulator-header-filter input').click()
    page.keyboard.type(">1")
    wait_until(lambda: page.inner_text("#grid-count") == "Строк: 2")
    page.click("#grid-bulk-button")
    assert LONG_CYRILLIC in page.inner_text("#grid-bulk-field")
    offered = page.inner_html("#grid-bulk-field")  # neither the hidden field nor the view-only one
    assert sheet["secret"] not in offered and sheet["note"] not in offered and sheet["count"] in offered
    wait_until(lambda: "2" in page.inner_text("#grid-bulk-all-text"))
    assert page.inner_text("#grid-bulk-all-text") == "Все подходящие строки, которые вы можете изменить: 2"
    page.check("#grid-bulk-all")
    page.select_option("#grid-bulk-field", sheet["amount"])
    page.fill("#grid-bulk-value", "5,5")
    page.click("#grid-bulk-apply")
    page.locator("#grid-choice").wait_for(state="visible")
    assert page.inner_text("#grid-choice-text") == "Записать «5,5» в поле «Сумма» у записей: 2?"
    page.click("#grid-choice-yes")
    wait_until(lambda: "Изменены 2 записи." in page.inner_text("#grid-status"), 40)
    assert [stored(slug, pk)[sheet["amount"]] for pk in ids] == [
        Decimal("10"),
        Decimal("5.5"),
        Decimal("5.5"),
    ]
    page.locator(".tabulator-row").nth(1).wait_for()
    assert cell(page, 0, sheet["amount"]).inner_text().replace("\u00a0", " ") == "5,50 RUB"

    # The two rows selected, set inline (few rows), then undone with Ctrl+Z through the write path.
    monkeypatch.setattr(grid_bulk, "INLINE_ROWS", 1000)
    page.click("#grid-bulk-close")
    cell(page, 0, sheet["kind"]).click()
    cell(page, 1, sheet["kind"]).click(modifiers=["Shift"])
    page.click("#grid-bulk-button")
    assert page.inner_text("#grid-bulk-selected-text") == "Выделенные строки (2)"
    assert page.is_checked("#grid-bulk-selected")
    page.select_option("#grid-bulk-field", sheet["kind"])
    page.fill("#grid-bulk-value", HOSTILE)
    page.click("#grid-bulk-apply")
    page.locator("#grid-choice").wait_for(state="visible")
    assert HOSTILE in page.inner_text("#grid-choice-text")
    page.click("#grid-choice-yes")
    wait_until(lambda: "Изменены 2 записи." in page.inner_text("#grid-status"))
    hostile = next(
        o["id"] for o in current().entity(slug).field_by_name(sheet["kind"]).options if o["label"] == HOSTILE
    )
    assert [stored(slug, pk)[sheet["kind"]] for pk in ids[1:]] == [hostile, hostile]
    page.locator(".tabulator-row").nth(1).wait_for()
    wait_until(lambda: cell(page, 1, sheet["kind"]).inner_text() == HOSTILE)
    cell(page, 0, sheet["name"]).click()
    page.keyboard.press("Control+z")
    settle(page)
    assert [stored(slug, pk)[sheet["kind"]] for pk in ids[1:]] == [None, None]
    assert not problems, "\n".join(problems)
    page.context.close()


def test_a_filter_the_heads_cannot_show_has_a_badge_that_clears_it(browser, live_url, sheet) -> None:  # noqa: ANN001
    import json
    from urllib.parse import quote

    slug = sheet["slug"]
    nested = {
        "or": [{"field": sheet["count"], "op": "gt", "value": "2"}, {"field": sheet["kind"], "op": "nempty"}]
    }
    state = {"filter": {"and": [nested]}}
    page, problems = open_grid(browser, live_url, slug)
    page.goto(f"{live_url}/grid/{slug}/?state={quote(json.dumps(state))}")
    page.locator(".tabulator-row").first.wait_for()
    wait_until(lambda: page.inner_text("#grid-count") == "Строк: 2")
    badge = page.locator("#grid-extra-filter")
    assert badge.is_visible()
    assert (
        page.inner_text("#grid-extra-filter-text")
        == f"Также отфильтровано по полям: Количество, {LONG_CYRILLIC}"
    )
    box = badge.bounding_box()
    assert box is not None and box["x"] + box["width"] <= VIEWPORT["width"]
    page.click("#grid-extra-filter-clear")
    wait_until(lambda: page.inner_text("#grid-count") == "Строк: 3")
    assert not badge.is_visible()
    wait_until(lambda: "state=" in page.url)
    assert page.evaluate("window.TabulaGrid.currentState().filter") is None
    assert not problems, "\n".join(problems)
    page.context.close()


def test_the_fill_handle_copies_the_range_down_and_undoes(browser, live_url, sheet) -> None:  # noqa: ANN001
    slug, ids = sheet["slug"], sheet["ids"]
    page, problems = open_grid(browser, live_url, slug)
    cell(page, 0, sheet["amount"]).click()
    cell(page, 0, sheet["count"]).click(modifiers=["Shift"])
    handle = page.locator(".grid-fill-handle")
    handle.wait_for(state="visible")
    start = handle.bounding_box()
    target = cell(page, 2, sheet["count"]).bounding_box()
    assert start is not None and target is not None
    page.mouse.move(start["x"] + 4, start["y"] + 4)
    page.mouse.down()
    page.mouse.move(start["x"] + 4, target["y"] + target["height"] / 2, steps=5)
    assert page.locator(".grid-fill-preview").is_visible()
    page.mouse.up()
    settle(page)
    rows = [stored(slug, pk) for pk in ids]
    assert [r[sheet["amount"]] for r in rows] == [Decimal("10"), Decimal("10"), Decimal("10")]
    assert [r[sheet["count"]] for r in rows] == [1, 1, 1]
    assert cell(page, 2, sheet["count"]).inner_text() == "1"
    page.keyboard.press("Control+z")
    settle(page)
    assert [stored(slug, pk)[sheet["count"]] for pk in ids] == [1, 2, 3]
    assert not problems, "\n".join(problems)
    page.context.close()
