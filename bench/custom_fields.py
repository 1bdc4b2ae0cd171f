"""Benchmark of the metadata engine on a large custom table (PostgreSQL only).

Builds a scratch database next to ``BENCH_DATABASE_URL``, creates a custom table with 30 fields through
``custom_fields.service``, bulk-loads ``--rows`` records with COPY, vacuums and analyses it, then measures:

- ``add_field_s``: adding one more field to the full table (an ``ALTER TABLE ADD COLUMN`` of a NULL-able
  column: metadata only, so it must not grow with the table); median of 3;
- ``api_ms``: the generated REST API's list call (``GET /api/v1/t/<slug>/``: a filter on an integer field
  matching about 10 % of the rows, ordered by a text field, page of 50, all 30 fields), median of 7;
- ``sql_ms``: the same page and count written by hand in SQL on the same engine, median of 7;
- ``ratio`` = api_ms / sql_ms (target: at most 1.5).

Progress goes to stderr; the figures go to stdout, the last line being one JSON object. The scratch
database is dropped at the end, whatever happens. Usage::

    .venv/bin/python bench/custom_fields.py --rows 1000000
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import pstats
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, Python puts bench/ first on sys.path, where this file would shadow the
# ``custom_fields`` package: look in the project root instead (the product is imported lazily below).
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)

from bench.scratch import ADMIN_PASSWORD, log, scratch_app  # noqa: E402

SEED = 42
PROGRESS_EVERY = 100_000
WARMUP = 2
REPEATS = 7
ADD_FIELD_RUNS = 3
PAGE_SIZE = 50
SCORE_MAX = 1_000_000
SCORE_THRESHOLD = 899_999  # score > this: about 10 % of the rows
NULL_SHARE = 0.05  # optional fields are empty this often
SELECT_OPTIONS = {"options": [{"label": "A"}, {"label": "B"}, {"label": "C"}]}

# The 29 fields added after "Name" (the display field every new table starts with): 30 in all.
EXTRA_FIELDS: list[tuple[str, str, dict[str, Any]]] = [
    ("Score", "integer", {}),
    ("Title", "text", {"max_length": 100}),
    ("Amount", "money", {"currency": "RUB"}),
    ("Started", "date", {}),
    ("Active", "boolean", {}),
    ("Stage", "single_select", SELECT_OPTIONS),
    ("Email", "email", {}),
    ("Rate", "decimal", {"scale": 2}),
    ("City", "text", {"max_length": 100}),
    ("Quantity", "integer", {}),
    ("Budget", "money", {"currency": "RUB"}),
    ("Due", "date", {}),
    ("Paid", "boolean", {}),
    ("Priority", "single_select", SELECT_OPTIONS),
    ("Weight", "decimal", {"scale": 2}),
    ("Company", "text", {"max_length": 100}),
    ("Rank", "integer", {}),
    ("Cost", "money", {"currency": "RUB"}),
    ("Closed", "date", {}),
    ("Archived", "boolean", {}),
    ("Source", "single_select", SELECT_OPTIONS),
    ("Backup email", "email", {}),
    ("Margin", "decimal", {"scale": 2}),
    ("Notes", "text", {"max_length": 100}),
    ("Visits", "integer", {}),
    ("Signed", "date", {}),
    ("Discount", "decimal", {"scale": 2}),
    ("Region", "text", {"max_length": 100}),
    ("Manager", "text", {"max_length": 100}),
]
SCORE_LABEL = "Score"


class ApiError(RuntimeError):
    """The API answered something other than 200."""


# --- data ---------------------------------------------------------------------------------------------------


def value_makers(fields: list[Any], rng: random.Random) -> list[Callable[[], Any]]:
    """One generator of deterministic values per field, in column order."""
    alphabet = "abcdefghijklmnopqrstuvwxyzабвгдежзиклмнопрстуфхцчшэюя"
    words = ["".join(rng.choices(alphabet, k=rng.randint(4, 12))).capitalize() for _ in range(20_000)]
    dates = [dt.date(2015, 1, 1) + dt.timedelta(days=d) for d in range(4_000)]
    cents = [Decimal(n).scaleb(-2) for n in range(-50_000, 1_000_000, 7)]
    rand, randrange = rng.random, rng.randrange

    def optional(make: Callable[[], Any]) -> Callable[[], Any]:
        return lambda: None if rand() < NULL_SHARE else make()

    makers: list[Callable[[], Any]] = []
    for index, fld in enumerate(fields):
        if index == 0:  # "Name", the display field and the sort column: always set
            makers.append(lambda: f"{words[randrange(20_000)]} {words[randrange(20_000)]}")
        elif fld.label == SCORE_LABEL:  # the filter column: always set
            makers.append(lambda: randrange(SCORE_MAX))
        elif fld.type == "text":
            makers.append(optional(lambda: words[randrange(20_000)]))
        elif fld.type == "integer":
            makers.append(optional(lambda: randrange(-1_000, 100_000)))
        elif fld.type in ("decimal", "money"):
            makers.append(optional(lambda: cents[randrange(len(cents))]))
        elif fld.type == "date":
            makers.append(optional(lambda: dates[randrange(4_000)]))
        elif fld.type == "boolean":
            makers.append(optional(lambda: rand() < 0.5))
        elif fld.type == "single_select":
            ids = [option["id"] for option in fld.settings["options"]]
            makers.append(optional(lambda ids=ids: ids[randrange(len(ids))]))
        elif fld.type == "email":
            makers.append(
                optional(lambda: f"{words[randrange(20_000)].lower()}{randrange(1000)}@example.com")
            )
        else:
            raise ValueError(f"no value maker for type {fld.type!r}")
    return makers


def bulk_load(db: Any, table_name: str, fields: list[Any], rows: int) -> float:
    """COPY ``rows`` deterministic records into the table; returns the seconds it took."""
    makers = value_makers(fields, random.Random(SEED))
    columns = ", ".join(f'"{f.column_name}"' for f in fields)
    started = time.perf_counter()
    raw = db.engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            with cursor.copy(f'COPY "{table_name}" ({columns}) FROM STDIN') as copy:
                write_row = copy.write_row
                for done in range(1, rows + 1):
                    write_row([make() for make in makers])
                    if done % PROGRESS_EVERY == 0 or done == rows:
                        elapsed = time.perf_counter() - started
                        log(f"  loaded {done:>10,} / {rows:,} rows ({done / elapsed:,.0f} rows/s)")
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - started


# --- timing -------------------------------------------------------------------------------------------------


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


@contextmanager
def statement_log(engine: Any) -> Iterator[list[tuple[str, Any, float]]]:
    """(SQL, parameters, seconds) of every statement run on ``engine`` inside the block."""
    captured: list[tuple[str, Any, float]] = []

    def before(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def after(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        began = conn.info["bench_started"].pop()
        captured.append((statement, parameters, time.perf_counter() - began))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield captured
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def explain(engine: Any, statement: str, parameters: Any) -> str:
    with engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters)
        plan = "\n".join(f"    {row[0]}" for row in cursor.fetchall())
        conn.rollback()
    return plan


# --- the benchmark ------------------------------------------------------------------------------------------


def run(app: Any, rows: int, show_plans: bool, profile: bool) -> dict[str, Any]:
    import prison

    from app.extensions import db
    from custom_fields import runtime, service

    figures: dict[str, Any] = {}
    with app.app_context():
        log("creating the table and its fields")
        entity = service.create_entity("Bench", "Bench rows")
        for label, type_name, settings in EXTRA_FIELDS:
            service.add_field(entity.id, label, type_name, settings=settings)
        from models import Field

        fields = (
            db.session.query(Field)
            .filter(Field.entity_id == entity.id)
            .order_by(Field.position, Field.id)
            .all()
        )
        if len(fields) != 30:
            raise RuntimeError(f"expected 30 fields, the table has {len(fields)}")
        slug, table_name = entity.slug, entity.table_name
        score = next(f for f in fields if f.label == SCORE_LABEL)
        name = fields[0]
        figures["fields"] = len(fields)
        db.session.commit()  # release the metadata rows' snapshot before COPY

        log(f"loading {rows:,} rows into {table_name} with COPY")
        figures["load_s"] = bulk_load(db, table_name, fields, rows)
        started = time.perf_counter()
        # VACUUM as well as ANALYZE: hint bits and the visibility map are set once here, so no timed scan
        # pays for them (autovacuum would do the same later on a live system, and may be off).
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'VACUUM (ANALYZE) "{table_name}"'))
        with db.engine.connect() as conn:
            figures["table_mb"] = (
                conn.execute(text("SELECT pg_total_relation_size(:t)"), {"t": table_name}).scalar_one()
                / 2**20
            )
            indexes = conn.execute(
                text("SELECT indexname FROM pg_indexes WHERE tablename = :t ORDER BY indexname"),
                {"t": table_name},
            ).scalars()
            figures["indexes"] = list(indexes)
        figures["vacuum_s"] = time.perf_counter() - started

        log("timing the list API against hand-written SQL")
        runtime.refresh(app, force=True)
        client = app.test_client()
        login = client.post(
            "/api/v1/security/login",
            json={"username": "admin", "password": ADMIN_PASSWORD, "provider": "db"},
        )
        if login.status_code != 200:
            raise RuntimeError(
                f"API login answered {login.status_code}: {login.get_data(as_text=True)[:500]}"
            )
        headers = {"Authorization": f"Bearer {login.get_json()['access_token']}"}
        wanted = {
            "filters": [{"col": score.name, "opr": "gt", "value": SCORE_THRESHOLD}],
            "order_column": name.name,
            "order_direction": "asc",
            "page": 0,
            "page_size": PAGE_SIZE,
        }
        all_columns = [f.name for f in fields] + ["id"]
        query = prison.dumps({**wanted, "columns": all_columns})
        url = f"/api/v1/t/{slug}/"
        columns = ", ".join(f'"{f.column_name}"' for f in fields)
        where = f'WHERE "{score.column_name}" > :v'
        # FAB adds the primary key to every ORDER BY (stable pages): the hand-written page does the same.
        # The identifiers were generated by the product (t_<id>, f_<id>), the value is bound: no injection.
        order = f'ORDER BY "{name.column_name}" ASC, id ASC LIMIT {PAGE_SIZE}'
        page_sql = text(f'SELECT id, {columns} FROM "{table_name}" {where} {order}')  # noqa: S608
        count_sql = text(f'SELECT count(*) FROM "{table_name}" {where}')  # noqa: S608

        def call_api() -> dict[str, Any]:
            response = client.get(url, query_string={"q": query}, headers=headers)
            if response.status_code != 200:
                raise ApiError(
                    f"GET {url}?q={query} answered {response.status_code}: "
                    f"{response.get_data(as_text=True)[:2000]}"
                )
            return response.get_json()

        def call_sql() -> tuple[list[Any], int]:
            with db.engine.connect() as conn:
                page = conn.execute(page_sql, {"v": SCORE_THRESHOLD}).all()
                count = conn.execute(count_sql, {"v": SCORE_THRESHOLD}).scalar_one()
            return page, count

        try:
            body = call_api()
        except ApiError as exc:
            # Asking for columns by name fails in the product (see the traceback FAB logged above). Until
            # it is fixed, measure the default list columns instead: before the later add_field runs, they
            # are the same 30 fields plus id.
            figures["columns_error"] = str(exc)
            log(f"WARNING: {exc}\n  measuring without the 'columns' argument instead")
            query = prison.dumps(wanted)
            body = call_api()
        if set(body["result"][0]) != set(all_columns) - {"id"} and set(body["result"][0]) != set(all_columns):
            raise RuntimeError(f"the API returned the fields {sorted(body['result'][0])}")
        page, count = call_sql()
        if len(body["result"]) != PAGE_SIZE or len(page) != PAGE_SIZE:
            raise RuntimeError(
                f"expected {PAGE_SIZE} rows, the API gave {len(body['result'])}, SQL {len(page)}"
            )
        if body["count"] != count or body["ids"] != [row.id for row in page]:
            raise RuntimeError(
                f"the API and SQL disagree: count {body['count']} vs {count}, "
                f"ids {body['ids'][:5]}... vs {[row.id for row in page][:5]}..."
            )
        figures["matching"] = count

        for _ in range(WARMUP):
            call_api()
            call_sql()
        api_times, sql_times = [], []
        for _ in range(REPEATS):
            began = time.perf_counter()
            call_api()
            api_times.append(time.perf_counter() - began)
            began = time.perf_counter()
            call_sql()
            sql_times.append(time.perf_counter() - began)
        figures["api_ms"] = median_ms(api_times)
        figures["sql_ms"] = median_ms(sql_times)
        figures["api_runs_ms"] = [t * 1000 for t in api_times]
        figures["sql_runs_ms"] = [t * 1000 for t in sql_times]

        # Where the API's time goes: one more call, every statement timed (not part of the medians).
        with statement_log(db.engine) as statements:
            began = time.perf_counter()
            call_api()
            figures["api_probe_ms"] = (time.perf_counter() - began) * 1000
        if profile:
            profiler = cProfile.Profile()
            profiler.runcall(call_api)
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
            figures["profile"] = out.getvalue()
        figures["api_statements"] = statements
        if show_plans:
            figures["plans"] = [
                (sql, explain(db.engine, sql, params))
                for sql, params, _seconds in statements
                if f'"{table_name}"' in sql or f" {table_name}" in sql
            ]

        log("timing add_field on the full table")
        add_times = []
        for attempt in range(1, ADD_FIELD_RUNS + 1):
            began = time.perf_counter()
            service.add_field(entity.id, f"Added later {attempt}", "text")
            add_times.append(time.perf_counter() - began)
        figures["add_field_runs_s"] = add_times
        figures["add_field_s"] = statistics.median(add_times)
    return figures


def report(rows: int, figures: dict[str, Any], total_s: float) -> dict[str, Any]:
    ratio = figures["api_ms"] / figures["sql_ms"]
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"custom_fields benchmark: {rows:,} rows, {figures['fields']} fields")
    print(
        f"  load (COPY): {figures['load_s']:.1f} s, VACUUM (ANALYZE) {figures['vacuum_s']:.1f} s, "
        f"table + indexes {figures['table_mb']:,.0f} MB, indexes: {', '.join(figures['indexes']) or 'none'}"
    )
    runs = ", ".join(f"{t * 1000:.1f}" for t in figures["add_field_runs_s"])
    print(f"  add_field on the full table: median {figures['add_field_s'] * 1000:.1f} ms (runs: {runs} ms)")
    print(f"  rows matching the filter: {figures['matching']:,} ({figures['matching'] / rows:.1%})")
    print(
        f"  list API: median {figures['api_ms']:.1f} ms "
        f"(runs: {', '.join(f'{t:.1f}' for t in figures['api_runs_ms'])})"
    )
    print(
        f"  SQL page + count: median {figures['sql_ms']:.1f} ms "
        f"(runs: {', '.join(f'{t:.1f}' for t in figures['sql_runs_ms'])})"
    )
    print(f"  ratio API / SQL: {ratio:.2f} (target <= 1.5); add_field target < 1 s")
    if "columns_error" in figures:
        print(
            "  NOTE: the API failed when asked for columns by name (rison 'columns'); the list API was "
            "measured with its default list columns (the same 30 fields plus id). The failure: "
            + figures["columns_error"].split("answered", 1)[-1].strip()
        )
    statements = figures["api_statements"]
    db_ms = sum(seconds for _sql, _params, seconds in statements) * 1000
    print(
        f"  one probed API call: {figures['api_probe_ms']:.1f} ms, of which {db_ms:.1f} ms in "
        f"{len(statements)} SQL statements, {figures['api_probe_ms'] - db_ms:.1f} ms in Python"
    )
    for sql, _params, seconds in sorted(statements, key=lambda s: -s[2]):
        print(f"    {seconds * 1000:8.1f} ms  {' '.join(sql.split())[:150]}")
    for sql, plan in figures.get("plans", []):
        print(f"  EXPLAIN ANALYZE {' '.join(sql.split())[:100]}...\n{plan}")
    if "profile" in figures:
        print("  cProfile of one list API call (cumulative):\n" + figures["profile"])
    print(f"  whole run: {total_s:.0f} s; peak RSS {peak_rss_mb:.0f} MB")
    return {
        "bench": "custom_fields",
        "rows": rows,
        "fields": figures["fields"],
        "add_field_s": round(figures["add_field_s"], 4),
        "api_ms": round(figures["api_ms"], 1),
        "sql_ms": round(figures["sql_ms"], 1),
        "ratio": round(ratio, 2),
        "peak_rss_mb": round(peak_rss_mb),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="records to load (default 1000000)")
    parser.add_argument(
        "--explain", action="store_true", help="also print EXPLAIN ANALYZE of the API's statements"
    )
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one list API call")
    args = parser.parse_args(argv)
    if args.rows < PAGE_SIZE * 20:
        parser.error(f"--rows must be at least {PAGE_SIZE * 20} (the filtered page must fill)")

    started = time.perf_counter()
    with scratch_app() as app:
        figures = run(app, args.rows, args.explain, args.profile)
    result = report(args.rows, figures, time.perf_counter() - started)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
