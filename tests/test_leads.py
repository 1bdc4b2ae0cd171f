"""Lead conversion: what it creates and links, what it reuses (never a duplicate contact), all or nothing,
the convert screen, and who may convert which lead."""

from __future__ import annotations

import random
import re
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from app.crm import convert as conversion
from app.extensions import db
from custom_fields import access, records
from custom_fields.access import Actor
from custom_fields.runtime import current
from tests.conftest import csrf_token
from tests.tables_helpers import valid_inn


def actor(username: str) -> Actor:
    from flask_appbuilder.security.sqla.models import User

    return Actor.for_user_id(db.session.scalar(select(User.id).where(User.username == username)), "ui")


def tag() -> str:
    return uuid.uuid4().hex[:10]


def digits(n: int = 7) -> str:
    return "".join(random.choice("0123456789") for _ in range(n))  # noqa: S311


def model(slug: str) -> Any:
    return current().classes[slug]


def get(slug: str, pk: int) -> Any:
    db.session.expire_all()
    return db.session.get(model(slug), pk)


def count(slug: str, *conditions: Any) -> int:
    m = model(slug)
    return db.session.scalar(select(func.count()).select_from(m).where(m.deleted_at.is_(None), *conditions))


def new_lead(username: str = "staff1", **values: Any) -> int:
    values.setdefault("title", f"Заявка {tag()}")
    return records.create("leads", values, actor(username)).id


def test_conversion_creates_company_contact_and_deal(app_ctx) -> None:  # noqa: ANN001
    t = tag()
    lead_id = new_lead(
        contact_name=f"Иванов-{t} Иван Петрович", company_name=f"ООО Ромашка {t}",
        email=f"ivan-{t}@example.com", phone=f"+7 915 {digits()}", tax_id=valid_inn(),
        source="call", title=f"Поставка {t}",
    )  # fmt: skip
    result = conversion.convert(lead_id, actor("staff1"), amount="1 500,50")
    contact, company, deal, lead = (
        get("contacts", result.contact_id), get("companies", result.company_id), get("deals", result.deal_id),
        get("leads", lead_id),
    )  # fmt: skip
    assert (contact.last_name, contact.first_name, contact.middle_name) == (f"Иванов-{t}", "Иван", "Петрович")
    assert contact.email == f"ivan-{t}@example.com" and contact.company_id == company.id
    assert company.name == f"ООО Ромашка {t}" and company.tax_id == lead.tax_id
    assert (deal.company_id, deal.contact_id, deal.source, deal.title) == (
        company.id, contact.id, "call", f"Поставка {t}",
    )  # fmt: skip
    assert deal.stage_id == conversion.default_stage_id() and str(deal.amount) == "1500.50"
    assert (lead.status, lead.company_id, lead.contact_id, lead.deal_id) == (
        "converted", company.id, contact.id, deal.id,
    )  # fmt: skip
    assert lead.converted_at is not None
    staff1 = actor("staff1").user_id
    assert contact.owner_id == company.owner_id == deal.owner_id == staff1
    # Converting twice is refused, and changes nothing.
    with pytest.raises(records.RecordError, match="already been converted"):
        conversion.convert(lead_id, actor("staff1"))
    assert count("deals", model("deals").title == f"Поставка {t}") == 1


def test_two_word_name_and_no_deal(app_ctx) -> None:  # noqa: ANN001
    t = tag()
    lead_id = new_lead(contact_name=f"Анна Ли{t}", email=f"anna-{t}@example.com")
    result = conversion.convert(lead_id, actor("staff1"), create_deal=False)
    contact = get("contacts", result.contact_id)
    assert (contact.first_name, contact.last_name, contact.middle_name) == ("Анна", f"Ли{t}", None)
    assert result.deal_id is None and result.company_id is None
    assert get("leads", lead_id).status == "converted"


def test_same_email_in_another_case_reuses_the_contact(app_ctx) -> None:  # noqa: ANN001
    t = tag()
    existing = records.create(
        "contacts", {"first_name": "Ольга", "email2": f"Olga.{t}@Example.com"}, actor("staff1")
    ).id
    lead_id = new_lead(contact_name="Ольга Петрова", email=f"  OLGA.{t}@example.COM ")
    plan = conversion.plan(lead_id, actor("staff1"))
    assert plan.contact is not None and plan.contact.id == existing and plan.contact.visible
    result = conversion.convert(lead_id, actor("staff1"))
    assert result.contact_id == existing
    contacts = model("contacts")
    assert count("contacts", func.lower(contacts.email) == f"olga.{t}@example.com") == 0  # none created
    assert get("deals", result.deal_id).contact_id == existing
    # Asking for a new contact when one matches is refused: never a duplicate.
    other = new_lead(email=f"olga.{t}@example.com")
    with pytest.raises(records.RecordInvalid) as refused:
        conversion.convert(other, actor("staff1"), new_contact=True)
    assert "contact_id" in refused.value.errors


def test_same_phone_written_differently_reuses_the_contact(app_ctx) -> None:  # noqa: ANN001
    number = digits()
    first = new_lead(contact_name="Пётр Первый", phone=f"8 (916) {number[:3]}-{number[3:5]}-{number[5:]}")
    made = conversion.convert(first, actor("staff1"), create_deal=False)
    second = new_lead(contact_name="Пётр Второй", phone=f"+7 916 {number}")
    again = conversion.convert(second, actor("staff1"), create_deal=False)
    assert again.contact_id == made.contact_id
    contacts = model("contacts")
    phone = f"+7916{number}"
    assert count("contacts", (contacts.phone == phone) | (contacts.mobile == phone)) == 1
    # Also when another user converts (the match is reused even if they cannot open it: no duplicates).
    third = new_lead("staff2", contact_name="Пётр Третий", phone=phone)
    plan = conversion.plan(third, actor("staff2"))
    assert plan.contact is not None and plan.contact.id == made.contact_id and not plan.contact.visible
    assert conversion.convert(third, actor("staff2"), create_deal=False).contact_id == made.contact_id
    assert count("contacts", (contacts.phone == phone) | (contacts.mobile == phone)) == 1


def test_tax_id_and_name_reuse_the_company(app_ctx) -> None:  # noqa: ANN001
    t = tag()
    tax = valid_inn()
    company = records.create(
        "companies", {"name": f"Альфа {t}", "tax_id": f"{tax[:4]} {tax[4:7]}-{tax[7:]}"}, actor("staff1")
    ).id
    lead_id = new_lead(company_name=f"Совсем другое имя {t}", tax_id=tax, contact_name=f"Кто-то {t}")
    assert conversion.convert(lead_id, actor("staff1")).company_id == company
    assert count("companies", model("companies").name == f"Совсем другое имя {t}") == 0
    # No tax id: the exact name, in any case.
    by_name = new_lead(company_name=f"  альфа {t.upper()} ", contact_name=f"Ещё {t}")
    assert conversion.convert(by_name, actor("staff1"), create_deal=False).company_id == company
    # The user may ask for a new company anyway.
    fresh = new_lead(company_name=f"альфа {t}", contact_name=f"Третий {t}")
    made = conversion.convert(fresh, actor("staff1"), create_deal=False, new_company=True)
    assert made.company_id != company and get("companies", made.company_id).name == f"альфа {t}"


def test_a_failure_in_the_middle_leaves_nothing(app_ctx) -> None:  # noqa: ANN001
    t = tag()
    values = {"contact_name": f"Сбой {t}", "company_name": f"Сбой {t}", "email": f"fail-{t}@example.com"}
    lead_id = new_lead(**values)
    before = get("leads", lead_id).row_version
    for bad in ({"stage_id": 2_000_000_000}, {"amount": "много"}):
        with pytest.raises(records.RecordInvalid) as refused:
            conversion.convert(lead_id, actor("staff1"), **bad)
        assert set(refused.value.errors) & {"stage_id", "amount"}
        companies, contacts = model("companies"), model("contacts")
        assert count("companies", companies.name == f"Сбой {t}") == 0
        assert count("contacts", contacts.email == f"fail-{t}@example.com") == 0
        lead = get("leads", lead_id)
        assert (lead.status, lead.company_id, lead.row_version) == ("new", None, before)
    # A stage that is not even a number.
    with pytest.raises(records.RecordInvalid):
        conversion.convert(lead_id, actor("staff1"), stage_id="x")
    assert count("companies", model("companies").name == f"Сбой {t}") == 0
    # After all that the conversion still works, once.
    assert conversion.convert(lead_id, actor("staff1")).deal_id is not None


def test_no_pipeline_means_no_deal_and_nothing_saved(app_ctx, monkeypatch) -> None:  # noqa: ANN001
    t = tag()
    lead_id = new_lead(contact_name=f"Без воронки {t}", company_name=f"Без воронки {t}")
    monkeypatch.setattr(conversion, "default_stage_id", lambda: None)
    with pytest.raises(records.RecordInvalid) as refused:
        conversion.convert(lead_id, actor("staff1"))
    assert "stage_id" in refused.value.errors
    assert count("companies", model("companies").name == f"Без воронки {t}") == 0
    assert get("leads", lead_id).status == "new"


def test_convert_action_and_screen(app_ctx, admin_client) -> None:  # noqa: ANN001
    from views.related import record_actions

    t = tag()
    lead_id = new_lead("admin", contact_name=f"Экран {t}", company_name=f"Экран <b>{t}</b>", title=f"Э {t}")
    entity = current().entity("leads")
    with app_ctx.test_request_context():
        actions = record_actions(entity, access.grants(actor("admin"), entity), lead_id)
    assert [a.url for a in actions if a.url.endswith("/convert")] == [f"/leads/{lead_id}/convert"]
    page = admin_client.get(f"/leads/{lead_id}/convert")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "convert-form" in html
    assert f"Экран &lt;b&gt;{t}&lt;/b&gt;" in html and "<b>" + t not in html  # escaped
    token = csrf_token(html)
    # Errors are shown and nothing is saved.
    bad = admin_client.post(
        f"/leads/{lead_id}/convert",
        data={"csrf_token": token, "create_deal": "1", "stage_id": str(2_000_000_000), "deal_title": "x"},
    )
    assert bad.status_code == 200 and "convert-errors" in bad.get_data(as_text=True)
    assert count("companies", model("companies").name == f"Экран <b>{t}</b>") == 0
    bad = admin_client.post(f"/leads/{lead_id}/convert", data={"csrf_token": token, "contact_choice": "zzz"})
    assert bad.status_code == 200 and get("leads", lead_id).status == "new"
    # Without the CSRF token: refused.
    assert admin_client.post(f"/leads/{lead_id}/convert", data={"create_deal": "1"}).status_code == 400
    done = admin_client.post(
        f"/leads/{lead_id}/convert",
        data={"csrf_token": token, "create_deal": "1", "deal_title": f"Сделка {t}", "amount": "100",
              "contact_choice": "auto", "company_choice": "auto"},
    )  # fmt: skip
    assert done.status_code == 302
    deal_id = int(re.search(r"/t/deals/show/(\d+)", done.headers["Location"]).group(1))
    deal = get("deals", deal_id)
    assert deal.title == f"Сделка {t}" and get("leads", lead_id).deal_id == deal_id
    assert "converted" in admin_client.get(done.headers["Location"]).get_data(as_text=True)
    # Converted: no more action, and the screen says so.
    with app_ctx.test_request_context():
        assert not record_actions(entity, access.grants(actor("admin"), entity), lead_id)
    again = admin_client.post(f"/leads/{lead_id}/convert", data={"csrf_token": token, "create_deal": "1"})
    assert again.status_code == 302 and count("deals", model("deals").title == f"Сделка {t}") == 1
    assert admin_client.get("/leads/2000000000/convert").status_code == 404


def test_pick_existing_records_on_the_screen(app_ctx, admin_client) -> None:  # noqa: ANN001
    t = tag()
    company = records.create("companies", {"name": f"Выбранная {t}"}, actor("admin")).id
    contact = records.create("contacts", {"first_name": f"Выбранный {t}"}, actor("admin")).id
    lead_id = new_lead("admin", contact_name=f"Другой {t}", company_name=f"Другая {t}")
    token = csrf_token(admin_client.get(f"/leads/{lead_id}/convert").get_data(as_text=True))
    done = admin_client.post(
        f"/leads/{lead_id}/convert",
        data={"csrf_token": token, "company_choice": "pick", "company_id": str(company),
              "contact_choice": "pick", "contact_id": str(contact)},
    )  # fmt: skip
    assert done.status_code == 302 and "/t/leads/show/" in done.headers["Location"]  # no deal asked for
    lead = get("leads", lead_id)
    assert (lead.company_id, lead.contact_id, lead.deal_id, lead.status) == (
        company,
        contact,
        None,
        "converted",
    )
    assert count("companies", model("companies").name == f"Другая {t}") == 0


def test_staff_converts_own_leads_only(app_ctx, staff_client) -> None:  # noqa: ANN001
    t = tag()
    mine = new_lead("staff1", contact_name=f"Мой {t}", company_name=f"Мой {t}")
    theirs = new_lead("staff2", contact_name=f"Чужой {t}", company_name=f"Чужой {t}")
    assert staff_client.get(f"/leads/{theirs}/convert").status_code == 404
    page = staff_client.get(f"/leads/{mine}/convert")
    assert page.status_code == 200
    token = csrf_token(page.get_data(as_text=True))
    assert staff_client.post(f"/leads/{theirs}/convert", data={"csrf_token": token}).status_code == 404
    with pytest.raises(records.RecordNotFound):
        conversion.convert(theirs, actor("staff1"))
    done = staff_client.post(f"/leads/{mine}/convert", data={"csrf_token": token, "create_deal": "1"})
    assert done.status_code == 302 and "/t/deals/show/" in done.headers["Location"]
    assert staff_client.get(done.headers["Location"]).status_code == 200  # the new deal is theirs
    assert get("leads", theirs).status == "new"
    # Someone may not pick a company they cannot see.
    hidden = records.create("companies", {"name": f"Скрытая {t}"}, actor("staff2")).id
    other = new_lead("staff1", contact_name=f"Ещё {t}")
    with pytest.raises(records.RecordInvalid) as refused:
        conversion.convert(other, actor("staff1"), company_id=hidden)
    assert "company_id" in refused.value.errors
