"""The report builder in real chromium, in Russian at 1366 px, over a table with hostile names: a pivot by
a select (rows) and a date by month (columns) with its chart; a figure clicked opens the grid on exactly
its records (the grid's count equals the figure)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from app.extensions import db
from custom_fields import records
from custom_fields.access import Actor
from custom_fields.runtime import refresh
from tests.conftest import ADMIN_PASSWORD
from tests.tables_helpers import new_field, new_table
from tests.test_browser_grid import HOSTILE, LONG_CYRILLIC, VIEWPORT, user_id, watch
from tests.test_browser_tables import sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def book(app_ctx) -> dict[str, Any]:  # noqa: ANN001
    entity = new_table(f"{HOSTILE} отчёт {uuid.uuid4().hex[:6]}")
    stage = new_field(
        entity,
        LONG_CYRILLIC,
        "single_select",
        settings={"options": [{"label": HOSTILE}, {"label": "Выиграна"}]},
    ).name
    when = new_field(entity, f"{HOSTILE} дата", "date").name
    amount = new_field(entity, "Сумма", "money", settings={"currency": "RUB"}).name
    spec = refresh().entity(entity.slug)
    name = spec.display_field.name
    admin = Actor.for_user_id(user_id("admin"))
    rows = [(HOSTILE, "15.11.2026", "10"), (HOSTILE, "20.11.2026", "5"), ("Выиграна", "01.12.2026", "7")]
    for i, (option, day, money) in enumerate(rows):
        records.create(entity.slug, {name: f"Сделка {i}", stage: option, when: day, amount: money}, admin)
    db.session.commit()
    return {"slug": entity.slug, "stage": stage, "when": when}


def test_a_pivot_with_its_chart_clicks_through_to_the_grid(browser, live_url, book) -> None:  # noqa: ANN001
    context = browser.new_context(locale="ru-RU", viewport=VIEWPORT)
    page = context.new_page()
    problems = watch(page)
    sign_in(page, live_url, "admin", ADMIN_PASSWORD)
    page.goto(f"{live_url}/reports/")
    page.select_option("#report-table", book["slug"])
    row_field = page.locator("#report-rows .report-group-field").first
    row_field.locator(f'option[value="{book["stage"]}"]').wait_for(state="attached", timeout=10_000)
    row_field.select_option(book["stage"])
    page.locator("#report-column .report-group-field").select_option(book["when"])
    page.locator("#report-column .report-group-unit").select_option("month")
    page.click("#report-run")
    table = page.locator("#report-table-result")
    table.locator("tbody tr").first.wait_for(timeout=10_000)
    text = table.inner_text()
    assert HOSTILE in text and "Ноябрь 2026" in text and "Всего" in text
    assert page.locator("#report-chart-area canvas").count() == 1  # drawn (its labels on the canvas)
    # The hostile option's row, November: 2 records.
    hostile_row = table.locator("tbody tr", has_text=HOSTILE).first
    figure = hostile_row.locator("td a").first
    assert figure.inner_text() == "2"
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1366, width
    figure.click()
    page.wait_for_url(f"**/grid/{book['slug']}/**")
    page.locator("#grid-count:not(:empty)").wait_for(timeout=10_000)
    assert page.inner_text("#grid-count") == "Строк: 2"
    assert not problems, problems
    context.close()


def test_a_report_is_saved_with_its_period_and_opened_again(browser, live_url, book) -> None:  # noqa: ANN001
    from exports import saved_reports
    from models import SavedReport

    context = browser.new_context(locale="ru-RU", viewport=VIEWPORT)
    page = context.new_page()
    problems = watch(page)
    sign_in(page, live_url, "admin", ADMIN_PASSWORD)
    page.goto(f"{live_url}/reports/")
    page.select_option("#report-table", book["slug"])
    row_field = page.locator("#report-rows .report-group-field").first
    row_field.locator(f'option[value="{book["stage"]}"]').wait_for(state="attached", timeout=10_000)
    row_field.select_option(book["stage"])
    # Only November 2026: the two records of the hostile option.
    page.select_option("#report-period-kind", "range")
    page.select_option("#report-period-field", book["when"])
    page.fill("#report-period-from", "2026-11-01")
    page.fill("#report-period-to", "2026-11-30")
    page.click("#report-run")
    table = page.locator("#report-table-result")
    table.locator("tbody tr").first.wait_for(timeout=10_000)
    assert "Выиграна" not in table.inner_text()
    name = f"{HOSTILE} сохранённый"
    page.fill("#report-name", name)
    page.click("#report-save-button")
    page.locator("#report-save-message:not(:empty)").wait_for(timeout=10_000)
    assert page.inner_text("#report-save-message") == "Отчёт сохранён."
    report_id = int(page.evaluate("new URLSearchParams(window.location.search).get('report')"))
    # Opened again from its address: the same form and figures.
    page.goto(f"{live_url}/reports/?report={report_id}")
    page.locator("#report-table-result tbody tr").first.wait_for(timeout=10_000)
    assert page.input_value("#report-name") == name
    assert page.input_value("#report-period-kind") == "range"
    assert page.input_value("#report-period-from") == "2026-11-01"
    text = page.inner_text("#report-table-result")
    assert HOSTILE in text and "Выиграна" not in text
    assert page.locator("#report-saved option", has_text=name).count() == 1
    assert page.locator("#report-schedule").is_visible()
    # Deleted after a second click: gone from the list and the database.
    page.click("#report-delete")
    assert page.inner_text("#report-delete") == "Удалить этот отчёт?"  # asks on the button, no dialog
    page.click("#report-delete")
    page.locator("#report-save-message", has_text="Отчёт удалён.").wait_for(timeout=10_000)
    assert page.locator("#report-saved option", has_text=name).count() == 0
    db.session.expire_all()
    assert db.session.get(SavedReport, report_id) is None
    assert saved_reports.listed(Actor.for_user_id(user_id("admin"))) is not None
    assert not problems, problems
    context.close()


def test_a_standard_report_opens_from_the_reports_screen_and_clicks_through(browser, live_url) -> None:  # noqa: ANN001
    context = browser.new_context(locale="ru-RU", viewport=VIEWPORT)
    page = context.new_page()
    problems = watch(page)
    sign_in(page, live_url, "admin", ADMIN_PASSWORD)
    page.goto(f"{live_url}/reports/")
    page.locator("#report-saved option[value='std:won_lost']").wait_for(state="attached", timeout=10_000)
    assert page.locator("#report-saved optgroup[label='Стандартные отчёты'] option").count() >= 7
    page.select_option("#report-saved", "std:won_lost")
    table = page.locator("#report-table-result")
    table.locator("tbody tr").first.wait_for(timeout=10_000)
    assert page.input_value("#report-name") == "Выигранные и проигранные сделки"
    assert "Закрытые сделки по менеджерам" in page.inner_text("#report-shared-note")
    assert page.locator("#report-save-button").is_hidden()  # built in: only "Save as new"
    assert "?standard=won_lost" in page.url
    figure = table.locator("tbody tr td a").first
    count = figure.inner_text().replace("\u00a0", "").replace(" ", "")
    figure.click()
    page.wait_for_url("**/grid/deals/**")
    page.locator("#grid-count:not(:empty)").wait_for(timeout=10_000)
    assert page.inner_text("#grid-count") == f"Строк: {count}"
    assert not problems, problems
    context.close()
