"""The demo book: loaded through the write path on fresh SQLite databases at a small scale (once, not once
per backend: the session's database plays no part)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask_appbuilder.security.sqla.models import User
from sqlalchemy import select

from app.bootstrap import DEMO_USERS
from app.crm.demo import BOOK_TABLES, PIPELINES, TEAMS, scaled_counts
from app.extensions import db
from custom_fields import history, runtime
from custom_fields.access import Actor, grants, row_filter
from models.teams import Team
from tests.conftest import ROOT

SCALE = 0.01
#: Set to "now" by the write path, so they differ between two loads.
NOW_COLUMNS = {
    "created_at", "updated_at", "closed_at", "completed_at", "converted_at", "email_consent_at",
    "sms_consent_at",
}  # fmt: skip


def _scratch_env(env: dict[str, str], folder: Any, **extra: str) -> dict[str, str]:
    return {
        **env,
        "DATABASE_URL": f"sqlite:///{folder / 'demo.db'}",
        "TABULA_INSTANCE_DIR": str(folder),
        "TABULA_DEMO": "1",
        "TABULA_DEMO_SCALE": str(SCALE),
        **extra,
    }


def _loaded_app(env: dict[str, str], folder: Any, **extra: str) -> tuple[Flask, dict[str, str]]:
    from app import create_app
    from app.bootstrap import initialize

    scratch = _scratch_env(env, folder, **extra)
    application = create_app(scratch)
    initialize(application, echo=lambda _msg: None)
    return application, scratch


@pytest.fixture(scope="module")
def demo(
    scratch_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Flask, dict[str, str]]:
    return _loaded_app(scratch_env, tmp_path_factory.mktemp("demo"))


@pytest.fixture
def demo_ctx(demo: tuple[Flask, dict[str, str]]) -> Iterator[Flask]:
    with demo[0].app_context():
        runtime.refresh()
        yield demo[0]


def _table(slug: str) -> Any:
    return runtime.current().classes[slug].__table__


def _rows(slug: str) -> list[dict[str, Any]]:
    tbl = _table(slug)
    return [dict(r) for r in db.session.execute(select(tbl).order_by(tbl.c.id)).mappings()]


def _user_id(username: str) -> int:
    return db.session.scalar(select(User.id).where(User.username == username))


def test_counts_match_the_scale(demo_ctx: Flask) -> None:
    expected = scaled_counts(SCALE)
    for slug, count in expected.items():
        assert len(_rows(slug)) == count, slug
    assert [p["name"] for p in _rows("pipelines")] == list(PIPELINES)
    assert len(_rows("stages")) == sum(len(s) for s in PIPELINES.values())
    assert _rows("deal_lines"), "part of the deals have lines"


def test_book_is_varied_and_realistic(demo_ctx: Flask) -> None:
    companies = _rows("companies")
    assert any(c["name"].startswith("ООО «") for c in companies)
    for company in companies:
        assert company["tax_id"] is None or len(company["tax_id"]) in (10, 12)
        assert company["phone"].startswith("+7")
    contacts = _rows("contacts")
    assert all(c["full_name"] for c in contacts)  # derived from the parts
    activities = _rows("activities")
    assert {"call", "email", "complaint"} <= {a["kind"] for a in activities}
    assert {"no_answer", "busy"} & {a["outcome"] for a in activities}
    assert all(a["company_id"] for a in activities if a["lead_id"] is None)  # derived from the contact
    first_calls = [a for a in activities if a["lead_id"] is not None]
    assert first_calls and all(a["direction"] == "outbound" for a in first_calls)
    leads = {lead["id"]: lead for lead in _rows("leads")}
    for lead_id in {a["lead_id"] for a in first_calls}:
        lead = leads[lead_id]
        first = min(a["occurred_at"] for a in first_calls if a["lead_id"] == lead_id)
        assert lead["first_response_at"] == first and lead["response_hours"] is not None
        assert lead["created_at"] < first  # the lead came in before it was answered
    for lead in leads.values():  # a new lead is one nobody has answered yet
        assert (lead["response_hours"] is None) == (lead["status"] == "new"), lead
    complaints = [a for a in activities if a["kind"] == "complaint"]
    assert all(a["complaint_category"] and a["resolution"] for a in complaints)
    for complaint in complaints:  # settled ones took their time, open ones are not settled
        settled = complaint["resolution"] in ("resolved", "rejected")
        assert (complaint["resolved_at"] is not None) == settled == (complaint["resolution_days"] is not None)
        if settled:
            assert complaint["occurred_at"] <= complaint["resolved_at"]
    invoices = _rows("invoices")
    assert {"paid", "partly_paid"} <= {i["status"] for i in invoices}
    assert any(i["overdue_days"] for i in invoices)
    for invoice in invoices:
        assert invoice["balance"] == invoice["amount"] - (invoice["paid_amount"] or 0)
    tasks = _rows("tasks")
    assert any(t["status"] == "done" and t["completed_at"] for t in tasks)
    assert all(t["assignee_id"] for t in tasks)


def test_every_deal_is_in_its_stages_pipeline_and_sums_its_lines(demo_ctx: Flask) -> None:
    stages = {s["id"]: s for s in _rows("stages")}
    lines: dict[int, list[dict[str, Any]]] = {}
    for line in _rows("deal_lines"):
        lines.setdefault(line["deal_id"], []).append(line)
        expected = line["quantity"] * line["price"] * (100 - (line["discount"] or 0)) / 100
        assert line["total"] == expected.quantize(Decimal("0.01"))
    deals = _rows("deals")
    assert {s["id"] for s in stages.values() if s["is_won"]} & {d["stage_id"] for d in deals}
    assert {s["id"] for s in stages.values() if s["is_lost"]} & {d["stage_id"] for d in deals}
    for deal in deals:
        stage = stages[deal["stage_id"]]
        assert deal["pipeline_id"] == stage["pipeline_id"]
        assert deal["probability"] == stage["probability"]
        assert (deal["closed_at"] is not None) == bool(stage["is_won"] or stage["is_lost"])
        if stage["is_lost"]:
            assert deal["lost_reason"] and deal["lost_because"]
            reached = stages[deal["reached_stage_id"]]  # lost after getting somewhere
            assert reached["pipeline_id"] == stage["pipeline_id"] and not reached["is_lost"]
        else:
            assert deal["reached_stage_id"] == deal["stage_id"]  # seeded deals only move forward
        if deal["id"] in lines:
            assert deal["amount"] == sum(line["total"] for line in lines[deal["id"]])


def test_every_record_has_its_history(demo_ctx: Flask) -> None:
    schema = runtime.current()
    for slug in (*BOOK_TABLES, "deal_lines", "products", "pipelines", "stages"):
        entity = schema.entity(slug)
        rows = _rows(slug)
        created: dict[int, int] = {}
        for line in history.lines(entity.id):
            if line.action == "create":
                created[line.record_id] = created.get(line.record_id, 0) + 1
        assert set(created) == {r["id"] for r in rows}, slug
        # one line for the record plus one per value it was created with
        assert all(created[r["id"]] > 2 for r in rows), slug
    owners = {r["owner_id"] for slug in BOOK_TABLES for r in _rows(slug)}
    demo_users = {_user_id(username) for username, *_rest in DEMO_USERS}
    assert owners <= demo_users and _user_id("staff1") in owners
    assert owners & {_user_id("manager"), _user_id("manager2")}, "managers own part of the book"


def test_users_and_teams(demo_ctx: Flask) -> None:
    for username, first, last, role in DEMO_USERS:
        user = db.session.scalar(select(User).where(User.username == username))
        assert user is not None and (user.first_name, user.last_name) == (first, last)
        assert [r.name for r in user.roles] == [role]
    teams = {t.name: sorted(u.username for u in t.members) for t in db.session.scalars(select(Team))}
    assert teams == {name: sorted(members) for name, members in TEAMS.items()}


def test_staff1_sees_only_their_own_book(demo_ctx: Flask) -> None:
    schema = runtime.current()
    staff1 = _user_id("staff1")
    actor = Actor.of_user(db.session.get(User, staff1))
    for slug in ("companies", "contacts", "deals", "activities", "tasks", "invoices"):
        model = schema.classes[slug]
        rights = grants(actor, schema.entity(slug), schema.access)
        seen = set(db.session.scalars(select(model.id).where(row_filter(model, rights))))
        own = {r["id"] for r in _rows(slug) if staff1 in (r["owner_id"], r.get("assignee_id"))}
        assert seen == own, slug
        assert 0 < len(seen) < len(_rows(slug)), slug


def test_the_same_seed_gives_the_same_book(
    demo: tuple[Flask, dict[str, str]], scratch_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    other, _ = _loaded_app(scratch_env, tmp_path_factory.mktemp("demo2"))

    def snapshot(application: Flask) -> dict[str, list[dict[str, Any]]]:
        with application.app_context():
            runtime.refresh()
            return {
                slug: [{k: v for k, v in r.items() if k not in NOW_COLUMNS} for r in _rows(slug)]
                for slug in (*BOOK_TABLES, "deal_lines", "products", "stages")
            }

    assert snapshot(demo[0]) == snapshot(other)


def test_demo_command_refuses_a_database_with_data(demo: tuple[Flask, dict[str, str]]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "demo"],
        env=demo[1], cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "already holds CRM data" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_init_seeds_one_pipeline_in_the_default_language(
    scratch_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from app import create_app
    from app.bootstrap import initialize

    folder = tmp_path_factory.mktemp("pipeline")
    application = create_app(_scratch_env(scratch_env, folder, TABULA_DEMO="0", TABULA_DEFAULT_LOCALE="ru"))
    first = initialize(application, echo=lambda _msg: None)
    second = initialize(application, echo=lambda _msg: None)
    assert (first.pipeline_created, second.pipeline_created) == ("Продажи", None)
    with application.app_context():
        runtime.refresh()
        assert [p["name"] for p in _rows("pipelines")] == ["Продажи"]
        stages = _rows("stages")
        assert len(stages) == 6 and sum(bool(s["is_won"]) for s in stages) == 1
        assert sum(bool(s["is_lost"]) for s in stages) == 1
        assert not any(len(_rows(slug)) for slug in BOOK_TABLES)
