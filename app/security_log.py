"""The security log: failed sign-ins, lockouts, unlocks and ended sessions.

Each event goes to the ``tabula.security`` logger (the server's log, kept as long as the deployment keeps its
logs) and to a capped Redis stream that the admin screen *System → Sign-in security* shows. Record changes
have their own audit log (``RecordChange``); these events have no record, so they live here instead of in a
new table.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from flask import has_request_context, request
from redis.exceptions import RedisError

from app.redis_client import redis_connection

STREAM = "tabula:security-log"
KEEP = 10_000  # events kept in the stream (approximately: Redis trims whole nodes)

logger = logging.getLogger("tabula.security")

# Event kinds, as stored.
LOGIN_FAILED = "login_failed"
LOCKED = "locked"
UNLOCKED = "unlocked"
SESSIONS_ENDED = "sessions_ended"
LOGOUT = "logout"


@dataclass(frozen=True)
class SecurityEvent:
    at: dt.datetime
    kind: str
    subject: str  # the user name tried, or the address locked
    address: str
    detail: str
    actor: str  # who did it (an admin's user name for an unlock), else empty


def client_address() -> str:
    return (request.remote_addr or "") if has_request_context() else ""


def record(kind: str, subject: str, *, detail: str = "", actor: str = "") -> None:
    """Log one event; a Redis outage loses it from the screen, never from the server log."""
    address = client_address()
    logger.warning(
        "security %s subject=%r address=%s detail=%r actor=%r", kind, subject, address, detail, actor
    )
    fields = {"kind": kind, "subject": subject, "address": address, "detail": detail, "actor": actor}
    try:
        redis_connection().xadd(STREAM, fields, maxlen=KEEP, approximate=True)
    except RedisError:
        logger.exception("could not add a security event to Redis")


def recent(limit: int = 200) -> list[SecurityEvent]:
    """The newest events first."""
    events = []
    for entry_id, fields in redis_connection().xrevrange(STREAM, count=limit):
        millis = int(entry_id.decode().split("-")[0])
        text = {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
        events.append(
            SecurityEvent(
                at=dt.datetime.fromtimestamp(millis / 1000, dt.UTC),
                kind=text.get("kind", ""),
                subject=text.get("subject", ""),
                address=text.get("address", ""),
                detail=text.get("detail", ""),
                actor=text.get("actor", ""),
            )
        )
    return events
