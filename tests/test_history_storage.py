"""History stored one row per record change: revision 0006 turns the old lines into rows that read back
the same (and its downgrade back again); the audit log shows the history's size; admins archive old
history to a file they download, on both databases (the migration on SQLite, as test_migrations)."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

from flask_appbuilder.security.sqla.models import User
from flask_migrate import downgrade, upgrade
from sqlalchemy import JSON, bindparam, create_engine, make_url, select, text

from app import create_app
from app.extensions import db
from custom_fields import history, records, runtime
from custom_fields.access import Actor
from models.records import RecordChange
from tests.conftest import csrf_token

AT = dt.datetime(2026, 11, 30, 10, 0, tzinfo=dt.UTC)


def old_lines() -> list[dict[str, Any]]:
    """Lines as revision 0005 stored them: two records of table 1 and one of table 2, with a create
    (record line and values), an update of two fields, a merge (its note, then a value), a delete and a
    restore, a purge, and a value of a field since removed. A change set's lines share their moment."""

    def line(
        i: int, changeset: str, record: int, action: str, field: int | None, old: Any, new: Any, **kw: Any
    ):
        return {
            "id": i, "changeset": changeset, "at": AT + dt.timedelta(minutes=ord(changeset[0])),
            "user_id": kw.get("user", 1),
            "source": kw.get("source", "ui"), "entity_id": kw.get("entity", 1), "record_id": record,
            "action": action, "field_id": field, "old_value": old, "new_value": new,
        }  # fmt: skip

    return [
        line(1, "a" * 32, 1, "create", None, None, None),
        line(2, "a" * 32, 1, "create", 11, None, "Ромашка"),
        line(3, "a" * 32, 1, "create", 12, None, "2025-12-31"),
        line(4, "a" * 32, 2, "create", None, None, None),  # same change set, another record
        line(5, "a" * 32, 2, "create", 11, None, "Лютик"),
        line(6, "b" * 32, 1, "update", 11, "Ромашка", "Ромашка+"),
        line(7, "b" * 32, 1, "update", 99, "1.00", None),  # a field removed since
        line(8, "c" * 32, 1, "merge", None, None, {"merged": 2}),
        line(9, "c" * 32, 1, "update", 12, "2025-12-31", "2026-01-01"),
        line(10, "c" * 32, 2, "merge", None, None, {"into": 1}),
        line(11, "c" * 32, 2, "delete", None, None, None),
        line(12, "d" * 32, 2, "restore", None, None, None, source="api", user=None),
        line(13, "e" * 32, 7, "create", None, None, None, entity=2, source="import"),
        line(14, "e" * 32, 7, "create", 21, None, True, entity=2, source="import"),
        line(15, "f" * 32, 7, "purge", None, None, None, entity=2, source="job", user=None),
    ]


def read_lines() -> list[tuple[Any, ...]]:
    return [
        (x.changeset, x.at.replace(tzinfo=dt.UTC) if x.at.tzinfo is None else x.at, x.user_id, x.source,
         x.entity_id, x.record_id, x.action, x.field_id, x.old_value, x.new_value)
        for x in history.lines()
    ]  # fmt: skip


@contextlib.contextmanager
def scratch_database(env: dict[str, str], tmp_path: Any) -> Iterator[str]:
    """An empty database of the session's kind: a file on SQLite, a new database on PostgreSQL."""
    base = env["DATABASE_URL"]
    if not base.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    name = f"tabula_h_{uuid.uuid4().hex[:12]}"
    admin_engine = create_engine(make_url(base), isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()


def test_0006_keeps_every_line_and_its_downgrade_gives_them_back(env, tmp_path) -> None:  # noqa: ANN001
    with scratch_database(env, tmp_path) as url:
        check_0006(env, tmp_path, url)


def check_0006(env: dict[str, str], tmp_path: Any, url: str) -> None:
    scratch = create_app({**env, "DATABASE_URL": url, "TABULA_INSTANCE_DIR": str(tmp_path)})
    directory = scratch.extensions["migrate"].directory
    lines = old_lines()
    expected = [
        (x["changeset"], x["at"], x["user_id"], x["source"], x["entity_id"], x["record_id"], x["action"],
         x["field_id"], x["old_value"], x["new_value"])
        for x in lines
    ]  # fmt: skip
    with scratch.app_context():
        upgrade(directory=directory, revision="0005")
        engine = create_engine(url)
        with engine.begin() as conn:
            # The table and the user the lines name.
            conn.execute(
                text(
                    "INSERT INTO ab_user (id, first_name, last_name, username, email, active)"
                    " VALUES (1, 'A', 'B', 'old_admin', 'old@example.com', :t)"
                ),
                {"t": True},
            )
            for entity in (1, 2):
                conn.execute(
                    text(
                        "INSERT INTO tabula_entity (id, slug, table_name, label, plural_label, icon,"
                        " is_system, position, created_at)"
                        " VALUES (:id, :slug, :slug, :slug, :slug, 'fa-table', :f, 0, :at)"
                    ),
                    {"id": entity, "slug": f"t_{entity}", "f": False, "at": AT},
                )
            insert = text(
                "INSERT INTO tabula_record_change (id, changeset, at, user_id, source, entity_id, record_id,"
                " action, field_id, old_value, new_value) VALUES (:id, :changeset, :at, :user_id, :source,"
                " :entity_id, :record_id, :action, :field_id, :old, :new)"
            ).bindparams(
                bindparam("old", type_=JSON(none_as_null=True)),
                bindparam("new", type_=JSON(none_as_null=True)),
            )
            for x in lines:
                conn.execute(insert, {**x, "old": x["old_value"], "new": x["new_value"]})
        upgrade(directory=directory)
        # One row per record and change set (a merge keeps its note and its values apart).
        assert db.session.scalar(select(db.func.count()).select_from(RecordChange)) == 10
        assert read_lines() == expected
        # What the readers answer from them.
        assert history.replay(1, 1) == ({11: "Ромашка+", 99: None, 12: "2026-01-01"}, False)
        assert history.replay(1, 2) == ({11: "Лютик"}, False)
        assert history.replay(2, 7) is None  # purged
        assert history.values_at(1, 1, 1) == {11: "Ромашка", 12: "2025-12-31"}
        assert history.values_at(1, 1, 3) == {11: "Ромашка+", 99: None, 12: "2026-01-01"}
        assert history.values_at(1, 2, 3) == {11: "Лютик"}
        assert history.values_at(1, 1, 4) is None
        db.session.remove()
        downgrade(directory=directory, revision="0005")
        with engine.connect() as conn:
            back = conn.execute(
                text(
                    "SELECT changeset, at, user_id, source, entity_id, record_id, action, field_id,"
                    " CAST(old_value AS TEXT), CAST(new_value AS TEXT) FROM tabula_record_change ORDER BY id"
                )
            ).all()

        def value(raw: str | None) -> Any:
            return None if raw is None else json.loads(raw)

        assert len(back) == len(expected)
        assert [(r[0], *r[2:8], value(r[8]), value(r[9])) for r in back] == [(e[0], *e[2:]) for e in expected]
        upgrade(directory=directory)
        assert read_lines() == expected
        engine.dispose()


def admin() -> Actor:
    return Actor.of_user(db.session.scalar(select(User).where(User.username == "admin")), "ui")


def test_admins_see_the_size_of_history_and_archive_old_lines_to_a_file(
    app, admin_client, staff_client
) -> None:  # noqa: ANN001
    with app.app_context():
        saved = records.create("pipelines", {"name": "Архивная воронка"}, admin())
        records.update("pipelines", saved.id, {"name": "Архивная воронка 2"}, admin(), expected_version=1)
        entity_id = runtime.current().entity("pipelines").id
        before = len(history.lines(entity_id, saved.id))
        # Pretend the two changes are two years old.
        db.session.execute(
            RecordChange.__table__.update()
            .where(RecordChange.entity_id == entity_id, RecordChange.record_id == saved.id)
            .values(at=dt.datetime.now(dt.UTC) - dt.timedelta(days=730))
        )
        db.session.commit()
        total = history.size().rows

    page = admin_client.get("/admin/history/").get_data(as_text=True)
    assert "history-size" in page and "history-archive" in page
    # A date in the future, or none, is refused.
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    response = admin_client.post(
        "/admin/history/archive", data={"csrf_token": csrf_token(page), "before": tomorrow}
    )
    assert response.status_code == 302
    with app.app_context():
        assert history.size().rows == total
    # Staff may not archive.
    staff_page = staff_client.get("/t/pipelines/list/").get_data(as_text=True)
    refused = staff_client.post(
        "/admin/history/archive", data={"csrf_token": csrf_token(staff_page), "before": "2025-01-01"}
    )
    assert refused.status_code in (302, 403)
    with app.app_context():
        assert history.size().rows == total

    year_ago = (dt.date.today() - dt.timedelta(days=365)).isoformat()
    response = admin_client.post(
        "/admin/history/archive", data={"csrf_token": csrf_token(page), "before": year_ago}
    )
    assert response.status_code == 302
    with app.app_context():
        assert history.lines(entity_id, saved.id) == []
        assert history.size().rows <= total - 2
        name = history.archives()[0][0]
    page = admin_client.get("/admin/history/").get_data(as_text=True)
    assert name in page
    download = admin_client.get(f"/admin/history/archive/{name}")
    assert download.status_code == 200
    archived = [json.loads(x) for x in gzip.decompress(download.data).decode().splitlines()]
    mine = [x for x in archived if x["entity_id"] == entity_id and x["record_id"] == saved.id]
    assert len(mine) == before
    assert {x["action"] for x in mine} == {"create", "update"}
    assert any(x["new_value"] == "Архивная воронка 2" for x in mine)
    assert admin_client.get("/admin/history/archive/..%2Fsecret_key").status_code == 404
    assert admin_client.get("/admin/history/archive/nothing.jsonl.gz").status_code == 404
    assert staff_client.get(f"/admin/history/archive/{name}").status_code in (302, 403)
    assert re.search(r"history-before-\d{4}-\d{2}-\d{2}-", name)
