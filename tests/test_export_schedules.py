"""Scheduled exports: a saved view exported on a calendar in TABULA_TIMEZONE and mailed (to a real SMTP
server) by the real scheduler and worker; one run per slot, missed slots once; the owner's rights each run."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys
from typing import Any

import openpyxl
import pytest
from sqlalchemy import select

from app.extensions import db
from custom_fields import runtime, saved_views
from custom_fields.access import Actor, save_rules
from exports import schedules
from exports.schedules import ScheduleError
from models.exports import ExportFile, ExportSchedule, ExportScheduleRun
from models.system import utcnow
from tests.conftest import DEMO_PASSWORD, ROOT, csrf_token, login, signed_in
from tests.test_exports import deals_table, role_id, user_id  # noqa: F401 (a fixture)

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def aware(moment: dt.datetime) -> dt.datetime:
    """As stored: SQLite gives date-times back without their zone (UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def calendar(frequency: str, at_time: str, weekdays: list[int] | None = None, day: int | None = None) -> Any:
    return ExportSchedule(frequency=frequency, at_time=at_time, weekdays=weekdays or [], month_day=day)


def test_slots_follow_the_local_calendar(app_ctx) -> None:  # noqa: ANN001
    assert app_ctx.config["BABEL_DEFAULT_TIMEZONE"] == "Europe/Moscow"  # UTC+3 all year
    daily = calendar("daily", "08:00")
    assert schedules.next_slot(daily, at("2026-03-10T04:00")) == at("2026-03-10T05:00")
    assert schedules.next_slot(daily, at("2026-03-10T05:00")) == at("2026-03-11T05:00")  # strictly after
    # Monday and Friday 09:30; asked on a Wednesday.
    weekly = calendar("weekly", "09:30", [0, 4])
    assert schedules.next_slot(weekly, at("2026-12-02T10:00")) == at("2026-12-04T06:30")
    assert schedules.next_slot(weekly, at("2026-12-04T06:30")) == at("2026-12-07T06:30")
    # Day 31 is the last day of shorter months, leap years included.
    monthly = calendar("monthly", "08:00", day=31)
    assert schedules.next_slot(monthly, at("2027-02-01T00:00")) == at("2027-02-28T05:00")
    assert schedules.next_slot(monthly, at("2028-02-01T00:00")) == at("2028-02-29T05:00")
    assert schedules.next_slot(monthly, at("2027-03-01T00:00")) == at("2027-03-31T05:00")
    assert schedules.next_slot(calendar("monthly", "23:59", day=15), at("2027-01-15T21:00")) == at(
        "2027-02-15T20:59"
    )
    # The latest slot at or before a moment: what a scheduler back from downtime sends, once.
    assert schedules.latest_slot(daily, at("2026-03-13T04:59")) == at("2026-03-12T05:00")
    assert schedules.latest_slot(daily, at("2026-03-13T05:00")) == at("2026-03-13T05:00")
    assert schedules.latest_slot(monthly, at("2027-03-20T00:00")) == at("2027-02-28T05:00")


def test_slots_keep_local_time_across_daylight_saving(app_ctx) -> None:  # noqa: ANN001
    app_ctx.config["BABEL_DEFAULT_TIMEZONE"] = "Europe/Berlin"
    try:
        daily = calendar("daily", "08:00")
        assert schedules.next_slot(daily, at("2027-03-27T12:00")) == at("2027-03-28T06:00")  # summer time
        assert schedules.next_slot(daily, at("2027-03-26T12:00")) == at("2027-03-27T07:00")  # winter time
    finally:
        app_ctx.config["BABEL_DEFAULT_TIMEZONE"] = "Europe/Moscow"


def staff_view(deals_table: dict[str, Any], who: str = "staff1") -> int:  # noqa: F811
    actor = Actor.for_user_id(user_id(who))
    names = deals_table["names"]
    state = {"filter": {"field": names["Сумма"], "op": "gt", "value": "5"}, "sort": [names["Сумма"]]}
    return saved_views.save(deals_table["slug"], actor, "Крупные «сделки»", state).id


def new_schedule(deals_table: dict[str, Any], **changes: Any) -> ExportSchedule:  # noqa: F811
    data = {
        "view_id": staff_view(deals_table),
        "frequency": "daily",
        "at_time": "08:00",
        "file_format": "xlsx",
        "recipient_ids": [user_id("admin")],
        "to_owner": True,
        **changes,
    }
    return schedules.save(Actor.for_user_id(user_id("staff1")), data, language="ru")


def test_a_schedule_is_checked_before_it_is_saved(app_ctx, deals_table) -> None:  # noqa: ANN001, F811
    before = db.session.scalar(select(db.func.count()).select_from(ExportSchedule))
    view = staff_view(deals_table)
    staff1 = Actor.for_user_id(user_id("staff1"))
    good = {"view_id": view, "frequency": "daily", "at_time": "08:00", "to_owner": True}
    for bad in (
        {"view_id": staff_view(deals_table, "staff2")},  # another user's personal view
        {"view_id": "x"},
        {"frequency": "hourly"},
        {"frequency": "weekly", "weekdays": []},
        {"frequency": "monthly", "month_day": "32"},
        {"frequency": "monthly", "month_day": "²"},
        {"at_time": "25:00"},
        {"at_time": "8"},
        {"file_format": "pdf"},
        {"recipient_ids": ["999999"]},
        {"to_owner": False, "recipient_ids": []},
    ):
        with pytest.raises(ScheduleError):
            schedules.save(staff1, {**good, **bad})
        db.session.rollback()
    assert db.session.scalar(select(db.func.count()).select_from(ExportSchedule)) == before
    # Without the export right the view is not offered at all.
    save_rules(role_id("Staff"), tables={deals_table["entity"].id: {"export": False}})
    runtime.refresh()
    with pytest.raises(ScheduleError):
        schedules.save(staff1, good)


def test_each_slot_runs_once_and_missed_slots_once(app_ctx, deals_table) -> None:  # noqa: ANN001, F811
    schedule = new_schedule(deals_table)
    now = utcnow()
    assert aware(schedule.next_run_at) > now
    schedule.next_run_at = now - dt.timedelta(days=3)  # the scheduler was down for three days
    db.session.commit()
    started = schedules.dispatch(now)
    [run] = schedules.runs(schedule)
    assert run.id in started
    assert aware(run.slot_at) == schedules.latest_slot(schedule, now) > now - dt.timedelta(days=1)
    assert aware(schedule.next_run_at) == schedules.next_slot(schedule, now) > now
    assert schedule.id not in schedule_ids(schedules.dispatch(now))  # a second scheduler, or the same twice
    # Another scheduler took the same slot first: nothing is doubled.
    schedule.next_run_at = run.slot_at
    db.session.commit()
    assert schedule.id not in schedule_ids(schedules.dispatch(now)) and len(schedules.runs(schedule)) == 1
    # Paused: nothing is due; resumed: from now on, the missed slots are not sent.
    schedules.pause(schedule)
    assert schedule.id not in schedule_ids(schedules.dispatch(now + dt.timedelta(days=2)))
    schedules.resume(schedule)
    assert aware(schedule.next_run_at) > utcnow()


def schedule_ids(run_ids: list[int]) -> set[int]:
    """The schedules ``dispatch`` started runs of (other tests' schedules may be due too)."""
    return {db.session.get(ExportScheduleRun, r).schedule_id for r in run_ids}


def attachment_rows(message: Any) -> list[tuple]:
    [part] = [p for p in message.iter_attachments()]
    assert part.get_filename().endswith(".xlsx")
    book = openpyxl.load_workbook(io.BytesIO(part.get_content()))
    return [tuple(row) for sheet in book for row in sheet.iter_rows(values_only=True)]


def test_the_scheduler_mails_the_view_as_its_owner_sees_it(app, env, deals_table, worker, smtp_sink) -> None:  # noqa: ANN001, F811
    schedule = new_schedule(deals_table)
    schedule.next_run_at = utcnow() - dt.timedelta(minutes=5)
    db.session.commit()
    schedule_id, name = schedule.id, schedules.title(schedule)  # the table's name is this test's own
    assert "Крупные «сделки»" in name
    cron = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "cron"],
        env={**env, "TABULA_SCHEDULE_SECONDS": "1"},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        [message] = smtp_sink.wait_for(lambda m: name in str(m["Subject"]), timeout=90)
    finally:
        cron.terminate()
        cron.wait(30)
    assert set(message["X-Envelope-To"].split(", ")) == {"staff1@demo.tabula.local", "admin@example.com"}
    assert "выгрузка" in str(message["Subject"])  # in the language it was scheduled in
    rows = attachment_rows(message)
    flat = [cell for row in rows for cell in row]
    # staff1's rows above 5, sorted; not staff2's, no hidden field, a formula-like title kept as text.
    assert [r[0] for r in rows[1:]] == ["Моя сделка", "=1+2"]
    assert "Чужая" not in flat and "тайна" not in flat and "Секрет" not in rows[0]
    db.session.expire_all()
    [run] = schedules.runs(db.session.get(ExportSchedule, schedule_id))
    assert (run.status, run.recipients) == ("sent", 2)
    assert aware(db.session.get(ExportSchedule, schedule_id).next_run_at) > utcnow()


def test_a_large_file_is_linked_and_only_its_recipients_download_it(app, deals_table, smtp_sink) -> None:  # noqa: ANN001, F811
    schedule = new_schedule(deals_table, recipient_ids=[user_id("staff2")], to_owner=False)
    schedule.next_run_at = utcnow()
    db.session.commit()
    app.config["TABULA_EXPORT_ATTACH_MB"] = 0
    try:
        [run_id] = [r for r in schedules.dispatch() if schedule_ids([r]) == {schedule.id}]
        assert schedules.run(run_id, lambda done, total: None)["status"] == "linked"
    finally:
        app.config["TABULA_EXPORT_ATTACH_MB"] = 10
    run = db.session.get(ExportScheduleRun, run_id)
    name = schedules.title(schedule)  # the table's name is this test's own
    [message] = smtp_sink.wait_for(
        lambda m: (
            name in str(m["Subject"]) and f"/exports/{run.export_id}" in m.get_body(("plain",)).get_content()
        )
    )
    assert not list(message.iter_attachments())
    assert message["X-Envelope-To"] == "staff2@demo.tabula.local"
    recipient, stranger = app.test_client(), app.test_client()
    assert signed_in(login(recipient, "staff2", DEMO_PASSWORD))
    assert signed_in(login(stranger, "staff3", DEMO_PASSWORD))
    download = recipient.get(f"/exports/{run.export_id}/download")
    assert download.status_code == 200 and download.data[:2] == b"PK"
    page = recipient.get(f"/exports/{run.export_id}").get_data(as_text=True)
    assert "export-cancel" not in page and "/delete" not in page  # theirs to read, not to remove
    assert (
        recipient.post(f"/exports/{run.export_id}/delete", data={"csrf_token": csrf_token(page)}).status_code
        == 404
    )
    for path in ("", "/status", "/download"):
        assert stranger.get(f"/exports/{run.export_id}{path}").status_code == 404
    assert db.session.get(ExportFile, run.export_id) is not None


def test_an_owner_without_the_right_stops_the_schedule_and_is_told(app, deals_table, smtp_sink) -> None:  # noqa: ANN001, F811
    schedule = new_schedule(deals_table)
    save_rules(role_id("Staff"), tables={deals_table["entity"].id: {"export": False}})
    runtime.refresh()
    schedule.next_run_at = utcnow()
    db.session.commit()
    exports_before = db.session.scalar(select(db.func.count()).select_from(ExportFile))
    [run_id] = [r for r in schedules.dispatch() if schedule_ids([r]) == {schedule.id}]
    assert schedules.run(run_id, lambda done, total: None)["status"] == "stopped"
    db.session.expire_all()
    schedule = db.session.get(ExportSchedule, schedule.id)
    assert not schedule.active and schedule.stopped_reason
    assert db.session.scalar(select(db.func.count()).select_from(ExportFile)) == exports_before
    [told] = smtp_sink.wait_for(
        lambda m: (
            m["X-Envelope-To"] == "staff1@demo.tabula.local"
            and "остановлен" in str(m["Subject"])
            and schedules.title(schedule) in m.get_body(("plain",)).get_content()
        )
    )
    assert schedule.stopped_reason in told.get_body(("plain",)).get_content()
    later = schedules.dispatch(utcnow() + dt.timedelta(days=2))
    assert schedule.id not in schedule_ids(later)  # stopped stays stopped


def test_schedule_screens(app, deals_table, smtp_sink) -> None:  # noqa: ANN001, F811
    view = staff_view(deals_table)
    owner, other = app.test_client(), app.test_client()
    assert signed_in(login(owner, "staff1", DEMO_PASSWORD))
    assert signed_in(login(other, "staff2", DEMO_PASSWORD))
    form = owner.get(f"/exports/schedules/new?view={view}").get_data(as_text=True)
    assert f'<option value="{view}" selected>' in form
    token = csrf_token(form)
    data = {
        "csrf_token": token,
        "view_id": str(view),
        "frequency": "weekly",
        "at_time": "07:15",
        "to_owner": "y",
    }
    refused = owner.post("/exports/schedules/new", data=data)
    assert refused.status_code == 422
    assert "Choose at least one day of the week." in refused.get_data(as_text=True)
    count = select(db.func.count()).select_from(ExportSchedule).where(ExportSchedule.view_id == view)
    assert db.session.scalar(count) == 0
    # Another user's personal view, or a table without the export right, is not theirs to schedule.
    foreign = staff_view(deals_table, "staff2")
    refused = owner.post("/exports/schedules/new", data={**data, "weekdays": ["0"], "view_id": str(foreign)})
    assert refused.status_code == 422
    mine = select(db.func.count()).select_from(ExportSchedule).where(ExportSchedule.view_id == foreign)
    assert db.session.scalar(mine) == 0
    saved = owner.post("/exports/schedules/new", data={**data, "weekdays": ["0", "3"]})
    assert saved.status_code == 302
    schedule = db.session.scalar(select(ExportSchedule).where(ExportSchedule.view_id == view))
    assert (schedule.weekdays, schedule.at_time, schedule.owner_id) == ([0, 3], "07:15", user_id("staff1"))
    assert f'data-id="{schedule.id}"' in owner.get("/exports/").get_data(as_text=True)
    # Someone else's schedule does not exist for them.
    assert other.get(f"/exports/schedules/{schedule.id}").status_code == 404
    other_token = csrf_token(other.get("/exports/").get_data(as_text=True))
    for action in ("pause", "resume", "delete", "send", ""):
        path = f"/exports/schedules/{schedule.id}" + (f"/{action}" if action else "")
        assert other.post(path, data={**data, "csrf_token": other_token}).status_code == 404
    assert owner.post(f"/exports/schedules/{schedule.id}/pause", data={}).status_code == 400  # no CSRF token
    assert (
        owner.post(f"/exports/schedules/{schedule.id}/pause", data={"csrf_token": token}).status_code == 302
    )
    db.session.expire_all()
    assert not db.session.get(ExportSchedule, schedule.id).active
    page = owner.get(f"/exports/schedules/{schedule.id}").get_data(as_text=True)
    assert 'id="schedule-resume"' in page and "Крупные «сделки»" in page and "07:15" in page
    owner.post(f"/exports/schedules/{schedule.id}/resume", data={"csrf_token": token})
    db.session.expire_all()
    assert db.session.get(ExportSchedule, schedule.id).active
    schedule_id = schedule.id
    assert (
        owner.post(f"/exports/schedules/{schedule_id}/delete", data={"csrf_token": token}).status_code == 302
    )
    db.session.expire_all()
    assert db.session.get(ExportSchedule, schedule_id) is None


def test_a_saved_view_exports_by_its_id(app, deals_table) -> None:  # noqa: ANN001, F811
    view = staff_view(deals_table)
    foreign = staff_view(deals_table, "staff2")
    client = app.test_client()
    assert signed_in(login(client, "staff1", DEMO_PASSWORD))
    token = csrf_token(client.get("/exports/").get_data(as_text=True))
    url = f"/exports/start/{deals_table['slug']}"
    accept = {"Accept": "application/json"}
    started = client.post(url, data={"csrf_token": token, "view": str(view)}, headers=accept)
    assert started.status_code == 202
    export = db.session.get(ExportFile, started.get_json()["id"])
    names = deals_table["names"]
    assert export.view_state["filter"] == {"field": names["Сумма"], "op": "gt", "value": "5"}
    assert export.view_state["sort"] == [names["Сумма"]]
    before = db.session.scalar(select(db.func.count()).select_from(ExportFile))
    for bad in (str(foreign), "999999", "x"):  # another user's personal view does not exist for them
        refused = client.post(url, data={"csrf_token": token, "view": bad}, headers=accept)
        assert refused.status_code == 404 and refused.get_json()["message"]
    assert db.session.scalar(select(db.func.count()).select_from(ExportFile)) == before


def test_a_run_whose_job_died_is_failed_in_the_log(app_ctx, deals_table) -> None:  # noqa: ANN001, F811
    from models import JobRun, JobStatus

    schedule = new_schedule(deals_table)
    job = JobRun(kind="export_schedule", status=JobStatus.failed, message="The worker stopped (killed).")
    db.session.add(job)
    db.session.flush()
    export = ExportFile(owner_id=schedule.owner_id, title="x", status="running", job_run_id=job.id)
    db.session.add(export)
    db.session.flush()
    run = ExportScheduleRun(
        schedule_id=schedule.id, slot_at=utcnow(), status="running", job_run_id=job.id, export_id=export.id
    )
    db.session.add(run)
    db.session.commit()
    [shown] = schedules.runs(schedule)
    assert (shown.status, shown.message) == ("failed", "The worker stopped (killed).")
    assert db.session.get(ExportFile, export.id).status == "failed"
    assert schedules.run(run.id, lambda done, total: None) == {"status": "failed"}  # not run again


def test_a_slot_the_queue_could_not_take_is_logged_failed(app_ctx, deals_table) -> None:  # noqa: ANN001, F811
    schedule = new_schedule(deals_table)
    schedule.next_run_at = utcnow() - dt.timedelta(minutes=1)
    db.session.commit()
    started = schedules.dispatch(utcnow(), enqueue=lambda run_id: None)  # as when Redis is unreachable
    assert schedule.id not in schedule_ids(started)
    [run] = schedules.runs(schedule)
    assert run.status == "failed" and "unreachable" in run.message
    assert aware(db.session.get(ExportSchedule, schedule.id).next_run_at) > utcnow()  # the next slot stands
