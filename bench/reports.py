"""Benchmark of the report engine (``exports.reports``, standing on ``TableQuery.aggregate``) against the same
pivot written by hand as one SQL ``GROUP BY`` (PostgreSQL only).

Builds a scratch database next to ``BENCH_DATABASE_URL``, the 20-field table of ``bench/grid.py`` with
``--rows`` records loaded by COPY (owners alternate between the admin and a Staff user), and a Manager-like
user whose role reads the rows of their team (the Staff user and themselves). Then, alternating, medians of
``--repeats``:

- the report: the funnel by manager by month — rows Stage × owner, columns Started by month, measures
  count and the sum of Price — run through the engine as that user (row scope, labels, pandas pivot and
  totals included);
- the baseline: the equivalent SQL (``GROUP BY stage, owner_id, date_trunc('month', started)`` over the
  team's live rows) fetched with psycopg, no framework.

The last line is one JSON object, e.g. ``{"bench": "reports", "rows": 1000000, "ratio": 1.2,
"report_ms": 420.0, "sql_ms": 350.0, ...}`` (target ratio <= 1.5). Usage::

    .venv/bin/python bench/reports.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)  # bench/custom_fields.py would shadow the package

from bench.grid import EXTRA_FIELDS, bulk_load  # noqa: E402
from bench.scratch import log, scratch_app  # noqa: E402

TARGET = 1.5
PASSWORD = "bench-Manager-1"  # noqa: S105 (a scratch database's user)


def run(app: Any, rows: int, repeats: int) -> dict[str, Any]:
    from flask_appbuilder.security.sqla.models import Role

    from app.extensions import db
    from custom_fields import runtime, service
    from custom_fields.access import Actor, save_rules
    from exports import reports
    from models import Field
    from views.teams import create_team

    figures: dict[str, Any] = {}
    with app.app_context():
        log("creating the table, a team and its manager")
        entity = service.create_entity("Report bench", "Report bench rows")
        for label, type_name, settings in EXTRA_FIELDS:
            service.add_field(entity.id, label, type_name, settings=settings)
        fields = (
            db.session.query(Field)
            .filter(Field.entity_id == entity.id)
            .order_by(Field.position, Field.id)
            .all()
        )
        by_label = {f.label: f for f in fields}
        sm = app.appbuilder.sm
        staff_role = db.session.query(Role).filter(Role.name == "Staff").one()
        lead_role = sm.add_role("Bench team lead")
        save_rules(lead_role.id, tables={entity.id: {"read": True, "read_scope": "team"}})
        staff = sm.add_user("bench_staff", "Bench", "Staff", "bench_staff@example.com", staff_role, PASSWORD)
        lead = sm.add_user("bench_lead", "Bench", "Lead", "bench_lead@example.com", lead_role, PASSWORD)
        admin_id = sm.find_user(username="admin").id
        create_team("Bench team", [staff.id, lead.id])
        staff_id, lead_id = staff.id, lead.id
        db.session.commit()

        log(f"loading {rows:,} rows with COPY")
        figures["load_s"] = bulk_load(db, entity.table_name, fields, rows, (admin_id, staff_id))
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'VACUUM (ANALYZE) "{entity.table_name}"'))
        runtime.refresh(app, force=True)

        stage, started, price = (by_label[n] for n in ("Stage", "Started", "Price"))
        spec = reports.ReportSpec(
            table=entity.slug,
            rows=(stage.name, "owner_id"),
            column=f"{started.name}:month",
            measures=(reports.Measure("count"), reports.Measure("sum", price.name)),
        )
        actor = Actor.for_user_id(lead_id, "ui")
        table = entity.table_name
        sql = text(
            f'SELECT "{stage.column_name}", owner_id, date_trunc(\'month\', "{started.column_name}")::date, '  # noqa: S608
            f'count(id), sum("{price.column_name}") FROM "{table}" '
            "WHERE deleted_at IS NULL AND owner_id IN (:a, :b) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        )

        def by_hand() -> int:
            with db.engine.connect() as conn:
                return len(conn.execute(sql, {"a": staff_id, "b": lead_id}).all())

        def engine() -> int:
            pivot = reports.run(spec, actor)
            db.session.remove()
            return sum(len(r) for r in pivot.cells[spec.measures[0].alias])

        groups = by_hand()
        pivot = reports.run(spec, actor)
        count = spec.measures[0].alias
        total = pivot.grand_totals[count]
        with db.engine.connect() as conn:
            expected = conn.execute(
                text(f'SELECT count(*) FROM "{table}" WHERE deleted_at IS NULL AND owner_id IN (:a, :b)'),  # noqa: S608
                {"a": staff_id, "b": lead_id},
            ).scalar_one()
        if total != expected:
            raise RuntimeError(f"the report counts {total} rows, the team has {expected}")
        figures["groups"] = groups
        figures["cells"] = sum(len(r) for r in pivot.cells[count])
        figures["team_rows"] = expected
        report_s, sql_s = [], []
        engine()  # warm: mappings, query shapes
        for i in range(repeats):
            for call, into in ((engine, report_s), (by_hand, sql_s)):
                began = time.perf_counter()
                call()
                into.append(time.perf_counter() - began)
            log(f"  {i + 1}/{repeats}: report {report_s[-1] * 1000:.0f} ms, SQL {sql_s[-1] * 1000:.0f} ms")
        figures["report_ms"] = statistics.median(report_s) * 1000
        figures["sql_ms"] = statistics.median(sql_s) * 1000
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()
    with scratch_app() as app:
        figures = run(app, args.rows, args.repeats)
    ratio = figures["report_ms"] / figures["sql_ms"]
    print(
        f"reports benchmark: {args.rows:,} rows; funnel by manager by month as a team lead "
        f"({figures['team_rows']:,} rows of their team, {figures['groups']:,} groups)"
    )
    print(
        f"  report engine {figures['report_ms']:.0f} ms, hand-written GROUP BY {figures['sql_ms']:.0f} ms, "
        f"ratio {ratio:.2f} (target <= {TARGET})"
    )
    result = {
        "bench": "reports",
        "rows": args.rows,
        "ratio": round(ratio, 2),
        "report_ms": round(figures["report_ms"], 1),
        "sql_ms": round(figures["sql_ms"], 1),
        "groups": figures["groups"],
        "total_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
