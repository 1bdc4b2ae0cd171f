"""Schema changes on a big table while others read and write it (issue 24).

A custom table of ``--rows`` rows and 20 fields on a scratch PostgreSQL database. Four changes, each timed
from the call to the field being usable, by Tabula (``service.change_type`` / ``update_field``) and, on a
copy of the table made in the same run, by hand as plain SQL (``ALTER ... TYPE ... USING``, ``CREATE
UNIQUE INDEX``): text → integer, integer → decimal, text → single select, set unique. Meanwhile a reader
(one record every 20 ms) and a writer (another field of one record every 20 ms) on their own connections
record their longest statement. Each change runs in a process of its own, as an RQ worker's job would (the
app created, then the change): ``peak_rss_mb`` is the highest peak RSS of those processes, and the time is
measured there, from the call to its return.

The last stdout line is one JSON object: ``{"bench": "schema_change", "rows": ..., "ratio": <worst of the
four>, "longest_read_wait_s": ..., "longest_write_wait_s": ..., "peak_rss_mb": ..., ...}``. Usage::

    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/schema_change.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import log, scratch_app  # noqa: E402

RATIO_TARGET = 2.0
WAIT_TARGET_S = 1.0
RSS_TARGET_MB = 200
STATUSES = ["Новый", "В работе", "Ждёт ответа", "Закрыт", "Отменён"]
FILLERS = 16  # with code, amount, status and sku: 20 fields


WORKER = """
import json, os, resource, sys, time
from app import create_app

spec = json.loads(sys.argv[1])
app = create_app(dict(os.environ))
with app.app_context():
    from app.extensions import db
    from custom_fields import service
    from custom_fields.runtime import refresh

    refresh()  # as a worker does before its jobs (jobs/worker.py maps the schema before forking)
    service.field_row(spec["field"])
    db.session.rollback()
    started = time.monotonic()
    if spec["type"] == "unique":
        service.update_field(spec["field"], unique=True)
    else:
        service.change_type(spec["field"], spec["type"], spec["settings"])
    seconds = time.monotonic() - started
print(json.dumps({"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_in_worker(env: dict[str, str], field_id: int, type_name: str, settings: dict | None) -> dict:
    """One change in a process of its own; its time (call to return) and peak RSS."""
    import subprocess

    spec = json.dumps({"field": field_id, "type": type_name, "settings": settings})
    done = subprocess.run(
        [sys.executable, "-c", WORKER, spec], env=env, capture_output=True, text=True, check=False,
        cwd=str(Path(__file__).resolve().parent.parent),
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the change failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class Neighbours:
    """A reader and a writer of other fields, each on its own connection, every 20 ms."""

    def __init__(self, engine: Any, table_name: str, read_column: str, write_column: str, rows: int) -> None:
        self.engine, self.table, self.rows = engine, table_name, rows
        self.read_column, self.write_column = read_column, write_column
        self.stop = threading.Event()
        self.longest = {"read": 0.0, "write": 0.0}
        self.errors: list[str] = []
        self.threads = [
            threading.Thread(target=self._loop, args=(kind,), daemon=True) for kind in self.longest
        ]

    def _loop(self, kind: str) -> None:
        from sqlalchemy import text

        sql = (
            f"SELECT id, {self.read_column} FROM {self.table} WHERE id = :id"  # noqa: S608
            if kind == "read"
            else f"UPDATE {self.table} SET {self.write_column} = :v WHERE id = :id"  # noqa: S608
        )
        i = 0
        with self.engine.connect() as conn:
            while not self.stop.is_set():
                i += 1
                started = time.monotonic()
                try:
                    with conn.begin():
                        conn.execute(text(sql), {"id": (i * 7919) % self.rows + 1, "v": f"w{i}"})
                except Exception as exc:  # noqa: BLE001 (reported)
                    self.errors.append(f"{kind}: {str(exc)[:200]}")
                self.longest[kind] = max(self.longest[kind], time.monotonic() - started)
                time.sleep(0.02)

    def __enter__(self) -> Neighbours:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def make_table(rows: int) -> tuple[Any, dict[str, Any]]:
    from sqlalchemy import text

    from app.extensions import db
    from custom_fields import service
    from custom_fields.runtime import refresh

    entity = service.create_entity("Замер схемы", "Замеры схемы")
    fields = {
        "code": service.add_field(entity.id, "Код", "text", settings={"max_length": 20}),
        "amount": service.add_field(entity.id, "Сумма", "integer"),
        "status": service.add_field(entity.id, "Статус", "text", settings={"max_length": 50}),
        "sku": service.add_field(entity.id, "Артикул", "text", settings={"max_length": 40}),
    }
    for i in range(FILLERS):
        kind = "text" if i % 2 else "integer"
        fields[f"filler{i}"] = service.add_field(entity.id, f"Поле {i}", kind)
    refresh()
    columns = {key: row.column_name for key, row in fields.items()}
    name_column = db.session.get(type(fields["code"]), entity.display_field_id).column_name
    values = {
        name_column: "'Сделка ' || g",
        columns["code"]: "g::text",
        columns["amount"]: "(g * 37) % 1000000",
        columns["status"]: f"(ARRAY{STATUSES!r})[1 + g % {len(STATUSES)}]".replace('"', "'"),
        columns["sku"]: "'SKU-' || g",
        **{columns[f"filler{i}"]: ("'текст ' || g" if i % 2 else "g") for i in range(FILLERS)},
    }
    log(f"filling {rows:,} rows of 20 fields")
    with db.engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {entity.table_name} ({', '.join(values)}) "  # noqa: S608
                f"SELECT {', '.join(values.values())} FROM generate_series(1, :n) AS g"
            ),
            {"n": rows},
        )
        conn.execute(text(f"ANALYZE {entity.table_name}"))
    return entity, fields


def plain_sql(table_name: str, column: str, change: str, options: dict[str, str]) -> float:
    """The same change by hand on a copy of the table (the copy's making not timed)."""
    from sqlalchemy import text

    from app.extensions import db

    copy = f"{table_name}_copy"
    with db.engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {copy}"))
        # The same table: its columns, defaults and indexes (a rewrite rebuilds them all, as Tabula's fill
        # writes each of them once more); CREATE TABLE AS would leave the indexes out.
        conn.execute(text(f"CREATE TABLE {copy} (LIKE {table_name} INCLUDING ALL)"))
        conn.execute(text(f"INSERT INTO {copy} SELECT * FROM {table_name}"))  # noqa: S608
        conn.execute(text(f"ANALYZE {copy}"))
    statements = {
        "text_integer": f"ALTER TABLE {copy} ALTER COLUMN {column} TYPE bigint "
        f"USING NULLIF(trim({column}), '')::bigint",
        "integer_decimal": f"ALTER TABLE {copy} ALTER COLUMN {column} TYPE numeric(18, 2)",
        "text_select": f"ALTER TABLE {copy} ALTER COLUMN {column} TYPE varchar(16) USING CASE {column} "
        + " ".join(f"WHEN '{label}' THEN '{option}'" for label, option in options.items())
        + " END",
        "unique": f"CREATE UNIQUE INDEX ON {copy} (lower({column}))",
    }
    started = time.monotonic()
    with db.engine.begin() as conn:
        conn.execute(text(statements[change]))
    elapsed = time.monotonic() - started
    with db.engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {copy}"))
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    figures: dict[str, Any] = {"bench": "schema_change", "rows": args.rows}
    with scratch_app() as app, app.app_context():
        from app.extensions import db
        from custom_fields.runtime import refresh

        entity, fields = make_table(args.rows)
        options = [{"label": label} for label in STATUSES]
        changes: list[tuple[str, str, str, dict[str, Any] | None]] = [
            ("text_integer", "code", "integer", None),
            ("integer_decimal", "amount", "decimal", {"scale": 2}),
            ("text_select", "status", "single_select", {"options": options}),
            ("unique", "sku", "unique", None),
        ]
        reader = fields["filler1"].column_name
        writer = fields["filler3"].column_name
        table_name, field_ids = entity.table_name, {key: row.id for key, row in fields.items()}
        field_class = type(fields["code"])
        ratios = {}
        waits = {"read": 0.0, "write": 0.0}
        errors: list[str] = []
        peak_mb = 0.0
        for name, key, type_name, settings in changes:
            field_id = field_ids[key]
            column = db.session.get(field_class, field_id).column_name
            db.session.rollback()  # no transaction of this process stays open during the change
            log(f"{name}: plain SQL on a copy")
            plain_s = plain_sql(table_name, column, name, {s: f"o{i}" for i, s in enumerate(STATUSES)})
            log(f"{name}: Tabula, with a reader and a writer")
            with Neighbours(db.engine, table_name, reader, writer, args.rows) as neighbours:
                time.sleep(0.3)
                ran = run_in_worker(app.bench_env, field_id, type_name, settings)
                tabula_s, peak_mb = ran["seconds"], max(peak_mb, ran["rss_mb"])
                time.sleep(0.3)
            refresh()
            db.session.rollback()  # an open transaction here would hold up the next CONCURRENTLY build
            errors += neighbours.errors
            for kind in waits:
                waits[kind] = max(waits[kind], neighbours.longest[kind])
            ratios[name] = round(tabula_s / plain_s, 2)
            figures[f"{name}_s"], figures[f"{name}_plain_s"] = round(tabula_s, 2), round(plain_s, 2)
            longest = neighbours.longest
            log(f"{name}: {tabula_s:.2f} s vs plain {plain_s:.2f} s; "
                f"longest read {longest['read']:.3f} s, write {longest['write']:.3f} s")  # fmt: skip
    figures["ratios"] = ratios
    figures["ratio"] = max(ratios.values())
    figures["longest_read_wait_s"] = round(waits["read"], 3)
    figures["longest_write_wait_s"] = round(waits["write"], 3)
    figures["peak_rss_mb"] = round(peak_mb)
    figures["neighbour_errors"] = len(errors)
    if errors:
        log("neighbour errors: " + "; ".join(errors[:5]))
    print(
        f"worst ratio {figures['ratio']} (target ≤ {RATIO_TARGET}); "
        f"longest read {figures['longest_read_wait_s']} s, write {figures['longest_write_wait_s']} s "
        f"(target ≤ {WAIT_TARGET_S}); peak RSS {figures['peak_rss_mb']} MB (target ≤ {RSS_TARGET_MB})"
    )
    print(json.dumps(figures, ensure_ascii=False))


if __name__ == "__main__":
    main()
