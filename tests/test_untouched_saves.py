"""A save that changes nothing writes nothing: no new version (no needless conflict for a colleague) and no
history, whether the values come back from an untouched edit form (date-times with seconds and their
fractions, a yes/no never answered) or are typed differently than stored (``1 234,50``, ``31.12.2025``).
History shows values as their type displays them."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
from flask_appbuilder.security.sqla.models import User
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from app.extensions import db
from custom_fields import history, records, runtime
from custom_fields.access import Actor
from models import Field
from tests.conftest import ADMIN_PASSWORD, login, signed_in
from tests.tables_helpers import new_field, new_table, unique_label
from tests.test_write_path import token


class FormValues(HTMLParser):
    """What a browser submits for the first form with a ``row_version`` on the page, untouched."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[tuple[str, str]] = []
        self._select: str | None = None
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "input" and a.get("name") and a.get("type") not in ("submit", "button"):
            if a.get("type") == "checkbox" and "checked" not in a:
                return
            self.values.append((a["name"], a.get("value", "on" if a.get("type") == "checkbox" else "")))
        elif tag == "select" and a.get("name"):
            self._select = a["name"]
        elif tag == "option" and self._select and "selected" in a:
            self.values.append((self._select, a.get("value", "")))
        elif tag == "textarea" and a.get("name"):
            self._textarea, self._text = a["name"], ""

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea:
            self.values.append((self._textarea, self._text.removeprefix("\n")))
            self._textarea = None


def untouched_form(client: Any, url: str) -> list[tuple[str, str]]:
    page = client.get(url)
    assert page.status_code == 200
    parser = FormValues()
    parser.feed(page.get_data(as_text=True))
    names = {name for name, _value in parser.values}
    assert {"row_version", "csrf_token"} <= names
    return [(n, v) for n, v in parser.values if not n.startswith("_flt") and n != "q"]


def save_untouched(client: Any, url: str) -> None:
    """Open an edit form and press Save without touching anything, as a user would."""
    answer = client.post(url, data=MultiDict(untouched_form(client, url)))
    assert answer.status_code == 302, answer.get_data(as_text=True)[-3000:]


def admin() -> Actor:
    return Actor.of_user(db.session.scalar(select(User).where(User.username == "admin")))


def history_lines(slug: str, pk: int) -> int:
    entity = runtime.current().entity(slug)
    return len(history.lines(entity.id, pk))


def stored(slug: str, pk: int) -> Any:
    db.session.expire_all()
    return db.session.get(runtime.current().classes[slug], pk)


def test_saving_an_untouched_contact_form_changes_nothing(app, app_ctx) -> None:  # noqa: ANN001
    """Consent given now (a time with seconds and microseconds) and SMS consent never answered."""
    company = records.create("companies", {"name": f"ООО Тишина {uuid.uuid4().hex[:6]}"}, admin()).id
    saved = records.create(
        "contacts",
        {
            "first_name": "Анна", "last_name": "Покоева", "company_id": company, "email_consent": True,
            "birthday": "14.03.1985", "phone": "+7 495 123-45-67", "notes": "Строка 1\nСтрока 2",
        },
        admin(),
    )  # fmt: skip
    before = stored("contacts", saved.id)
    assert before.email_consent_at.microsecond or before.email_consent_at.second  # set by the write path
    assert before.sms_consent is None
    lines = history_lines("contacts", saved.id)

    client = app.test_client()
    assert signed_in(login(client, "admin", ADMIN_PASSWORD))
    url = f"/t/contacts/edit/{saved.id}"
    save_untouched(client, url)

    after = stored("contacts", saved.id)
    assert after.row_version == before.row_version
    assert after.email_consent_at == before.email_consent_at
    assert after.sms_consent is None and after.sms_consent_at is None
    assert history_lines("contacts", saved.id) == lines


def test_the_edit_form_shows_seconds(app, app_ctx) -> None:  # noqa: ANN001
    moment = dt.datetime(2026, 12, 1, 10, 54, 37, 123456, tzinfo=dt.UTC)
    saved = records.create("tasks", {"title": "Секунды", "due_at": moment}, admin())
    client = app.test_client()
    assert signed_in(login(client, "admin", ADMIN_PASSWORD))
    form = dict(untouched_form(client, f"/t/tasks/edit/{saved.id}"))
    assert form["due_at"] == "2026-12-01T13:54:37"  # Moscow time, to the second

    # A new time typed in replaces the stored one (the fraction of a second is not kept then).
    form["due_at"] = "2026-12-01T15:00"
    assert client.post(f"/t/tasks/edit/{saved.id}", data=form).status_code == 302
    due = stored("tasks", saved.id).due_at
    assert (due if due.tzinfo else due.replace(tzinfo=dt.UTC)) == dt.datetime(
        2026, 12, 1, 12, 0, tzinfo=dt.UTC
    )


def typed_table() -> tuple[str, dict[str, str]]:
    entity = new_table(unique_label("Пересохранение"))
    names = {
        kind: new_field(entity, f"Поле {kind}", kind, **extra).name
        for kind, extra in (
            ("date", {}), ("datetime", {}), ("money", {}), ("decimal", {"settings": {"scale": 3}}),
            ("boolean", {}), ("multi_select", {"settings": {"options": [{"label": "А"}, {"label": "Б"}]}}),
        )
    }  # fmt: skip
    names["name"] = db.session.get(Field, entity.display_field_id).name
    return entity.slug, names


def test_resaving_values_typed_differently_changes_nothing(app_ctx) -> None:  # noqa: ANN001
    slug, f = typed_table()
    first = {
        f["name"]: "Запись",
        f["date"]: "2025-12-31", f["datetime"]: "2025-12-31T14:30:00+03:00", f["money"]: "1234.5",
        f["decimal"]: "0.5", f["boolean"]: "да", f["multi_select"]: "А, Б",
    }  # fmt: skip
    saved = records.create(slug, first, admin())
    lines = history_lines(slug, saved.id)
    again = {
        f["date"]: "31.12.2025", f["datetime"]: "31.12.2025 14:30", f["money"]: "1 234,50 ₽",
        f["decimal"]: ",5", f["boolean"]: True, f["multi_select"]: ["Б", "а"],
    }  # fmt: skip
    result = records.update(slug, saved.id, again, admin(), expected_version=saved.version)
    assert result.version == saved.version
    assert stored(slug, saved.id).row_version == saved.version
    assert history_lines(slug, saved.id) == lines

    # One real change among them is one new version and one history line.
    result = records.update(slug, saved.id, {**again, f["money"]: "1 234,51"}, admin(), expected_version=1)
    assert result.version == saved.version + 1
    assert history_lines(slug, saved.id) == lines + 1
    assert stored(slug, saved.id).__dict__[f["money"]] == Decimal("1234.51")


def test_resaving_through_the_api_changes_nothing(app, app_ctx) -> None:  # noqa: ANN001
    slug, f = typed_table()
    saved = records.create(
        slug,
        {
            f["name"]: "Запись",
            f["date"]: "31.12.2025",
            f["datetime"]: "31.12.2025 14:30",
            f["money"]: "1234.50",
        },
        admin(),
    )
    client = app.test_client()
    headers = token(client, "admin", ADMIN_PASSWORD)
    body = {
        f["date"]: "2025-12-31",
        f["datetime"]: "2025-12-31T11:30:00Z",
        f["money"]: "1 234,50",
        "_version": 1,
    }
    answer = client.put(f"/api/v1/t/{slug}/{saved.id}", json=body, headers=headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert stored(slug, saved.id).row_version == 1
    assert history_lines(slug, saved.id) == 1 + 4  # the creation only


def test_history_shows_values_as_their_type_displays_them(app, app_ctx) -> None:  # noqa: ANN001
    slug, f = typed_table()
    saved = records.create(slug, {f["name"]: "Запись", f["boolean"]: False}, admin())
    records.update(
        slug,
        saved.id,
        {
            f["datetime"]: "2026-12-01T10:54:37Z",
            f["boolean"]: True,
            f["date"]: "2026-12-01",
            f["money"]: "2747000",
        },
        admin(),
        expected_version=1,
    )
    client = app.test_client()
    assert signed_in(login(client, "admin", ADMIN_PASSWORD))
    client.get("/lang/ru")
    page = client.get(f"/t/{slug}/show/{saved.id}").get_data(as_text=True)
    found = re.findall(
        r'<tr><td style="width: 25%">(.*?)</td>\s*<td[^>]*>(?:<del>(.*?)</del>)?</td>\s*<td>(.*?)</td></tr>',
        page,
        re.S,
    )
    latest: dict[str, tuple[str, str]] = {}
    for field_label, old, new in found:  # newest change first
        latest.setdefault(field_label.strip(), (old, new))
    assert latest["Поле datetime"] == ("", "01.12.2026 13:54")
    assert latest["Поле boolean"] == ("нет", "да")
    assert latest["Поле date"] == ("", "01.12.2026")
    assert latest["Поле money"] == ("", "2\u00a0747\u00a0000,00 RUB")  # Russian decimal mark


@pytest.mark.browser
def test_save_without_touching_anything_in_chromium(app, browser, live_url) -> None:  # noqa: ANN001
    """The issue's steps: open a contact's edit page, press Save, nothing changes."""
    from tests.test_browser_tables import sign_in

    with app.app_context():
        saved = records.create(
            "contacts",
            {
                "first_name": "Олег",
                "email_consent": True,
                "birthday": "01.02.1980",
                "mobile": "+7 916 555-44-33",
            },
            admin(),
        )
        before = stored("contacts", saved.id)
        lines = history_lines("contacts", saved.id)
    page = browser.new_page()
    try:
        sign_in(page, live_url, "admin", ADMIN_PASSWORD)
        page.goto(f"{live_url}/t/contacts/edit/{saved.id}")
        page.locator("form:has(input[name=row_version]) [type=submit]").first.click()
        # (the record's page that follows keeps a live stream open: no "network idle" to wait for)
        page.wait_for_url(lambda url: f"/t/contacts/edit/{saved.id}" not in url, timeout=10_000)
    finally:
        page.close()
    with app.app_context():
        after = stored("contacts", saved.id)
        assert (after.row_version, after.email_consent_at, after.sms_consent) == (
            before.row_version,
            before.email_consent_at,
            None,
        )
        assert history_lines("contacts", saved.id) == lines


def test_an_untouched_tax_id_stored_with_spaces_changes_nothing(app, app_ctx) -> None:  # noqa: ANN001
    """A tax id stored before parsing normalised it (``7707 083893``) is the same id when the form sends it
    back."""
    company = records.create("companies", {"name": f"ООО Пробел {uuid.uuid4().hex[:6]}"}, admin())
    model = runtime.current().classes["companies"]
    db.session.execute(model.__table__.update().where(model.id == company.id).values(tax_id="7707 083893"))
    db.session.commit()
    lines = history_lines("companies", company.id)
    client = app.test_client()
    assert signed_in(login(client, "admin", ADMIN_PASSWORD))
    url = f"/t/companies/edit/{company.id}"
    save_untouched(client, url)
    after = stored("companies", company.id)
    assert after.row_version == company.version and after.tax_id == "7707 083893"
    assert history_lines("companies", company.id) == lines
    records.delete("companies", company.id, admin())  # (the demo book's INNs are checked elsewhere)


def test_a_tax_id_saved_before_the_check_does_not_block_saving_the_rest(app_ctx) -> None:  # noqa: ANN001
    """Its check digits are checked when it is new or changed, not when the rest of the record is saved."""
    entity = new_table(unique_label("ИНН"))
    inn = new_field(entity, "ИНН", "tax_id", settings={"kind": "inn"})
    name = db.session.get(Field, entity.display_field_id).name
    saved = records.create(entity.slug, {name: "Старая", inn.name: "7707083893"}, admin())
    legacy = runtime.current().classes[entity.slug]
    db.session.execute(legacy.__table__.update().where(legacy.id == saved.id).values({inn.name: "12-34"}))
    db.session.commit()
    result = records.update(
        entity.slug, saved.id, {name: "Новая", inn.name: "12-34"}, admin(), expected_version=saved.version
    )
    assert result.version == saved.version + 1
    assert stored(entity.slug, saved.id).__dict__[inn.name] == "12-34"
    with pytest.raises(records.RecordInvalid) as refused:  # a changed value is checked
        records.update(entity.slug, saved.id, {inn.name: "12-35"}, admin(), expected_version=result.version)
    assert "An INN has 10 digits" in refused.value.errors[inn.name]
