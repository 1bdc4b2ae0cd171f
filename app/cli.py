"""The ``tabula`` command: init, create-admin, demo, worker, run, selfcheck (plus Flask's and FAB's)."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click
from flask import current_app
from flask.cli import FlaskGroup, routes_command, shell_command, with_appcontext
from sqlalchemy.exc import SQLAlchemyError

import config


def _create_app():  # noqa: ANN202
    from app import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=False)
def cli() -> None:
    """Tabula CRM. Settings come from environment variables (see README)."""


cli.add_command(shell_command)
cli.add_command(routes_command)


@cli.command("init")
@click.option(
    "--demo/--no-demo", default=None, help="Load demo data if not loaded yet (default: TABULA_DEMO)."
)
def init_command(demo: bool | None) -> None:
    """Upgrade the database, sync permissions and roles, create the first admin; idempotent."""
    from app.bootstrap import initialize

    initialize(current_app._get_current_object(), demo=demo, echo=click.echo, progress=_progress())
    click.echo("Database is up to date.")


def _progress() -> Callable[[str, int, int], None]:
    """A counter per table on one line, each table ending on a line of its own."""

    def show(table: str, done: int, total: int) -> None:
        click.echo(f"\r  {table}: {done}/{total}", nl=done >= total)

    return show


@cli.command("create-admin")
@click.option("--username", default=None, help="Default: TABULA_ADMIN_USER or 'admin'.")
@click.option("--password", default=None, help="Default: TABULA_ADMIN_PASSWORD, else generated.")
@click.option("--email", default=None)
@click.option("--reset", is_flag=True, help="Set a new password if the user exists.")
@with_appcontext
def create_admin_command(username: str | None, password: str | None, email: str | None, reset: bool) -> None:
    """Create an admin account, or with --reset give an existing one a new password."""
    from app.bootstrap import create_user, generate_password

    sm = current_app.appbuilder.sm
    username = username or current_app.config["TABULA_ADMIN_USER"]
    password = password or current_app.config["TABULA_ADMIN_PASSWORD"] or None
    shown = password is None
    password = password or generate_password()
    user = sm.find_user(username=username)
    if user is not None and not reset:
        raise click.ClickException(f"user {username!r} exists; add --reset to set a new password")
    if user is not None:
        sm.reset_password(user.id, password)
        admin_role = sm.find_role(sm.auth_role_admin)
        if admin_role not in user.roles:
            user.roles.append(admin_role)
            sm.update_user(user)
    else:
        create_user(
            username, "Admin", username, email or f"{username}@example.com", sm.auth_role_admin, password
        )
    click.echo(f"Admin {username!r} is ready" + (f"; password: {password}" if shown else "."))


@cli.command("demo")
@click.option(
    "--scale",
    type=float,
    default=None,
    help="Size of the book, 1.0 = 2,000 companies (default: TABULA_DEMO_SCALE).",
)
@with_appcontext
def demo_command(scale: float | None) -> None:
    """Load the demo book (users, teams, companies, contacts, deals, activities ...) into a database
    that holds no CRM data yet."""
    from app.bootstrap import DEMO_SETTING, demo_summary, get_setting, init_lock, load_demo
    from app.crm.demo import has_book

    if scale is not None and not scale > 0:
        raise click.BadParameter("must be above 0", param_hint="--scale")
    app = current_app._get_current_object()
    with init_lock(app):
        if get_setting(DEMO_SETTING) is not None or has_book():
            raise click.ClickException(
                "this database already holds CRM data (companies, contacts, deals ...); the demo book is "
                "loaded only into an empty one. Use a new database (DATABASE_URL) to try the demo."
            )
        password, result = load_demo(progress=_progress(), scale=scale)
    click.echo(
        f"Demo data loaded in {result.seconds:.1f} s ({result.cpu_seconds:.1f} s CPU): "
        f"{demo_summary(result.counts)}"
    )
    click.echo(f"Demo users share the password: {password}")


@cli.command("worker", with_appcontext=False)
@click.option(
    "--with-scheduler/--without-scheduler",
    default=True,
    help="Also run RQ's scheduler (repeating and delayed jobs); safe on several workers.",
)
@click.option("--burst", is_flag=True, help="Quit when the queues are empty.")
@click.argument("queues", nargs=-1)
def worker_command(with_scheduler: bool, burst: bool, queues: tuple[str, ...]) -> None:
    """Replace this process with a plain `rq worker` on REDIS_URL with Tabula's worker class."""
    from app.runner import check_redis

    url = config.redis_url(os.environ)
    check_redis(url)
    rq = Path(sys.executable).with_name("rq")
    rq_path = str(rq) if rq.exists() else shutil.which("rq")
    if rq_path is None:
        raise click.ClickException("the `rq` command is not installed; run `make setup`")
    args = [rq_path, "worker", "--url", url, "--worker-class", "jobs.worker.TabulaWorker"]
    if with_scheduler:
        args.append("--with-scheduler")
    if burst:
        args.append("--burst")
    args.extend(queues or ["default"])
    sys.stdout.flush()
    os.execv(rq_path, args)  # noqa: S606 (the argument list is ours)


@cli.command("cron", with_appcontext=False)
def cron_command() -> None:
    """Replace this process with RQ's cron scheduler running Tabula's schedule (jobs/cron.py): the daily
    recycle-bin purge. One per installation is enough; a second one only enqueues the same idempotent jobs."""
    from app.runner import check_redis

    url = config.redis_url(os.environ)
    check_redis(url)
    rq = Path(sys.executable).with_name("rq")
    rq_path = str(rq) if rq.exists() else shutil.which("rq")
    if rq_path is None:
        raise click.ClickException("the `rq` command is not installed; run `make setup`")
    sys.stdout.flush()
    os.execv(rq_path, [rq_path, "cron", "--url", url, "jobs.cron"])  # noqa: S606 (the argument list is ours)


@cli.command("purge-recycle-bin")
@with_appcontext
def purge_command() -> None:
    """Delete for good what has been in the recycle bin longer than TABULA_RECYCLE_BIN_DAYS (now, here)."""
    import datetime as dt

    from flask import current_app

    from custom_fields import records
    from custom_fields.runtime import refresh

    refresh()
    days = int(current_app.config["RECYCLE_BIN_DAYS"])
    purged = records.purge_expired(
        dt.timedelta(days=days), progress=lambda done: click.echo(f"\r{done} purged", nl=False)
    )
    click.echo(f"\rPurged {purged} record(s) older than {days} days from the recycle bin.")


@cli.command("run", with_appcontext=False)
@click.option("--host", default=None, help="Default: TABULA_HOST or 127.0.0.1.")
@click.option("--port", type=int, default=None, help="Default: TABULA_PORT or 5000.")
@click.option("--no-worker", is_flag=True, help="Do not start an RQ worker.")
def run_command(host: str | None, port: int | None, no_worker: bool) -> None:
    """Run everything on this machine: embedded Redis (unless REDIS_URL), a worker, the web app."""
    from app.runner import run_all

    run_all(host, port, with_worker=not no_worker)


@cli.command("selfcheck")
@click.option("--timeout", type=float, default=60.0)
@with_appcontext
def selfcheck_command(timeout: float) -> None:
    """Queue a self-check job and wait for a worker to finish it, showing its progress."""
    from app.extensions import db
    from jobs import JobQueueUnavailable, enqueue
    from jobs.runtime import reconcile
    from jobs.system import selfcheck
    from models import JobStatus

    try:
        run = enqueue("selfcheck", selfcheck)
    except JobQueueUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.refresh(run)
        reconcile(run)
        click.echo(
            f"\rjob {run.id}: {run.status.value} {run.progress_done}/{run.progress_total or '?'}", nl=False
        )
        if run.status == JobStatus.finished:
            click.echo(f"\nfinished by a worker: {run.result}")
            return
        if run.status == JobStatus.failed:
            click.echo()
            raise click.ClickException(f"job {run.id} failed: {run.message}")
        time.sleep(0.2)
    click.echo()
    raise click.ClickException(f"no worker finished job {run.id} within {timeout:.0f} s; is one running?")


def main() -> None:
    """Entry point: configuration and connection problems end in one clear line, not a traceback."""
    try:
        cli.main(prog_name="tabula")
    except config.ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except SQLAlchemyError as exc:
        from app.bootstrap import database_error_reason

        reason = database_error_reason(exc)
        click.echo(f"error: database problem ({reason}); check DATABASE_URL and run `tabula init`", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
