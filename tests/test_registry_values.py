"""Values the registry checks beyond their shape: Russian tax ids with their check digits (other values
only for foreign companies), dates the databases and the time-zone conversion hold, money and decimals
rounded half-up, and values shown as their type shows them (history, timeline)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from flask_appbuilder.security.sqla.models import User
from flask_babel import force_locale
from sqlalchemy import select

from app.extensions import db
from custom_fields import records, runtime, types
from custom_fields.access import Actor
from custom_fields.spec import FieldSpec
from custom_fields.types import REGISTRY, FieldValueError, inn_valid, ogrn_valid
from models import Field
from tests.conftest import ADMIN_PASSWORD, DEMO_PASSWORD, login, signed_in
from tests.tables_helpers import new_field, new_table, unique_label
from tests.test_untouched_saves import save_untouched
from tests.test_write_path import token

# Real, published registration numbers (check digits included).
VALID_INN = ("7707083893", "7736050003", "500100732259", "7830002293")
VALID_OGRN = ("1027700132195", "1027739609391", "304500116000157")


def spec(type_name: str, **settings: object) -> FieldSpec:
    return FieldSpec(
        id=1, entity_id=1, name="f_1", column_name="f_1", label="Поле", type=type_name, settings=settings
    )


def actor(username: str) -> Actor:
    return Actor.of_user(db.session.scalar(select(User).where(User.username == username)))


# --- tax ids -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("inn", VALID_INN)
def test_valid_inns_pass_and_one_wrong_digit_fails(inn: str) -> None:
    assert inn_valid(inn)
    for position in range(len(inn)):
        typo = inn[:position] + str((int(inn[position]) + 1) % 10) + inn[position + 1 :]
        assert not inn_valid(typo), typo


@pytest.mark.parametrize("ogrn", VALID_OGRN)
def test_valid_ogrns_pass_and_a_wrong_check_digit_fails(ogrn: str) -> None:
    assert ogrn_valid(ogrn)
    assert not ogrn_valid(ogrn[:-1] + str((int(ogrn[-1]) + 1) % 10))


@pytest.mark.parametrize(
    ("kind", "raw", "message"),
    [
        ("inn", "abc", "An INN has 10 digits"),
        ("inn", "-1", "An INN has 10 digits"),
        ("inn", "770708389", "An INN has 10 digits"),
        ("inn", "7707083894", "check digits of this INN do not match"),
        ("inn", "７７０７０８３８９３", "An INN has 10 digits"),  # full-width digits are not digits here
        ("kpp", "77010100", "A KPP has 9 characters"),
        ("ogrn", "1027700132196", "check digit of this OGRN"),
        ("ogrn", "12345", "An OGRN has 13 digits"),
    ],
)
def test_russian_tax_ids_are_checked(app_ctx, kind: str, raw: str, message: str) -> None:  # noqa: ANN001
    ftype, field_spec = REGISTRY["tax_id"], spec("tax_id", kind=kind)
    with pytest.raises(FieldValueError, match=message):  # checked by the write path, on a new value
        ftype.check_record(ftype.parse(raw, field_spec), field_spec, {})


def test_tax_ids_are_stored_without_spaces(app_ctx) -> None:  # noqa: ANN001
    ftype = REGISTRY["tax_id"]
    assert ftype.parse(" 7707 083 893 ", spec("tax_id", kind="inn")) == "7707083893"
    assert ftype.parse(7707083893.0, spec("tax_id", kind="inn")) == "7707083893"
    assert ftype.parse("7701 01 001", spec("tax_id", kind="kpp")) == "770101001"
    assert ftype.parse("1027700132195", spec("tax_id", kind="ogrn")) == "1027700132195"


def test_a_company_inn_is_checked_unless_the_company_is_foreign(app, app_ctx) -> None:  # noqa: ANN001
    admin = actor("admin")
    for bad in ("abc", "-1", "7707083894"):
        with pytest.raises(records.RecordInvalid) as refused:
            records.create("companies", {"name": "ООО Проверка", "tax_id": bad}, admin)
        assert set(refused.value.errors) == {"tax_id"}
    russian = records.create("companies", {"name": "ПАО Сбербанк", "tax_id": "7707 083 893"}, admin)
    foreign = records.create(
        "companies", {"name": "Acme Ltd", "tax_id": "GB123456789", "is_foreign": True}, admin
    )
    # No longer foreign: its tax id must now be an INN.
    with pytest.raises(records.RecordInvalid) as refused:
        records.update("companies", foreign.id, {"is_foreign": False}, admin, expected_version=1)
    assert "mark it as foreign" in refused.value.errors["tax_id"]
    # An INN saved before the check existed stays until someone changes it.
    model = runtime.current().classes["companies"]
    db.session.execute(model.__table__.update().where(model.id == russian.id).values(tax_id="123"))
    db.session.commit()
    records.update("companies", russian.id, {"region": "Москва"}, admin, expected_version=1)
    records.delete("companies", russian.id, admin)

    client = app.test_client()
    headers = token(client, "staff1", DEMO_PASSWORD)
    answer = client.post(
        "/api/v1/t/companies/", json={"name": "ООО Ошибка", "tax_id": "abc"}, headers=headers
    )
    assert answer.status_code == 422
    assert "An INN has 10 digits" in answer.get_json()["message"]["tax_id"][0]
    answer = client.post(
        "/api/v1/t/leads/", json={"title": "Заявка", "tax_id": "500100732259"}, headers=headers
    )
    assert answer.status_code == 201, answer.get_data(as_text=True)


def test_the_demo_book_has_valid_inns(app_ctx) -> None:  # noqa: ANN001
    for slug in ("companies", "leads"):
        model = runtime.current().classes[slug]
        live = (model.tax_id.is_not(None), model.deleted_at.is_(None))
        rows = db.session.execute(select(model.tax_id, model.is_foreign).where(*live)).all()
        assert rows, slug
        assert [tax_id for tax_id, foreign in rows if not foreign and not inn_valid(tax_id)] == []


# --- dates -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "0001-01-01T00:00:00",  # in Moscow: before year 1 in UTC (the conversion overflowed: a 500)
        dt.datetime(1, 1, 1, 0, 0),
        "0001-01-01T12:00:00+00:00",  # UTC, but a zone west of UTC (a database session's) could not show it
        "9999-12-31T23:59:59-05:00",
        "9999-12-31T20:00:00+00:00",
    ],
)
def test_date_times_that_no_time_zone_can_convert_are_refused(app_ctx, raw: object) -> None:  # noqa: ANN001
    with pytest.raises(FieldValueError, match="between 02.01.0001 and 30.12.9999"):
        REGISTRY["datetime"].parse(raw, spec("datetime"))


def test_dates_of_any_year_are_kept(app_ctx) -> None:  # noqa: ANN001
    date = REGISTRY["date"]
    assert date.parse("12.05.1841", spec("date")) == dt.date(1841, 5, 12)  # a company founded in 1841
    assert date.parse("0001-01-01", spec("date")) == dt.date(1, 1, 1)
    assert date.parse(dt.date(1, 1, 1), spec("date")) == dt.date(1, 1, 1)
    assert date.parse("9999-12-31", spec("date")) == dt.date(9999, 12, 31)
    when = REGISTRY["datetime"].parse("01.01.1899 10:00", spec("datetime"))
    assert when == dt.datetime(1899, 1, 1, 10, tzinfo=types.local_timezone()).astimezone(dt.UTC)
    late = REGISTRY["datetime"].parse("9999-12-30T20:00:00+00:00", spec("datetime"))
    assert late == dt.datetime(9999, 12, 30, 20, tzinfo=dt.UTC)


def test_old_dates_are_saved_shown_and_saved_again(app, app_ctx) -> None:  # noqa: ANN001
    """A record holding a date before 1900 and the earliest date-time is saved, read back on either
    database, shown, and saved again untouched through its form."""
    entity = new_table(unique_label("Основание"))
    founded, when = new_field(entity, "Основана", "date"), new_field(entity, "Когда", "datetime")
    name = db.session.get(Field, entity.display_field_id).name
    values = {name: "Старая фирма", founded.name: "12.05.1841", when.name: "0001-01-02T00:00:00+00:00"}
    saved = records.create(entity.slug, values, actor("admin"))
    db.session.expire_all()
    row = db.session.get(runtime.current().classes[entity.slug], saved.id)
    assert row.__dict__[founded.name] == dt.date(1841, 5, 12)
    client = app.test_client()
    assert signed_in(login(client, "admin", ADMIN_PASSWORD))
    page = client.get(f"/t/{entity.slug}/show/{saved.id}")
    assert page.status_code == 200 and "12.05.1841" in page.get_data(as_text=True)
    url = f"/t/{entity.slug}/edit/{saved.id}"
    save_untouched(client, url)
    db.session.expire_all()
    assert db.session.get(runtime.current().classes[entity.slug], saved.id).row_version == saved.version


def test_a_task_due_in_year_one_is_a_clear_422(app) -> None:  # noqa: ANN001
    client = app.test_client()
    headers = token(client, "staff1", DEMO_PASSWORD)
    answer = client.post(
        "/api/v1/t/tasks/", json={"title": "Древняя", "due_at": "0001-01-01T00:00:00"}, headers=headers
    )
    assert answer.status_code == 422, answer.get_data(as_text=True)
    assert "A date and time must be between" in answer.get_json()["message"]["due_at"][0]


# --- rounding ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_name", "settings", "raw", "expected"),
    [
        ("money", {}, "2.345", "2.35"),  # half-to-even would give 2.34
        ("money", {}, "2,335", "2.34"),
        ("money", {}, "-2.345", "-2.35"),
        ("money", {}, "0.125", "0.13"),  # half-to-even: 0.12
        ("money", {}, 2.345, "2.35"),  # a JSON number, as typed
        ("decimal", {"scale": 2}, "-0.125", "-0.13"),
        ("decimal", {"scale": 0}, "2.5", "3"),  # half-to-even: 2
        ("decimal", {"scale": 3}, "1.0005", "1.001"),
        ("percent", {"scale": 1}, "12,25", "12.3"),  # half-to-even: 12.2
    ],
)
def test_money_and_decimals_round_half_up(app_ctx, type_name, settings, raw, expected) -> None:  # noqa: ANN001
    assert REGISTRY[type_name].parse(raw, spec(type_name, **settings)) == Decimal(expected)


def test_rounding_half_up_through_the_api(app) -> None:  # noqa: ANN001
    client = app.test_client()
    headers = token(client, "admin", "admin-Пароль-1")
    number = f"R-{uuid.uuid4().hex[:6]}"
    answer = client.post(
        "/api/v1/t/invoices/",
        json={"number": number, "amount": "2,345", "paid_amount": 1.125},
        headers=headers,
    )
    assert answer.status_code == 201, answer.get_data(as_text=True)
    shown = client.get(f"/api/v1/t/invoices/{answer.get_json()['id']}", headers=headers).get_json()["result"]
    assert (shown["amount"], shown["paid_amount"]) == ("2.35", "1.13")


# --- display -----------------------------------------------------------------------------------------------


def test_values_display_as_their_type_shows_them(app_ctx) -> None:  # noqa: ANN001
    moment = dt.datetime(2026, 12, 1, 10, 54, 37, tzinfo=dt.UTC)  # 13:54 in Moscow
    assert REGISTRY["datetime"].display(moment, spec("datetime")) == "01.12.2026 13:54"
    assert REGISTRY["date"].display(dt.date(2026, 12, 1), spec("date")) == "01.12.2026"
    assert REGISTRY["boolean"].display(True, spec("boolean")) == "yes"
    money = spec("money", currency="RUB")
    assert REGISTRY["money"].display(Decimal("1234.5"), money) == "1,234.50 RUB"
    assert REGISTRY["decimal"].display(Decimal("2747000"), spec("decimal", scale=2)) == "2,747,000.00"
    assert REGISTRY["percent"].display(Decimal("12.5"), spec("percent", scale=1)) == "12.5 %"
    with force_locale("ru"):  # the reader's grouping and decimal mark
        assert REGISTRY["money"].display(Decimal("1234.5"), money) == "1\u00a0234,50 RUB"
        assert REGISTRY["boolean"].display(True, spec("boolean")) == "да"


# --- phones and e-mails ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("495 123-45-67", "+74951234567"),  # no country code: Russian
        ("8 (495) 123-45-67", "+74951234567"),
        ("8 800 555-35-35", "+78005553535"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+1 (650) 253-0000", "+16502530000"),
        (79161234567.0, "+79161234567"),  # an Excel cell
    ],
)
def test_phones_are_stored_in_e164(app_ctx, raw: object, expected: str) -> None:  # noqa: ANN001
    assert REGISTRY["phone"].parse(raw, spec("phone")) == expected


@pytest.mark.parametrize("raw", ["12345", "+7 000", "+7 495 123-45-6", "+44 20 7946 09581", "8-800-FLOWERS"])
def test_numbers_no_phone_can_have_are_refused(app_ctx, raw: str) -> None:  # noqa: ANN001
    with pytest.raises(FieldValueError, match="Expected a phone number"):
        REGISTRY["phone"].parse(raw, spec("phone"))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("иван@почта.рф", "иван@почта.рф"),
        ("user@XN--80A1ACNY.XN--P1AI", "user@почта.рф"),  # one domain, however it is written
        ("Ivan.Petrov+crm@Example.RU", "Ivan.Petrov+crm@example.ru"),
    ],
)
def test_international_e_mail_addresses(app_ctx, raw: str, expected: str) -> None:  # noqa: ANN001
    assert REGISTRY["email"].parse(raw, spec("email")) == expected


@pytest.mark.parametrize(
    "raw", ['"quoted"@example.com', "a b@example.com", "x@localhost", "a@b..ru", "@b.ru"]
)
def test_what_is_not_an_e_mail_address_is_refused(app_ctx, raw: str) -> None:  # noqa: ANN001
    with pytest.raises(FieldValueError, match="Expected an e-mail address"):
        REGISTRY["email"].parse(raw, spec("email"))
