"""The live grid in real chromium, in Russian at 1366 px, with two browsers on two web processes sharing Redis
(the test's own server and a gunicorn with threads): an edit in one, fifty rows written at once, a new field
and a deletion appear in the other without a reload; the one editing a cell the other changed is told so and
keeps their typed text; a Staff user's grid shows nothing of rows out of their reach; killing and restarting
the web process a browser follows loses no change. Any console error or dialog fails the test."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.extensions import db
from custom_fields import records, service
from custom_fields.access import Actor
from custom_fields.runtime import current, refresh
from exports import imports
from tests.conftest import ADMIN_PASSWORD, DEMO_PASSWORD, free_port, start_gunicorn
from tests.tables_helpers import new_field, new_table, unique_label
from tests.test_board import book  # noqa: F401, F811 (a fixture)
from tests.test_browser_grid import HOSTILE, LONG_CYRILLIC, VIEWPORT, cell, open_grid, user_id, watch
from tests.test_browser_tables import sign_in
from tests.test_imports import uploaded, wait

pytestmark = pytest.mark.browser
SECOND_ADMIN_PASSWORD = "second-Админ-1"


def start_threaded(env: dict[str, str], port: int) -> subprocess.Popen:
    """One gunicorn worker in a process group of its own (killed whole, master and worker, as a crash)."""
    return start_gunicorn(env, port, "-w", "1", own_group=True)


@pytest.fixture
def threaded_process(app, env: dict[str, str]) -> Iterator[dict[str, Any]]:  # noqa: ANN001
    port = free_port()
    server = {
        "port": port,
        "base": f"http://127.0.0.1:{port}",
        "env": env,
        "process": start_threaded(env, port),
    }
    yield server
    # Killed: a crash, not a stop.
    os.killpg(server["process"].pid, signal.SIGKILL)
    server["process"].wait(timeout=30)


@pytest.fixture
def second_admin(app_ctx) -> str:  # noqa: ANN001
    from flask_appbuilder.security.sqla.models import Role

    username = f"admin_{uuid.uuid4().hex[:6]}"
    admin_role = db.session.scalar(select(Role).where(Role.name == "Admin"))
    assert app_ctx.appbuilder.sm.add_user(
        username, "Вторая", "Админка", f"{username}@example.com", admin_role, SECOND_ADMIN_PASSWORD
    )
    return username


@pytest.fixture
def deals_sheet(app_ctx) -> dict[str, Any]:  # noqa: ANN001
    entity = new_table(unique_label(f"{HOSTILE} Сделки"))
    amount = new_field(entity, "Сумма", "integer")
    stage = new_field(entity, LONG_CYRILLIC, "single_select", settings={"options": [HOSTILE, "Новая"]})
    refresh()
    name = current().entity(entity.slug).display_field.name
    saved = records.create_many(
        entity.slug,
        [{name: f"Сделка {i}", amount.name: i} for i in (1, 2, 3)],
        Actor.for_user_id(user_id("staff1"), "ui"),
    )
    db.session.rollback()
    return {"entity": entity, "slug": entity.slug, "name": name, "amount": amount.name, "stage": stage.name,
            "ids": [s.id for s in saved]}  # fmt: skip


def row_named(page, sheet: dict[str, Any], name: str):  # noqa: ANN001, ANN201
    named = page.locator(
        f'.tabulator-cell[tabulator-field="{sheet["name"]}"]', has_text=re.compile(f"^{name}$")
    )
    return page.locator(".tabulator-row").filter(has=named)


def test_two_browsers_on_two_processes_follow_each_other(  # noqa: PLR0915
    app_ctx,
    worker,  # noqa: ANN001
    tmp_path,  # noqa: ANN001
    browser,
    live_url: str,
    threaded_process: dict[str, Any],
    second_admin: str,
    deals_sheet: dict[str, Any],
) -> None:  # noqa: ANN001
    sheet = deals_sheet
    one, one_problems = open_grid(browser, live_url, sheet["slug"], "admin", ADMIN_PASSWORD)
    two, two_problems = open_grid(
        browser, threaded_process["base"], sheet["slug"], second_admin, SECOND_ADMIN_PASSWORD
    )
    staff, staff_problems = open_grid(
        browser, threaded_process["base"], sheet["slug"], "staff1", DEMO_PASSWORD
    )
    try:
        # Presence: each sees the other on the toolbar, in Russian.
        expect(two.locator("#grid-live")).to_contain_text("Здесь также", timeout=5_000)
        expect(two.locator("#grid-live")).to_contain_text("admin")
        expect(one.locator("#grid-live")).to_contain_text("Вторая Админка")

        # An edit in one browser shows in the other, in place.
        first = sheet["ids"][0]
        target = cell(one, 0, sheet["amount"])
        target.dblclick()
        one.keyboard.press("Control+A")
        one.keyboard.type("777")
        one.keyboard.press("Enter")
        expect(cell(one, 0, sheet["amount"])).to_have_text("777", timeout=5_000)
        expect(
            row_named(two, sheet, "Сделка 1").locator(f'[tabulator-field="{sheet["amount"]}"]')
        ).to_have_text("777", timeout=3_000)

        # Fifty rows written at once (as a paste or an import writes them) appear, and the count follows.
        admin = Actor.for_user_id(user_id("admin"), "ui")
        records.create_many(sheet["slug"], [{sheet["name"]: f"Пачка {i}"} for i in range(50)], admin)
        db.session.rollback()
        expect(row_named(two, sheet, "Пачка 49")).to_have_count(1, timeout=3_000)
        expect(two.locator("#grid-count")).to_contain_text("53", timeout=3_000)
        # Staff reach only their own rows: nothing of the admin's fifty shows there, nor in its count.
        staff.wait_for_timeout(500)
        expect(row_named(staff, sheet, "Пачка 0")).to_have_count(0)
        expect(staff.locator("#grid-count")).to_contain_text("3")

        # An import run by an RQ worker (another process again) shows as it commits.
        label = str(current().entity(sheet["slug"]).display_field.label)
        item = uploaded(tmp_path, sheet["slug"], f"{label}\r\nИмпорт 1\r\nИмпорт 2\r\n".encode(), admin)
        mapping = imports.preview(item, admin)["mapping"]
        imports.configure(
            item, admin, options={}, mapping=mapping, mode="create", match_on=None, on_error="skip"
        )
        imports.start(item, admin)
        expect(row_named(two, sheet, "Импорт 2")).to_have_count(1, timeout=15_000)
        assert wait(item.id).created == 2

        # A new field becomes a column without a reload.
        region = service.add_field(sheet["entity"].id, "Регион", "text", user_id=user_id("admin"))
        refresh()
        db.session.rollback()
        expect(two.locator(f'.tabulator-col[tabulator-field="{region.name}"]')).to_have_count(
            1, timeout=5_000
        )
        expect(two.locator(f'.tabulator-col[tabulator-field="{region.name}"]')).to_contain_text("Регион")

        # Editing a cell someone else changes: told who and to what; the typed text stays; the save is
        # refused by the version check, not silently overwritten.
        second = sheet["ids"][1]
        two.evaluate("id => TabulaGrid.table.scrollToRow(id, 'center', false)", second)
        two_cell = row_named(two, sheet, "Сделка 2").locator(f'[tabulator-field="{sheet["amount"]}"]')
        # (the row is scrolled into view; the grid's own API opens its editor, as a double click does)
        two.evaluate(
            "([id, f]) => TabulaGrid.table.getRow(id).getCell(f).edit(true)", [second, sheet["amount"]]
        )
        assert two.evaluate("JSON.stringify(TabulaGrid.editedCell().id)") == str(second)
        two.keyboard.press("Control+A")
        two.keyboard.type("555")
        version = records.update(sheet["slug"], second, {sheet["amount"]: 999}, admin, expected_version=None)
        db.session.rollback()
        assert version.version > 0
        expect(two.locator("#grid-status")).to_contain_text("999", timeout=3_000)
        expect(two.locator("#grid-status")).to_contain_text("admin")
        assert two.locator("input.tabula-grid-editor").input_value() == "555"
        two.keyboard.press("Enter")
        expect(two_cell).to_contain_text("999", timeout=5_000)  # the saved value shown beside the typed one
        expect(two_cell).to_contain_text("555")

        # A deletion elsewhere removes the row.
        two.evaluate("id => TabulaGrid.table.scrollToRow(id, 'center', false)", sheet["ids"][2])
        expect(row_named(two, sheet, "Сделка 3")).to_have_count(1)
        records.delete(sheet["slug"], sheet["ids"][2], admin)
        db.session.rollback()
        expect(row_named(two, sheet, "Сделка 3")).to_have_count(0, timeout=3_000)
        expect(row_named(staff, sheet, "Сделка 3")).to_have_count(0, timeout=3_000)

        # The web process the second browser follows dies; a change meanwhile; it comes back on the same port.
        os.killpg(threaded_process["process"].pid, signal.SIGKILL)
        threaded_process["process"].wait(timeout=10)
        expect(two.locator("#grid-live")).to_contain_text("Переподключение", timeout=10_000)
        records.update(sheet["slug"], first, {sheet["amount"]: 4242}, admin, expected_version=None)
        db.session.rollback()
        threaded_process["process"] = start_threaded(threaded_process["env"], threaded_process["port"])
        two.evaluate("id => TabulaGrid.table.scrollToRow(id, 'center', false)", first)
        expect(
            row_named(two, sheet, "Сделка 1").locator(f'[tabulator-field="{sheet["amount"]}"]')
        ).to_have_text(re.compile(r"^4\D?242$"), timeout=15_000)
        expect(two.locator("#grid-live")).not_to_contain_text("Переподключение", timeout=10_000)
    finally:
        for page in (one, two, staff):
            page.context.close()
    # The pages on the killed process saw their stream cut and their reconnects refused: the network's doing.
    cut = ("ERR_INCOMPLETE_CHUNKED_ENCODING", "ERR_CONNECTION_REFUSED")
    assert one_problems == []
    assert [p for p in two_problems + staff_problems if not any(c in p for c in cut)] == []


def test_the_board_moves_the_card_and_the_record_page_says_it_changed(  # noqa: PLR0913
    app_ctx,  # noqa: ANN001
    browser,  # noqa: ANN001
    live_url: str,
    threaded_process: dict[str, Any],
    second_admin: str,
    book: dict[str, Any],  # noqa: F811 (the fixture imported above)
) -> None:
    one = browser.new_context(locale="ru-RU", viewport=VIEWPORT).new_page()
    two = browser.new_context(locale="ru-RU", viewport=VIEWPORT).new_page()
    problems_one, problems_two = watch(one), watch(two)
    try:
        sign_in(one, live_url, "staff1", DEMO_PASSWORD)
        one.goto(f"{live_url}/board/{book['pipeline']}")
        sign_in(two, threaded_process["base"], second_admin, SECOND_ADMIN_PASSWORD)
        two.goto(f"{threaded_process['base']}/t/deals/show/{book['mine1']}")
        expect(two.locator("#record-live-mark")).to_be_hidden()
        third = browser.new_context(locale="ru-RU", viewport=VIEWPORT).new_page()
        sign_in(third, live_url, "admin", ADMIN_PASSWORD)
        third.goto(f"{live_url}/t/deals/show/{book['mine1']}")
        # Presence on a record's page: who else has this record open.
        expect(two.locator("#record-live-mark")).to_contain_text("Здесь также: Admin", timeout=5_000)

        card = f'.tabula-board-card[data-deal-id="{book["mine1"]}"]'
        expect(one.locator(f'.tabula-board-column[data-stage-id="{book["new"]}"] {card}')).to_have_count(1)
        records.update(
            "deals",
            book["mine1"],
            {"stage_id": book["talks"]},
            Actor.for_user_id(user_id("admin"), "ui"),
            expected_version=None,
        )
        db.session.rollback()
        # The board moves the card (and its counts); the record's page says who changed it.
        expect(one.locator(f'.tabula-board-column[data-stage-id="{book["talks"]}"] {card}')).to_have_count(
            1, timeout=3_000
        )
        expect(one.locator(f'.tabula-board-column[data-stage-id="{book["new"]}"] {card}')).to_have_count(0)
        expect(
            one.locator(f'.tabula-board-column[data-stage-id="{book["talks"]}"] .board-count')
        ).to_have_text("2")
        expect(two.locator("#record-live-banner")).to_be_visible(timeout=3_000)
        expect(two.locator("#record-live-text")).to_contain_text("только что изменил(а) эту запись")
        expect(two.locator("#record-live-text")).to_contain_text("admin")
        two.click("#record-live-reload")
        expect(two.locator("#record-live-banner")).to_be_hidden()
        # A change of another deal says nothing on this record's page.
        records.update(
            "deals",
            book["mine2"],
            {"amount": "201"},
            Actor.for_user_id(user_id("admin"), "ui"),
            expected_version=None,
        )
        db.session.rollback()
        expect(
            one.locator(f"{card.replace(str(book['mine1']), str(book['mine2']))} .board-card-amount")
        ).to_contain_text("201", timeout=3_000)
        expect(two.locator("#record-live-banner")).to_be_hidden()
        third.context.close()
    finally:
        one.context.close()
        two.context.close()
    assert problems_one == [] and problems_two == []
