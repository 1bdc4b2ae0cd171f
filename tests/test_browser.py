"""In Debian's chromium through Playwright: sign in, switch to Russian, run a job and watch its progress."""

from __future__ import annotations

import pytest

from tests.conftest import ADMIN_PASSWORD

pytestmark = pytest.mark.browser


def test_sign_in_switch_language_and_watch_a_job(browser, live_url, worker, tmp_path) -> None:  # noqa: ANN001
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.goto(f"{live_url}/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(f"{live_url}/")
    assert page.inner_text("h2") == "Dashboard"  # the home page of a signed-in user

    page.goto(f"{live_url}/lang/ru")
    page.goto(f"{live_url}/system/")
    assert "Состояние системы" in page.inner_text("h2")
    assert page.locator("#health-checks tr.success").count() == 3

    page.click("text=Запустить задачу самопроверки")
    page.wait_for_url("**/system/jobs/*")
    # A selector, not wait_for_function: the Content-Security-Policy refuses the eval that needs.
    page.wait_for_selector("#job-status[data-status=finished]", timeout=30_000)
    assert page.inner_text("#job-status") == "Завершена"  # the status in the reader's language
    assert page.get_attribute("#job-progress", "aria-valuenow") == "100"
    assert '"database"' in page.inner_text("#job-result")
    page.screenshot(path=str(tmp_path / "job.png"))
    context.close()
