"""Short transactions on a table others are using (the online type changes, the copy and swap): each
waits at most ``STEP_LOCK_TIMEOUT`` for a lock and is tried again, with growing pauses, until it gets it,
so that readers queued behind it never wait longer; after ``STEP_TRIES`` tries the table is too busy
(``TableBusy``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

STEP_LOCK_TIMEOUT = "200ms"
STEP_TRIES = 100
#: PostgreSQL's answers to a statement that did not get its lock in time, and to a deadlock.
LOCK_NOT_AVAILABLE = "55P03"
DEADLOCK = "40P01"

T = TypeVar("T")


class TableBusy(Exception):  # noqa: N818 (what the admin is told)
    """A step could not get its short lock on the table in ``STEP_TRIES`` tries."""


def sqlstate(exc: BaseException) -> str:
    """The SQLSTATE of a database error (of the one it was raised from, for a wrapped one), else ""."""
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, DBAPIError):
            return getattr(candidate.orig, "sqlstate", "") or ""
    return ""


def is_lock_timeout(exc: BaseException) -> bool:
    return sqlstate(exc) == LOCK_NOT_AVAILABLE


def retried(attempt: Callable[[], T], again: Callable[[BaseException], bool] = is_lock_timeout) -> T:
    """``attempt()``, tried again while it fails in a way ``again`` accepts (a lock not got in time)."""
    for n in range(STEP_TRIES):
        try:
            return attempt()
        except Exception as exc:
            if not again(exc):
                raise
            time.sleep(min(0.05 * (n + 1), 1.0))
    raise TableBusy()


def lock_timeout(conn: Connection) -> None:
    """The current transaction waits at most ``STEP_LOCK_TIMEOUT`` for each lock."""
    conn.execute(text(f"SET LOCAL lock_timeout = '{STEP_LOCK_TIMEOUT}'"))


def with_short_locks(
    engine: Engine,
    step: Callable[[Connection], None],
    *,
    isolation: str | None = None,
    again: Callable[[BaseException], bool] = is_lock_timeout,
) -> None:
    """Run ``step`` in a transaction of its own (at ``isolation``, else the engine's) with short lock
    waits, again and again until it gets its locks."""

    def attempt() -> None:
        connection = engine.connect()
        if isolation:
            connection = connection.execution_options(isolation_level=isolation)
        with connection as conn, conn.begin():
            lock_timeout(conn)
            step(conn)

    retried(attempt, again)
