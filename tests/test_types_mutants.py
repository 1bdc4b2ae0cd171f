"""The field-type registry asked directly, value by value: what each type stores, shows and refuses, with the
exact words of each refusal. The tests mutation testing of ``custom_fields/types.py`` relies on (README,
"Mutation testing"; tests/MUTATION.md): every answer here is exact, so a changed rule, bound or message fails.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

import pytest
from flask_babel import force_locale
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from markupsafe import Markup
from sqlalchemy import column
from sqlalchemy.dialects import sqlite

from custom_fields import types
from custom_fields.spec import FieldSpec
from custom_fields.types import REGISTRY, FieldValueError, SettingsError, inn_valid, ogrn_valid


def spec(type_name: str, int_limit: int | None = None, **settings: Any) -> FieldSpec:
    return FieldSpec(1, 1, "f_1", "f_1", "Поле", type_name, settings=settings, int_limit=int_limit)


def outcome(parse: Any, raw: Any) -> tuple[str, str]:
    """What a parser made of ``raw``: the value with its type and exact form (``-0.00`` is not ``0.00``)."""
    try:
        value = parse(raw)
    except FieldValueError as exc:
        return "refused", str(exc)
    return type(value).__name__, str(value)


def refusal(parse: Any, raw: Any, error: type[ValueError] = FieldValueError) -> str:
    """The words ``parse`` (or a settings cleaner, with ``SettingsError``) refuses ``raw`` with."""
    with pytest.raises(error) as refused:
        parse(raw)
    return str(refused.value)


# --- the batch parsers: the same answers and refusals as parse, value by value ----------------------------

NUMBER_TEXT = st.one_of(
    st.from_regex(r"\A[ ]?-?[0-9 ]{0,22}([.,][0-9]{0,10})?[ ]?\Z"),
    st.sampled_from(["", " ", "abc", "1e5", "12 345", "-1 234,5", " 7 ", "0", "-0", "−5", "1,2,3", "٣"]),
)
SPECS = [
    spec("integer"),
    spec("integer", int_limit=2**31 - 1),  # a core table's 32-bit column
    spec("decimal", scale=0),
    spec("decimal", scale=2),
    spec("decimal", scale=8),
    spec("percent", scale=1),
    spec("money", currency="RUB"),
    spec("text", max_length=5),
    spec("single_select", options=[{"id": "a1b2c3d4", "label": "Горячий"}, {"id": "cold", "label": "Cold"}]),
    spec("multi_select", options=[{"id": "a1b2c3d4", "label": "Горячий"}, {"id": "cold", "label": "Cold"}]),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raw=st.one_of(
        NUMBER_TEXT,
        st.integers(min_value=-(2**64), max_value=2**64),
        st.sampled_from([2**31 - 1, 2**31, -(2**31), 2**63 - 1, 2**63, -(2**63), 10**16, 10**18, 10**10]),
        st.decimals(allow_nan=True, allow_infinity=True, places=None),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(
            [None, True, False, 1.5, "Горячий", " горячий ", "COLD", "a1b2c3d4", "cold", [], "123456"]
        ),
    ),
    field=st.sampled_from(SPECS),
)
@example(raw="2147483648", field=SPECS[1])
@example(raw=2147483648, field=SPECS[1])
@example(raw="12 345", field=SPECS[0])
@example(raw="abc", field=SPECS[0])
@example(raw="", field=SPECS[0])
@example(raw=" 5 ", field=SPECS[0])
@example(raw=Decimal("-0.001"), field=SPECS[3])
@example(raw="-1 234,505", field=SPECS[3])
@example(raw="1 234,5 руб.", field=SPECS[6])
@example(raw="9999999999999999.995", field=SPECS[3])  # rounds up to 10**16: too large
@example(raw=Decimal("9999999999999999.995"), field=SPECS[3])
@example(raw=10**16, field=SPECS[3])
@example(raw="-0,001", field=SPECS[3])
@example(raw=-0.001, field=SPECS[3])
@example(raw="abcdef", field=SPECS[7])
def test_the_batch_parser_answers_as_parse_does(app_ctx, raw: Any, field: FieldSpec) -> None:  # noqa: ANN001
    ftype = REGISTRY[field.type]
    assert outcome(ftype.parser(field), raw) == outcome(lambda r: ftype.parse(r, field), raw)


def test_a_32_bit_column_refuses_what_it_cannot_hold_the_short_way_too(app_ctx) -> None:  # noqa: ANN001
    parse = REGISTRY["integer"].parser(spec("integer", int_limit=2**31 - 1))
    assert parse(2**31 - 1) == 2**31 - 1
    assert parse("-2147483647") == -(2**31 - 1)
    assert refusal(parse, 2**31) == "The number is too large."
    assert refusal(parse, "2147483648") == "The number is too large."
    assert refusal(parse, "abc") == "Expected a whole number."
    assert parse(" 12 345 ") == 12345 and parse("   ") is None and parse(None) is None


# --- links and users ---------------------------------------------------------------------------------------


def test_a_link_takes_the_number_of_a_record_in_any_form(app_ctx) -> None:  # noqa: ANN001
    link = spec("link", target=1)
    parse = lambda raw: REGISTRY["link"].parse(raw, link)  # noqa: E731
    assert [parse(v) for v in (5, "5", " 5 ", 5.0, {"id": 7}, {"id": "8"}, 2**31 - 1, "", None)] == [
        5, 5, 5, 5, 7, 8, 2**31 - 1, None, None,
    ]  # fmt: skip
    for bad in (True, 5.5, "abc", {"ID": 7}, {"name": 7}, [5], float("inf")):
        assert refusal(parse, bad) == "Expected the number of a record.", bad
    for outside in (0, -1, 2**31, 2**32):
        assert refusal(parse, outside) == "No such record.", outside
    assert parse(63) == 63  # a bound written 2 * 31 (62) instead of 2**31 would refuse it


def test_a_link_to_a_record_that_is_not_there_names_it(app_ctx) -> None:  # noqa: ANN001
    user = REGISTRY["user"]
    field = spec("user")
    user.check_exists(1, field)  # the admin
    user.check_exists(None, field)
    with pytest.raises(FieldValueError) as refused:
        user.check_exists(987654, field)
    assert str(refused.value) == "Record 987654 does not exist."
    assert user.target_table(field) == "ab_user" and user.target_entity_id(field) is None


def test_a_user_is_found_by_login_or_number(app_ctx) -> None:  # noqa: ANN001
    from custom_fields.runtime import user_id_by_username

    parse = lambda raw: REGISTRY["user"].parse(raw, spec("user"))  # noqa: E731
    admin_id = user_id_by_username("admin")
    assert admin_id is not None
    assert parse("admin") == admin_id and parse("  admin ") == admin_id
    assert parse(str(admin_id)) == admin_id and parse(admin_id) == admin_id and parse("") is None
    assert refusal(parse, "nobody") == "No user “nobody”."
    long_name = "к" * 49 + "ЯZ" + "w" * 10
    assert refusal(parse, long_name) == f"No user “{long_name[:50]}”."
    assert refusal(parse, 0) == "No such record."


# --- Russian tax ids ---------------------------------------------------------------------------------------


def test_tax_id_settings_are_cleaned_to_a_known_kind_and_a_field_name(app_ctx) -> None:  # noqa: ANN001
    clean = REGISTRY["tax_id"].clean_settings
    assert clean({}) == {"kind": "inn", "foreign_field": ""}
    assert clean({"kind": None, "foreign_field": None}) == {"kind": "inn", "foreign_field": ""}
    assert clean({"kind": "kpp", "foreign_field": "is_foreign"}) == {
        "kind": "kpp",
        "foreign_field": "is_foreign",
    }
    assert clean({"kind": "ogrn", "foreign_field": "Is-Foreign"}) == {"kind": "ogrn", "foreign_field": ""}
    assert clean({"foreign_field": "x" * 64})["foreign_field"] == ""
    assert clean({"foreign_field": "f" + "_" * 62})["foreign_field"] == "f" + "_" * 62
    assert refusal(clean, {"kind": "INN"}, SettingsError) == "The kind of tax ID must be INN, KPP or OGRN."


def test_a_tax_id_is_text_stored_in_upper_case_without_spaces_or_dashes(app_ctx) -> None:  # noqa: ANN001
    tax_id, field = REGISTRY["tax_id"], spec("tax_id", kind="kpp")
    parse = lambda raw: tax_id.parse(raw, field)  # noqa: E731
    assert parse("77 01-ab\u00a0001") == "7701AB001" and parse(" ") is None
    assert parse(Decimal("770101001")) == "770101001"
    for bad in (True, [1], {"a": 1}, dt.date(2026, 1, 1), "77\x0001"):
        assert refusal(parse, bad) == "Expected text.", bad
    assert refusal(parse, "1" * 21) == "At most 20 characters (this has 21)."
    assert tax_id.filter_value(" 7701-ab ", field) == "7701AB"


def test_tax_ids_compare_as_stored(app_ctx) -> None:  # noqa: ANN001
    same = REGISTRY["tax_id"].same
    field = spec("tax_id")
    assert same(None, None, field)
    assert not same(None, "none", field) and not same("NONE", None, field)
    assert same("7707 083893", "7707083893", field) and not same("7707083893", "7707083894", field)


@pytest.mark.parametrize(
    ("settings", "text", "message"),
    [
        ({}, "123", "An INN has 10 digits (an organisation) or 12 (a person or sole trader)."),
        ({"kind": ""}, "7707083894",
         "The check digits of this INN do not match: please check it for a typo."),
        ({"kind": "inn", "foreign_field": "is_foreign"}, "7707083894",
         "The check digits of this INN do not match: please check it for a typo."),
        ({"kind": "inn", "foreign_field": "is_foreign"}, "GB123",
         "An INN has 10 digits (an organisation) or 12 (a person or sole trader). "
         "For a foreign company, mark it as foreign first."),
        ({"kind": "kpp"}, "7701010011", "A KPP has 9 characters: 4 digits, 2 digits or letters, 3 digits."),
        ({"kind": "ogrn"}, "1027700132195" + "000", "An OGRN has 13 digits (an OGRNIP 15)."),
        ({"kind": "ogrn"}, "1027700132196",
         "The check digit of this OGRN does not match: please check it for a typo."),
    ],
)  # fmt: skip
def test_each_tax_id_refusal_says_what_is_wrong(app_ctx, settings: dict, text: str, message: str) -> None:  # noqa: ANN001
    with pytest.raises(FieldValueError) as refused:
        REGISTRY["tax_id"].check_russian(text, spec("tax_id", **settings))
    assert str(refused.value) == message


def test_a_tax_id_of_the_right_shape_passes_and_foreign_ones_pass_when_marked(app_ctx) -> None:  # noqa: ANN001
    tax_id = REGISTRY["tax_id"]
    for kind, text in (("inn", "7707083893"), ("kpp", "7701AB001"), ("ogrn", "304500116000157")):
        tax_id.check_russian(text, spec("tax_id", kind=kind))
    marked = spec("tax_id", kind="inn", foreign_field="is_foreign")
    tax_id.check_record("GB123", marked, {"is_foreign": True})
    with pytest.raises(FieldValueError):
        tax_id.check_record("GB123", marked, {"is_foreign": False})
    assert tax_id.depends_on(marked) == ("is_foreign",) and tax_id.depends_on(spec("tax_id")) == ()


def test_inn_check_digits_only_for_ten_or_twelve_ascii_digits() -> None:
    assert inn_valid("7707083893") and inn_valid("500100732259")
    assert not inn_valid("٠" * 10)  # Arabic-Indic zeros: decimal digits, not ASCII ones (their sum checks)
    assert not inn_valid("abcdefghij") and not inn_valid("0" * 11) and not inn_valid("123")


def test_ogrn_check_digit_by_its_length() -> None:
    assert ogrn_valid("901060121277334")  # OGRNIP: modulo 13 (where modulo 11 or 14 gives another digit)
    assert ogrn_valid("546758264471610")  # the remainder 10 checks as 0
    assert ogrn_valid("8532565365270")  # OGRN: modulo 11, the remainder 10 checks as 0
    assert not ogrn_valid("70783798139451")  # 14 digits whose check digit would match modulo 13
    assert not ogrn_valid("abcdefghijklm") and not ogrn_valid("٠" * 13)


# --- how values are shown ----------------------------------------------------------------------------------


def test_values_as_text_and_on_a_page(app_ctx) -> None:  # noqa: ANN001
    def text(type_name: str, value: Any, **settings: Any) -> str:
        return REGISTRY[type_name].to_text(value, spec(type_name, **settings))

    def shown(type_name: str, value: Any, **settings: Any) -> str:
        return REGISTRY[type_name].display(value, spec(type_name, **settings))

    assert [text("integer", v) for v in (None, 0, 12, Decimal("7"))] == ["", "0", "12", "7"]
    assert [text("boolean", v) for v in (None, True, False)] == ["", "true", "false"]
    assert [text("date", v) for v in (None, dt.date(2026, 3, 1))] == ["", "2026-03-01"]
    assert [shown("boolean", v) for v in (None, True, False)] == ["", "yes", "no"]
    with force_locale("ru"):
        assert [shown("boolean", v) for v in (True, False)] == ["да", "нет"]
    assert shown("money", None) == "" and shown("percent", None, scale=1) == ""
    assert shown("money", Decimal("1234.5")) == "1,234.50 RUB"
    assert shown("money", Decimal("1234.5"), currency="USD") == "1,234.50 USD"
    assert shown("percent", Decimal("12.25"), scale=1) == "12.3 %"


def test_options_show_their_label_and_colour(app_ctx) -> None:  # noqa: ANN001
    options = [
        {"id": "hot", "label": "Горячий <b>", "color": "#AABBCC"},
        {"id": "cold", "label": "Cold", "color": "red"},
        {"id": "warm", "label": "Warm"},
    ]
    single, field = REGISTRY["single_select"], spec("single_select", options=options)
    labels = [single.to_text(v, field) for v in ("hot", "cold", "gone", "", None)]
    assert labels == ["Горячий <b>", "Cold", "", "", ""]
    badge = '<span class="label tabula-option" style="background:{};color:#222">{}</span>'
    assert str(single.to_html("hot", field)) == badge.format("#AABBCC", "Горячий &lt;b&gt;")
    assert str(single.to_html("cold", field)) == badge.format("#eeeeee", "Cold")
    assert str(single.to_html("warm", field)) == badge.format("#eeeeee", "Warm")
    for nothing in ("gone", "", None):
        empty = single.to_html(nothing, field)
        assert isinstance(empty, Markup) and str(empty) == ""


def test_phones_and_web_addresses_are_links_with_their_text_escaped(app_ctx) -> None:  # noqa: ANN001
    phone, url = REGISTRY["phone"], REGISTRY["url"]
    assert str(phone.to_html("+74951234567", spec("phone"))) == '<a href="tel:+74951234567">+74951234567</a>'
    assert str(url.to_html("https://example.com/?a=1&b=<2>", spec("url"))) == (
        '<a href="https://example.com/?a=1&amp;b=&lt;2&gt;" rel="noopener noreferrer nofollow" '
        'target="_blank">https://example.com/?a=1&amp;b=&lt;2&gt;</a>'
    )
    for empty in ("", None):
        assert str(phone.to_html(empty, spec("phone"))) == "" and str(url.to_html(empty, spec("url"))) == ""


def test_an_email_that_is_not_text_is_refused_in_words(app_ctx) -> None:  # noqa: ANN001
    parse = lambda raw: REGISTRY["email"].parse(raw, spec("email"))  # noqa: E731
    for bad in (5, True, ["a@b.ru"], "a" * 321, "нет собаки"):
        assert refusal(parse, bad) == "Expected an e-mail address such as name@example.com.", bad


def test_an_instant_outside_what_databases_hold_names_the_bounds(app_ctx) -> None:  # noqa: ANN001
    parse = lambda raw: REGISTRY["datetime"].parse(raw, spec("datetime"))  # noqa: E731
    message = refusal(parse, "0001-01-01T00:00:00+05:00")
    assert message == refusal(parse, "9999-12-31T23:00:00-05:00")
    assert message.startswith("A date and time must be between 0") and message.endswith(".")


# --- filters and unique values -----------------------------------------------------------------------------


def test_filter_values_are_parsed_as_the_field_parses(app_ctx) -> None:  # noqa: ANN001
    assert REGISTRY["integer"].filter_value(" 12 ", spec("integer")) == 12
    with pytest.raises(FieldValueError):
        REGISTRY["integer"].filter_value("2147483648", spec("integer", int_limit=2**31 - 1))
    assert REGISTRY["decimal"].filter_value("1,255", spec("decimal", scale=2)) == Decimal("1.26")
    assert REGISTRY["text"].filter_value("Ёлка", spec("text")) == "Ёлка"


def test_text_is_unique_whatever_its_case() -> None:
    text = REGISTRY["text"]
    assert (
        text.unique_key("RACE-SKU-Ё") == "race-sku-ё"
        and text.unique_key(5) == 5
        and text.unique_key(None) is None
    )
    compiled = str(text.unique_expression(column("sku")).compile(dialect=sqlite.dialect()))
    assert compiled == "lower(sku)"


def test_a_type_is_registered_once_under_its_name() -> None:
    with pytest.raises(ValueError, match="^field type 'text' is registered twice$"):
        types.register(types.TextType())

    class Extra(types.TextType):
        name = "mutation_extra"

    try:
        added = types.register(Extra())
        assert REGISTRY["mutation_extra"] is added and types.field_type("mutation_extra") is added
    finally:
        REGISTRY.pop("mutation_extra", None)


# --- refusals in words, and the limits of each kind of value ----------------------------------------------

WHOLE = "Expected a whole number."
WEB = "Expected a web address such as https://example.com."
MAIL = "Expected an e-mail address such as name@example.com."
PHONE = "Expected a phone number such as +7 495 123-45-67."
OPTIONS = "Expected a list of options."
COLOURS = [
    {"id": "aaaa1111", "label": "Красный"},
    {"id": "bbbb2222", "label": "Синий, тёмный"},
    {"id": "cccc3333", "label": "Зелёный"},
]


@pytest.mark.parametrize(
    ("type_name", "settings", "raw", "message"),
    [
        ("integer", {}, True, WHOLE),
        ("integer", {}, "1,5", WHOLE),
        ("integer", {}, Decimal("NaN"), WHOLE),
        ("integer", {}, "два", WHOLE),
        ("integer", {}, 2**63, "The number is too large."),
        ("integer", {}, "1e20", "The number is too large."),
        ("url", {}, 5, WEB),
        ("url", {}, "ftp://example.com", WEB),
        ("url", {}, "https://example.com/a b", WEB),
        ("url", {}, "http://[::1", WEB),
        ("url", {}, "https://example.com/" + "a" * 2029, WEB),  # 2049 characters
        ("email", {}, 5, MAIL),
        ("email", {}, "нет собаки", MAIL),
        ("email", {}, "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 59 + ".ru", MAIL),  # 255 bytes
        ("phone", {}, True, PHONE),
        ("phone", {}, "+7 495 СПАСИБО", PHONE),
        ("phone", {}, "+7 (495) 123-45-6", PHONE),
        ("phone", {}, "+7" + " " * 26 + "495 123-45-67", PHONE),  # 41 characters
        ("text", {}, True, "Expected text."),
        ("text", {}, "я" * 256, "At most 255 characters (this has 256)."),
        ("text", {"max_length": 5}, "шесть!", "At most 5 characters (this has 6)."),
        ("long_text", {}, True, "Expected text."),
        ("long_text", {}, [1], "Expected text."),
        ("multi_select", {"options": COLOURS}, 5, OPTIONS),
        ("multi_select", {"options": COLOURS}, [True], OPTIONS),
        ("multi_select", {"options": COLOURS}, [1.5], OPTIONS),
        ("multi_select", {"options": COLOURS}, "Жёлтый",
         "“Жёлтый” is not one of the options: Красный, Синий, тёмный, Зелёный."),
    ],
)  # fmt: skip
def test_each_refusal_says_what_was_expected(
    app_ctx, type_name: str, settings: dict, raw: Any, message: str
) -> None:  # noqa: ANN001, E501
    field = spec(type_name, **settings)
    assert refusal(lambda r: REGISTRY[type_name].parse(r, field), raw) == message


def test_values_at_their_limits_are_taken(app_ctx) -> None:  # noqa: ANN001
    def parse(type_name: str, raw: Any, **settings: Any) -> Any:
        return REGISTRY[type_name].parse(raw, spec(type_name, **settings))

    longest_url = "https://example.com/" + "a" * 2028
    assert parse("url", longest_url) == longest_url and parse("url", "example.com") == "https://example.com"
    local = "a" * 64
    assert parse("email", f"{local}@Example.COM") == f"{local}@example.com"
    longest_mail = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 58 + ".ru"  # 254 bytes
    assert parse("email", longest_mail) == longest_mail
    assert parse("phone", "+7" + " " * 25 + "495 123-45-67") == "+74951234567"  # 40 characters
    assert parse("text", "я" * 255) == "я" * 255 and parse("text", " пять ", max_length=5) == "пять"
    assert parse("long_text", "\r\n строка \n") == "строка" and parse("long_text", 12.0) == "12"
    assert parse("integer", "1e3") == 1000 and parse("integer", 1e3) == 1000 and parse("integer", 2.0) == 2
    assert parse("integer", Decimal("1E+2")) == 100 and parse("integer", -(2**63 - 1)) == -(2**63 - 1)


def test_several_options_are_stored_in_the_options_order(app_ctx) -> None:  # noqa: ANN001
    field = spec("multi_select", options=COLOURS)

    def parse(raw: Any) -> Any:
        return REGISTRY["multi_select"].parse(raw, field)

    assert parse("Зелёный; Красный") == ",aaaa1111,cccc3333,"
    assert parse("Синий, тёмный") == ",bbbb2222,"  # one whole label with a comma in it
    assert parse("bbbb2222") == ",bbbb2222," and parse("зелёный") == ",cccc3333,"
    assert parse(["Зелёный", "aaaa1111"]) == parse(("aaaa1111", "Зелёный")) == ",aaaa1111,cccc3333,"
    assert parse({"Красный"}) == ",aaaa1111,"
    for nothing in ([], [" "], "", None, " ; "):
        assert parse(nothing) is None, nothing


def test_options_and_yes_no_on_a_page(app_ctx) -> None:  # noqa: ANN001
    multi, boolean = REGISTRY["multi_select"], REGISTRY["boolean"]
    field = spec("multi_select", options=[{**COLOURS[0], "color": "#ff0000"}, COLOURS[2]])
    badge = '<span class="label tabula-option" style="background:{};color:#222">{}</span>'
    assert str(multi.to_html(",aaaa1111,gone,cccc3333,", field)) == (
        badge.format("#ff0000", "Красный") + " " + badge.format("#eeeeee", "Зелёный")
    )
    assert (
        str(multi.to_html(None, field)) == ""
        and multi.to_text(",cccc3333,aaaa1111,", field) == "Зелёный, Красный"
    )
    assert [str(boolean.to_html(v, spec("boolean"))) for v in (None, True, False)] == [
        "",
        '<i class="fa fa-check text-success"></i>',
        "&mdash;",
    ]


def test_a_currency_is_a_three_letter_code(app_ctx) -> None:  # noqa: ANN001
    clean = REGISTRY["money"].clean_settings
    assert clean({}) == {"currency": "RUB"} and clean({"currency": " usd "}) == {"currency": "USD"}
    for bad in ("RUBL", "Р", "1$$"):
        message = refusal(clean, {"currency": bad}, SettingsError)
        assert message == "Currency must be a three-letter code such as RUB, USD or EUR."


def test_the_time_zone_is_the_configured_one_and_utc_without_an_app(app) -> None:  # noqa: ANN001
    from zoneinfo import ZoneInfo

    assert types.local_timezone() == ZoneInfo("UTC")  # no app context: a script, a unit of the registry
    with app.app_context():
        assert types.local_timezone() == ZoneInfo(app.config["BABEL_DEFAULT_TIMEZONE"])
        configured = app.config.pop("BABEL_DEFAULT_TIMEZONE")
        try:
            assert types.local_timezone() == ZoneInfo("UTC")
        finally:
            app.config["BABEL_DEFAULT_TIMEZONE"] = configured


# --- numbers, dates, yes/no and options: the forms people type -------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("1 234,56", "1234.56"), ("1,234.56", "1234.56"), ("1.234,56", "1234.56"),
        ("1,234,567.5", "1234567.5"),
        ("12,5", "12.5"), (" -7 ", "-7"), ("+5", "5"), ("1\u00a0000", "1000"), ("1\u202f000,5", "1000.5"),
        ("1'000", "1000"), (".5", "0.5"), ("5.", "5"), ("1e3", "1E+3"), ("2E-2", "0.02"),
    ],
)  # fmt: skip
def test_numbers_are_read_as_people_write_them(text: str, number: str) -> None:
    assert types.parse_decimal_text(text) == Decimal(number)


@pytest.mark.parametrize("text", ["1,2,3", "1.2.3", "abc", "", "1e1000", "--1", "1,5.5,5", "1.234,5.6"])
def test_what_is_not_a_number_is_refused(text: str) -> None:
    with pytest.raises(InvalidOperation):
        types.parse_decimal_text(text)


@pytest.mark.parametrize(
    ("scale", "raw", "stored"),
    [
        (2, "1,005", "1.01"), (2, "-1,005", "-1.01"), (2, "0,004", "0.00"), (2, "-0,004", "0.00"),
        (2, 1.005, "1.01"), (2, Decimal("2.345"), "2.35"), (2, "12 %", "12.00"), (2, 7, "7.00"),
        (2, "9999999999999999.99", "9999999999999999.99"), (0, "2.5", "3"), (0, "-2.5", "-3"),
        (8, "0.123456785", "0.12345679"), (2, "1e3", "1000.00"),
    ],
)  # fmt: skip
def test_decimals_are_rounded_half_up_to_their_places(app_ctx, scale: int, raw: Any, stored: str) -> None:  # noqa: ANN001
    field = spec("decimal", scale=scale)
    value = REGISTRY["decimal"].parse(raw, field)
    assert str(value) == stored and REGISTRY["decimal"].to_text(value, field) == stored


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (True, "Expected a number."), ("abc", "Expected a number, e.g. 1234,56."),
        (Decimal("Infinity"), "Expected a number, e.g. 1234,56."), ("1e16", "The number is too large."),
        ("9999999999999999.995", "The number is too large."), (10**16, "The number is too large."),
    ],
)  # fmt: skip
def test_numbers_that_do_not_fit_are_refused(app_ctx, raw: Any, message: str) -> None:  # noqa: ANN001
    assert refusal(lambda r: REGISTRY["decimal"].parse(r, spec("decimal", scale=2)), raw) == message


def test_decimals_as_text_and_columns(app_ctx) -> None:  # noqa: ANN001
    decimal = REGISTRY["decimal"]

    def text(value: Any, **settings: Any) -> str:
        return decimal.to_text(value, spec("decimal", **settings))

    assert [text(v) for v in (None, Decimal("1.5"), 3, Decimal("1E+2"), 2.5)] == [
        "",
        "1.50",
        "3.00",
        "100.00",
        "2.50",
    ]
    assert (
        text(Decimal("5"), scale=0) == "5"
        and text(Decimal("5.0"), scale=0) == "5"
        and text(7, scale=3) == "7.000"
    )
    assert (
        decimal.to_json(None, spec("decimal")) is None
        and decimal.to_json(Decimal("1"), spec("decimal")) == "1.00"
    )
    assert decimal.scale(spec("decimal")) == 2 and decimal.scale(spec("decimal", scale="4")) == 4
    column_type = decimal.column_type(spec("decimal", scale=3))
    assert (column_type.precision, column_type.scale, column_type.asdecimal) == (18, 3, True)
    assert REGISTRY["text"].column_type(spec("text", max_length=40)).length == 40
    assert REGISTRY["text"].column_type(spec("text")).length == 255


def test_text_settings_are_a_length_between_one_and_ten_thousand(app_ctx) -> None:  # noqa: ANN001
    clean = REGISTRY["text"].clean_settings
    assert clean({}) == {"max_length": 255} and clean({"max_length": 0}) == {"max_length": 255}
    assert clean({"max_length": "100"}) == {"max_length": 100}
    assert clean({"max_length": 1}) == {"max_length": 1} and clean({"max_length": 10_000}) == {
        "max_length": 10_000
    }
    assert REGISTRY["email"].clean_settings({"max_length": 5}) == {}  # a fixed length
    for bad, message in (
        ("abc", "Maximum length must be a whole number."),
        ([5], "Maximum length must be a whole number."),
        (10_001, "Maximum length must be between 1 and 10000."),
        (-1, "Maximum length must be between 1 and 10000."),
    ):
        assert refusal(clean, {"max_length": bad}, SettingsError) == message


def test_yes_and_no_in_the_words_people_use(app_ctx) -> None:  # noqa: ANN001
    parse = lambda raw: REGISTRY["boolean"].parse(raw, spec("boolean"))  # noqa: E731
    yes = ("да", " Д ", "✓", "+", "x", "Yes", "TRUE", 1, 1.0, Decimal(1), True)
    no = ("Нет", "ложь", "-", "✗", "off", "0", 0, 0.0, Decimal(0), False)
    assert [parse(v) for v in yes] == [True] * len(yes) and [parse(v) for v in no] == [False] * len(no)
    assert parse("") is None and parse("  ") is None and parse(None) is None
    for bad in (2, Decimal("NaN"), Decimal("sNaN"), "может быть", 0.5, [1]):
        assert refusal(parse, bad) == "Expected yes or no.", bad


@pytest.mark.parametrize(
    ("raw", "day"),
    [
        ("2025-12-31", dt.date(2025, 12, 31)), ("31.12.2025", dt.date(2025, 12, 31)),
        ("31.12.25", dt.date(2025, 12, 31)), ("31/12/2025", dt.date(2025, 12, 31)),
        ("2025/12/31", dt.date(2025, 12, 31)), (" 2025-12-31T10:00:00 ", dt.date(2025, 12, 31)),
        ("1.2.2025", dt.date(2025, 2, 1)), ("0001-01-01", dt.date(1, 1, 1)),
        (dt.datetime(2025, 3, 4, 23, 59), dt.date(2025, 3, 4)), (dt.date(2025, 3, 4), dt.date(2025, 3, 4)),
    ],
)  # fmt: skip
def test_dates_in_the_forms_people_type(app_ctx, raw: Any, day: dt.date) -> None:  # noqa: ANN001
    assert REGISTRY["date"].parse(raw, spec("date")) == day


@pytest.mark.parametrize("raw", [5, "31.02.2025", "2025-02-31", "31.12", "завтра", [2025]])
def test_what_is_not_a_date_is_refused(app_ctx, raw: Any) -> None:  # noqa: ANN001
    message = refusal(lambda r: REGISTRY["date"].parse(r, spec("date")), raw)
    assert message == "Expected a date such as 31.12.2025."


def test_date_times_are_stored_in_utc_from_the_local_time(app_ctx) -> None:  # noqa: ANN001
    datetime_type, field = REGISTRY["datetime"], spec("datetime")
    local = types.local_timezone()

    def at(*parts: int) -> dt.datetime:
        return dt.datetime(*parts, tzinfo=local).astimezone(dt.UTC)

    for raw in ("2025-12-31 14:30", "31.12.2025 14:30", "2025-12-31T14:30", "31.12.2025 14:30:00"):
        assert datetime_type.parse(raw, field) == at(2025, 12, 31, 14, 30), raw
    assert datetime_type.parse("31.12.2025", field) == at(2025, 12, 31)
    assert datetime_type.parse(dt.date(2025, 12, 31), field) == at(2025, 12, 31)
    assert datetime_type.parse("2025-12-31T14:30:00Z", field) == dt.datetime(
        2025, 12, 31, 14, 30, tzinfo=dt.UTC
    )
    assert datetime_type.parse("2025-12-31T14:30+03:00", field) == dt.datetime(
        2025, 12, 31, 11, 30, tzinfo=dt.UTC
    )
    assert datetime_type.parse("2025-12-31T14:30:00Z", field).tzinfo is dt.UTC
    for bad in (5, "завтра", "31.12.2025 25:00", [1]):
        message = refusal(lambda r: datetime_type.parse(r, field), bad)
        assert message == "Expected a date and time such as 31.12.2025 14:30.", bad
    moment = dt.datetime(2025, 1, 2, 3, 4, 5)
    assert (
        datetime_type.to_text(None, field) == ""
        and datetime_type.to_text(moment, field) == "2025-01-02T03:04:05+00:00"
    )


def test_an_option_is_found_by_its_id_or_its_label_in_any_case(app_ctx) -> None:  # noqa: ANN001
    many = [{"id": f"{n:08x}", "label": f"Вариант {n}"} for n in range(12)]
    single, field = REGISTRY["single_select"], spec("single_select", options=many)
    assert single.match_option("0000000b", field) == "0000000b"
    assert single.match_option("  вариант 3 ", field) == "00000003"
    assert single.parse("ВАРИАНТ 11", field) == "0000000b" and single.parse(" ", field) is None
    listed = ", ".join(f"Вариант {n}" for n in range(10))  # the first ten
    typed = "Ж" * 60
    with pytest.raises(FieldValueError) as refused:
        single.match_option(typed, field)
    assert str(refused.value) == f"“{'Ж' * 50}” is not one of the options: {listed}."
    for bad in (True, [], {}, ["Вариант 1"]):
        assert refusal(lambda r: single.parse(r, field), bad) == "Expected one of the options.", bad


def test_options_from_the_admin_are_checked_and_completed(app_ctx) -> None:  # noqa: ANN001
    cleaned = types.clean_options(
        [
            "Первый",
            {"label": " Второй ", "color": "#ABCDEF", "id": "12345678"},
            {"label": ""},
            {"label": "Четвёртый", "color": "red", "id": "customer"},
            {"label": "Пятый", "id": "customer"},
            {"label": "Шестой", "id": "Customer"},
        ]
    )
    assert [o["label"] for o in cleaned] == ["Первый", "Второй", "Четвёртый", "Пятый", "Шестой"]
    ids = [o["id"] for o in cleaned]
    assert ids[1] == "12345678" and ids[2] == "customer"
    assert all(len(i) == 8 and int(i, 16) >= 0 for i in (ids[0], ids[3], ids[4])) and len(set(ids)) == 5
    colours = types.DEFAULT_COLORS
    assert [o["color"] for o in cleaned] == ["#e3f2fd", "#abcdef", colours[3], colours[4], colours[5]]
    assert types.clean_options(None) == [] and types.clean_options([]) == []
    assert len(types.clean_options([f"o{n}" for n in range(200)])) == 200
    for raw, message in (
        ("Первый", "Options must be a list."),
        ([f"o{n}" for n in range(201)], "At most 200 options."),
        (["a", 5], "Option 2 is not valid."),
        (["я" * 101], "An option may have at most 100 characters."),
        (["Один", "ОДИН "], "The option “ОДИН” appears twice."),
    ):
        assert refusal(types.clean_options, raw, SettingsError) == message
    assert types.clean_options(["я" * 100])[0]["label"] == "я" * 100


def test_more_forms_and_refusals_people_meet(app_ctx) -> None:  # noqa: ANN001
    def parse(type_name: str, raw: Any) -> Any:
        return REGISTRY[type_name].parse(raw, spec(type_name))

    assert parse("long_text", "\tтаблица\t") == "\tтаблица\t"  # only line breaks and spaces are trimmed
    assert parse("long_text", " X-ray\n") == "X-ray"
    assert parse("email", "Abuse@Example.com") == "abuse@example.com"  # role mailboxes in one case
    assert parse("email", "Ivan.Petrov@Example.com") == "Ivan.Petrov@example.com"
    assert refusal(lambda r: parse("email", r), "ivan@-bad-.com") == MAIL
    assert parse("url", "http://example.com") == "http://example.com"
    assert parse("url", "HTTPS://example.com") == "HTTPS://example.com"
    for bad in (Decimal("74951234567"), "()", "+"):
        assert refusal(lambda r: parse("phone", r), bad) == PHONE, bad
    assert parse("phone", 84951234567) == "+74951234567"


def test_values_on_a_page_follow_their_settings(app_ctx) -> None:  # noqa: ANN001
    options = [{"id": "hot", "label": "Горячий"}]
    assert REGISTRY["single_select"].display("hot", spec("single_select", options=options)) == "Горячий"
    assert REGISTRY["decimal"].display(Decimal("1.5"), spec("decimal", scale=3)) == "1.500"
    assert REGISTRY["datetime"].display(None, spec("datetime")) == ""


def test_decimal_places_are_a_whole_number_from_zero_to_eight(app_ctx) -> None:  # noqa: ANN001
    clean = REGISTRY["decimal"].clean_settings
    assert [clean(given)["scale"] for given in ({}, {"scale": ""}, {"scale": None})] == [2, 2, 2]
    assert [clean({"scale": s}) for s in ("0", 3, 8)] == [{"scale": 0}, {"scale": 3}, {"scale": 8}]
    for bad, message in (
        ("два", "Decimal places must be a whole number."),
        ([2], "Decimal places must be a whole number."),
        (9, "Decimal places must be between 0 and 8."),
        (-1, "Decimal places must be between 0 and 8."),
    ):
        assert refusal(clean, {"scale": bad}, SettingsError) == message


def test_each_type_stores_into_its_column(app_ctx) -> None:  # noqa: ANN001
    from sqlalchemy import BigInteger, Boolean, Date, DateTime, Integer, Numeric, String, Text

    expected = {
        "text": (String, 255), "long_text": (Text, None), "integer": (BigInteger, None),
        "decimal": (Numeric, None), "boolean": (Boolean, None), "date": (Date, None),
        "datetime": (DateTime, None), "single_select": (String, 16), "multi_select": (Text, None),
        "email": (String, 320), "phone": (String, 32), "url": (String, 2048), "tax_id": (String, 20),
        "link": (Integer, None), "user": (Integer, None),
    }  # fmt: skip
    for name, (kind, length) in expected.items():
        column_type = REGISTRY[name].column_type(spec(name, target=1))
        assert type(column_type) is kind, name
        assert getattr(column_type, "length", None) == length, name
    assert REGISTRY["datetime"].column_type(spec("datetime")).timezone is True


def test_a_form_field_checks_what_a_search_field_does_not(app_ctx) -> None:  # noqa: ANN001
    from custom_fields import forms

    for name in REGISTRY:
        field = FieldSpec(1, 1, "f_1", "f_1", "Поле", name, required=True, settings={"target": 1})
        edit = REGISTRY[name].form_field(field)
        search = REGISTRY[name].form_field(field, search=True)
        assert forms.required in edit.kwargs["validators"], name
        assert edit.kwargs["search"] is False and search.kwargs["search"] is True, name
        assert search.kwargs["validators"] == [] and search.kwargs["default"] is None, name


def test_decimals_and_instants_as_text_at_the_fields_places(app_ctx) -> None:  # noqa: ANN001
    decimal, datetime_type = REGISTRY["decimal"], REGISTRY["datetime"]
    for value, scale, text in (
        (Decimal("1.5"), 3, "1.500"), (Decimal("1.50"), 4, "1.5000"), (Decimal("5"), 1, "5.0"),
        (Decimal("1E+2"), 0, "100"), (Decimal("100"), 0, "100"), (Decimal("-0.5"), 1, "-0.5"),
    ):  # fmt: skip
        assert decimal.to_text(value, spec("decimal", scale=scale)) == text, (value, scale)
    assert refusal(lambda r: decimal.parse(r, spec("decimal")), "12X") == "Expected a number, e.g. 1234,56."
    moscow = dt.timezone(dt.timedelta(hours=3))
    field = spec("datetime")
    assert (
        datetime_type.to_text(dt.datetime(2026, 1, 2, 3, 4, tzinfo=moscow), field)
        == "2026-01-02T03:04:00+03:00"
    )
    assert datetime_type.to_json(None, field) is None
    assert datetime_type.parse(types.LAST_INSTANT.isoformat(), field) == types.LAST_INSTANT
    assert datetime_type.parse(types.FIRST_INSTANT.isoformat(), field) == types.FIRST_INSTANT
    assert REGISTRY["multi_select"].to_json(None, spec("multi_select", options=[])) == []
    long_text = REGISTRY["text"].parser(spec("text"))  # no length given: 255
    assert refusal(long_text, "я" * 256) == "At most 255 characters (this has 256)."


# --- a field's type changed: each stored value converted by the registry ----------------------------------


def test_options_convert_between_one_and_several_by_their_labels(app_ctx) -> None:  # noqa: ANN001
    single, multi = REGISTRY["single_select"], REGISTRY["multi_select"]
    several = spec("multi_select", options=COLOURS)
    one = spec("single_select", options=[{"id": "zz", "label": "зелёный"}, {"id": "rr", "label": "Красный"}])

    def to_single(value: Any) -> Any:
        return single.convert(value, multi, several, one)

    assert to_single(",cccc3333,") == "zz"  # by its label, in any case; the new field's own id
    assert to_single(",aaaa1111,") == "rr" and to_single(None) is None and to_single(",,") is None
    assert refusal(to_single, ",aaaa1111,cccc3333,") == "Has more than one option."
    assert refusal(to_single, ",bbbb2222,") == "“Синий, тёмный” is not one of the options: зелёный, Красный."
    assert single.convert("Красный", REGISTRY["text"], spec("text"), one) == "rr"  # other types: by text
    sizes = spec("single_select", options=[{"id": "s15", "label": "1.50"}])
    assert single.convert(Decimal("1.5"), REGISTRY["decimal"], spec("decimal", scale=2), sizes) == "s15"

    others = spec("multi_select", options=[*COLOURS, {"id": "dddd4444", "label": "Белый"}])
    assert multi.convert(",aaaa1111,bbbb2222,", multi, several, others) == ",aaaa1111,bbbb2222,"
    assert multi.convert("zz", single, one, several) == ",cccc3333,"
    assert multi.convert(None, single, one, several) is None
    sized = spec("multi_select", options=[{"id": "s15", "label": "1.50"}])
    assert multi.convert(Decimal("1.5"), REGISTRY["decimal"], spec("decimal", scale=2), sized) == ",s15,"
    assert multi.convert(",,", multi, several, others) is None
    assert multi.convert("Зелёный; Белый", REGISTRY["text"], spec("text"), others) == ",cccc3333,dddd4444,"
    assert refusal(lambda v: multi.convert(v, multi, others, several), ",dddd4444,") == (
        "“Белый” is not one of the options: Красный, Синий, тёмный, Зелёный."
    )


def test_a_tax_id_converted_from_text_is_checked_unless_foreign_ids_are_allowed(app_ctx) -> None:  # noqa: ANN001
    tax_id, text = REGISTRY["tax_id"], REGISTRY["text"]

    def convert(value: Any, **settings: Any) -> Any:
        return tax_id.convert(value, text, spec("text"), spec("tax_id", **settings))

    assert convert(" 7707 083893 ") == "7707083893" and convert(None) is None and convert("") is None
    assert refusal(convert, "7707083894") == (
        "The check digits of this INN do not match: please check it for a typo."
    )
    assert refusal(lambda v: convert(v, kind="kpp"), "77") == (
        "A KPP has 9 characters: 4 digits, 2 digits or letters, 3 digits."
    )
    assert convert("gb 123", foreign_field="is_foreign") == "GB123"  # checked with its record instead
    number = spec("decimal", scale=0)  # a number's text at its own places: no ".00" after the digits
    assert tax_id.convert(Decimal("7707083893"), REGISTRY["decimal"], number, spec("tax_id")) == "7707083893"
