"""The schema-change signal in Redis (``custom_fields.schema_signal``): a request learns that nothing changed
from one Redis GET, without a database statement; a committed change moves the signal, so another app sees
it on its next check; a change whose signal was lost is caught up from the database's version after
``BACKSTOP_S`` seconds. The other app is a second ``create_app`` on the same database and Redis (its own
schema and its own memory of the last check), as a second process would be."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import event, select, update

from app.extensions import db
from custom_fields import runtime, schema_signal, service
from models import SchemaState
from tests.tables_helpers import unique_label


@pytest.fixture(scope="module")
def other_app(app, env):  # noqa: ANN001, ANN201
    from app import create_app

    return create_app(env)


def statements_during(engine, work) -> list[str]:  # noqa: ANN001
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        work()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def follow_in(other) -> runtime.RuntimeSchema:  # noqa: ANN001
    with other.test_request_context("/"):
        return runtime.follow(other)


def db_version() -> int:
    return db.session.scalar(select(SchemaState.version).where(SchemaState.id == 1))


@pytest.fixture
def fresh(app_ctx, other_app) -> Iterator[None]:  # noqa: ANN001
    follow_in(other_app)  # the other app is up to date and has just checked
    yield


def test_a_committed_change_moves_the_signal(app_ctx, fresh) -> None:  # noqa: ANN001
    before = schema_signal.read_epoch()
    service.create_entity(unique_label("Сигнал"), "")
    after = schema_signal.read_epoch()
    assert after is not schema_signal.UNKNOWN and int(after) > int(before or 0)


def test_nothing_changed_costs_no_database_statement(app_ctx, other_app, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(schema_signal, "BACKSTOP_S", 600.0)  # however slow the machine
    follow_in(other_app)
    with other_app.app_context():
        engine = db.engine
    seen = statements_during(engine, lambda: [follow_in(other_app) for _ in range(5)])
    assert seen == []


def test_another_app_sees_a_change_on_its_next_check(app_ctx, other_app, fresh) -> None:  # noqa: ANN001
    entity = service.create_entity(unique_label("Сигнал"), "")
    schema = follow_in(other_app)
    assert entity.slug in schema.entities
    assert schema.version == db_version()


def test_a_lost_signal_is_caught_up_from_the_database(app_ctx, other_app, fresh, monkeypatch) -> None:  # noqa: ANN001
    # A change committed without its signal (as if its process died between the commit and the increment).
    monkeypatch.setattr(schema_signal, "BACKSTOP_S", 600.0)
    db.session.execute(update(SchemaState).where(SchemaState.id == 1).values(version=SchemaState.version + 1))
    db.session.commit()
    assert follow_in(other_app).version == db_version() - 1  # the signal did not move
    monkeypatch.setattr(schema_signal, "BACKSTOP_S", 0.0)
    assert follow_in(other_app).version == db_version()
