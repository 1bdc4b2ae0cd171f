"""Short transactions on a busy table (``custom_fields.short_locks``), on a real PostgreSQL: a step that
cannot get its lock within the short timeout is tried again until the holder lets go, then runs once; one
whose lock never comes ends in ``TableBusy``; any other failure is not tried again."""

# ruff: noqa: S608 (the table's name is the test's own, made from hex digits)

from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ProgrammingError

from app.extensions import db
from custom_fields import short_locks


@pytest.fixture
def busy_table(app_ctx):  # noqa: ANN001, ANN201
    if db.engine.dialect.name != "postgresql":
        pytest.skip("lock timeouts are PostgreSQL's; SQLite has one writer at a time")
    name = f"t_short_{uuid.uuid4().hex[:8]}"
    with db.engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {name} (id integer PRIMARY KEY, n integer)"))
        conn.execute(text(f"INSERT INTO {name} VALUES (1, 0)"))
    yield name
    with db.engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {name}"))


def hold_lock(table: str, seconds: float) -> threading.Thread:
    """Another session holds the table in ACCESS EXCLUSIVE mode for ``seconds`` (started before return)."""
    taken = threading.Event()
    engine = db.engine  # the thread has no application context

    def holder() -> None:
        with engine.begin() as conn:
            conn.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
            taken.set()
            time.sleep(seconds)

    thread = threading.Thread(target=holder)
    thread.start()
    assert taken.wait(10)
    return thread


def test_a_step_waits_out_a_longer_lock_in_short_tries_and_runs_once(busy_table: str) -> None:
    runs: list[float] = []

    def step(conn: Connection) -> None:
        runs.append(time.monotonic())
        conn.execute(text(f"UPDATE {busy_table} SET n = n + 1"))

    holder = hold_lock(busy_table, 1.0)
    began = time.monotonic()
    short_locks.with_short_locks(db.engine, step)
    holder.join()
    assert time.monotonic() - began >= 0.5  # it waited for the holder
    assert len(runs) >= 2  # in several short tries, each given up after STEP_LOCK_TIMEOUT
    with db.engine.connect() as conn:
        assert conn.execute(text(f"SELECT n FROM {busy_table}")).scalar() == 1  # its change made once


def test_a_lock_that_never_comes_ends_in_table_busy(busy_table: str, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(short_locks, "STEP_TRIES", 3)
    holder = hold_lock(busy_table, 3.0)
    try:
        with pytest.raises(short_locks.TableBusy):
            short_locks.with_short_locks(
                db.engine, lambda conn: conn.execute(text(f"UPDATE {busy_table} SET n = n + 1"))
            )
    finally:
        holder.join()
    with db.engine.connect() as conn:
        assert conn.execute(text(f"SELECT n FROM {busy_table}")).scalar() == 0


def test_other_failures_are_not_tried_again(busy_table: str) -> None:
    runs = []

    def step(conn: Connection) -> None:
        runs.append(1)
        conn.execute(text(f"SELECT no_such_column FROM {busy_table}"))

    with pytest.raises(ProgrammingError):
        short_locks.with_short_locks(db.engine, step)
    assert runs == [1]


def test_a_lock_timeout_wrapped_by_the_caller_is_recognised(busy_table: str) -> None:
    """``retried`` also knows a lock timeout raised as the cause of the caller's own error (a schema
    change wraps the database's errors in ``SchemaError``)."""

    class WrappedError(Exception):
        pass

    tries = []
    holder = hold_lock(busy_table, 0.8)

    def attempt() -> str:
        tries.append(1)
        try:
            with db.engine.begin() as conn:
                short_locks.lock_timeout(conn)
                conn.execute(text(f"UPDATE {busy_table} SET n = n + 1"))
        except Exception as exc:
            raise WrappedError("the change failed") from exc
        return "done"

    assert short_locks.retried(attempt) == "done"
    holder.join()
    assert len(tries) >= 2
