"""The README's run command, from a fresh copy of the repository: it installs, initialises, serves the CRM
with an embedded Redis and a real worker, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

#: Runs a command with Ctrl-C's default action, as in a terminal: a test run started in the background of a
#: script inherits SIGINT ignored, and so would every process it starts.
WITH_CTRL_C = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execvp(sys.argv[1], sys.argv[1:])",
]


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^#+\s*Quick start\s*$(.*?)(?=^#+\s)", readme + "\n# end\n", re.M | re.S | re.I)
    assert section, "README has no Quick start section"
    block = re.search(r"```[^\n]*\n(.*?)```", section.group(1), re.S)
    return [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def copy_of_repository(target: Path) -> Path:
    files = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (local test server)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_readme_commands_are_make_run_and_make_test() -> None:
    assert quick_start_commands() == ["make run", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_run_command_from_a_fresh_copy(tmp_path: Path) -> None:
    copy = copy_of_repository(tmp_path / "tabula")
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("TABULA_", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "VIRTUAL_ENV", "MAKE", "MFLAGS")
        )
    }
    env["TABULA_PORT"] = str(port)
    log = open(tmp_path / "run.log", "w+")  # noqa: SIM115
    command = quick_start_commands()[0].split()
    process = subprocess.Popen(
        [*WITH_CTRL_C, *command],
        cwd=copy,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    family: set[int] = set()

    def remember_family() -> None:
        try:
            family.update(p.pid for p in psutil.Process(process.pid).children(recursive=True))
        except psutil.NoSuchProcess:
            pass

    try:
        deadline = time.monotonic() + 600  # the first run installs the virtualenv
        status = None
        while time.monotonic() < deadline:
            assert process.poll() is None, _tail(log)
            remember_family()
            try:
                status, body = get(f"http://127.0.0.1:{port}/health")
            except OSError:
                status = None
            if status == 200:
                break
            time.sleep(1)
        assert status == 200, _tail(log)
        assert '"worker":{"count":1,"ok":true}' in body.replace(" ", "")
        login_status, login_page = get(f"http://127.0.0.1:{port}/login/")
        assert login_status == 200 and 'name="csrf_token"' in login_page
        remember_family()
        assert any("redis-server" in " ".join(_cmdline(pid)) for pid in family), "no embedded Redis"

        log.seek(0)
        output = log.read()
        assert "Created admin 'admin' with password:" in output
        assert "Loaded demo data" in output

        check = subprocess.run(
            [str(copy / ".venv" / "bin" / "tabula"), "selfcheck", "--timeout", "60"],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert "finished by a worker" in check.stdout
    finally:
        remember_family()
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    time.sleep(1)
    shutil.rmtree(copy / ".venv", ignore_errors=True)  # keep /tmp small; the log stays for debugging
    left = [pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert left == [], f"processes left after Ctrl-C: {[_cmdline(p) for p in left]}\n{_tail(log)}"
    log.seek(0)
    assert "Stopped." in log.read()


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


def _tail(log) -> str:  # noqa: ANN001
    log.flush()
    log.seek(0)
    return log.read()[-4000:]


def test_running_is_announced_only_once_health_answers_200(tmp_path: Path) -> None:
    """`tabula run` (embedded Redis, its own worker) prints "is running" when /health already says 200."""
    import sys

    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TABULA_", "DATABASE_URL", "REDIS_URL", "SECRET_KEY"))
    }
    env.update(TABULA_PORT=str(port), TABULA_INSTANCE_DIR=str(tmp_path / "instance"), TABULA_DEMO="0")
    process = subprocess.Popen(
        [*WITH_CTRL_C, sys.executable, "-m", "app.cli", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, "tabula run ended:\n" + "".join(lines)
            lines.append(line)
            if "Tabula CRM is" in line:
                status, body = get(f"http://127.0.0.1:{port}/health")
                break
        assert "Tabula CRM is running at" in lines[-1], "".join(lines)
        assert status == 200, body
        assert '"worker":{"count":1,"ok":true}' in body.replace(" ", "")
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            rest, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    assert "Stopped." in rest and process.returncode == 0, "".join(lines) + rest
