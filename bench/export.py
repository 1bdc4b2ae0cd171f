"""Benchmark of an Excel export (``exports.service`` run as an RQ job by a real ``rq worker``) against a
raw export of the same rows written without the product.

Builds a scratch database (PostgreSQL next to ``BENCH_DATABASE_URL``, or SQLite with ``--sqlite``), a
custom table of 20 fields of mixed types (the same table as ``bench/grid.py``) with ``--rows`` records,
starts one real worker (``tabula worker``, RQ's forking worker, on ``BENCH_REDIS_URL``), then:

- ``export_s``: the admin's export of the whole table to ``.xlsx``, timed from the moment it is started
  (checked and enqueued by ``service.start``, as the "Export" button does) until its row says "ready"
  (the file written, stored, its size and checksum recorded);
- ``raw_s``: the baseline, in this process: the same columns read through a server-side cursor of the
  database driver (psycopg's named cursor; sqlite3's lazy cursor) with the owner's name joined, streamed
  into XlsxWriter's ``constant_memory`` mode with the same number formats, header, frozen row, autofilter
  and sheet overflow; no framework, no permission code;
- ``peak_rss_mb``: the highest resident memory of the worker and the job process it forks (the kernel's
  ``ru_maxrss`` of this process's waited-for children once the worker has stopped; target ≤ 200).

The last stdout line is one JSON object, e.g. ``{"bench": "export", "rows": 1000000, "ratio": 1.21,
"peak_rss_mb": 143, ...}`` with ``ratio`` = export_s / raw_s (target ≤ 1.3). Usage::

    .venv/bin/python bench/export.py --rows 1000000
    .venv/bin/python bench/export.py --rows 100000 --sqlite
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, Python puts bench/ first on sys.path, where bench/custom_fields.py would shadow the
# ``custom_fields`` package: look in the project root instead (the product is imported lazily below).
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)

from bench.grid import EXTRA_FIELDS, SEED, bulk_load, value_makers  # noqa: E402
from bench.scratch import log  # noqa: E402

RATIO_TARGET = 1.3
RSS_TARGET_MB = 200
ITERSIZE = 2_000
MAX_ROWS = 1_048_576
POLL = 0.05


# --- setting up ---------------------------------------------------------------------------------------------


def build_table(app: Any, rows: int, sqlite: bool) -> tuple[str, int]:
    """The 20-field table with ``rows`` records owned by the admin; returns its slug and the admin's id."""
    from app.extensions import db
    from custom_fields import runtime, service
    from models import Field

    entity = service.create_entity("Export bench", "Export bench rows")
    for label, type_name, settings in EXTRA_FIELDS:
        service.add_field(entity.id, label, type_name, settings=settings)
    fields = (
        db.session.query(Field).filter(Field.entity_id == entity.id).order_by(Field.position, Field.id).all()
    )
    admin_id = app.appbuilder.sm.find_user(username="admin").id
    db.session.commit()
    log(f"loading {rows:,} rows into {entity.table_name}")
    if sqlite:
        load_sqlite(db, entity.table_name, fields, rows, admin_id)
    else:
        bulk_load(db, entity.table_name, fields, rows, (admin_id, admin_id))
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f'VACUUM (ANALYZE) "{entity.table_name}"')
    runtime.refresh(app, force=True)
    return entity.slug, admin_id


def load_sqlite(db: Any, table_name: str, fields: list[Any], rows: int, owner: int) -> None:
    makers = value_makers(fields, random.Random(SEED))
    columns = ", ".join(f'"{f.column_name}"' for f in fields)
    marks = ", ".join("?" for _ in range(len(fields) + 1))
    sql = f'INSERT INTO "{table_name}" ({columns}, owner_id) VALUES ({marks})'  # noqa: S608
    started = time.perf_counter()
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        for start in range(0, rows, 10_000):
            batch = []
            for _ in range(min(10_000, rows - start)):
                values = [make() for make in makers]
                batch.append([str(v) if isinstance(v, Decimal) else v for v in values] + [owner])
            cursor.executemany(sql, batch)
            done = start + len(batch)
            log(
                f"  loaded {done:>10,} / {rows:,} rows ({done / (time.perf_counter() - started):,.0f} rows/s)"
            )
        raw.commit()
    finally:
        raw.close()


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    from redis import Redis
    from rq import Worker

    process = subprocess.Popen(  # noqa: S603 (our own command)
        [sys.executable, "-m", "app.cli", "worker"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL
    )
    redis = Redis.from_url(env["REDIS_URL"])
    deadline = time.monotonic() + 300  # a loaded machine takes its time to import the app
    while not any(w.pid == process.pid for w in Worker.all(connection=redis)):
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError("the worker did not start")
        time.sleep(0.1)
    return process


def stop_worker(process: subprocess.Popen) -> float:
    """Stop the worker; the peak resident memory (MB) of it and the job processes it forked."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


# --- the product's export -----------------------------------------------------------------------------------


def run_export(slug: str, admin_id: int, rows: int) -> tuple[float, Any]:
    from app.extensions import db
    from custom_fields.access import Actor
    from exports import service
    from models.exports import ExportFile, ExportStatus

    began = time.perf_counter()
    export = service.start(slug, Actor.for_user_id(admin_id, "ui"), {}, "xlsx")
    shown = 0.0
    while True:
        db.session.expire_all()
        current = db.session.get(ExportFile, export.id)
        if current.status == ExportStatus.ready:
            break
        if current.status in (ExportStatus.failed, ExportStatus.cancelled):
            raise RuntimeError(f"the export ended {current.status}: {current.message}")
        if time.perf_counter() - shown > 2:
            shown = time.perf_counter()
            log(f"  export: {current.rows_written or 0:>10,} / {rows:,} rows ({current.status})")
        time.sleep(POLL)
    elapsed = time.perf_counter() - began
    if current.rows_written != rows:
        raise RuntimeError(f"the export wrote {current.rows_written} rows of {rows}")
    return elapsed, current


# --- the baseline -------------------------------------------------------------------------------------------


def raw_plan(slug: str, admin_id: int, sqlite: bool) -> tuple[str, list[tuple[str, dict[str, Any], Any]]]:
    """The SQL and, per column, its header, number format and value conversion, decided before timing
    (what a hand-written export would hard-code)."""
    from custom_fields.access import Actor
    from custom_fields.query import TableQuery
    from custom_fields.types import REGISTRY

    query = TableQuery(slug, Actor.for_user_id(admin_id, "job"))
    columns = [c for c in query.columns if c.name != "id"]
    table = query.model.__table__.name
    select_list, plan = [], []
    # SQLite hands dates, date-times and decimals back as text or floats: parsed as the product parses them.
    parse_text = {"date": dt.date.fromisoformat, "datetime": dt.datetime.fromisoformat, "decimal": Decimal}
    for column in columns:
        fmt = REGISTRY[column.type].xlsx_format(column.spec)
        convert = None
        if column.name == "owner_id":
            select_list.append("coalesce(u.first_name || ' ' || u.last_name, u.username)")
            plan.append((str(column.spec.label), fmt, convert))
            continue
        select_list.append(f't."{column.spec.column_name}"')
        if column.spec.options:
            convert = {o["id"]: str(o["label"]) for o in column.spec.options}.get
        elif sqlite:
            kind = "decimal" if column.type in ("money", "percent") else column.type
            parser = parse_text.get(kind)
            if parser is not None:
                convert = lambda v, parser=parser: parser(str(v))  # noqa: E731
        plan.append((str(column.spec.label), fmt, convert))
    sql = (
        f'SELECT {", ".join(select_list)} FROM "{table}" t '  # noqa: S608
        "LEFT OUTER JOIN ab_user u ON u.id = t.owner_id WHERE t.deleted_at IS NULL ORDER BY t.id"
    )
    return sql, plan


def raw_export(app: Any, sql: str, plan: list, target: Path, sqlite: bool) -> tuple[float, int]:
    import xlsxwriter

    from app.extensions import db

    began = time.perf_counter()
    book = xlsxwriter.Workbook(
        str(target),
        {
            "constant_memory": True,
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
            "remove_timezone": True,
            "tmpdir": str(target.parent),
        },
    )
    header = book.add_format({"bold": True, "bottom": 1, "bg_color": "#F2F2F2"})
    formats = [book.add_format(fmt) if fmt else None for _label, fmt, _convert in plan]
    converts = [convert for _label, _fmt, convert in plan]
    sheets: list[Any] = []
    written = on_sheet = 0

    def new_sheet() -> Any:
        sheet = book.add_worksheet(
            f"Export bench rows ({len(sheets) + 1})" if sheets else "Export bench rows"
        )
        for col, (label, _fmt, _convert) in enumerate(plan):
            sheet.write_string(0, col, label, header)
        sheet.freeze_panes(1, 0)
        sheets.append(sheet)
        return sheet

    raw = db.engine.raw_connection()
    try:
        if sqlite:
            cursor = raw.cursor()
            cursor.execute(sql)
        else:
            cursor = raw.driver_connection.cursor(name="bench_raw_export")
            cursor.itersize = ITERSIZE
            cursor.execute(sql)
        sheet = new_sheet()
        for row in cursor:
            if on_sheet >= MAX_ROWS - 1:
                sheet.autofilter(0, 0, on_sheet, len(plan) - 1)
                sheet, on_sheet = new_sheet(), 0
            on_sheet += 1
            written += 1
            for col, value in enumerate(row):
                if value is None:
                    continue
                convert = converts[col]
                if convert is not None:
                    value = convert(value)
                if isinstance(value, bool):
                    sheet.write_boolean(on_sheet, col, value, formats[col])
                elif isinstance(value, int | float | Decimal):
                    sheet.write_number(on_sheet, col, value, formats[col])
                elif isinstance(value, dt.date):
                    sheet.write_datetime(on_sheet, col, value, formats[col])
                else:
                    sheet.write_string(on_sheet, col, str(value))
        sheet.autofilter(0, 0, on_sheet, len(plan) - 1)
        cursor.close()
    finally:
        raw.close()
    book.close()
    return time.perf_counter() - began, written


# --- main ---------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each side (medians)")
    args = parser.parse_args()

    from bench.scratch import scratch_app

    figures: dict[str, Any] = {
        "bench": "export",
        "rows": args.rows,
        "database": "sqlite" if args.sqlite else "postgresql",
    }
    with scratch_app(sqlite=args.sqlite) as app, app.app_context():
        slug, admin_id = build_table(app, args.rows, args.sqlite)
        sql, plan = raw_plan(slug, admin_id, args.sqlite)
        raw_times, export_times = [], []
        worker = start_worker(app.bench_env)
        try:
            for repeat in range(args.repeats):
                # Alternating which side goes first evens out a machine that gets busier or quieter.
                for side in ("raw", "export") if repeat % 2 == 0 else ("export", "raw"):
                    if side == "raw":
                        log(f"baseline: raw cursor into XlsxWriter (run {repeat + 1})")
                        with tempfile.TemporaryDirectory(prefix="tabula-bench-raw-") as folder:
                            elapsed, raw_rows = raw_export(
                                app, sql, plan, Path(folder) / "raw.xlsx", args.sqlite
                            )
                            figures["raw_mb"] = round((Path(folder) / "raw.xlsx").stat().st_size / 2**20, 1)
                        if raw_rows != args.rows:
                            raise RuntimeError(f"the baseline wrote {raw_rows} rows of {args.rows}")
                        raw_times.append(elapsed)
                    else:
                        log(f"the product: export job on a real worker (run {repeat + 1})")
                        elapsed, export = run_export(slug, admin_id, args.rows)
                        figures["export_mb"] = round((export.size or 0) / 2**20, 1)
                        export_times.append(elapsed)
        finally:
            figures["peak_rss_mb"] = round(stop_worker(worker))
    figures["export_s"], figures["raw_s"] = statistics.median(export_times), statistics.median(raw_times)
    figures["ratio"] = round(figures["export_s"] / figures["raw_s"], 2)
    figures["rows_per_s"] = round(args.rows / figures["export_s"])
    figures["raw_rows_per_s"] = round(args.rows / figures["raw_s"])
    figures["export_s"], figures["raw_s"] = round(figures["export_s"], 2), round(figures["raw_s"], 2)
    print(
        f"export {figures['export_s']} s ({figures['rows_per_s']:,} rows/s), raw {figures['raw_s']} s "
        f"({figures['raw_rows_per_s']:,} rows/s): ratio {figures['ratio']} (target ≤ {RATIO_TARGET}); "
        f"worker peak RSS {figures['peak_rss_mb']} MB (target ≤ {RSS_TARGET_MB})"
    )
    print(json.dumps(figures, ensure_ascii=False))


if __name__ == "__main__":
    main()
