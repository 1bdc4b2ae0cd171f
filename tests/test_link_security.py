"""Links need the right to read their target: a crafted form, API or grid request naming a record the user
may not read is refused as if it did not exist, and nothing is written; a link the record already holds
stays; lead conversion and merging link such records only through the write path's named system path,
which no request reaches."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from app.extensions import db
from custom_fields import records
from custom_fields.access import Actor
from custom_fields.runtime import current
from tests.conftest import csrf_token
from tests.test_access_scopes import actor, client_for, token

STAFF = "staff1"


@pytest.fixture
def book(app_ctx) -> dict[str, Any]:  # noqa: ANN001
    """A company staff1 owns (readable) and one admin owns (out of staff1's reach), and a contact of
    staff1 that admin linked to admin's company."""
    word = f"Связь{uuid.uuid4().hex[:8]}"
    mine = records.create("companies", {"name": f"{word} своя"}, actor(STAFF)).id
    theirs = records.create("companies", {"name": f"{word} чужая"}, actor("admin")).id
    contact = records.create("contacts", {"first_name": f"{word} контакт"}, actor(STAFF)).id
    records.update("contacts", contact, {"company_id": theirs}, actor("admin"), expected_version=None)
    return {"word": word, "mine": mine, "theirs": theirs, "contact": contact}


def contacts_named(word: str) -> int:
    db.session.rollback()
    model = current().classes["contacts"]
    return db.session.scalar(select(func.count()).where(model.first_name.like(f"{word}%"))) or 0


def company_of(contact: int) -> int | None:
    db.session.rollback()
    model = current().classes["contacts"]
    return db.session.scalar(select(model.company_id).where(model.id == contact))


def version_of(contact: int) -> int:
    db.session.rollback()
    model = current().classes["contacts"]
    return db.session.scalar(select(model.row_version).where(model.id == contact))


def test_the_write_path_refuses_an_unreadable_link_as_missing(book) -> None:  # noqa: ANN001
    with pytest.raises(records.RecordInvalid) as refused:
        records.create("contacts", {"first_name": "x", "company_id": book["theirs"]}, actor(STAFF))
    assert refused.value.errors == {"company_id": f"Record {book['theirs']} does not exist."}
    missing = 10**8
    with pytest.raises(records.RecordInvalid) as gone:
        records.create("contacts", {"first_name": "x", "company_id": missing}, actor(STAFF))
    assert gone.value.errors == {"company_id": f"Record {missing} does not exist."}
    # A batch: one refused row refuses all; a readable link works.
    with pytest.raises(records.RecordInvalid) as batch:
        records.create_many(
            "contacts",
            [{"first_name": f"{book['word']} a", "company_id": book["mine"]},
             {"first_name": f"{book['word']} b", "company_id": book["theirs"]}],
            actor(STAFF),
        )  # fmt: skip
    assert list(batch.value.rows) == [1]
    assert contacts_named(book["word"]) == 1
    ok = records.create(
        "contacts", {"first_name": f"{book['word']} ok", "company_id": book["mine"]}, actor(STAFF)
    )
    assert company_of(ok.id) == book["mine"]


def test_an_update_keeps_a_link_it_already_holds(book) -> None:  # noqa: ANN001
    contact = book["contact"]
    saved = records.update(
        "contacts", contact, {"first_name": f"{book['word']} новое", "company_id": book["theirs"]},
        actor(STAFF), expected_version=None,
    )  # fmt: skip
    assert saved.version == 3 and company_of(contact) == book["theirs"]
    # Moving it to an unreadable record is refused; to a readable one works.
    with pytest.raises(records.RecordInvalid):
        other = records.create("companies", {"name": f"{book['word']} третья"}, actor("admin")).id
        records.update("contacts", contact, {"company_id": other}, actor(STAFF), expected_version=None)
    records.update("contacts", contact, {"company_id": book["mine"]}, actor(STAFF), expected_version=None)
    assert company_of(contact) == book["mine"]


def test_the_system_path_is_explicit(book) -> None:  # noqa: ANN001
    with records.linking_unreadable("test: a job that decided so"):
        made = records.create(
            "contacts", {"first_name": f"{book['word']} sys", "company_id": book["theirs"]}, actor(STAFF)
        )
    assert company_of(made.id) == book["theirs"]
    with pytest.raises(records.RecordInvalid):  # closed again after the block
        records.create("contacts", {"first_name": "x", "company_id": book["theirs"]}, actor(STAFF))
    with pytest.raises(ValueError):
        with records.linking_unreadable(""):
            pass
    # The system's own jobs may link anything that exists.
    job = records.create(
        "contacts", {"first_name": f"{book['word']} job", "company_id": book["theirs"]}, Actor.system_job()
    )
    assert company_of(job.id) == book["theirs"]


def test_a_crafted_form_post_is_refused(app, book) -> None:  # noqa: ANN001
    client = client_for(app, STAFF)
    page = client.get("/t/contacts/add").get_data(as_text=True)
    before = contacts_named(book["word"])
    for extra in ({}, {"linking_unreadable": "1", "system": "1", "reason": "merge"}):
        response = client.post(
            "/t/contacts/add",
            data={
                "first_name": f"{book['word']} форма",
                "company_id": str(book["theirs"]),
                "csrf_token": csrf_token(page),
                **extra,
            },
        )
        assert response.status_code in (200, 422), response.status_code
        assert f"Record {book['theirs']} does not exist." in response.get_data(as_text=True)
    assert contacts_named(book["word"]) == before
    edit = client.get(f"/t/contacts/edit/{book['contact']}").get_data(as_text=True)
    other = records.create("companies", {"name": f"{book['word']} ещё"}, actor("admin")).id
    response = client.post(
        f"/t/contacts/edit/{book['contact']}",
        data={
            "first_name": f"{book['word']} контакт",
            "company_id": str(other),
            "csrf_token": csrf_token(edit),
        },
    )
    assert response.status_code in (200, 422)
    assert company_of(book["contact"]) == book["theirs"]


def test_a_crafted_api_request_is_refused(app, book) -> None:  # noqa: ANN001
    from tests.conftest import DEMO_PASSWORD

    client = app.test_client()
    headers = token(client, STAFF, DEMO_PASSWORD)
    before = contacts_named(book["word"])
    posted = client.post(
        "/api/v1/t/contacts/",
        json={"first_name": f"{book['word']} api", "company_id": book["theirs"]},
        headers=headers,
    )
    assert posted.status_code == 422, posted.get_data(as_text=True)
    assert f"Record {book['theirs']} does not exist." in posted.get_data(as_text=True)
    assert contacts_named(book["word"]) == before
    other = records.create("companies", {"name": f"{book['word']} api"}, actor("admin")).id
    put = client.put(
        f"/api/v1/t/contacts/{book['contact']}",
        json={"company_id": other, "_version": version_of(book["contact"])},
        headers=headers,
    )
    assert put.status_code == 422, put.get_data(as_text=True)
    assert company_of(book["contact"]) == book["theirs"]
    # Readable: accepted; an unchanged unreadable link: accepted.
    ok = client.post(
        "/api/v1/t/contacts/",
        json={"first_name": f"{book['word']} api ok", "company_id": book["mine"]},
        headers=headers,
    )
    assert ok.status_code in (200, 201), ok.get_data(as_text=True)
    same = client.put(
        f"/api/v1/t/contacts/{book['contact']}",
        json={
            "company_id": book["theirs"],
            "first_name": f"{book['word']} k",
            "_version": version_of(book["contact"]),
        },
        headers=headers,
    )
    assert same.status_code == 200, same.get_data(as_text=True)


def test_a_crafted_grid_save_is_refused(app, book) -> None:  # noqa: ANN001
    client = client_for(app, STAFF)
    page = client.get("/grid/contacts/")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    headers = {"X-CSRFToken": csrf_token(text)}
    before = contacts_named(book["word"])
    other = records.create("companies", {"name": f"{book['word']} сетка"}, actor("admin")).id
    version = db.session.scalar(
        select(current().classes["contacts"].row_version).where(
            current().classes["contacts"].id == book["contact"]
        )
    )
    body = {
        "changes": [{"id": book["contact"], "version": version, "values": {"company_id": other}}],
        "create": [{"values": {"first_name": f"{book['word']} сетка", "company_id": book["theirs"]}}],
    }
    response = client.post("/grid/contacts/save", json=body, headers=headers)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert company_of(book["contact"]) == book["theirs"]
    assert contacts_named(book["word"]) == before


def test_lead_conversion_request_cannot_reach_the_system_path(app, book) -> None:  # noqa: ANN001
    from tests.test_leads import get, new_lead

    client = client_for(app, STAFF)
    lead = new_lead(STAFF, contact_name=f"{book['word']} лид")
    before = contacts_named(book["word"])
    token_ = csrf_token(client.get(f"/leads/{lead}/convert").get_data(as_text=True))
    refused = client.post(
        f"/leads/{lead}/convert",
        data={
            "csrf_token": token_,
            "company_choice": "pick",
            "company_id": str(book["theirs"]),
            "linking_unreadable": "lead conversion",
        },
    )
    assert refused.status_code == 200 and "convert-errors" in refused.get_data(as_text=True)
    db.session.rollback()
    assert get("leads", lead).status == "new" and get("leads", lead).company_id is None
    assert contacts_named(book["word"]) == before
