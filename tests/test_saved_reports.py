"""Saved reports: the builder's report under a name, personal or shared with roles; only the owner (or an
admin) changes or deletes it, the others open it read-only and see their own figures; a period (this
month, quarter, year, the last N days, a range) on a date field is kept and resolved each time; a saved
report is e-mailed on a schedule as its workbook, with the owner's rights at the time — on SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from typing import Any

import openpyxl
import pytest
from sqlalchemy import select

from app.extensions import db
from custom_fields.access import Actor
from exports import reports, saved_reports, schedules
from exports.reports import Definition, Period, ReportError
from exports.schedules import ScheduleError
from models import SavedReport
from models.exports import ExportSchedule, ExportScheduleRun
from models.system import utcnow
from tests.conftest import DEMO_PASSWORD, csrf_token, login, signed_in
from tests.test_exports import deals_table, role_id, user_id  # noqa: F401 (a fixture)
from tests.test_route_authorization import database_digest

TODAY = dt.date(2026, 12, 2)


def test_periods_resolve_against_today() -> None:
    def bounds(raw: dict[str, Any]) -> tuple:
        return Period.from_json({"field": "d", **raw}).bounds(TODAY)

    assert bounds({"kind": "month"}) == (dt.date(2026, 12, 1), dt.date(2027, 1, 1))
    assert bounds({"kind": "quarter"}) == (dt.date(2026, 10, 1), dt.date(2027, 1, 1))
    assert bounds({"kind": "year"}) == (dt.date(2026, 1, 1), dt.date(2027, 1, 1))
    assert bounds({"kind": "last_days", "days": 7}) == (dt.date(2026, 11, 26), dt.date(2026, 12, 3))
    assert bounds({"kind": "last_days", "days": "1"}) == (TODAY, dt.date(2026, 12, 3))
    assert bounds({"kind": "range", "from": "2026-01-05", "to": "2026-01-05"}) == (
        dt.date(2026, 1, 5),
        dt.date(2026, 1, 6),
    )
    assert bounds({"kind": "range", "from": None, "to": "2026-01-05"}) == (None, dt.date(2026, 1, 6))
    assert Period.from_json(None) is None and Period.from_json({"kind": ""}) is None
    for bad in (
        "month",
        {"kind": "week", "field": "d"},
        {"kind": "month"},
        {"kind": "last_days", "field": "d", "days": 0},
        {"kind": "last_days", "field": "d", "days": True},
        {"kind": "last_days", "field": "d", "days": 99999},
        {"kind": "range", "field": "d"},
        {"kind": "range", "field": "d", "from": "2026-02-01", "to": "2026-01-01"},
        {"kind": "range", "field": "d", "from": "31.12.2026"},
        {"kind": "range", "field": "d", "from": 5},
    ):
        with pytest.raises(ReportError):
            Period.from_json(bad)
    raw = {"field": "d", "kind": "range", "from": "2026-01-01", "to": None}
    assert Period.from_json(raw).as_json() == raw


def definition(table: dict[str, Any], **extra: Any) -> dict[str, Any]:  # noqa: F811
    names = table["names"]
    return {
        "table": table["slug"],
        "rows": [names["Этап"]],
        "measures": [{"function": "count"}, {"function": "sum", "field": names["Сумма"]}],
        "chart": "pie",
        **extra,
    }


def test_the_period_filters_the_figures_and_their_links(app_ctx, deals_table) -> None:  # noqa: ANN001, F811
    staff1 = Actor.for_user_id(user_id("staff1"))
    when = deals_table["names"]["Когда"]  # every row: 31.12.2026

    def total(period: dict[str, Any] | None, today: dt.date = TODAY) -> Any:
        spec = Definition.from_json(definition(deals_table, period=period)).resolved(staff1, today)
        return reports.run(spec, staff1).grand_totals["count__rows"]

    assert total(None) == 2  # staff1's own two rows
    assert total({"field": when, "kind": "month"}) == 2
    assert total({"field": when, "kind": "month"}, dt.date(2027, 1, 1)) is None
    assert total({"field": when, "kind": "last_days", "days": 30}) is None
    assert total({"field": when, "kind": "last_days", "days": 30}, dt.date(2027, 1, 29)) == 2
    assert total({"field": when, "kind": "range", "from": "2026-12-31", "to": "2026-12-31"}) == 2
    assert total({"field": when, "kind": "range", "to": "2026-12-30"}) is None
    spec = Definition.from_json(definition(deals_table, period={"field": when, "kind": "year"})).resolved(
        staff1, TODAY
    )
    drill = reports.drill_filter(spec, [])
    # The period's conditions sit beside the others, one level deep (narrowing never nests deeper).
    assert {"field": when, "op": "lt", "value": "2027-01-01"} in drill["and"]
    assert {"field": when, "op": "ge", "value": "2026-01-01"} in drill["and"]
    names = deals_table["names"]
    for bad in (names["Сумма"], names["Секрет"], "no_such_field"):  # not a date; hidden from Staff; unknown
        with pytest.raises(reports.QueryError):
            Definition.from_json(definition(deals_table, period={"field": bad, "kind": "month"})).resolved(
                staff1, TODAY
            )


def post(client: Any, url: str, body: Any, token: str) -> Any:
    return client.post(
        url, data=json.dumps(body), content_type="application/json", headers={"X-CSRFToken": token}
    )


def clients(app: Any, *names: str) -> list[Any]:  # noqa: ANN401
    found = []
    for name in names:
        client = app.test_client()
        assert signed_in(login(client, name, DEMO_PASSWORD))
        found.append(client)
    return found


def test_saved_reports_are_shared_read_only_and_computed_for_each_reader(app, deals_table) -> None:  # noqa: ANN001, F811
    owner, reader, manager = clients(app, "staff1", "staff2", "manager")
    token = csrf_token(owner.get("/reports/").get_data(as_text=True))
    reader_token = csrf_token(reader.get("/reports/").get_data(as_text=True))
    hostile = "<script>alert(1)</script> «Воронка» " + "ж" * 60
    made = post(owner, "/reports/saved", {"name": hostile, "definition": definition(deals_table)}, token)
    assert made.status_code == 201, made.get_data(as_text=True)
    personal = made.get_json()
    assert personal["canChange"] and personal["mine"] and personal["roles"] == []
    # Personal: nobody else finds it, not even by its id.
    assert reader.get(f"/reports/saved/{personal['id']}").status_code == 404
    assert personal["id"] not in {r["id"] for r in reader.get("/reports/saved").get_json()["reports"]}
    # Shared with Staff: staff2 opens it read-only and sees only their own row.
    shared = post(
        owner,
        f"/reports/saved/{personal['id']}",
        {"name": "Общий отчёт", "roles": [role_id("Staff")], "version": personal["version"]},
        token,
    )
    assert shared.status_code == 200, shared.get_data(as_text=True)
    shared = shared.get_json()
    assert shared["name"] == "Общий отчёт" and shared["definition"]["chart"] == "pie"  # renamed, kept
    opened = reader.get(f"/reports/saved/{shared['id']}").get_json()
    assert not opened["canChange"] and not opened["mine"] and opened["owner"]
    figures = post(reader, "/reports/run", opened["definition"], reader_token).get_json()
    assert figures["grand_totals"]["count__rows"] == 1  # staff2's own row, not the owner's two
    page = reader.get(f"/reports/?report={shared['id']}").get_data(as_text=True)
    assert "<script>alert" not in page and "Общий отчёт" in page
    # Read-only for the reader: changing, renaming, deleting are refused and change nothing.
    before = database_digest()
    url = f"/reports/saved/{shared['id']}"
    assert post(reader, url, {"name": "Моё", "version": shared["version"]}, reader_token).status_code == 403
    assert post(reader, url + "/delete", {}, reader_token).status_code == 403
    assert post(reader, url, {"name": "Моё"}, "").status_code == 400  # no form token
    assert database_digest() == before
    # A stale version is refused; a hidden field or a bad name is refused; nothing is saved.
    assert post(owner, url, {"name": "Старое", "version": 1}, token).status_code == 400
    secret = deals_table["names"]["Секрет"]
    for body in (
        {"name": "Тайна", "definition": definition(deals_table, rows=[secret])},
        {"name": " ", "definition": definition(deals_table)},
        {"name": "x" * 101, "definition": definition(deals_table)},
        {"name": "Чужие роли", "definition": definition(deals_table), "roles": [role_id("Admin")]},
        {"name": "Без таблицы", "definition": {"table": "no_such_table"}},
        {"name": "Мусор", "definition": "x"},
        [],
    ):
        answer = post(owner, "/reports/saved", body, token)
        assert answer.status_code in (400, 403, 404) and answer.get_json()["message"], body
    assert database_digest() == before
    # A manager (no Staff role) does not see the Staff-shared report.
    assert manager.get(url).status_code == 404
    # The owner deletes it; then it is gone for everyone.
    assert post(owner, url + "/delete", {}, token).status_code == 200
    assert reader.get(url).status_code == 404 and db.session.get(SavedReport, shared["id"]) is None


def test_an_admin_may_change_any_shared_report(app_ctx, deals_table) -> None:  # noqa: ANN001, F811
    staff1, admin = Actor.for_user_id(user_id("staff1")), Actor.for_user_id(user_id("admin"))
    report = saved_reports.save(staff1, "Отчёт", definition(deals_table), [role_id("Staff")])
    changed = saved_reports.save(admin, "Отчёт админа", None, report_id=report.id)
    assert changed.name == "Отчёт админа" and changed.owner_id == user_id("staff1")
    assert [r.id for r in changed.roles] == [role_id("Staff")]  # roles kept when not given
    saved_reports.delete(report.id, admin)
    assert db.session.get(SavedReport, report.id) is None


def attachment_book(message: Any) -> openpyxl.Workbook:  # noqa: ANN401
    [part] = list(message.iter_attachments())
    assert part.get_filename().endswith(".xlsx")
    return openpyxl.load_workbook(io.BytesIO(part.get_content()))


def test_a_saved_report_is_mailed_on_a_schedule_as_its_workbook(app, deals_table, smtp_sink) -> None:  # noqa: ANN001, F811
    staff1, staff2 = Actor.for_user_id(user_id("staff1")), Actor.for_user_id(user_id("staff2"))
    name = f"Отчёт по этапам {uuid.uuid4().hex[:8]}"
    report = saved_reports.save(staff1, name, definition(deals_table), [role_id("Staff")])
    data = {"report_id": report.id, "frequency": "daily", "at_time": "08:00", "to_owner": True}
    for bad in ({"report_id": "999999"}, {"report_id": "x"}):
        with pytest.raises(ScheduleError):
            schedules.save(staff1, {**data, **bad})
        db.session.rollback()
    mine = schedules.save(staff1, {**data, "file_format": "csv"}, language="ru")
    assert mine.file_format == "xlsx" and mine.view_id is None and schedules.title(mine) == name
    theirs = schedules.save(staff2, data, language="ru")  # shared with them: scheduled with their rights
    for schedule, who, count in ((mine, "staff1", 2), (theirs, "staff2", 1)):
        schedule.next_run_at = utcnow() - dt.timedelta(minutes=1)
        db.session.commit()
        [run_id] = [
            r for r in schedules.dispatch() if db.session.get(ExportScheduleRun, r).schedule_id == schedule.id
        ]
        assert schedules.run(run_id, lambda done, total: None)["status"] == "sent"
        [message] = smtp_sink.wait_for(
            lambda m, who=who: name in str(m["Subject"]) and m["X-Envelope-To"] == f"{who}@demo.tabula.local"
        )
        book = attachment_book(message)
        summary = book.worksheets[0]
        values = [row for row in summary.iter_rows(values_only=True) if any(v is not None for v in row)]
        assert values[0][0] == name
        assert ("Выиграна", count, pytest.approx(float(sum_of(who)))) in [tuple(r[:3]) for r in values]
        assert summary._charts  # the chart travels with it
        records = book.worksheets[1]
        assert records.max_row == count + 1  # header + the rows behind it, as the reader may see them
    # The owner stops sharing: the reader's schedule stops, and they are told why.
    saved_reports.save(staff1, name, None, [], report_id=report.id)
    theirs = db.session.get(ExportSchedule, theirs.id)
    theirs.next_run_at = utcnow() - dt.timedelta(minutes=1)
    db.session.commit()
    later = utcnow() + dt.timedelta(days=1)  # the next day's slot (today's was sent)
    [run_id] = [
        r for r in schedules.dispatch(later) if db.session.get(ExportScheduleRun, r).schedule_id == theirs.id
    ]
    assert schedules.run(run_id, lambda done, total: None)["status"] == "stopped"
    db.session.expire_all()
    assert not db.session.get(ExportSchedule, theirs.id).active
    # Deleting the report deletes its schedules.
    ids = [mine.id, theirs.id]
    saved_reports.delete(report.id, staff1)
    remaining = select(ExportSchedule).where(ExportSchedule.id.in_(ids))
    assert db.session.scalars(remaining).all() == []


def sum_of(who: str) -> float:
    return {"staff1": 1234.5 + 10, "staff2": 99}[who]


def test_the_schedule_form_offers_saved_reports(app, deals_table) -> None:  # noqa: ANN001, F811
    staff1 = Actor.for_user_id(user_id("staff1"))
    report = saved_reports.save(staff1, "Отчёт «для почты»", definition(deals_table))
    [owner] = clients(app, "staff1")
    form = owner.get(f"/exports/schedules/new?report={report.id}").get_data(as_text=True)
    assert f'<option value="{report.id}" selected>' in form and 'name="report_id"' in form
    data = {
        "csrf_token": csrf_token(form),
        "report_id": str(report.id),
        "frequency": "weekly",
        "weekdays": ["0"],
        "at_time": "07:15",
        "to_owner": "y",
    }
    saved = owner.post("/exports/schedules/new", data=data)
    assert saved.status_code == 302
    schedule = db.session.scalar(select(ExportSchedule).where(ExportSchedule.report_id == report.id))
    page = owner.get(f"/exports/schedules/{schedule.id}").get_data(as_text=True)
    assert "для почты" in page and 'name="report_id"' in page
    assert "для почты" in owner.get("/exports/").get_data(as_text=True)
