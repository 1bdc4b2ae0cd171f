"""Benchmark of the write path's batches (``custom_fields.records``) against plain SQLAlchemy Core.

Builds a scratch PostgreSQL database next to ``BENCH_DATABASE_URL`` and two identical custom tables with 10
fields through ``custom_fields.service``, then feeds ``--rows`` deterministic records, as text a user would
paste ("1 234,50", "31.12.2025", "да"), in chunks:

- ``create``: ``records.create_many`` (parse and validate every value through the field-type registry,
  check rights, insert, write one history row per record with its values, commit) into table A, against a
  Core ``insert(table)`` executemany of the same rows, already parsed, without history, into table B;
- ``update``: ``records.update_many`` changing 5 of the 10 fields of every record (with its expected
  ``row_version``) in A, against a Core ``update(table).where(id = :id)`` executemany of the same values,
  already parsed, in B.

Both sides run in the same process on the same engine, chunk by chunk, alternating which goes first; the
baseline's parsing is not timed (the write path's is). ``create_ratio`` and ``update_ratio`` are write
path / baseline (target: at most 3). Afterwards the two tables must hold the same values.

Progress goes to stderr; the figures go to stdout, the last line being one JSON object. The scratch
database is dropped at the end, whatever happens. Usage::

    .venv/bin/python bench/write_path.py --rows 100000
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import hashlib
import io
import json
import pstats
import random
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, event, func, insert, select, text, update

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, Python puts bench/ first on sys.path, where bench/custom_fields.py would shadow the
# ``custom_fields`` package: look in the project root instead (the product is imported lazily below).
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)

from bench.scratch import log, scratch_app  # noqa: E402

SEED = 42
CHUNK = 5_000
NULL_SHARE = 0.05  # optional values are left empty ("") this often
TARGET = 3.0
# Fixed option ids (clean_options keeps well-formed ones), so both tables store the same values.
STAGES = ["Новая", "В работе", "Ждёт ответа", "Закрыта", "Отменена"]
STAGE_OPTIONS = {"options": [{"id": f"{i + 1:08x}", "label": label} for i, label in enumerate(STAGES)]}

# The 9 fields added after "Name" (the required display field every new table starts with): 10 in all.
EXTRA_FIELDS: list[tuple[str, str, dict[str, Any]]] = [
    ("Score", "integer", {}),
    ("Title", "text", {"max_length": 100}),
    ("Amount", "money", {"currency": "RUB"}),
    ("Started", "date", {}),
    ("Active", "boolean", {}),
    ("Stage", "single_select", STAGE_OPTIONS),
    ("Email", "email", {}),
    ("Rate", "decimal", {"scale": 2}),
    ("Due", "date", {}),
]
#: What the update phase changes in every record (5 of the 10 fields).
UPDATED = ("Score", "Title", "Amount", "Stage", "Due")


# --- data: raw text as a user would paste it ----------------------------------------------------------------


def _grouped(number: int) -> str:
    """12345 -> '12 345' (a space between thousands, as Russian spreadsheets show it)."""
    return f"{number:,}".replace(",", " ")


def raw_makers(rng: random.Random) -> dict[str, Callable[[], str]]:
    """One generator of deterministic raw text per field label."""
    alphabet = "abcdefghijklmnopqrstuvwxyzабвгдежзиклмнопрстуфхцчшэюя"
    words = ["".join(rng.choices(alphabet, k=rng.randint(4, 12))).capitalize() for _ in range(5_000)]
    latin = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 10))) for _ in range(5_000)]
    first_day = dt.date(2015, 1, 1)
    rand, randrange = rng.random, rng.randrange

    def optional(make: Callable[[], str]) -> Callable[[], str]:
        return lambda: "" if rand() < NULL_SHARE else make()

    def integer() -> str:
        number = randrange(-1_000, 1_000_000)
        return _grouped(number) if rand() < 0.5 else str(number)

    def money() -> str:
        cents = randrange(-50_000, 100_000_000)
        whole, frac = divmod(abs(cents), 100)
        sign = "-" if cents < 0 else ""
        shown = f"{sign}{_grouped(whole)},{frac:02d}"  # "1 234,50"
        return shown + " ₽" if rand() < 0.3 else shown

    def decimal() -> str:
        value = Decimal(randrange(0, 10_000_000)).scaleb(-3)  # three places: the field rounds to two
        return str(value).replace(".", ",") if rand() < 0.5 else str(value)

    def date() -> str:
        day = first_day + dt.timedelta(days=randrange(4_000))
        return day.strftime("%d.%m.%Y") if rand() < 0.7 else day.isoformat()

    def boolean() -> str:
        return ("да", "нет", "yes", "no", "1", "0", "true", "false")[randrange(8)]

    def stage() -> str:
        label = STAGES[randrange(len(STAGES))]
        return label.lower() if rand() < 0.2 else label

    def email() -> str:
        return f"{latin[randrange(5_000)]}.{randrange(1_000)}@{latin[randrange(5_000)]}.Example.COM"

    return {
        "Name": lambda: f"{words[randrange(5_000)]} {words[randrange(5_000)]}",  # required: always set
        "Score": optional(integer),
        "Title": optional(lambda: words[randrange(5_000)]),
        "Amount": optional(money),
        "Started": optional(date),
        "Active": optional(boolean),
        "Stage": optional(stage),
        "Email": optional(email),
        "Rate": optional(decimal),
        "Due": optional(date),
    }


def make_rows(makers: dict[str, Callable[[], str]], labels: tuple[str, ...], count: int) -> list[list[str]]:
    return [[makers[label]() for label in labels] for _ in range(count)]


# --- timing helpers -----------------------------------------------------------------------------------------


@contextmanager
def statement_timer(engine: Any) -> Iterator[dict[str, list[float]]]:
    """Per kind of statement run inside the block: [cursor executions, seconds, rows sent]."""
    kinds: dict[str, list[float]] = {}

    def before(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def after(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        took = time.perf_counter() - conn.info["bench_started"].pop()
        words = statement.split(None, 3)
        kind = " ".join(words[:3]) if words[:1] == ["INSERT"] else words[0]
        kind += " (executemany)" if executemany else ""
        entry = kinds.setdefault(kind, [0, 0.0, 0])
        entry[0] += 1
        entry[1] += took
        # A list of parameter sets for an executemany; one set (of many rows) for an insertmanyvalues batch.
        entry[2] += len(parameters) if executemany and isinstance(parameters, list | tuple) else 1

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield kinds
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def profile_text(profiler: cProfile.Profile, sort: str, limit: int) -> str:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(limit)
    return out.getvalue()


def table_digest(engine: Any, table: Any, names: list[str]) -> tuple[int, str]:
    """(rows, md5 of every field value in id order): equal for two tables holding the same values."""
    columns = ", ".join(f'"{table.c[name].name}"' for name in names)
    if engine.dialect.name == "sqlite":  # no md5 in SQLite: the same digest, taken in Python
        digest = hashlib.md5(usedforsecurity=False)
        count = 0
        with engine.connect() as conn:
            for row in conn.execute(text(f'SELECT {columns} FROM "{table.name}" ORDER BY id')):  # noqa: S608
                digest.update(repr(tuple(row)).encode() + b"\n")
                count += 1
        return count, digest.hexdigest()
    sql = (
        f"SELECT count(*), md5(string_agg(row({columns})::text, E'\\n' ORDER BY id)) "  # noqa: S608
        f'FROM "{table.name}"'
    )
    with engine.connect() as conn:
        count, digest = conn.execute(text(sql)).one()
    return count, digest


def diagnose(engine: Any, how: str, call: Callable[..., Any], *args: Any) -> tuple[Any, Any, Any]:
    """Run ``call(*args)`` once: "timed" -> (result, (seconds, statements by kind), None); "profiled" ->
    (result, None, cProfile.Profile)."""
    if how == "profiled":
        profiler = cProfile.Profile()
        return profiler.runcall(call, *args), None, profiler
    with statement_timer(engine) as kinds:
        began = time.perf_counter()
        result = call(*args)
        took = time.perf_counter() - began
    return result, (took, kinds), None


# --- the benchmark ------------------------------------------------------------------------------------------


def build_tables(app: Any) -> tuple[Any, Any]:
    """Two identical tables (A for the write path, B for the baseline); their EntitySpecs."""
    from custom_fields import runtime, service

    entities = []
    for label in ("Bench write path", "Bench baseline"):
        entity = service.create_entity(label, label)
        for field_label, type_name, settings in EXTRA_FIELDS:
            service.add_field(entity.id, field_label, type_name, settings=settings)
        entities.append(entity.slug)
    schema = runtime.refresh(app)
    return schema.entity(entities[0]), schema.entity(entities[1])


def run(app: Any, rows: int, profile: bool) -> dict[str, Any]:
    from flask_appbuilder.security.sqla.models import User

    from app.extensions import db
    from custom_fields import records, runtime
    from custom_fields.access import Actor
    from custom_fields.types import REGISTRY
    from models.records import RecordChange

    figures: dict[str, Any] = {"chunk": CHUNK}
    with app.app_context():
        log("creating two identical tables of 10 fields")
        spec_a, spec_b = build_tables(app)
        schema = runtime.current()
        table_a = schema.classes[spec_a.slug].__table__
        table_b = schema.classes[spec_b.slug].__table__
        labels = tuple(f.label for f in spec_a.live_fields)
        if len(labels) != 10 or labels != tuple(f.label for f in spec_b.live_fields):
            raise RuntimeError(f"expected two tables of the same 10 fields, got {labels}")
        names_a = [next(f.name for f in spec_a.live_fields if f.label == label) for label in labels]
        specs_b = [next(f for f in spec_b.live_fields if f.label == label) for label in labels]
        names_b = [f.name for f in specs_b]
        parsers_b = [(f.name, REGISTRY[f.type].parse, f) for f in specs_b]
        updated_at = [labels.index(label) for label in UPDATED]
        figures["fields"] = len(labels)

        admin_id = db.session.scalar(select(User.id).where(User.username == "admin"))
        if admin_id is None:
            raise RuntimeError("initialize did not create the user 'admin'")
        actor = Actor.for_user_id(admin_id, "import")
        db.session.commit()
        history_before = db.session.scalar(select(func.count()).select_from(RecordChange))

        def baseline_params(raw_rows: list[list[str]], at: list[int]) -> list[dict[str, Any]]:
            return [
                {parsers_b[i][0]: parsers_b[i][1](row[i], parsers_b[i][2]) for i in at} for row in raw_rows
            ]

        makers = raw_makers(random.Random(SEED))
        insert_b = insert(table_b)
        update_b = update(table_b).where(table_b.c.id == bindparam("_id"))
        every = list(range(len(labels)))
        ids_a: list[int] = []
        create_s = create_base_s = update_s = update_base_s = 0.0
        stored_values = 0

        log(f"create: {rows:,} rows in chunks of {CHUNK:,}, write path into A, Core insert into B")
        started = time.perf_counter()
        for index, offset in enumerate(range(0, rows, CHUNK)):
            raw_rows = make_rows(makers, labels, min(CHUNK, rows - offset))
            wanted = [dict(zip(names_a, row, strict=True)) for row in raw_rows]
            params = baseline_params(raw_rows, every)
            for row in params:
                row["owner_id"] = admin_id  # the write path sets the owner too (a foreign key to check)
            stored_values += sum(v is not None for row in params for v in row.values()) - len(params)

            def write_path(wanted: list[dict[str, Any]] = wanted) -> None:
                ids_a.extend(saved.id for saved in records.create_many(spec_a.slug, wanted, actor))

            def baseline(params: list[dict[str, Any]] = params) -> None:
                with db.engine.begin() as conn:
                    conn.execute(insert_b, params)

            for side in (write_path, baseline) if index % 2 == 0 else (baseline, write_path):
                began = time.perf_counter()
                side()
                took = time.perf_counter() - began
                if side is write_path:
                    create_s += took
                else:
                    create_base_s += took
            done = offset + len(raw_rows)
            log(
                f"  {done:>9,} / {rows:,}: write path {done / create_s:,.0f} rows/s, "
                f"Core insert {done / create_base_s:,.0f} rows/s"
            )
        figures["create_wall_s"] = time.perf_counter() - started

        history_created = db.session.scalar(select(func.count()).select_from(RecordChange)) - history_before
        values_logged = db.session.scalar(
            select(func.coalesce(func.sum(func.json_array_length(RecordChange.changes)), 0)).where(
                RecordChange.entity_id == spec_a.id, RecordChange.action == "create"
            )
        )
        db.session.commit()
        # One history row per record, holding one old/new pair per value it set.
        if history_created != rows or values_logged != stored_values:
            raise RuntimeError(
                f"create wrote {history_created:,} history rows with {values_logged:,} values, "
                f"expected {rows:,} with {stored_values:,}"
            )
        digest_a, digest_b = (
            table_digest(db.engine, table_a, names_a),
            table_digest(db.engine, table_b, names_b),
        )
        if digest_a != digest_b or digest_a[0] != rows:
            raise RuntimeError(f"after create the tables differ: A {digest_a}, B {digest_b}")
        with db.engine.connect() as conn:
            ids_b = list(conn.execute(select(table_b.c.id).order_by(table_b.c.id)).scalars())
        if len(ids_a) != rows or len(ids_b) != rows:
            raise RuntimeError(f"expected {rows} ids on each side, got {len(ids_a)} and {len(ids_b)}")

        updated_names_a = [names_a[i] for i in updated_at]
        log(f"update: {len(UPDATED)} fields of every record, write path in A, Core update in B")
        started = time.perf_counter()
        for index, offset in enumerate(range(0, rows, CHUNK)):
            raw_rows = make_rows(makers, UPDATED, min(CHUNK, rows - offset))
            full = [[""] * len(labels) for _ in raw_rows]
            for row, changed in zip(full, raw_rows, strict=True):
                for i, value in zip(updated_at, changed, strict=True):
                    row[i] = value
            changes = [
                (pk, dict(zip(updated_names_a, row, strict=True)), 1)
                for pk, row in zip(ids_a[offset : offset + len(raw_rows)], raw_rows, strict=True)
            ]
            params = baseline_params(full, updated_at)
            for row, pk in zip(params, ids_b[offset : offset + len(raw_rows)], strict=True):
                row["_id"] = pk

            def write_path(changes: list[Any] = changes) -> None:
                records.update_many(spec_a.slug, changes, actor)

            def baseline(params: list[dict[str, Any]] = params) -> None:
                with db.engine.begin() as conn:
                    conn.execute(update_b, params)

            for side in (write_path, baseline) if index % 2 == 0 else (baseline, write_path):
                began = time.perf_counter()
                side()
                took = time.perf_counter() - began
                if side is write_path:
                    update_s += took
                else:
                    update_base_s += took
            done = offset + len(raw_rows)
            log(
                f"  {done:>9,} / {rows:,}: write path {done / update_s:,.0f} rows/s, "
                f"Core update {done / update_base_s:,.0f} rows/s"
            )
        figures["update_wall_s"] = time.perf_counter() - started

        history_total = db.session.scalar(select(func.count()).select_from(RecordChange)) - history_before
        db.session.commit()
        digest_a, digest_b = (
            table_digest(db.engine, table_a, names_a),
            table_digest(db.engine, table_b, names_b),
        )
        if digest_a != digest_b:
            raise RuntimeError(f"after update the tables differ: A {digest_a}, B {digest_b}")
        with db.engine.connect() as conn:
            versions = dict(
                conn.execute(
                    select(table_a.c.row_version, func.count()).group_by(table_a.c.row_version)
                ).all()
            )
        figures.update(
            create_s=create_s, create_base_s=create_base_s, update_s=update_s, update_base_s=update_base_s,
            history_create=history_created, history_update=history_total - history_created,
            versions=versions,
        )  # fmt: skip

        if profile:
            # Two more chunks on table A only (not timed above): one with every statement timed, where
            # the write path's time goes; one under cProfile, which functions take it.
            log(f"diagnostics: two more chunks of {CHUNK:,} rows on table A (statement timing, cProfile)")
            figures["diagnostics"] = diagnostics = []
            saved_by_how: dict[str, list[Any]] = {}
            for how in ("timed", "profiled"):
                raw_rows = make_rows(makers, labels, CHUNK)
                wanted = [dict(zip(names_a, row, strict=True)) for row in raw_rows]
                saved, timing, profiler = diagnose(
                    db.engine, how, records.create_many, spec_a.slug, wanted, actor
                )
                saved_by_how[how] = saved
                diagnostics.append(("create", timing, profiler))
            for how, saved in saved_by_how.items():
                raw_rows = make_rows(makers, UPDATED, CHUNK)
                changes = [
                    (item.id, dict(zip(updated_names_a, row, strict=True)), item.version)
                    for item, row in zip(saved, raw_rows, strict=True)
                ]
                _result, timing, profiler = diagnose(
                    db.engine, how, records.update_many, spec_a.slug, changes, actor
                )
                diagnostics.append(("update", timing, profiler))
    return figures


def report(rows: int, figures: dict[str, Any], total_s: float) -> dict[str, Any]:
    create_ratio = figures["create_s"] / figures["create_base_s"]
    update_ratio = figures["update_s"] / figures["update_base_s"]
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"write_path benchmark: {rows:,} rows, {figures['fields']} fields, chunks of {figures['chunk']:,}")
    print(
        f"  create: write path {figures['create_s']:.2f} s ({rows / figures['create_s']:,.0f} rows/s, "
        f"{figures['history_create']:,} history rows), Core insert {figures['create_base_s']:.2f} s "
        f"({rows / figures['create_base_s']:,.0f} rows/s); ratio {create_ratio:.2f} (target <= {TARGET:g})"
    )
    print(
        f"  update ({len(UPDATED)} fields): write path {figures['update_s']:.2f} s "
        f"({rows / figures['update_s']:,.0f} rows/s, {figures['history_update']:,} history rows), "
        f"Core update {figures['update_base_s']:.2f} s ({rows / figures['update_base_s']:,.0f} rows/s); "
        f"ratio {update_ratio:.2f} (target <= {TARGET:g})"
    )
    print(f"  row_version in the write path's table after the update: {figures['versions']}")
    for phase, timing, profiler in figures.get("diagnostics", []):
        if timing is not None:
            took, kinds = timing
            in_sql = sum(seconds for _n, seconds, _rows in kinds.values())
            print(
                f"  one {phase}_many of {CHUNK:,} rows: {took:.2f} s, of which {in_sql:.2f} s in SQL "
                f"statements (sending, executing, fetching) and {took - in_sql:.2f} s outside them "
                "(Python, COMMIT):"
            )
            for kind, (count, seconds, sent) in sorted(kinds.items(), key=lambda item: -item[1][1]):
                print(f"    {seconds:7.3f} s  {kind}: {count:,} executions, {sent:,} parameter sets")
        if profiler is not None:
            print(f"  cProfile of one {phase}_many of {CHUNK:,} rows: custom_fields/records.py, cumulative")
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(
                r"custom_fields/records\.py"
            )
            print(out.getvalue())
            print(f"  cProfile of one {phase}_many of {CHUNK:,} rows: everything, by own time")
            print(profile_text(profiler, "tottime", 25))
    print(f"  whole run: {total_s:.0f} s; peak RSS {peak_rss_mb:.0f} MB")
    return {
        "bench": "write_path",
        "rows": rows,
        "create_rows_per_s": round(rows / figures["create_s"]),
        "create_base_rows_per_s": round(rows / figures["create_base_s"]),
        "create_ratio": round(create_ratio, 2),
        "update_rows_per_s": round(rows / figures["update_s"]),
        "update_base_rows_per_s": round(rows / figures["update_base_s"]),
        "update_ratio": round(update_ratio, 2),
        "ratio": round(max(create_ratio, update_ratio), 2),
        "peak_rss_mb": round(peak_rss_mb),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="records to write (default 100000)")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also print a cProfile of one more create_many and update_many chunk (not timed)",
    )
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be positive")

    started = time.perf_counter()
    with scratch_app(sqlite=args.sqlite) as app:
        figures = run(app, args.rows, args.profile)
    result = report(args.rows, figures, time.perf_counter() - started)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
