"""Every record knows when it was created and last changed: the write path stamps both with its change set's
time (the time its history shows) in single and bulk writes (COPY and one-statement updates on
PostgreSQL), on deletes and restores; a save that changes nothing leaves them; the query layer offers them
as the record columns "Created" and "Updated", to filter and sort by, in custom and core tables."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from app.extensions import db
from custom_fields import records, runtime
from custom_fields.query import QueryError, TableQuery
from models import RecordChange
from tests.tables_helpers import new_table
from tests.test_bulk_writes import BULK, actor


def aware(moment: Any) -> dt.datetime:
    """SQLite hands back naive UTC date-times, PostgreSQL aware ones."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def stamps(slug: str, pk: int) -> tuple[dt.datetime | None, dt.datetime | None]:
    db.session.expire_all()
    table = runtime.current().classes[slug].__table__
    found = db.session.execute(select(table.c.created_at, table.c.updated_at).where(table.c.id == pk)).one()
    return tuple(None if m is None else aware(m) for m in found)  # type: ignore[return-value]


def history_times(slug: str, pk: int) -> list[dt.datetime]:
    entity = runtime.current().entity(slug)
    found = db.session.scalars(
        select(RecordChange.at)
        .where(RecordChange.entity_id == entity.id, RecordChange.record_id == pk)
        .order_by(RecordChange.id)
    )
    return [aware(m) for m in found]


@pytest.fixture
def table(app_ctx) -> tuple[str, str]:  # noqa: ANN001
    entity = new_table(f"Сроки {uuid.uuid4().hex[:6]}")
    return entity.slug, runtime.current().entity(entity.slug).display_field.name


def test_single_writes_stamp_the_record_with_their_history_time(table) -> None:  # noqa: ANN001
    slug, note = table
    admin = actor("admin")
    pk = records.create(slug, {note: "первая"}, admin).id
    created, updated = stamps(slug, pk)
    [first] = history_times(slug, pk)
    assert created == updated == first

    records.update(slug, pk, {note: "вторая"}, admin, expected_version=None)
    assert stamps(slug, pk) == (created, history_times(slug, pk)[-1])
    assert stamps(slug, pk)[1] > created

    before = stamps(slug, pk)
    records.update(slug, pk, {note: "вторая"}, admin, expected_version=None)  # nothing changes
    assert stamps(slug, pk) == before and len(history_times(slug, pk)) == 2

    records.delete(slug, pk, admin)
    assert stamps(slug, pk) == (created, history_times(slug, pk)[-1])
    records.restore(slug, pk, admin)
    times = history_times(slug, pk)
    assert len(times) == 4 and stamps(slug, pk) == (created, times[-1])


def test_bulk_writes_stamp_every_record(table) -> None:  # noqa: ANN001
    slug, note = table
    admin = actor("admin", "import")
    saved = records.create_many(
        slug, [{note: f"строка {i}"} for i in range(BULK)], admin
    )  # COPY on PostgreSQL
    created = {s.id: stamps(slug, s.id) for s in saved}
    assert all(c == u == history_times(slug, pk)[0] for pk, (c, u) in created.items())
    changed = saved[::2]
    records.update_many(slug, [(s.id, {note: f"новая {s.id}"}, None) for s in changed], admin)
    for s in saved:
        now = stamps(slug, s.id)
        assert now[0] == created[s.id][0]
        assert now[1] == history_times(slug, s.id)[-1]
        assert (now[1] > created[s.id][1]) == (s in changed)


def test_the_query_layer_filters_and_sorts_by_them(table) -> None:  # noqa: ANN001
    slug, note = table
    admin = actor("admin")
    old = records.create(slug, {note: "старая"}, admin).id
    fresh = records.create(slug, {note: "свежая"}, admin).id
    records.update(slug, old, {note: "поправленная"}, admin, expected_version=None)
    _created, since = stamps(slug, old)
    query = TableQuery(slug, admin)
    assert {"created_at", "updated_at"} <= {c.name for c in query.columns}
    changed = query.where({"field": "updated_at", "op": "ge", "value": since.isoformat()})
    assert [r["id"] for r in changed.stream()] == [old]
    newest_first = query.where({"field": "id", "op": "ge", "value": old}).order_by("-updated_at")
    assert [r["id"] for r in newest_first.stream()] == [old, fresh]
    by_creation = query.where({"field": "id", "op": "ge", "value": old}).order_by("-created_at")
    assert [r["id"] for r in by_creation.stream()] == [fresh, old]
    with pytest.raises(QueryError):
        query.where({"field": "updated_at", "op": "ge", "value": "вчера"})


def test_core_records_get_their_last_change_too(app_ctx) -> None:  # noqa: ANN001
    admin = actor("admin")
    pk = records.create("companies", {"name": f"ООО Срок {uuid.uuid4().hex[:6]}"}, admin).id
    created, updated = stamps("companies", pk)
    assert created == updated == history_times("companies", pk)[0]
    records.update("companies", pk, {"region": "Тверь"}, admin, expected_version=None)
    assert stamps("companies", pk) == (created, history_times("companies", pk)[-1])
    assert "updated_at" in {c.name for c in TableQuery("companies", admin).columns}
