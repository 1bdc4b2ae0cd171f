"""Benchmark of an xlsx import (``exports.imports`` run as an RQ job by a real ``rq worker``) against a raw
import of the same file written without the product.

Builds a scratch database (PostgreSQL next to ``BENCH_DATABASE_URL``, or SQLite with ``--sqlite``), two
custom tables of 20 fields of mixed types (those of ``bench/grid.py``), writes an ``.xlsx`` of ``--rows``
rows of such values (select options by label, dates as dates), starts one real worker (``tabula worker`` on
``BENCH_REDIS_URL``), then:

- ``import_s``: the admin's import of the file into the first table (create, skip bad rows), timed from
  the upload (content check, a first read for the mapping, the file store) until the import's row says
  "finished": read by calamine, every cell parsed by the registry, written by ``create_many`` in batches
  with history and the import's own record of each batch;
- ``raw_s``: the baseline, in this process, into the second table: python-calamine reads the same file,
  plain Python converts the cells (int, Decimal, date, bool, the option's id by its label), SQLAlchemy
  Core ``executemany`` inserts them in batches; no history, no checks, no framework.

The last stdout line is one JSON object, e.g. ``{"bench": "import", "rows": 100000, "import_rows_s":
..., "raw_rows_s": ..., "ratio": 0.6}`` with ``ratio`` = import rate / baseline rate (target >= 0.5).
Usage::

    .venv/bin/python bench/import.py --rows 100000
    .venv/bin/python bench/import.py --rows 20000 --sqlite
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
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

from bench.export import start_worker, stop_worker  # noqa: E402
from bench.grid import EXTRA_FIELDS, SEED, value_makers  # noqa: E402
from bench.scratch import log, settle  # noqa: E402

RATIO_TARGET = 0.5
BATCH = 1_000
POLL = 0.1


def build_table(label: str) -> tuple[Any, list[Any]]:
    from app.extensions import db
    from custom_fields import runtime, service
    from models import Field

    entity = service.create_entity(label, label)
    for name, type_name, settings in EXTRA_FIELDS:
        service.add_field(entity.id, name, type_name, settings=settings)
    fields = (
        db.session.query(Field).filter(Field.entity_id == entity.id).order_by(Field.position, Field.id).all()
    )
    db.session.commit()
    runtime.refresh()
    return entity, fields


def write_book(path: Path, fields: list[Any], rows: int) -> None:
    """The file: a header of the fields' labels, then ``rows`` rows (selects by label, dates as dates)."""
    import xlsxwriter

    makers = value_makers(fields, random.Random(SEED))
    labels = [
        {o["id"]: o["label"] for o in f.settings.get("options", [])} if f.type == "single_select" else None
        for f in fields
    ]
    book = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_formulas": False})
    sheet = book.add_worksheet("Rows")
    day = book.add_format({"num_format": "dd.mm.yyyy"})
    for col, field in enumerate(fields):
        sheet.write_string(0, col, field.label)
    for row in range(1, rows + 1):
        for col, make in enumerate(makers):
            value = make()
            if value is None:
                continue
            if labels[col] is not None:
                sheet.write_string(row, col, labels[col][value])
            elif isinstance(value, bool):
                sheet.write_boolean(row, col, value)
            elif isinstance(value, dt.date):
                sheet.write_datetime(row, col, dt.datetime.combine(value, dt.time()), day)
            elif isinstance(value, int | Decimal):
                sheet.write_number(row, col, value)
            else:
                sheet.write_string(row, col, str(value))
    book.close()


def run_import(slug: str, admin_id: int, path: Path, rows: int) -> float:
    import shutil

    from app.extensions import db
    from custom_fields.access import Actor
    from exports import imports
    from exports.store import scratch_dir
    from models.imports import ImportRun, ImportStatus

    actor = Actor.for_user_id(admin_id, "ui")
    local = scratch_dir() / "bench-upload.xlsx"
    shutil.copy(path, local)
    began = time.perf_counter()
    item = imports.upload(slug, actor, local, path.name)
    imports.configure(
        item, actor, options={}, mapping=item.mapping, mode="create", match_on=None, on_error="skip"
    )
    imports.start(item, actor)
    shown = 0.0
    while True:
        db.session.expire_all()
        current = db.session.get(ImportRun, item.id)
        if current.status not in (ImportStatus.queued, ImportStatus.running):
            break
        if time.perf_counter() - shown > 3:
            shown = time.perf_counter()
            log(f"  import: {current.rows_done:>10,} / {rows:,} rows ({current.status})")
        time.sleep(POLL)
    elapsed = time.perf_counter() - began
    if current.status != ImportStatus.finished or current.created != rows:
        raise RuntimeError(
            f"the import ended {current.status} with {current.created} rows: {current.message}"
        )
    return elapsed


def raw_import(table_name: str, fields: list[Any], path: Path, owner: int) -> tuple[float, int]:
    import python_calamine
    from sqlalchemy import MetaData, Table, insert

    from app.extensions import db

    table = Table(table_name, MetaData(), autoload_with=db.engine)
    plan = []
    for field in fields:
        if field.type == "single_select":
            ids = {o["label"]: o["id"] for o in field.settings.get("options", [])}
            plan.append((field.column_name, ids.get))
        elif field.type == "integer":
            plan.append((field.column_name, int))
        elif field.type in ("decimal", "money"):
            plan.append(
                (field.column_name, lambda v: Decimal(repr(v)) if isinstance(v, float) else Decimal(v))
            )
        elif field.type == "date":
            plan.append((field.column_name, lambda v: v.date() if isinstance(v, dt.datetime) else v))
        elif field.type == "boolean":
            plan.append((field.column_name, bool))
        else:
            plan.append((field.column_name, lambda v: str(v).strip()))
    now = dt.datetime.now(dt.UTC)
    began = time.perf_counter()
    sheet = python_calamine.CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0)
    written = 0
    batch: list[dict[str, Any]] = []
    statement = insert(table)
    with db.engine.begin() as connection:
        for index, row in enumerate(sheet.iter_rows()):
            if index == 0:
                continue
            values: dict[str, Any] = {
                "row_version": 1,
                "owner_id": owner,
                "created_at": now,
                "updated_at": now,
            }
            for (column, convert), cell in zip(plan, row, strict=False):
                values[column] = None if cell == "" or cell is None else convert(cell)
            batch.append(values)
            if len(batch) >= BATCH:
                connection.execute(statement, batch)
                written += len(batch)
                batch = []
        if batch:
            connection.execute(statement, batch)
            written += len(batch)
    return time.perf_counter() - began, written


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    args = parser.parse_args()

    from bench.scratch import scratch_app

    figures: dict[str, Any] = {
        "bench": "import",
        "rows": args.rows,
        "database": "sqlite" if args.sqlite else "postgresql",
    }
    with scratch_app(sqlite=args.sqlite) as app, app.app_context():
        admin_id = app.appbuilder.sm.find_user(username="admin").id
        product, product_fields = build_table("Import bench")
        baseline, baseline_fields = build_table("Import bench baseline")
        with tempfile.TemporaryDirectory(prefix="tabula-bench-import-") as folder:
            book = Path(folder) / "rows.xlsx"
            log(f"writing {args.rows:,} rows of 20 columns to {book.name}")
            write_book(book, product_fields, args.rows)
            figures["file_mb"] = round(book.stat().st_size / 2**20, 1)
            settle()
            log("baseline: calamine + plain Python + Core executemany")
            raw_s, raw_rows = raw_import(baseline.table_name, baseline_fields, book, admin_id)
            if raw_rows != args.rows:
                raise RuntimeError(f"the baseline wrote {raw_rows} rows of {args.rows}")
            worker = start_worker(app.bench_env)
            settle()
            try:
                log("the product: import job on a real worker")
                import_s = run_import(product.slug, admin_id, book, args.rows)
            finally:
                stop_worker(worker)
    figures.update(
        import_s=round(import_s, 2),
        raw_s=round(raw_s, 2),
        import_rows_s=round(args.rows / import_s),
        raw_rows_s=round(args.rows / raw_s),
        ratio=round(raw_s / import_s, 3),
        target=RATIO_TARGET,
    )
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
