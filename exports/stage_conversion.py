"""Stage-to-stage conversion of the sales funnel: of the deals in a pipeline, how many reached each of its
stages, what share went on from one stage to the next, and how many were lost after each.

A deal's furthest stage reached (``reached_stage_id``, kept by the write path as it moves) says how far it
got, so it reached every stage ranked up to that one (by order, a won stage past every open one; lost
stages are outcomes, not steps). Two ``GROUP BY``s through the query layer as the user who asks (their row
scope, the stages they may read), the running sums in Python; every count names the grid filter of exactly
its deals.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from flask_babel import gettext as _

from app.crm.derive import stage_rank
from custom_fields import buckets
from custom_fields.access import Actor
from custom_fields.query import MAX_CONDITIONS, TableQuery
from exports import report_workbook
from exports.reports import Period, ReportError, all_of

#: The periods offered: deals created in this month, quarter or year, or all of them ("").
PERIOD_KINDS = ("", "year", "quarter", "month")
LOST = ({"field": "won", "op": "eq", "value": "false"}, {"field": "closed_at", "op": "nempty"})


@dataclasses.dataclass
class Step:
    """One open or won stage: the deals that reached it and those lost after it, with their filters."""

    stage_id: int
    name: str
    reached: int = 0
    lost_after: int = 0
    from_previous: Decimal | None = None  # % of the previous step's deals that reached this one
    from_first: Decimal | None = None  # % of the first step's deals
    filters: dict[str, dict[str, Any] | None] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Funnel:
    pipeline_id: int
    name: str
    steps: list[Step]
    #: deals in the pipeline that never were at an open or won stage (lost at once, or from before the
    #: furthest stage was kept)
    unknown: int = 0
    unknown_filter: dict[str, Any] | None = None


@dataclasses.dataclass
class Conversion:
    first: dt.date | None
    after: dt.date | None
    funnels: list[Funnel]


def run(actor: Actor, kind: Any = "", manager: int | None = None, today: dt.date | None = None) -> Conversion:
    """Conversion per pipeline of the deals created in the period (all of them for ``""``), of one owner if
    ``manager`` is given, as ``actor`` may see them; raises ``QueryError`` for what they may not read."""
    first, after, narrowing = _narrowing(kind, manager, today)
    stages = _stages(actor)
    counts = _counts(actor, narrowing)
    lost = {
        row["reached_stage_id"]: row["n"]
        for row in TableQuery("deals", actor)
        .where(all_of(*narrowing, *LOST))
        .aggregate(["reached_stage_id"], {"n": ("count", None)})
    }
    names = TableQuery("pipelines", actor).labels_of(
        {s["pipeline_id"] for s in stages.values()} | set(counts)
    )
    funnels = []
    for pipeline_id in sorted(names, key=lambda p: (names[p].lower(), p)):
        steps = sorted(
            (s for s in stages.values() if s["pipeline_id"] == pipeline_id and not s["is_lost"]),
            key=lambda s: (stage_rank(s), s["id"]),
        )
        ranked = [s["id"] for s in steps]
        reached_by = counts.get(pipeline_id, {})
        pipeline = {"field": "pipeline_id", "op": "eq", "value": pipeline_id}
        funnel = Funnel(pipeline_id, names[pipeline_id], [])
        for i, stage in enumerate(steps):
            later = ranked[i:]
            step = Step(stage["id"], stage["name"] or "")
            step.reached = sum(reached_by.get(s, 0) for s in later)
            step.lost_after = lost.get(stage["id"], 0)
            at = {"field": "reached_stage_id", "op": "eq", "value": stage["id"]}
            named = [{"field": "reached_stage_id", "op": "eq", "value": s} for s in later]
            step.filters = {
                # None past the query layer's limit of conditions: the figure then opens nothing
                "reached": all_of(pipeline, *narrowing, {"or": named})
                if len(named) + len(narrowing) < MAX_CONDITIONS
                else None,
                "lost_after": all_of(at, *narrowing, *LOST),
            }
            funnel.steps.append(step)
        for previous, step in zip(funnel.steps, funnel.steps[1:], strict=False):
            step.from_previous = _share(step.reached, previous.reached)
        for step in funnel.steps:
            step.from_first = _share(step.reached, funnel.steps[0].reached)
        funnel.unknown = reached_by.get(None, 0)
        funnel.unknown_filter = all_of(pipeline, *narrowing, {"field": "reached_stage_id", "op": "empty"})
        funnels.append(funnel)
    return Conversion(first, after, funnels)


def _narrowing(
    kind: Any, manager: int | None, today: dt.date | None
) -> tuple[dt.date | None, dt.date | None, list[dict[str, Any]]]:
    if kind not in PERIOD_KINDS:
        raise ReportError(_("Choose a period from the list."))
    first = after = None
    narrowing: list[dict[str, Any]] = []
    if kind:
        first, after = Period("month", kind).bounds(today or buckets.today())
        narrowing += [
            {"field": "created_at", "op": "ge", "value": first.isoformat()},  # type: ignore[union-attr]
            {"field": "created_at", "op": "lt", "value": after.isoformat()},  # type: ignore[union-attr]
        ]
    if manager is not None:
        narrowing.append({"field": "owner_id", "op": "eq", "value": manager})
    return first, after, narrowing


def deals_of(kind: Any, manager: int | None = None, today: dt.date | None = None) -> dict[str, Any] | None:
    """The grid filter of the deals the conversion counts: the records behind its workbook."""
    return all_of(*_narrowing(kind, manager, today)[2])


def workbook_summary(found: Conversion, title: str) -> Callable[[Any], None]:
    """Stage conversion as a workbook's summary sheet: a row per pipeline and stage, with a native chart of
    the deals that reached each."""
    headers = [_("Pipeline"), _("Stage"), _("Reached"), _("From the previous stage, %"),
               _("From the first stage, %"), _("Lost after it")]  # fmt: skip
    count, share = {"num_format": "#,##0"}, {"num_format": "0.0"}
    rows = [
        [funnel.name, step.name, step.reached, step.from_previous, step.from_first, step.lost_after]
        for funnel in found.funnels
        for step in funnel.steps
    ]
    if found.first and found.after:
        last = found.after - dt.timedelta(days=1)
        dates = f"{_('Deals created')} {found.first.strftime('%d.%m.%Y')} – {last.strftime('%d.%m.%Y')}"
    else:
        dates = _("All time")
    return report_workbook.figures_sheet(
        title, dates, headers, rows, [None, None, count, share, share, count], [2]
    )


def _stages(actor: Actor) -> dict[int, dict[str, Any]]:
    query = TableQuery("stages", actor).fields("name", "pipeline_id", "position", "is_won", "is_lost")
    return {row["id"]: row for row in query.stream()}


def _counts(actor: Actor, narrowing: list[dict[str, Any]]) -> dict[Any, dict[Any, int]]:
    """Deals per pipeline and furthest stage reached."""
    found: dict[Any, dict[Any, int]] = {}
    query = TableQuery("deals", actor).where(all_of(*narrowing))
    for row in query.aggregate(["pipeline_id", "reached_stage_id"], {"n": ("count", None)}):
        if row["pipeline_id"] is not None:
            found.setdefault(row["pipeline_id"], {})[row["reached_stage_id"]] = row["n"]
    return found


def _share(part: int, whole: int) -> Decimal | None:
    if not whole:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"))
