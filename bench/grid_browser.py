"""Benchmark of the grid in a real browser: chromium opens ``/grid/<slug>/`` of a table of ``--rows`` records
and waits for the first rows, against a plain HTML table of the same first 100 rows served by the same app
in the same run (rendered on the server from the same query layer into the app's own page layout, menu
and styles, without the grid's script): ``ratio`` is grid / plain.

Builds a scratch PostgreSQL database next to ``BENCH_DATABASE_URL`` (dropped at the end, whatever happens)
with the 20-field table of ``bench/grid.py`` loaded by COPY, serves the app on a local port (a Werkzeug
server in a thread), signs in as the admin and times, alternating, medians of ``--repeats``:

- ``first_rows_ms``: navigation to the grid until its first row is on screen; ``plain_ms``: navigation to
  the plain table until its first row is on screen (the baseline);
- ``filter_ms``: typing a rare word into the grid's search box until the rows shown are the matching ones
  (this includes the grid's 300 ms pause after typing); ``plain_filter_ms``: navigating to the plain table
  with that search;
- ``scroll_ms``: scrolling the grid down until 500 rows are loaded (four more pages by cursor).

Progress goes to stderr; the last line of stdout is one JSON object, e.g. ``{"bench": "grid_browser",
"rows": 1000000, "ratio": 1.4, "first_rows_ms": 420.0, "plain_ms": 300.0, ...}``. Usage::

    .venv/bin/python bench/grid_browser.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)  # bench/custom_fields.py must not shadow the package

from bench.grid import EXTRA_FIELDS, INDEXED, RARE_WORD, bulk_load  # noqa: E402
from bench.scratch import ADMIN_PASSWORD, log, scratch_app  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1366, "height": 768}
TARGET = 2.0
PAGE = 100


def prepare(app: Any, rows: int) -> str:
    """The table with ``rows`` records; returns its slug."""
    from app.extensions import db
    from custom_fields import runtime, service
    from models import Field

    with app.app_context():
        entity = service.create_entity("Grid browser bench", "Grid browser bench rows")
        for label, type_name, settings in EXTRA_FIELDS:
            service.add_field(entity.id, label, type_name, settings=settings)
        fields = (
            db.session.query(Field)
            .filter(Field.entity_id == entity.id)
            .order_by(Field.position, Field.id)
            .all()
        )
        admin_id = app.appbuilder.sm.find_user(username="admin").id
        db.session.commit()
        log(f"loading {rows:,} rows into {entity.table_name} with COPY")
        bulk_load(db, entity.table_name, fields, rows, (admin_id, admin_id))
        by_label = {f.label: f for f in fields}
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for label in INDEXED:
                column = by_label[label].column_name
                conn.execute(text(f'CREATE INDEX "ix_bb_{column}" ON "{entity.table_name}" ("{column}")'))
            conn.execute(text(f'VACUUM (ANALYZE) "{entity.table_name}"'))
        runtime.refresh(app, force=True)
        return entity.slug


def add_plain_table(app: Any) -> None:
    """The baseline page: the first 100 rows as a plain HTML table, read through the same query layer."""
    from markupsafe import Markup, escape

    from custom_fields.access import Actor
    from custom_fields.query import TableQuery

    def plain(slug: str) -> str:
        from flask import render_template_string, request

        query = TableQuery(slug, Actor.current("ui")).search(request.args.get("q", ""))
        page = query.page(PAGE, as_json=True)
        names = [c.name for c in query.columns]
        head = "".join(f"<th>{escape(str(c.spec.label))}</th>" for c in query.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(_cell(row.get(n)))}</td>" for n in names) + "</tr>"
            for row in page.rows
        )
        table = f"<table class='table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        # The app's own page layout (menu, styles, scripts), as the grid page has: only the table differs.
        return render_template_string(
            '{% extends "tabula/base.html" %}{% block content %}{{ table }}{% endblock %}',
            table=Markup(table),  # noqa: S704 (every value in it went through escape above)
            appbuilder=app.appbuilder,
            base_template=app.appbuilder.base_template,
        )

    app.add_url_rule("/bench-plain/<slug>", "bench_plain", plain)


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("label") or value.get("id") or "")
    return "" if value is None else str(value)


def serve(app: Any) -> tuple[str, Any]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


def measure(base: str, slug: str, repeats: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    times: dict[str, list[float]] = {k: [] for k in ("grid", "plain", "filter", "plain_filter", "scroll")}
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        context = browser.new_context(locale="ru-RU", viewport=VIEWPORT)
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{base}/login/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_url(f"{base}/")
        for attempt in range(repeats + 1):  # the first round warms caches and is not counted
            began = time.perf_counter()
            page.goto(f"{base}/grid/{slug}/", wait_until="commit")
            page.locator(".tabulator-row").first.wait_for(timeout=60_000)
            grid = time.perf_counter() - began

            began = time.perf_counter()
            page.fill("#grid-search", RARE_WORD)
            page.locator(".tabulator-row", has_text=RARE_WORD).first.wait_for(timeout=60_000)
            while page.locator(".tabulator-row", has_not_text=RARE_WORD).count():  # only matching rows left
                page.wait_for_timeout(5)
                if time.perf_counter() - began > 120:
                    raise RuntimeError("the search never narrowed the rows")
            filtered = time.perf_counter() - began

            page.goto(f"{base}/grid/{slug}/", wait_until="commit")
            page.locator(".tabulator-row").first.wait_for(timeout=60_000)
            holder = page.locator(".tabulator-tableholder")
            began = time.perf_counter()
            while page.evaluate("window.TabulaGrid.table.getDataCount()") < 5 * PAGE:
                holder.evaluate("el => { el.scrollTop = el.scrollHeight; }")
                page.wait_for_timeout(5)
                if time.perf_counter() - began > 60:
                    raise RuntimeError("the grid never loaded 500 rows")
            scrolled = time.perf_counter() - began

            began = time.perf_counter()
            page.goto(f"{base}/bench-plain/{slug}", wait_until="commit")
            page.locator("tbody tr").first.wait_for(timeout=60_000)
            plain = time.perf_counter() - began

            began = time.perf_counter()
            page.goto(f"{base}/bench-plain/{slug}?q={RARE_WORD}", wait_until="commit")
            page.locator("tbody tr").first.wait_for(timeout=60_000)
            plain_filter = time.perf_counter() - began
            if attempt:
                for key, value in (("grid", grid), ("plain", plain), ("filter", filtered)):
                    times[key].append(value)
                times["plain_filter"].append(plain_filter)
                times["scroll"].append(scrolled)
            log(f"  round {attempt}: grid {grid * 1000:.0f} ms, plain {plain * 1000:.0f} ms")
        browser.close()
    median = {k: round(statistics.median(v) * 1000, 1) for k, v in times.items()}
    return {"median": median, "console_errors": errors[:5]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    # Stopped from outside (SIGTERM): unwind, so that the scratch database is dropped.
    signal.signal(signal.SIGTERM, lambda *_args: sys.exit(1))
    started = time.perf_counter()
    with scratch_app() as app:
        slug = prepare(app, args.rows)
        add_plain_table(app)
        base, server = serve(app)
        try:
            figures = measure(base, slug, args.repeats)
        finally:
            server.shutdown()
    median = figures["median"]
    ratio = round(median["grid"] / median["plain"], 2) if median["plain"] else None
    result = {
        "bench": "grid_browser",
        "rows": args.rows,
        "ratio": ratio,
        "target": TARGET,
        "first_rows_ms": median["grid"],
        "plain_ms": median["plain"],
        "filter_ms": median["filter"],
        "plain_filter_ms": median["plain_filter"],
        "filter_ratio": round(median["filter"] / median["plain_filter"], 2)
        if median["plain_filter"]
        else None,
        "scroll_500_rows_ms": median["scroll"],
        "repeats": args.repeats,
        "console_errors": figures["console_errors"],
        "total_s": round(time.perf_counter() - started, 1),
    }
    print(
        f"first rows: grid {median['grid']} ms, plain table {median['plain']} ms, "
        f"ratio {ratio} (target <= {TARGET})"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
