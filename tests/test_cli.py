"""The `tabula` command: init, create-admin, demo, worker; bad settings end in one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def tabula(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def fresh_env(scratch_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """A new SQLite database and instance folder, nothing else changed (once, not once per backend)."""
    return {
        **scratch_env,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}",
        "TABULA_INSTANCE_DIR": str(tmp_path),
        "TABULA_ADMIN_PASSWORD": "",
    }


def test_init_prints_a_generated_admin_password_once(fresh_env) -> None:  # noqa: ANN001
    first = tabula(fresh_env, "init")
    assert first.returncode == 0, first.stderr
    assert "Created admin 'admin' with password:" in first.stdout
    assert "demo users manager, staff1, staff2" in first.stdout
    second = tabula(fresh_env, "init")
    assert second.returncode == 0, second.stderr
    assert "password" not in second.stdout


def test_init_without_demo(fresh_env) -> None:  # noqa: ANN001
    result = tabula({**fresh_env, "TABULA_DEMO": "0"}, "init")
    assert result.returncode == 0 and "demo" not in result.stdout.lower()


def test_demo_command_loads_an_empty_database_once(fresh_env) -> None:  # noqa: ANN001
    assert tabula(fresh_env, "init", "--no-demo").returncode == 0
    loaded = tabula(fresh_env, "demo", "--scale", "0.01")
    assert loaded.returncode == 0, loaded.stderr
    assert "companies: 20/20" in loaded.stdout and "Demo data loaded in " in loaded.stdout
    assert "share the password:" in loaded.stdout
    again = tabula(fresh_env, "demo")
    assert again.returncode != 0 and "already holds CRM data" in again.stderr


def test_create_admin_and_reset(fresh_env) -> None:  # noqa: ANN001
    assert tabula(fresh_env, "init", "--no-demo").returncode == 0
    made = tabula(fresh_env, "create-admin", "--username", "boss", "--password", "Секрет-1")
    assert made.returncode == 0 and "Admin 'boss' is ready." in made.stdout
    again = tabula(fresh_env, "create-admin", "--username", "boss")
    assert again.returncode != 0 and "exists; add --reset" in again.stderr
    reset = tabula(fresh_env, "create-admin", "--username", "boss", "--reset")
    assert reset.returncode == 0 and "password:" in reset.stdout


@pytest.mark.parametrize(
    ("variables", "command", "expected"),
    [
        ({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/crm"}, "init", "cannot connect to the database"),
        ({"DATABASE_URL": "nonsense"}, "init", "DATABASE_URL is not a database URL"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "worker", "cannot reach Redis at redis://127.0.0.1:1/0"),
        ({"REDIS_URL": "127.0.0.1:6379"}, "worker", "REDIS_URL must start with"),
        ({"SMTP_PORT": "abc"}, "init", "SMTP_PORT must be a whole number"),
    ],
)
def test_bad_settings_give_one_clear_line(fresh_env, variables, command, expected) -> None:  # noqa: ANN001
    result = tabula({**fresh_env, **variables}, command, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert "set " in lines[0].lower() or "must" in lines[0]


def test_database_password_never_printed(fresh_env) -> None:  # noqa: ANN001
    result = tabula({**fresh_env, "DATABASE_URL": "postgresql://u:hunter2@127.0.0.1:1/crm"}, "init")
    assert result.returncode == 1 and "hunter2" not in result.stderr + result.stdout


def test_worker_burst_processes_the_queue(app, env) -> None:  # noqa: ANN001
    from app.extensions import db
    from jobs import enqueue
    from jobs.system import selfcheck
    from models import JobRun, JobStatus

    with app.app_context():
        # A queue no other worker listens on, so only this burst worker can finish the job.
        run_id = enqueue("selfcheck", selfcheck, 1, 0, queue="cli-burst").id
    result = tabula(env, "worker", "--burst", "--without-scheduler", "cli-burst")
    assert result.returncode == 0, result.stdout + result.stderr
    with app.app_context():
        assert db.session.get(JobRun, run_id).status == JobStatus.finished


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "cannot reach Redis"),
        ({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/crm"}, "cannot connect to the database"),
    ],
)
def test_run_with_unreachable_services_says_what_to_set(fresh_env, variables, expected) -> None:  # noqa: ANN001
    result = tabula({**fresh_env, **variables, "TABULA_PORT": "1"}, "run", timeout=60)
    assert result.returncode == 1
    assert result.stdout.strip() == ""
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        next(line for line in result.stderr.splitlines() if expected in line)
    ]


def test_run_on_a_busy_port_says_so_before_starting_anything(fresh_env) -> None:  # noqa: ANN001
    import socket

    import psutil

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {key: value for key, value in fresh_env.items() if key != "REDIS_URL"}
        result = tabula({**env, "TABULA_PORT": str(port)}, "run", timeout=120)
    assert result.returncode == 1
    assert f"error: cannot listen on 127.0.0.1:{port}" in result.stderr and "TABULA_PORT" in result.stderr
    assert result.stdout == ""
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if fresh_env["TABULA_INSTANCE_DIR"] in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []


def test_purge_recycle_bin_command_and_the_scheduled_job(app, env, worker) -> None:  # noqa: ANN001
    """`tabula purge-recycle-bin` purges what expired, with a counter; what `tabula cron` enqueues daily
    becomes a tracked purge job that a real worker finishes."""
    import datetime as dt
    import time

    from sqlalchemy import select, update

    from app.extensions import db
    from custom_fields import records
    from custom_fields.access import Actor
    from custom_fields.runtime import current
    from jobs.queues import get_queue
    from jobs.records import scheduled_purge
    from models import JobRun, JobStatus
    from tests.tables_helpers import new_table, unique_label

    with app.app_context():
        slug = new_table(unique_label("Чистка")).slug
        name = current().entity(slug).display_field
        actor = Actor.system_job()
        pk = records.create(slug, {name.name: "Просроченная"}, actor).id
        records.delete(slug, pk, actor)
        table = current().classes[slug].__table__
        expired = dt.datetime.now(dt.UTC) - dt.timedelta(days=365)
        db.session.execute(update(table).where(table.c.id == pk).values(deleted_at=expired))
        db.session.commit()
        last_run = db.session.scalar(select(JobRun.id).order_by(JobRun.id.desc())) or 0

    result = tabula(env, "purge-recycle-bin")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Purged 1 record(s) older than 30 days" in result.stdout
    with app.app_context():
        assert db.session.get(current().classes[slug], pk) is None

    deadline = time.monotonic() + 30
    with app.app_context():
        get_queue().enqueue(scheduled_purge)  # what the cron scheduler does at 03:30
        while time.monotonic() < deadline:
            db.session.expire_all()
            run = db.session.scalar(
                select(JobRun).where(JobRun.id > last_run, JobRun.kind == "purge_recycle_bin")
            )
            if run is not None and run.status == JobStatus.finished:
                break
            time.sleep(0.2)
        assert run is not None and run.status == JobStatus.finished and run.result["days"] == 30
