"""Benchmark of the live screens' stream (``GET /live/stream?table=<slug>``, ``views.live``): how fast a
committed write reaches every open screen, what an open screen costs the web process, and whether open
screens slow the data API down.

Builds a scratch database next to ``BENCH_DATABASE_URL`` (``bench/scratch.py``), a custom table (a display
field, an integer and a text field) through ``custom_fields.service`` with ``--rows`` records written
through ``custom_fields.records.create_many`` in batches, then starts the web app twice as a real gunicorn
with threads (``gunicorn -k gthread --threads <clients + 20> -w 1 'app:create_app()'``, the scratch app's
environment, each one's stderr kept in a temporary file): the streams' server, and a control that never
gets a stream. It signs in with the login form as the admin (with ``--users N``, as N - 1 more users of the
Admin role too: the streams are theirs in turn; by default all are the admin's, who is never shown to
themselves, so the presence events stay empty). Then:

- the API: ``--api-requests`` pairs of ``GET /api/v1/data/<slug>?size=100`` with the browser session, one
  to each server, alternating which goes first, never two at a time; medians. Before any stream is open
  (``ratio_before_streams``: the two servers' own difference), with the streams open and idle, before and
  after the writes (**``api_ms_with``** on the streams' server, **``api_ms_without``** on the control at
  the same moments: ``ratio`` = with / without; measured side by side because on a shared machine the load
  changes more from one minute to the next than the streams change anything), during the writes, and once
  the streams are gone;
- ``--clients`` streams are opened, each its own socket read raw (HTTP/1.1, chunked) by one ``selectors``
  loop in a thread of this process, until each has its opening ``presence`` event and the presence
  announcements of the others' arrivals have died down; ``mem_per_connection_kb`` is the growth of the
  streams' worker's resident memory over that, per stream;
- writes: ``records.update`` (the write path, commit, announcement) of one field of a random record (each
  record at most once) at ``writes_per_s`` for ``--seconds``, in this process; the time right after each
  call returns is its commit. Each stream's ``rows`` event naming the record is its delivery: latency =
  received - committed for every (stream, write) pair, ``p50_ms``/``p95_ms``, and ``delivered``, the
  share of the expected deliveries that arrived;
- hang-up: this side closes every stream; ``release_s`` is how long until the worker has closed its side
  of all of them (it notices only when a write fails), ``presence_left`` the entries still in the table's
  presence hash then (there should be none).

Progress goes to stderr; the figures go to stdout, the last line being one JSON object, e.g.
``{"bench": "live", "rows": 10000, "clients": 200, "writes_per_s": 20, "p50_ms": 12.8, "p95_ms": 20.3,
"delivered": 1.0, "mem_per_connection_kb": 70.8, "api_ms_without": 8.76, "api_ms_with": 9.44, "ratio": 1.08,
...}``. Targets: ``p95_ms`` ≤ 1000 and ``ratio`` ≤ 1.2. Redis: ``BENCH_REDIS_URL``, by default
``redis://127.0.0.1:6379/15`` (the announcement stream is one key per Redis database: a database of its
own keeps other benchmarks' and tests' writes out of it). gunicorn is stopped and the scratch database
dropped at the end, whatever happens. Usage::

    .venv/bin/python bench/live.py --rows 10000 --clients 200
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, Python puts bench/ first on sys.path, where bench/custom_fields.py would shadow the
# ``custom_fields`` package: look in the project root instead (the product is imported lazily below).
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)

from bench.scratch import ADMIN_PASSWORD, log, scratch_app  # noqa: E402

SEED = 42
BATCH = 1_000  # records per create_many
PAGE = 100
WRITES_PER_S = 20
EXTRA_THREADS = 20  # gunicorn threads beyond one per stream, for the API and the sign-in
TARGET_P95_MS = 1000
TARGET_RATIO = 1.2
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
USER_PASSWORD = "bench-Live-1"  # noqa: S105 (a scratch database's users)
START_TIMEOUT_S = 120
OPEN_TIMEOUT_S = 120
QUIET_S = 1.5  # the presence announcements of the arrivals are over once none came for this long
DRAIN_TIMEOUT_S = 15
RELEASE_TIMEOUT_S = 45  # more than two heartbeats (views.live.HEARTBEAT_S)
WARMUP = 10
#: gunicorn's stderr lines not worth reporting: its own INFO lines, and Flask-AppBuilder's warning on every
#: sign-in by the form without a ``next`` address. Every other line is (warnings of the app's loggers have
#: no level in front: Python's last-resort handler prints the bare message).
ROUTINE = re.compile(r"^\[[^]]+\] \[\d+\] \[INFO\] |^Invalid redirect detected, falling back to index$")


# --- the table ----------------------------------------------------------------------------------------------


def build_table(app: Any, rows: int) -> dict[str, Any]:
    """A custom table of ``rows`` records written through the write path; its slug, ids and fields."""
    from flask_appbuilder.security.sqla.models import User
    from sqlalchemy import select

    from app.extensions import db
    from custom_fields import records, runtime, service
    from custom_fields.access import Actor

    rng = random.Random(SEED)
    entity = service.create_entity("Live bench", "Live bench rows")
    service.add_field(entity.id, "Score", "integer")
    service.add_field(entity.id, "Title", "text", settings={"max_length": 100})
    spec = runtime.refresh(app).entity(entity.slug)
    fields = {f.label: f.name for f in spec.live_fields}
    name_field = spec.live_fields[0].name
    admin_id = db.session.scalar(select(User.id).where(User.username == "admin"))
    if admin_id is None:
        raise RuntimeError("initialize did not create the user 'admin'")
    actor = Actor.for_user_id(admin_id, "job")
    db.session.commit()
    ids: list[int] = []
    started = time.perf_counter()
    for offset in range(0, rows, BATCH):
        batch = [
            {
                name_field: f"Row {n:07d}",
                fields["Score"]: str(rng.randrange(1_000_000)),
                fields["Title"]: f"Title {rng.randrange(10_000)}",
            }
            for n in range(offset, min(rows, offset + BATCH))
        ]
        ids.extend(saved.id for saved in records.create_many(spec.slug, batch, actor))
        done = len(ids)
        log(f"  written {done:>8,} / {rows:,} rows ({done / (time.perf_counter() - started):,.0f} rows/s)")
    return {
        "slug": spec.slug,
        "entity_id": spec.id,
        "ids": ids,
        "field": fields["Score"],
        "admin_id": admin_id,
        "load_s": time.perf_counter() - started,
    }


def create_users(app: Any, count: int) -> list[tuple[str, str]]:
    """``count`` users who read the whole table (name, password): the admin and ``count - 1`` more admins."""
    from flask_appbuilder.security.sqla.models import Role

    from app.extensions import db

    users = [("admin", ADMIN_PASSWORD)]
    if count > 1:
        role = db.session.query(Role).filter(Role.name == "Admin").one()
        for index in range(1, count):
            name = f"bench_live_{index:03d}"
            added = app.appbuilder.sm.add_user(
                name, "Live", f"Reader {index:03d}", f"{name}@example.com", role, USER_PASSWORD
            )
            if not added:
                raise RuntimeError(f"could not create the user {name}")
            users.append((name, USER_PASSWORD))
        db.session.commit()
    return users


# --- the server ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(env: dict[str, str], threads: int, stderr: Any) -> tuple[subprocess.Popen, str]:
    """gunicorn with one threaded worker on a free port, once ``/login/`` answers 200."""
    port = free_port()
    command = [GUNICORN, "-k", "gthread", "--threads", str(threads), "-w", "1"]
    process = subprocess.Popen(  # noqa: S603 (our own command)
        [*command, "-b", f"127.0.0.1:{port}", "app:create_app()"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode} before answering")
        try:
            if requests.get(f"{base}/login/", timeout=10).status_code == 200:
                return process, base
        except requests.RequestException:
            pass
        time.sleep(0.2)
    stop_server(process)
    raise RuntimeError(f"gunicorn did not answer /login/ within {START_TIMEOUT_S} s")


def worker_of(process: subprocess.Popen) -> Any:
    """The gunicorn worker (the master's child) as a psutil.Process."""
    import psutil

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = psutil.Process(process.pid).children()
        if children:
            return children[0]
        time.sleep(0.1)
    raise RuntimeError("gunicorn has no worker")


def rss_kb(worker: Any) -> float:
    return worker.memory_info().rss / 1024


def stop_server(process: subprocess.Popen) -> None:
    """Quick shutdown (SIGQUIT: open streams need not be waited for), killed if it does not go."""
    import psutil

    if process.poll() is not None:
        return
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    process.send_signal(signal.SIGQUIT)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def server_problems(path: str) -> list[str]:
    """gunicorn's stderr but its routine lines."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return [line.rstrip() for line in handle if line.strip() and not ROUTINE.search(line.rstrip())]


# --- the client side ----------------------------------------------------------------------------------------


def sign_in(base: str, username: str, password: str) -> requests.Session:
    """A browser session: the login form posted with its CSRF token."""
    session = requests.Session()
    found = CSRF.search(session.get(f"{base}/login/", timeout=30).text)
    if found is None:
        raise RuntimeError("no csrf_token in the login form")
    answer = session.post(
        f"{base}/login/",
        data={"username": username, "password": password, "csrf_token": found.group(1)},
        timeout=30,
    )
    if not answer.ok or "logout" not in answer.text.lower():
        raise RuntimeError(f"signing in failed ({answer.status_code}): {answer.text[:300]}")
    return session


def api_pairs(
    session: requests.Session, urls: tuple[str, str], count: int, label: str
) -> tuple[list[float], list[float]]:
    """``count`` list requests to each of two servers (the streams' and the control), alternating which goes
    first, after a warm-up; each timed in seconds. Sequential: never two requests at a time."""
    for _ in range(WARMUP):
        for url in urls:
            answer = session.get(url, timeout=60)
            if answer.status_code != 200 or len(answer.json()["rows"]) != PAGE:
                raise RuntimeError(f"{url} answered {answer.status_code}: {answer.text[:300]}")
    samples: tuple[list[float], list[float]] = ([], [])
    for done in range(1, count + 1):
        for side in (0, 1) if done % 2 else (1, 0):
            began = time.perf_counter()
            answer = session.get(urls[side], timeout=60)
            samples[side].append(time.perf_counter() - began)
            if answer.status_code != 200:
                raise RuntimeError(f"{urls[side]} answered {answer.status_code}: {answer.text[:300]}")
        if done % 50 == 0 or done == count:
            live, control = (statistics.median(s) * 1000 for s in samples)
            log(
                f"  API {label}: {done:>4} / {count} pairs, median {live:.1f} ms on the streams' server, "
                f"{control:.1f} ms on the control"
            )
    return samples


class Stream:
    """One open ``/live/stream``, read raw as an EventSource does (HTTP/1.1, chunked or not)."""

    def __init__(self, index: int, host: str, port: int, path: str, cookie: str) -> None:
        self.index = index
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
                f"Cache-Control: no-cache\r\nCookie: {cookie}\r\n\r\n"
            ).encode()
        )
        self.sock.setblocking(False)
        self.head = b""
        self.status: int | None = None
        self.chunked = False
        self.raw = bytearray()  # chunked body not yet decoded
        self.text = b""  # body not yet split into events
        self.refusal = b""
        self.ready_at: float | None = None
        self.received: dict[int, float] = {}  # record id -> when its rows event arrived
        self.duplicates = 0
        self.kinds: Counter = Counter()
        self.sizes: Counter = Counter()  # bytes of the events by kind
        self.closed = False
        self.ended = False

    def feed(self, data: bytes, now: float, readers: Readers) -> None:
        if self.status is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            header, data = self.head[:end].decode("latin-1"), self.head[end + 4 :]
            lines = header.split("\r\n")
            self.status = int(lines[0].split()[1])
            headers = {
                k.strip().lower(): v.strip() for k, _s, v in (line.partition(":") for line in lines[1:])
            }
            self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if self.chunked:
            self.raw += data
            data = self._dechunk()
        if self.status != 200:
            self.refusal += data
            return
        self.text += data
        while True:
            end = self.text.find(b"\n\n")
            if end < 0:
                return
            block, self.text = self.text[:end], self.text[end + 2 :]
            self._event(block, now, readers)

    def _dechunk(self) -> bytes:
        """The data of the complete chunks received (an SSE event is one small chunk: no partial reads)."""
        raw, out, pos = self.raw, bytearray(), 0
        while True:
            eol = raw.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(bytes(raw[pos:eol]).split(b";")[0], 16)
            start = eol + 2
            if size == 0:
                self.ended = True
                pos = len(raw)
                break
            if len(raw) < start + size + 2:
                break
            out += raw[start : start + size]
            pos = start + size + 2
        del raw[:pos]
        return bytes(out)

    def _event(self, block: bytes, now: float, readers: Readers) -> None:
        kind, data = "message", []
        for line in block.decode().split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _sep, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                kind = value
            elif name == "data":
                data.append(value)
        if not data:  # retry: only, or a comment: nothing dispatched
            return
        self.kinds[kind] += 1
        self.sizes[kind] += len(block)
        if kind == "presence":
            readers.last_presence = now
            if self.ready_at is None:
                self.ready_at = now
        elif kind == "rows":
            for record_id in json.loads("\n".join(data))["changed"]:
                if record_id in self.received:
                    self.duplicates += 1
                else:
                    self.received[record_id] = now
                    readers.deliveries += 1


class Readers:
    """One thread reading every stream's socket through ``selectors``."""

    def __init__(self, streams: list[Stream]) -> None:
        self.streams = streams
        self.selector = selectors.DefaultSelector()
        for stream in streams:
            self.selector.register(stream.sock, selectors.EVENT_READ, stream)
        self.last_presence = 0.0
        self.deliveries = 0
        self.errors: list[str] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sse-readers", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            for key, _mask in self.selector.select(timeout=0.2):
                stream: Stream = key.data
                try:
                    data = stream.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as error:
                    self.errors.append(f"stream {stream.index}: {error!r}")
                    data = b""
                now = time.perf_counter()
                if data:
                    try:
                        stream.feed(data, now, self)
                    except Exception as error:  # noqa: BLE001 (reported, the others read on)
                        self.errors.append(f"stream {stream.index}: {error!r}")
                if not data or stream.ended:
                    stream.closed = True
                    self.selector.unregister(stream.sock)

    def stop(self) -> None:
        """Stop reading and hang up every stream, as closed browser tabs do (once; again does nothing)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._thread.join(timeout=10)
        for stream in self.streams:
            try:
                stream.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            stream.sock.close()
        self.selector.close()


def open_streams(
    base: str, slug: str, cookies: list[str], clients: int
) -> tuple[list[Stream], Readers, float]:
    """``clients`` streams (the users' cookies in turn), once each has its opening presence event (the
    seconds that took)."""
    host, port = base.removeprefix("http://").split(":")
    path = f"/live/stream?table={slug}"
    began = time.perf_counter()
    streams = [
        Stream(index, host, int(port), path, cookies[index % len(cookies)]) for index in range(clients)
    ]
    readers = Readers(streams)
    try:
        return streams, readers, wait_open(streams, clients, began)
    except BaseException:
        readers.stop()
        raise


def wait_open(streams: list[Stream], clients: int, began: float) -> float:
    deadline = time.monotonic() + OPEN_TIMEOUT_S
    shown = -1
    while True:
        ready = sum(s.ready_at is not None for s in streams)
        refused = [s for s in streams if s.status not in (None, 200) or (s.closed and s.ready_at is None)]
        if ready != shown:
            log(f"  streams open: {ready:>4} / {clients}")
            shown = ready
        if refused:
            first = refused[0]
            raise RuntimeError(
                f"{len(refused)} stream(s) refused or closed, e.g. {first.status}: {first.refusal[:300]!r}"
            )
        if ready == clients:
            return max(s.ready_at or 0.0 for s in streams) - began
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {ready} of {clients} streams opened within {OPEN_TIMEOUT_S} s")
        time.sleep(0.05)


def wait_quiet(readers: Readers) -> float:
    """Wait until no presence event came for ``QUIET_S`` (the arrivals announced to everyone)."""
    began = time.perf_counter()
    while time.perf_counter() - max(readers.last_presence, began) < QUIET_S:
        if time.perf_counter() - began > OPEN_TIMEOUT_S:
            log("  presence events still coming; going on")
            break
        time.sleep(0.1)
    return time.perf_counter() - began


def forget_presence(entity_id: int) -> None:
    from app.redis_client import redis_connection
    from views.live import presence_key

    redis_connection().delete(presence_key(entity_id))


def stream_sockets(worker: Any, ports: set[int]) -> set[tuple[int, str]]:
    """The worker's sockets of the streams from ``ports`` (this side's ports) as (fd, ``socket:[inode]``)."""
    found = set()
    for conn in worker.net_connections(kind="tcp"):
        if conn.raddr and conn.raddr.port in ports and conn.fd >= 0:
            try:
                found.add((conn.fd, os.readlink(f"/proc/{worker.pid}/fd/{conn.fd}")))
            except OSError:
                pass
    return found


def held_streams(worker: Any, sockets: set[tuple[int, str]]) -> int:
    """How many of ``sockets`` the worker still holds open. (Not by the socket's TCP state: once this side
    hung up, the server's first write gets a reset, after which the kernel lists the socket nowhere, though
    the server lets go of the stream only when a write fails, the next one.)"""
    held = 0
    for fd, link in sockets:
        try:
            held += os.readlink(f"/proc/{worker.pid}/fd/{fd}") == link
        except OSError:
            pass
    return held


def wait_released(worker: Any, sockets: set[tuple[int, str]]) -> float | None:
    """Seconds until the worker closed every hung-up stream, None if it had not within
    ``RELEASE_TIMEOUT_S``. A server learns that a stream's client is gone only when a write to it fails: the
    heartbeat (``views.live.HEARTBEAT_S``) or an event."""
    began = time.perf_counter()
    shown = began
    while True:
        left = held_streams(worker, sockets)
        now = time.perf_counter()
        if not left:
            log(f"  all streams let go of after {now - began:.1f} s")
            return now - began
        if now - began > RELEASE_TIMEOUT_S:
            log(f"  {left} stream(s) still held after {RELEASE_TIMEOUT_S} s; going on")
            return None
        if now - shown >= 5:
            shown = now
            log(f"  {left} stream(s) still held after {now - began:.0f} s")
        time.sleep(0.2)


def presence_left(entity_id: int) -> int:
    """Entries left in the table's presence hash (every screen closed: there should be none)."""
    from app.redis_client import redis_connection
    from views.live import presence_key

    return redis_connection().hlen(presence_key(entity_id))


# --- the writes ---------------------------------------------------------------------------------------------


def write(app: Any, table: dict[str, Any], seconds: float, readers: Readers, clients: int) -> dict[str, Any]:
    """``WRITES_PER_S`` updates of distinct random records for ``seconds``; when each committed."""
    from custom_fields import records
    from custom_fields.access import Actor

    rng = random.Random(SEED + 1)
    total = max(1, round(seconds * WRITES_PER_S))
    targets = rng.sample(table["ids"], total)
    actor = Actor.for_user_id(table["admin_id"], "job")
    committed: dict[int, float] = {}
    call_s: list[float] = []
    began = time.perf_counter()
    shown = began
    for done, record_id in enumerate(targets, start=1):
        delay = began + (done - 1) / WRITES_PER_S - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        called = time.perf_counter()
        records.update(
            table["slug"],
            record_id,
            {table["field"]: str(rng.randrange(1_000_000))},
            actor,
            expected_version=None,
        )
        committed[record_id] = now = time.perf_counter()
        call_s.append(now - called)
        if now - shown >= 1 or done == total:
            shown = now
            log(
                f"  writes {done:>5} / {total}, deliveries {readers.deliveries:>7,} / "
                f"{done * clients:,} so far"
            )
    return {"committed": committed, "write_s": time.perf_counter() - began, "call_s": call_s}


def wait_deliveries(readers: Readers, expected: int) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while readers.deliveries < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    log(f"  deliveries {readers.deliveries:,} / {expected:,}")


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


# --- the run ------------------------------------------------------------------------------------------------


def run(app: Any, args: argparse.Namespace, logs: tuple[str, str]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with app.app_context():
        log(f"writing {args.rows:,} rows through records.create_many (batches of {BATCH:,})")
        table = build_table(app, args.rows)
        figures["load_s"] = table["load_s"]
        users = create_users(app, min(args.users, args.clients))
        forget_presence(table["entity_id"])  # an earlier run's table had the same id in this Redis database

        threads = args.clients + EXTRA_THREADS
        log(f"starting two gunicorn -k gthread --threads {threads} -w 1: the streams' server and a control")
        processes: list[subprocess.Popen] = []
        streams: list[Stream] = []
        readers: Readers | None = None
        try:
            bases = []
            for path in logs:
                with open(path, "wb") as stderr:
                    process, base = start_server(app.bench_env, threads, stderr)
                processes.append(process)
                bases.append(base)
            worker = worker_of(processes[0])
            session = sign_in(bases[0], "admin", ADMIN_PASSWORD)  # the same cookie signs in on both
            cookies = [cookie_header(session)]
            if len(users) > 1:
                log(f"signing in {len(users)} users")
                cookies += [cookie_header(sign_in(bases[0], name, password)) for name, password in users[1:]]
            urls = (
                f"{bases[0]}/api/v1/data/{table['slug']}?size={PAGE}",
                f"{bases[1]}/api/v1/data/{table['slug']}?size={PAGE}",
            )
            count = args.api_requests

            log(f"timing the API before any stream is open ({count} pairs of requests)")
            figures["api_before"] = api_pairs(session, urls, count, "no streams yet")
            rss_before = rss_kb(worker)

            log(f"opening {args.clients} streams")
            streams, readers, figures["open_s"] = open_streams(bases[0], table["slug"], cookies, args.clients)
            figures["settle_s"] = wait_quiet(readers)
            rss_after = rss_kb(worker)
            figures["presence_events"] = sum(s.kinds["presence"] for s in streams)
            figures["presence_kb"] = sum(s.sizes["presence"] for s in streams) / 1024
            log(
                f"  all open in {figures['open_s']:.1f} s, {figures['presence_events']:,} presence events, "
                f"quiet after {figures['settle_s']:.1f} s more; worker RSS {rss_before / 1024:.1f} -> "
                f"{rss_after / 1024:.1f} MB"
            )
            log(f"timing the API with {args.clients} streams open ({count} pairs of requests)")
            with_before = api_pairs(session, urls, count, "streams open")

            total = max(1, round(args.seconds * WRITES_PER_S))
            log(f"writing {total} updates at {WRITES_PER_S}/s for {args.seconds:g} s, API timed alongside")
            during: list[tuple[list[float], list[float]]] = []
            timer = threading.Thread(
                target=lambda: during.append(
                    api_pairs(session_copy(session), urls, count, "during the writes")
                ),
                daemon=True,
            )
            timer.start()
            written = write(app, table, args.seconds, readers, args.clients)
            timer.join(timeout=300)
            figures["api_during"] = during[0] if during else None
            wait_deliveries(readers, total * args.clients)

            log(f"timing the API with {args.clients} streams open again ({count} pairs of requests)")
            with_after = api_pairs(session, urls, count, "streams open, after the writes")
            figures["api_with"] = (with_before[0] + with_after[0], with_before[1] + with_after[1])
            still_open = sum(not s.closed for s in streams)

            log("closing the streams; waiting for the worker to let go of them (close its sockets)")
            sockets = stream_sockets(worker, {stream.sock.getsockname()[1] for stream in streams})
            if len(sockets) != args.clients:
                log(f"  found {len(sockets)} of the {args.clients} streams' sockets in the worker")
            readers.stop()
            figures["release_s"] = wait_released(worker, sockets)
            time.sleep(1)  # the last departures' presence bookkeeping
            figures["presence_left"] = presence_left(table["entity_id"])
            if figures["presence_left"]:
                log(f"  {figures['presence_left']} presence entries left for closed streams")
            log(f"timing the API once the streams are gone ({count} pairs of requests)")
            figures["api_after"] = api_pairs(session, urls, count, "streams gone")
        finally:
            if readers is not None:
                readers.stop()
            else:
                for stream in streams:
                    stream.sock.close()
            for process in processes:
                stop_server(process)
            log("gunicorn stopped")
            with contextlib.suppress(Exception):  # the scratch table's key; the run's outcome matters more
                forget_presence(table["entity_id"])

        committed = written["committed"]
        latencies: list[float] = []
        unexpected = duplicates = 0
        for stream in streams:
            duplicates += stream.duplicates
            for record_id, received in stream.received.items():
                if record_id in committed:
                    latencies.append(received - committed[record_id])
                else:
                    unexpected += 1
        figures.update(
            latencies=latencies,
            expected=len(committed) * args.clients,
            unexpected=unexpected,
            duplicates=duplicates,
            write_s=written["write_s"],
            writes=len(committed),
            call_ms=statistics.median(written["call_s"]) * 1000,
            rss_before_kb=rss_before,
            rss_after_kb=rss_after,
            still_open=still_open,
            reader_errors=readers.errors if readers is not None else [],
            kinds=sum((s.kinds for s in streams), Counter()),
            problems=server_problems(logs[0]),
            control_problems=server_problems(logs[1]),
            users=len(users),
        )
    return figures


def cookie_header(session: requests.Session) -> str:
    return "; ".join(f"{k}={v}" for k, v in session.cookies.items())


def session_copy(session: requests.Session) -> requests.Session:
    """A session of its own (requests' are not thread-safe) with the same cookies."""
    copy = requests.Session()
    copy.cookies.update(session.cookies)
    return copy


def medians_ms(pair: tuple[list[float], list[float]] | None) -> tuple[float | None, float | None]:
    """The medians (ms) of the streams' server and the control's samples."""
    if pair is None:
        return None, None
    return statistics.median(pair[0]) * 1000, statistics.median(pair[1]) * 1000


def report(args: argparse.Namespace, figures: dict[str, Any], total_s: float) -> dict[str, Any]:
    latencies = figures["latencies"]
    p50 = percentile(latencies, 0.50) * 1000 if latencies else None
    p95 = percentile(latencies, 0.95) * 1000 if latencies else None
    worst = max(latencies) * 1000 if latencies else None
    delivered = len(latencies) / figures["expected"] if figures["expected"] else 0.0
    with_streams, without = medians_ms(figures["api_with"])
    before, before_control = medians_ms(figures["api_before"])
    after, after_control = medians_ms(figures["api_after"])
    during, during_control = medians_ms(figures["api_during"])
    same_server = statistics.median(figures["api_before"][0] + figures["api_after"][0]) * 1000
    per_connection = (figures["rss_after_kb"] - figures["rss_before_kb"]) / args.clients
    writes_per_s = figures["writes"] / figures["write_s"] if figures["write_s"] else 0.0
    problems, control_problems = figures["problems"], figures["control_problems"]
    released = figures["release_s"]

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} ms"

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(a / b, 2)

    print(
        f"live benchmark: {args.rows:,} rows, {args.clients} streams of {figures['users']} user(s), "
        "gunicorn gthread, 1 worker (and a control gunicorn that never gets a stream)"
    )
    print(
        f"  load (create_many): {figures['load_s']:.1f} s; streams open in {figures['open_s']:.1f} s, "
        f"{figures['presence_events']:,} presence events ({figures['presence_kb']:,.0f} KB), "
        f"quiet {figures['settle_s']:.1f} s later"
    )
    print(
        f"  worker RSS {figures['rss_before_kb'] / 1024:.1f} MB -> {figures['rss_after_kb'] / 1024:.1f} MB: "
        f"{per_connection:.1f} KB per stream"
    )
    print(
        f"  {figures['writes']} writes at {writes_per_s:.1f}/s "
        f"(records.update median {figures['call_ms']:.1f} ms);"
        f" deliveries {len(latencies):,} / {figures['expected']:,} ({delivered:.4f}), "
        f"{figures['unexpected']} unexpected, {figures['duplicates']} duplicated"
    )
    print(
        f"  commit -> rows event: p50 {ms(p50)}, p95 {ms(p95)}, max {ms(worst)} "
        f"(target p95 <= {TARGET_P95_MS} ms)"
    )
    print(
        f"  API list of {PAGE}, medians (streams' server / control): with {args.clients} streams open "
        f"{ms(with_streams)} / {ms(without)}, ratio {ratio(with_streams, without)} (target <= {TARGET_RATIO})"
    )
    print(
        f"    before the streams {ms(before)} / {ms(before_control)} ({ratio(before, before_control)}); "
        f"during the writes {ms(during)} / {ms(during_control)} ({ratio(during, during_control)}); "
        f"after the streams {ms(after)} / {ms(after_control)} ({ratio(after, after_control)}); "
        f"the streams' server with / without its streams {ratio(with_streams, same_server)}"
    )
    print(
        f"  hung up: the worker let go of the streams after "
        f"{'-' if released is None else f'{released:.1f} s'}; "
        f"presence entries left for them: {figures['presence_left']}"
    )
    print(
        f"  events by kind: {dict(figures['kinds'])}; streams still open at the end: {figures['still_open']}"
    )
    if figures["reader_errors"]:
        print(f"  stream read errors ({len(figures['reader_errors'])}): {figures['reader_errors'][:5]}")
    for name, lines in (("the streams' gunicorn", problems), ("the control gunicorn", control_problems)):
        if lines:
            print(f"  stderr of {name}: {len(lines)} line(s) besides the routine ones; the most frequent:")
            for line, count in Counter(lines).most_common(12):
                print(f"    {count:>5} x {line}")
        else:
            print(f"  stderr of {name}: nothing besides the routine lines")
    return {
        "bench": "live",
        "rows": args.rows,
        "clients": args.clients,
        "writes_per_s": WRITES_PER_S,
        "p50_ms": None if p50 is None else round(p50, 1),
        "p95_ms": None if p95 is None else round(p95, 1),
        "delivered": round(delivered, 4),
        "mem_per_connection_kb": round(per_connection, 1),
        "api_ms_without": round(without, 2),
        "api_ms_with": round(with_streams, 2),
        "ratio": ratio(with_streams, without),
        "target_p95_ms": TARGET_P95_MS,
        "target_ratio": TARGET_RATIO,
        "max_ms": None if worst is None else round(worst, 1),
        "ratio_before_streams": ratio(before, before_control),
        "ratio_during_writes": ratio(during, during_control),
        "ratio_after_streams": ratio(after, after_control),
        "ratio_same_server": ratio(with_streams, same_server),
        "api_ms_during_writes": None if during is None else round(during, 2),
        "writes_per_s_achieved": round(writes_per_s, 1),
        "open_s": round(figures["open_s"], 2),
        "presence_events": figures["presence_events"],
        "presence_kb": round(figures["presence_kb"]),
        "release_s": None if released is None else round(released, 1),
        "presence_left": figures["presence_left"],
        "users": figures["users"],
        "server_problems": len(problems) + len(control_problems),
        "total_s": round(total_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument(
        "--seconds",
        type=float,
        default=15.0,
        help="how long the writes go on (at most views.live.STREAM_LIFETIME_S - 60: no stream is reopened)",
    )
    parser.add_argument(
        "--users",
        type=int,
        default=1,
        help="the streams belong to this many users in turn (all read everything)",
    )
    parser.add_argument(
        "--api-requests", type=int, default=200, help="timed requests to each server per measurement"
    )
    args = parser.parse_args()
    if args.rows < max(PAGE, round(args.seconds * WRITES_PER_S)):
        raise SystemExit(
            f"--rows must be at least {PAGE} and {WRITES_PER_S} x --seconds (one write a record)"
        )
    if min(args.clients, args.users, args.api_requests) < 1 or args.seconds <= 0:
        raise SystemExit("--clients, --users, --seconds and --api-requests must be positive")
    from views.live import STREAM_LIFETIME_S

    if args.seconds > STREAM_LIFETIME_S - 60:
        # The server ends each stream after its lifetime and a browser reconnects; this client does not.
        raise SystemExit(
            f"--seconds must be at most {STREAM_LIFETIME_S - 60:g} "
            f"(the server ends a stream after {STREAM_LIFETIME_S:g} s)"
        )
    # The announcement stream is one key per Redis database: one of its own, unless told otherwise.
    if not os.environ.get("BENCH_REDIS_URL", "").strip():
        os.environ["BENCH_REDIS_URL"] = DEFAULT_REDIS_URL
    started = time.perf_counter()
    folder = tempfile.mkdtemp(prefix="tabula-bench-live-")
    logs = (os.path.join(folder, "gunicorn-streams.log"), os.path.join(folder, "gunicorn-control.log"))
    log(f"gunicorn's stderr: {logs[0]} (the control's: {logs[1]})")
    with scratch_app() as app:
        figures = run(app, args, logs)
    print(json.dumps(report(args, figures, time.perf_counter() - started)))


if __name__ == "__main__":
    main()
