"""What every benchmark shares: progress on stderr, and a Tabula app on a scratch PostgreSQL database next
to ``BENCH_DATABASE_URL`` (created for the run, always dropped at the end) with ``BENCH_REDIS_URL`` as its
Redis and a temporary instance folder."""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
ADMIN_PASSWORD = "bench-" + secrets.token_hex(8)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _admin_engine(base_url: str):  # noqa: ANN202
    url = make_url(base_url).set(drivername="postgresql+psycopg")
    return create_engine(url, isolation_level="AUTOCOMMIT")


def create_scratch_database(base_url: str) -> tuple[str, str]:
    url = make_url(base_url).set(drivername="postgresql+psycopg")
    if url.get_backend_name() != "postgresql":
        raise SystemExit(f"BENCH_DATABASE_URL must name a PostgreSQL database, got {url.drivername}")
    name = f"tabula_bench_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine(base_url)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False), name


def drop_scratch_database(base_url: str, name: str) -> None:
    engine = _admin_engine(base_url)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


def settle() -> None:
    """Have PostgreSQL write out what earlier steps left in memory (a ``CHECKPOINT``, when the bench's user
    may ask for one), so a side measured next does not pay for a checkpoint of what another wrote. Nothing
    on SQLite, or without the right."""
    from sqlalchemy.exc import DBAPIError

    from app.extensions import db

    if db.engine.dialect.name != "postgresql":
        return
    try:
        with db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("CHECKPOINT"))
    except DBAPIError as exc:
        log(f"(no checkpoint: {str(exc.orig).strip()[:80]})")


def app_environment(database_url: str, redis_url: str, instance_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TABULA_", "DATABASE_URL", "REDIS_URL"))}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        TABULA_INSTANCE_DIR=instance_dir,
        SECRET_KEY="bench-" + secrets.token_hex(32),
        TABULA_ADMIN_PASSWORD=ADMIN_PASSWORD,
        TABULA_DEMO="false",
    )
    return env


@contextmanager
def scratch_app(sqlite: bool = False) -> Iterator[Any]:
    """A Tabula app after ``tabula init`` (admin user, no demo data) on a fresh scratch database, which is
    dropped on the way out whatever happens: PostgreSQL next to ``BENCH_DATABASE_URL``, or with ``sqlite``
    a file in the temporary instance folder. The app's environment is ``app.bench_env`` (for workers)."""
    base_url = os.environ.get("BENCH_DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("BENCH_REDIS_URL", "").strip() or DEFAULT_REDIS_URL
    database = None
    app = None
    try:
        with tempfile.TemporaryDirectory(prefix="tabula-bench-") as instance_dir:
            if sqlite:
                database_url = f"sqlite:///{instance_dir}/bench.db"
            else:
                database_url, database = create_scratch_database(base_url)
            log(f"scratch database {database or database_url}")
            from app import create_app
            from app.bootstrap import initialize

            env = app_environment(database_url, redis_url, instance_dir)
            app = create_app(env)
            app.bench_env = env
            initialize(app, echo=lambda _message: None)
            yield app
    finally:
        if app is not None:
            from app.extensions import db

            with app.app_context():
                db.session.remove()
                db.engine.dispose()
        if database is not None:
            drop_scratch_database(base_url, database)
            log(f"dropped {database}")
