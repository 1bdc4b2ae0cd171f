"""Jobs run in real RQ worker processes; their outcome is durable; failures never look like success."""

from __future__ import annotations

import time

import pytest
from redis import Redis
from rq import Queue

from app.extensions import db
from jobs import JobQueueUnavailable, enqueue
from jobs.runtime import reconcile
from jobs.system import selfcheck
from jobs.testing import die, fail
from models import JobRun, JobStatus


def wait_done(run_id: int, timeout: float = 30) -> JobRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.expire_all()
        run = reconcile(db.session.get(JobRun, run_id))
        if run.status in (JobStatus.finished, JobStatus.failed):
            return run
        time.sleep(0.1)
    raise AssertionError(f"job {run_id} still {run.status} after {timeout} s")


def test_selfcheck_runs_in_a_worker_process(app_ctx, worker) -> None:  # noqa: ANN001
    import os

    run = enqueue("selfcheck", selfcheck, 3, 0.05)
    done = wait_done(run.id)
    assert done.status == JobStatus.finished
    assert (done.progress_done, done.progress_total) == (3, 3)
    assert done.result["pid"] != os.getpid()
    assert done.result["database"] == db.engine.dialect.name
    assert done.started_at and done.finished_at and done.finished_at >= done.started_at


def test_failed_job_is_recorded_as_failed(app_ctx, worker) -> None:  # noqa: ANN001
    run = enqueue("test", fail, "Ошибка <b>в данных</b>")
    done = wait_done(run.id)
    assert done.status == JobStatus.failed
    assert "Ошибка <b>в данных</b>" in done.message and "ValueError" in done.message


def test_killed_work_horse_is_not_left_running(app_ctx, worker) -> None:  # noqa: ANN001
    run = enqueue("test", die)
    done = wait_done(run.id, timeout=60)
    assert done.status == JobStatus.failed and "Worker stopped" in done.message
    assert done.result is None


def test_finished_job_is_not_run_twice(app_ctx, worker, redis_url) -> None:  # noqa: ANN001
    run = enqueue("selfcheck", selfcheck, 1, 0)
    first = wait_done(run.id)
    first_result = dict(first.result)
    # Re-run the same RQ job id (as a retry would): the stored outcome is returned, nothing re-done.
    queue = Queue("default", connection=Redis.from_url(redis_url))
    job = queue.enqueue(selfcheck, run.id, 1, 0, job_id=run.rq_job_id + "-again")
    deadline = time.monotonic() + 30
    while job.get_status(refresh=True).value not in ("finished", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job.return_value() == first_result
    db.session.expire_all()
    assert db.session.get(JobRun, run.id).result == first_result


def test_lost_job_is_reconciled_to_failed(app_ctx) -> None:  # noqa: ANN001
    run = JobRun(kind="test", status=JobStatus.running, rq_job_id="tabula-run-never-queued")
    db.session.add(run)
    db.session.commit()
    assert reconcile(run).status == JobStatus.failed
    assert "lost" in run.message


def test_unreachable_redis_fails_the_run_with_a_reason(app_ctx) -> None:  # noqa: ANN001
    app_ctx.extensions.pop("tabula_redis", None)
    saved = app_ctx.config["REDIS_URL"]
    app_ctx.config["REDIS_URL"] = "redis://127.0.0.1:1/0"
    try:
        with pytest.raises(JobQueueUnavailable, match="Redis is unreachable"):
            enqueue("selfcheck", selfcheck)
    finally:
        app_ctx.config["REDIS_URL"] = saved
        app_ctx.extensions.pop("tabula_redis", None)
    run = db.session.scalars(db.select(JobRun).order_by(JobRun.id.desc())).first()
    assert run.status == JobStatus.failed and "Redis is unreachable" in run.message


def test_system_page_runs_a_job_and_shows_progress(admin_client, worker) -> None:  # noqa: ANN001
    from tests.conftest import csrf_token

    page = admin_client.get("/system/")
    assert page.status_code == 200
    token = csrf_token(page.get_data(as_text=True))
    response = admin_client.post("/system/selfcheck", data={"csrf_token": token})
    assert response.status_code == 302
    job_page = response.headers["Location"]
    assert admin_client.get(job_page).status_code == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = admin_client.get(job_page.rstrip("/") + "/state").get_json()
        if state["status"] == "finished":
            break
        time.sleep(0.2)
    assert state["status"] == "finished" and state["done"] == state["total"] == 5


def test_system_page_shows_queues_and_workers_in_russian(admin_client, worker, app_ctx) -> None:  # noqa: ANN001
    """Admins see each queue's waiting, running and failed jobs and each worker with its machine and process;
    a job in a queue no worker listens to shows as waiting there."""
    import html
    import re
    import socket

    nobody_listens = "nobody-listens"
    run = enqueue("selfcheck", selfcheck, queue=nobody_listens)
    try:
        page = html.unescape(admin_client.get("/system/?_l_=ru").get_data(as_text=True))
    finally:
        Queue(nobody_listens, connection=Redis.from_url(app_ctx.config["REDIS_URL"])).empty()
        db.session.delete(db.session.get(JobRun, run.id))
        db.session.commit()
    queues = page[page.index('id="job-queues"') : page.index('id="job-workers"')]
    rows = {
        cells[0]: cells[1:]
        for cells in (
            [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", queues, re.S)
        )
        if cells
    }
    assert rows[nobody_listens] == ["1", "0", "0", "0", "0"]
    assert rows["default"][-1] == "1"  # the session's worker listens to it
    assert "Очереди" in page and "Ждут" in page and "С ошибкой" in page
    workers = page[page.index('id="job-workers"') :]
    assert f"<td>{worker.pid}</td>" in workers
    assert socket.gethostname() in workers
    assert "Свободен" in workers or "Занят" in workers
    assert "Ни один обработчик" not in workers


# --- a worker killed outright: its job is failed by the web side, by the worker's heartbeat ---------------

QUEUE_OF_THE_DOOMED = "doomed"


def _worker_on(redis_url: str, queue: str, timeout: float = 90):  # noqa: ANN202 (as wait_for_workers)
    from rq import Worker

    connection = Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = Worker.all(connection=connection, queue=Queue(queue, connection=connection))
        if workers:
            return workers[0]
        time.sleep(0.1)
    raise AssertionError(f"no worker on {queue} within {timeout} s")


def _state(client, run_id: int) -> dict:  # noqa: ANN001
    return client.get(f"/system/jobs/{run_id}/state").get_json()


def test_a_job_whose_worker_was_killed_is_failed_when_viewed(app, admin_client, env, redis_url) -> None:  # noqa: ANN001
    import signal

    import psutil

    from tests.conftest import start_worker, stop_worker

    process = start_worker({**env, "TABULA_WORKER_HEARTBEAT_SECONDS": "1"}, QUEUE_OF_THE_DOOMED)
    saved_stale = app.config["TABULA_WORKER_STALE_SECONDS"]
    doomed = None
    try:
        doomed = _worker_on(redis_url, QUEUE_OF_THE_DOOMED)
        app.config["TABULA_WORKER_STALE_SECONDS"] = 4
        with app.app_context():
            run_id = enqueue("selfcheck", selfcheck, 200, 0.2, queue=QUEUE_OF_THE_DOOMED).id
        deadline = time.monotonic() + 30
        while (state := _state(admin_client, run_id))["done"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state["status"] == "running"
        # A live worker beating every second is never judged dead, however long its job runs.
        time.sleep(6)
        assert _state(admin_client, run_id)["status"] == "running"

        horses = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGKILL)
        for horse in horses:
            horse.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

        deadline = time.monotonic() + 30
        while (state := _state(admin_client, run_id))["status"] == "running" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert state["status"] == "failed"
        assert "Worker stopped" in state["message"]
        assert state["done"] < 200
        russian = admin_client.get(f"/system/jobs/{run_id}?_l_=ru").get_data(as_text=True)
        assert "Обработчик остановился" in russian
        assert "Worker stopped" in admin_client.get("/jobs/list/").get_data(as_text=True)
    finally:
        app.config["TABULA_WORKER_STALE_SECONDS"] = saved_stale
        if process.poll() is None:
            stop_worker(process)
        elif doomed is not None:
            doomed.register_death()  # what its key's expiry would do minutes later: others count workers


def test_a_queued_job_without_a_live_worker_says_so(app, admin_client) -> None:  # noqa: ANN001
    with app.app_context():
        run = enqueue("selfcheck", selfcheck, 1, 0, queue="nobody-listens")
        run_id, rq_id = run.id, run.rq_job_id
    try:
        state = _state(admin_client, run_id)
        assert state["status"] == "queued" and "No worker is running" in state["waiting"]
        page = admin_client.get(f"/system/jobs/{run_id}").get_data(as_text=True)
        assert "No worker is running for this job" in page
        status = admin_client.get("/system/").get_data(as_text=True)
        assert 'id="jobs-waiting"' in status and f"#{run_id}<" in status
        assert "нет работающего обработчика" in admin_client.get("/system/?_l_=ru").get_data(as_text=True)
    finally:
        from rq.job import Job

        with app.app_context():
            from jobs.queues import redis_connection

            Job.fetch(rq_id, connection=redis_connection()).cancel()
    state = _state(admin_client, run_id)
    assert state["status"] == "failed" and not state["waiting"]


def test_a_queued_job_with_a_live_worker_gives_no_warning(app, admin_client, worker) -> None:  # noqa: ANN001
    from app.worker_liveness import live_workers
    from jobs.queues import redis_connection

    with app.app_context():
        assert live_workers(redis_connection(), "default")
        run = JobRun(kind="test", status=JobStatus.queued, rq_job_id=None)
        db.session.add(run)
        db.session.commit()
        run_id = run.id
        run = enqueue("selfcheck", selfcheck, 1, 0)
    assert not _state(admin_client, run.id)["waiting"]
    assert not _state(admin_client, run_id)["waiting"]


def test_a_busy_worker_beats_well_within_the_stale_limit(app) -> None:  # noqa: ANN001
    from jobs import redis_connection
    from jobs.worker import TabulaWorker

    with app.app_context():
        busy = TabulaWorker(["default"], connection=redis_connection())
    assert busy.job_monitoring_interval * 3 < app.config["TABULA_WORKER_STALE_SECONDS"]


def test_the_cron_sweep_fails_runs_nobody_looks_at(app_ctx, worker) -> None:  # noqa: ANN001
    from jobs.queues import get_queue
    from jobs.runtime import scheduled_reconcile

    run = JobRun(kind="test", status=JobStatus.running, rq_job_id="tabula-run-lost-unseen")
    db.session.add(run)
    db.session.commit()
    sweep = get_queue().enqueue(scheduled_reconcile)  # what `tabula cron` enqueues every five minutes
    deadline = time.monotonic() + 30
    while sweep.get_status(refresh=True).value not in ("finished", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sweep.get_status().value == "finished"
    db.session.expire_all()
    assert db.session.get(JobRun, run.id).status == JobStatus.failed


def test_a_job_rq_found_abandoned_says_its_worker_stopped(app_ctx) -> None:  # noqa: ANN001
    """Another worker's registry cleanup can fail a dead worker's job before anyone looks: the reader is
    told the worker stopped, not merely that "the job failed"."""
    from rq.job import Job
    from rq.job import JobStatus as RQStatus
    from rq.registry import StartedJobRegistry

    from jobs.queues import redis_connection
    from jobs.runtime import WORKER_STOPPED

    run = enqueue("selfcheck", selfcheck, 1, 0, queue="abandoned-by-its-worker")
    connection = redis_connection()
    job = Job.fetch(run.rq_job_id, connection=connection)
    try:
        job.set_status(RQStatus.STARTED)
        registry = StartedJobRegistry("abandoned-by-its-worker", connection=connection)
        connection.zadd(registry.key, {f"{job.id}:gone": 1})  # an execution whose heartbeat ran out long ago
        registry.cleanup()
        assert job.get_status(refresh=True) == RQStatus.FAILED
        assert reconcile(run).status == JobStatus.failed and run.message == WORKER_STOPPED
    finally:
        job.delete()


def test_a_job_rq_failed_otherwise_is_not_called_abandoned(app_ctx) -> None:  # noqa: ANN001
    from rq.job import Job
    from rq.job import JobStatus as RQStatus

    from jobs.queues import redis_connection
    from jobs.runtime import STOPPED_BY_RQ

    run = enqueue("selfcheck", selfcheck, 1, 0, queue="failed-by-rq")
    job = Job.fetch(run.rq_job_id, connection=redis_connection())
    try:
        job.set_status(RQStatus.FAILED)
        assert reconcile(run).status == JobStatus.failed and run.message == STOPPED_BY_RQ[RQStatus.FAILED]
    finally:
        job.delete()
