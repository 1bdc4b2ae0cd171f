"""Screens at 1366 x 768 (the common office laptop), in Russian (the longer labels), as an admin (the most
menu entries): the top bar is one row, wide lists scroll inside their panel with the row actions and the first
column fixed, and the deal board scrolls inside itself instead of growing the page."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.tables_helpers import insert, new_field, new_table, unique_label
from tests.test_browser_tables import sign_in

pytestmark = pytest.mark.browser
WIDTH, HEIGHT = 1366, 768


@pytest.fixture
def wide_table(app_ctx) -> str:  # noqa: ANN001
    entity = new_table(unique_label("Широкая таблица"))
    names = [new_field(entity, f"Длинное название поля {n}", "text").name for n in range(14)]
    for _ in range(3):
        insert(entity, **{name: f"Значение, которое не помещается в узкую колонку {name}" for name in names})
    return entity.slug


def box(page, selector: str) -> dict[str, Any]:  # noqa: ANN001
    return page.locator(selector).first.bounding_box()


def test_top_bar_lists_and_board_fit_a_laptop_screen(browser, live_url, wide_table) -> None:  # noqa: ANN001
    page = browser.new_context(locale="ru-RU", viewport={"width": WIDTH, "height": HEIGHT}).new_page()
    sign_in(page, live_url, "admin", ADMIN_PASSWORD)
    page.goto(f"{live_url}/lang/ru")

    for path in ("/t/companies/list/", f"/t/{wide_table}/list/"):
        page.goto(f"{live_url}{path}")
        bar = box(page, "header.top")
        assert bar["height"] <= 64, f"the top bar wraps on {path}: {bar['height']} px high"
        menu, search = box(page, "header.top ul.nav"), box(page, "#global-search")
        assert abs(search["y"] - menu["y"]) <= 2, f"the search box is not on the menu's row: {search} {menu}"
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= WIDTH, f"{path} is wider than the screen: {width} px"
        # Every menu entry can be seen and clicked: none slides under the search box.
        entries = page.locator("header.top ul.tabula-menu > li")
        assert entries.count() >= 7
        for n in range(entries.count()):
            entry = entries.nth(n).bounding_box()
            assert entry["x"] + entry["width"] <= search["x"], f"menu entry {n} is under the search box"
        assert page.locator("header.top ul.tabula-menu > li").first.inner_text().strip() == "CRM"

    # The wide list scrolls inside its panel; the row actions and the first column stay in view.
    scroller = page.locator("div.table-responsive").first
    assert scroller.evaluate("el => el.scrollWidth > el.clientWidth + 200"), "the wide table does not scroll"
    first_cell = "table tbody tr:first-child td:nth-child(2)"
    before = box(page, first_cell)["x"]
    scroller.evaluate("el => { el.scrollLeft = el.scrollWidth; }")
    page.wait_for_timeout(100)
    assert abs(box(page, first_cell)["x"] - before) <= 1, "the first column scrolled away"
    actions = box(page, "table tbody tr:first-child td:first-child .btn")
    assert actions["x"] >= scroller.bounding_box()["x"], "the row actions scrolled away"
    last = box(page, "table thead th:last-child")
    assert last["x"] + last["width"] <= WIDTH, "the last column cannot be reached"

    # The board: a bounded page; the columns scroll sideways inside the board, cards inside their column.
    page.goto(f"{live_url}/board/")
    assert page.evaluate("document.documentElement.scrollHeight") <= HEIGHT + 40, "the board grows the page"
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
    board = page.locator("#deal-board")
    assert board.evaluate("el => getComputedStyle(el).overflowX") == "auto"
    assert page.locator(".tabula-board-column .board-cards").first.evaluate(
        "el => getComputedStyle(el).overflowY"
    ) in ("auto", "scroll")
    page.context.close()
