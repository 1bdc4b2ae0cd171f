"""Calendar buckets for grouping dates in reports: day, week (from Monday), month, quarter, year; and days
overdue relative to today (current, 1–30, 31–60, 61–90, over 90: receivables aging).

``truncate`` is the SQL (PostgreSQL's ``date_trunc``; SQLite's date modifiers) that maps a date to the first
day of its bucket, run in the database by ``GROUP BY``; ``start``/``following`` do the same in Python, for
labels and for the date range a figure clicks through to. Date-times are bucketed in ``TABULA_TIMEZONE``
(the field types decide that; this module only truncates a date).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask_babel import format_date
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import Date, Integer, case, cast, func
from sqlalchemy.sql.elements import ColumnElement

UNITS = ("day", "week", "month", "quarter", "year")
#: Days overdue relative to today (receivables aging): a bucket is its first day count, 0 = not yet due.
OVERDUE = "overdue"
AGING = (0, 1, 31, 61, 91)
UNIT_LABELS = {
    "day": _l("day"),
    "week": _l("week"),
    "month": _l("month"),
    "quarter": _l("quarter"),
    "year": _l("year"),
    OVERDUE: _l("days overdue"),
}


def truncate(expression: Any, unit: str, dialect: str) -> ColumnElement:
    """The first day of ``expression``'s bucket (a date on PostgreSQL, ``YYYY-MM-DD`` text on SQLite)."""
    if unit not in UNITS:
        raise ValueError(unit)
    if dialect == "postgresql":
        return cast(func.date_trunc(unit, expression), Date)
    modifiers = {
        "day": (),
        "week": ("weekday 0", "-6 days"),  # the next Sunday (or that very day), back to its Monday
        "month": ("start of month",),
        "year": ("start of year",),
    }
    if unit == "quarter":  # back to the quarter's first month: (month - 1) % 3 months
        back = func.printf("-%d months", (cast(func.strftime("%m", expression), Integer) - 1) % 3)
        return func.date(expression, "start of month", back)
    return func.date(expression, *modifiers[unit])


def start(value: dt.date, unit: str) -> dt.date:
    """The first day of ``value``'s bucket."""
    if unit == "week":
        return value - dt.timedelta(days=value.weekday())
    if unit == "month":
        return value.replace(day=1)
    if unit == "quarter":
        return value.replace(month=(value.month - 1) // 3 * 3 + 1, day=1)
    if unit == "year":
        return value.replace(month=1, day=1)
    return value


def following(first: dt.date, unit: str) -> dt.date:
    """The first day of the bucket after the one starting on ``first``."""
    if unit == "day":
        return first + dt.timedelta(days=1)
    if unit == "week":
        return first + dt.timedelta(days=7)
    months = {"month": 1, "quarter": 3, "year": 12}[unit]
    index = first.year * 12 + first.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def as_date(raw: Any) -> dt.date | None:
    """A bucket as the database gave it (a date, a date-time, or text on SQLite) -> a date."""
    if raw is None or isinstance(raw, dt.date) and not isinstance(raw, dt.datetime):
        return raw
    if isinstance(raw, dt.datetime):
        return raw.date()
    return dt.date.fromisoformat(str(raw)[:10])


def label(first: dt.date, unit: str) -> str:
    """How a bucket reads in the current language: ``01.12.2026``, ``week of 30.11.2026``, ``December
    2026``, ``Q4 2026``, ``2026``."""
    if unit == "day":
        return format_date(first, "dd.MM.yyyy")
    if unit == "week":
        return _("week of %(date)s", date=format_date(first, "dd.MM.yyyy"))
    if unit == "month":
        text = format_date(first, "LLLL yyyy")  # a heading: "Ноябрь 2026", not "ноябрь 2026"
        return text[:1].upper() + text[1:]
    if unit == "quarter":
        return _("Q%(quarter)d %(year)d", quarter=(first.month - 1) // 3 + 1, year=first.year)
    return str(first.year)


def today() -> dt.date:
    """Today in ``TABULA_TIMEZONE`` (the calendar reports and periods count by)."""
    from zoneinfo import ZoneInfo

    from flask import current_app

    return dt.datetime.now(ZoneInfo(current_app.config["BABEL_DEFAULT_TIMEZONE"])).date()


def aging(expression: Any, today_: dt.date) -> ColumnElement:
    """The aging bucket of a due date as of ``today_``: 0 (not overdue), 1, 31, 61 or 91 (days overdue at
    least); empty for an empty date."""
    return case(
        (expression.is_(None), None),
        (expression >= today_, 0),
        *[(expression >= today_ - dt.timedelta(days=high), low) for low, high in _aging_ranges()],
        else_=AGING[-1],
    )


def _aging_ranges() -> list[tuple[int, int]]:
    """(first, last) days overdue of each bucket between "not overdue" and the open last one."""
    return [(low, AGING[i + 2] - 1) for i, low in enumerate(AGING[1:-1])]


def read(raw: Any, unit: str) -> Any:
    """A bucket as the database gave it -> its key (a date; days overdue as a whole number)."""
    if unit == OVERDUE:
        return None if raw is None else int(raw)
    return as_date(raw)


def date_range(key: Any, unit: str, today_: dt.date | None = None) -> tuple[dt.date | None, dt.date | None]:
    """The dates of a bucket: its first day and the day after its last (either open)."""
    if unit == OVERDUE:
        today_ = today_ or today()
        low = int(key)
        if low == 0:
            return today_, None
        following_low = next((b for b in AGING if b > low), None)
        first = today_ - dt.timedelta(days=following_low - 1) if following_low else None
        return first, today_ - dt.timedelta(days=low - 1)
    first = key if isinstance(key, dt.date) else dt.date.fromisoformat(str(key))
    return first, following(first, unit)


def bucket_label(key: Any, unit: str) -> str:
    """How any bucket reads: a calendar one (``label``) or an aging one ("1–30 days overdue")."""
    if unit != OVERDUE:
        return label(as_date(key), unit)
    low = int(key)
    if low == 0:
        return _("not overdue")
    following_low = next((b for b in AGING if b > low), None)
    if following_low is None:
        return _("over %(days)d days overdue", days=low - 1)
    return _("%(first)d–%(last)d days overdue", first=low, last=following_low - 1)
