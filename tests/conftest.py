"""Fixtures on real services: SQLite always, PostgreSQL when TEST_DATABASE_URL is set; a real Redis
(TEST_REDIS_URL, else the embedded one) and real `rq worker` processes.

`make test` runs the suite in parallel (pytest-xdist, README "Development"): each worker process has its own
databases, instance folder and Redis database (TEST_REDIS_URL's number plus the worker's index), and takes
one backend's half of one test file at a time (``BackendFileScheduling``)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from flask.testing import FlaskClient
from redis import Redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server
from xdist.scheduler import LoadFileScheduling

from app.embedded_redis import EmbeddedRedis
from tests.drop_database import drop_database
from tests.smtp_sink import MailSink

ROOT = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "admin-Пароль-1"
DEMO_PASSWORD = "demo-Пароль-1"
BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])
# Set by `make mutation` (README "Development"): the test files of the module under mutation; the one
# backend it runs on; and a SQLite file or a PostgreSQL database (its name) initialised once by the
# unmutated code, which every mutant's session starts from (initialising takes ~10 s).
MUTATION_TESTS = os.environ.get("TABULA_MUTATION_TESTS", "").split()
if os.environ.get("TABULA_MUTATION_BACKEND"):
    BACKENDS = [os.environ["TABULA_MUTATION_BACKEND"]]
SQLITE_TEMPLATE = os.environ.get("TABULA_TEST_SQLITE_TEMPLATE")
POSTGRES_TEMPLATE = os.environ.get("TABULA_TEST_POSTGRES_TEMPLATE")


# --- parallel runs (pytest-xdist) --------------------------------------------------------------------------

REDIS_DATABASES = 16  # Redis' default number of databases: a worker's number must stay below it
# gw0, gw1, ... in a worker process of a parallel run; unset in a serial run.
WORKER_INDEX = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
WORKER_COUNT = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def _redis_db(url: str) -> int:
    return int(urlsplit(url).path.strip("/") or 0)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: TABULA_TEST_WORKERS, else one worker per core; at most as many as there are Redis
    databases from TEST_REDIS_URL's number on."""
    wanted = int(os.environ.get("TABULA_TEST_WORKERS") or len(os.sched_getaffinity(0)))
    redis_url = os.environ.get("TEST_REDIS_URL")
    room = REDIS_DATABASES - _redis_db(redis_url) if redis_url else wanted
    return max(1, min(wanted, room))


def worker_redis_url(url: str, index: int = WORKER_INDEX) -> str:
    """The worker's own Redis database: two sessions on one database would take each other's RQ jobs."""
    number = _redis_db(url) + index
    if number >= REDIS_DATABASES:
        raise pytest.UsageError(
            f"{url} with {index + 1} workers needs Redis database {number}: "
            f"choose a lower database or fewer workers (TABULA_TEST_WORKERS)"
        )
    return urlunsplit(urlsplit(url)._replace(path=f"/{number}"))


def redis_databases_of_this_run(url: str) -> set[int]:
    """The Redis databases this run's workers use (TEST_REDIS_URL's number onwards)."""
    return {_redis_db(url) - WORKER_INDEX + index for index in range(WORKER_COUNT)}


BACKEND_ID = re.compile(r"\[(?:.*-)?(sqlite|postgresql)(?:-.*)?\]$")  # the database_url parameter


class BackendFileScheduling(LoadFileScheduling):
    """``--dist loadfile`` with one backend's half of a file as the unit of work. Pytest orders the tests
    by backend (``database_url`` is session-scoped), so a worker does all its SQLite files before its
    PostgreSQL ones: it initialises each backend once, not at every file."""

    def _split_scope(self, nodeid: str) -> str:
        backend = BACKEND_ID.search(nodeid)
        return f"{super()._split_scope(nodeid)}[{backend.group(1) if backend else ''}]"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):  # noqa: ANN001, ANN201
    if config.getoption("dist") != "loadfile":
        return None
    config.option.loadscopereorder = False  # keep pytest's order: by backend
    return BackendFileScheduling(config, log)


# The files that take longest on one backend (minutes in CI), longest first: they start first, so that a
# parallel run does not end with one worker still in one of them while the others idle.
LONG_FILES = [
    "tests/test_run_command.py",
    "tests/test_browser_screens.py",
    "tests/test_demo.py",
    "tests/test_browser_tables.py",
    "tests/test_fuzz.py",
    "tests/test_exports.py",
    "tests/test_everyday_polish.py",
    "tests/test_cli.py",
]


def _run_order(item: pytest.Item) -> tuple[int, int]:
    """Tests without a backend first, then each backend's (as pytest groups them); long files first."""
    backend = _backend(item)
    file = item.nodeid.split("::")[0]
    return (
        BACKENDS.index(backend) + 1 if backend in BACKENDS else 0,
        LONG_FILES.index(file) if file in LONG_FILES else len(LONG_FILES),
    )


#: Where the browser tests run when both backends do: once, on PostgreSQL (production's database). What a
#: browser sees does not depend on the database; every layer below it runs on both. "both" runs them twice.
BROWSER_BACKENDS = os.environ.get("TABULA_BROWSER_BACKENDS", "postgresql")


def _backend(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("database_url") if callspec else None


@pytest.hookimpl(trylast=True)  # after pytest has grouped the tests by backend
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests on one backend (``BROWSER_BACKENDS``) when both run; under ``make mutation``, only the
    module's own test files run (the others are deselected)."""
    items.sort(key=_run_order)  # stable: the order within a file and backend stays pytest's
    if len(BACKENDS) > 1 and BROWSER_BACKENDS in BACKENDS:
        twice = [
            i
            for i in items
            if i.get_closest_marker("browser") and _backend(i) not in (None, BROWSER_BACKENDS)
        ]
        if twice:
            config.hook.pytest_deselected(items=twice)
            dropped = set(map(id, twice))
            items[:] = [i for i in items if id(i) not in dropped]
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
        url = worker_redis_url(url)
        client = Redis.from_url(url)
        client.flushdb()
        yield url
        client.flushdb()
        return
    folder = tmp_path_factory.mktemp("redis")
    server = EmbeddedRedis(folder / "redis.sock", folder).start()
    yield server.url
    server.stop()


# The session's SQLite file lives in memory where the machine has a memory-backed folder: a commit there
# skips the disk flush (milliseconds each, thousands a run); SQLite behaves the same otherwise.
MEMORY_DIR = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def _database_exists(conn, name: str) -> bool:  # noqa: ANN001
    return bool(conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}))


def _create_postgres_database(base_url: str) -> tuple[str, str]:
    url = make_url(base_url).set(drivername="postgresql+psycopg")
    name = f"tabula_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        exists = POSTGRES_TEMPLATE and _database_exists(conn, POSTGRES_TEMPLATE)
        conn.execute(
            text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{POSTGRES_TEMPLATE}"' if exists else ""))
        )
        # A commit does not wait for its WAL record to reach the disk (thousands of waits a run); what a
        # transaction sees and locks is the same (crash safety is not what the suite tests).
        conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit TO off'))
    engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False), name


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[str]:
    Redis.from_url(redis_url).flushdb()  # each backend starts with empty queues
    if request.param == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="tabula-test-", dir=MEMORY_DIR)) if MEMORY_DIR else None
        path = (folder or tmp_path_factory.mktemp("sqlite")) / "tabula.db"
        if SQLITE_TEMPLATE and os.path.exists(SQLITE_TEMPLATE):
            shutil.copyfile(SQLITE_TEMPLATE, path)
        yield f"sqlite:///{path}"
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
        return
    base = os.environ["TEST_DATABASE_URL"]
    url, name = _create_postgres_database(base)
    yield url
    drop_database(base, name)


@pytest.fixture(scope="session")
def env(
    database_url: str, scratch_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Environment variables of a Tabula process under test (the app's only input)."""
    return {
        **scratch_env,
        "DATABASE_URL": database_url,
        "TABULA_INSTANCE_DIR": str(tmp_path_factory.mktemp("instance")),
        "SECRET_KEY": "test-secret-" + uuid.uuid4().hex,
    }


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[MailSink]:
    """A real SMTP server every process under test sends to (``SMTP_HOST``/``SMTP_PORT`` of ``env``)."""
    sink = MailSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def scratch_env(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory, smtp_sink: MailSink
) -> dict[str, str]:
    """``env`` without a database: for tests on a SQLite file of their own, which need not run once per
    backend (DATABASE_URL is theirs to set, and TABULA_INSTANCE_DIR better be too)."""
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("TABULA_", "DATABASE_URL", "REDIS_URL"))
    }
    environment.update(
        REDIS_URL=redis_url,
        TABULA_INSTANCE_DIR=str(tmp_path_factory.mktemp("instance")),
        TABULA_ADMIN_PASSWORD=ADMIN_PASSWORD,
        TABULA_DEMO_PASSWORD=DEMO_PASSWORD,
        # A small demo book (the full one is loaded by `tabula run` and checked by tests/test_demo.py).
        TABULA_DEMO_SCALE="0.02",
        SECRET_KEY="test-secret-" + uuid.uuid4().hex,
        SMTP_HOST=smtp_sink.host,
        SMTP_PORT=str(smtp_sink.port),
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
    if POSTGRES_TEMPLATE and url.get_backend_name() == "postgresql":
        _save_postgres_template(application, url)
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


def _save_postgres_template(application, url) -> None:  # noqa: ANN001
    """A copy of the freshly initialised database, unless there is one: PostgreSQL copies a database only
    while nobody is connected to it, hence the app's connections closed first."""
    from app.extensions import db

    base = make_url(os.environ["TEST_DATABASE_URL"]).set(drivername="postgresql+psycopg")
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if not _database_exists(conn, POSTGRES_TEMPLATE):
            with application.app_context():
                db.engine.dispose()
            conn.execute(text(f'CREATE DATABASE "{POSTGRES_TEMPLATE}" TEMPLATE "{url.database}"'))
    engine.dispose()


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


# A worker's start imports the app twice (the `tabula worker` command, then the `rq worker` it becomes):
# seconds of CPU, several times as long while the other processes of a parallel run keep the cores busy.
def wait_for_workers(
    redis_url: str, count: int, timeout: float = 90, process: subprocess.Popen | None = None
) -> None:
    """Until ``count`` workers are registered on ``redis_url``; not longer than ``process`` (the one
    starting) lives."""
    from rq import Worker

    connection = Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(Worker.all(connection=connection)) >= count:
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the worker ended with {process.returncode} before it registered")
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
        wait_for_workers(redis_url, 1, process=process)
    except AssertionError as error:
        said = stop_worker(process)  # a worker left running would take later runs' jobs
        raise AssertionError(f"{error}; the worker said:\n{said[-3000:]}") from None
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


@pytest.fixture(scope="session")
def chromium():  # noqa: ANN201
    """One chromium per test process (its start costs seconds of CPU); each module gets it clean."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (make browser installs it)")
        pytest.skip("chromium is not installed (make browser installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def browser(chromium):  # noqa: ANN001, ANN201
    yield chromium
    for context in chromium.contexts:  # those a module left open, as closing its own browser did
        context.close()


@pytest.fixture
def live_url(app) -> Iterator[str]:  # noqa: ANN001
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
THREADED = ("-k", "gthread", "--threads", "20", "--graceful-timeout", "5")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(env: dict[str, str], port: int, *args: str, own_group: bool = False) -> subprocess.Popen:
    """The app under gunicorn on ``port``, as README's Production runs it (threads: a live page's stream
    holds a thread, not a worker; a stop waits for open streams at most the graceful timeout), once it
    answers. ``own_group``: in a process group of its own, to be killed whole as a crash would."""
    process = subprocess.Popen(
        [GUNICORN, *THREADED, *args, "-b", f"127.0.0.1:{port}", "app:create_app()"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=own_group,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/login/", timeout=10).status_code == 200:
                return process
        except requests.RequestException:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(process.communicate()[1][-2000:])


@pytest.fixture
def other_process(app, env: dict[str, str]) -> Iterator[str]:  # noqa: ANN001
    port = free_port()
    process = start_gunicorn(env, port, "-w", "2")
    base = f"http://127.0.0.1:{port}"
    yield base
    process.terminate()
    process.wait(timeout=30)
