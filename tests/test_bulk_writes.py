"""Bulk writes: a record written in a batch (COPY on PostgreSQL from ``records.COPY_FROM`` rows) is the
same afterwards as one saved through its form; a big batch makes no SQL round trip per row; the database's
own refusals in a batch read as the write path's; the registry's fast parsing paths answer as the slow
ones, on both databases."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from decimal import Decimal
from typing import Any

import email_validator
import pytest
from flask_appbuilder.security.sqla.models import User
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event, select, text

from app.extensions import db
from custom_fields import history, records, runtime
from custom_fields.access import Actor
from custom_fields.spec import FieldSpec
from custom_fields.types import DATE_FORMATS, REGISTRY, FieldValueError
from models.system import utcnow
from tests.conftest import csrf_token

BULK = max(records.COPY_FROM, 60)


def tag() -> str:
    return uuid.uuid4().hex[:8]


def actor(username: str, source: str = "ui") -> Actor:
    return Actor.of_user(db.session.scalar(select(User).where(User.username == username)), source)


def row(slug: str, pk: int) -> Any:
    db.session.expire_all()
    return db.session.get(runtime.current().classes[slug], pk)


def differing_fields(slug: str) -> set[int]:
    """Fields that differ between two records by nature: the moment of writing (created at ...) and the
    deal a line belongs to."""
    fields = runtime.current().entity(slug).live_fields
    return {
        f.id
        for f in fields
        if (f.settings.get("auto") and not f.settings.get("derived")) or f.name == "deal_id"
    }


def shape(slug: str, pk: int) -> list[tuple[Any, ...]]:
    """A record's history without what differs between two records by nature (ids, change set, time)."""
    entity = runtime.current().entity(slug)
    differing = differing_fields(slug)
    return [
        (
            x.user_id,
            x.source,
            x.action,
            x.field_id,
            x.old_value,
            None if x.field_id in differing else x.new_value,
        )
        for x in history.lines(entity.id, pk)
    ]


def newest(slug: str) -> int:
    model = runtime.current().classes[slug]
    return db.session.scalar(select(model.id).order_by(model.id.desc()).limit(1))


@pytest.fixture
def stage(app_ctx) -> dict[str, Any]:  # noqa: ANN001
    admin = actor("admin")
    t = tag()
    pipeline = records.create("pipelines", {"name": f"Опт {t}"}, admin).id
    stage = records.create(
        "stages", {"name": "Новая", "pipeline_id": pipeline, "position": 1, "probability": "10"}, admin
    ).id
    product = records.create("products", {"name": f"Щебень {t}", "sku": f"Щ-{t}", "price": "12,50"}, admin).id
    return {"pipeline": pipeline, "stage": stage, "product": product, "tag": t}


def test_a_bulk_record_is_the_same_as_one_saved_through_its_form(stage, admin_client) -> None:  # noqa: ANN001
    t = stage["tag"]
    # Through the form: a deal, then a line of it (price from the product, total, the deal's amount).
    page = admin_client.get("/t/deals/add").get_data(as_text=True)
    deal_form = {"title": f"Сделка {t}", "stage_id": str(stage["stage"]), "amount": ""}
    assert (
        admin_client.post("/t/deals/add", data={"csrf_token": csrf_token(page), **deal_form}).status_code
        == 302
    )
    form_deal = newest("deals")
    page = admin_client.get("/t/deal_lines/add").get_data(as_text=True)
    line_form = {"deal_id": str(form_deal), "product_id": str(stage["product"]), "quantity": "3"}
    saved = admin_client.post("/t/deal_lines/add", data={"csrf_token": csrf_token(page), **line_form})
    assert saved.status_code == 302, re.findall(r'class="help-block">([^<]*)', saved.get_data(as_text=True))
    form_line = newest("deal_lines")

    # In bulk: the same values, many records per batch (COPY on PostgreSQL).
    admin = actor("admin")
    deals = records.create_many("deals", [deal_form] * BULK, admin)
    lines = records.create_many("deal_lines", [{**line_form, "deal_id": str(d.id)} for d in deals], admin)
    assert [d.version for d in deals] == [1] * BULK and len({d.id for d in deals}) == BULK

    def facts(slug: str, pk: int) -> tuple[Any, ...]:
        record = row(slug, pk)
        values = {
            f.name: getattr(record, f.name)
            for f in runtime.current().entity(slug).live_fields
            if f.id not in differing_fields(slug)
        }
        return record.row_version, record.owner_id, record.deleted_at, values, shape(slug, pk)

    expected_line = facts("deal_lines", form_line)
    expected_deal = facts("deals", form_deal)
    assert expected_line[3]["total"] == Decimal("37.50") and expected_deal[3]["amount"] == Decimal("37.50")
    assert expected_deal[0] == 2  # created, then its amount from the line
    for line, deal in zip(lines, deals, strict=True):
        assert facts("deal_lines", line.id) == expected_line
        assert facts("deals", deal.id) == expected_deal
    # Ids are handed out in order, and each record's history is one row per change set.
    assert [s.id for s in lines] == sorted(s.id for s in lines)
    entity = runtime.current().entity("deal_lines")
    assert len(history.lines(entity.id, lines[0].id)) == len(history.lines(entity.id, form_line))


def test_a_big_batch_makes_no_round_trip_per_row(stage) -> None:  # noqa: ANN001
    """Links, unique values, derived fields (price, total) and what follows elsewhere (each deal's amount)
    are checked and written per batch: 10 000 lines take about as many statements as 100."""
    admin = actor("admin", "import")
    deals = records.create_many(
        "deals", [{"title": f"Д {i}", "stage_id": stage["stage"]} for i in range(20)], admin
    )

    def statements(count: int) -> int:
        seen: list[str] = []

        def count_it(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
            seen.append(statement)

        values = [
            {"deal_id": deals[i % len(deals)].id, "product_id": stage["product"], "quantity": str(i % 7 + 1)}
            for i in range(count)
        ]
        event.listen(db.engine, "before_cursor_execute", count_it)
        try:
            saved = records.create_many("deal_lines", values, admin)
        finally:
            event.remove(db.engine, "before_cursor_execute", count_it)
        assert len(saved) == count
        return len(seen)

    few, many = statements(100), statements(10_000)
    # Batches of records.BATCH rows for the reads and writes that stay statements: a handful more.
    assert many <= few + 8 * (10_000 // records.BATCH), (few, many)
    assert many < 400
    amounts = {row("deals", d.id).amount for d in deals}
    assert all(a is not None and a > 0 for a in amounts)


def test_the_database_refusing_a_batch_reads_as_the_write_path_does(stage, monkeypatch) -> None:  # noqa: ANN001
    """Two overlapping writes both pass the check before writing; the unique index refuses the second,
    whether it went by INSERT or by COPY: the field's message, nothing written."""
    admin = actor("admin")
    monkeypatch.setattr(records, "_check_references_and_unique", lambda ctx, rows, pks: {})
    before = db.session.scalar(select(runtime.current().classes["products"].id).order_by(
        runtime.current().classes["products"].id.desc()).limit(1))  # fmt: skip
    values = [{"name": f"Товар {i}", "sku": f"DUP-{stage['tag']}"} for i in range(BULK)]
    with pytest.raises(records.RecordInvalid) as refused:
        records.create_many("products", values, admin)
    assert refused.value.errors == {"sku": "Another record already has this value."}
    assert newest("products") == before


# --- the registry's fast paths answer as the slow ones ------------------------------------------------------

EMAIL_SPEC = FieldSpec(id=1, entity_id=1, name="email", column_name="email", label="E-mail", type="email")
DATE_SPEC = FieldSpec(id=2, entity_id=1, name="due", column_name="due", label="Due", type="date")
LOCAL = st.one_of(
    st.text(alphabet="abcXYZ019._%+-!#'абвЁёЯйЙ\u0306\u00e9", min_size=0, max_size=70),
    st.sampled_from(["Abuse", "POSTMASTER", "Иван.Петров", "ё" * 65, "\u0306й"]),
)
DOMAIN = st.one_of(
    st.text(alphabet="abcXYZ019.-", min_size=0, max_size=30),
    st.sampled_from(["example.com", "Host.Example.COM", "localhost", "a.test", "x.local", "1.2.3.4", "a..b"]),
)


def slow_email(text: str) -> str | None:
    try:
        checked = email_validator.validate_email(text.strip(), check_deliverability=False)
    except email_validator.EmailNotValidError:
        return None
    return checked.normalized if len(checked.normalized) <= 320 else None


@settings(max_examples=400, deadline=None)
@given(local=LOCAL, domain=DOMAIN)
def test_plain_addresses_parse_as_email_validator_says(local: str, domain: str) -> None:
    text = f"{local}@{domain}"
    try:
        fast: str | None = REGISTRY["email"].parse(text, EMAIL_SPEC)
    except FieldValueError:
        fast = None
    assert fast == slow_email(text)


def slow_date(text: str) -> dt.date | None:
    for fmt in DATE_FORMATS:
        try:
            return dt.datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    try:
        return dt.datetime.fromisoformat(text.strip()).date()
    except ValueError:
        return None


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.builds(
            lambda y, m, d: f"{y:04}-{m:02}-{d:02}",
            st.integers(0, 9999),
            st.integers(0, 13),
            st.integers(0, 32),
        ),
        st.builds(
            lambda y, m, d: f"{d:02}.{m:02}.{y:04}",
            st.integers(0, 9999),
            st.integers(0, 13),
            st.integers(0, 32),
        ),
        st.text(alphabet="0123456789.-/ T:", max_size=20),
    )
)
def test_dates_parse_as_the_listed_formats_say(text: str) -> None:
    try:
        fast: dt.date | None = REGISTRY["date"].parse(text, DATE_SPEC)
    except FieldValueError:
        fast = None
    if text.strip():
        assert fast == slow_date(text)


@settings(max_examples=300, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False, places=None), st.integers(0, 8))
def test_decimal_json_is_the_value_at_the_fields_scale(value: Decimal, scale: int) -> None:
    spec = FieldSpec(
        id=3, entity_id=1, name="n", column_name="n", label="N", type="decimal", settings={"scale": scale}
    )
    try:
        expected = str(Decimal(value).quantize(Decimal(1).scaleb(-scale)))
    except ArithmeticError:  # more digits than the decimal context holds (no field stores such a value)
        try:
            answer = REGISTRY["decimal"].to_json(value, spec)
        except ArithmeticError:
            return
        assert value.as_tuple().exponent == -scale and answer == str(value)  # already at scale: as it is
        return
    assert REGISTRY["decimal"].to_json(value, spec) == expected


def spec_of(type_name: str, **settings: Any) -> FieldSpec:
    return FieldSpec(
        id=4, entity_id=1, name="v", column_name="v", label="V", type=type_name, settings=settings
    )


#: Fields whose batch parsers take short ways (``FieldType.parser``), with the settings that bound them.
PARSED_SPECS = [
    spec_of("text", max_length=8),
    spec_of("integer"),
    FieldSpec(id=5, entity_id=1, name="p", column_name="p", label="P", type="integer", int_limit=2**31 - 1),
    spec_of("decimal", scale=0),
    spec_of("decimal", scale=3),
    spec_of("decimal", scale=8),
    spec_of("money", currency="RUB"),
    spec_of("percent", scale=2),
    spec_of(
        "single_select",
        options=[
            {"id": "0000000a", "label": "Новая"},
            {"id": "0000000b", "label": " новая "},
            {"id": "0000000c", "label": "Closed"},
        ],
    ),
    spec_of("email"),
    spec_of("boolean"),
    spec_of("date"),
]
RAW_TEXT = st.one_of(
    st.text(alphabet="0123456789 ,.-+%₽$eE\u00a0'", max_size=40),
    st.builds(
        lambda a, b: f"{a}{b}", st.integers(-(10**22), 10**22), st.sampled_from(["", ",5", ".05", " ₽"])
    ),
    st.sampled_from(["Новая", "НОВАЯ ", "новая", "closed", "0000000a", " 0000000c ", "Открыта", "руб.", ""]),
    st.text(max_size=12),
)


def outcome(parse: Any, raw: Any) -> tuple[str, Any]:
    try:
        return "stored", parse(raw)
    except FieldValueError as refused:
        return "refused", str(refused)


@settings(max_examples=500, deadline=None)
@given(
    raw=st.one_of(
        RAW_TEXT,
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.decimals(allow_nan=False),
    )
)
def test_a_batchs_parsers_answer_as_parse_does(raw: Any) -> None:
    """What a batch parses with (``parser(spec)``, its short ways included) stores and refuses what
    ``parse`` does, for every field, however odd the value."""
    for spec in PARSED_SPECS:
        ftype = REGISTRY[spec.type]
        expected = outcome(lambda value, ftype=ftype, spec=spec: ftype.parse(value, spec), raw)
        assert outcome(ftype.parser(spec), raw) == expected, spec.type
        if expected[0] == "stored" and isinstance(expected[1], Decimal):
            assert str(outcome(ftype.parser(spec), raw)[1]) == str(expected[1])  # the same scale too


def test_a_big_update_batch_writes_each_record_as_a_single_update_would(stage, monkeypatch) -> None:  # noqa: ANN001
    """One statement for the batch on PostgreSQL: changed values, untouched ones and emptied ones end as
    record by record, with one history row each; a record changed meanwhile refuses the whole batch."""
    admin = actor("admin", "import")
    t = stage["tag"]
    products = records.create_many(
        "products", [{"name": f"Т {t} {i}", "sku": f"S-{t}-{i}", "price": "10"} for i in range(BULK)], admin
    )
    changes = [
        (
            p.id,
            {"price": "10,00" if i % 3 == 0 else ("" if i % 3 == 1 else f"{i},5"), "name": f"Т {t} {i}"},
            1,
        )
        for i, p in enumerate(products)
    ]
    saved = records.update_many("products", changes, admin)
    entity = runtime.current().entity("products")
    price = entity.field_by_name("price").id
    for i, (p, s) in enumerate(zip(products, saved, strict=True)):
        stored = row("products", p.id)
        expected = [Decimal("10.00"), None, Decimal(f"{i}.50")][i % 3]
        assert stored.price == expected and stored.name == f"Т {t} {i}"
        assert s.version == stored.row_version == (1 if i % 3 == 0 else 2)
        updates = [x for x in history.lines(entity.id, p.id) if x.action == "update"]
        if i % 3 == 0:
            assert updates == []
        else:
            assert [(x.field_id, x.old_value, x.new_value) for x in updates] == [
                (price, "10.00", None if i % 3 == 1 else f"{i}.50")
            ]

    # A record someone changed between the read and the write: nothing of the batch is applied.
    load = records._load

    def stale_load(ctx, pks, **kwargs):  # noqa: ANN001, ANN003, ANN202
        rows = load(ctx, pks, **kwargs)
        if kwargs.get("lock") and products[5].id in rows:
            rows[products[5].id]["row_version"] += 1
        return rows

    monkeypatch.setattr(records, "_load", stale_load)
    with pytest.raises(records.StaleRecord):
        records.update_many("products", [(p.id, {"price": "77"}, None) for p in products], admin)
    assert all(row("products", p.id).price != Decimal("77.00") for p in products)


def test_history_of_a_big_batch_keeps_every_character(stage) -> None:  # noqa: ANN001
    """Backslashes, tabs, line breaks, quotes, emoji and any alphabet reach history as typed (COPY's text
    format on PostgreSQL escapes them)."""
    admin = actor("admin", "import")
    t = stage["tag"]
    names = [f'Т\\{i}\t"x"\u2028\nж\\N {t} 😀' for i in range(BULK)]
    saved = records.create_many(
        "products", [{"name": n, "sku": f"E-{t}-{i}"} for i, n in enumerate(names)], admin
    )
    entity = runtime.current().entity("products")
    name_id = entity.field_by_name("name").id
    for s, name in zip(saved, names, strict=True):
        assert row("products", s.id).name == name
        assert [x.new_value for x in history.lines(entity.id, s.id) if x.field_id == name_id] == [name]


@pytest.mark.parametrize("other", ["save", "bin"])
def test_a_record_saved_during_a_big_batch_refuses_the_batch(stage, monkeypatch, other: str) -> None:  # noqa: ANN001
    """Without row locks (versions given, no rules reading other rows), someone saving (or binning) one of
    the records between the batch's read and its write still refuses the whole batch as stale, with what
    is stored now and the version to retry with (the values as read before when it was binned).
    PostgreSQL: SQLite lets no one write while the batch's transaction reads."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers")
    admin = actor("admin", "import")
    t = stage["tag"]
    products = records.create_many(
        "products", [{"name": f"П {t} {i}", "sku": f"C-{t}-{i}", "price": "1"} for i in range(BULK)], admin
    )
    tbl = runtime.current().classes["products"].__table__
    load = records._load

    def meanwhile(ctx, pks, **kwargs):  # noqa: ANN001, ANN003, ANN202
        rows = load(ctx, pks, **kwargs)
        assert not kwargs.get("lock")
        with db.engine.connect() as conn:  # another user saves (or bins) record 7 and commits
            change = {"price": Decimal("5")} if other == "save" else {"deleted_at": utcnow()}
            conn.execute(tbl.update().where(tbl.c.id == products[7].id).values(row_version=2, **change))
            conn.commit()
        return rows

    monkeypatch.setattr(records, "_load", meanwhile)
    with pytest.raises(records.StaleRecord) as refused:
        records.update_many("products", [(p.id, {"price": "9"}, 1) for p in products], admin)
    stale = refused.value
    shown = (stale.record_id, stale.version, stale.current["name"], stale.current["price"])
    if other == "save":
        assert shown == (products[7].id, 2, f"П {t} 7", "5.00")
    else:
        assert shown == (products[7].id, 1, f"П {t} 7", "1.00")
    monkeypatch.undo()
    prices = {p.id: row("products", p.id).price for p in products}
    assert prices.pop(products[7].id) == Decimal("5.00" if other == "save" else "1.00")
    assert set(prices.values()) == {Decimal("1.00")}


#: Raw values a user might paste into each type the bulk UPDATE writes, emptying ones among them; texts
#: with what PostgreSQL's array syntax escapes.
TRICKY_TEXTS = ['a "b" \\ c', "{x,y}", "NULL", "", 'Ж, ж; \\N\t"', "null", "'q'", "end\\"]


def bulk_table() -> tuple[str, dict[str, str]]:
    """A table with a field of each type the bulk UPDATE writes (names by label)."""
    from tests.tables_helpers import new_field, new_table, unique_label

    entity = new_table(unique_label("Пакет"))
    fields = [
        ("Целое", "integer", {}),
        ("Число", "decimal", {"settings": {"scale": 3}}),
        ("Сумма", "money", {"settings": {"currency": "RUB"}}),
        ("День", "date", {}),
        ("Момент", "datetime", {}),
        ("Да", "boolean", {}),
        ("Этап", "single_select", {"settings": {"options": [{"label": "Новая"}, {"label": "Закрыта"}]}}),
        ("Почта", "email", {}),
        ("Текст", "text", {}),
    ]
    for label, type_name, options in fields:
        new_field(entity, label, type_name, **options)
    spec = runtime.current().entity(entity.slug)
    added = {label for label, _type, _options in fields}
    return entity.slug, {"Имя": spec.display_field.name} | {
        f.label: f.name for f in spec.live_fields if f.label in added
    }


def raw_values(i: int) -> dict[str, str]:
    return {
        "Имя": f"Запись {i}",
        "Целое": ["", "-12 345", str(i)][i % 3],
        "Число": ["1,2345", "", f"{i}.5"][i % 3],
        "Сумма": ["1 234,50 ₽", f"{i},99", ""][i % 3],
        "День": ["31.12.2025", "", "0001-01-01"][i % 3],
        "Момент": ["2025-12-31 23:59", "", "01.02.2024 10:00"][i % 3],
        "Да": ["да", "нет", ""][i % 3],
        "Этап": ["закрыта", "", "Новая"][i % 3],
        "Почта": [f"x.{i}@Host.Example.COM", "", "a@example.com"][i % 3],
        "Текст": TRICKY_TEXTS[i % len(TRICKY_TEXTS)] + f" {i}" * (i % 2),
    }


def test_a_big_update_batch_stores_and_logs_every_type_as_single_updates_do(app_ctx) -> None:  # noqa: ANN001
    """Every type the bulk UPDATE writes (one statement with the values as arrays on PostgreSQL), text with
    what array syntax escapes included, ends stored and in history as record-by-record updates of the
    same values: the batch and the singles are compared field by field."""
    slug, names = bulk_table()
    admin = actor("admin", "import")
    first = {names[label]: value for label, value in raw_values(1).items()}
    singles = records.create_many(slug, [first] * BULK, admin)
    batch = records.create_many(slug, [first] * BULK, admin)
    wanted = [{names[label]: value for label, value in raw_values(i).items()} for i in range(BULK)]

    for saved, values in zip(singles, wanted, strict=True):
        records.update(slug, saved.id, values, admin, expected_version=1)
    seen: list[str] = []

    def count_it(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        if statement.startswith("UPDATE"):
            seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", count_it)
    try:
        records.update_many(slug, [(s.id, v, 1) for s, v in zip(batch, wanted, strict=True)], admin)
    finally:
        event.remove(db.engine, "before_cursor_execute", count_it)
    if db.engine.dialect.name == "postgresql":
        assert len(seen) == 1 and "unnest" in seen[0], seen  # the whole batch in one statement

    def facts(pk: int) -> tuple[Any, ...]:
        record = row(slug, pk)
        return record.row_version, {n: getattr(record, n) for n in names.values()}, shape(slug, pk)

    for single, bulk in zip(singles, batch, strict=True):
        assert facts(bulk.id) == facts(single.id)
    texts = [getattr(row(slug, s.id), names["Текст"]) for s in batch[:4]]
    assert texts == ['a "b" \\ c', "{x,y} 1", "NULL", "3"]


def test_a_big_batch_refreshes_the_tables_statistics(app_ctx) -> None:  # noqa: ANN001
    """PostgreSQL plans a batch's statements from the table's statistics: a batch to a table never
    analyzed, or one that at least doubles the rows they know of, refreshes them; a smaller one does
    not."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's statistics")
    slug, names = bulk_table()
    admin = actor("admin", "import")
    table = runtime.current().classes[slug].__table__.name

    def known() -> float:
        return db.session.scalar(text("SELECT reltuples FROM pg_class WHERE relname = :t"), {"t": table})

    assert known() < 1  # never analyzed (-1), or empty
    records.create_many(slug, [{names["Имя"]: f"t {i}"} for i in range(600)], admin)
    assert known() == 600
    small = int(600 * records.STALE_SHARE) - 1
    records.create_many(slug, [{names["Имя"]: f"u {i}"} for i in range(small)], admin)
    assert known() == 600
    records.create_many(slug, [{names["Имя"]: f"v {i}"} for i in range(600)], admin)
    assert known() == 1200 + small


def test_parsed_rows_are_not_parsed_again_while_their_fields_stay_as_they_were(stage) -> None:  # noqa: ANN001
    """An import's rows (``records.Parsed``, parsed a moment ago by the same fields' parsers) are taken as
    they are; a value parsed for a field as it was before a change is parsed again; rights still hold."""
    admin = actor("admin", "import")
    t = stage["tag"]
    entity = runtime.current().entity("products")
    name, sku = entity.field_by_name("name"), entity.field_by_name("sku")
    given = records.Parsed({"name": name, "sku": sku})
    given.update(name=f"  Т {t} ", sku=f"P-{t}")  # untrimmed: the proof that it was not parsed again
    stale = records.Parsed({"name": dataclasses.replace(name), "sku": sku})
    stale.update(name=f"  Т {t} ", sku=f"Q-{t}")
    kept, parsed = records.create_many("products", [given, stale], admin)
    assert row("products", kept.id).name == f"  Т {t} "
    assert row("products", parsed.id).name == f"Т {t}"
    mixed = records.Parsed({"name": name})  # only the name parsed already: the rest is parsed as usual
    mixed.update(name=f"Смесь {t}", sku=f"M-{t}", price="12,50")
    (both,) = records.create_many("products", [mixed], admin)
    assert (row("products", both.id).sku, row("products", both.id).price) == (f"M-{t}", Decimal("12.50"))

    created = next(f for f in entity.live_fields if f.settings.get("auto"))
    forged = records.Parsed({created.name: created, "sku": sku})
    forged.update({created.name: dt.datetime(2000, 1, 1, tzinfo=dt.UTC), "sku": f"R-{t}"})
    with pytest.raises(records.RecordInvalid) as refused:
        records.create_many("products", [forged], admin)
    assert created.name in refused.value.rows[0]
