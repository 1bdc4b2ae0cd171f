"""Plan vs fact: each salesperson's sales plans for a period against what they did in it.

For every salesperson and currency: the planned amount and number of won deals (``sales_plans``), the
deals they won in the period (closed at a won stage: amount and number), the invoices paid in full in the
period (``paid_on``: their amount), and the share of the plan fulfilled. Three ``GROUP BY``s through the
query layer as the user who asks, so a staff user sees their own plan and sales, a manager their team's;
every figure names the grid filter of exactly the records behind it. Money is never added across
currencies: a salesperson with plans or sales in two currencies has a row for each.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from flask_babel import gettext as _

from custom_fields import buckets, runtime
from custom_fields.access import Actor
from custom_fields.query import TableQuery
from custom_fields.types import REGISTRY
from exports import report_workbook
from exports.reports import Period, ReportError, all_of

#: The periods offered (this month, quarter or year).
PERIOD_KINDS = ("month", "quarter", "year")
FIGURES = ("plan_amount", "plan_count", "won_amount", "won_count", "paid_amount")
#: Deals at a won stage (a flag the write path keeps from the stage).
WON = {"field": "won", "op": "eq", "value": "true"}
MONEY_FORMAT = {"num_format": "#,##0.00"}
COUNT_FORMAT = {"num_format": "#,##0"}


@dataclasses.dataclass
class Line:
    """One salesperson in one currency: figures and, for each, the grid filter of its records."""

    manager_id: int | None
    currency: str | None
    figures: dict[str, Any]
    filters: dict[str, tuple[str, Any]]  # figure -> (table, filter)

    @property
    def fulfilled(self) -> Decimal | None:
        """The won amount as a percentage of the planned one (None without a plan)."""
        plan, won = self.figures.get("plan_amount"), self.figures.get("won_amount") or 0
        if not plan:
            return None
        return (Decimal(str(won)) * 100 / Decimal(str(plan))).quantize(Decimal("0.1"))


@dataclasses.dataclass
class PlanFact:
    first: dt.date
    after: dt.date  # the day after the period
    lines: list[Line]


def bounds(kind: Any, today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    if kind not in PERIOD_KINDS:
        raise ReportError(_("Choose a period from the list."))
    first, after = Period("month", kind).bounds(today or buckets.today())
    return first, after  # type: ignore[return-value]  (a month, quarter or year is never open)


def run(actor: Actor, kind: Any = "month", today: dt.date | None = None) -> PlanFact:
    """Plan vs fact for the month, quarter or year of ``today``, as ``actor`` may see it; raises
    ``QueryError`` for a table or field they may not read."""
    first, after = bounds(kind, today)
    between = _between(first, after)
    lines: dict[tuple[Any, Any], Line] = {}

    def line(manager_id: Any, currency: Any) -> Line:
        return lines.setdefault((manager_id, currency), Line(manager_id, currency, {}, {}))

    plans = TableQuery("sales_plans", actor).where(all_of(*between("month")))
    for row in plans.aggregate(
        ["manager_id", "currency"], {"amount": ("sum", "amount"), "count": ("sum", "deals_count")}
    ):
        found = line(row["manager_id"], row["currency"])
        found.figures.update(plan_amount=row["amount"], plan_count=row["count"])
    won = TableQuery("deals", actor).where(all_of(WON, *between("closed_at")))
    measures = {"amount": ("sum", "amount"), "n": ("count", None)}
    for row in won.aggregate(["owner_id", "currency"], measures):
        found = line(row["owner_id"], row["currency"])
        found.figures.update(won_amount=row["amount"], won_count=row["n"])
    paid = TableQuery("invoices", actor).where(all_of(*between("paid_on")))
    for row in paid.aggregate(["owner_id", "currency"], {"amount": ("sum", "amount")}):
        line(row["owner_id"], row["currency"]).figures["paid_amount"] = row["amount"]
    for (manager_id, currency), found in lines.items():
        who = {"field": "manager_id", "op": "eq", "value": manager_id}
        owner = {"field": "owner_id", "op": "eq", "value": manager_id}
        money = {"field": "currency", "op": "eq", "value": currency}
        if manager_id is None:
            who, owner = {"field": "manager_id", "op": "empty"}, {"field": "owner_id", "op": "empty"}
        if currency is None:
            money = {"field": "currency", "op": "empty"}
        plan_filter = ("sales_plans", all_of(who, money, *between("month")))
        won_filter = ("deals", all_of(owner, money, WON, *between("closed_at")))
        found.filters = {
            "plan_amount": plan_filter,
            "plan_count": plan_filter,
            "won_amount": won_filter,
            "won_count": won_filter,
            "paid_amount": ("invoices", all_of(owner, money, *between("paid_on"))),
        }
    ordered = sorted(
        lines.values(),
        key=lambda x: (x.manager_id is None, _label(x.manager_id).lower(), x.currency or ""),
    )
    return PlanFact(first, after, ordered)


def _between(first: dt.date, after: dt.date) -> Any:
    def conditions(field: str) -> list[dict[str, Any]]:
        return [
            {"field": field, "op": "ge", "value": first.isoformat()},
            {"field": field, "op": "lt", "value": after.isoformat()},
        ]

    return conditions


def _label(user_id: int | None) -> str:
    return runtime.user_label(user_id) if user_id else ""


def manager_label(user_id: int | None) -> str:
    return _label(user_id) or _("(empty)")


def won_deals(kind: Any, today: dt.date | None = None) -> dict[str, Any]:
    """The grid filter of the deals won in the period: the records behind plan vs fact's workbook."""
    first, after = bounds(kind, today)
    return all_of(WON, *_between(first, after)("closed_at"))


def workbook_summary(found: PlanFact, title: str) -> Callable[[Any], None]:
    """Plan vs fact as a workbook's summary sheet: a row per salesperson and currency, with a native chart
    of planned against won."""
    currency = runtime.current().entity("sales_plans").field_by_name("currency")
    headers = [_("Salesperson"), _("Currency"), _("Planned"), _("Won deals, amount"), _("Fulfilled, %"),
               _("Paid"), _("Planned deals"), _("Won deals")]  # fmt: skip
    formats = [None, None, MONEY_FORMAT, MONEY_FORMAT, {"num_format": "0.0"}, MONEY_FORMAT, COUNT_FORMAT,
               COUNT_FORMAT]  # fmt: skip
    rows = [
        [
            manager_label(line.manager_id),
            REGISTRY[currency.type].display(line.currency, currency) if currency and line.currency else "",
            line.figures.get("plan_amount"),
            line.figures.get("won_amount"),
            line.fulfilled,
            line.figures.get("paid_amount"),
            line.figures.get("plan_count"),
            line.figures.get("won_count"),
        ]
        for line in found.lines
    ]
    last = found.after - dt.timedelta(days=1)
    dates = f"{found.first.strftime('%d.%m.%Y')} – {last.strftime('%d.%m.%Y')}"
    return report_workbook.figures_sheet(title, dates, headers, rows, formats, [2, 3])
