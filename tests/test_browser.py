"""In Debian's chromium through Playwright: sign in, switch to Russian, run a job and watch its progress."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from tests.conftest import ADMIN_PASSWORD

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (make browser installs it)")
        pytest.skip("chromium is not installed (make browser installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def live_url(app) -> Iterator[str]:  # noqa: ANN001
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_sign_in_switch_language_and_watch_a_job(browser, live_url, worker, tmp_path) -> None:  # noqa: ANN001
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.goto(f"{live_url}/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(f"{live_url}/")
    assert "Signed in as Admin Tabula." in page.inner_text("body")

    page.goto(f"{live_url}/lang/ru")
    page.goto(f"{live_url}/system/")
    assert "Состояние системы" in page.inner_text("h2")
    assert page.locator("#health-checks tr.success").count() == 3

    page.click("text=Запустить задачу самопроверки")
    page.wait_for_url("**/system/jobs/*")
    page.wait_for_function("document.getElementById('job-status').textContent === 'finished'", timeout=30_000)
    assert page.get_attribute("#job-progress", "aria-valuenow") == "100"
    assert '"database"' in page.inner_text("#job-result")
    page.screenshot(path=str(tmp_path / "job.png"))
    context.close()
