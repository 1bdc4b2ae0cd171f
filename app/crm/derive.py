"""The CRM's computed fields and cross-field rules, run by the write path inside each write's transaction
(the ``derive`` and ``after_write`` hooks of ``custom_fields.hooks``), so a form, the API, an import and a
job all get the same results:

- a contact's full name from its parts; consent dates when consent is given or withdrawn;
- a deal's pipeline from its stage, its probability from the stage unless set, ``closed_at`` when it
  reaches a won or lost stage, whether it is won, the furthest stage it has reached (what stage conversion
  counts), its amount from its lines when it has any, its weighted amount (amount × probability, what the
  forecast counts);
- a deal line's price from its product and its total; the deal's amount after any line changes;
- an activity's time (now) and company (from its contact, deal or converted lead) when left empty; a
  company's last activity (the newest of its live activities); a lead's first response (its first outbound
  activity) and the hours to it; when a complaint was resolved or rejected, and the days it took;
- a task's assignee (its creator) and ``completed_at``;
- an invoice's balance, status (paid, partly paid), the day it was paid and days overdue (also refreshed
  nightly);
- a lead's ``converted_at``;
- a sales plan's month (its first day) and name, one plan per salesperson, month and currency.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from flask_babel import gettext as _

from app.extensions import db
from custom_fields import hooks, records, runtime
from custom_fields.hooks import hookimpl
from custom_fields.query import TableQuery
from custom_fields.records import WriteContext as _Context
from custom_fields.types import local_timezone
from models.system import utcnow

Rows = list[dict[str, Any]]
Befores = list[dict[str, Any] | None]
Errors = dict[int, dict[str, str]]
HUNDRED = Decimal(100)
CENT = Decimal("0.01")
#: Invoice statuses that never count as overdue.
SETTLED = ("paid", "cancelled", "draft")
#: A complaint's resolutions that settle it (its time to resolve stops).
SETTLED_COMPLAINT = ("resolved", "rejected")
#: Units of ``elapsed``, in seconds.
HOUR, DAY = 3600, 86400


def cents(value: Decimal) -> Decimal:
    """Money to the cent, half up (as typed money is rounded, not the banker's half to even)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _changed(row: dict[str, Any], before: dict[str, Any] | None, name: str) -> bool:
    return before is None or row.get(name) != before.get(name)


def _system(slug: str) -> TableQuery:
    return TableQuery.system(slug, "values derived from related records")


def _by_id(slug: str, ids: Iterable[Any], *columns: str) -> dict[int, dict[str, Any]]:
    """Live rows of ``slug`` among ``ids`` (the write path's system read), with ``columns``."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return _system(slug).fields(*columns).rows_of(wanted)


def _percent_errors(rows: Rows, name: str) -> Errors:
    errors: Errors = {}
    for i, row in enumerate(rows):
        value = row.get(name)
        if value is not None and not 0 <= value <= HUNDRED:
            errors[i] = {name: _("Must be between 0 and 100.")}
    return errors


def today() -> dt.date:
    return dt.datetime.now(local_timezone()).date()


# --- contacts, leads -------------------------------------------------------------------------------------


def contacts(ctx: _Context, rows: Rows, befores: Befores) -> Errors:
    now = utcnow()
    for row, before in zip(rows, befores, strict=True):
        parts = (row.get("first_name"), row.get("middle_name"), row.get("last_name"))
        row["full_name"] = " ".join(p.strip() for p in parts if p and p.strip()) or None
        for channel in ("email", "sms"):
            if _changed(row, before, f"{channel}_consent") and row.get(f"{channel}_consent") is not None:
                if before is None or row.get(f"{channel}_consent_at") == before.get(f"{channel}_consent_at"):
                    row[f"{channel}_consent_at"] = now
    return {}


def leads(ctx: _Context, rows: Rows, befores: Befores) -> Errors:
    for row, before in zip(rows, befores, strict=True):
        if row.get("status") == "converted" and _changed(row, before, "status"):
            row["converted_at"] = utcnow()
        elif row.get("status") != "converted":
            row["converted_at"] = None
    return {}


# --- pipelines, stages, deals, lines ---------------------------------------------------------------------


def stages(ctx: _Context, rows: Rows, befores: Befores) -> Errors:
    errors = _percent_errors(rows, "probability")
    for i, row in enumerate(rows):
        if row.get("is_won") and row.get("is_lost"):
            errors.setdefault(i, {})["is_lost"] = _("A stage cannot be both won and lost.")
    return errors


def after_stages(ctx: _Context, touched: Rows) -> None:
    """An admin who marks a stage won or lost (or no longer) changes the deals at it: whether they are won
    and closed follows (their furthest stage and everything else the deals' own rule keeps), as one change
    set with the stage's edit."""
    stage_ids = sorted({r["id"] for r in touched if r.get("id") is not None})
    if not stage_ids:
        return
    changes: dict[int, dict[str, Any]] = {}
    for stage_id, stage in _by_id("stages", stage_ids, "is_won", "is_lost").items():
        won, closed = bool(stage["is_won"]), bool(stage["is_won"] or stage["is_lost"])
        # Only the deals that no longer agree with their stage, found by the database: most stage edits
        # (a new name, an order) touch none.
        astray = _system("deals").where(
            {
                "and": [
                    {"field": "stage_id", "op": "eq", "value": stage_id},
                    {
                        "or": [
                            {"field": "won", "op": "eq", "value": "false" if won else "true"},
                            {"field": "won", "op": "empty"},
                            {"field": "closed_at", "op": "empty" if closed else "nempty"},
                        ]
                    },
                ]
            }
        )
        for batch in astray.fields("stage_id").batches(1000):
            changes.update((deal["id"], {"won": won}) for deal in batch)
    if changes:
        records.cascade_update("deals", changes, ctx)


def line_totals(deal_ids: Iterable[int]) -> dict[int, Decimal]:
    """The sum of each deal's live lines (deals without lines are left out)."""
    wanted = {i for i in deal_ids if i is not None}
    if not wanted:
        return {}
    lines = _system("deal_lines").match_any([("deal_id", lambda column: column.in_(sorted(wanted)))])
    sums = lines.aggregate(["deal_id"], {"total": ("sum", "total")})
    return {row["deal_id"]: cents(Decimal(row["total"] or 0)) for row in sums}


def deals(ctx: _Context, rows: Rows, befores: Befores) -> Errors:
    errors = _percent_errors(rows, "probability")
    found = _by_id(
        "stages",
        [r.get(k) for r in rows for k in ("stage_id", "reached_stage_id")],
        "pipeline_id", "probability", "is_won", "is_lost", "position",
    )  # fmt: skip
    sums = line_totals(r["id"] for r in rows if r.get("id") is not None)
    now = utcnow()
    for i, (row, before) in enumerate(zip(rows, befores, strict=True)):
        stage = found.get(row.get("stage_id"))
        if stage is None:
            continue  # the write path names the missing stage
        row["pipeline_id"] = stage["pipeline_id"]
        row["won"] = bool(stage["is_won"])
        row["reached_stage_id"] = furthest(row["stage_id"], stage, row.get("reached_stage_id"), found)
        if _changed(row, before, "stage_id") and (
            row.get("probability") is None or not _changed(row, before, "probability")
        ):
            row["probability"] = stage["probability"]
        if stage["is_won"] or stage["is_lost"]:
            row["closed_at"] = row.get("closed_at") or now
        else:
            row["closed_at"] = None
        if row.get("id") in sums:
            total = sums[row["id"]]
            if _changed(row, before, "amount") and row.get("amount") not in (None, total):
                errors.setdefault(i, {})["amount"] = _(
                    "The amount is the sum of the deal's lines (%(total)s); change the lines instead.",
                    total=total,
                )
            row["amount"] = total
        row["weighted_amount"] = weighted(row.get("amount"), row.get("probability"))
    return errors


def stage_rank(stage: dict[str, Any]) -> tuple[bool, int]:
    """Where a stage stands in its pipeline: by its order, a won stage past every open one."""
    return bool(stage["is_won"]), stage["position"] or 0


def furthest(stage_id: int, stage: dict[str, Any], reached_id: Any, stages: dict[int, dict[str, Any]]) -> Any:
    """The furthest stage a deal at ``stage_id`` has reached, given the one it had reached before: a move
    back keeps the furthest, a lost stage is no progress (the deal keeps the stage it was lost after), and
    a move to another pipeline starts over."""
    reached = stages.get(reached_id)
    if reached is not None and reached["pipeline_id"] != stage["pipeline_id"]:
        reached, reached_id = None, None
    if stage["is_lost"]:
        return reached_id
    if reached is None or stage_rank(stage) > stage_rank(reached):
        return stage_id
    return reached_id


def weighted(amount: Decimal | None, probability: Decimal | None) -> Decimal | None:
    """What a deal brings in the forecast: its amount times its probability (unknown if either is)."""
    if amount is None or probability is None:
        return None
    return cents(amount * probability / HUNDRED)


def deal_lines(ctx: _Context, rows: Rows, befores: Befores) -> Errors:
    errors = _percent_errors(rows, "discount")
    prices = _by_id("products", (r.get("product_id") for r in rows if r.get("price") is None), "price")
    for i, row in enumerate(rows):
        if row.get("price") is None and row.get("product_id") in prices:
            row["price"] = prices[row["product_id"]]["price"]
        quantity = row.get("quantity")
        if quantity is not None and quantity <= 0:
            errors.setdefault(i, {})["quantity"] = _("Must be more than zero.")
            continue
        price, discount = row.get("price"), row.get("discount") or Decimal(0)
        if quantity is None or price is None:
            row["total"] = None
        else:
            row["total"] = cents(quantity * price * (HUNDRED - discount) / HUNDRED)
    return errors


def after_deal_lines(ctx: _Context, touched: Rows) -> None:
    """Every deal whose lines changed gets the sum of its live lines as its amount."""
    deal_ids = {r.get("deal_id") for r in touched} - {None}
    sums = line_totals(deal_ids)
    stored = _by_id("deals", deal_ids, "amount")  # live deals only
    changes = {
        deal_id: {"amount": total}
        for deal_id, total in sums.items()
        if deal_id in stored and stored[deal_id]["amount"] != total
    }
    if changes:
        records.cascade_update("deals", changes, ctx)


# --- activities, tasks ---------------------------------------------------------------------------------


def after_activities(ctx: _Context, touched: Rows) -> None:
    """The companies of the touched activities (before and after a move, a deletion or a restore) get the
    time of their newest live activity as their last activity. Stored as a value that follows from other
    records: no history line or new version of the company, so logging a call never collides with someone
    editing the company."""
    _first_responses({r.get("lead_id") for r in touched} - {None})
    company_ids = {r.get("company_id") for r in touched} - {None}
    if not company_ids:
        return
    theirs = _system("activities").match_any([("company_id", lambda column: column.in_(sorted(company_ids)))])
    newest = {
        r["company_id"]: r["last"] for r in theirs.aggregate(["company_id"], {"last": ("max", "occurred_at")})
    }
    stored = _by_id("companies", company_ids, "last_activity_at")
    changes = {
        company_id: {"last_activity_at": newest.get(company_id)}
        for company_id, row in stored.items()
        if not _same_instant(row["last_activity_at"], newest.get(company_id))
    }
    records.store_calendar_values("companies", changes, "a company's last activity follows its activities")


def _first_responses(lead_ids: set[int]) -> None:
    """Each lead's first response: its first live outbound call, letter, meeting or SMS (a failed attempt is
    a response too), and the hours from the lead's arrival to it (none before it arrived). Stored as values
    that follow from other records, as a company's last activity."""
    if not lead_ids:
        return
    responses = _system("activities").where(
        {
            "and": [
                {"field": "direction", "op": "eq", "value": "outbound"},
                {"field": "kind", "op": "neq", "value": "note"},
                {"field": "kind", "op": "neq", "value": "complaint"},
            ]
        }
    )
    theirs = responses.match_any([("lead_id", lambda column: column.in_(sorted(lead_ids)))])
    first = {
        r["lead_id"]: r["first"] for r in theirs.aggregate(["lead_id"], {"first": ("min", "occurred_at")})
    }
    stored = _by_id("leads", lead_ids, "created_at", "first_response_at", "response_hours")
    changes = {}
    for lead_id, lead in stored.items():
        at = first.get(lead_id)
        hours = elapsed(lead["created_at"], at, HOUR)
        if not _same_instant(lead["first_response_at"], at) or lead["response_hours"] != hours:
            changes[lead_id] = {"first_response_at": at, "response_hours": hours}
    records.store_calendar_values("leads", changes, "a lead's first response follows its activities")


def elapsed(start: dt.datetime | None, end: dt.datetime | None, unit: int) -> Decimal | None:
    """The time from ``start`` to ``end`` in ``unit`` seconds (HOUR, DAY) to a tenth, half up; 0 for an end
    logged before the start; unknown if either is."""
    if start is None or end is None:
        return None
    seconds = (_aware(end) - _aware(start)).total_seconds()
    return (Decimal(max(seconds, 0)) / unit).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _same_instant(a: dt.datetime | None, b: dt.datetime | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.replace(tzinfo=a.tzinfo or dt.UTC) == b.replace(tzinfo=b.tzinfo or dt.UTC)


def activities(ctx: _Context, rows: Rows, befores: Befores) -> Errors:
    contacts_found = _by_id("contacts", (r.get("contact_id") for r in rows), "company_id")
    deals_found = _by_id("deals", (r.get("deal_id") for r in rows), "company_id")
    leads_found = _by_id("leads", (r.get("lead_id") for r in rows), "company_id")
    for row, before in zip(rows, befores, strict=True):
        if before is None and row.get("occurred_at") is None:
            row["occurred_at"] = utcnow()
        if row.get("company_id") is None:
            source = (
                contacts_found.get(row.get("contact_id"))
                or deals_found.get(row.get("deal_id"))
                or leads_found.get(row.get("lead_id"))
            )
            row["company_id"] = source["company_id"] if source is not None else None
        if row.get("kind") == "complaint" and row.get("resolution") is None:
            row["resolution"] = "open"
        if row.get("kind") == "complaint" and row.get("resolution") in SETTLED_COMPLAINT:
            if before is None or before.get("resolution") not in SETTLED_COMPLAINT:
                row["resolved_at"] = utcnow()
            else:
                row["resolved_at"] = before.get("resolved_at") or utcnow()
        else:
            row["resolved_at"] = None
        row["resolution_days"] = elapsed(row.get("occurred_at"), row["resolved_at"], DAY)
    return {}


def tasks(ctx: _Context, rows: Rows, befores: Befores) -> Errors:
    for row, before in zip(rows, befores, strict=True):
        if before is None and row.get("assignee_id") is None:
            row["assignee_id"] = ctx.actor.user_id
        if row.get("status") == "done":
            row["completed_at"] = row.get("completed_at") or utcnow()
        else:
            row["completed_at"] = None
    return {}


# --- invoices --------------------------------------------------------------------------------------------


def overdue_days(due_on: dt.date | None, status: str | None, balance: Decimal | None, on: dt.date) -> int:
    """Whole days past the due date of an unpaid, issued invoice (0 when it is not overdue)."""
    if due_on is None or status in SETTLED or not balance or balance <= 0 or due_on >= on:
        return 0
    return (on - due_on).days


def invoices(ctx: _Context, rows: Rows, befores: Befores) -> Errors:
    errors: Errors = {}
    on = today()
    for i, row in enumerate(rows):
        amount, paid = row.get("amount"), row.get("paid_amount") or Decimal(0)
        if paid < 0:
            errors.setdefault(i, {})["paid_amount"] = _("Cannot be negative.")
        if amount is None:
            continue
        status = row.get("status")
        if status not in ("cancelled", "draft"):
            if paid >= amount > 0:
                status = "paid"
            elif 0 < paid < amount:
                status = "partly_paid"
            elif status in ("paid", "partly_paid"):
                status = "issued"
        row["status"] = status
        row["paid_on"] = (row.get("paid_on") or on) if status == "paid" else None
        row["balance"] = cents(amount - paid)
        row["overdue_days"] = overdue_days(row.get("due_on"), status, row["balance"], on)
    return errors


def refresh_overdue(on: dt.date | None = None) -> int:
    """Recount every invoice's days overdue for ``on`` (today): a derived value that changes with the
    calendar, not with an edit, so it is written without a history line or a new version."""
    on = on or today()
    invoices = _system("invoices").fields("due_on", "status", "balance", "overdue_days")
    changed = 0
    for batch in invoices.batches(5000):
        changes = {
            row["id"]: {"overdue_days": days}
            for row in batch
            if (days := overdue_days(row["due_on"], row["status"], row["balance"], on))
            != (row["overdue_days"] or 0)
        }
        changed += records.store_calendar_values("invoices", changes, "days overdue change with the calendar")
    db.session.commit()
    return changed


# --- sales plans -----------------------------------------------------------------------------------------


def sales_plans(ctx: _Context, rows: Rows, befores: Befores) -> Errors:
    """A plan is for a whole month (its first day is kept) and is named by who and when; one plan per
    salesperson, month and currency (a second would count the month twice)."""
    errors: Errors = {}
    keys: dict[tuple[Any, ...], int] = {}
    for i, row in enumerate(rows):
        month, who = row.get("month"), row.get("manager_id")
        if month is not None:
            row["month"] = month = month.replace(day=1)
        parts = (runtime.user_label(who) if who else "", month.strftime("%m.%Y") if month else "")
        row["name"] = " · ".join(p for p in parts if p) or None
        if month is None or who is None:
            continue  # the write path names the missing value
        key = (who, month, row.get("currency"))
        if key in keys:
            errors.setdefault(i, {})["month"] = _duplicate_plan()
        keys.setdefault(key, i)
    if keys:
        months = sorted({key[1] for key in keys})
        stored = _system("sales_plans").fields("manager_id", "month", "currency")
        for plan in stored.match_any([("month", lambda column: column.in_(months))]).stream():
            i = keys.get((plan["manager_id"], plan["month"], plan["currency"]))
            if i is not None and rows[i].get("id") != plan["id"]:
                errors.setdefault(i, {})["month"] = _duplicate_plan()
    return errors


def _duplicate_plan() -> str:
    return _("This salesperson already has a plan for this month in this currency.")


DERIVERS: dict[str, Any] = {
    "contacts": contacts, "leads": leads, "stages": stages, "deals": deals, "deal_lines": deal_lines,
    "activities": activities, "tasks": tasks, "invoices": invoices, "sales_plans": sales_plans,
}  # fmt: skip


@hookimpl
def derive(ctx: _Context, rows: Rows, befores: Befores) -> Errors | None:
    rule = DERIVERS.get(ctx.entity.slug)
    return rule(ctx, rows, befores) if rule is not None else None


@hookimpl
def after_write(ctx: _Context, touched: Rows) -> None:
    if ctx.entity.slug == "deal_lines":
        after_deal_lines(ctx, touched)
    elif ctx.entity.slug == "activities":
        after_activities(ctx, touched)
    elif ctx.entity.slug == "stages":
        after_stages(ctx, touched)


@hookimpl
def derived_tables() -> tuple[str, ...]:
    return tuple(DERIVERS)


def register() -> None:
    hooks.register(sys.modules[__name__])
