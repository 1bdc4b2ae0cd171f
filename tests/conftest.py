"""Fixtures on real services: SQLite always, PostgreSQL when TEST_DATABASE_URL is set; a real Redis
(TEST_REDIS_URL, else the embedded one) and real `rq worker` processes."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient
from redis import Redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from app.embedded_redis import EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "admin-Пароль-1"
DEMO_PASSWORD = "demo-Пароль-1"
BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])
# Set by `make mutation` (README "Development"): the test files of the module under mutation, and a SQLite
# file initialised once by the unmutated code that every mutant's session starts from (init takes ~10 s).
MUTATION_TESTS = os.environ.get("TABULA_MUTATION_TESTS", "").split()
SQLITE_TEMPLATE = os.environ.get("TABULA_TEST_SQLITE_TEMPLATE")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``make mutation``, only the module's own test files run (the others are deselected)."""
    if not MUTATION_TESTS:
        return
    kept = [item for item in items if item.nodeid.split("::")[0] in MUTATION_TESTS]
    dropped = [item for item in items if item.nodeid.split("::")[0] not in MUTATION_TESTS]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        client = Redis.from_url(url)
        client.flushdb()
        yield url
        client.flushdb()
        return
    folder = tmp_path_factory.mktemp("redis")
    server = EmbeddedRedis(folder / "redis.sock", folder).start()
    yield server.url
    server.stop()


def _create_postgres_database(base_url: str) -> tuple[str, str]:
    url = make_url(base_url).set(drivername="postgresql+psycopg")
    name = f"tabula_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False), name


def _drop_postgres_database(base_url: str, name: str) -> None:
    url = make_url(base_url).set(drivername="postgresql+psycopg")
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[str]:
    Redis.from_url(redis_url).flushdb()  # each backend starts with empty queues
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "tabula.db"
        if SQLITE_TEMPLATE and os.path.exists(SQLITE_TEMPLATE):
            shutil.copyfile(SQLITE_TEMPLATE, path)
        yield f"sqlite:///{path}"
        return
    base = os.environ["TEST_DATABASE_URL"]
    url, name = _create_postgres_database(base)
    yield url
    _drop_postgres_database(base, name)


@pytest.fixture(scope="session")
def env(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment variables of a Tabula process under test (the app's only input)."""
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("TABULA_", "DATABASE_URL", "REDIS_URL"))
    }
    environment.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        TABULA_INSTANCE_DIR=str(tmp_path_factory.mktemp("instance")),
        TABULA_ADMIN_PASSWORD=ADMIN_PASSWORD,
        TABULA_DEMO_PASSWORD=DEMO_PASSWORD,
        # A small demo book (the full one is loaded by `tabula run` and checked by tests/test_demo.py).
        TABULA_DEMO_SCALE="0.02",
        SECRET_KEY="test-secret-" + uuid.uuid4().hex,
    )
    return environment


class IsolatedClient(FlaskClient):
    """Each request in an app context of its own, as in production: a test that holds an app context
    (``app_ctx``) would otherwise share ``g`` (and the signed-in user Flask-Login caches there) between
    requests of different clients."""

    def open(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture(scope="session")
def app(env: dict[str, str]):  # noqa: ANN201
    from app import create_app
    from app.bootstrap import initialize

    application = create_app(env)
    application.test_client_class = IsolatedClient
    initialize(application, echo=lambda _msg: None)
    url = make_url(env["DATABASE_URL"])
    if SQLITE_TEMPLATE and url.get_backend_name() == "sqlite" and not os.path.exists(SQLITE_TEMPLATE):
        _save_sqlite_template(url.database)
    return application


@pytest.fixture(autouse=True)
def _no_login_lockouts(request: pytest.FixtureRequest) -> None:
    """Failed sign-ins of one test (all from 127.0.0.1) must not lock the next test out."""
    if "redis_url" in request.fixturenames:
        from app.login_throttle import KEY_PREFIX

        client = Redis.from_url(request.getfixturevalue("redis_url"))
        for key in client.scan_iter(f"{KEY_PREFIX}:*"):
            client.delete(key)


def _save_sqlite_template(database: str) -> None:
    """A consistent copy of the freshly initialised database (SQLite's backup API), written atomically."""
    import sqlite3
    from contextlib import closing

    partial = f"{SQLITE_TEMPLATE}.{os.getpid()}.partial"
    with closing(sqlite3.connect(database)) as source, closing(sqlite3.connect(partial)) as target:
        source.backup(target)
    os.replace(partial, SQLITE_TEMPLATE)


@pytest.fixture
def app_ctx(app):  # noqa: ANN001, ANN201
    with app.app_context():
        yield app


def start_worker(env: dict[str, str], *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", *extra],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_workers(redis_url: str, count: int, timeout: float = 30) -> None:
    from rq import Worker

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(Worker.all(connection=Redis.from_url(redis_url))) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{count} worker(s) did not register within {timeout} s")


def stop_worker(process: subprocess.Popen) -> str:
    process.terminate()
    try:
        out, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    return out or ""


@pytest.fixture(scope="session")
def worker(app, env: dict[str, str], redis_url: str) -> Iterator[subprocess.Popen]:  # noqa: ANN001
    process = start_worker(env)
    try:
        wait_for_workers(redis_url, 1)
    except AssertionError:
        stop_worker(process)  # a worker left running would take later runs' jobs
        raise
    yield process
    stop_worker(process)


@pytest.fixture
def client(app):  # noqa: ANN001, ANN201
    return app.test_client()


CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no CSRF token in the form"
    return match.group(1)


def login(client, username: str, password: str):  # noqa: ANN001, ANN201
    page = client.get("/login/")
    token = csrf_token(page.get_data(as_text=True))
    return client.post("/login/", data={"username": username, "password": password, "csrf_token": token})


def signed_in(response) -> bool:  # noqa: ANN001
    """FAB redirects both outcomes; a failed sign-in goes back to the login page."""
    return response.status_code == 302 and "/login" not in response.headers["Location"]


@pytest.fixture
def admin_client(client):  # noqa: ANN001, ANN201
    assert signed_in(login(client, "admin", ADMIN_PASSWORD))
    return client


@pytest.fixture
def staff_client(app):  # noqa: ANN001, ANN201
    client = app.test_client()
    assert signed_in(login(client, "staff1", DEMO_PASSWORD))
    return client


@pytest.fixture
def manager_client(app):  # noqa: ANN001, ANN201
    client = app.test_client()
    assert signed_in(login(client, "manager", DEMO_PASSWORD))
    return client


# --- browsers and servers ----------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (make browser installs it)")
        pytest.skip("chromium is not installed (make browser installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def live_url(app) -> Iterator[str]:  # noqa: ANN001
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def other_process(app, env: dict[str, str]) -> Iterator[str]:  # noqa: ANN001
    port = free_port()
    process = subprocess.Popen(
        [GUNICORN, "-w", "2", "-b", f"127.0.0.1:{port}", "app:create_app()"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/login/", timeout=10).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.2)
    else:
        process.kill()
        raise AssertionError(process.communicate()[1][-2000:])
    yield base
    process.terminate()
    process.wait(timeout=30)
