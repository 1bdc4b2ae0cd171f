"""Global search, the duplicate check on create and merging companies/contacts, on a real database through
the Flask test client."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from app.crm import duplicates, merge
from app.crm import search as searching
from app.extensions import db
from custom_fields import access, history, hooks, records
from custom_fields.access import Actor
from custom_fields.hooks import hookimpl
from custom_fields.runtime import current, refresh
from custom_fields.types import REGISTRY
from models import Stage
from models.records import RecordChange
from tests.conftest import csrf_token
from tests.tables_helpers import valid_inn
from tests.test_write_path import role_id, user_actor


def tag() -> str:
    return uuid.uuid4().hex[:8]


def digits() -> str:
    """A fresh 7-digit subscriber number (phones must not collide with other tests' records)."""
    return str(uuid.uuid4().int)[:7]


def live_stage() -> int:
    """A stage not in the recycle bin (other tests delete some)."""
    return db.session.scalar(select(Stage.id).where(Stage.deleted_at.is_(None)).order_by(Stage.id))


def create(slug: str, values: dict[str, Any], username: str = "admin") -> int:
    return records.create(slug, values, user_actor(username, "ui")).id


def row(slug: str, pk: int) -> Any:
    model = current().classes[slug]
    db.session.expire_all()
    return db.session.get(model, pk)


def answers(client: Any, query: str) -> dict[str, Any]:
    response = client.get("/search/api", query_string={"q": query})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_json()


def found_ids(data: dict[str, Any], slug: str) -> set[int]:
    return {hit["id"] for g in data["groups"] if g["slug"] == slug for hit in g["results"]}


# --- search ------------------------------------------------------------------------------------------------


def test_search_is_case_insensitive_for_cyrillic(app_ctx, admin_client) -> None:  # noqa: ANN001
    t = tag()
    pk = create("companies", {"name": f"ООО Ромашка {t}"})
    data = answers(admin_client, f"ромашка {t}")
    assert pk in found_ids(data, "companies")
    assert found_ids(answers(admin_client, f"РОМАШКА {t.upper()}"), "companies") == {pk}
    contact = create("contacts", {"first_name": "Ёжик", "last_name": f"Туманов{t}"})
    assert contact in found_ids(answers(admin_client, f"ёжик туманов{t}"), "contacts")
    page = admin_client.get("/search/", query_string={"q": f"ромашка {t}"})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f"ООО Ромашка {t}" in html and f"/t/companies/show/{pk}" in html


def test_search_matches_phones_by_digits_and_other_fields(app_ctx, admin_client) -> None:  # noqa: ANN001
    number = digits()
    company = create("companies", {"name": f"Телефонная {tag()}", "phone2": f"+7 916 {number}"})
    lead = create("leads", {"title": f"Заявка {tag()}", "phone": f"8 (916) {number}"})
    typed = f"8 916 {number[:3]}-{number[3:5]}-{number[5:]}"
    data = answers(admin_client, typed)
    assert company in found_ids(data, "companies")
    assert lead in found_ids(data, "leads")
    assert company in found_ids(answers(admin_client, number), "companies")
    hit = next(
        h for g in data["groups"] if g["slug"] == "companies" for h in g["results"] if h["id"] == company
    )
    assert number in hit["detail"].replace(" ", "")  # says which field matched
    mail = f"info-{tag()}@Example.ru"
    contact = create("contacts", {"first_name": "Почта", "email2": mail})
    assert contact in found_ids(answers(admin_client, mail.upper()), "contacts")
    deal_title = f"Сделка Поставка {tag()}"
    stage = live_stage()
    deal = create("deals", {"title": deal_title, "stage_id": stage})
    assert deal in found_ids(answers(admin_client, deal_title.lower()), "deals")


def test_search_respects_scope_and_hidden_fields(app_ctx, app, staff_client, admin_client) -> None:  # noqa: ANN001
    t = tag()
    mine = create("companies", {"name": f"Своя {t}"}, "staff1")
    theirs = create("companies", {"name": f"Чужая {t}"}, "staff2")
    binned = create("companies", {"name": f"Удалённая {t}"}, "staff1")
    records.delete("companies", binned, user_actor("staff1"))
    data = answers(staff_client, t)
    assert found_ids(data, "companies") == {mine}
    page = staff_client.get("/search/", query_string={"q": t}).get_data(as_text=True)
    assert f"Своя {t}" in page and f"Чужая {t}" not in page and f"Удалённая {t}" not in page
    assert found_ids(answers(admin_client, t), "companies") == {mine, theirs}

    # A field hidden from Staff is neither matched nor shown.
    secret = f"secret-{t}@example.com"
    with_mail = create("companies", {"name": f"Скрытая {t}", "email": secret}, "staff1")
    assert with_mail in found_ids(answers(staff_client, secret), "companies")
    email = current().entity("companies").field_by_name("email")
    access.save_rules(role_id("Staff"), fields={email.id: "hidden"})
    refresh()
    try:
        assert found_ids(answers(staff_client, secret), "companies") == set()
        by_name = answers(staff_client, f"Скрытая {t}")
        assert with_mail in found_ids(by_name, "companies") and secret not in json.dumps(by_name)
        page = staff_client.get("/search/", query_string={"q": f"Скрытая {t}"}).get_data(as_text=True)
        assert f"Скрытая {t}" in page and secret not in page
        assert with_mail in found_ids(answers(admin_client, secret), "companies")
    finally:
        access.save_rules(role_id("Staff"), fields={email.id: None})
        refresh()


def test_search_needs_login_and_survives_odd_queries(app, app_ctx, admin_client) -> None:  # noqa: ANN001
    anonymous = app.test_client()
    assert anonymous.get("/search/api?q=abc").status_code in (401, 403)
    assert anonymous.get("/search/?q=abc").status_code == 302
    for query in ["", " ", "%", "_", "%%__", "\\", "'", "x" * 10_000, "💥💥", "8" * 40, "\u202e\ufeff"]:
        assert admin_client.get("/search/api", query_string={"q": query}).status_code == 200
        assert admin_client.get("/search/", query_string={"q": query}).status_code == 200
    for query in ["a\x00b", "\x00" * 50]:  # the app refuses NUL everywhere (app.guards): a clear 400
        assert admin_client.get("/search/api", query_string={"q": query}).status_code == 400
        assert admin_client.get("/search/", query_string={"q": query}).status_code == 400
    t = tag()
    percent = create("companies", {"name": f"Скидка 100% {t}"})
    other = create("companies", {"name": f"Скидка 100 {t}"})
    ids = found_ids(answers(admin_client, f"100% {t}"), "companies")
    assert percent in ids and other not in ids


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.text(max_size=300))
def test_search_never_fails_on_random_text(admin_client, query: str) -> None:  # noqa: ANN001
    response = admin_client.get("/search/api", query_string={"q": query})
    if "\x00" in query:
        assert response.status_code == 400
        return
    assert response.status_code == 200
    assert isinstance(response.get_json()["groups"], list)


def test_clean_query_and_phone_digits() -> None:
    assert searching.clean_query("  a\x00b \n c ") == "a b c"
    assert len(searching.clean_query("я" * 10_000)) == searching.MAX_QUERY
    assert searching.clean_query(None) == ""
    assert "79161234567" in REGISTRY["phone"].searched_digits("8 916 123-45-67")
    assert REGISTRY["phone"].searched_digits("1234") == []


def test_navbar_has_the_search_box(admin_client) -> None:  # noqa: ANN001
    html = admin_client.get("/search/").get_data(as_text=True)
    assert 'id="global-search"' in html and "tabula/search.js" in html


# --- duplicates --------------------------------------------------------------------------------------------


def test_duplicates_found_by_normalised_values_within_reach(app_ctx) -> None:  # noqa: ANN001
    number, t = digits(), tag()
    mail = f"dup-{t}@example.com"
    first = create(
        "contacts", {"first_name": "Дубль", "email": mail.upper(), "mobile": f"+7 903 {number}"}, "staff1"
    )
    theirs = create("contacts", {"first_name": "Дубль", "email2": mail}, "staff2")
    entity = current().entity("contacts")
    staff = access.grants(user_actor("staff1"), entity)
    found = duplicates.find("contacts", {"email2": f" {mail} ", "phone": None}, staff)
    assert [d.id for d in found] == [first]
    assert "e-mail" in found[0].reason.lower() or "почт" in found[0].reason.lower()
    found = duplicates.find("contacts", {"phone": f"8-903-{number}"}, staff)
    assert [d.id for d in found] == [first]
    admin = access.grants(user_actor("admin"), entity)
    assert {d.id for d in duplicates.find("contacts", {"email": mail}, admin)} == {first, theirs}
    assert duplicates.find("contacts", {"email": mail}, admin, exclude_id=first)[0].id == theirs
    tax = valid_inn()
    company = create("companies", {"name": f"ИНН {t}", "tax_id": tax})
    companies = access.grants(user_actor("admin"), current().entity("companies"))
    hits = duplicates.find("companies", {"tax_id": f"{tax[:4]} {tax[4:]}"}, companies)
    assert [d.id for d in hits] == [company]
    # A lead is also checked against contacts and companies.
    leads = access.grants(user_actor("admin"), current().entity("leads"))
    assert first in {d.id for d in duplicates.find("leads", {"email": mail}, leads) if d.slug == "contacts"}
    records.delete("contacts", first, user_actor("admin"))
    assert first not in {d.id for d in duplicates.find("contacts", {"email": mail}, admin)}


def test_add_form_warns_about_duplicates_and_save_anyway_works(app_ctx, admin_client) -> None:  # noqa: ANN001
    t = tag()
    mail = f"form-{t}@example.com"
    existing = create("companies", {"name": f"Первая {t}", "email": mail})
    page = admin_client.get("/t/companies/add")
    form = {
        "csrf_token": csrf_token(page.get_data(as_text=True)),
        "name": f"Вторая {t}",
        "email": mail.upper(),
    }
    response = admin_client.post("/t/companies/add", data=form)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="duplicates"' in html
    assert f"/t/companies/show/{existing}" in html and f"Первая {t}" in html
    model = current().classes["companies"]
    assert db.session.scalar(select(model.id).where(model.name == f"Вторая {t}")) is None
    response = admin_client.post("/t/companies/add", data={**form, "_save_duplicate": "1"})
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.scalar(select(model.id).where(model.name == f"Вторая {t}")) is not None


# --- merge -------------------------------------------------------------------------------------------------


@pytest.fixture
def pair(app_ctx) -> dict[str, int]:  # noqa: ANN001
    """Two companies (owned by staff1, who is in the manager's team) and records linking to the loser."""
    t = tag()
    keep = create("companies", {"name": f"Ромашка {t}", "phone": f"+7 495 {digits()}"}, "staff1")
    drop = create(
        "companies",
        {"name": f"ООО «Ромашка» {t}", "email": f"m-{t}@example.com", "region": "Москва"},
        "staff1",
    )
    stage = live_stage()
    return {
        "keep": keep,
        "drop": drop,
        "contact": create("contacts", {"first_name": "Связь", "company_id": drop}, "staff1"),
        "deal": create("deals", {"title": f"Сделка {t}", "company_id": drop, "stage_id": stage}, "staff1"),
        "task": create("tasks", {"title": f"Задача {t}", "company_id": drop}, "staff1"),
        "activity": create("activities", {"subject": f"Звонок {t}", "company_id": drop}, "staff1"),
        "invoice": create("invoices", {"number": f"INV-{t}", "amount": "100", "company_id": drop}, "staff1"),
        "lead": create("leads", {"title": f"Лид {t}", "company_id": drop}, "staff1"),
    }


LINKED = {
    "contact": "contacts",
    "deal": "deals",
    "task": "tasks",
    "activity": "activities",
    "invoice": "invoices",
    "lead": "leads",
}


def test_merge_screens_move_every_link_and_keep_history(app_ctx, admin_client, pair) -> None:  # noqa: ANN001
    keep, drop = pair["keep"], pair["drop"]
    chooser = admin_client.get(f"/merge/companies/{keep}/", query_string={"q": row("companies", drop).name})
    assert chooser.status_code == 200
    assert f"/merge/companies/{keep}/with/{drop}" in chooser.get_data(as_text=True)
    compare = admin_client.get(f"/merge/companies/{keep}/with/{drop}")
    html = compare.get_data(as_text=True)
    assert compare.status_code == 200 and 'name="field.name"' in html
    form = {
        "csrf_token": csrf_token(html),
        "keep_version": str(row("companies", keep).row_version),
        "drop_version": str(row("companies", drop).row_version),
        "field.name": "drop",
    }
    response = admin_client.post(f"/merge/companies/{keep}/with/{drop}", data=form)
    assert response.status_code == 302, response.get_data(as_text=True)[:1000]
    assert response.headers["Location"].endswith(f"/t/companies/show/{keep}")
    kept, dropped = row("companies", keep), row("companies", drop)
    assert kept.name == dropped.name  # chosen from the other record
    assert kept.email == dropped.email and kept.region == "Москва"  # filled where empty
    assert kept.phone  # kept its own
    assert dropped.deleted_at is not None  # in the recycle bin
    for key, slug in LINKED.items():
        assert row(slug, pair[key]).company_id == keep, slug
    entity = current().entity("companies")
    actions = {
        pk: [c.action for c in db.session.scalars(select(RecordChange).where(
            RecordChange.entity_id == entity.id, RecordChange.record_id == pk))]
        for pk in (keep, drop)
    }  # fmt: skip
    assert "merge" in actions[keep] and "merge" in actions[drop] and "delete" in actions[drop]
    merge_line = db.session.scalar(
        select(RecordChange).where(RecordChange.record_id == keep, RecordChange.action == "merge",
                                   RecordChange.entity_id == entity.id)
    )  # fmt: skip
    assert merge_line.note == {"merged": drop}
    # The kept record's history reads "Merged" (its merge line and new values are one change set).
    newest = history.timeline(access.grants(Actor.system_job(), entity), keep)[0]
    assert (newest.action, newest.action_label) == ("merge", "Merged")
    deals = current().entity("deals")
    moved = next(
        (x for x in history.lines(deals.id, pair["deal"]) if x.changeset == merge_line.changeset), None
    )
    assert moved is not None and moved.new_value == keep  # the move is in the deal's history
    show = admin_client.get(f"/t/companies/show/{keep}")
    assert show.status_code == 200
    # Restorable from the recycle bin.
    records.restore("companies", drop, user_actor("admin"))
    assert row("companies", drop).deleted_at is None


def test_merge_contacts_by_a_manager(app_ctx, manager_client) -> None:  # noqa: ANN001
    t = tag()
    keep = create("contacts", {"first_name": "Иван", "last_name": f"Петров{t}"}, "staff1")
    drop = create(
        "contacts", {"first_name": "Ваня", "last_name": f"Петров{t}", "email": f"v-{t}@ex.ru"}, "staff1"
    )
    activity = create("activities", {"subject": f"Встреча {t}", "contact_id": drop}, "staff1")
    deal = create(
        "deals",
        {"title": f"Контакт {t}", "contact_id": drop, "stage_id": live_stage()},
    )
    html = manager_client.get(f"/merge/contacts/{keep}/with/{drop}").get_data(as_text=True)
    form = {
        "csrf_token": csrf_token(html),
        "keep_version": str(row("contacts", keep).row_version),
        "drop_version": str(row("contacts", drop).row_version),
    }
    response = manager_client.post(f"/merge/contacts/{keep}/with/{drop}", data=form)
    assert response.status_code == 302, response.get_data(as_text=True)[:1000]
    kept = row("contacts", keep)
    assert kept.first_name == "Иван" and kept.email == f"v-{t}@ex.ru"
    assert row("activities", activity).contact_id == keep
    assert row("deals", deal).contact_id == keep
    assert row("contacts", drop).deleted_at is not None


def test_staff_may_not_merge(app_ctx, staff_client, pair) -> None:  # noqa: ANN001
    keep, drop = pair["keep"], pair["drop"]
    assert staff_client.get(f"/merge/companies/{keep}/").status_code == 403
    assert staff_client.get(f"/merge/companies/{keep}/with/{drop}").status_code == 403
    token = csrf_token(staff_client.get("/t/companies/add").get_data(as_text=True))
    response = staff_client.post(f"/merge/companies/{keep}/with/{drop}", data={"csrf_token": token})
    assert response.status_code == 403
    with pytest.raises(records.AccessDenied):
        merge.merge("companies", keep, drop, user_actor("staff1", "ui"))
    assert row("companies", drop).deleted_at is None
    assert row("deals", pair["deal"]).company_id == drop


def test_merge_is_all_or_nothing(app_ctx, pair) -> None:  # noqa: ANN001
    keep, drop = pair["keep"], pair["drop"]
    before = row("companies", keep).row_version
    changes = db.session.scalar(select(RecordChange.id).order_by(RecordChange.id.desc()).limit(1))

    class Broken:
        @hookimpl
        def after_write(self, ctx: Any, touched: list[dict[str, Any]]) -> None:
            if ctx.entity.slug == "tasks":
                raise RuntimeError("the disk is full")

    with hooks.registered(Broken()), pytest.raises(RuntimeError):
        merge.merge("companies", keep, drop, user_actor("admin", "ui"))
    kept = row("companies", keep)
    assert kept.row_version == before and kept.email is None
    assert row("companies", drop).deleted_at is None
    for key, slug in LINKED.items():
        assert row(slug, pair[key]).company_id == drop, slug
    assert db.session.scalar(select(RecordChange.id).order_by(RecordChange.id.desc()).limit(1)) == changes


def test_merge_refuses_what_is_out_of_reach(app_ctx, pair) -> None:  # noqa: ANN001
    admin = user_actor("admin", "ui")
    with pytest.raises(records.RecordError):
        merge.merge("companies", pair["keep"], pair["keep"], admin)
    with pytest.raises(records.RecordError):
        merge.merge("deals", pair["deal"], pair["deal"] + 1, admin)
    outsider = create("companies", {"name": f"Чужая {tag()}"}, "manager2")
    with pytest.raises(records.RecordNotFound):
        merge.merge("companies", pair["keep"], outsider, user_actor("manager", "ui"))
    assert row("companies", outsider).deleted_at is None
    with pytest.raises(records.RecordInvalid):
        merge.merge("companies", pair["keep"], pair["drop"], admin, {"no_such_field": 1})
    assert merge.actor_may_merge(Actor.system_job())


def test_record_page_offers_merge_and_suggests_duplicates(app_ctx, admin_client, staff_client) -> None:  # noqa: ANN001
    t = tag()
    mail = f"twin-{t}@example.com"
    first = create("contacts", {"first_name": "Близнец", "last_name": t, "email": mail}, "staff1")
    second = create("contacts", {"first_name": "Близнец", "last_name": f"{t}-2", "email2": mail}, "staff1")
    page = admin_client.get(f"/t/contacts/show/{first}").get_data(as_text=True)
    assert f"/merge/contacts/{first}/" in page
    assert f"/merge/contacts/{first}/" not in staff_client.get(f"/t/contacts/show/{first}").get_data(
        as_text=True
    )
    chooser = admin_client.get(f"/merge/contacts/{first}/")
    assert chooser.status_code == 200
    assert f"/merge/contacts/{first}/with/{second}" in chooser.get_data(as_text=True)  # a likely duplicate
    assert admin_client.get(f"/merge/deals/{first}/").status_code == 404
    assert admin_client.get(f"/merge/contacts/{first}/with/{first}").status_code == 404


@pytest.mark.browser
def test_navbar_search_answers_while_typing_in_chromium(app_ctx, browser, live_url) -> None:  # noqa: ANN001
    from tests.conftest import DEMO_PASSWORD
    from tests.test_browser_tables import sign_in

    t = tag()
    mine = create("companies", {"name": f"ООО Ромашка <i>{t}</i>"}, "staff1")
    create("companies", {"name": f"ООО Ромашка чужая {t}"}, "staff2")
    page = browser.new_context(locale="ru-RU").new_page()
    sign_in(page, live_url, "staff1", DEMO_PASSWORD)
    page.fill("#global-search-input", f"ромашка <i>{t}")
    hit = page.locator("#global-search-results a.tabula-search-hit")
    hit.first.wait_for()
    assert hit.count() == 1 and hit.first.text_content() == f"ООО Ромашка <i>{t}</i>"  # as text, not HTML
    page.press("#global-search-input", "ArrowDown")
    page.press("#global-search-input", "Enter")
    page.wait_for_url(f"{live_url}/t/companies/show/{mine}")
    page.fill("#global-search-input", t)
    page.press("#global-search-input", "Enter")
    page.wait_for_url(f"{live_url}/search/?q={t}")
    assert page.locator("#search-results a.tabula-search-hit").count() == 1
    page.context.close()
