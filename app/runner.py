"""``tabula run``: the whole CRM on one machine — embedded Redis, one RQ worker, RQ's cron scheduler (the
daily recycle-bin purge), the web app.

Ctrl-C (or SIGTERM) stops the web server, then the worker (warm: it finishes its current job), then Redis.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NoReturn

import click
from werkzeug.serving import BaseWSGIServer, make_server

import config
from app import create_app
from app.bootstrap import check_database, initialize
from app.embedded_redis import EmbeddedRedis, _die_with_parent


def _raise_exit(signum: int, _frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


def check_redis(url: str) -> None:
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
    except (RedisError, OSError, ValueError) as exc:
        raise config.ConfigError(
            f"cannot reach Redis at {config.redact(url)} ({exc.__class__.__name__}); set REDIS_URL to a "
            "running Redis (redis://host:6379/0), or unset it for the embedded Redis of `tabula run`"
        ) from None


def check_port(host: str, port: int) -> None:
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise config.ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror}); set TABULA_PORT or pass --port"
        ) from None


def start_worker(env: dict[str, str], command: str = "worker") -> subprocess.Popen:
    """``tabula worker`` (or ``tabula cron``, the daily schedule) in its own process."""
    args = ["worker", "--with-scheduler"] if command == "worker" else [command]
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C reaches us only; we ask the worker for a warm shutdown
        preexec_fn=_die_with_parent,
    )


def stop_process(process: subprocess.Popen | None, timeout: float) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


#: Time for the worker to start (it builds the app) and register; /health is 503 until it has.
HEALTHY_WITHIN = 120


def health_url(host: str, port: int) -> str:
    reachable = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    return f"http://{f'[{reachable}]' if ':' in reachable else reachable}:{port}/health"


def wait_until_healthy(url: str, worker: subprocess.Popen | None, timeout: float = HEALTHY_WITHIN) -> str:
    """Poll ``/health`` until it answers 200; the reason it did not, or "" once it does."""
    deadline = time.monotonic() + timeout
    problem = "no answer"
    while time.monotonic() < deadline:
        if worker is not None and worker.poll() is not None:
            return f"the worker exited with code {worker.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (our own address)
                if response.status == 200:
                    return ""
        except urllib.error.HTTPError as exc:
            problem = f"/health answers {exc.code}: {exc.read().decode(errors='replace')[:300]}"
        except OSError as exc:
            problem = f"/health does not answer ({exc.__class__.__name__})"
        time.sleep(0.2)
    return problem


def run_all(host: str | None = None, port: int | None = None, with_worker: bool = True) -> None:
    signal.signal(signal.SIGTERM, _raise_exit)
    env = dict(os.environ)
    app = create_app(env)
    host = host or app.config["TABULA_HOST"]
    port = port or app.config["TABULA_PORT"]
    # Settings problems end here, in one line, before anything is started.
    check_port(host, port)
    check_database(app)
    if not app.config["TABULA_EMBEDDED_REDIS"]:
        check_redis(app.config["REDIS_URL"])
    redis: EmbeddedRedis | None = None
    worker: subprocess.Popen | None = None
    scheduler: subprocess.Popen | None = None
    server: BaseWSGIServer | None = None
    serving: threading.Thread | None = None
    try:
        if app.config["TABULA_EMBEDDED_REDIS"]:
            redis = EmbeddedRedis(
                config.embedded_redis_socket(env), Path(app.config["TABULA_INSTANCE_DIR"])
            ).start()
            click.echo(f"Embedded Redis: {redis.url}")
        initialize(app, echo=click.echo)
        if with_worker:
            worker = start_worker(env)
            scheduler = start_worker(env, "cron")
        server = make_server(host, port, app, threaded=True)
        serving = threading.Thread(target=server.serve_forever, name="web", daemon=True)
        serving.start()
        # Announce the CRM only once it answers as healthy (its worker registered), not while /health is 503.
        problem = wait_until_healthy(health_url(host, port), worker, HEALTHY_WITHIN if with_worker else 2)
        if problem:
            click.echo(f"Tabula CRM is serving at http://{host}:{port}/ but is not healthy yet: {problem}")
        else:
            click.echo(f"Tabula CRM is running at http://{host}:{port}/  (Ctrl-C stops it)")
        while serving.is_alive():
            serving.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        if serving is not None and serving.is_alive():
            server.shutdown()
        click.echo("Stopping Tabula CRM ...")
        stop_process(scheduler, timeout=10)
        stop_process(worker, timeout=30)
        if redis is not None:
            redis.stop()
        click.echo("Stopped.")
