"""The field-type registry: the only place that knows what a field type is.

Each type knows its SQL column type, how to parse and validate a value from any source (form, API, pasted
cell, Excel cell), how to show it (text, JSON, HTML in lists, Excel format), its form field, its filter
operators and its conversion from other types. Nothing else in Tabula switches on type names: ask
``REGISTRY[name]``. A new type (formula, lookup, rollup) is one more class registered here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import urlsplit

import email_validator
import phonenumbers
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape
from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Integer,
    Numeric,
    String,
    Text,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    or_,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

from custom_fields import buckets, formats
from custom_fields.like import escape_like, like
from custom_fields.spec import FieldSpec

MAX_TEXT_LENGTH = 10_000
MAX_LONG_TEXT_LENGTH = 1_000_000
MAX_OPTIONS = 200
OPTION_LABEL_LENGTH = 100
COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
DEFAULT_COLORS = ["#e3f2fd", "#e8f5e9", "#fff3e0", "#fce4ec", "#ede7f6", "#e0f7fa", "#f9fbe7", "#efebe9"]


class FieldValueError(ValueError):
    """A value that does not fit its field; the message is shown to the user as is."""


class SettingsError(ValueError):
    """Field settings an admin gave that cannot work; the message is shown on the form."""


# --- filter operators --------------------------------------------------------------------------------------

Op = Callable[[ColumnElement, Any], ColumnElement]


def _lower(column: ColumnElement) -> ColumnElement:
    return func.lower(column)


OPERATORS: dict[str, tuple[Any, Op, bool]] = {
    # arg name: (label, build(column, parsed value), takes a value)
    "eq": (_l("Equal to"), lambda c, v: c == v, True),
    "neq": (_l("Not equal to"), lambda c, v: or_(c != v, c.is_(None)), True),
    "ct": (_l("Contains"), lambda c, v: like(_lower(c), f"%{escape_like(v.lower())}%"), True),
    "nct": (
        _l("Does not contain"),
        lambda c, v: or_(~like(_lower(c), f"%{escape_like(v.lower())}%"), c.is_(None)),
        True,
    ),
    "sw": (_l("Starts with"), lambda c, v: like(_lower(c), f"{escape_like(v.lower())}%"), True),
    "gt": (_l("Greater than"), lambda c, v: c > v, True),
    "lt": (_l("Less than"), lambda c, v: c < v, True),
    "ge": (_l("At least"), lambda c, v: c >= v, True),
    "le": (_l("At most"), lambda c, v: c <= v, True),
    "has": (_l("Has"), lambda c, v: like(c, f"%,{escape_like(v)},%"), True),
    "nhas": (
        _l("Does not have"),
        lambda c, v: or_(~like(c, f"%,{escape_like(v)},%"), c.is_(None)),
        True,
    ),
    "empty": (_l("Is empty"), lambda c, v: c.is_(None), False),
    "nempty": (_l("Is not empty"), lambda c, v: c.is_not(None), False),
}

TEXT_OPS = ("ct", "nct", "eq", "neq", "sw", "empty", "nempty")
NUMBER_OPS = ("eq", "neq", "gt", "lt", "ge", "le", "empty", "nempty")
CHOICE_OPS = ("eq", "neq", "empty", "nempty")


# --- helpers for parsing -----------------------------------------------------------------------------------

_SPACES = re.compile(r"[\s\u00a0\u202f']")


def _blank(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and raw.strip() == "")


_DECIMAL_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,3})?")
_CURRENCY_MARKS = re.compile(r"(?i)(₽|руб\.?|р\.|\$|€|[A-Z]{3})")


def parse_decimal_text(text: str) -> Decimal:
    """'1 234,56', '1,234.56', '1234.56', '12,5' -> Decimal. The last of ',' and '.' is the decimal mark."""
    cleaned = _SPACES.sub("", text.strip())
    if cleaned.count(",") and cleaned.count("."):
        mark = "," if cleaned.rfind(",") > cleaned.rfind(".") else "."
        other = "." if mark == "," else ","
        cleaned = cleaned.replace(other, "").replace(mark, ".")
    elif cleaned.count(",") == 1:
        cleaned = cleaned.replace(",", ".")
    if not _DECIMAL_TEXT.fullmatch(cleaned):
        raise InvalidOperation(text)
    return Decimal(cleaned)


_PLAIN_INTEGER = re.compile(r"-?[0-9]{1,18}")
#: A number ``DecimalType._plain_number_parser`` takes as it is: digits and at most one decimal mark.
_PLAIN_DECIMAL = re.compile(r"-?[0-9]{1,30}([.,][0-9]{1,30})?")
_ISO_DATE = re.compile(r"(?P<y>[0-9]{4})-(?P<m>[0-9]{2})-(?P<d>[0-9]{2})")
_RU_DATE = re.compile(r"(?P<d>[0-9]{2})\.(?P<m>[0-9]{2})\.(?P<y>[0-9]{4})")
_QUANTA = {scale: Decimal(1).scaleb(-scale) for scale in range(9)}
DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%d.%m.%y", "%d/%m/%Y", "%Y/%m/%d")
DATETIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    "%Y-%m-%d",
)


#: The instants a date-time may be (UTC): a day inside Python's range at each end, so that it converts to
#: and from any time zone (the user's, the database session's) without overflowing. A date may have any
#: year from 1 to 9999 (a company founded in 1841), as Python and both databases hold.
FIRST_INSTANT = dt.datetime.min.replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
LAST_INSTANT = dt.datetime.max.replace(tzinfo=dt.UTC) - dt.timedelta(days=1)


def _instant_out_of_range() -> FieldValueError:
    return FieldValueError(
        _(
            "A date and time must be between %(first)s and %(last)s.",
            first=f"{FIRST_INSTANT.day:02}.{FIRST_INSTANT.month:02}.{FIRST_INSTANT.year:04}",
            last=f"{LAST_INSTANT.day:02}.{LAST_INSTANT.month:02}.{LAST_INSTANT.year:04}",
        )
    )


def local_timezone() -> dt.tzinfo:
    from zoneinfo import ZoneInfo

    from flask import current_app, has_app_context

    name = current_app.config.get("BABEL_DEFAULT_TIMEZONE", "UTC") if has_app_context() else "UTC"
    return ZoneInfo(name)


# --- the base type -----------------------------------------------------------------------------------------


class FieldType:
    """One field type. Subclasses override what differs; every method takes the field's ``FieldSpec``."""

    name: ClassVar[str]
    label: ClassVar[Any]
    operators: ClassVar[tuple[str, ...]] = TEXT_OPS
    can_unique: ClassVar[bool] = True
    #: Settings keys an admin may give, with their defaults.
    setting_defaults: ClassVar[dict[str, Any]] = {}
    #: Python types of the stored value, for the API schema.
    json_type: ClassVar[str] = "string"
    #: Whether lists, the grid and the query layer may sort by it (a long text or a set of options has no
    #: useful order).
    sortable: ClassVar[bool] = True
    #: What its values point at: None, ``"record"`` (a row of another table) or ``"user"`` (``ab_user``).
    reference: ClassVar[str | None] = None
    #: Whether its admin form edits a list of options.
    has_options: ClassVar[bool] = False
    #: Whether it gets an ordinary index even when not unique (link columns are joined and filtered on).
    indexed_by_default: ClassVar[bool] = False
    #: The settings its admin form shows (inputs of ``tabula/schema/_settings.html``, by name).
    admin_settings: ClassVar[tuple[str, ...]] = ()

    # settings
    def setting_choices(self, key: str) -> list[tuple[str, Any]]:
        """The values (value, label) an admin chooses a setting from, for a setting chosen from a list."""
        return []

    def clean_settings(self, settings: dict[str, Any], existing: FieldSpec | None = None) -> dict[str, Any]:
        """Validate settings from the admin; keep only known keys, fill defaults."""
        return {key: settings.get(key, default) for key, default in self.setting_defaults.items()}

    # storage
    def column_type(self, spec: FieldSpec) -> TypeEngine:
        raise NotImplementedError

    def parse(self, raw: Any, spec: FieldSpec) -> Any:
        """A value from any source -> the stored value (None when empty); raises FieldValueError."""
        raise NotImplementedError

    def parser(self, spec: FieldSpec) -> Callable[[Any], Any]:
        """``parse`` for many values of one field (a batch): the same answers and refusals, with what the
        field's settings say looked up once and the common forms of text taken the short way."""
        parse = self.parse
        return lambda raw: parse(raw, spec)

    def to_text(self, value: Any, spec: FieldSpec) -> str:
        """The stored value as plain text a person would type back in (also the route between types)."""
        return "" if value is None else str(value)

    def to_json(self, value: Any, spec: FieldSpec) -> Any:
        return value

    def to_html(self, value: Any, spec: FieldSpec) -> Markup:
        return escape(self.display(value, spec))

    def display(self, value: Any, spec: FieldSpec) -> str:
        """The stored value as a person reads it on a page (history, timeline): ``01.12.2026 13:54``,
        ``да``, ``1 234.50 RUB``; plain text, escaped where it reaches HTML."""
        return self.to_text(value, spec)

    def same(self, old: Any, new: Any, spec: FieldSpec) -> bool:
        """Whether two stored values are the same value (a save that changes nothing writes nothing)."""
        return self.to_json(old, spec) == self.to_json(new, spec)

    def unique_key(self, value: Any) -> Any:
        """What a unique field compares: two values with the same key are the same value."""
        return value

    def unique_expression(self, column: ColumnElement) -> ColumnElement:
        """The SQL form of ``unique_key`` (what a unique index on the field covers)."""
        return column

    def depends_on(self, spec: FieldSpec) -> tuple[str, ...]:
        """Other fields of the record that ``check_record`` reads."""
        return ()

    def check_record(self, value: Any, spec: FieldSpec, record: dict[str, Any]) -> None:
        """Checks a stored value against the rest of its record (the stored values, new ones over old);
        raises FieldValueError. Runs in the write path whenever the value or a field it depends on
        changes."""

    def convert(self, value: Any, source: FieldType, source_spec: FieldSpec, spec: FieldSpec) -> Any:
        """A stored value of another type -> this type, through its text; raises FieldValueError."""
        return self.parse(source.to_text(value, source_spec), spec)

    # presentation
    def xlsx_format(self, spec: FieldSpec) -> dict[str, Any]:
        """The XlsxWriter cell format of the field's column (``num_format``, ...)."""
        return {}

    def average_format(self, spec: FieldSpec) -> dict[str, Any]:
        """The XlsxWriter cell format of an average of the field's values (a report's measure): as its
        column, unless an average needs places the values do not have."""
        return self.xlsx_format(spec)

    def export_value(self, value: Any, spec: FieldSpec) -> Any:
        """What a spreadsheet cell holds: a number, a date, a naive local date-time, a boolean or text
        (never a formula: the writers write text as text). None leaves the cell empty."""
        return None if value is None else self.to_text(value, spec)

    def grid_hints(self, spec: FieldSpec) -> dict[str, Any]:
        return {"editor": "text", "align": "left"}

    def form_field(self, spec: FieldSpec, *, search: bool = False) -> Any:
        from custom_fields import forms

        return forms.text_field(self, spec, search=search)

    def filter_value(self, raw: str, spec: FieldSpec) -> Any:
        """A filter's typed-in value -> what the operator compares with; raises FieldValueError."""
        return self.parse(raw, spec)

    # quick search (the top bar, the grid's search box, lookups)
    def search_condition(self, column: ColumnElement, text: str, spec: FieldSpec) -> ColumnElement | None:
        """The SQL condition under which the field matches a quick search for ``text`` (already cleaned,
        not empty), or None when a quick search never looks at this type."""
        return None

    def search_matches(self, value: Any, text: str, spec: FieldSpec) -> bool:
        """Whether a stored value matches a quick search for ``text`` (as ``search_condition`` does in SQL),
        to tell the user which field matched."""
        return False

    # references
    def target_entity_id(self, spec: FieldSpec) -> int | None:
        """The table (entity id) a value points into, for links to records; None otherwise."""
        return None

    def target_table(self, spec: FieldSpec) -> str | None:
        """The SQL table a value points into (links and users), or None."""
        return None

    def check_exists(self, value: Any, spec: FieldSpec) -> None:
        """Raises FieldValueError when the value points at a row that does not exist."""

    # reports
    #: Calendar units a report may group it by (``custom_fields.buckets``), besides by value.
    bucket_units: ClassVar[tuple[str, ...]] = ()

    def bucket(self, column: ColumnElement, unit: str, dialect: str) -> ColumnElement:
        """The SQL of the first day of the value's ``unit`` (one of ``bucket_units``)."""
        raise ValueError(unit)

    # import
    def import_parser(self, spec: FieldSpec) -> Callable[[Any], Any]:
        """``parser`` for cells of an imported file (calamine gives numbers, dates, booleans and text); a
        type that reads a spreadsheet's own forms (a date serial) adds them here."""
        return self.parser(spec)

    def infer(self, values: Sequence[Any]) -> dict[str, Any] | None:
        """When every value (a column of an imported file, blanks left out) reads as this type: the
        settings a new field of this type would need for them; else None (``infer_field_type`` asks the
        types in ``INFERENCE_ORDER``)."""
        return None


def _check_length(text: str, limit: int) -> str:
    if len(text) > limit:
        raise FieldValueError(_("At most %(n)d characters (this has %(m)d).", n=limit, m=len(text)))
    return text


def _excel_number_text(raw: Any) -> str:
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw)


class TextType(FieldType):
    name = "text"
    label = _l("Text")
    setting_defaults = {"max_length": 255}
    admin_settings = ("max_length",)

    def clean_settings(self, settings: dict[str, Any], existing: FieldSpec | None = None) -> dict[str, Any]:
        if "max_length" not in self.setting_defaults:  # text-like types of a fixed length
            return super().clean_settings(settings, existing)
        raw = settings.get("max_length") or 255
        try:
            max_length = int(raw)
        except (TypeError, ValueError):
            raise SettingsError(_("Maximum length must be a whole number.")) from None
        if not 1 <= max_length <= MAX_TEXT_LENGTH:
            raise SettingsError(_("Maximum length must be between 1 and %(n)d.", n=MAX_TEXT_LENGTH))
        return {"max_length": max_length}

    def column_type(self, spec: FieldSpec) -> TypeEngine:
        return String(int(spec.settings.get("max_length") or 255))

    def parse(self, raw: Any, spec: FieldSpec) -> Any:
        if _blank(raw):
            return None
        if isinstance(raw, bool) or not isinstance(raw, str | int | float | Decimal | dt.date):
            raise FieldValueError(_("Expected text."))
        text = _excel_number_text(raw).strip()
        return _check_length(text, int(spec.settings.get("max_length") or 255))

    def parser(self, spec: FieldSpec) -> Callable[[Any], Any]:
        if type(self).parse is not TextType.parse:  # a text-like type with its own rules
            return super().parser(spec)
        limit = int(spec.settings.get("max_length") or 255)
        slow = super().parser(spec)

        def parse(raw: Any) -> Any:
            if type(raw) is str:
                text = raw.strip()
                if not text:
                    return None
                if len(text) <= limit:
                    return text
            return slow(raw)

        return parse

    def filter_value(self, raw: str, spec: FieldSpec) -> Any:
        return str(raw)

    def search_condition(self, column: ColumnElement, text: str, spec: FieldSpec) -> ColumnElement | None:
        return like(_lower(column), f"%{escape_like(text.lower())}%")

    def search_matches(self, value: Any, text: str, spec: FieldSpec) -> bool:
        return value is not None and text.lower() in str(value).lower()

    def unique_key(self, value: Any) -> Any:
        # ``RACE-SKU-1`` and ``race-sku-1`` are one SKU; SQLite's lower() is made Unicode-aware like this.
        return value.lower() if isinstance(value, str) else value

    def unique_expression(self, column: ColumnElement) -> ColumnElement:
        return func.lower(column)

    def infer(self, values: Sequence[Any]) -> dict[str, Any] | None:
        if type(self) is not TextType:
            return None
        longest = max((len(_excel_number_text(v)) for v in values), default=0)
        return (
            {"max_length": 255} if longest <= 255 else ({"max_length": longest} if longest <= 2000 else None)
        )


class LongTextType(TextType):
    name = "long_text"
    label = _l("Long text")
    setting_defaults = {}
    admin_settings = ()
    operators = ("ct", "nct", "empty", "nempty")
    can_unique = False
    sortable = False

    def column_type(self, spec: FieldSpec) -> TypeEngine:
        return Text()

    def parse(self, raw: Any, spec: FieldSpec) -> Any:
        if _blank(raw):
            return None
        if isinstance(raw, bool) or not isinstance(raw, str | int | float | Decimal | dt.date):
            raise FieldValueError(_("Expected text."))
        return _check_length(_excel_number_text(raw).strip("\r\n "), MAX_LONG_TEXT_LENGTH)

    def form_field(self, spec: FieldSpec, *, search: bool = False) -> Any:
        from custom_fields import forms

        return forms.long_text_field(self, spec, search=search)

    def grid_hints(self, spec: FieldSpec) -> dict[str, Any]:
        return {"editor": "textarea", "align": "left"}

    def infer(self, values: Sequence[Any]) -> dict[str, Any] | None:
        return {}


class IntegerType(FieldType):
    name = "integer"
    label = _l("Integer")
    operators = NUMBER_OPS
    json_type = "integer"
    LIMIT = 2**63 - 1

    def column_type(self, spec: FieldSpec) -> TypeEngine:
        return BigInteger()

    def parse(self, raw: Any, spec: FieldSpec) -> Any:
        if _blank(raw):
            return None
        if isinstance(raw, bool):
            raise FieldValueError(_("Expected a whole number."))
        try:
            number = Decimal(raw) if isinstance(raw, int | float | Decimal) else parse_decimal_text(str(raw))
        except (InvalidOperation, ValueError):
            raise FieldValueError(_("Expected a whole number.")) from None
        if not number.is_finite() or number != number.to_integral_value():
            raise FieldValueError(_("Expected a whole number."))
        if number and number.adjusted() > 19:
            raise FieldValueError(_("The number is too large."))
        value = int(number)
        if abs(value) > (spec.int_limit or self.LIMIT):
            raise FieldValueError(_("The number is too large."))
        return value

    def parser(self, spec: FieldSpec) -> Callable[[Any], Any]:
        limit = spec.int_limit or self.LIMIT
        slow = super().parser(spec)

        def parse(raw: Any) -> Any:
            if type(raw) is int:  # a number already (a workbook's cell, an import's parsed value)
                if abs(raw) <= limit:
                    return raw
            elif type(raw) is str:
                text = raw.strip()
                if not text:
                    return None
                digits = text.replace(" ", "")  # "12 345", as the long way drops every space
                if _PLAIN_INTEGER.fullmatch(digits):
                    value = int(digits)
                    if abs(value) <= limit:
                        return value
            return slow(raw)

        return parse

    def to_text(self, value: Any, spec: FieldSpec) -> str:
        return "" if value is None else str(int(value))

    def search_condition(self, column: ColumnElement, text: str, spec: FieldSpec) -> ColumnElement | None:
        # An invoice or order number typed whole (an index can answer; "12" does not find 3120).
        number = self._searched_number(text)
        return None if number is None else column == number

    def search_matches(self, value: Any, text: str, spec: FieldSpec) -> bool:
        number = self._searched_number(text)
        return number is not None and value == number

    def _searched_number(self, text: str) -> int | None:
        if not re.fullmatch(r"-?\d{1,18}", text.strip()):
            return None
        return int(text.strip())

    def xlsx_format(self, spec: FieldSpec) -> dict[str, Any]:
        return {"num_format": "0"}

    def average_format(self, spec: FieldSpec) -> dict[str, Any]:
        return {"num_format": "#,##0.00"}  # the average of whole numbers has a fraction

    def export_value(self, value: Any, spec: FieldSpec) -> Any:
        return None if value is None else int(value)

    def grid_hints(self, spec: FieldSpec) -> dict[str, Any]:
        return {"editor": "number", "align": "right"}

    def form_field(self, spec: FieldSpec, *, search: bool = False) -> Any:
        from custom_fields import forms

        return forms.number_field(self, spec, search=search)

    def infer(self, values: Sequence[Any]) -> dict[str, Any] | None:
        for value in values:
            if isinstance(value, bool):
                return None
            if isinstance(value, int):
                continue
            if not isinstance(value, str) or not _INFERRED_INTEGER.fullmatch(value.strip()):
                return None  # "007" and "+7 495 ..." are codes and phones, not numbers
        try:
            parse = self.parser(bare_spec(self.name))
            for value in values:
                parse(value)
        except FieldValueError:
            return None
        return {}


class DecimalType(FieldType):
    name = "decimal"
    label = _l("Decimal")
    operators = NUMBER_OPS
    setting_defaults = {"scale": 2}
    admin_settings = ("scale",)
    json_type = "string"
    PRECISION = 18
    MAX_SCALE = 8

    def clean_settings(self, settings: dict[str, Any], existing: FieldSpec | None = None) -> dict[str, Any]:
        raw = settings.get("scale")
        try:
            scale = 2 if raw in (None, "") else int(raw)
        except (TypeError, ValueError):
            raise SettingsError(_("Decimal places must be a whole number.")) from None
        if not 0 <= scale <= self.MAX_SCALE:
            raise SettingsError(_("Decimal places must be between 0 and %(n)d.", n=self.MAX_SCALE))
        return {"scale": scale}

    def scale(self, spec: FieldSpec) -> int:
        return int(spec.settings.get("scale", 2))

    def column_type(self, spec: FieldSpec) -> TypeEngine:
        return Numeric(self.PRECISION, self.scale(spec), asdecimal=True)

    def parse(self, raw: Any, spec: FieldSpec) -> Any:
        if _blank(raw):
            return None
        if isinstance(raw, bool):
            raise FieldValueError(_("Expected a number."))
        try:
            if isinstance(raw, float):
                number = Decimal(repr(raw))
            elif isinstance(raw, int | Decimal):
                number = Decimal(raw)
            else:
                number = parse_decimal_text(str(raw).rstrip("%").strip())
        except (InvalidOperation, ValueError):
            raise FieldValueError(_("Expected a number, e.g. 1234,56.")) from None
        if not number.is_finite():
            raise FieldValueError(_("Expected a number, e.g. 1234,56."))
        scale = self.scale(spec)
        if number and number.adjusted() >= self.PRECISION - scale:
            raise FieldValueError(_("The number is too large."))
        value = number.quantize(_QUANTA.get(scale) or Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
        if abs(value) >= Decimal(10) ** (self.PRECISION - scale):
            raise FieldValueError(_("The number is too large."))
        return value if value else abs(value)  # -0.00 is 0.00 (databases do not keep the sign)

    def parser(self, spec: FieldSpec) -> Callable[[Any], Any]:
        if type(self).parse is not DecimalType.parse:  # a number with its own rules
            return super().parser(spec)
        return self._plain_number_parser(spec, super().parser(spec))

    def _plain_number_parser(self, spec: FieldSpec, slow: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Numbers, and text such as ``-1 234,5`` (digits, spaces, at most one decimal mark), the short way,
        with the same limits; anything else, and what the limits refuse, as ``slow`` does."""
        scale = self.scale(spec)
        quantum = _QUANTA.get(scale) or Decimal(1).scaleb(-scale)
        digits = self.PRECISION - scale
        bound = Decimal(10) ** digits

        def parse(raw: Any) -> Any:
            kind = type(raw)
            if kind is float or kind is int:  # a spreadsheet's number
                raw = Decimal(repr(raw)) if kind is float else Decimal(raw)
                kind = Decimal
            if kind is Decimal and raw.is_finite() and (not raw or raw.adjusted() < digits):
                value = raw.quantize(quantum, rounding=ROUND_HALF_UP)  # an import's value, parsed before
                if abs(value) < bound:
                    return value if value else abs(value)
            elif kind is str:
                text = raw.strip()
                if not text:
                    return None
                plain = text.replace(" ", "")  # as the long way drops every space
                if _PLAIN_DECIMAL.fullmatch(plain):
                    number = Decimal(plain.replace(",", "."))
                    if not number or number.adjusted() < digits:
                        value = number.quantize(quantum, rounding=ROUND_HALF_UP)
                        if abs(value) < bound:
                            return value if value else abs(value)
            return slow(raw)

        return parse

    def to_text(self, value: Any, spec: FieldSpec) -> str:
        if value is None:
            return ""
        scale = self.scale(spec)
        if type(value) is Decimal:
            text = str(value)  # already at the field's scale (what parse returns): nothing to round
            mark = text.find(".")
            if (len(text) - mark - 1 == scale if mark >= 0 else scale == 0) and text[-1:].isdecimal():
                if "E" not in text:
                    return text
        return str(Decimal(value).quantize(_QUANTA.get(scale) or Decimal(1).scaleb(-scale)))

    def to_json(self, value: Any, spec: FieldSpec) -> Any:
        return None if value is None else self.to_text(value, spec)

    def display(self, value: Any, spec: FieldSpec) -> str:
        return formats.number_text(value, self.scale(spec))

    def xlsx_format(self, spec: FieldSpec) -> dict[str, Any]:
        scale = self.scale(spec)
        return {"num_format": "#,##0" + ("." + "0" * scale if scale else "")}

    def export_value(self, value: Any, spec: FieldSpec) -> Any:
        return None if value is None else Decimal(value)

    def grid_hints(self, spec: FieldSpec) -> dict[str, Any]:
        return {"editor": "number", "align": "right", "scale": self.scale(spec)}

    def form_field(self, spec: FieldSpec, *, search: bool = False) -> Any:
        from custom_fields import forms

        return forms.number_field(self, spec, search=search)

    def infer(self, values: Sequence[Any]) -> dict[str, Any] | None:
        scale = 0
        for value in values:
            if isinstance(value, bool) or isinstance(value, dt.date):
                return None
            if isinstance(value, float):
                text = repr(value)
            elif isinstance(value, int | Decimal):
                text = str(value)
            elif isinstance(value, str) and _INFERRED_NUMBER.fullmatch(value.strip()):
                text = value
            else:
                return None
            try:
                number = parse_decimal_text(text)
            except (InvalidOperation, ValueError):
                return None
            exponent = number.as_tuple().exponent
            scale = max(scale, -exponent if isinstance(exponent, int) and exponent < 0 else 0)
        return {"scale": min(self.MAX_SCALE, max(2, scale))}


class MoneyType(DecimalType):
    name = "money"
    label = _l("Money")
    setting_defaults = {"currency": "RUB"}
    admin_settings = ("currency",)
    CURRENCY_RE = re.compile(r"^[A-Z]{3}$")

    def clean_settings(self, settings: dict[str, Any], existing: FieldSpec | None = None) -> dict[str, Any]:
        currency = str(settings.get("currency") or "RUB").strip().upper()
        if not self.CURRENCY_RE.match(currency):
            raise SettingsError(_("Currency must be a three-letter code such as RUB, USD or EUR."))
        return {"currency": currency}

    def scale(self, spec: FieldSpec) -> int:
        return 2

    def parse(self, raw: Any, spec: FieldSpec) -> Any:
        if isinstance(raw, str):
            raw = _CURRENCY_MARKS.sub("", raw)
        return super().parse(raw, spec)

    def parser(self, spec: FieldSpec) -> Callable[[Any], Any]:
        number = self._plain_number_parser(spec, lambda raw: DecimalType.parse(self, raw, spec))
        sub = _CURRENCY_MARKS.sub
        return lambda raw: number(sub("", raw) if isinstance(raw, str) else raw)

    def display(self, value: Any, spec: FieldSpec) -> str:
        if value is None:
            return ""
        return f"{formats.number_text(value, 2)} {spec.settings.get('currency', 'RUB')}"

    def grid_hints(self, spec: FieldSpec) -> dict[str, Any]:
        return {**super().grid_hints(spec), "currency": spec.settings.get("currency", "RUB")}

    def xlsx_format(self, spec: FieldSpec) -> dict[str, Any]:
        return {"num_format": f'#,##0.00 "{spec.settings.get("currency", "RUB")}"'}

    def infer(self, values: Sequence[Any]) -> dict[str, Any] | None:
        found: set[str] = set()
        for value in values:
            if not isinstance(value, str):
                if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
                    return None
                continue
            marks = _CURRENCY_MARKS.findall(value)
            found.update(_CURRENCY_CODES.get(m.lower().rstrip("."), m.upper()) for m in marks)
            rest = _CURRENCY_MARKS.sub("", value).strip()
            if not _INFERRED_NUMBER.fullmatch(rest):
                return None
        if len(found) != 1:
            return None  # plain numbers are decimals; several currencies are not one money field
        return {"currency": found.pop()}


class PercentType(DecimalType):
    name = "percent"
    label = _l("Percent")

    def display(self, value: Any, spec: FieldSpec) -> str:
        return "" if value is None else f"{formats.number_text(value, self.scale(spec))} %"

    def grid_hints(self, spec: FieldSpec) -> dict[str, Any]:
        return {**super().grid_hints(spec), "suffix": "%"}

    def xlsx_format(self, spec: FieldSpec) -> dict[str, Any]:
        scale = self.scale(spec)
        return {"num_format": "0" + ("." + "0" * scale if scale else "") + '" %"'}

    def infer(self, values: Sequence[Any]) -> dict[str, Any] | None:
        for value in values:
            if not isinstance(value, str) or not value.strip().endswith("%"):
                return None
            if not _INFERRED_NUMBER.fullmatch(value.strip()[:-1].strip()):
                return None
        return {"scale": 2}


TRUE_WORDS = {"1", "true", "t", "yes", "y", "on", "да", "д", "истина", "✓", "✔", "x", "+"}
FALSE_WORDS = {"0", "false", "f", "no", "n", "off", "нет", "н", "ложь", "-", "✗"}


class BooleanType(FieldType):
    name = "boolean"
    label = _l("Yes / no")
    operators = ("eq", "empty", "nempty")
    can_unique = False
    json_type = "boolean"

    def column_type(self, spec: FieldSpec) -> TypeEngine:
        return Boolean()

    def parse(self, raw: Any, spec: FieldSpec) -> Any:
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, Decimal) and not raw.is_finite():  # a signalling NaN may not even be compared
            raise FieldValueError(_("Expected yes or no."))
        if isinstance(raw, int | float | Decimal) and raw in (0, 1):
            return bool(raw)
        word = str(raw).strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise FieldValueError(_("Expected yes or no."))

    def to_text(self, value: Any, spec: FieldSpec) -> str:
        return "" if value is None else ("true" if value else "false")

    def display(self, value: Any, spec: FieldSpec) -> str:
        return "" if value is None else (_("yes") if value else _("no"))

    def export_value(self, value: Any, spec: FieldSpec) -> Any:
        return None if value is None else bool(value)

    def to_html(self, value: Any, spec: FieldSpec) -> Markup:
        if value is None:
            return Markup("")
        return Markup('<i class="fa fa-check text-success"></i>') if value else Markup("&mdash;")

    def grid_hints(self, spec: FieldSpec) -> dict[str, Any]:
        return {"editor": "checkbox", "align": "center"}

    def form_field(self, spec: FieldSpec, *, search: bool = False) -> Any:
        from custom_fields import forms

        return forms.boolean_field(self, spec, search=search)

    def infer(self, values: Sequence[Any]) -> dict[str, Any] | None:
        words = TRUE_WORDS | FALSE_WORDS
        if all(isinstance(v, bool) or (isinstance(v, str) and v.strip().lower() in words) for v in values):
            return {}
        return None


class DateType(FieldType):
    name = "date"
    label = _l("Date")
    operators = NUMBER_OPS

    def column_type(self, spec: FieldSpec) -> TypeEngine:
        return Date()

    def parse(self, raw: Any, spec: FieldSpec) -> Any:
        if _blank(raw):
            return None
        return self._parse_any(raw)

    def _parse_any(self, raw: Any) -> dt.date:
        if isinstance(raw, dt.datetime):
            return raw.date()
        if isinstance(raw, dt.date):
            return raw
        if not isinstance(raw, str):
            raise FieldValueError(_("Expected a date such as 31.12.2025."))
        text = raw.strip()
        # The two forms nearly every value has (2025-12-31, 31.12.2025), without strptime's cost; what
        # they refuse (31.02.2025) goes the long way below, to the same answer.
        match = _ISO_DATE.fullmatch(text) or _RU_DATE.fullmatch(text)
        if match is not None:
            with contextlib.suppress(ValueError):
                return dt.date(int(match["y"]), int(match["m"]), int(match["d"]))
        for fmt in DATE_FORMATS:
            try:
                return dt.datetime.strptime(text, fmt).date()
            except ValueError:
                continue
        try:
            return dt.datetime.fromisoformat(text).date()  # an ISO date-time, as APIs send
        except ValueError:
            raise FieldValueError(_("Expected a date such as 31.12.2025.")) from None

    def to_text(self, value: Any, spec: FieldSpec) -> str:
        return "" if value is None else value.isoformat()

    def to_json(self, value: Any, spec: FieldSpec) -> Any:
        return None if value is None else value.isoformat()

    def display(self, value: Any, spec: FieldSpec) -> str:
        return formats.date_text(value)

    def export_value(self, value: Any, spec: FieldSpec) -> Any:
        return value

    def xlsx_format(self, spec: FieldSpec) -> dict[str, Any]:
        return {"num_format": "dd.mm.yyyy"}

    def grid_hints(self, spec: FieldSpec) -> dict[str, Any]:
        return {"editor": "date", "align": "right"}

    def form_field(self, spec: FieldSpec, *, search: bool = False) -> Any:
        from custom_fields import forms

        return forms.date_field(self, spec, search=search)

    bucket_units = (*buckets.UNITS, buckets.OVERDUE)

    def bucket(self, column: ColumnElement, unit: str, dialect: str) -> ColumnElement:
        if unit == buckets.OVERDUE:  # days overdue as of today: a due date's aging
            return buckets.aging(column, buckets.today())
        return buckets.truncate(column, unit, dialect)

    def import_parser(self, spec: FieldSpec) -> Callable[[Any], Any]:
        parse = self.parser(spec)

        def read(raw: Any) -> Any:
            if isinstance(raw, int | float) and not isinstance(raw, bool):
                return excel_serial(raw).date()
            return parse(raw)

        return read

    def infer(self, values: Sequence[Any]) -> dict[str, Any] | None:
        for value in values:
            if isinstance(value, dt.datetime):
                if value.time() != dt.time():
                    return None
            elif isinstance(value, dt.date):
                continue
            elif not isinstance(value, str) or not _INFERRED_DATE.fullmatch(value.strip()):
                return None
            else:
                try:
                    self._parse_any(value)
                except FieldValueError:
                    return None
        return {}


class DateTimeType(FieldType):
    name = "datetime"
    label = _l("Date and time")
    operators = NUMBER_OPS

    def column_type(self, spec: FieldSpec) -> TypeEngine:
        return DateTime(timezone=True)

    def parse(self, raw: Any, spec: FieldSpec) -> Any:
        if _blank(raw):
            return None
        if isinstance(raw, dt.datetime):
            value = raw
        elif isinstance(raw, dt.date):
            value = dt.datetime.combine(raw, dt.time())
        elif isinstance(raw, str):
            value = self._parse_text(raw.strip())
        else:
            raise FieldValueError(_("Expected a date and time such as 31.12.2025 14:30."))
        if value.tzinfo is None:
            value = value.replace(tzinfo=local_timezone())
        try:
            value = value.astimezone(dt.UTC)
        except OverflowError:  # 0001-01-01 00:00 in a zone east of UTC, the last hours of 9999 west of it
            raise _instant_out_of_range() from None
        if not FIRST_INSTANT <= value <= LAST_INSTANT:
            raise _instant_out_of_range()
        return value

    def _parse_text(self, text: str) -> dt.datetime:
        try:
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
        for fmt in DATETIME_FORMATS:
            try:
                return dt.datetime.strptime(text, fmt)
            except ValueError:
                continue
        raise FieldValueError(_("Expected a date and time such as 31.12.2025 14:30."))

    def _aware(self, value: dt.datetime) -> dt.datetime:
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)

    def same(self, old: Any, new: Any, spec: FieldSpec) -> bool:
        # One instant, whatever the offset the database or the parser gave it.
        if old is None or new is None:
            return old is new
        return self._aware(old) == self._aware(new)

    def to_text(self, value: Any, spec: FieldSpec) -> str:
        return "" if value is None else self._aware(value).isoformat()

    def to_json(self, value: Any, spec: FieldSpec) -> Any:
        return None if value is None else self.to_text(value, spec)

    def display(self, value: Any, spec: FieldSpec) -> str:
        if value is None:
            return ""
        return formats.datetime_text(self._aware(value))

    def export_value(self, value: Any, spec: FieldSpec) -> Any:
        # Spreadsheets have no time zones: the wall-clock time where the users are.
        if value is None:
            return None
        return self._aware(value).astimezone(local_timezone()).replace(tzinfo=None)

    def xlsx_format(self, spec: FieldSpec) -> dict[str, Any]:
        return {"num_format": "dd.mm.yyyy hh:mm"}

    def grid_hints(self, spec: FieldSpec) -> dict[str, Any]:
        return {"editor": "datetime", "align": "right"}

    def form_field(self, spec: FieldSpec, *, search: bool = False) -> Any:
        from custom_fields import forms

        return forms.datetime_field(self, spec, search=search)

    bucket_units = buckets.UNITS

    def bucket(self, column: ColumnElement, unit: str, dialect: str) -> ColumnElement:
        """Bucketed by the local calendar of ``TABULA_TIMEZONE``. SQLite has no time zones: its values shift
        by the zone's offset of today (a bucket edge is off by the DST hour in zones that change clocks)."""
        zone = local_timezone()
        if dialect == "postgresql":
            local = func.timezone(str(zone), column)
        else:
            offset = dt.datetime.now(zone).utcoffset() or dt.timedelta()
            local = func.datetime(column, f"{int(offset.total_seconds() // 60):+d} minutes")
        return buckets.truncate(local, unit, dialect)

    def import_parser(self, spec: FieldSpec) -> Callable[[Any], Any]:
        parse = self.parser(spec)

        def read(raw: Any) -> Any:
            if isinstance(raw, int | float) and not isinstance(raw, bool):
                return parse(excel_serial(raw))
            return parse(raw)

        return read

    def infer(self, values: Sequence[Any]) -> dict[str, Any] | None:
        for value in values:
            if isinstance(value, dt.date):
                continue
            if not isinstance(value, str) or not _INFERRED_DATETIME.fullmatch(value.strip()):
                return None
            try:
                self._parse_text(value.strip())
            except FieldValueError:
                return None
        return {}


def new_option_id() -> str:
    return secrets.token_hex(4)


class SingleSelectType(FieldType):
    """Stores the option's generated id, so renaming an option never touches the data."""

    name = "single_select"
    label = _l("Single select")
    operators = CHOICE_OPS
    has_options = True
    admin_settings = ("options",)

    def clean_settings(self, settings: dict[str, Any], existing: FieldSpec | None = None) -> dict[str, Any]:
        return {"options": clean_options(settings.get("options"))}

    def column_type(self, spec: FieldSpec) -> TypeEngine:
        return String(16)

    def option_by_id(self, spec: FieldSpec) -> dict[str, dict[str, str]]:
        return {o["id"]: o for o in spec.options}

    def match_option(self, raw: Any, spec: FieldSpec) -> str:
        text = str(raw).strip()
        if any(o["id"] == text for o in spec.stored_options):  # the ids, without translating the labels
            return text
        folded = text.casefold()
        for option in (*spec.options, *spec.stored_options):
            if option["label"].strip().casefold() == folded:
                return option["id"]
        choices = ", ".join(o["label"] for o in spec.options[:10])
        raise FieldValueError(
            _("“%(value)s” is not one of the options: %(choices)s.", value=text[:50], choices=choices)
        )

    def parse(self, raw: Any, spec: FieldSpec) -> Any:
        if _blank(raw):
            return None
        if isinstance(raw, bool) or isinstance(raw, list | dict):
            raise FieldValueError(_("Expected one of the options."))
        return self.match_option(raw, spec)

    def parser(self, spec: FieldSpec) -> Callable[[Any], Any]:
        if type(self).parse is not SingleSelectType.parse:
            return super().parser(spec)
        ids = {o["id"] for o in spec.stored_options}
        by_label: dict[str, str] = {}
        for option in (*spec.options, *spec.stored_options):  # the first option of a label wins
            by_label.setdefault(option["label"].strip().casefold(), option["id"])
        slow = super().parser(spec)

        def parse(raw: Any) -> Any:
            if type(raw) is str:
                text = raw.strip()
                if text in ids and text:
                    return text
                found = by_label.get(text.casefold()) if text else None
                if found is not None:
                    return found
            return slow(raw)  # empty, or refused with the options named

        return parse

    def to_text(self, value: Any, spec: FieldSpec) -> str:
        option = self.option_by_id(spec).get(value) if value else None
        return option["label"] if option else ""

    def option_condition(self, column: ColumnElement, option_id: str) -> ColumnElement:
        """Records holding the option."""
        return column == option_id

    def without_option(self, column: ColumnElement, option_id: str) -> ColumnElement:
        """The stored value of a record holding the option once the option is removed."""
        return null()

    def matching_options(self, text: str, spec: FieldSpec) -> list[str]:
        """Ids of the options whose label (as shipped or as shown) contains ``text``."""
        needle = text.casefold()
        return sorted(
            {o["id"] for o in (*spec.options, *spec.stored_options) if needle in o["label"].casefold()}
        )

    def search_condition(self, column: ColumnElement, text: str, spec: FieldSpec) -> ColumnElement | None:
        ids = self.matching_options(text, spec)
        return or_(*(self.option_condition(column, i) for i in ids)) if ids else None

    def search_matches(self, value: Any, text: str, spec: FieldSpec) -> bool:
        ids = set(self.matching_options(text, spec))
        return any(i in ids for i in self.ids(value))

    def ids(self, value: Any) -> list[str]:
        return [value] if value else []

    def to_html(self, value: Any, spec: FieldSpec) -> Markup:
        option = self.option_by_id(spec).get(value) if value else None
        return option_badge(option) if option else Markup("")

    def convert(self, value: Any, source: FieldType, source_spec: FieldSpec, spec: FieldSpec) -> Any:
        if isinstance(source, MultiSelectType):
            ids = source.ids(value)
            if len(ids) > 1:
                raise FieldValueError(_("Has more than one option."))
            value = ids[0] if ids else None
            return self.parse(source.option_by_id(source_spec).get(value, {}).get("label"), spec)
        return super().convert(value, source, source_spec, spec)

    def form_field(self, spec: FieldSpec, *, search: bool = False) -> Any:
        from custom_fields import forms

        return forms.select_field(self, spec, search=search)

    def grid_hints(self, spec: FieldSpec) -> dict[str, Any]:
        return {"editor": "select", "align": "left", "options": spec.options}

    def infer(self, values: Sequence[Any]) -> dict[str, Any] | None:
        if type(self) is not SingleSelectType:
            return None
        labels: dict[str, str] = {}
        for value in values:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                return None
            text = _excel_number_text(value).strip()
            if len(text) > OPTION_LABEL_LENGTH:
                return None
            labels.setdefault(text.casefold(), text)
            if len(labels) > MAX_INFERRED_OPTIONS:
                return None
        # Few distinct values, each repeated: a choice, not free text.
        if len(values) < 2 * len(labels) or len(values) < 4:
            return None
        return {"options": [{"label": label} for label in labels.values()]}


class MultiSelectType(SingleSelectType):
    """Stores ``,id1,id2,`` (ids in the options' order), which both databases can filter with LIKE."""

    name = "multi_select"
    label = _l("Multiple select")
    operators = ("has", "nhas", "empty", "nempty")
    can_unique = False
    json_type = "array"
    sortable = False

    def column_type(self, spec: FieldSpec) -> TypeEngine:
        return Text()

    def ids(self, value: Any) -> list[str]:
        return [part for part in (value or "").split(",") if part]

    def option_condition(self, column: ColumnElement, option_id: str) -> ColumnElement:
        return like(column, f"%,{escape_like(option_id)},%")

    def without_option(self, column: ColumnElement, option_id: str) -> ColumnElement:
        return func.nullif(func.replace(column, f",{option_id},", ","), ",")

    def parse(self, raw: Any, spec: FieldSpec) -> Any:
        if _blank(raw):
            return None
        if isinstance(raw, str):
            parts = [p for p in re.split(r"[;,\n]", raw) if p.strip()]
            if len(parts) > 1 or raw.strip() not in self.option_by_id(spec):
                # One whole label may itself contain a comma.
                try:
                    parts = [self.match_option(raw, spec)]
                except FieldValueError:
                    pass
        elif isinstance(raw, list | tuple | set):
            parts = list(raw)
        else:
            raise FieldValueError(_("Expected a list of options."))
        if any(isinstance(p, bool) or not isinstance(p, str | int) for p in parts):
            raise FieldValueError(_("Expected a list of options."))
        chosen = {self.match_option(p, spec) for p in parts if str(p).strip()}
        ordered = [o["id"] for o in spec.options if o["id"] in chosen]
        return f",{','.join(ordered)}," if ordered else None

    def to_text(self, value: Any, spec: FieldSpec) -> str:
        by_id = self.option_by_id(spec)
        return ", ".join(by_id[i]["label"] for i in self.ids(value) if i in by_id)

    def to_json(self, value: Any, spec: FieldSpec) -> Any:
        return self.ids(value)

    def to_html(self, value: Any, spec: FieldSpec) -> Markup:
        by_id = self.option_by_id(spec)
        return Markup(" ").join(option_badge(by_id[i]) for i in self.ids(value) if i in by_id)

    def convert(self, value: Any, source: FieldType, source_spec: FieldSpec, spec: FieldSpec) -> Any:
        if isinstance(source, SingleSelectType):
            by_id = source.option_by_id(source_spec)  # by label, never split: a label may hold a comma
            labels = [by_id[i]["label"] for i in source.ids(value) if i in by_id]
            return self.parse(labels, spec)
        return super().convert(value, source, source_spec, spec)

    def filter_value(self, raw: str, spec: FieldSpec) -> Any:
        return self.match_option(raw, spec)

    def grid_hints(self, spec: FieldSpec) -> dict[str, Any]:
        return {**super().grid_hints(spec), "editor": "multiselect"}

    def form_field(self, spec: FieldSpec, *, search: bool = False) -> Any:
        from custom_fields import forms

        return forms.multi_select_field(self, spec, search=search)


def option_badge(option: dict[str, str]) -> Markup:
    color = option.get("color") if COLOR_RE.match(option.get("color") or "") else "#eeeeee"
    return Markup('<span class="label tabula-option" style="background:{};color:#222">{}</span>').format(
        color, option["label"]
    )


def clean_options(raw: Any) -> list[dict[str, str]]:
    """Options from the admin: [{"id"?, "label", "color"?}] -> validated, ids kept or generated."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise SettingsError(_("Options must be a list."))
    if len(raw) > MAX_OPTIONS:
        raise SettingsError(_("At most %(n)d options.", n=MAX_OPTIONS))
    cleaned: list[dict[str, str]] = []
    seen_labels: set[str] = set()
    seen_ids: set[str] = set()
    for index, item in enumerate(raw):
        if isinstance(item, str):
            item = {"label": item}
        if not isinstance(item, dict):
            raise SettingsError(_("Option %(n)d is not valid.", n=index + 1))
        label = str(item.get("label") or "").strip()
        if not label:
            continue
        if len(label) > OPTION_LABEL_LENGTH:
            raise SettingsError(_("An option may have at most %(n)d characters.", n=OPTION_LABEL_LENGTH))
        if label.casefold() in seen_labels:
            raise SettingsError(_("The option “%(label)s” appears twice.", label=label))
        seen_labels.add(label.casefold())
        option_id = str(item.get("id") or "")
        # Generated ids, or the readable ones core fields ship with ("customer").
        if not re.fullmatch(r"[0-9a-f]{8}|[a-z][a-z0-9_]{0,15}", option_id) or option_id in seen_ids:
            option_id = new_option_id()
        seen_ids.add(option_id)
        color = str(item.get("color") or "")
        if not COLOR_RE.match(color):
            color = DEFAULT_COLORS[index % len(DEFAULT_COLORS)]
        cleaned.append({"id": option_id, "label": label, "color": color.lower()})
    return cleaned


#: An address whose local part is a plain dot-atom of common characters, Latin or Russian letters (each
#: a letter that Unicode normalisation leaves as it is), and whose domain is ASCII.
_PLAIN_EMAIL = re.compile(
    r"(?P<local>[A-Za-zА-Яа-яЁё0-9_%+-]{1,64}(?:\.[A-Za-zА-Яа-яЁё0-9_%+-]+)*)@(?P<domain>[A-Za-z0-9.-]{1,253})"
)


@functools.lru_cache(maxsize=16_384)
def _email_domain(domain: str) -> str | None:
    """The domain as ``email_validator`` normalises it, or None when it refuses it."""
    try:
        return email_validator.validate_email(f"a@{domain}", check_deliverability=False).domain
    except email_validator.EmailNotValidError:
        return None


@functools.lru_cache(maxsize=65_536)
def _validated_email(text: str) -> str | None:
    """The address as ``email_validator`` normalises it (syntax only, no DNS look-up; international domains
    in Unicode, the domain in lower case), or None when it refuses it. Cached: an import checks each
    address before writing and the write path again."""
    try:
        return email_validator.validate_email(text, check_deliverability=False).normalized
    except email_validator.EmailNotValidError:
        return None


class EmailType(TextType):
    name = "email"
    label = _l("E-mail")
    setting_defaults = {}
    admin_settings = ()

    def column_type(self, spec: FieldSpec) -> TypeEngine:
        return String(320)

    def parse(self, raw: Any, spec: FieldSpec) -> Any:
        if _blank(raw):
            return None
        if not isinstance(raw, str):
            raise FieldValueError(_("Expected an e-mail address such as name@example.com."))
        text = raw.strip()
        if text.lower().startswith("mailto:"):
            text = text[7:]
        if len(text) > 320:
            raise FieldValueError(_("Expected an e-mail address such as name@example.com."))
        plain = _PLAIN_EMAIL.fullmatch(text)
        if (
            plain is not None
            and len(text.encode()) <= 254
            and len(plain["local"]) <= 64
            and plain["local"].lower() not in CASE_INSENSITIVE_MAILBOX_NAMES  # "Abuse@" is "abuse@"
        ):
            # A plain address (most are): its local part needs no more checks than the pattern made,
            # and its domain is checked once however many addresses share it.
            domain = _email_domain(plain["domain"])
            if domain is None:
                raise FieldValueError(_("Expected an e-mail address such as name@example.com."))
            return f"{plain['local']}@{domain}"
        normalized = _validated_email(text)
        if normalized is None or len(normalized) > 320:
            raise FieldValueError(_("Expected an e-mail address such as name@example.com."))
        return normalized

    def to_html(self, value: Any, spec: FieldSpec) -> Markup:
        if not value:
            return Markup("")
        return Markup('<a href="mailto:{0}">{0}</a>').format(value)

    def infer(self, values: Sequence[Any]) -> dict[str, Any] | None:
        if not all(isinstance(v, str) and "@" in v for v in values):
            return None
        return _all_parse(self, values)


class PhoneType(TextType):
    """Stored in E.164 (``+74951234567``); numbers without a country code are Russian."""

    name = "phone"
    label = _l("Phone")
    setting_defaults = {}
    admin_settings = ()
    DEFAULT_REGION = "RU"

    def column_type(self, spec: FieldSpec) -> TypeEngine:
        return String(32)

    def parse(self, raw: Any, spec: FieldSpec) -> Any:
        if _blank(raw):
            return None
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise FieldValueError(_("Expected a phone number such as +7 495 123-45-67."))
        text = _excel_number_text(raw).strip()
        # Digits and the usual separators only (phonenumbers would also read letters: 8-800-FLOWERS).
        if len(text) > 40 or not re.fullmatch(r"\+?[\d\s\-().\u00a0]+", text):
            raise FieldValueError(_("Expected a phone number such as +7 495 123-45-67."))
        try:
            number = phonenumbers.parse(text, self.DEFAULT_REGION)
        except phonenumbers.NumberParseException:
            raise FieldValueError(_("Expected a phone number such as +7 495 123-45-67.")) from None
        if not phonenumbers.is_valid_number(number):
            raise FieldValueError(_("Expected a phone number such as +7 495 123-45-67."))
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    def to_html(self, value: Any, spec: FieldSpec) -> Markup:
        if not value:
            return Markup("")
        return Markup('<a href="tel:{0}">{0}</a>').format(value)

    MIN_DIGITS = 5

    def searched_digits(self, text: str) -> list[str]:
        """Digit strings a stored number may contain when ``text`` looks like a phone (at least
        ``MIN_DIGITS`` digits): as typed, and in E.164 (``8 (495) 123`` finds ``+7495123...``)."""
        digits = re.sub(r"\D", "", text)
        if len(digits) < self.MIN_DIGITS:
            return []
        found = [digits]
        if re.fullmatch(r"[\d\s\-+().\u00a0]+", text):
            try:
                number = phonenumbers.parse(text, self.DEFAULT_REGION)
            except phonenumbers.NumberParseException:
                number = None
            if number is not None and phonenumbers.is_valid_number(number):
                plain = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164).lstrip("+")
                if plain not in found:
                    found.append(plain)
        return found

    def search_condition(self, column: ColumnElement, text: str, spec: FieldSpec) -> ColumnElement | None:
        digits = [column.like(f"%{d}%") for d in self.searched_digits(text)]
        return or_(super().search_condition(column, text, spec), *digits)

    def search_matches(self, value: Any, text: str, spec: FieldSpec) -> bool:
        if super().search_matches(value, text, spec):
            return True
        return value is not None and any(d in str(value) for d in self.searched_digits(text))

    def infer(self, values: Sequence[Any]) -> dict[str, Any] | None:
        if not all(isinstance(v, str) and sum(c.isdigit() for c in v) >= 7 for v in values):
            return None
        return _all_parse(self, values)


class UrlType(TextType):
    name = "url"
    label = _l("Web address")
    setting_defaults = {}
    admin_settings = ()

    def column_type(self, spec: FieldSpec) -> TypeEngine:
        return String(2048)

    def parse(self, raw: Any, spec: FieldSpec) -> Any:
        if _blank(raw):
            return None
        if not isinstance(raw, str):
            raise FieldValueError(_("Expected a web address such as https://example.com."))
        text = raw.strip()
        if "://" not in text:
            text = "https://" + text
        try:
            parts = urlsplit(text)
        except ValueError:
            raise FieldValueError(_("Expected a web address such as https://example.com.")) from None
        host = parts.hostname or ""
        if (
            parts.scheme.lower() not in ("http", "https")
            or "." not in host
            or re.search(r"[\s<>\"]", text)
            or len(text) > 2048
        ):
            raise FieldValueError(_("Expected a web address such as https://example.com."))
        return text

    def to_html(self, value: Any, spec: FieldSpec) -> Markup:
        if not value:
            return Markup("")
        return Markup('<a href="{0}" rel="noopener noreferrer nofollow" target="_blank">{0}</a>').format(
            value
        )

    def infer(self, values: Sequence[Any]) -> dict[str, Any] | None:
        if not all(isinstance(v, str) and v.strip().lower().startswith(_URL_STARTS) for v in values):
            return None
        return _all_parse(self, values)


class LinkType(FieldType):
    """Many-to-one link to a record of any table: a real foreign key to the target's id."""

    name = "link"
    label = _l("Link to a record")
    operators = CHOICE_OPS
    json_type = "integer"
    can_unique = True
    reference = "record"
    indexed_by_default = True
    admin_settings = ("target",)

    def clean_settings(self, settings: dict[str, Any], existing: FieldSpec | None = None) -> dict[str, Any]:
        from custom_fields.runtime import entity_exists

        try:
            target = int(settings.get("target") or 0)
        except (TypeError, ValueError):
            target = 0
        if existing is not None and existing.type == self.name:
            target = int(existing.settings.get("target") or target)
        if not target or not entity_exists(target):
            raise SettingsError(_("Choose the table this field links to."))
        return {"target": target}

    def column_type(self, spec: FieldSpec) -> TypeEngine:
        return Integer()

    def target_entity_id(self, spec: FieldSpec) -> int | None:
        return int(spec.settings["target"])

    def target_table(self, spec: FieldSpec) -> str | None:
        from custom_fields.runtime import table_name_of

        return table_name_of(int(spec.settings["target"]))

    def parse(self, raw: Any, spec: FieldSpec) -> Any:
        if _blank(raw):
            return None
        if isinstance(raw, bool):
            raise FieldValueError(_("Expected the number of a record."))
        if isinstance(raw, dict) and "id" in raw:
            raw = raw["id"]
        try:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError(raw)
            value = int(raw)
        except (TypeError, ValueError, OverflowError):
            raise FieldValueError(_("Expected the number of a record.")) from None
        if not 0 < value < 2**31:
            raise FieldValueError(_("No such record."))
        return value

    def check_exists(self, value: Any, spec: FieldSpec) -> None:
        from custom_fields.runtime import record_exists

        if value is not None and not record_exists(self.target_table(spec), value):
            raise FieldValueError(_("Record %(id)s does not exist.", id=value))

    def to_html(self, value: Any, spec: FieldSpec) -> Markup:
        from custom_fields.runtime import record_link

        return record_link(int(spec.settings["target"]), value) if value else Markup("")

    def to_text(self, value: Any, spec: FieldSpec) -> str:
        return "" if value is None else str(value)

    def display(self, value: Any, spec: FieldSpec) -> str:
        from custom_fields.runtime import record_label

        return record_label(int(spec.settings["target"]), value) if value else ""

    def export_value(self, value: Any, spec: FieldSpec) -> Any:
        # The label comes from the query layer, which knows whether the reader may see it.
        return None if value is None else f"#{value}"

    def form_field(self, spec: FieldSpec, *, search: bool = False) -> Any:
        from custom_fields import forms

        return forms.link_field(self, spec, search=search)

    def grid_hints(self, spec: FieldSpec) -> dict[str, Any]:
        return {"editor": "link", "align": "left", "target": spec.settings.get("target")}


class UserType(LinkType):
    """A user of Tabula (e.g. a responsible manager): a foreign key to ``ab_user``."""

    name = "user"
    label = _l("User")
    reference = "user"
    admin_settings = ()

    def clean_settings(self, settings: dict[str, Any], existing: FieldSpec | None = None) -> dict[str, Any]:
        return {}

    def target_entity_id(self, spec: FieldSpec) -> int | None:
        return None

    def target_table(self, spec: FieldSpec) -> str | None:
        return "ab_user"

    def parse(self, raw: Any, spec: FieldSpec) -> Any:
        if isinstance(raw, str) and raw.strip() and not raw.strip().isdecimal():
            from custom_fields.runtime import user_id_by_username

            found = user_id_by_username(raw.strip())
            if found is None:
                raise FieldValueError(_("No user “%(name)s”.", name=raw.strip()[:50]))
            return found
        return super().parse(raw, spec)

    def to_html(self, value: Any, spec: FieldSpec) -> Markup:
        from custom_fields.runtime import user_label

        return escape(user_label(value)) if value else Markup("")

    def to_text(self, value: Any, spec: FieldSpec) -> str:
        from custom_fields.runtime import username_of

        return username_of(value) if value else ""

    def display(self, value: Any, spec: FieldSpec) -> str:
        from custom_fields.runtime import user_label

        return user_label(value) if value else ""

    def export_value(self, value: Any, spec: FieldSpec) -> Any:
        return self.display(value, spec) or None

    def grid_hints(self, spec: FieldSpec) -> dict[str, Any]:
        return {"editor": "user", "align": "left"}


def _weighted_check(digits: str, weights: tuple[int, ...]) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=False)) % 11 % 10


def inn_valid(digits: str) -> bool:
    """A Russian INN: 10 digits (an organisation) or 12 (a person or sole trader), with check digits."""
    if not digits.isdecimal() or not digits.isascii():
        return False
    if len(digits) == 10:
        return _weighted_check(digits, (2, 4, 10, 3, 5, 9, 4, 6, 8)) == int(digits[9])
    if len(digits) == 12:
        return _weighted_check(digits, (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)) == int(digits[10]) and (
            _weighted_check(digits, (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)) == int(digits[11])
        )
    return False


def ogrn_valid(digits: str) -> bool:
    """A Russian OGRN (13 digits) or OGRNIP (15 digits), whose last digit checks the rest."""
    if not digits.isdecimal() or not digits.isascii() or len(digits) not in (13, 15):
        return False
    modulus = 11 if len(digits) == 13 else 13
    return int(digits[:-1]) % modulus % 10 == int(digits[-1])


KPP_RE = re.compile(r"^\d{4}[0-9A-Z]{2}\d{3}$", re.ASCII)


class TaxIdType(TextType):
    """A Russian registration number, checked with its check digits: INN (10 or 12 digits), KPP (9) or
    OGRN / OGRNIP (13 or 15). Any other text only when the record's "foreign" field (setting
    ``foreign_field``, a yes/no field of the same table) says the company is not Russian."""

    name = "tax_id"
    label = _l("Russian tax ID (INN, KPP, OGRN)")
    setting_defaults = {"kind": "inn", "foreign_field": ""}
    admin_settings = ("kind",)
    KINDS = ("inn", "kpp", "ogrn")
    KIND_LABELS = {"inn": _l("INN"), "kpp": _l("KPP"), "ogrn": _l("OGRN or OGRNIP")}

    def setting_choices(self, key: str) -> list[tuple[str, Any]]:
        return [(kind, self.KIND_LABELS[kind]) for kind in self.KINDS] if key == "kind" else []

    MAX_LENGTH = 20

    def clean_settings(self, settings: dict[str, Any], existing: FieldSpec | None = None) -> dict[str, Any]:
        kind = str(settings.get("kind") or "inn")
        if kind not in self.KINDS:
            raise SettingsError(_("The kind of tax ID must be INN, KPP or OGRN."))
        foreign = str(settings.get("foreign_field") or "")
        if foreign and not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", foreign):
            foreign = ""
        return {"kind": kind, "foreign_field": foreign}

    def column_type(self, spec: FieldSpec) -> TypeEngine:
        return String(self.MAX_LENGTH)

    def parse(self, raw: Any, spec: FieldSpec) -> Any:
        if _blank(raw):
            return None
        if isinstance(raw, bool) or not isinstance(raw, str | int | float | Decimal):
            raise FieldValueError(_("Expected text."))
        text = self.normal(_excel_number_text(raw))
        if not text.isprintable():
            raise FieldValueError(_("Expected text."))
        _check_length(text, self.MAX_LENGTH)
        # The check digits are checked by check_record, which the write path runs only for a new or
        # changed value: a value saved before the check existed does not block an untouched save.
        return text

    @staticmethod
    def normal(text: str) -> str:
        """A tax id as compared and stored: no spaces or dashes, upper case."""
        return re.sub(r"[\s\u00a0\u202f-]", "", text).upper()

    def same(self, old: Any, new: Any, spec: FieldSpec) -> bool:
        # ``7707 083893`` stored before parsing normalised is the same id as ``7707083893``.
        if old is None or new is None:
            return old is new
        return self.normal(str(old)) == self.normal(str(new))

    def convert(self, value: Any, source: FieldType, source_spec: FieldSpec, spec: FieldSpec) -> Any:
        converted = super().convert(value, source, source_spec, spec)
        if converted is not None and not spec.settings.get("foreign_field"):
            self.check_russian(converted, spec)
        return converted

    def filter_value(self, raw: str, spec: FieldSpec) -> Any:
        return self.normal(str(raw))

    def check_russian(self, text: str, spec: FieldSpec) -> None:
        kind = spec.settings.get("kind") or "inn"
        foreign = bool(spec.settings.get("foreign_field"))
        if kind == "kpp":
            if not KPP_RE.match(text):
                raise FieldValueError(_("A KPP has 9 characters: 4 digits, 2 digits or letters, 3 digits."))
            return
        if kind == "ogrn":
            shape = text.isascii() and text.isdecimal() and len(text) in (13, 15)
            if not shape:
                message = _("An OGRN has 13 digits (an OGRNIP 15).")
            elif not ogrn_valid(text):
                message = _("The check digit of this OGRN does not match: please check it for a typo.")
            else:
                return
        else:
            shape = text.isascii() and text.isdecimal() and len(text) in (10, 12)
            if not shape:
                message = _("An INN has 10 digits (an organisation) or 12 (a person or sole trader).")
            elif not inn_valid(text):
                message = _("The check digits of this INN do not match: please check it for a typo.")
            else:
                return
        if foreign and not shape:
            message = _("%(problem)s For a foreign company, mark it as foreign first.", problem=message)
        raise FieldValueError(message)

    def depends_on(self, spec: FieldSpec) -> tuple[str, ...]:
        foreign = spec.settings.get("foreign_field")
        return (foreign,) if foreign else ()

    def check_record(self, value: Any, spec: FieldSpec, record: dict[str, Any]) -> None:
        foreign = spec.settings.get("foreign_field")
        if value is None or (foreign and record.get(foreign) is True):
            return
        self.check_russian(str(value), spec)


REGISTRY: dict[str, FieldType] = {}


def register(field_type: FieldType) -> FieldType:
    if field_type.name in REGISTRY:
        raise ValueError(f"field type {field_type.name!r} is registered twice")
    REGISTRY[field_type.name] = field_type
    return field_type


for _type in (
    TextType(),
    LongTextType(),
    IntegerType(),
    DecimalType(),
    MoneyType(),
    PercentType(),
    BooleanType(),
    DateType(),
    DateTimeType(),
    SingleSelectType(),
    MultiSelectType(),
    EmailType(),
    PhoneType(),
    UrlType(),
    TaxIdType(),
    LinkType(),
    UserType(),
):
    register(_type)


def field_type(name: str) -> FieldType:
    return REGISTRY[name]


def type_choices() -> list[tuple[str, Any]]:
    return [(t.name, t.label) for t in REGISTRY.values()]


def parse_all(values: dict[str, Any], specs: Iterable[FieldSpec]) -> tuple[dict[str, Any], dict[str, str]]:
    """Parse a dict of raw values by field name; returns (parsed, errors by field name)."""
    parsed: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for spec in specs:
        if spec.name not in values:
            continue
        try:
            parsed[spec.name] = REGISTRY[spec.type].parse(values[spec.name], spec)
        except FieldValueError as exc:
            errors[spec.name] = str(exc)
    return parsed, errors


# --- reading imported files --------------------------------------------------------------------------------

#: The types an imported column may become, in the order they are tried: the first that reads every value
#: wins (a column of 0 and 1 is a number; a few repeated words a single select; anything else text).
INFERENCE_ORDER = (
    "integer",
    "decimal",
    "money",
    "percent",
    "date",
    "datetime",
    "boolean",
    "email",
    "phone",
    "url",
    "single_select",
    "text",
    "long_text",
)
MAX_INFERRED_OPTIONS = 15
_INFERRED_INTEGER = re.compile(r"[+-]?(0|[1-9][0-9]{0,2}([ \u00a0\u202f][0-9]{3})+|[1-9][0-9]{0,8})")
#: A number as people write it: "1 234,56", "1,234.56", "12,5"; at most 9 plain digits before the mark (longer
#: digit strings are ids, tax ids and phones) and no leading zero (codes).
_INFERRED_NUMBER = re.compile(
    r"[+-]?(([1-9][0-9]{0,2}([ \u00a0\u202f,][0-9]{3})+|0|[1-9][0-9]{0,8})([.,][0-9]+)?"
    r"|[1-9][0-9]{0,2}(\.[0-9]{3})+,[0-9]+)"
)
_INFERRED_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{1,2}[./][0-9]{1,2}[./][0-9]{2,4}")
_INFERRED_DATETIME = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{4})[ T][0-9]{1,2}:[0-9]{2}(:[0-9]{2})?"
)
_CURRENCY_CODES = {"₽": "RUB", "руб": "RUB", "р": "RUB", "$": "USD", "€": "EUR"}
_URL_STARTS = ("http://", "https://", "www.")
#: Day 0 of Excel's (and LibreOffice's default) date serials: 1899-12-30, which absorbs Lotus's 1900 leap day.
_EXCEL_EPOCH = dt.datetime(1899, 12, 30)


def excel_serial(number: float) -> dt.datetime:
    """An Excel date serial (days since 1899-12-30, the fraction the time of day) as a naive date-time."""
    if not 1 <= number < 2_958_466:  # 1900-01-01 .. 9999-12-31
        raise FieldValueError(_("Expected a date such as 31.12.2025."))
    moment = _EXCEL_EPOCH + dt.timedelta(days=float(number))
    return moment.replace(microsecond=0) + dt.timedelta(seconds=round(moment.microsecond / 1e6))


def bare_spec(type_name: str, settings: dict[str, Any] | None = None) -> FieldSpec:
    """A field of no table, with the type's default settings (to ask a type about values on their own)."""
    ftype = REGISTRY[type_name]
    chosen = {**ftype.setting_defaults, **(settings or {})}
    return FieldSpec(0, 0, "value", "value", "", type_name, settings=chosen)


def _all_parse(ftype: FieldType, values: Sequence[Any]) -> dict[str, Any] | None:
    parse = ftype.parser(bare_spec(ftype.name))
    try:
        for value in values:
            parse(value)
    except FieldValueError:
        return None
    return {}


def infer_field_type(values: Iterable[Any]) -> tuple[str, dict[str, Any]]:
    """The field type (and its settings) that reads every value of an imported column (blanks left out):
    the first of ``INFERENCE_ORDER`` whose ``infer`` answers; text when the column is empty."""
    present = [v for v in values if not _blank(v)]
    if not present:
        return "text", {"max_length": 255}
    for name in INFERENCE_ORDER:
        settings = REGISTRY[name].infer(present)
        if settings is not None:
            return name, settings
    return "long_text", {}


# --- conversions in SQL ------------------------------------------------------------------------------------
#
# A type change runs in the database for the stored values it can convert there exactly as ``convert``
# does in Python; the other values (usually few: "1 234,5", "Yes", a label typed in another case) go
# through ``convert``. Each rule gives a condition that holds only for values its SQL expression converts
# to the very value ``convert`` gives, so the two paths never disagree (tests/test_schema_conversion.py
# compares them on the same values).


@dataclass(frozen=True)
class SqlConversion:
    """``covers(column)``: the stored values converted in SQL; ``value(column)``: what they become."""

    covers: Callable[[ColumnElement], ColumnElement]
    value: Callable[[ColumnElement], ColumnElement]


SqlRule = Callable[[FieldType, FieldSpec, FieldType, FieldSpec, str], "SqlConversion | None"]
_EDGE_CHARACTER = "[0-9A-Za-zА-Яа-яЁё]"
_LAST_CHARACTER = '[0-9A-Za-zА-Яа-яЁё.)!?"»]'


def _is_plain_text(source: FieldType) -> bool:
    """A type stored as the very text it shows (text, long text, e-mail, phone, web address, tax id)."""
    return isinstance(source, TextType) and type(source).to_text is FieldType.to_text


def _matches(column: ColumnElement, pattern: str) -> ColumnElement:
    # SQLite's REGEXP is Python's re.search, whose "$" also matches before a final line break.
    return and_(column.regexp_match(pattern), ~column.endswith("\n", autoescape=True))


def _lookup(keys: Iterable[Any], convert: Callable[[Any], Any], type_: TypeEngine) -> SqlConversion | None:
    """A finite set of stored values (options, yes/no, exact labels) converted by Python once each, and
    looked up in SQL: exact by construction."""
    pairs: dict[Any, Any] = {}
    for key in keys:
        if key in pairs:
            continue
        try:
            pairs[key] = convert(key)
        except FieldValueError:
            continue
    if not pairs:
        return None
    known = list(pairs)
    return SqlConversion(
        covers=lambda column: column.in_(known),
        value=lambda column: case(
            *((column == key, literal(value, type_) if value is not None else null())
              for key, value in pairs.items()),
            else_=null(),
        ),
    )  # fmt: skip


def _finite_values(source: FieldType, source_spec: FieldSpec) -> list[Any] | None:
    """Every value a field of the type may hold, when there are few (yes/no, a single select's options)."""
    if isinstance(source, BooleanType):
        return [True, False]
    if type(source) is SingleSelectType:
        return [o["id"] for o in source_spec.stored_options]
    return None


def _text_keys(target: FieldType, spec: FieldSpec) -> list[str] | None:
    """The texts a target with few values is most often converted from (its labels and words), as stored."""
    if isinstance(target, SingleSelectType):
        options = [*spec.options, *spec.stored_options]
        return [o["id"] for o in options] + [o["label"] for o in options]
    if isinstance(target, BooleanType):
        words = sorted(TRUE_WORDS | FALSE_WORDS)
        return words + [w.upper() for w in words] + [w.capitalize() for w in words]
    return None


def _numeric_bound(digits: int) -> int:
    return 10**digits - 1


def _integer_from(source: FieldType, source_spec: FieldSpec, target: FieldType, spec: FieldSpec,
                  dialect: str) -> SqlConversion | None:  # fmt: skip
    if spec.int_limit:
        return None
    if _is_plain_text(source):
        return SqlConversion(lambda c: _matches(c, "^-?[0-9]{1,18}$"), lambda c: cast(c, BigInteger))
    if isinstance(source, DecimalType):
        if dialect == "postgresql":
            return SqlConversion(lambda c: c == func.trunc(c), lambda c: cast(c, BigInteger))
        return SqlConversion(lambda c: c == cast(c, Integer), lambda c: cast(c, BigInteger))
    return None


def _decimal_from(source: FieldType, source_spec: FieldSpec, target: FieldType, spec: FieldSpec,
                  dialect: str) -> SqlConversion | None:  # fmt: skip
    assert isinstance(target, DecimalType)
    scale = target.scale(spec)
    whole_digits = target.PRECISION - scale - 1  # one digit of headroom: rounding never reaches the limit
    column_type = target.column_type(spec)
    if _is_plain_text(source):
        if dialect == "postgresql":
            pattern = f"^-?[0-9]{{1,{whole_digits}}}([.,][0-9]{{1,30}})?$"
        else:  # SQLite keeps a REAL: only what needs no rounding, within a double's exact digits
            whole_digits = min(whole_digits, 15 - scale)
            fraction = f"([.,][0-9]{{1,{scale}}})?" if scale else ""
            pattern = f"^-?[0-9]{{1,{whole_digits}}}{fraction}$"
        return SqlConversion(
            lambda c: _matches(c, pattern), lambda c: cast(func.replace(c, ",", "."), column_type)
        )
    if isinstance(source, IntegerType):
        bound = _numeric_bound(whole_digits if dialect == "postgresql" else min(whole_digits, 15))
        return SqlConversion(lambda c: c.between(-bound, bound), lambda c: cast(c, column_type))
    if isinstance(source, DecimalType) and dialect == "postgresql":
        bound = _numeric_bound(whole_digits)
        return SqlConversion(lambda c: c.between(-bound, bound), lambda c: cast(c, column_type))
    return None


def _text_from(source: FieldType, source_spec: FieldSpec, target: FieldType, spec: FieldSpec,
               dialect: str) -> SqlConversion | None:  # fmt: skip
    if type(target).parse not in (TextType.parse, LongTextType.parse):
        return None  # e-mail, phone, web address, tax id: checked in Python
    long = isinstance(target, LongTextType)
    limit = MAX_LONG_TEXT_LENGTH if long else int(spec.settings.get("max_length") or 255)
    column_type = target.column_type(spec)
    if _is_plain_text(source):
        # Nothing to strip at either end, and short enough: the text stays as it is.
        pattern = f"^{_EDGE_CHARACTER}(.*{_LAST_CHARACTER})?$"
        return SqlConversion(
            lambda c: and_(func.length(c) <= limit, _matches(c, pattern)), lambda c: cast(c, column_type)
        )
    if isinstance(source, IntegerType) or (isinstance(source, DecimalType) and dialect == "postgresql"):
        return SqlConversion(
            lambda c: func.length(cast(c, Text)) <= limit, lambda c: cast(cast(c, Text), column_type)
        )
    return None


def _part(column: ColumnElement, start: int, length: int) -> ColumnElement:
    return func.substr(column, start, length, type_=String())


def _date_from(source: FieldType, source_spec: FieldSpec, target: FieldType, spec: FieldSpec,
               dialect: str) -> SqlConversion | None:  # fmt: skip
    if not _is_plain_text(source):
        return None

    def iso(c: ColumnElement) -> ColumnElement:  # 31.12.2025 -> 2025-12-31
        russian = _part(c, 7, 4) + "-" + _part(c, 4, 2) + "-" + _part(c, 1, 2)
        return case((_matches(c, "^[0-9]{2}[.][0-9]{2}[.][0-9]{4}$"), russian), else_=c)

    def covers(c: ColumnElement) -> ColumnElement:
        shaped = or_(
            _matches(c, "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"), _matches(c, "^[0-9]{2}[.][0-9]{2}[.][0-9]{4}$")
        )
        text = iso(c)
        year, month, day = cast(_part(text, 1, 4), Integer), _part(text, 6, 2), _part(text, 9, 2)
        leap = and_(year % 4 == 0, or_(year % 100 != 0, year % 400 == 0))
        last = case(
            (month.in_(["04", "06", "09", "11"]), "30"),
            (month == "02", case((leap, "29"), else_="28")),
            else_="31",
        )
        # The shape first: the parts are read only from text of the shape (CASE keeps the order).
        return case(
            (shaped, and_(year >= 1, month.between("01", "12"), day >= "01", day <= last)), else_=False
        )

    if dialect == "postgresql":
        return SqlConversion(covers, lambda c: cast(iso(c), Date))
    return SqlConversion(covers, iso)  # SQLite keeps a date as its ISO text


SQL_RULES: dict[type[FieldType], SqlRule] = {
    IntegerType: _integer_from,
    DecimalType: _decimal_from,
    MoneyType: _decimal_from,
    PercentType: _decimal_from,
    TextType: _text_from,
    LongTextType: _text_from,
    DateType: _date_from,
}


def sql_conversion(
    source: FieldType, source_spec: FieldSpec, target: FieldType, spec: FieldSpec, dialect: str
) -> SqlConversion | None:
    """How the database converts (some of) a field's stored values from ``source`` to ``target``, as
    ``target.convert`` would; None when every value goes through Python."""
    if target.reference is not None:
        return None  # a link's value must exist: checked in Python
    rule = SQL_RULES.get(type(target))
    found = rule(source, source_spec, target, spec, dialect) if rule is not None else None
    if found is not None:
        return found
    column_type = target.column_type(spec)

    def convert(value: Any) -> Any:
        return target.convert(value, source, source_spec, spec)

    finite = _finite_values(source, source_spec)
    if finite is not None:
        return _lookup(finite, convert, column_type)
    keys = _text_keys(target, spec)
    if keys is not None and _is_plain_text(source):
        return _lookup(keys, convert, column_type)
    return None
