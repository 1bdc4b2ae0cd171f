"""Forms in real chromium: link fields search as you type on edit pages as on add pages (every record the
user may read, the current value preselected), and the top bar search answers on every page,
edit pages too.
"""

from __future__ import annotations

import uuid

import pytest
from flask_appbuilder.security.sqla.models import User
from sqlalchemy import select

from app.extensions import db
from custom_fields import records
from custom_fields.access import Actor
from models.crm import Company, Contact
from tests.conftest import ADMIN_PASSWORD
from tests.test_browser_tables import sign_in

pytestmark = pytest.mark.browser


def pick_link(page, field: str, typed: str, wanted: str) -> None:  # noqa: ANN001
    """Open a link field's search box, type part of a name and choose the answer ``wanted``."""
    page.click(f"#s2id_{field}, select#{field} + .select2-container")
    page.fill(".select2-container--open .select2-search__field", typed)
    option = page.locator(".select2-results__option", has_text=wanted).first
    option.wait_for(timeout=10_000)
    option.click()


def test_edit_form_changes_a_link_by_typing_and_top_search_answers(browser, live_url, app_ctx) -> None:  # noqa: ANN001
    contact = db.session.scalars(
        select(Contact)
        .where(Contact.company_id.is_not(None), Contact.deleted_at.is_(None))
        .order_by(Contact.id)
    ).first()
    current = db.session.get(Company, contact.company_id)
    # A company of this test's own: tests running alongside create and delete companies of theirs.
    other_name = f"ООО «Кедр {uuid.uuid4().hex[:8]}»"
    admin = Actor.of_user(db.session.scalar(select(User).where(User.username == "admin")))
    other_id = records.create("companies", {"name": other_name, "kind": "customer"}, admin).id
    contact_id = contact.id
    db.session.rollback()

    page = browser.new_context(locale="en-US", viewport={"width": 1366, "height": 768}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, live_url, "admin", ADMIN_PASSWORD)
    page.goto(f"{live_url}/t/contacts/edit/{contact_id}")

    field = page.locator("select#company_id")
    assert field.evaluate("el => el.classList.contains('select2-hidden-accessible')"), "no search on edit"
    assert field.evaluate("el => el.value") == str(current.id), "the current company is not preselected"
    # Type the middle of the other company's name: the answers come from every company the user may read.
    typed = other_name[6:14]
    pick_link(page, "company_id", typed, other_name)
    assert field.evaluate("el => el.value") == str(other_id)
    page.click("form#model_form button[type=submit], form#model_form input[type=submit]")
    page.wait_for_load_state("load")
    db.session.expire_all()
    assert db.session.get(Contact, contact_id).company_id == other_id

    # The top bar search answers on an edit page.
    page.goto(f"{live_url}/t/contacts/edit/{contact_id}")
    page.fill("#global-search-input", other_name[:5])
    page.locator("#global-search-results a.tabula-search-hit").first.wait_for(timeout=10_000)
    assert page.locator("#global-search-results").is_visible()
    assert not errors, errors
    page.context.close()
