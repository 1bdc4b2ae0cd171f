"""A record's page around its fields: related lists, the one timeline, quick actions (log a call, add a
task) and the My tasks page, through the browser's routes on a real database."""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid
from typing import Any

import pytest
from flask_appbuilder.security.sqla.models import Role, User
from sqlalchemy import func, select

from app.extensions import db
from custom_fields import access, records, runtime
from custom_fields.access import Actor
from tests.conftest import csrf_token

pytestmark = pytest.mark.usefixtures("app_ctx")


def tag(prefix: str = "Rel") -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def user(username: str) -> User:
    return db.session.scalar(select(User).where(User.username == username))


def actor(username: str) -> Actor:
    return Actor.of_user(user(username))


def admin() -> Actor:
    return actor("admin")


def model(slug: str) -> type:
    return runtime.current().classes[slug]


def row(slug: str, pk: int) -> Any:
    db.session.expire_all()
    return db.session.get(model(slug), pk)


def count(slug: str, **where: Any) -> int:
    cls = model(slug)
    query = select(func.count()).select_from(cls).where(cls.deleted_at.is_(None))
    for name, value in where.items():
        query = query.where(getattr(cls, name) == value)
    return db.session.scalar(query) or 0


def stage_id() -> int:
    stages = model("stages")
    return db.session.scalar(select(stages.id).order_by(stages.id).limit(1))


def page(client: Any, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def panel(text: str, slug: str, link: str) -> str:
    """The HTML of one related list on a record's page."""
    start = f'<div class="panel panel-default tabula-related" id="related-{slug}-{link}"'
    match = re.search(rf"{re.escape(start)}.*?(</table>|None yet)", text, re.S)
    assert match, f"no related list {slug}.{link}"
    return match.group(0)


def total(text: str, slug: str, link: str) -> int:
    match = re.search(rf'id="related-{slug}-{link}" data-table="{slug}" data-total="(\d+)"', text)
    assert match, f"no related list {slug}.{link}"
    return int(match.group(1))


def flashes(text: str) -> str:
    return html.unescape(" ".join(re.findall(r'class="alert[^"]*"[^>]*>(.*?)</div>', text, re.S)))


def company(name: str, by: Actor | None = None, **values: Any) -> int:
    return records.create("companies", {"name": name, **values}, by or admin()).id


# --- related lists -----------------------------------------------------------------------------------------


def test_company_page_lists_every_linked_table(admin_client: Any) -> None:
    name = tag("Acme")
    cid = company(name)
    other = company(tag("Other"))
    contacts = [
        records.create("contacts", {"first_name": tag("C"), "company_id": cid}, admin()).id for _ in range(12)
    ]
    elsewhere = records.create("contacts", {"first_name": tag("Elsewhere"), "company_id": other}, admin()).id
    deal = records.create("deals", {"title": tag("Deal"), "company_id": cid, "stage_id": stage_id()}, admin())
    records.create("activities", {"subject": tag("Call"), "company_id": cid}, admin())
    records.create("tasks", {"title": tag("Task"), "company_id": cid}, admin())
    records.create("invoices", {"number": tag("INV"), "company_id": cid, "amount": "10"}, admin())
    records.create("leads", {"title": tag("Lead"), "company_id": cid}, admin())

    text = page(admin_client, f"/t/companies/show/{cid}")
    assert total(text, "contacts", "company_id") == 12
    for slug in ("deals", "activities", "tasks", "invoices", "leads"):
        assert total(text, slug, "company_id") == 1, slug
    contacts_html = panel(text, "contacts", "company_id")
    # Newest first, ten of them, each linked.
    shown = [int(x) for x in re.findall(r'<tr data-id="(\d+)">', contacts_html)]
    assert shown == sorted(contacts, reverse=True)[:10]
    assert f'href="/t/contacts/show/{contacts[-1]}"' in contacts_html
    assert "Showing 10 of 12." in html.unescape(text)
    assert f"/t/deals/show/{deal.id}" in panel(text, "deals", "company_id")
    # "Add" opens the form already linked to the company.
    assert f'href="/t/contacts/add?company_id={cid}"' in text
    add_form = page(admin_client, f"/t/contacts/add?company_id={cid}")
    select_html = re.search(r'<select[^>]*name="company_id".*?</select>', add_form, re.S)
    assert select_html and f'value="{cid}"' in select_html.group(0)

    # "Show all" is the contacts list filtered on the company: only its contacts (all twelve).
    link = re.search(r'href="([^"]+)">Show all', contacts_html)
    assert link, contacts_html
    assert "_flt_0_company_id" in link.group(1)
    listing = page(admin_client, html.unescape(link.group(1)))
    shown = {int(x) for x in re.findall(r'/t/contacts/show/(\d+)"', listing)}
    assert shown == set(contacts)
    assert elsewhere in {
        int(x) for x in re.findall(r'/t/contacts/show/(\d+)"', page(admin_client, "/t/contacts/list/"))
    }


def test_contact_and_deal_pages_list_their_records(admin_client: Any) -> None:
    cid = company(tag("Co"))
    contact = records.create("contacts", {"first_name": tag("Ann"), "company_id": cid}, admin()).id
    deal = records.create(
        "deals",
        {"title": tag("D"), "company_id": cid, "contact_id": contact, "stage_id": stage_id()},
        admin(),
    ).id
    records.create("activities", {"subject": tag("A"), "contact_id": contact, "deal_id": deal}, admin())
    records.create("tasks", {"title": tag("T"), "deal_id": deal}, admin())
    records.create("deal_lines", {"deal_id": deal, "description": tag("Line"), "price": "5"}, admin())
    records.create("invoices", {"number": tag("I"), "deal_id": deal, "amount": "5"}, admin())

    text = page(admin_client, f"/t/contacts/show/{contact}")
    assert total(text, "deals", "contact_id") == 1
    assert total(text, "activities", "contact_id") == 1
    assert total(text, "tasks", "contact_id") == 0
    assert "None yet" in panel(text, "tasks", "contact_id")

    text = page(admin_client, f"/t/deals/show/{deal}")
    for slug in ("deal_lines", "activities", "tasks", "invoices"):
        assert total(text, slug, "deal_id") == 1, slug


def test_staff_see_only_related_rows_they_may_read(staff_client: Any) -> None:
    staff1, staff2 = user("staff1"), user("staff2")
    cid = company(tag("Shared"), owner_id=staff1.id)
    mine = records.create("activities", {"subject": tag("Mine"), "company_id": cid}, actor("staff1")).id
    theirs = records.create(
        "activities", {"subject": tag("Theirs"), "company_id": cid, "owner_id": staff2.id}, admin()
    ).id
    records.create(
        "contacts", {"first_name": tag("Hidden"), "company_id": cid, "owner_id": staff2.id}, admin()
    )
    records.create("tasks", {"title": tag("Assigned"), "company_id": cid, "assignee_id": staff1.id}, admin())

    text = page(staff_client, f"/t/companies/show/{cid}")
    assert total(text, "activities", "company_id") == 1
    assert f"/t/activities/show/{mine}" in text
    assert f"/t/activities/show/{theirs}" not in text
    assert total(text, "contacts", "company_id") == 0
    assert total(text, "tasks", "company_id") == 1  # assigned to them, owned by admin
    # The company of another user is not theirs to open at all.
    other = company(tag("NotMine"), owner_id=staff2.id)
    assert staff_client.get(f"/t/companies/show/{other}").status_code in (302, 403, 404)


def test_custom_table_linking_to_companies_gets_a_related_list(admin_client: Any) -> None:
    from tests.tables_helpers import new_field, new_table

    table = new_table(tag("Visits"))
    companies = runtime.current().entities["companies"]
    new_field(table, "Where", "link", settings={"target": companies.id})
    new_field(table, "Note", "text")
    entity = runtime.current().entities[table.slug]
    link = next(f for f in entity.live_fields if f.type == "link")
    note = next(f for f in entity.live_fields if f.label == "Note")
    cid = company(tag("Visited"))
    values = {f.name: tag("Name") for f in entity.live_fields if f.required and f.type == "text"}
    records.create(table.slug, {**values, link.name: cid, note.name: "<b>bold</b>"}, admin())
    text = page(admin_client, f"/t/companies/show/{cid}")
    assert total(text, table.slug, link.name) == 1
    assert "&lt;b&gt;bold&lt;/b&gt;" in panel(text, table.slug, link.name)
    assert "<b>bold</b>" not in text


# --- the timeline ------------------------------------------------------------------------------------------


def test_timeline_merges_activities_tasks_and_history_newest_first(admin_client: Any) -> None:
    cid = company(tag("Timeline"))
    records.update("companies", cid, {"region": "North"}, admin(), expected_version=1)
    old = records.create(
        "activities",
        {"subject": tag("OldCall"), "company_id": cid, "occurred_at": "2020-01-02T10:00:00+00:00"},
        admin(),
    ).id
    future = records.create(
        "activities",
        {
            "subject": tag("Complaint"),
            "kind": "complaint",
            "company_id": cid,
            "occurred_at": "2099-01-02T10:00:00+00:00",
        },
        admin(),
    ).id
    task = records.create("tasks", {"title": tag("Todo"), "company_id": cid}, admin()).id

    text = page(admin_client, f"/t/companies/show/{cid}")
    timeline = re.search(r'<ul class="list-unstyled tabula-timeline" id="record-timeline">.*', text, re.S)
    assert timeline
    body = timeline.group(0)
    positions = {
        "future": body.index(f"/t/activities/show/{future}"),
        "task": body.index(f"/t/tasks/show/{task}"),
        "changed": body.index("Changed"),
        "created": body.index("tabula-change-create"),
        "old": body.index(f"/t/activities/show/{old}"),
    }
    assert (
        positions["future"]
        < positions["task"]
        < positions["changed"]
        < positions["created"]
        < positions["old"]
    )
    assert "North" in body
    assert re.search(r'tabula-timeline-activity complaint"', body)
    assert "fa-exclamation-triangle" in body and "fa-phone" in body


def test_timeline_leaves_out_what_the_user_may_not_read(staff_client: Any) -> None:
    staff1, staff2 = user("staff1"), user("staff2")
    cid = company(tag("Mixed"), owner_id=staff1.id)
    theirs = records.create(
        "activities", {"subject": tag("Secret"), "company_id": cid, "owner_id": staff2.id}, admin()
    ).id
    values = {"title": tag("Their task"), "company_id": cid, "assignee_id": staff2.id, "owner_id": staff2.id}
    task = records.create("tasks", values, admin()).id
    mine = records.create("tasks", {"title": tag("My task"), "company_id": cid}, actor("staff1")).id
    text = page(staff_client, f"/t/companies/show/{cid}")
    assert f"/t/tasks/show/{mine}" in text
    assert f"/t/activities/show/{theirs}" not in text
    assert f"/t/tasks/show/{task}" not in text


def test_hidden_fields_stay_hidden_on_the_record_page(staff_client: Any) -> None:
    staff1 = user("staff1")
    staff_role = db.session.scalar(select(Role.id).where(Role.name == "Staff"))
    activities = runtime.current().entities["activities"]
    outcome = activities.field_by_name("outcome")
    link = activities.field_by_name("company_id")
    cid = company(tag("Hide"), owner_id=staff1.id)
    records.create(
        "activities", {"subject": tag("Phone call"), "company_id": cid, "outcome": "busy"}, actor("staff1")
    )
    assert "Busy" in page(staff_client, f"/t/companies/show/{cid}")
    access.set_field_mode(staff_role, outcome.id, "hidden")
    try:
        runtime.refresh()
        text = page(staff_client, f"/t/companies/show/{cid}")
        assert total(text, "activities", "company_id") == 1
        assert "Busy" not in text and 'name="outcome"' not in text
        access.set_field_mode(staff_role, link.id, "hidden")
        runtime.refresh()
        text = page(staff_client, f"/t/companies/show/{cid}")
        assert 'id="related-activities-company_id"' not in text
        assert "Log a call" not in text  # cannot link a call to the company
    finally:
        access.save_rules(staff_role, fields={outcome.id: None, link.id: None})
        runtime.refresh()


# --- quick actions -----------------------------------------------------------------------------------------


def test_log_a_call_and_add_a_task_from_a_company(staff_client: Any) -> None:
    staff1 = user("staff1")
    cid = company(tag("Quick"), owner_id=staff1.id)
    text = page(staff_client, f"/t/companies/show/{cid}")
    assert "Log a call" in text and "Add a task" in text
    token = csrf_token(text)
    subject = tag("Rang")
    response = staff_client.post(
        f"/record/companies/{cid}/log-call",
        data={"csrf_token": token, "subject": subject, "outcome": "no_answer", "direction": "inbound",
              "body": "Will call back"},
    )  # fmt: skip
    assert response.status_code == 302
    assert f"/t/companies/show/{cid}" in response.headers["Location"]
    acts = model("activities")
    call = db.session.scalar(select(acts).where(acts.subject == subject))
    assert call is not None
    assert (call.company_id, call.kind, call.outcome, call.direction, call.body, call.owner_id) == (
        cid, "call", "no_answer", "inbound", "Will call back", staff1.id,
    )  # fmt: skip
    assert call.occurred_at is not None
    assert "The call was logged." in flashes(page(staff_client, response.headers["Location"]))

    title = tag("Send offer")
    response = staff_client.post(
        f"/record/companies/{cid}/add-task",
        data={"csrf_token": token, "title": title, "due_at": "2031-05-06T09:30"},
    )
    assert response.status_code == 302
    tasks = model("tasks")
    created = db.session.scalar(select(tasks).where(tasks.title == title))
    assert created.company_id == cid and created.assignee_id == staff1.id and created.status == "open"
    assert created.due_at is not None


def test_quick_actions_on_contact_and_deal_link_the_right_field(admin_client: Any) -> None:
    cid = company(tag("Q2"))
    contact = records.create("contacts", {"first_name": tag("Bob"), "company_id": cid}, admin()).id
    deal = records.create("deals", {"title": tag("QD"), "stage_id": stage_id()}, admin()).id
    token = csrf_token(page(admin_client, f"/t/contacts/show/{contact}"))
    staff2 = user("staff2")
    for slug, pk, name in (("contacts", contact, "contact_id"), ("deals", deal, "deal_id")):
        subject, title = tag("S"), tag("T")
        admin_client.post(f"/record/{slug}/{pk}/log-call", data={"csrf_token": token, "subject": subject})
        admin_client.post(
            f"/record/{slug}/{pk}/add-task",
            data={"csrf_token": token, "title": title, "assignee_id": str(staff2.id)},
        )
        acts, tasks = model("activities"), model("tasks")
        assert db.session.scalar(select(getattr(acts, name)).where(acts.subject == subject)) == pk
        task = db.session.scalar(select(tasks).where(tasks.title == title))
        assert getattr(task, name) == pk and task.assignee_id == staff2.id


def test_invalid_quick_action_saves_nothing_and_says_why(staff_client: Any) -> None:
    staff1 = user("staff1")
    cid = company(tag("Invalid"), owner_id=staff1.id)
    token = csrf_token(page(staff_client, f"/t/companies/show/{cid}"))
    before = (count("activities", company_id=cid), count("tasks", company_id=cid))
    response = staff_client.post(
        f"/record/companies/{cid}/log-call",
        data={"csrf_token": token, "subject": "x", "outcome": "exploded"},
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert "is not one of the options" in flashes(response.get_data(as_text=True))
    response = staff_client.post(
        f"/record/companies/{cid}/add-task",
        data={"csrf_token": token, "title": "", "due_at": "not a date"},
        follow_redirects=True,
    )
    assert response.status_code == 200
    messages = flashes(response.get_data(as_text=True))
    assert "required" in messages and "Expected a date and time" in messages
    assert (count("activities", company_id=cid), count("tasks", company_id=cid)) == before


def test_quick_actions_refused_without_rights_or_record(staff_client: Any) -> None:
    staff1, staff2 = user("staff1"), user("staff2")
    cid = company(tag("Rights"), owner_id=staff1.id)
    hidden = company(tag("NotYours"), owner_id=staff2.id)
    token = csrf_token(page(staff_client, f"/t/companies/show/{cid}"))
    # Someone else's company: as if it did not exist.
    response = staff_client.post(f"/record/companies/{hidden}/log-call", data={"csrf_token": token})
    assert response.status_code == 404
    assert count("activities", company_id=hidden) == 0
    for url in ("/record/nosuch/1/log-call", "/record/companies/99999999/add-task"):
        assert staff_client.post(url, data={"csrf_token": token, "title": "x"}).status_code == 404
    assert staff_client.post("/record/companies/abc/log-call", data={"csrf_token": token}).status_code == 404
    assert staff_client.post(f"/record/companies/{cid}/log-call", data={}).status_code == 400  # no CSRF
    assert staff_client.get(f"/record/companies/{cid}/log-call").status_code == 405

    staff_role = db.session.scalar(select(Role.id).where(Role.name == "Staff"))
    activities = runtime.current().entities["activities"]
    access.set_table_rights(staff_role, activities.id, {"add": False})
    try:
        runtime.refresh()
        text = page(staff_client, f"/t/companies/show/{cid}")
        assert "Log a call" not in text and "Add a task" in text
        response = staff_client.post(f"/record/companies/{cid}/log-call", data={"csrf_token": token})
        assert response.status_code == 403
        assert count("activities", company_id=cid) == 0
    finally:
        access.set_table_rights(staff_role, activities.id, {"add": None})
        runtime.refresh()


def test_record_actions_hook_renders_get_and_post_actions(admin_client: Any) -> None:
    from custom_fields import hooks
    from views.related import RecordAction

    class Plugin:
        @hooks.hookimpl
        def record_actions(self, entity: Any, rights: Any, record_id: int) -> list[RecordAction]:
            if entity.slug != "companies":
                return []
            return [
                RecordAction("Open <thing>", f"/somewhere/{record_id}"),
                RecordAction("Do it", f"/do/{record_id}", icon="fa-magic", method="post"),
            ]

    cid = company(tag("Act"))
    with hooks.registered(Plugin()):
        text = page(admin_client, f"/t/companies/show/{cid}")
        assert f'href="/somewhere/{cid}"' in text and "Open &lt;thing&gt;" in text
        form = re.search(rf'<form method="post" action="/do/{cid}".*?</form>', text, re.S)
        assert form and 'name="csrf_token"' in form.group(0)
    assert "/somewhere/" not in page(admin_client, f"/t/companies/show/{cid}")


# --- my tasks ----------------------------------------------------------------------------------------------


def _my_task(title: str, due: dt.datetime | None, **values: Any) -> int:
    values = {"title": title, **values}
    if due is not None:
        values["due_at"] = due.isoformat()
    return records.create("tasks", values, actor("staff1")).id


def test_my_tasks_groups_sorts_and_marks_overdue(staff_client: Any) -> None:
    staff2 = user("staff2")
    now = dt.datetime.now(dt.UTC)
    marker = tag("MT")
    later = _my_task(f"{marker} later", now + dt.timedelta(days=3))
    undated = _my_task(f"{marker} undated", None)
    late = _my_task(f"{marker} late", now - dt.timedelta(days=2))
    later_still = _my_task(f"{marker} much later", now + dt.timedelta(days=9))
    other = _my_task(f"{marker} for staff2", now - dt.timedelta(days=1), assignee_id=staff2.id)
    done = _my_task(f"{marker} finished", now - dt.timedelta(days=1), status="done")
    text = page(staff_client, "/my-tasks/")
    rows = re.findall(r'<tr class="my-task([^"]*)" data-id="(\d+)"', text)
    order = [int(pk) for _css, pk in rows]
    classes = {int(pk): css for css, pk in rows}
    assert other not in order and done not in order
    assert order.index(late) < order.index(later) < order.index(later_still) < order.index(undated)
    assert "overdue" in classes[late] and "overdue" not in classes[later]
    assert (
        text.index('id="tasks-overdue"') < text.index('id="tasks-upcoming"') < text.index('id="tasks-none"')
    )
    # Overdue tasks of the past come before any of the others.
    overdue = re.search(r'id="tasks-overdue".*?</table>', text, re.S).group(0)
    assert f'data-id="{late}"' in overdue and f'data-id="{later}"' not in overdue

    text = page(staff_client, "/my-tasks/?done=1")
    assert f'data-id="{done}"' in re.search(r'id="tasks-done".*?</table>', text, re.S).group(0)
    assert "My tasks" in page(staff_client, "/")


def test_my_tasks_done_and_stale(staff_client: Any) -> None:
    pk = _my_task(tag("Finish me"), None)
    text = page(staff_client, "/my-tasks/")
    token = csrf_token(text)
    version = row("tasks", pk).row_version
    response = staff_client.post(f"/my-tasks/{pk}/done", data={"csrf_token": token, "version": str(version)})
    assert response.status_code == 302
    task = row("tasks", pk)
    assert task.status == "done" and task.completed_at is not None
    assert f'data-id="{pk}"' not in page(staff_client, "/my-tasks/")

    stale = _my_task(tag("Stale"), None)
    version = row("tasks", stale).row_version
    records.update("tasks", stale, {"priority": "high"}, admin(), expected_version=version)
    response = staff_client.post(
        f"/my-tasks/{stale}/done", data={"csrf_token": token, "version": str(version)}, follow_redirects=True
    )
    assert response.status_code == 200
    assert "Someone changed this task" in flashes(response.get_data(as_text=True))
    assert row("tasks", stale).status == "open"
    # No version at all is treated as stale too.
    response = staff_client.post(f"/my-tasks/{stale}/done", data={"csrf_token": token})
    assert response.status_code == 302 and row("tasks", stale).status == "open"


def test_my_tasks_refuses_bad_input_and_other_users_tasks(staff_client: Any) -> None:
    staff2 = user("staff2")
    theirs = records.create("tasks", {"title": tag("Theirs"), "assignee_id": staff2.id}, actor("staff2")).id
    token = csrf_token(page(staff_client, "/my-tasks/"))
    response = staff_client.post(f"/my-tasks/{theirs}/done", data={"csrf_token": token, "version": "1"})
    assert response.status_code == 404
    assert row("tasks", theirs).status == "open"
    assert staff_client.post("/my-tasks/abc/done", data={"csrf_token": token}).status_code == 404
    assert staff_client.post("/my-tasks/99999999999/done", data={"csrf_token": token}).status_code == 404
    mine = _my_task(tag("Mine"), None)
    assert staff_client.post(f"/my-tasks/{mine}/done", data={"version": "1"}).status_code == 400
    response = staff_client.post(f"/my-tasks/{mine}/done", data={"csrf_token": token, "version": "x" * 50})
    assert response.status_code == 302
    assert row("tasks", mine).status == "open"
    # Only done=1 shows the done tasks; anything else is the usual list and is never echoed into the page.
    payload = '<script>alert("done")</script>'
    response = staff_client.get("/my-tasks/", query_string={"done": payload})
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'id="tasks-done"' not in text and "/my-tasks/?done=1" in text  # the "show done" link
    assert 'alert("done")' not in text and "alert(&#34;done&#34;)" not in text and "%3Cscript" not in text


def test_my_tasks_needs_sign_in(client: Any) -> None:
    response = client.get("/my-tasks/")
    assert response.status_code in (302, 401, 403)
    assert "/login" in response.headers.get("Location", "/login")
