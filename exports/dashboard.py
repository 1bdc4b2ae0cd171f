"""The dashboard: the home page's cards, each a report (a standard one or a saved one) drawn as the user may
see it, narrowed by the page's period and manager.

A card is named by a reference: ``std:<key>`` for a standard report, ``saved:<id>`` for a saved one. A user
who never changed their dashboard sees the standard cards offered to them; pinning, unpinning and moving
store their own list (``DashboardLayout``), changed under a row lock so two tabs never drop each other's
pin. Every figure runs through the report engine and the query layer with the user's rights, and the
period and manager become part of the report's filter, so a figure's click-through shows exactly its
records.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from custom_fields import runtime
from custom_fields.access import Actor, grants, is_admin
from custom_fields.query import QueryDenied, QueryError, TableQuery
from exports import plan_fact, reports, saved_reports, standard_reports
from exports.reports import Definition, Period, ReportError, ReportSpec
from models import DashboardLayout

MAX_CARDS = 24
#: The plan-vs-fact card (``exports.plan_fact``: not a report definition of the builder).
PLAN_FACT = "plan_fact"
#: What a user finds on a dashboard they never changed (those of the tables they may read).
DEFAULT_CARDS = (
    PLAN_FACT,
    "std:funnel",
    "std:forecast",
    "std:receivables_managers",
    "std:activity",
    "std:complaints",
    "std:open_tasks",
    "std:overdue_tasks",
)
#: The page's period choices; "" keeps each report's own period.
PERIODS = {
    "": _l("Each report's own period"),
    "month": _l("This month"),
    "quarter": _l("This quarter"),
    "year": _l("This year"),
    "last_days": _l("The last 30 days"),
}
LAST_DAYS = 30


class CardNotFound(ReportError):  # noqa: N818 (a refusal, as QueryDenied)
    status = 404


@dataclasses.dataclass(frozen=True)
class Card:
    """A report as a dashboard card: its reference, name, definition, and what the page's period and
    manager narrow (None where they do not apply)."""

    ref: str
    name: str
    description: str
    definition: Definition | None  # None for plan vs fact
    period_field: str | None
    manager_field: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "name": self.name,
            "description": self.description,
            "chart": (self.definition.chart if self.definition else None) or "bar",
            "byPeriod": self.period_field is not None,
        }


def offered(actor: Actor) -> list[Card]:
    """Every card ``actor`` may pin: the standard reports of tables they read, then their saved reports and
    those shared with them."""
    found = [_plan_fact_card()] if _reads_plans(actor) else []
    found += [_standard_card(s) for s in standard_reports.offered(actor)]
    found += [_saved_card(r) for r in saved_reports.listed(actor)]
    return found


def _reads_plans(actor: Actor) -> bool:
    schema = runtime.current()
    entity = schema.entity("sales_plans")
    return entity is not None and not entity.archived and grants(actor, entity, schema.access).can("read")


def _plan_fact_card() -> Card:
    description = _("Planned against won amount per salesperson, by currency.")
    return Card(PLAN_FACT, _("Plan vs fact"), description, None, "month", "manager_id")


def _standard_card(standard: standard_reports.Standard) -> Card:
    definition = Definition.from_json(standard_reports.as_json(standard)["definition"])
    return Card(
        f"std:{standard.key}",
        str(standard.name),
        str(standard.description),
        definition,
        standard.period_field,
        standard.manager_field,
    )


def _saved_card(report: Any) -> Card:
    definition = saved_reports.definition(report)
    period = definition.period.field if definition.period and definition.period.kind in PERIODS else None
    return Card(f"saved:{report.id}", report.name, "", definition, period, "owner_id")


def card(ref: Any, actor: Actor) -> Card:
    """The card ``actor`` may open under ``ref``; any other is not found."""
    if ref == PLAN_FACT and _reads_plans(actor):
        return _plan_fact_card()
    if isinstance(ref, str):
        kind, _sep, key = ref.partition(":")
        if kind == "std" and key in standard_reports.BY_KEY:
            standard = standard_reports.BY_KEY[key]
            if standard in standard_reports.offered(actor):
                return _standard_card(standard)
        elif kind == "saved" and key.isdecimal():
            try:
                return _saved_card(saved_reports.get(key, actor))
            except QueryError:
                pass
    raise CardNotFound(_("This card is not on offer to you."))


def pinned(actor: Actor) -> list[Card]:
    """``actor``'s cards in their order; a pinned report they may no longer open is left out."""
    by_ref = {c.ref: c for c in offered(actor)}
    return [by_ref[ref] for ref in _stored(actor) if ref in by_ref]


def _stored(actor: Actor) -> list[str]:
    layout = db.session.get(DashboardLayout, actor.user_id) if actor.user_id is not None else None
    return _refs(layout)


def _refs(layout: DashboardLayout | None) -> list[str]:
    """The cards of a stored layout (the standard ones if none), with the standard cards added since the
    user last changed it at the end: a user who unpinned one keeps it unpinned, and nobody misses a new
    one."""
    if layout is None:
        return list(DEFAULT_CARDS)
    refs = [ref for ref in layout.cards if isinstance(ref, str)]
    known = set(layout.known or ())
    return (
        refs + [ref for ref in DEFAULT_CARDS if ref not in known and ref not in refs][: MAX_CARDS - len(refs)]
    )


def pin(actor: Actor, ref: Any) -> list[Card]:
    found = card(ref, actor)

    def change(refs: list[str]) -> list[str]:
        if found.ref in refs:
            return refs
        if len(refs) >= MAX_CARDS:
            raise ReportError(_("A dashboard holds at most %(n)d cards; unpin one first.", n=MAX_CARDS))
        return [*refs, found.ref]

    return _change(actor, change)


def unpin(actor: Actor, ref: Any) -> list[Card]:
    return _change(actor, lambda refs: [r for r in refs if r != ref])


def move(actor: Actor, ref: Any, offset: Any) -> list[Card]:
    """Move a card ``offset`` places (−1 earlier, +1 later) among the ones ``actor`` sees."""
    if type(offset) is not int or offset not in (-1, 1):  # not True, not 1.0
        raise ReportError(_("A card moves one place earlier or later."))
    visible = {c.ref for c in offered(actor)}

    def change(refs: list[str]) -> list[str]:
        shown = [r for r in refs if r in visible]
        if ref not in shown:
            raise CardNotFound(_("This card is not on your dashboard."))
        at = shown.index(ref)
        other = at + offset
        if not 0 <= other < len(shown):
            return refs
        swap = {shown[at]: shown[other], shown[other]: shown[at]}
        return [swap.get(r, r) for r in refs]

    return _change(actor, change)


def reset(actor: Actor) -> list[Card]:
    """Back to the standard cards."""
    if actor.user_id is None:
        raise QueryDenied(_("Sign in to change your dashboard."))
    layout = db.session.get(DashboardLayout, actor.user_id, with_for_update=True)
    if layout is not None:
        db.session.delete(layout)
    db.session.commit()
    return pinned(actor)


def _change(actor: Actor, change: Any) -> list[Card]:
    """Apply ``change`` to the stored list under a row lock (the first change of a user inserts it: a
    concurrent first change loses the race on the primary key and is applied again over the winner's)."""
    if actor.user_id is None:
        raise QueryDenied(_("Sign in to change your dashboard."))
    for attempt in range(2):
        layout = db.session.get(DashboardLayout, actor.user_id, with_for_update=True, populate_existing=True)
        refs = _refs(layout)
        wanted = change(refs)
        if layout is None:
            db.session.add(
                DashboardLayout(user_id=actor.user_id, cards=wanted, known=list(DEFAULT_CARDS), version=1)
            )
        elif wanted != list(layout.cards) or layout.known != list(DEFAULT_CARDS):
            layout.cards, layout.known = wanted, list(DEFAULT_CARDS)
            layout.version += 1
        try:
            db.session.commit()
            break
        except IntegrityError:
            db.session.rollback()
            if attempt:
                raise
    return pinned(actor)


# --- running a card ------------------------------------------------------------------------------------


def spec_of(card_: Card, actor: Actor, period: Any = "", manager: Any = None) -> ReportSpec:
    """The card's report as ``actor`` runs it on the dashboard: the page's period (where the card has a
    date to narrow) and manager (where the card has a user field they may see) become part of its filter.
    Raises ``QueryError`` for what they may not ask."""
    definition = card_.definition
    if definition is None:
        raise CardNotFound(_("This card is not on offer to you."))
    if period not in PERIODS:
        raise ReportError(_("Choose a period from the list."))
    if period and card_.period_field:
        days = LAST_DAYS if period == "last_days" else None
        definition = dataclasses.replace(definition, period=Period(card_.period_field, period, days=days))
    spec = definition.resolved(actor)
    owner = manager_id(manager)
    if owner is not None and card_.manager_field:
        TableQuery(spec.table, actor).column(card_.manager_field)  # a field hidden from them is refused
        condition = {"field": card_.manager_field, "op": "eq", "value": owner}
        spec = dataclasses.replace(spec, filter=reports.all_of(spec.filter, condition))
    return spec


def manager_id(raw: Any) -> int | None:
    if raw in (None, ""):
        return None
    text = str(raw)
    if not text.isdecimal() or len(text) > 10:
        raise ReportError(_("Choose a manager from the list."))
    return int(text)


def manager_choices(actor: Actor) -> list[tuple[int, str]]:
    """Whose book ``actor`` may narrow the dashboard to: anyone for admins and roles reading every deal,
    their team mates for a team scope, nobody else for their own book (their own figures need no choice)."""
    if actor.user_id is None:
        return []
    schema = runtime.current()
    deals = schema.entity("deals")
    if is_admin(actor) or deals is None:
        users = None
    else:
        rights = grants(actor, deals, schema.access)
        scope = rights.scope("read")
        if scope == "all":
            users = None
        elif scope == "team":
            users = set(rights.mates)
        else:
            return []
    return runtime.active_users(users)


def plan_fact_of(actor: Actor, period: Any = "", manager: Any = None) -> plan_fact.PlanFact:
    """Plan vs fact as the dashboard shows it: this month unless the page asks for the quarter or the year
    (plans are monthly: "the last 30 days" is this month too), narrowed to one salesperson if chosen."""
    if period not in PERIODS:
        raise ReportError(_("Choose a period from the list."))
    found = plan_fact.run(actor, period if period in plan_fact.PERIOD_KINDS else "month")
    owner = manager_id(manager)
    if owner is not None:
        found.lines = [line for line in found.lines if line.manager_id == owner]
    return found
