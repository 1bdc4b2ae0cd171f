"""/health reports database, Redis and workers; 503 when one is down."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from redis import Redis

from app import create_app
from tests.conftest import redis_databases_of_this_run, start_worker, stop_worker, wait_for_workers


def test_healthy_with_a_worker(client, worker) -> None:  # noqa: ANN001
    response = client.get("/health")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["checks"]["worker"]["count"] >= 1
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]
    assert response.headers["Cache-Control"] == "no-store"


def test_no_worker_is_503(env, other_db, tmp_path) -> None:  # noqa: ANN001
    # Another Redis database on the same server has no worker registered.
    other = {**env, "REDIS_URL": other_db, "TABULA_INSTANCE_DIR": str(tmp_path)}
    response = create_app(other).test_client().get("/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["checks"]["worker"] == {"ok": False, "count": 0, "error": "no worker is running"}
    assert body["checks"]["redis"]["ok"] and body["checks"]["database"]["ok"]


def test_redis_down_is_503_and_says_so(env, tmp_path) -> None:  # noqa: ANN001
    down = {**env, "REDIS_URL": "redis://127.0.0.1:1/0", "TABULA_INSTANCE_DIR": str(tmp_path)}
    response = create_app(down).test_client().get("/health")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["redis"]["ok"] is False and checks["worker"]["ok"] is False
    assert checks["database"]["ok"] is True


def test_database_down_is_503(env, tmp_path) -> None:  # noqa: ANN001
    down = {
        **env,
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "TABULA_INSTANCE_DIR": str(tmp_path),
    }
    response = create_app(down).test_client().get("/health")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"]["ok"] is False


def test_worker_that_stopped_is_no_longer_counted(app, env, other_db) -> None:  # noqa: ANN001
    other = {**env, "REDIS_URL": other_db}
    process = start_worker(other, "--without-scheduler")
    try:
        wait_for_workers(other["REDIS_URL"], 1)
        client = create_app(other).test_client()
        assert client.get("/health").status_code == 200
    finally:
        stop_worker(process)
    assert client.get("/health").status_code == 503


CLAIM = "tabula-test:claimed-by"


@pytest.fixture
def other_db(redis_url: str) -> Iterator[str]:
    """Another database of the same Redis server that nobody uses (an empty one: a neighbouring run's
    worker registered there would make "no worker" look healthy). Not one of this run's workers' own, and
    claimed for the test: two workers of a parallel run would otherwise both pick the same empty one."""
    if redis_url.startswith("unix://"):
        yield redis_url + "?db=9"
        return
    base, _, _ = redis_url.rpartition("/")
    ours = redis_databases_of_this_run(redis_url)
    claim = uuid.uuid4().hex
    for number in range(15, -1, -1):
        candidate = Redis.from_url(f"{base}/{number}")
        if number in ours or candidate.dbsize() != 0 or not candidate.set(CLAIM, claim, nx=True, ex=3600):
            continue
        if candidate.dbsize() != 1:  # someone else's keys arrived between the look and the claim
            candidate.delete(CLAIM)
            continue
        yield f"{base}/{number}"
        candidate.delete(CLAIM)
        return
    raise AssertionError("no empty Redis database to stand for one without workers")


def test_an_idle_worker_renews_its_heartbeat_before_it_counts_as_stale(app) -> None:  # noqa: ANN001
    from jobs import redis_connection
    from jobs.worker import TabulaWorker

    with app.app_context():
        idle = TabulaWorker(["default"], connection=redis_connection())
    assert idle.dequeue_timeout + 15 < app.config["TABULA_WORKER_STALE_SECONDS"]
