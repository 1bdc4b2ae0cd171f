"""The issue's scenario in real chromium: an admin builds a table "Поставщики" and extends Contacts in the
browser on one server process; a staff user in another browser, served by another process (gunicorn),
sees the menu entry, form, list and filter at once, without a restart."""

from __future__ import annotations

import pytest

from tests.conftest import ADMIN_PASSWORD, DEMO_PASSWORD
from tests.tables_helpers import unique_label

pytestmark = pytest.mark.browser

FIELDS = [  # (label, type, settings to fill)
    ("ИНН", "text", {}),
    ("Рейтинг", "integer", {}),
    ("Оборот", "money", {}),
    ("Доля", "percent", {}),
    ("Надёжный", "boolean", {}),
    ("Договор с", "date", {}),
    ("Категория", "single_select", {"opt_label": ["Сырьё", "Упаковка"]}),
    ("Почта", "email", {}),
    ("Сайт", "url", {}),
    ("Менеджер", "user", {}),
]


def sign_in(page, base: str, username: str, password: str) -> None:  # noqa: ANN001
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_admin_shapes_tables_and_staff_elsewhere_sees_them(
    browser, live_url, other_process, tmp_path
) -> None:  # noqa: ANN001, F811
    label = unique_label("Поставщики")
    admin = browser.new_context(locale="ru-RU").new_page()
    sign_in(admin, live_url, "admin", ADMIN_PASSWORD)
    admin.goto(f"{live_url}/admin/tables/")
    admin.fill("#create-table input[name=label]", label)
    admin.fill("#create-table input[name=plural_label]", label)
    admin.click("#create-table button[type=submit]")
    admin.wait_for_url("**/admin/tables/*/")
    for field_label, type_name, settings in FIELDS:
        admin.fill("#add-field input[name=label]", field_label)
        admin.select_option("#add-field select[name=type]", type_name)
        for index, option in enumerate(settings.get("opt_label", [])):
            admin.locator("#add-field input[name=opt_label]").nth(index).fill(option)
        admin.click("#add-field button[type=submit]")
        admin.wait_for_selector(f"#fields tr:has-text('{field_label}')")
    assert admin.locator("#fields tbody tr").count() == len(FIELDS) + 1

    admin.goto(f"{live_url}/admin/tables/")
    admin.click("#tables a:has-text('Контакты')")
    telegram = unique_label("Telegram")
    admin.fill("#add-field input[name=label]", telegram)
    admin.click("#add-field button[type=submit]")
    admin.wait_for_selector(f"#fields tr:has-text('{telegram}')")
    admin.screenshot(path=str(tmp_path / "admin.png"))

    # Another browser, another server process: the staff user sees it all at once.
    staff = browser.new_context(locale="ru-RU").new_page()
    sign_in(staff, other_process, "staff1", DEMO_PASSWORD)
    staff.click("text=Таблицы")
    staff.click(f"text={label}")
    staff.wait_for_url("**/grid/*/")  # the menu opens the table's grid ...
    staff.locator(".tabulator-col-title", has_text=FIELDS[0][0]).first.wait_for()
    staff.click("#grid-list-link")  # ... and its classic list is one click away
    staff.wait_for_url("**/list/")
    staff.click("a[href*='/add']")
    staff.wait_for_selector("form#model_form")  # not the menu's sign-out form
    for field_label, _type, _settings in FIELDS:
        assert staff.locator(f"label:has-text('{field_label}')").count() >= 1, field_label
    staff.fill("input[name^=f_]:visible >> nth=0", "ООО «Север»")
    staff.locator("tr:has(label:has-text('Рейтинг')) input").fill("12")
    staff.locator("tr:has(label:has-text('Рейтинг')) input").press("Tab")
    staff.click("button[type=submit], input[type=submit]")
    staff.wait_for_url("**/list/**")
    body = staff.inner_text("body")
    assert "ООО «Север»" in body and "12" in body
    staff.goto(f"{other_process}/t/contacts/add")
    assert staff.locator(f"label:has-text('{telegram}')").count() == 1
    staff.screenshot(path=str(tmp_path / "staff.png"))
