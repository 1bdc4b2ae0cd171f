"""Announcing committed changes to open screens (the live grid): what changed, published after the commit.

The write path announces the records of each history flush (``announce_history``) and the schema service
each schema version it bumps (``announce_schema``); both only note the change in the session. Once the
session's transaction commits, the notes go to one Redis stream (``STREAM_KEY``, trimmed to about
``STREAM_LENGTH`` entries); a transaction that rolls back announces nothing. An announcement names tables,
record ids and field ids, never values: each open screen's server side (``views.live``) decides per user,
through the query layer, what of it that user may learn, and the browser reads the rows with its own rights.
A stream (not pub/sub) because its entry ids let a reconnecting screen catch up on what it missed.
"""

from __future__ import annotations

import logging
import operator
from typing import Any

import msgspec
from flask import has_app_context
from redis.exceptions import RedisError
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from app.redis_client import redis_connection

STREAM_KEY = "tabula:live"
STREAM_LENGTH = 20_000
_PENDING = "tabula_live_pending"
#: History actions that bring a record into view and take it out of view; any other action changes it.
APPEARING = frozenset({"create", "restore"})
LEAVING = frozenset({"delete"})
#: Purged records were in the recycle bin, out of every screen: nothing to announce.
UNSEEN = frozenset({"purge"})
logger = logging.getLogger(__name__)
_encode_json = msgspec.json.Encoder().encode
_field_id = operator.itemgetter(0)  # of a history change, [field id, old, new]


def announce_history(session: Any, rows: list[dict[str, Any]], holders: frozenset[int] = frozenset()) -> None:
    """Note the records of these history rows (``entity_id``, ``record_id``, ``action``, ``changes`` as
    ``[field_id, old, new]``, ``user_id``) for announcement after the session commits. ``holders``: the ids
    of the fields that make a record someone's own; a record handed on keeps its former holders' user ids
    (``h``), so a screen whose user it was taken from learns that it left their reach."""
    if not rows:
        return
    by_table: dict[int, dict[str, Any]] = {}
    pending = session.info.setdefault(_PENDING, [])
    for row in rows:  # the write path's hot loop: plain lookups, fields made unique when published
        action = row["action"]
        if action in UNSEEN:
            continue
        note = by_table.get(row["entity_id"])
        if note is None:
            note = by_table[row["entity_id"]] = {
                "k": "rows",
                "e": int(row["entity_id"]),
                "u": row.get("user_id"),
                "r": {},
            }
            pending.append(note)
        key = str(row["record_id"])
        record = note["r"].get(key)
        if record is None:
            record = note["r"][key] = {"a": "change", "f": []}
        if action in APPEARING:
            record["a"] = "new"
        elif action in LEAVING:
            record["a"] = "gone"
        if record["a"] == "new":
            continue  # a screen reads a record that appeared whole: which fields were set says no more
        changes = row.get("changes")
        if changes:
            record["f"].extend(map(_field_id, changes))
            if holders:
                former = [c[1] for c in changes if c[0] in holders and isinstance(c[1], int)]
                if former:
                    record.setdefault("h", []).extend(former)


def announce_schema(session: Any, entity_id: int | None) -> None:
    """Note a schema change of a table (None: of access rules or teams, which concern every table)."""
    pending = session.info.setdefault(_PENDING, [])
    note = {"k": "schema", "e": entity_id}
    if note not in pending:
        pending.append(note)


def publish(notes: list[dict[str, Any]], client: Any = None) -> None:
    """Add announcements to the stream now (the after-commit listener, presence), through ``client`` or the
    app's Redis."""
    if not notes:
        return
    pipe = (client or redis_connection()).pipeline(transaction=False)
    for note in notes:
        for record in note.get("r", {}).values():
            record["f"] = sorted({f for f in record["f"] if f is not None})
        pipe.xadd(STREAM_KEY, {"n": _encode_json(note)}, maxlen=STREAM_LENGTH)
    pipe.execute()


def _after_commit(session: Session) -> None:
    notes = session.info.pop(_PENDING, None)
    if not notes or not has_app_context():
        return
    try:
        publish(notes)
    except RedisError:
        logger.warning("%d change(s) not announced (no Redis): open screens see them on reload", len(notes))


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    # After a commit the notes were published; after a rollback they describe nothing: forget them.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


def install() -> None:
    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_transaction_end", _after_transaction_end)
