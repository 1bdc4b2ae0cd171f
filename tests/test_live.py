"""Live screens: committed changes are announced once, after the commit (never for a rolled-back write), and
each open screen's stream tells its user only what they may read: no other manager's rows, no change of a
hidden field, not even an id. Read raw, from a real server, as a browser's EventSource reads it."""

from __future__ import annotations

import http.client
import json
import queue
import re
import signal
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.extensions import db
from app.redis_client import redis_connection
from custom_fields import access, live, records, service
from custom_fields.runtime import current, refresh
from tests.conftest import DEMO_PASSWORD, free_port, start_gunicorn
from tests.test_access_scopes import actor, role_id, user_id
from views.live import Rights, Screen, messages_for, rows_message

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def newest() -> str:
    found = redis_connection().xrevrange(live.STREAM_KEY, count=1)
    return found[0][0].decode() if found else "0-0"


def notes_after(since: str) -> list[dict[str, Any]]:
    entries = redis_connection().xrange(live.STREAM_KEY, min=f"({since}", max="+")
    return [json.loads(fields[b"n"]) for _id, fields in entries]


def row_notes(notes: list[dict[str, Any]], entity_id: int) -> list[dict[str, Any]]:
    return [n for n in notes if n["k"] == "rows" and n["e"] == entity_id]


def companies_id() -> int:
    return current().entity("companies").id


def test_a_committed_write_is_announced_once_and_a_rolled_back_one_never(app_ctx) -> None:  # noqa: ANN001
    staff1 = actor("staff1")
    since = newest()
    created = records.create("companies", {"name": f"Живая {uuid.uuid4().hex[:6]}"}, staff1)
    (note,) = row_notes(notes_after(since), companies_id())
    assert note["u"] == user_id("staff1")
    assert note["r"] == {str(created.id): {"a": "new", "f": note["r"][str(created.id)]["f"]}}

    since = newest()
    records.update("companies", created.id, {"region": "Казань"}, staff1, expected_version=None)
    (note,) = row_notes(notes_after(since), companies_id())
    region = next(f.id for f in current().entity("companies").live_fields if f.name == "region")
    assert note["r"][str(created.id)]["a"] == "change" and region in note["r"][str(created.id)]["f"]

    since = newest()
    with pytest.raises(RuntimeError), records.atomic():
        records.update("companies", created.id, {"region": "Тверь"}, staff1, expected_version=None)
        records.create("companies", {"name": "Откат"}, staff1)
        raise RuntimeError("rolled back")
    refused_before = newest()
    with pytest.raises(records.RecordInvalid):
        records.create("companies", {"name": ""}, staff1)
    assert notes_after(since) == [] and refused_before == since
    # The next commit does not carry the rolled-back notes along.
    records.delete("companies", created.id, staff1)
    (note,) = row_notes(notes_after(since), companies_id())
    assert note["r"] == {str(created.id): {"a": "gone", "f": []}}


def test_one_flush_announces_each_record_by_what_it_ended_as() -> None:
    """A record created and changed in one flush is new (a screen reads it whole); created and deleted,
    gone; changed, with the fields it changed; a purged one, nothing."""
    session = type("Session", (), {"info": {}})()
    line = {"entity_id": 9, "user_id": 1}
    live.announce_history(
        session,
        [
            {**line, "record_id": 1, "action": "create", "changes": [[5, None, "а"], [6, None, "б"]]},
            {**line, "record_id": 1, "action": "update", "changes": [[7, "x", "y"]]},
            {**line, "record_id": 2, "action": "create", "changes": [[5, None, "в"]]},
            {**line, "record_id": 2, "action": "delete", "changes": None},
            {**line, "record_id": 3, "action": "update", "changes": [[7, "x", "y"], [5, "a", "b"]]},
            {**line, "record_id": 3, "action": "update", "changes": [[7, "y", "z"]]},
            {**line, "record_id": 4, "action": "purge", "changes": None},
        ],
    )
    (note,) = session.info["tabula_live_pending"]
    records_noted = note["r"]
    assert set(records_noted) == {"1", "2", "3"}
    assert records_noted["1"]["a"] == "new" and records_noted["2"]["a"] == "gone"
    assert records_noted["3"]["a"] == "change" and sorted(set(records_noted["3"]["f"])) == [5, 7]


def test_a_schema_change_is_announced_with_its_table(app_ctx) -> None:  # noqa: ANN001
    since = newest()
    entity = current().entity("companies")
    service.add_field(entity.id, f"Регион {uuid.uuid4().hex[:6]}", "text", user_id=user_id("admin"))
    refresh()
    assert {"k": "schema", "e": entity.id} in notes_after(since)


@pytest.fixture
def secret_field(app_ctx) -> Iterator[str]:  # noqa: ANN001
    """A companies field Staff may not see."""
    entity = current().entity("companies")
    field = service.add_field(entity.id, f"Секрет {uuid.uuid4().hex[:6]}", "text", user_id=user_id("admin"))
    access.set_field_mode(role_id("Staff"), field.id, "hidden", user_id=user_id("admin"))
    db.session.expire_all()
    refresh()
    yield field.name
    access.set_field_mode(role_id("Staff"), field.id, None, user_id=user_id("admin"))
    refresh()


def messages(note_since: str, *usernames: str) -> dict[str, list[dict[str, Any]]]:
    """What each user's open companies grid was told of the announcements after ``note_since``."""
    screens = {
        name: Screen(user_id=user_id(name), name=name, entity_id=companies_id(), slug="companies")
        for name in usernames
    }
    told: dict[str, list[dict[str, Any]]] = {name: [] for name in usernames}
    rights = Rights()
    owner = {screen.key: name for name, screen in screens.items()}
    for note in notes_after(note_since):
        for screen, text in messages_for(note, "1-0", list(screens.values()), rights):
            if "event: rows" in text:
                told[owner[screen.key]].append(json.loads(text.split("data: ", 1)[1]))
    return told


def test_each_user_learns_only_of_records_and_fields_they_may_read(app_ctx, secret_field: str) -> None:  # noqa: ANN001
    since = newest()
    mine = records.create("companies", {"name": f"Своя {uuid.uuid4().hex[:6]}"}, actor("staff1")).id
    told = messages(since, "staff1", "staff2", "admin")
    assert [m["changed"] for m in told["staff1"]] == [[mine]] and told["staff1"][0]["mine"] is True
    assert told["staff2"] == []  # another staff member's record: not even its id
    assert [m["changed"] for m in told["admin"]] == [[mine]] and told["admin"][0]["mine"] is False
    assert "staff1" in told["admin"][0]["by"]

    since = newest()
    records.update("companies", mine, {secret_field: "тайна"}, actor("admin"), expected_version=None)
    told = messages(since, "staff1", "admin")
    assert told["staff1"] == []  # only a field hidden from Staff changed
    assert [m["changed"] for m in told["admin"]] == [[mine]]

    since = newest()
    records.delete("companies", mine, actor("staff1"))
    told = messages(since, "staff1", "staff2")
    assert told["staff1"] == [{"changed": [], "gone": [mine], "by": told["staff1"][0]["by"], "mine": True}]
    assert told["staff2"] == []


def test_a_message_names_nothing_when_the_table_is_not_readable(app_ctx) -> None:  # noqa: ANN001
    since = newest()
    created = records.create("companies", {"name": f"Чужая {uuid.uuid4().hex[:6]}"}, actor("admin")).id
    (note,) = row_notes(notes_after(since), companies_id())
    nobody = access.Actor(None, frozenset(), "ui")
    assert rows_message(note, nobody) is None
    assert rows_message(note, actor("admin"))["changed"] == [created]


# --- the stream, read raw from a real server ---------------------------------------------------------------


class Stream:
    """An EventSource's view of ``/live/stream``: events parsed from the raw text, in a background thread."""

    def __init__(
        self, base: str, username: str, table: str = "companies", last_id: str | None = None
    ) -> None:
        session = sign_in(base, username)
        headers = {
            "Accept": "text/event-stream",
            "Cookie": "; ".join(f"{k}={v}" for k, v in session.cookies.items()),
        }
        if last_id:
            headers["Last-Event-ID"] = last_id
        host = urllib.parse.urlsplit(base)
        self.connection = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        self.connection.request("GET", f"/live/stream?table={table}", headers=headers)
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.raw: list[str] = []
        self.events: queue.Queue = queue.Queue()
        if self.status == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        event: dict[str, str] = {}
        try:
            for raw_line in self.response:
                line = raw_line.decode().rstrip("\n")
                self.raw.append(line)
                if not line:
                    if "event" in event:
                        self.events.put(event)
                    event = {}
                elif not line.startswith(":"):
                    key, _sep, value = line.partition(": ")
                    event[key] = value
        except (OSError, ValueError, http.client.HTTPException):
            pass

    def next(self, kind: str, timeout: float = 3.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if event["event"] == kind:
                return {"id": event.get("id"), **json.loads(event["data"])}
        return None

    def close(self) -> None:
        """Hang up as a closed browser tab does."""
        if self.connection.sock is not None:
            self.connection.sock.shutdown(socket.SHUT_RDWR)
        self.connection.close()


def sign_in(base: str, username: str, password: str = DEMO_PASSWORD) -> requests.Session:
    session = requests.Session()
    token = CSRF.search(session.get(f"{base}/login/", timeout=10).text).group(1)
    answer = session.post(
        f"{base}/login/", data={"username": username, "password": password, "csrf_token": token}, timeout=10
    )
    assert answer.ok and "logout" in answer.text.lower(), answer.text[:300]
    return session


def test_the_stream_carries_only_what_its_user_may_read(app_ctx, live_url: str) -> None:  # noqa: ANN001
    staff1, staff2 = Stream(live_url, "staff1"), Stream(live_url, "staff2")
    try:
        assert staff1.status == staff2.status == 200
        assert staff1.response.getheader("Content-Type").startswith("text/event-stream")
        assert staff1.next("presence") is not None
        here = staff2.next("presence", timeout=5)  # staff1 arrived after staff2 opened: announced
        while here is not None and not here["people"]:
            here = staff2.next("presence", timeout=5)
        assert here is not None and any("staff1" in p["name"] for p in here["people"])

        started = time.monotonic()
        theirs = records.create("companies", {"name": f"Поток {uuid.uuid4().hex[:6]}"}, actor("staff1")).id
        told = staff1.next("rows")
        assert told is not None and told["changed"] == [theirs] and told["mine"] is True
        assert time.monotonic() - started < 1.0

        own = records.create("companies", {"name": f"Своя {uuid.uuid4().hex[:6]}"}, actor("staff2")).id
        told = staff2.next("rows")
        assert told is not None and told["changed"] == [own]  # the first rows event staff2 ever got
        raw = "\n".join(staff2.raw)
        assert str(theirs) not in re.sub(r"^id: .*$", "", raw, flags=re.M)
    finally:
        staff1.close()
        staff2.close()


def test_a_reconnecting_screen_catches_up_on_what_it_missed(app_ctx, live_url: str) -> None:  # noqa: ANN001
    first = Stream(live_url, "staff1")
    assert first.next("presence") is not None
    seen = records.create("companies", {"name": f"До {uuid.uuid4().hex[:6]}"}, actor("staff1")).id
    told = first.next("rows")
    assert told is not None and told["changed"] == [seen]
    first.close()
    # While no screen is open, two more changes; the screen comes back with the last id it saw.
    missed = [records.create("companies", {"name": f"Пропуск {n}"}, actor("staff1")).id for n in range(2)]
    again = Stream(live_url, "staff1", last_id=told["id"])
    try:
        caught = [again.next("rows"), again.next("rows")]
        assert [c["changed"] for c in caught if c] == [[missed[0]], [missed[1]]]
    finally:
        again.close()
    # Too far behind (or an id the stream no longer holds): told to reload instead.
    stale = Stream(live_url, "staff1", last_id="1-0")
    try:
        assert stale.next("reload") is not None
    finally:
        stale.close()


def test_the_stream_refuses_tables_the_user_may_not_read(app_ctx, live_url: str) -> None:  # noqa: ANN001
    anonymous = requests.get(f"{live_url}/live/stream", params={"table": "companies"}, timeout=10)
    assert anonymous.status_code in (401, 302) or "login" in anonymous.url
    session = sign_in(live_url, "staff1")
    assert session.get(f"{live_url}/live/stream", params={"table": "no_such"}, timeout=10).status_code == 404
    bad = session.get(f"{live_url}/live/stream", params={"table": "companies", "record": "x1"}, timeout=10)
    assert bad.status_code == 400


def test_an_access_rule_change_reaches_open_screens_at_once(app_ctx) -> None:  # noqa: ANN001
    entity = current().entity("companies")
    since = newest()
    mine = records.create("companies", {"name": f"Правило {uuid.uuid4().hex[:6]}"}, actor("staff1")).id
    assert [m["changed"] for m in messages(since, "staff1")["staff1"]] == [[mine]]
    staff = role_id("Staff")
    access.save_rules(staff, tables={entity.id: {"read": False}}, user_id=user_id("admin"))
    try:
        refresh()
        since = newest()
        records.update("companies", mine, {"region": "Омск"}, actor("admin"), expected_version=None)
        assert messages(since, "staff1")["staff1"] == []  # may no longer read the table: told nothing
    finally:
        access.save_rules(staff, tables={entity.id: {"read": None}}, user_id=user_id("admin"))
        refresh()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    table=st.sampled_from(["companies", "", "no_such", "компании"]) | st.text(max_size=20),
    record=st.none() | st.text(max_size=12) | st.integers(-5, 10**12).map(str),
    since=st.none()
    | st.text(max_size=50)
    | st.sampled_from(["1-0", "0-0", "99999999999999999999-1", "١٢-٣"]),
)
def test_malformed_stream_requests_never_give_a_server_error(
    staff_client,
    table: str,
    record: str | None,
    since: str | None,  # noqa: ANN001
) -> None:
    query = {"table": table, **({"record": record} if record is not None else {})}
    headers = {"Last-Event-ID": since} if since is not None and since.isascii() and "\n" not in since else {}
    response = staff_client.get("/live/stream", query_string=query, headers=headers, buffered=False)
    try:
        assert response.status_code in (200, 400, 403, 404), response.status_code
    finally:
        response.close()


def test_a_record_handed_to_someone_else_leaves_its_former_owners_screen(app_ctx) -> None:  # noqa: ANN001
    mine = records.create("companies", {"name": f"Передача {uuid.uuid4().hex[:6]}"}, actor("staff1")).id
    since = newest()
    records.update("companies", mine, {"owner_id": user_id("staff2")}, actor("admin"), expected_version=None)
    told = messages(since, "staff1", "staff2", "admin")
    assert [(m["changed"], m["gone"]) for m in told["staff1"]] == [([], [mine])]  # out of reach now: gone
    assert [(m["changed"], m["gone"]) for m in told["staff2"]] == [([mine], [])]  # within reach now: read it
    assert [(m["changed"], m["gone"]) for m in told["admin"]] == [([mine], [])]
    # A change that does not hand it on tells staff1 nothing any more.
    since = newest()
    records.update("companies", mine, {"region": "Тула"}, actor("admin"), expected_version=None)
    assert messages(since, "staff1")["staff1"] == []


@pytest.fixture
def other_admin(app_ctx) -> str:  # noqa: ANN001
    from flask_appbuilder.security.sqla.models import Role
    from sqlalchemy import select

    username = f"admin_{uuid.uuid4().hex[:6]}"
    role = db.session.scalar(select(Role).where(Role.name == "Admin"))
    assert app_ctx.appbuilder.sm.add_user(
        username, "Второй", "Админ", f"{username}@example.com", role, "x-Пароль-1"
    )
    return username


def test_users_sharing_one_answer_each_learn_whether_they_made_the_change(app_ctx, other_admin: str) -> None:  # noqa: ANN001
    since = newest()
    records.create("companies", {"name": f"Общая {uuid.uuid4().hex[:6]}"}, actor("admin"))
    for order in (("admin", other_admin), (other_admin, "admin")):
        told = messages(since, *order)
        assert [m["mine"] for m in told["admin"]] == [True]
        assert [m["mine"] for m in told[other_admin]] == [False]


def test_a_stopping_web_process_ends_its_streams_at_once(app_ctx, env: dict[str, str]) -> None:  # noqa: ANN001
    """A deploy's SIGTERM: the worker ends its open streams (gunicorn.conf.py) instead of waiting out its
    30 s grace period; the browser reconnects elsewhere and catches up."""
    port = free_port()
    # Its default grace period (30 s), not the tests' short one.
    process = start_gunicorn(env, port, "-w", "1", "--graceful-timeout", "30")
    base = f"http://127.0.0.1:{port}"
    try:
        streams = [Stream(base, "staff1"), Stream(base, "staff2")]
        assert all(s.next("presence") is not None for s in streams)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        assert time.monotonic() - started < 10, "the worker waited out its grace period"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_role_without_the_live_permission_gets_pages_that_stay_as_drawn(app, app_ctx) -> None:  # noqa: ANN001
    """A role an admin made without "can read on Live": its grid has no stream to open (no console errors
    from refused reconnects), and the stream refuses it."""
    from flask_appbuilder.security.sqla.models import Role
    from sqlalchemy import select

    from tests.conftest import login
    from tests.test_grid import page_config

    sm = app_ctx.appbuilder.sm
    staff = db.session.scalar(select(Role).where(Role.name == "Staff"))
    role = sm.add_role(f"Без живого {uuid.uuid4().hex[:6]}")
    for permission in staff.permissions:
        if permission.view_menu.name != "Live":
            sm.add_permission_role(role, permission)
    access.save_rules(role.id, tables={None: {"read": True}}, user_id=user_id("admin"))
    refresh()
    username = f"nolive_{uuid.uuid4().hex[:6]}"
    assert sm.add_user(username, "Без", "Потока", f"{username}@example.com", role, "x-Пароль-1")
    client = app.test_client()
    login(client, username, "x-Пароль-1")
    config, _token = page_config(client, "companies")
    assert config["liveUrl"] is None
    assert client.get("/live/stream?table=companies").status_code in (401, 403)
    staff_client = app.test_client()
    login(staff_client, "staff1", DEMO_PASSWORD)
    assert page_config(staff_client, "companies")[0]["liveUrl"].startswith("/live/stream?table=companies")
