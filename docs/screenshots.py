"""Retake the README's screenshots: the main screens at 1366 x 768 in chromium, over a small demo book.

    .venv/bin/python docs/screenshots.py [--redis-url redis://127.0.0.1:6379/11]

Runs the app on a scratch SQLite database in a temporary folder (nothing of yours is touched) and writes
docs/screenshots/*.png. Needs Debian's chromium (`make browser`) and a Redis (the embedded one when no URL
is given).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
PASSWORD = "admin-Пароль-1"  # noqa: S105 (a scratch database of its own)


def serve(redis_url: str, folder: Path) -> str:
    sys.path.insert(0, str(ROOT))
    from werkzeug.serving import make_server

    from app import create_app
    from app.bootstrap import initialize

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TABULA_", "DATABASE_URL", "REDIS_URL"))}
    env.update(
        DATABASE_URL=f"sqlite:///{folder / 'shots.db'}",
        REDIS_URL=redis_url,
        TABULA_INSTANCE_DIR=str(folder / "instance"),
        TABULA_ADMIN_PASSWORD=PASSWORD,
        TABULA_DEMO_SCALE="0.05",
        SECRET_KEY="screenshots",  # noqa: S106
    )
    app = create_app(env)
    initialize(app, echo=print)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}"


def shoot(base: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        page = browser.new_page(viewport={"width": 1366, "height": 768}, locale="en-US")
        page.goto(f"{base}/login/")
        page.screenshot(path=OUT / "login.png")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", PASSWORD)
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_url(f"{base}/")
        page.goto(f"{base}/t/companies/list/")
        page.screenshot(path=OUT / "list.png")
        page.goto(f"{base}/t/deals/show/5")
        top = {"x": 0, "y": 0, "width": 1366, "height": 1100}
        page.screenshot(path=OUT / "record.png", full_page=True, clip=top)
        page.goto(f"{base}/board/")
        page.screenshot(path=OUT / "board.png")
        page.goto(f"{base}/t/contacts/edit/3")
        page.click("select#company_id + .select2-container")
        page.fill(".select2-container--open .select2-search__field", "ООО")
        page.wait_for_selector(".loading-results", state="attached")  # select2 asks after a pause
        page.wait_for_selector(".loading-results", state="detached")
        page.screenshot(path=OUT / "edit.png")
        page.goto(f"{base}/system/")
        page.screenshot(path=OUT / "system.png")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", help="a Redis to use (default: an embedded one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        embedded = None
        redis_url = args.redis_url
        if not redis_url:
            from app.embedded_redis import EmbeddedRedis

            embedded = EmbeddedRedis(Path(folder) / "redis.sock", Path(folder)).start()
            redis_url = embedded.url
        try:
            shoot(serve(redis_url, Path(folder)))
        finally:
            if embedded is not None:
                embedded.stop()
    print(f"screenshots written to {OUT}")


if __name__ == "__main__":
    main()
