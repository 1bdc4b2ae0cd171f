"""How dates, times and numbers read, in one place, per the user's language (Babel through Flask-Babel).

Every screen formats through these: the field types' display, templates (the ``datetime_text``,
``date_text`` and ``number_text`` filters), panels and totals. Outside a request (jobs) the default
language applies; times are shown in the configured time zone.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from babel import numbers
from flask_babel import format_date, format_datetime, get_locale

#: One pattern per language (CLDR syntax). Day-first with a four-digit year in both: the field values
#: have always read so, and it cannot be misread in either language.
DATETIME_PATTERNS = {"ru": "dd.MM.yyyy HH:mm", "en": "dd.MM.yyyy HH:mm"}
DATE_PATTERNS = {"ru": "dd.MM.yyyy", "en": "dd.MM.yyyy"}


def _language() -> str:
    locale = get_locale()
    return locale.language if locale is not None else "en"


def datetime_text(value: dt.datetime | None) -> str:
    """A moment as users read it, in the configured time zone."""
    if value is None:
        return ""
    aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    pattern = DATETIME_PATTERNS.get(_language(), DATETIME_PATTERNS["en"])
    return format_datetime(aware, pattern)


def date_text(value: dt.date | None) -> str:
    if value is None:
        return ""
    return format_date(value, DATE_PATTERNS.get(_language(), DATE_PATTERNS["en"]))


def number_text(value: Any, scale: int = 2) -> str:
    """A number with the language's grouping and decimal mark: 2 747 000,00 (ru), 2,747,000.00 (en)."""
    if value is None or value == "":
        return ""
    pattern = "#,##0" + ("." + "0" * scale if scale > 0 else "")
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    try:  # half up, as the registry stores numbers (Babel alone would round 2.345 half to even: 2.34)
        number = number.quantize(Decimal(1).scaleb(-max(scale, 0)), rounding=ROUND_HALF_UP)
    except InvalidOperation:  # more digits than the context holds, or not finite: Babel shows it as is
        pass
    # Outside a request or app context (a script, a unit of the registry) English applies.
    return numbers.format_decimal(number, format=pattern, locale=get_locale() or "en")
