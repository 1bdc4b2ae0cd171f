"""The dashboard in real chromium, in Russian at 1366 px: a head of sales signs in and lands on it, clicks the
over-90-days bar of receivables aging and lands on exactly the overdue invoices behind it; a figure's count
equals the grid's; the period narrows the cards and stays in the address; a report with a hostile name is
pinned from the report builder, shown as text, moved and unpinned."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from sqlalchemy import delete

from app.extensions import db
from custom_fields import buckets, records
from custom_fields.access import Actor
from custom_fields.query import TableQuery
from exports import dashboard, saved_reports
from models import DashboardLayout
from tests.conftest import DEMO_PASSWORD
from tests.test_browser_grid import HOSTILE, LONG_CYRILLIC, VIEWPORT, user_id, watch
from tests.test_browser_tables import sign_in

pytestmark = pytest.mark.browser

#: The chart's bars as ECharts laid them out: for each series, its name and each bar's centre, value and
#: address (the page's own chart instance; the click itself is a real mouse click on the canvas).
BARS = """(ref) => {
  const area = document.querySelector(`[data-ref="${ref}"] .tabula-card-chart`);
  const chart = echarts.getInstanceByDom(area);
  const box = area.getBoundingClientRect();
  return chart.getOption().series.map((series, s) => ({
    name: series.name,
    bars: series.data.map((d, i) => {
      const at = chart.getModel().getSeriesByIndex(s).getData().getItemLayout(i);
      return {value: d.value, url: d.url,
              x: box.left + at.x + at.width / 2, y: box.top + at.y + at.height / 2};
    })
  }));
}"""


@pytest.fixture
def overdue_book(app, app_ctx) -> dict[str, Any]:  # noqa: ANN001
    """staff1's invoice 100 days overdue (the manager's team), and the dashboard as shipped for the
    manager."""
    db.session.execute(delete(DashboardLayout).where(DashboardLayout.user_id == user_id("manager")))
    staff1 = Actor.for_user_id(user_id("staff1"))
    due = (buckets.today().toordinal() - 100, buckets.today().toordinal() - 5)
    import datetime as dt

    for number, days in ((f"ПР-{uuid.uuid4().hex[:6]}", due[0]), (f"ПР-{uuid.uuid4().hex[:6]}", due[1])):
        day = dt.date.fromordinal(days).isoformat()
        records.create("invoices", {"number": number, "amount": "1234.50", "due_on": day}, staff1)
    db.session.commit()
    from flask_babel import force_locale

    with app.test_request_context(), force_locale("ru"):
        over_90 = buckets.bucket_label(91, buckets.OVERDUE)
    return {"over_90": over_90}


def settled_bars(page: Any, ref: str) -> list[dict[str, Any]]:  # noqa: ANN401
    """The card's bars once laid out (a card draws when its figures arrive)."""
    before = page.evaluate(BARS, ref)
    for _attempt in range(50):
        page.wait_for_timeout(100)
        now = page.evaluate(BARS, ref)
        if now == before:
            return now
        before = now
    raise AssertionError("the chart never settled")


def drilled(url: str, who: str) -> tuple[int, Any]:
    """The records behind a figure's address, as ``who`` reads them: their count and total balance."""
    parts = urlsplit(url)
    state = json.loads(parse_qs(parts.query)["state"][0])
    query = TableQuery(parts.path.split("/")[2], Actor.for_user_id(user_id(who))).where(state["filter"])
    [found] = query.aggregate([], {"n": ("count", None), "balance": ("sum", "balance")})
    return found["n"], found["balance"]


def test_a_head_of_sales_clicks_the_over_90_bar_and_lands_on_its_invoices(
    browser, live_url, overdue_book
) -> None:  # noqa: ANN001
    context = browser.new_context(locale="ru-RU", viewport=VIEWPORT)
    page = context.new_page()
    problems = watch(page)
    sign_in(page, live_url, "manager", DEMO_PASSWORD)
    assert page.inner_text("h2") == "Сводка"  # the home page
    aging = '[data-ref="std:receivables_managers"]'
    page.locator(f"{aging} canvas").first.wait_for(timeout=15_000)
    assert page.locator(".tabula-dashboard-card").count() == len(dashboard.DEFAULT_CARDS)
    assert page.inner_text(f"{aging} h3") == "Дебиторская задолженность по срокам: менеджеры"
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1366, width
    series = settled_bars(page, "std:receivables_managers")
    [over] = [s for s in series if s["name"] == overdue_book["over_90"]]
    bar = next(b for b in over["bars"] if b["value"])
    count, balance = drilled(bar["url"], "manager")
    assert count >= 1 and abs(float(balance) - bar["value"]) < 0.005  # the bar is its invoices' balance
    page.mouse.click(bar["x"], bar["y"])
    page.wait_for_url("**/grid/invoices/**")
    assert unquote(page.url).endswith(unquote(bar["url"]).split("/grid/invoices/")[1].lstrip("/"))
    page.locator("#grid-count:not(:empty)").wait_for(timeout=10_000)
    assert page.inner_text("#grid-count") == f"Строк: {count}"
    assert not problems, problems
    context.close()


def test_period_figures_pins_and_hostile_names(browser, live_url, overdue_book) -> None:  # noqa: ANN001
    manager = Actor.for_user_id(user_id("manager"))
    name = f"{HOSTILE} {LONG_CYRILLIC}"[:100]
    report = saved_reports.save(manager, name, {"table": "invoices", "rows": ["status"], "chart": "pie"})
    context = browser.new_context(locale="ru-RU", viewport=VIEWPORT)
    page = context.new_page()
    problems = watch(page)
    sign_in(page, live_url, "manager", DEMO_PASSWORD)
    # The period narrows the cards and stays in the address.
    page.select_option("#dashboard-period", "month")
    assert "period=month" in page.url
    tasks = '[data-ref="std:open_tasks"]'
    page.locator(f"{tasks} .tabula-card-figure a").wait_for(timeout=15_000)
    # open tasks are a picture of now, whatever the period
    assert "на сегодня" in page.inner_text(f"{tasks} .tabula-card-note")
    page.reload()
    assert page.input_value("#dashboard-period") == "month"
    # A figure clicks through to as many records.
    figure = page.locator(f"{tasks} .tabula-card-figure a")
    figure.wait_for(timeout=15_000)
    count = figure.inner_text().replace("\u00a0", "").replace(" ", "")
    figure.click()
    page.wait_for_url("**/grid/tasks/**")
    page.locator("#grid-count:not(:empty)").wait_for(timeout=10_000)
    assert page.inner_text("#grid-count") == f"Строк: {count}"
    # Pinned from the report builder: the hostile name is text, on the builder and on the card.
    page.goto(f"{live_url}/reports/?report={report.id}")
    page.locator("#report-pin").wait_for(state="visible", timeout=10_000)
    page.click("#report-pin")
    page.locator("#report-save-message", has_text="Закреплено").wait_for(timeout=10_000)
    page.goto(f"{live_url}/")
    card = page.locator(f'[data-ref="saved:{report.id}"]')
    card.locator("canvas").first.wait_for(timeout=15_000)
    assert card.locator("h3").inner_text() == name
    assert page.locator(".tabula-dashboard-card").last.get_attribute("data-ref") == f"saved:{report.id}"
    card.get_by_role("button", name="Сдвинуть вперёд").click()
    before_last = len(dashboard.DEFAULT_CARDS) - 1
    page.locator(".tabula-dashboard-card").nth(before_last).and_(card).wait_for(timeout=10_000)
    card.get_by_role("button", name="Открепить от сводки").click()
    card.wait_for(state="detached", timeout=10_000)
    assert page.locator(f'#dashboard-offered option[value="saved:{report.id}"]').count() == 1
    page.reload()
    assert page.locator(f'[data-ref="saved:{report.id}"]').count() == 0  # kept on the server
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1366, width
    assert not problems, problems
    context.close()
    saved_reports.delete(report.id, manager)


def test_plan_vs_fact_in_russian_clicks_through_to_the_won_deals(browser, live_url, app_ctx) -> None:  # noqa: ANN001
    """The demo's plans against its won deals: a salesperson's won amount opens exactly their won deals
    (the grid counts as many as the "won deals" figure)."""
    context = browser.new_context(locale="ru-RU", viewport=VIEWPORT)
    page = context.new_page()
    problems = watch(page)
    sign_in(page, live_url, "manager", DEMO_PASSWORD)
    page.goto(f"{live_url}/reports/")
    page.click("text=План и факт")
    page.wait_for_url("**/reports/plan*")
    row = page.locator("#plan-table tbody tr").first
    row.wait_for(timeout=15_000)
    assert page.inner_text("#plan-table thead").split("\t")[:2] == ["Менеджер по продажам", "Валюта"]
    rows = page.locator("#plan-table tbody tr")
    won = [i for i in range(rows.count()) if rows.nth(i).locator("td").nth(6).inner_text().strip()]
    assert won, "the demo's salespeople won deals this month"
    cells = rows.nth(won[0]).locator("td")
    won_count = cells.nth(6).inner_text().replace("\u00a0", "").replace(" ", "")
    cells.nth(2).locator("a").click()  # the won amount
    page.wait_for_url("**/grid/deals/**")
    page.locator("#grid-count:not(:empty)").wait_for(timeout=10_000)
    assert page.inner_text("#grid-count") == f"Строк: {won_count}"
    page.go_back()
    page.select_option("#plan-period", "year")
    assert "period=year" in page.url
    page.locator("#plan-chart canvas").first.wait_for(timeout=10_000)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1366, width
    assert not problems, problems
    context.close()


#: The funnel layers of the first conversion chart: each one's value, address and centre on the page.
LAYERS = """() => {
  const area = document.querySelector(".tabula-conversion-chart");
  const chart = echarts.getInstanceByDom(area);
  const box = area.getBoundingClientRect();
  const data = chart.getModel().getSeriesByIndex(0).getData();
  return chart.getOption().series[0].data.map((d, i) => {
    const points = data.getItemLayout(i).points;
    const x = points.reduce((s, p) => s + p[0], 0) / points.length;
    const y = points.reduce((s, p) => s + p[1], 0) / points.length;
    return {value: d.value, url: d.url, x: box.left + x, y: box.top + y};
  });
}"""


def test_stage_conversion_in_russian_opens_the_deals_behind_a_stage(browser, live_url, app_ctx) -> None:  # noqa: ANN001
    """The demo's funnel: a click on the second stage's layer of the chart (a real mouse click) lands on the
    grid with as many deals as reached it; a "lost after" figure opens its deals too."""
    context = browser.new_context(locale="ru-RU", viewport=VIEWPORT)
    page = context.new_page()
    problems = watch(page)
    sign_in(page, live_url, "manager", DEMO_PASSWORD)
    page.goto(f"{live_url}/reports/")
    page.click("text=Конверсия по этапам")
    page.wait_for_url("**/reports/conversion*")
    page.locator(".tabula-conversion-chart canvas").first.wait_for(timeout=15_000)
    headers = page.locator(".tabula-conversion-table thead").first.inner_text().strip().split("\t")
    assert headers == [
        "Этап",
        "Дошли",
        "От предыдущего этапа, %",
        "От первого этапа, %",
        "Проиграны после него",
    ]
    page.wait_for_timeout(300)
    layers = page.evaluate(LAYERS)
    second = layers[1]
    assert second["value"] > 0 and second["url"], layers
    page.mouse.click(second["x"], second["y"])
    page.wait_for_url("**/grid/deals/**")
    page.locator("#grid-count:not(:empty)").wait_for(timeout=10_000)
    assert page.inner_text("#grid-count").replace("\u00a0", " ") == f"Строк: {second['value']}"
    page.go_back()
    rows = page.locator(".tabula-conversion-table tbody tr")
    rows.first.wait_for(timeout=10_000)
    lost = [i for i in range(rows.count()) if rows.nth(i).locator("td").nth(3).locator("a").count()]
    assert lost, "the demo loses deals after some stage"
    figure = rows.nth(lost[0]).locator("td").nth(3)
    count = figure.inner_text().replace("\u00a0", "").replace(" ", "")
    figure.locator("a").click()
    page.wait_for_url("**/grid/deals/**")
    page.locator("#grid-count:not(:empty)").wait_for(timeout=10_000)
    assert page.inner_text("#grid-count") == f"Строк: {count}"
    page.go_back()
    page.select_option("#conversion-period", "year")
    assert "period=year" in page.url
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1366, width
    assert not problems, problems
    context.close()
