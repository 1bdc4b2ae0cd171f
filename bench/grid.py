"""Benchmark of the grid's data endpoint (``GET /api/v1/data/<slug>``, standing on ``custom_fields.query``)
against a bare Flask route running the same SQL written by hand (PostgreSQL only).

Builds a scratch database next to ``BENCH_DATABASE_URL``, a custom table of 20 fields through
``custom_fields.service`` (3 of them indexed here with a plain ``CREATE INDEX``), loads ``--rows`` records
with COPY (half of them owned by a Staff user, whose role hides one field and reads its own rows only),
then times four cases as that user, each through the endpoint (API token) and through the bare route
(its own Flask app: no framework, permission or layer code; the same WHERE for the owner, the same
joins for the owner's label, keyset for the deep page, no count), both called through a Werkzeug test
client, alternating, medians of ``--repeats``:

- ``a``: the first page of 100, sorted by an indexed custom field (integer);
- ``b``: the page of 100 after the user's middle row in that order (row ``rows // 2`` of the table), by
  a cursor the layer builds (``TableQuery.cursor_after``);
- ``c``: an equality filter on an indexed custom field (text), sorted by another indexed field (date,
  descending), first page;
- ``d``: a quick search for a rare word (in about 1 row of 10,000), first page.

Then ``count_ms``: ``GET /api/v1/data/<slug>/count`` on all the user's rows (estimated above 10,000).
Progress goes to stderr; the figures go to stdout, the last line being one JSON object, e.g.
``{"bench": "grid", "rows": 1000000, "ratio": 1.21, "first_page_ms": 5.1, "deep_page_ms": 5.3,
"count_ms": 4.0, ...}``. The scratch database is dropped at the end, whatever happens. Usage::

    .venv/bin/python bench/grid.py --rows 1000000
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import datetime as dt
import hashlib
import hmac
import io
import json
import pstats
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, Python puts bench/ first on sys.path, where bench/custom_fields.py would shadow the
# ``custom_fields`` package: look in the project root instead (the product is imported lazily below).
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)

from bench.scratch import log, scratch_app  # noqa: E402

SEED = 42
PROGRESS_EVERY = 100_000
PAGE = 100
TARGET = 1.5
PROFILE_SORT = "cumulative"
STAFF_PASSWORD = "bench-Staff-1"  # noqa: S105 (a scratch database's user)
RARE_WORD = "zanzibarium"
RARE_EVERY = 10_000
NULL_SHARE = 0.05
FIRST_CREATED = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
CODES = 2_000  # distinct values of the filtered text field (case c matches about rows / CODES)
SELECT_OPTIONS = {"options": [{"label": "A"}, {"label": "B"}, {"label": "C"}]}

# The 19 fields added after "Name" (the display field every new table starts with): 20 in all.
EXTRA_FIELDS: list[tuple[str, str, dict[str, Any]]] = [
    ("Amount", "integer", {}),  # indexed: the sort of cases a and b
    ("Code", "text", {"max_length": 20}),  # indexed: the filter of case c
    ("Due", "date", {}),  # indexed: the sort of case c
    ("Title", "text", {"max_length": 100}),
    ("Price", "money", {"currency": "RUB"}),
    ("Rate", "decimal", {"scale": 2}),
    ("Started", "date", {}),
    ("Active", "boolean", {}),
    ("Stage", "single_select", SELECT_OPTIONS),
    ("Email", "email", {}),
    ("City", "text", {"max_length": 100}),
    ("Quantity", "integer", {}),
    ("Weight", "decimal", {"scale": 3}),
    ("Paid", "boolean", {}),
    ("Priority", "single_select", SELECT_OPTIONS),
    ("Notes", "text", {"max_length": 200}),
    ("Rank", "integer", {}),
    ("Region", "text", {"max_length": 100}),
    ("Salary", "money", {"currency": "RUB"}),  # hidden from the Staff role
]
INDEXED = ("Amount", "Code", "Due")
HIDDEN = "Salary"


# --- data ---------------------------------------------------------------------------------------------------


def value_makers(fields: list[Any], rng: random.Random) -> list[Callable[[], Any]]:
    """One generator of deterministic values per field, in column order."""
    alphabet = "abcdefghijklmnopqrstuvwxyzабвгдежзиклмнопрстуфхцчшэюя"
    words = ["".join(rng.choices(alphabet, k=rng.randint(4, 12))).capitalize() for _ in range(20_000)]
    dates = [dt.date(2015, 1, 1) + dt.timedelta(days=d) for d in range(4_000)]
    cents = [Decimal(n).scaleb(-2) for n in range(-50_000, 1_000_000, 7)]
    thousandths = [Decimal(n).scaleb(-3) for n in range(0, 1_000_000, 13)]
    codes = [f"K{n:05d}" for n in range(CODES)]
    rand, randrange = rng.random, rng.randrange

    def optional(make: Callable[[], Any]) -> Callable[[], Any]:
        return lambda: None if rand() < NULL_SHARE else make()

    def notes() -> str:
        words_here = f"{words[randrange(20_000)]} {words[randrange(20_000)]}"
        return f"{words_here} {RARE_WORD}" if randrange(RARE_EVERY) == 0 else words_here

    makers: list[Callable[[], Any]] = []
    for index, fld in enumerate(fields):
        if index == 0:
            makers.append(lambda: f"{words[randrange(20_000)]} {words[randrange(20_000)]}")
        elif fld.label == "Amount":
            makers.append(optional(lambda: randrange(10_000_000)))
        elif fld.label == "Code":
            makers.append(lambda: codes[randrange(CODES)])
        elif fld.label == "Notes":
            makers.append(notes)
        elif fld.type == "text":
            makers.append(optional(lambda: words[randrange(20_000)]))
        elif fld.type == "integer":
            makers.append(optional(lambda: randrange(-1_000, 100_000)))
        elif fld.type == "money":
            makers.append(optional(lambda: cents[randrange(len(cents))]))
        elif fld.type == "decimal":
            makers.append(optional(lambda: thousandths[randrange(len(thousandths))]))
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


def bulk_load(db: Any, table_name: str, fields: list[Any], rows: int, owners: tuple[int, int]) -> float:
    """COPY ``rows`` deterministic records (every other one owned by ``owners[0]``)."""
    makers = value_makers(fields, random.Random(SEED))
    columns = ", ".join(f'"{f.column_name}"' for f in fields)
    started = time.perf_counter()
    raw = db.engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            sql = f'COPY "{table_name}" ({columns}, owner_id, created_at, updated_at) FROM STDIN'
            with cursor.copy(sql) as copy:
                write_row = copy.write_row
                for done in range(1, rows + 1):
                    # created a minute apart, each changed an hour after (the grid shows both)
                    created = FIRST_CREATED + dt.timedelta(minutes=done)
                    write_row([*(make() for make in makers), owners[done % 2], created, created + HOUR])
                    if done % PROGRESS_EVERY == 0 or done == rows:
                        elapsed = time.perf_counter() - started
                        log(f"  loaded {done:>10,} / {rows:,} rows ({done / elapsed:,.0f} rows/s)")
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - started


# --- the baseline: a bare Flask app running hand-written SQL ------------------------------------------------


def bare_views(engine: Any, table: str, columns: list[Any], staff_id: int, header: list[dict]) -> dict:
    """One view per case: the SQL written by hand, the same JSON out (no framework or permission code)."""
    from flask import Response, request

    names = [c.name for c in columns]
    select_list = ", ".join(f't."{c.column_name}"' for c in columns)
    base = (
        f"SELECT t.id, {select_list}, t.created_at, t.updated_at, "  # noqa: S608
        "t.owner_id, u.username, u.first_name, u.last_name "
        f'FROM "{table}" t LEFT OUTER JOIN ab_user u ON u.id = t.owner_id '
        "WHERE t.owner_id = :me AND t.deleted_at IS NULL"
    )
    scales = {c.name: (2 if c.type == "money" else int(c.settings.get("scale", 2))) for c in columns}
    kinds = [c.type for c in columns]
    key = hashlib.sha256(b"bare").digest()

    def as_json(row: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"id": row[0]}
        for index, (name, kind) in enumerate(zip(names, kinds, strict=True), start=1):
            value = row[index]
            if value is None:
                out[name] = None
            elif kind in ("decimal", "money"):
                out[name] = str(value.quantize(Decimal(1).scaleb(-scales[name])))
            elif kind == "date":
                out[name] = value.isoformat()
            else:
                out[name] = value
        created, updated, owner, username, first, last = row[-6:]
        out["created_at"] = None if created is None else created.isoformat()
        out["updated_at"] = None if updated is None else updated.isoformat()
        full = " ".join(p for p in (first, last) if p)
        label = (f"{full} ({username})" if full else username) if username is not None else None
        out["owner_id"] = None if owner is None else {"id": owner, "label": label}
        return out

    def page(sql: str, params: dict[str, Any], key_index: int | None) -> Response:
        with engine.connect() as conn:
            rows = conn.execute(text(sql), params).all()
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        cursor = None
        if more:
            last = rows[-1]
            values = [last[key_index] if key_index is not None else None, last[0]]
            data = json.dumps(values, default=str).encode()
            mac = hmac.new(key, data, hashlib.sha256).digest()[:18]
            cursor = base64.urlsafe_b64encode(data).decode() + "." + base64.urlsafe_b64encode(mac).decode()
        body = {"columns": header, "rows": [as_json(r) for r in rows], "next": cursor}
        return Response(
            json.dumps(body, ensure_ascii=False, separators=(",", ":")), mimetype="application/json"
        )

    amount, code, due = (next(c for c in columns if c.label == label) for label in SHOWN_KEYS)
    amount_index = names.index(amount.name) + 1

    # Written once (the views read nothing but the request).
    limit = f"LIMIT {PAGE + 1}"
    by_amount = f'ORDER BY t."{amount.column_name}", t.id {limit}'
    first_sql = f"{base} {by_amount}"
    deep_sql = f'{base} AND (t."{amount.column_name}", t.id) > (:v, :i) {by_amount}'
    filtered_sql = (
        f'{base} AND t."{code.column_name}" = :code ORDER BY t."{due.column_name}" DESC, t.id {limit}'
    )
    texts = [c.column_name for c in columns if c.type in ("text", "email") and c.searchable]
    like = " OR ".join(f'lower(t."{name}") LIKE :word' for name in texts)
    searched_sql = f"{base} AND ({like}) ORDER BY t.id {limit}"
    due_index = names.index(due.name) + 1

    def first_page() -> Response:
        return page(first_sql, {"me": staff_id}, amount_index)

    def deep_page() -> Response:
        after = {"v": int(request.args["v"]), "i": int(request.args["i"])}
        return page(deep_sql, {"me": staff_id, **after}, amount_index)

    def filtered() -> Response:
        return page(filtered_sql, {"me": staff_id, "code": request.args["code"]}, due_index)

    def searched() -> Response:
        return page(searched_sql, {"me": staff_id, "word": f"%{request.args['q']}%"}, None)

    return {"a": first_page, "b": deep_page, "c": filtered, "d": searched}


def bare_app(views: dict) -> Any:
    """A Flask app of its own serving the bare views."""
    from flask import Flask

    app = Flask("bare")
    for name, view in views.items():
        app.add_url_rule(f"/{name}", name, view)
    return app


SHOWN_KEYS = ("Amount", "Code", "Due")


# --- timing -------------------------------------------------------------------------------------------------


def timed(call: Callable[[], Any]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def isolated_client_class() -> type:
    """A test client giving each request an app context of its own, as production does (the tests'
    ``IsolatedClient``): the database session, its connection and the signed-in user are not kept between
    requests. Without it every request of the run shares the app context ``run`` holds."""
    from flask.testing import FlaskClient

    class IsolatedClient(FlaskClient):
        def open(self, *args: Any, **kwargs: Any) -> Any:
            with self.application.app_context():
                return super().open(*args, **kwargs)

    return IsolatedClient


def run(app: Any, rows: int, repeats: int, profile: bool, isolated: bool = False) -> dict[str, Any]:
    from flask_appbuilder.security.sqla.models import Role

    from app.extensions import db
    from custom_fields import access, runtime, service
    from custom_fields.access import Actor
    from custom_fields.query import TableQuery
    from models import Field

    figures: dict[str, Any] = {"cases": {}}
    with app.app_context():
        log("creating the table, its fields and a Staff user")
        entity = service.create_entity("Grid bench", "Grid bench rows")
        for label, type_name, settings in EXTRA_FIELDS:
            service.add_field(entity.id, label, type_name, settings=settings)
        fields = (
            db.session.query(Field)
            .filter(Field.entity_id == entity.id)
            .order_by(Field.position, Field.id)
            .all()
        )
        if len(fields) != 20:
            raise RuntimeError(f"expected 20 fields, the table has {len(fields)}")
        by_label = {f.label: f for f in fields}
        slug, table_name = entity.slug, entity.table_name
        sm = app.appbuilder.sm
        staff_role = db.session.query(Role).filter(Role.name == "Staff").one()
        staff = sm.add_user(
            "bench_staff", "Bench", "Staff", "bench_staff@example.com", staff_role, STAFF_PASSWORD
        )
        admin_id = sm.find_user(username="admin").id
        access.set_field_mode(staff_role.id, by_label[HIDDEN].id, "hidden")
        staff_id = staff.id
        db.session.commit()

        log(f"loading {rows:,} rows into {table_name} with COPY")
        figures["load_s"] = bulk_load(db, table_name, fields, rows, (admin_id, staff_id))
        began = time.perf_counter()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for label in INDEXED:
                column = by_label[label].column_name
                conn.execute(text(f'CREATE INDEX "ix_bench_{column}" ON "{table_name}" ("{column}")'))
            conn.execute(text(f'VACUUM (ANALYZE) "{table_name}"'))
            figures["table_mb"] = (
                conn.execute(text("SELECT pg_total_relation_size(:t)"), {"t": table_name}).scalar_one()
                / 2**20
            )
        figures["index_vacuum_s"] = time.perf_counter() - began

        runtime.refresh(app, force=True)
        actor = Actor.for_user_id(staff_id, "api")
        amount, code, due = (by_label[n] for n in SHOWN_KEYS)
        query = TableQuery(slug, actor)
        visible = [c for c in query.columns if not c.record]
        if HIDDEN in {str(c.spec.label) for c in visible} or len(visible) != 19:
            raise RuntimeError("the Staff user should see 19 of the 20 fields")
        # The cursor of case b: the user's middle row in the order of case a (row ≈ rows // 2 of the table).
        middle = db.session.execute(
            text(
                f'SELECT id, "{amount.column_name}" FROM "{table_name}" WHERE owner_id = :me '  # noqa: S608
                f'ORDER BY "{amount.column_name}", id OFFSET :n LIMIT 1'
            ),
            {"me": staff_id, "n": rows // 4},
        ).one()
        deep_cursor = query.order_by(amount.name).cursor_after(middle.id)
        db.session.commit()
        sample_code = "K00042"

        # The bare views, served by an app of their own and (before Tabula's first request, as Flask
        # requires) by Tabula's app too, where its per-request hooks (guards, schema version) run for them.
        with app.test_request_context():
            header = json.loads(json.dumps([c.as_json() for c in query.columns], ensure_ascii=False))
        by_name = {f.name: f for f in fields}
        columns = [by_name[c["name"]] for c in header if c["name"] in by_name]
        views = bare_views(db.engine, table_name, columns, staff_id, header)
        for name, view in views.items():
            app.add_url_rule(f"/bench-bare/{name}", f"bench_bare_{name}", view)
        bare = bare_app(views).test_client()

        if isolated:
            app.test_client_class = isolated_client_class()
        client = app.test_client()
        login = client.post(
            "/api/v1/security/login",
            json={"username": "bench_staff", "password": STAFF_PASSWORD, "provider": "db"},
        )
        if login.status_code != 200:
            raise RuntimeError(
                f"API login answered {login.status_code}: {login.get_data(as_text=True)[:500]}"
            )
        headers = {"Authorization": f"Bearer {login.get_json()['access_token']}"}
        cases = {
            "a": ({"sort": amount.name, "size": PAGE}, {}),
            "b": (
                {"sort": amount.name, "size": PAGE, "after": deep_cursor},
                {"v": middle[1], "i": middle.id},
            ),
            "c": (
                {
                    "filter": json.dumps({"field": code.name, "op": "eq", "value": sample_code}),
                    "sort": f"-{due.name}",
                },
                {"code": sample_code},
            ),
            "d": ({"q": RARE_WORD}, {"q": RARE_WORD}),
        }

        def endpoint(params: dict[str, Any], suffix: str = "") -> Any:
            response = client.get(f"/api/v1/data/{slug}{suffix}", query_string=params, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(
                    f"{suffix or 'page'} {params} answered {response.status_code}: "
                    f"{response.get_data(as_text=True)[:1000]}"
                )
            return response

        log("checking that both sides answer the same rows")
        for name, (params, bare_params) in cases.items():
            ours = endpoint(params).get_json()
            theirs = bare.get(f"/{name}", query_string=bare_params).get_json()
            inside = client.get(f"/bench-bare/{name}", query_string=bare_params)
            if inside.status_code != 200 or inside.get_json() != theirs:
                raise RuntimeError(f"case {name}: the bare route inside Tabula answered {inside.status_code}")
            if ours["rows"] != theirs["rows"]:
                ids = ([r["id"] for r in ours["rows"]][:5], [r["id"] for r in theirs["rows"]][:5])
                first = next(
                    ((a, b) for a, b in zip(ours["rows"], theirs["rows"], strict=False) if a != b), None
                )
                missing = object()
                differ = first and {k: (first[0].get(k, missing), first[1].get(k, missing))
                                    for k in first[0].keys() | first[1].keys()
                                    if first[0].get(k, missing) != first[1].get(k, missing)}  # fmt: skip
                raise RuntimeError(
                    f"case {name}: the endpoint and the bare route disagree: {ids}; first row apart: {differ}"
                )
            if ours["columns"] != theirs["columns"] or (ours["next"] is None) != (theirs["next"] is None):
                raise RuntimeError(f"case {name}: columns or next differ")
            figures["cases"][name] = {"rows": len(ours["rows"])}

        log(f"timing 4 cases, {repeats} runs each side, alternating")
        for name, (params, bare_params) in cases.items():
            ours, theirs, inside = [], [], []
            calls = [
                (ours, lambda p=params: endpoint(p)),
                (theirs, lambda n=name, p=bare_params: bare.get(f"/{n}", query_string=p)),
                (inside, lambda n=name, p=bare_params: client.get(f"/bench-bare/{n}", query_string=p)),
            ]
            for _ in range(2):  # warm-up
                for _samples, call in calls:
                    call()
            for run_index in range(repeats):
                for samples, call in calls[run_index % 3 :] + calls[: run_index % 3]:
                    samples.append(timed(call))
            figures["cases"][name].update(
                endpoint_ms=median_ms(ours),
                bare_ms=median_ms(theirs),
                bare_in_app_ms=median_ms(inside),
                ratio=median_ms(ours) / median_ms(theirs),
                ratio_in_app=median_ms(ours) / median_ms(inside),
            )
            log(
                f"  {name}: endpoint {median_ms(ours):.2f} ms, bare {median_ms(theirs):.2f} ms, "
                f"bare inside Tabula {median_ms(inside):.2f} ms"
            )

        counted = endpoint({}, "/count").get_json()
        figures["count"] = counted
        for _ in range(2):
            endpoint({}, "/count")
        figures["count_ms"] = median_ms([timed(lambda: endpoint({}, "/count")) for _ in range(repeats)])
        figures["split_ms"] = split(app, client, headers, slug, actor, cases["a"][0], repeats)
        if profile:
            profiler = cProfile.Profile()
            for _ in range(20):
                profiler.runcall(endpoint, cases["a"][0])
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(PROFILE_SORT).print_stats(45)
            figures["profile"] = out.getvalue()
    return figures


def split(app: Any, client: Any, headers: dict, slug: str, actor: Any, params: dict, repeats: int) -> dict:
    """Where the first page's time goes: the request without the layer (an unknown table: signed in, then
    404), the layer's page alone, and the rows to JSON."""
    from custom_fields.query import TableQuery

    def layer() -> Any:
        query = TableQuery(slug, actor).order_by(params["sort"])
        return query, query.page(PAGE)

    query, page = layer()
    samples = {
        "request_without_layer": lambda: client.get("/api/v1/data/no_such_table", headers=headers),
        "layer_page": layer,
        "rows_to_json": lambda: json.dumps(query.json_rows(page.rows), ensure_ascii=False),
        "columns_to_json": lambda: json.dumps([c.as_json() for c in query.columns], ensure_ascii=False),
    }
    with app.test_request_context():
        return {name: median_ms([timed(call) for _ in range(repeats * 3)]) for name, call in samples.items()}


def report(rows: int, figures: dict[str, Any], total_s: float) -> dict[str, Any]:
    cases = figures["cases"]
    print(
        f"grid benchmark: {rows:,} rows, 20 fields (3 indexed), Staff user: own rows (half), 1 hidden field"
    )
    print(
        f"  load (COPY): {figures['load_s']:.1f} s, "
        f"indexes + VACUUM (ANALYZE) {figures['index_vacuum_s']:.1f} s, "
        f"table + indexes {figures['table_mb']:,.0f} MB"
    )
    titles = {
        "a": "first page, sorted by an indexed field",
        "b": "page after the user's middle row, by cursor",
        "c": "filter on an indexed field + sort, first page",
        "d": f"quick search for a rare word ({RARE_WORD!r})",
    }
    for name, case in cases.items():
        print(
            f"  ({name}) {titles[name]}: endpoint {case['endpoint_ms']:.2f} ms, bare Flask + SQL "
            f"{case['bare_ms']:.2f} ms, ratio {case['ratio']:.2f}; the bare route inside Tabula's app "
            f"{case['bare_in_app_ms']:.2f} ms, ratio {case['ratio_in_app']:.2f} ({case['rows']} rows)"
        )
    count = figures["count"]
    print(
        f"  count: {figures['count_ms']:.2f} ms -> {count['count']:,} "
        f"({'exact' if count['exact'] else 'estimated'})"
        f" = {figures['count_ms'] / cases['a']['endpoint_ms']:.2f} x the first page (target <= 2)"
    )
    print(
        "  where the first page's time goes: "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in figures["split_ms"].items())
    )
    worst = max(case["ratio"] for case in cases.values())
    print(f"  worst ratio {worst:.2f} (target <= {TARGET})")
    if "profile" in figures:
        print("  cProfile of 20 first-page calls (cumulative):\n" + figures["profile"])
    return {
        "bench": "grid",
        "rows": rows,
        "ratio": round(worst, 2),
        "first_page_ms": round(cases["a"]["endpoint_ms"], 2),
        "deep_page_ms": round(cases["b"]["endpoint_ms"], 2),
        "filter_page_ms": round(cases["c"]["endpoint_ms"], 2),
        "search_page_ms": round(cases["d"]["endpoint_ms"], 2),
        "count_ms": round(figures["count_ms"], 2),
        "count_exact": count["exact"],
        "ratios": {name: round(case["ratio"], 2) for name, case in cases.items()},
        "bare_ms": {name: round(case["bare_ms"], 2) for name, case in cases.items()},
        "ratios_in_app": {name: round(case["ratio_in_app"], 2) for name, case in cases.items()},
        "total_s": round(total_s, 1),
        "isolated": figures["isolated"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the first-page call")
    parser.add_argument(
        "--isolated",
        action="store_true",
        help="each request in an app context of its own (as in production) instead of one held for the run",
    )
    args = parser.parse_args()
    if args.rows < 4 * PAGE:
        raise SystemExit(f"--rows must be at least {4 * PAGE}")
    started = time.perf_counter()
    with scratch_app() as app:
        figures = run(app, args.rows, args.repeats, args.profile, args.isolated)
        figures["isolated"] = args.isolated
    print(json.dumps(report(args.rows, figures, time.perf_counter() - started)))


if __name__ == "__main__":
    main()
