"""The CRM's standard reports, shipped as built-in definitions of the report builder over the core tables.

Each is an ordinary report definition (``exports.reports.Definition``): it runs through the same engine and
query layer as any report, as the user who opens it (their row scope and visible fields), and every figure
clicks through to the grid. Nobody changes a built-in one; "Save as new" in the builder keeps an editable
copy (personal, or shared with roles by an admin). Money is grouped by currency, never added across them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flask_babel import lazy_gettext as _l

from custom_fields import runtime
from custom_fields.access import Actor, grants

COUNT = {"function": "count"}
OPEN_TASK = {"and": [{"field": "status", "op": "neq", "value": "done"},
                     {"field": "status", "op": "neq", "value": "cancelled"}]}  # fmt: skip


def _sum(field: str) -> dict[str, str]:
    return {"function": "sum", "field": field}


@dataclasses.dataclass(frozen=True)
class Standard:
    key: str
    name: Any  # a lazy label
    description: Any
    definition: dict[str, Any]
    #: the date a dashboard's period narrows (None: a picture of now, such as receivables aging)
    period_field: str | None = None
    #: the user field a dashboard's manager filter narrows
    manager_field: str = "owner_id"


STANDARD: tuple[Standard, ...] = (
    Standard(
        "funnel",
        _l("Sales funnel"),
        _l("Deals and their amount per stage of each pipeline, per manager, by currency."),
        {
            "table": "deals",
            "rows": ["pipeline_id", "stage_id", "currency"],
            "column": "owner_id",
            "measures": [COUNT, _sum("amount")],
            "chart": "stacked",
        },
        period_field="created_at",
    ),
    Standard(
        "forecast",
        _l("Sales forecast"),
        _l("Open deals by expected close month, per manager, by currency: their amount and their amount "
           "weighted by probability."),
        {
            "table": "deals",
            "rows": ["owner_id", "currency"],
            "column": "expected_close:month",
            "measures": [_sum("weighted_amount"), _sum("amount")],
            "filter": {"field": "closed_at", "op": "empty"},
            "chart": "stacked",
        },
        period_field="expected_close",
    ),
    Standard(
        "receivables_managers",
        _l("Receivables aging by manager"),
        _l("Unpaid balances of invoices by days overdue (not overdue, 1–30, 31–60, 61–90, over 90), per "
           "manager, by currency."),
        {
            "table": "invoices",
            "rows": ["owner_id", "currency"],
            "column": "due_on:overdue",
            "measures": [_sum("balance")],
            "filter": {"and": [{"field": "balance", "op": "gt", "value": "0"},
                               {"field": "status", "op": "neq", "value": "cancelled"}]},
            "chart": "stacked",
        },
    ),
    Standard(
        "receivables_customers",
        _l("Receivables aging by customer"),
        _l("Unpaid balances of invoices by days overdue, per customer, by currency."),
        {
            "table": "invoices",
            "rows": ["company_id", "currency"],
            "column": "due_on:overdue",
            "measures": [_sum("balance")],
            "filter": {"and": [{"field": "balance", "op": "gt", "value": "0"},
                               {"field": "status", "op": "neq", "value": "cancelled"}]},
            "chart": "stacked",
        },
    ),
    Standard(
        "won_lost",
        _l("Won and lost deals"),
        _l("Closed deals per manager: how many were won and lost (by closing stage), and their amount."),
        {
            "table": "deals",
            "rows": ["owner_id", "currency"],
            "column": "stage_id",
            "measures": [COUNT, _sum("amount")],
            "filter": {"field": "closed_at", "op": "nempty"},
            "chart": "stacked",
        },
        period_field="closed_at",
    ),
    Standard(
        "lost_reasons",
        _l("Why deals were lost"),
        _l("Lost deals per reason and manager, by currency: how many and their amount."),
        {
            "table": "deals",
            "rows": ["lost_because", "currency"],
            "column": "owner_id",
            "measures": [COUNT, _sum("amount")],
            "filter": {"and": [{"field": "won", "op": "eq", "value": "false"},
                               {"field": "closed_at", "op": "nempty"}]},
            "chart": "stacked",
        },
        period_field="closed_at",
    ),
    Standard(
        "lead_response",
        _l("First response to leads"),
        _l("Leads per manager by month of arrival: how many, and the average and longest hours to the first "
           "outbound call, letter, meeting or SMS."),
        {
            "table": "leads",
            "rows": ["owner_id"],
            "column": "created_at:month",
            "measures": [COUNT, {"function": "avg", "field": "response_hours"},
                         {"function": "max", "field": "response_hours"}],
        },
        period_field="created_at",
    ),
    Standard(
        "complaints",
        _l("Complaints by category"),
        _l("Complaints per category and manager, by month."),
        {
            "table": "activities",
            "rows": ["complaint_category", "owner_id"],
            "column": "occurred_at:month",
            "measures": [COUNT],
            "filter": {"field": "kind", "op": "eq", "value": "complaint"},
            "chart": "stacked",
        },
        period_field="occurred_at",
    ),
    Standard(
        "complaint_resolution",
        _l("Complaints by resolution"),
        _l("Complaints per category and their resolution status, with the average days to resolve."),
        {
            "table": "activities",
            "rows": ["complaint_category"],
            "column": "resolution",
            "measures": [COUNT, {"function": "avg", "field": "resolution_days"}],
            "filter": {"field": "kind", "op": "eq", "value": "complaint"},
            "chart": "stacked",
        },
        period_field="occurred_at",
    ),
    Standard(
        "activity",
        _l("Manager activity"),
        _l("Calls, letters, meetings and other activities per manager over the last 30 days, by outcome "
           "(failed attempts included)."),
        {
            "table": "activities",
            "rows": ["owner_id", "kind"],
            "column": "outcome",
            "measures": [COUNT],
            "chart": "stacked",
            "period": {"field": "occurred_at", "kind": "last_days", "days": 30},
        },
        period_field="occurred_at",
    ),
    Standard(
        "activity_weekly",
        _l("Manager activity by week"),
        _l("Calls, letters, meetings and other activities per manager, type and direction (inbound, "
           "outbound), week by week over the last 12 weeks."),
        {
            "table": "activities",
            "rows": ["owner_id", "kind", "direction"],
            "column": "occurred_at:week",
            "measures": [COUNT],
            "chart": "stacked",
            "period": {"field": "occurred_at", "kind": "last_days", "days": 84},
        },
        period_field="occurred_at",
    ),
    Standard(
        "stale_deals",
        _l("Stale deals"),
        _l("Open deals nobody has changed in the last 30 days, per manager and stage: what a departed or "
           "overloaded manager left behind."),
        {
            "table": "deals",
            "rows": ["owner_id"],
            "column": "stage_id",
            "measures": [COUNT],
            "filter": {"field": "closed_at", "op": "empty"},
            "chart": "stacked",
            "period": {"field": "updated_at", "kind": "before_days", "days": 30},
        },
    ),
    Standard(
        "stale_companies",
        _l("Stale companies"),
        _l("Companies nobody has changed in the last 90 days, per manager and kind."),
        {
            "table": "companies",
            "rows": ["owner_id"],
            "column": "kind",
            "measures": [COUNT],
            "chart": "stacked",
            "period": {"field": "updated_at", "kind": "before_days", "days": 90},
        },
    ),
    Standard(
        "inactive_customers",
        _l("Customers without activity"),
        _l("Companies with no call, letter, meeting or other activity in the last 60 days (or never), per "
           "manager and kind: whom nobody has talked to."),
        {
            "table": "companies",
            "rows": ["owner_id"],
            "column": "kind",
            "measures": [COUNT],
            "chart": "stacked",
            "period": {"field": "last_activity_at", "kind": "not_last_days", "days": 60},
        },
    ),
    Standard(
        "abc_customers",
        _l("ABC analysis of customers"),
        _l("Customers by what they paid over the last 365 days (invoices paid in full), biggest first, by "
           "currency: A bring the first 80 percent of the money, B the next 15, C the rest."),
        {
            "table": "invoices",
            "rows": ["company_id", "currency"],
            "measures": [_sum("amount")],
            "filter": {"field": "status", "op": "eq", "value": "paid"},
            "abc": True,
            "top": 50,
            "chart": "bar",
            "period": {"field": "paid_on", "kind": "last_days", "days": 365},
        },
        period_field="paid_on",
    ),
    Standard(
        "open_tasks",
        _l("Open tasks"),
        _l("Tasks not yet done or cancelled, per assignee and priority."),
        {
            "table": "tasks",
            "rows": ["assignee_id"],
            "column": "priority",
            "measures": [COUNT],
            "filter": OPEN_TASK,
            "chart": "stacked",
        },
        manager_field="assignee_id",
    ),
    Standard(
        "overdue_tasks",
        _l("Overdue tasks"),
        _l("Open tasks whose due date has passed, per assignee and priority."),
        {
            "table": "tasks",
            "rows": ["assignee_id"],
            "column": "priority",
            "measures": [COUNT],
            "filter": OPEN_TASK,
            "chart": "stacked",
            "period": {"field": "due_at", "kind": "before_days", "days": 1},
        },
        manager_field="assignee_id",
    ),
)  # fmt: skip
BY_KEY = {s.key: s for s in STANDARD}


def offered(actor: Actor) -> list[Standard]:
    """The standard reports over tables ``actor`` may read."""
    schema = runtime.current()
    found = []
    for standard in STANDARD:
        entity = schema.entity(standard.definition["table"])
        if entity is not None and not entity.archived and grants(actor, entity, schema.access).can("read"):
            found.append(standard)
    return found


def as_json(standard: Standard) -> dict[str, Any]:
    """As the builder opens it: read-only (a built-in report), its definition to run or copy."""
    return {
        "id": None,
        "key": standard.key,
        "name": str(standard.name),
        "description": str(standard.description),
        "mine": False,
        "standard": True,
        "canChange": False,
        "canSchedule": False,
        "owner": "",
        "roles": [],
        "version": 0,
        "definition": {
            "view": None,
            "top": None,
            "q": "",
            "filter": None,
            "column": None,
            "abc": False,
            **standard.definition,
        },
    }
