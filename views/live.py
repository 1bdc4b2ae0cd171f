"""Live screens: ``GET /live/stream?table=<slug>[&record=<id>]``, a Server-Sent Events stream of what changed.

The write path and the schema service announce committed changes on a Redis stream (``custom_fields.live``).
Each web process runs one ``Hub`` thread that reads that stream and, for each open screen, tells its user
only what they may learn: a table they may read, records within their reach (asked of the query layer with
their current rights, re-read every few seconds so a role change reaches open screens), changes of fields
they can see. A message carries record ids, never values: the browser then reads those rows through the
data endpoint with its own rights. The stream's entry ids are the events' ids, so a reconnecting
``EventSource`` (``Last-Event-ID``) catches up on what it missed, or is told to reload when too much did.

Presence: each open screen is an entry in a Redis hash per table, refreshed by its process and expiring
when that process is gone; a change of who is there is announced like any other.

A stream holds one thread of its web process while open: in production run gunicorn with threads
(``-k gthread``), as README's Production section says.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import re
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, current_app, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access_api
from flask_babel import gettext as _
from redis import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from app.extensions import db
from custom_fields import live, runtime
from custom_fields.access import Actor
from custom_fields.query import QueryError, TableQuery
from views import add_view

#: How long the hub waits on the stream before looking at its screens again (presence, closing).
BLOCK_MS = 5_000
#: A comment line this often keeps proxies from closing an idle stream and finds closed connections (a
#: WSGI server learns that the browser left only when a write fails: the second heartbeat after it).
HEARTBEAT_S = 10.0
#: A user's rights are read afresh at least this often (a role change reaches open screens).
RIGHTS_TTL_S = 5.0
#: Presence entries live this long unless their process refreshes them.
PRESENCE_TTL_S = 30.0
#: A reconnecting screen that missed more than this reloads its rows instead of catching up.
CATCH_UP = 500
RETRY_MS = 2_000
#: A stream ends after this long and the browser reconnects (catching up by its last id): a signed-out or
#: revoked session loses its stream within this time, since a reconnect is a request like any other.
STREAM_LIFETIME_S = 300.0
_CLOSE = object()
logger = logging.getLogger(__name__)


def presence_key(entity_id: int) -> str:
    return f"tabula:presence:{entity_id}"


@dataclass(eq=False)
class Screen:
    """One open stream: a user's grid of a table, or one record's page."""

    user_id: int
    name: str
    entity_id: int
    slug: str
    record_id: int | None = None
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    inbox: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    #: The presence this screen was last told (a repeat is not sent).
    told_people: str = ""

    def presence(self) -> str:
        expires = time.time() + PRESENCE_TTL_S
        return json.dumps({"u": self.user_id, "n": self.name, "r": self.record_id, "t": expires})


def event_text(entry_id: str, kind: str, body: dict[str, Any]) -> str:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return f"id: {entry_id}\nevent: {kind}\ndata: {data}\n\n"


class Rights:
    """Each user's actor, read afresh every ``RIGHTS_TTL_S`` seconds and whenever access rules change."""

    def __init__(self) -> None:
        self._actors: dict[int, tuple[float, Actor]] = {}

    def actor(self, user_id: int) -> Actor:
        now = time.monotonic()
        found = self._actors.get(user_id)
        if found is None or found[0] < now:
            # Spread out, so that many users' rights do not all expire in the same delivery.
            expires = now + RIGHTS_TTL_S * random.uniform(1.0, 1.5)  # noqa: S311 (not a secret)
            found = (expires, Actor.for_user_id(user_id, "ui"))
            self._actors[user_id] = found
        return found[1]

    def forget(self) -> None:
        self._actors.clear()


def reader(entity_id: int, actor: Actor) -> TableQuery | None:
    """``actor``'s query on the table, or None when it is gone or they may not read it."""
    entity = runtime.current().by_id.get(entity_id)
    if entity is None:
        return None
    try:
        return TableQuery(entity.slug, actor)
    except QueryError:
        return None


def rows_message(note: dict[str, Any], actor: Actor) -> dict[str, Any] | None:
    """What ``actor`` may learn of a records announcement: ``{"changed", "gone", "by"}`` with the ids of
    records within their reach (changed: read them again; gone: in the recycle bin now), or None."""
    query = reader(note["e"], actor)
    if query is None:
        return None
    shown = {column.name for column in query.all_columns}
    shown_ids = {f.id for f in query.entity.live_fields if f.name in shown}
    changed: list[int] = []
    gone: list[int] = []
    handed_on: set[int] = set()  # taken from this user (or their team): it left their reach
    for record_id, record in note["r"].items():
        if record["a"] == "gone":
            gone.append(int(record_id))
        elif record["a"] == "new" or not record["f"] or shown_ids.intersection(record["f"]):
            changed.append(int(record_id))
        if record.get("h") and query.rights.reached_through(record["h"]):
            handed_on.add(int(record_id))
    changed_seen = sorted(query.readable_ids(changed)) if changed else []
    gone_seen = sorted(query.readable_ids(gone, in_bin=True)) if gone else []
    gone_seen += sorted(handed_on.difference(changed_seen, gone_seen))
    if not changed_seen and not gone_seen:
        return None
    author = note.get("u")
    return {
        "changed": changed_seen,
        "gone": gone_seen,
        "by": runtime.user_label(author) if author is not None else "",
    }


def _audience(actor: Actor, entity_id: int) -> Any:
    """Users who learn the same of a table's changes (everyone who reads all of it with the same fields shares
    one answer; others answer for themselves)."""
    query = reader(entity_id, actor)
    if query is None:
        return None
    columns = tuple(sorted(column.name for column in query.all_columns))
    owned = actor.user_id if query.rights.scope("read") != "all" else None
    return owned, columns


class Hub:
    """The process's reader of the announcement stream, and its open screens."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.screens: dict[str, Screen] = {}
        self.lock = threading.Lock()
        self.rights = Rights()
        # Its own pool, waiting for a free connection rather than failing when many streams end at once.
        self.redis = Redis(
            connection_pool=BlockingConnectionPool.from_url(
                app.config["REDIS_URL"], max_connections=REDIS_CONNECTIONS, timeout=10,
                socket_connect_timeout=3, socket_timeout=BLOCK_MS / 1000 + 10,
            )
        )  # fmt: skip
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        HUBS.add(self)

    # --- screens ------------------------------------------------------------------------------------------

    def open(self, screen: Screen) -> None:
        """Follow the stream for ``screen`` from now on (raises ``RedisError`` when Redis is away)."""
        with self.lock:
            if self._thread is None or not self._thread.is_alive():
                # Where the reader starts is read here, before the screen catches up: nothing falls between.
                start = latest_id(self.redis)
                self._stopping.clear()
                self._thread = threading.Thread(
                    target=self._run, args=(start,), name="tabula-live", daemon=True
                )
                self._thread.start()
            self.screens[screen.key] = screen
        self._announce_presence(screen, arrived=True)

    def close(self, screen: Screen) -> None:
        with self.lock:
            self.screens.pop(screen.key, None)
        self._announce_presence(screen, arrived=False)

    def stop(self) -> None:
        """End every open stream now (the process is stopping: browsers reconnect to another one)."""
        self._stopping.set()
        with self.lock:
            for screen in self.screens.values():
                screen.inbox.put(_CLOSE)

    def _announce_presence(self, screen: Screen, *, arrived: bool) -> None:
        # A closing stream's generator runs after its request: outside any app context.
        with self.app.app_context():
            self._write_presence(screen, arrived=arrived)

    def _write_presence(self, screen: Screen, *, arrived: bool) -> None:
        try:
            if arrived:
                self.redis.hset(presence_key(screen.entity_id), screen.key, screen.presence())
            else:
                self.redis.hdel(presence_key(screen.entity_id), screen.key)
            live.publish([{"k": "presence", "e": screen.entity_id}], self.redis)
        except RedisError as exc:
            logger.warning("presence not announced (%s)", exc)

    def _refresh_presence(self) -> None:
        with self.lock:
            screens = list(self.screens.values())
        if not screens:
            return
        pipe = self.redis.pipeline(transaction=False)
        for screen in screens:
            pipe.hset(presence_key(screen.entity_id), screen.key, screen.presence())
        pipe.execute()

    # --- the reader -----------------------------------------------------------------------------------------

    def _run(self, last: str) -> None:
        with self.app.app_context():
            refreshed = 0.0
            while not self._stopping.is_set():
                try:
                    found = self.redis.xread({live.STREAM_KEY: last}, block=BLOCK_MS, count=500)
                    if time.monotonic() - refreshed > PRESENCE_TTL_S / 3:
                        self._refresh_presence()
                        refreshed = time.monotonic()
                except RedisError:
                    logger.warning("live stream unreachable; retrying")
                    time.sleep(1)
                    continue
                presence: dict[int, str] = {}  # a burst of arrivals and departures: told once per table
                for _key, entries in found or ():
                    for entry_id, fields in entries:
                        last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                        note = decode(fields)
                        if note is not None and note.get("k") == "presence":
                            presence[note.get("e")] = last
                        else:
                            self.deliver(last, note)
                for entity_id, entry_id in presence.items():
                    self.deliver(entry_id, {"k": "presence", "e": entity_id})
                with self.lock:
                    idle = not self.screens
                if idle:  # the last screen closed: the next one starts a reader again
                    with self.lock:
                        if not self.screens:
                            self._thread = None
                            return

    def deliver(self, entry_id: str, note: dict[str, Any] | None) -> None:
        """Put into each open screen's inbox what its user may learn of ``note``."""
        if note is None:
            return
        with self.lock:
            screens = list(self.screens.values())
        try:
            for screen, text in messages_for(note, entry_id, screens, self.rights, self.redis):
                screen.inbox.put(text)
        except Exception:
            logger.exception("a live announcement could not be delivered")
        finally:
            db.session.remove()


def decode(fields: dict[Any, Any]) -> dict[str, Any] | None:
    raw = fields.get(b"n", fields.get("n"))
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return None


def latest_id(client: Redis) -> str:
    """The id of the stream's newest entry ("0-0" when it is empty): read what comes after it."""
    newest = client.xrevrange(live.STREAM_KEY, count=1)
    if not newest:
        return "0-0"
    entry_id = newest[0][0]
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


def messages_for(
    note: dict[str, Any], entry_id: str, screens: list[Screen], rights: Rights, client: Redis | None = None
) -> Iterator[tuple[Screen, str]]:
    """The SSE text each screen gets of one announcement (screens that may learn nothing get nothing)."""
    kind = note.get("k")
    if kind == "schema":
        if note.get("e") is None:
            rights.forget()  # access rules or teams changed: everyone's rights are read again
        runtime.current()  # this process learns the new schema before anyone reads rows with it
        for screen in screens:
            if note.get("e") in (None, screen.entity_id):
                yield screen, event_text(entry_id, "schema", {"rules": note.get("e") is None})
        return
    if kind == "presence":
        if client is None:  # catching up: the opening event says who is here now
            return
        people = present(client, note["e"])
        for screen in screens:
            if screen.entity_id == note["e"]:
                told = json.dumps({"people": people_for(screen, people)}, ensure_ascii=False)
                if told != screen.told_people:
                    screen.told_people = told
                    yield screen, f"id: {entry_id}\nevent: presence\ndata: {told}\n\n"
        return
    if kind != "rows":
        return
    shared: dict[Any, dict[str, Any] | None] = {}
    for screen in screens:
        if screen.entity_id != note["e"]:
            continue
        actor = rights.actor(screen.user_id)
        if actor.user_id is None:  # deactivated since: the stream ends
            screen.inbox.put(_CLOSE)
            continue
        audience = _audience(actor, screen.entity_id)
        if audience is None:
            continue
        if audience not in shared:
            shared[audience] = rows_message(note, actor)
        message = shared[audience]
        if message is None:
            continue
        if screen.record_id is not None and screen.record_id not in (*message["changed"], *message["gone"]):
            continue
        mine = note.get("u") == screen.user_id  # per screen: users sharing one answer are not all its author
        yield screen, event_text(entry_id, "rows", {**message, "mine": mine})


def present(client: Redis, entity_id: int) -> list[dict[str, Any]]:
    """Who has the table open now (stale entries of processes that died are dropped)."""
    now = time.time()
    people: list[dict[str, Any]] = []
    stale: list[Any] = []
    for key, raw in client.hgetall(presence_key(entity_id)).items():
        try:
            entry = json.loads(raw)
        except ValueError:
            entry = None
        if entry is None or entry.get("t", 0) < now:
            stale.append(key)
        else:
            people.append({"key": key.decode() if isinstance(key, bytes) else key, **entry})
    if stale:
        client.hdel(presence_key(entity_id), *stale)
    return people


def people_for(screen: Screen, people: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The others on this table (on a record's page: on this record), one entry per person."""
    seen: dict[int, dict[str, Any]] = {}
    for person in people:
        if person["u"] == screen.user_id:
            continue
        if screen.record_id is not None and person.get("r") != screen.record_id:
            continue
        seen.setdefault(person["u"], {"name": person["n"]})
    return sorted(seen.values(), key=lambda p: p["name"].casefold())


#: Every hub of this process (one per app), for ``stop_all``.
HUBS: weakref.WeakSet[Hub] = weakref.WeakSet()
#: Connections of a hub's own Redis pool (the reader, presence, catching up): a screen waits for one.
REDIS_CONNECTIONS = 20


def stop_all() -> None:
    """End every open stream of this process (gunicorn.conf.py calls it when a worker is told to stop)."""
    for hub in list(HUBS):
        hub.stop()


def hub_of(app: Flask) -> Hub:
    hub = app.extensions.get("tabula_live_hub")
    if hub is None:
        hub = app.extensions["tabula_live_hub"] = Hub(app)
    return hub


def catch_up(client: Redis, since: str, screen: Screen, rights: Rights) -> tuple[list[str], str]:
    """What ``screen`` missed after the entry ``since`` (its ``Last-Event-ID``), and the id read up to; a
    ``reload`` event instead when more than ``CATCH_UP`` entries passed or the stream no longer reaches
    back."""
    try:
        entries = client.xrange(live.STREAM_KEY, min=f"({since}", max="+", count=CATCH_UP + 1)
        oldest = client.xrange(live.STREAM_KEY, count=1)
    except RedisError:
        return [event_text(since, "reload", {})], since
    newest = since
    first = oldest[0][0].decode() if oldest else None
    if len(entries) > CATCH_UP or (first is not None and _older(since, first)):
        newest = entries[-1][0].decode() if entries else latest_id(client)
        return [event_text(newest, "reload", {})], newest
    texts: list[str] = []
    for entry_id, fields in entries:
        newest = entry_id.decode()
        for _screen, text in messages_for(decode(fields) or {}, newest, [screen], rights):
            texts.append(text)
    return texts, newest


def _older(entry_id: str, than: str) -> bool:
    return _parts(entry_id) < _parts(than)


def _parts(entry_id: str) -> tuple[int, int]:
    ms, _sep, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


ENTRY_ID_LENGTH = 41
ENTRY_ID_RE = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
RECORD_RE = re.compile(r"[0-9]{1,9}")


def valid_entry_id(raw: str | None) -> str | None:
    """A stream entry id as Redis writes them (``1733212345678-0``), else None."""
    return raw if raw and len(raw) <= ENTRY_ID_LENGTH and ENTRY_ID_RE.fullmatch(raw) else None


def live_texts(**more: str) -> dict[str, str]:
    """The words of a page that follows changes live (live.js), with a page's own ``more``."""
    return {"reconnecting": _("Reconnecting…"), "alsoHere": _("Also here: %(names)s"), **more}


def current_hub() -> Hub:
    return hub_of(current_app._get_current_object())  # noqa: SLF001 (Flask's documented way to the app)


def stream_url(slug: str, record_id: int | None = None) -> str | None:
    """The stream a page follows, from the announcements after the page was drawn (``since``: what comes
    between drawing the page, loading its rows and opening the stream is not missed); None for a user whose
    roles lack the live permission (their pages stay as drawn)."""
    if not current_app.appbuilder.sm.has_access("can_read", LiveView.class_permission_name):
        return None
    args: dict[str, Any] = {"table": slug}
    if record_id is not None:
        args["record"] = record_id
    try:
        args["since"] = latest_id(current_hub().redis)
    except RedisError:
        pass  # the stream itself will say that live updates are unavailable
    return url_for("LiveView.stream", **args)


class LiveView(BaseView):
    """``/live/stream``: the changes an open grid or record page follows."""

    route_base = "/live"
    class_permission_name = "Live"
    method_permission_name = {"stream": "read"}

    @expose("/stream")
    @has_access_api
    def stream(self) -> Response:
        slug = request.args.get("table", "")
        record_text = request.args.get("record", "")
        if record_text and not RECORD_RE.fullmatch(record_text):
            return _refusal(400, _("record must be a record number."))
        actor = Actor.current("ui")
        try:
            query = TableQuery(slug, actor)
        except QueryError as refused:
            return _refusal(refused.status, str(refused))
        record_id = int(record_text) if record_text else None
        if record_id is not None and not query.exists(record_id):
            return _refusal(404, _("No such record."))
        screen = Screen(
            user_id=actor.user_id,
            name=runtime.user_label(actor.user_id),
            entity_id=query.entity.id,
            slug=query.entity.slug,
            record_id=record_id,
        )
        hub = current_hub()
        try:
            hub.open(screen)  # from here on, announcements queue up in its inbox
        except RedisError:
            return _refusal(503, _("Live updates are not available now; the page still works."))
        since = valid_entry_id(request.headers.get("Last-Event-ID") or request.args.get("since"))
        try:
            first, read_to = catch_up(hub.redis, since, screen, hub.rights) if since else ([], "")
            people = people_for(screen, present(hub.redis, screen.entity_id))
        except Exception:
            hub.close(screen)
            raise
        db.session.remove()
        here = screen.told_people = json.dumps({"people": people}, ensure_ascii=False)
        opening = [f"retry: {RETRY_MS}\n\n", *first, f"event: presence\ndata: {here}\n\n"]
        response = Response(_follow(hub, screen, opening, read_to), mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
        return response


def _follow(hub: Hub, screen: Screen, opening: list[str], read_to: str) -> Iterator[str]:
    ends = time.monotonic() + STREAM_LIFETIME_S
    try:
        yield from opening
        while time.monotonic() < ends:
            try:
                item = screen.inbox.get(timeout=HEARTBEAT_S)
            except queue.Empty:
                yield ": ping\n\n"
                continue
            if item is _CLOSE:
                return
            if read_to and not _older(read_to, _event_id(item)):
                continue  # caught up on it already
            yield item
    finally:
        hub.close(screen)


def _event_id(text: str) -> str:
    return text[4 : text.index("\n")] if text.startswith("id: ") else "0-0"


def _refusal(status: int, message: str) -> Response:
    return Response(json.dumps({"message": message}), status=status, mimetype="application/json")


def register(appbuilder: Any) -> None:
    add_view(appbuilder, LiveView, None, audience="staff")
    current_app.jinja_env.globals["live_stream_url"] = stream_url
    current_app.jinja_env.globals["live_texts"] = live_texts
