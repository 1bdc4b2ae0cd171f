"""Hostile labels in real chromium: a table whose labels, option labels and values are markup runs nothing on
its list (a filter in the URL, Search -> Add filter on each field), add, edit and show pages; every answer
carries a Content-Security-Policy without 'unsafe-inline' scripts, and no screen breaks it (console)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from app.extensions import db
from custom_fields import service
from custom_fields.runtime import current, refresh
from models import Field
from models.crm import Company
from tests.conftest import ADMIN_PASSWORD
from tests.tables_helpers import insert, new_field, new_table, unique_label
from tests.test_browser_tables import sign_in

pytestmark = pytest.mark.browser

HOSTILE = '<script>alert("label")</script>'
HOSTILE_IMG = '"><img src=x onerror=alert("img")>'


@pytest.fixture
def hostile_table(app_ctx) -> dict[str, Any]:  # noqa: ANN001
    entity = new_table(unique_label(f"{HOSTILE} таблица"))
    text = new_field(entity, f"{HOSTILE} текст", "text")
    single = new_field(
        entity, f"{HOSTILE_IMG} выбор", "single_select", settings={"options": [HOSTILE, HOSTILE_IMG]}
    )
    multi = new_field(entity, f"{HOSTILE_IMG} много", "multi_select", settings={"options": [HOSTILE, "да"]})
    options = {o["label"]: o["id"] for o in single.settings["options"]}
    multi_ids = [o["id"] for o in multi.settings["options"]]
    record = insert(
        entity,
        **{
            db.session.get(Field, entity.display_field_id).name: HOSTILE,
            text.name: HOSTILE_IMG,
            single.name: options[HOSTILE_IMG],
            multi.name: f",{','.join(multi_ids)},",
        },
    )
    return {"slug": entity.slug, "fields": [text.name, single.name, multi.name], "record": record}


@pytest.fixture
def hostile_core_label(app_ctx) -> Iterator[str]:  # noqa: ANN001
    """A core field (Companies' region) renamed by an admin to markup; renamed back afterwards."""
    region = next(f for f in current().entity("companies").fields if f.name == "region")
    original = region.label
    service.update_field(region.id, label=f"{HOSTILE} регион")
    refresh()
    yield region.name
    service.update_field(region.id, label=original)
    refresh()


def watch(page) -> list[str]:  # noqa: ANN001
    """Problems a page shows: any dialog (a script ran), console errors (CSP violations among them)."""
    problems: list[str] = []

    def on_dialog(dialog) -> None:  # noqa: ANN001
        problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on(
        "console",
        lambda msg: problems.append(f"console at {page.url}: {msg.text}") if msg.type == "error" else None,
    )
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    return problems


def test_hostile_labels_run_nothing_under_the_csp(
    browser, live_url, hostile_table, hostile_core_label
) -> None:  # noqa: ANN001
    slug, fields, record = hostile_table["slug"], hostile_table["fields"], hostile_table["record"]
    page = browser.new_context(locale="en-US", viewport={"width": 1366, "height": 768}).new_page()
    problems = watch(page)
    sign_in(page, live_url, "admin", ADMIN_PASSWORD)

    answer = page.goto(f"{live_url}/t/{slug}/list/")
    policy = answer.headers.get("content-security-policy", "")
    script_src = next((part for part in policy.split(";") if part.strip().startswith("script-src")), "")
    assert script_src and "'unsafe-inline'" not in script_src, policy

    for name in fields:  # a filter in the URL builds its row from the label
        page.goto(f"{live_url}/t/{slug}/list/?_flt_0_{name}=x")
        page.wait_for_load_state("load")
        assert page.locator("#filter_form .remove-filter").count() >= 1
    page.goto(f"{live_url}/t/{slug}/list/")
    page.locator("a.accordion-toggle").first.click()  # Search
    for name in fields:  # -> Add filter on each field
        page.locator("#filter_form button.dropdown-toggle").first.click()
        page.locator(f'#filter_form a.filter[name="{name}"]').click()
    rows = page.locator("#filter_form table.filters tr")
    assert rows.count() == len(fields)
    assert HOSTILE in page.inner_text("#filter_form"), "the label is shown as text"

    for path in ("add", f"edit/{record}", f"show/{record}"):
        page.goto(f"{live_url}/t/{slug}/{path}")
        page.wait_for_load_state("load")
        page.wait_for_timeout(200)
    assert HOSTILE in page.inner_text("body")

    # A core label renamed to markup: list heads, filters, forms and show pages of a core table.
    page.goto(f"{live_url}/t/companies/list/")
    assert HOSTILE in page.inner_text("table thead")
    for path in (f"list/?_flt_0_{hostile_core_label}=x", "add", "show/1", "edit/1"):
        page.goto(f"{live_url}/t/companies/{path}")
    assert not problems, "\n".join(problems)
    page.context.close()


def test_behaviours_moved_out_of_inline_handlers_work_under_the_csp(
    browser, live_url, hostile_table, app_ctx
) -> None:  # noqa: ANN001
    """What inline handlers did before now lives in static scripts: confirmations ask, the field-type
    settings follow the chosen type."""
    slug, record = hostile_table["slug"], hostile_table["record"]
    entity_id = current().entity(slug).id
    page = browser.new_context(locale="en-US").new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, live_url, "admin", ADMIN_PASSWORD)

    asked: list[str] = []
    page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.goto(f"{live_url}/t/{slug}/show/{record}")
    page.click("#record-actions button[type=submit]:has(.fa-trash)")
    assert asked == ["Move this record to the recycle bin?"]
    assert f"/t/{slug}/show/{record}" in page.url, "dismissing the confirmation still deleted"

    # Possible duplicates on an add form: "Save anyway" saves.
    with_email = select(Company).where(Company.email.is_not(None)).order_by(Company.id)
    existing = db.session.scalars(with_email).first()
    email, before = existing.email, db.session.scalar(select(func.count()).select_from(Company))
    db.session.rollback()
    page.goto(f"{live_url}/t/companies/add")
    page.fill("#name", "Дубликат для проверки")
    page.fill("#email", email)
    page.click("form#model_form button[type=submit]")
    page.locator("#duplicates").wait_for()
    with page.expect_navigation():  # the saved record's page (not the add form's own "load")
        page.click("#save-duplicate")
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Company)) == before + 1

    page.goto(f"{live_url}/admin/tables/{entity_id}/")
    scale = page.locator("#add-field .tabula-setting[data-for='decimal percent']")
    page.select_option("#add-field select[name=type]", "text")
    assert not scale.is_visible()
    page.select_option("#add-field select[name=type]", "decimal")
    assert scale.is_visible()
    assert not errors, errors
    page.context.close()
