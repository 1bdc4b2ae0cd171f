"""Values documented as unique stay unique when requests overlap: a real unique index (letter case ignored)
behind the write path's check, and the index's refusal answers like the check (422 at the field)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from custom_fields import records
from custom_fields.access import Actor
from custom_fields.core import ensure_unique_indexes
from models import Invoice, Product
from tests.conftest import ADMIN_PASSWORD

CONCURRENT = 20
TAKEN = "Another record already has this value."


def api_token(base: str) -> dict[str, str]:
    response = requests.post(
        f"{base}/api/v1/security/login",
        json={"username": "admin", "password": ADMIN_PASSWORD, "provider": "db"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def post_at_once(base: str, path: str, bodies: list[dict[str, Any]]) -> list[requests.Response]:
    """Every body POSTed by its own thread, released together."""
    headers = api_token(base)
    gate = threading.Barrier(len(bodies))
    answers: list[requests.Response | None] = [None] * len(bodies)

    def send(i: int) -> None:
        gate.wait()
        answers[i] = requests.post(f"{base}{path}", json=bodies[i], headers=headers, timeout=120)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [a for a in answers if a is not None]


CASES: dict[str, tuple[str, type, Callable[[str, int], dict[str, Any]]]] = {
    # slug: (field, model, body of the i-th request for a value)
    "products": ("sku", Product, lambda v, i: {"name": f"Товар {i}", "sku": v.upper() if i % 2 else v}),
    "invoices": ("number", Invoice, lambda v, i: {"number": v.upper() if i % 2 else v, "amount": "100"}),
}


@pytest.mark.parametrize("slug", list(CASES))
def test_concurrent_posts_of_one_value_save_one_record(app, live_url, slug: str) -> None:  # noqa: ANN001
    name, model, body = CASES[slug]
    value = f"race-{uuid.uuid4().hex[:8]}"
    answers = post_at_once(live_url, f"/api/v1/t/{slug}/", [body(value, i) for i in range(CONCURRENT)])

    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] + [422] * (CONCURRENT - 1), [a.text[:200] for a in answers]
    with app.app_context():
        column = getattr(model, name)
        saved = db.session.scalar(select(func.count()).where(func.lower(column) == value))
    assert saved == 1
    refusals = [a.json()["message"] for a in answers if a.status_code == 422]
    # Whether the check before writing or the index refused it, the answer names the field.
    assert all(r == {name: [TAKEN]} for r in refusals if isinstance(r, dict)), refusals
    assert all(isinstance(r, dict) for r in refusals), refusals


def test_letter_case_does_not_make_another_sku(app_ctx) -> None:  # noqa: ANN001
    admin = Actor.system_job()
    value = f"Case-{uuid.uuid4().hex[:6]}"
    records.create("products", {"name": "Первый", "sku": value}, admin)
    with pytest.raises(records.RecordInvalid) as refused:
        records.create("products", {"name": "Второй", "sku": value.lower()}, admin)
    assert refused.value.errors == {"sku": TAKEN}
    with pytest.raises(records.RecordInvalid) as refused:
        records.create_many(
            "products", [{"name": "A", "sku": "X" + value}, {"name": "B", "sku": "x" + value}], admin
        )
    assert refused.value.rows == {1: {"sku": TAKEN}}


def test_the_database_itself_refuses_a_repeated_sku_in_other_letters(app_ctx) -> None:  # noqa: ANN001
    value = f"idx-{uuid.uuid4().hex[:6]}"
    db.session.execute(
        text("INSERT INTO crm_product (name, sku, row_version, created_at) VALUES ('x', :v, 1, :at)"),
        {"v": value.upper(), "at": "2026-01-01 00:00:00"},
    )
    with pytest.raises(Exception) as raw:
        db.session.execute(
            text("INSERT INTO crm_product (name, sku, row_version, created_at) VALUES ('y', :v, 1, :at)"),
            {"v": value, "at": "2026-01-01 00:00:00"},
        )
    db.session.rollback()
    assert "uq_crm_product_sku" in str(raw.value)


def test_product_in_the_recycle_bin_keeps_its_sku(app_ctx) -> None:  # noqa: ANN001
    admin = Actor.system_job()
    value = f"bin-{uuid.uuid4().hex[:6]}"
    saved = records.create("products", {"name": "В корзину", "sku": value}, admin)
    records.delete("products", saved.id, admin)
    with pytest.raises(records.RecordInvalid) as refused:
        records.create("products", {"name": "Новый", "sku": value.upper()}, admin)
    assert refused.value.errors == {"sku": "A record in the recycle bin already has this value."}


def test_repeated_values_leave_the_index_missing_and_say_which(app_ctx) -> None:  # noqa: ANN001
    """An install whose invoice numbers already repeat: the index waits (with the values named) until they
    are unique, then ``tabula init`` creates it."""
    value = f"dup-{uuid.uuid4().hex[:6]}"
    db.session.execute(text("DROP INDEX uq_crm_invoice_number"))
    insert = text("INSERT INTO crm_invoice (number, amount, row_version, created_at) VALUES (:n, 1, 1, :at)")
    db.session.execute(insert, {"n": value, "at": "2026-01-01 00:00:00"})
    db.session.execute(insert, {"n": value.upper(), "at": "2026-01-01 00:00:00"})
    db.session.commit()
    try:
        problems = ensure_unique_indexes()
        assert len(problems) == 1 and "uq_crm_invoice_number" in problems[0] and f"{value} (2)" in problems[0]
    finally:
        db.session.execute(text("DELETE FROM crm_invoice WHERE lower(number) = :n"), {"n": value})
        db.session.commit()
    assert ensure_unique_indexes() == []
    with pytest.raises(records.RecordInvalid):
        records.create("invoices", {"number": value, "amount": "1"}, Actor.system_job())
        records.create("invoices", {"number": value.upper(), "amount": "1"}, Actor.system_job())


def test_a_unique_custom_text_field_ignores_letter_case_too(app_ctx) -> None:  # noqa: ANN001
    from custom_fields import service
    from tests.tables_helpers import insert, new_field, new_table, unique_label

    entity = new_table(unique_label("Коды"))
    code = new_field(entity, "Код", "text", unique=True)
    insert(entity, **{code.name: "Код-1"})
    with pytest.raises(IntegrityError):
        insert(
            entity, **{code.name: "КОД-1"}
        )  # Cyrillic letters fold too (SQLite's lower() made Unicode-aware)
    db.session.rollback()
    with pytest.raises(records.RecordInvalid) as refused:
        records.create(entity.slug, {code.name: "код-1"}, Actor.system_job())
    assert refused.value.errors[code.name] == TAKEN

    # Switching "unique" on counts values that differ only in letter case as repeated.
    other = new_field(entity, "Другой", "text")
    insert(entity, **{other.name: "abc"})
    insert(entity, **{other.name: "ABC"})
    with pytest.raises(service.SchemaError, match="1 value occurs in more than one record"):
        service.update_field(other.id, unique=True)


def test_upgrading_a_database_with_repeated_skus_reports_them(scratch_env, tmp_path) -> None:  # noqa: ANN001
    """Migration 0005 on a book whose SKUs already repeat: the upgrade goes through, the index waits, and
    the change log names the values; once they are unique, ``ensure_unique_indexes`` creates it."""
    from flask_migrate import upgrade

    from app import create_app
    from models import SchemaChange

    url = f"sqlite:///{tmp_path / 'old.db'}"
    scratch = create_app({**scratch_env, "DATABASE_URL": url, "TABULA_INSTANCE_DIR": str(tmp_path)})
    directory = scratch.extensions["migrate"].directory
    with scratch.app_context():
        upgrade(directory=directory, revision="0004")
        insert = text("INSERT INTO crm_product (name, sku, row_version, created_at) VALUES (:n, :s, 1, :at)")
        for name, sku in (("Первый", "ABC-1"), ("Второй", "abc-1"), ("Третий", "XYZ")):
            db.session.execute(insert, {"n": name, "s": sku, "at": "2026-01-01 00:00:00"})
        db.session.commit()

        upgrade(directory=directory)
        indexes = set(db.session.scalars(text("SELECT name FROM sqlite_master WHERE type = 'index'")))
        assert "uq_crm_invoice_number" in indexes and "uq_crm_product_sku" not in indexes
        logged = db.session.scalars(
            select(SchemaChange.summary).where(SchemaChange.action == "unique index skipped")
        )
        assert [s for s in logged if "crm_product.sku" in s and "abc-1 (2)" in s]

        db.session.execute(text("UPDATE crm_product SET sku = 'abc-2' WHERE name = 'Второй'"))
        db.session.commit()
        assert ensure_unique_indexes() == []
        with pytest.raises(IntegrityError):
            db.session.execute(insert, {"n": "Четвёртый", "s": "xyz", "at": "2026-01-01 00:00:00"})
        db.session.rollback()
        db.engine.dispose()
