"""The report builder: choose a table, row and column groups and measures; see the pivot with totals and a
chart; every figure links to the grid showing exactly the records behind it. Figures come from the report
engine (``exports.reports``) as the signed-in user may see them."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from flask import jsonify, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access, has_access_api
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from app.extensions import db
from custom_fields import buckets, runtime, saved_views
from custom_fields.access import Actor, grants
from custom_fields.query import QueryError, TableQuery
from custom_fields.types import REGISTRY
from exports import dashboard, plan_fact, reports, saved_reports, service, stage_conversion, standard_reports
from exports.reports import CHARTS, FUNCTION_LABELS, PERIODS, Definition, ReportSpec
from exports.service import ExportRefused


def _json(status: int, **payload: Any) -> Response:
    response = jsonify(payload)
    response.status_code = status
    return response


def readable_tables(actor: Actor) -> list[dict[str, str]]:
    schema = runtime.current()
    found = []
    for entity in schema.entities.values():
        if not entity.archived and grants(actor, entity, schema.access).can("read"):
            found.append({"slug": entity.slug, "label": str(entity.plural_label)})
    return sorted(found, key=lambda t: t["label"].lower())


def fields_of(slug: str, actor: Actor) -> dict[str, Any]:
    """What the builder offers for a table, as ``actor`` may see it: groups (with calendar units for dates)
    and the fields each measure takes."""
    query = TableQuery(slug, actor)
    groups, measured = [], {f: [] for f in FUNCTION_LABELS if f != "count"}
    for column in query.all_columns:
        if column.name == "id":
            continue
        label = str(column.spec.label)
        if column.sortable or column.reference:
            units = [{"unit": u, "label": str(buckets.UNIT_LABELS[u])} for u in column.ftype.bucket_units]
            groups.append({"name": column.name, "label": label, "units": units})
        measured["count_distinct"].append({"name": column.name, "label": label})
        if query.can_add_up(column.name):
            for function in ("sum", "avg"):
                measured[function].append({"name": column.name, "label": label})
        if column.sortable:
            for function in ("min", "max"):
                measured[function].append({"name": column.name, "label": label})
    views = [{"id": v.id, "name": v.name} for v in saved_views.listed(slug, actor)]
    return {
        "views": views,
        "groups": groups,
        "measures": [
            {"function": f, "label": str(text), "fields": measured.get(f)}
            for f, text in FUNCTION_LABELS.items()
        ],
    }


def grid_link(table: str, drill: Any) -> str:
    """The grid of ``table`` showing the records behind a figure (``drill``: their filter)."""
    state = json.dumps({"filter": drill}, ensure_ascii=False, separators=(",", ":"), default=str)
    return url_for("GridView.table", slug=table) + "?state=" + quote(state)


def result(spec: ReportSpec, pivot: reports.Pivot) -> dict[str, Any]:
    """The pivot as the page draws it, with the grid link of every cell and total."""
    body = pivot.as_json()
    rows = [[h.key for h in headers] for headers in pivot.row_headers]
    columns = [h.key for h in pivot.column_headers] or [None]
    with_column = spec.column is not None
    body["links"] = [
        [grid_link(spec.table, reports.drill_filter(spec, keys, k, with_column=with_column)) for k in columns]
        for keys in rows
    ]
    body["row_links"] = [grid_link(spec.table, reports.drill_filter(spec, keys)) for keys in rows]
    body["column_links"] = (
        [grid_link(spec.table, reports.drill_filter(spec, [], key, with_column=True)) for key in columns]
        if with_column
        else []
    )
    body["total_link"] = grid_link(spec.table, reports.drill_filter(spec, []))
    body["measures"] = [{"alias": m.alias, "label": reports.measure_label(spec, m)} for m in spec.measures]
    return body


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise reports.ReportError(_("A report needs a table."))
    return body


def _saved_list(actor: Actor) -> list[dict[str, Any]]:
    return [
        {"id": r.id, "name": r.name, "mine": r.owner_id == actor.user_id, "owner": _owner(r.owner_id)}
        for r in saved_reports.listed(actor)
    ]


def _owner(user_id: int | None) -> str:
    return runtime.user_label(user_id) if user_id else ""


def _saved_json(report: Any, actor: Actor) -> dict[str, Any]:
    found = saved_reports.as_json(report, actor)
    slug = found["definition"].get("table")
    found["canSchedule"] = bool(slug) and service.allowed(slug, actor)
    found["scheduleUrl"] = url_for("ExportScheduleView.new", report=report.id)
    return found


def plan_json(found: plan_fact.PlanFact) -> dict[str, Any]:
    """Plan vs fact as the page draws it: each line's figures, fulfilment and the grid link of each."""
    currency = runtime.current().entity("sales_plans").field_by_name("currency")
    show = REGISTRY[currency.type].display if currency else (lambda value, spec: value)
    return {
        "first": found.first.isoformat(),
        "last": (found.after - dt.timedelta(days=1)).isoformat(),
        "lines": [
            {
                "manager": plan_fact.manager_label(line.manager_id),
                "currency": show(line.currency, currency) if line.currency else "",
                "figures": {k: _number(line.figures.get(k)) for k in plan_fact.FIGURES},
                "fulfilled": _number(line.fulfilled),
                "links": {k: grid_link(table, drill) for k, (table, drill) in line.filters.items()},
            }
            for line in found.lines
        ],
    }


def plan_card(found: plan_fact.PlanFact) -> dict[str, Any]:
    """Plan vs fact in the shape of a report's result (``result``), for a dashboard card: a row per
    salesperson and currency, the planned and the won amount as two columns, each bar linking to its
    records."""
    lines = plan_json(found)["lines"]
    columns = [("plan_amount", _("Planned")), ("won_amount", _("Won deals, amount"))]
    amounts = [[line["figures"][key] for key, _label in columns] for line in lines]
    return {
        "rows": [
            [{"key": None, "label": line["manager"]}, {"key": None, "label": line["currency"]}]
            for line in lines
        ],
        "columns": [{"key": key, "label": label} for key, label in columns],
        "cells": {"amount": amounts},
        "links": [[line["links"].get(key) for key, _label in columns] for line in lines],
        "row_totals": {"amount": [None for _line in lines]},
        "row_links": [None for _line in lines],
        "column_totals": {"amount": [None, None]},
        "column_links": [None, None],
        "grand_totals": {"amount": None},
        "total_link": None,
        "rows_left_out": 0,
        "measures": [{"alias": "amount", "label": _("Amount")}],
    }


def conversion_json(found: stage_conversion.Conversion) -> dict[str, Any]:
    """Stage conversion as the page draws it: per pipeline, each step's counts, shares and grid links."""
    return {
        "first": found.first.isoformat() if found.first else None,
        "last": (found.after - dt.timedelta(days=1)).isoformat() if found.after else None,
        "funnels": [
            {
                "name": funnel.name,
                "unknown": funnel.unknown,
                "unknownLink": grid_link("deals", funnel.unknown_filter),
                "steps": [
                    {
                        "name": step.name,
                        "reached": step.reached,
                        "lostAfter": step.lost_after,
                        "fromPrevious": _number(step.from_previous),
                        "fromFirst": _number(step.from_first),
                        "links": {
                            "reached": _deals_link(step.filters["reached"]),
                            "lostAfter": _deals_link(step.filters["lost_after"]),
                        },
                    }
                    for step in funnel.steps
                ],
            }
            for funnel in found.funnels
        ],
    }


def _workbook(
    slug: str, actor: Actor, state: dict[str, Any], report: dict[str, Any], title: str, source_url: str
) -> Response:
    """Start a report's workbook (its summary from ``report``, then the rows of ``slug`` that ``state``
    holds), written by a worker as any export: the answer names the export's page (progress, then the
    download). Raises ``ExportRefused`` or ``QueryError``."""
    locale = get_locale()
    export = service.start(
        slug,
        actor,
        state,
        "xlsx",
        source_url=source_url,
        language=locale.language if locale else "en",
        report=report,
        title=title,
    )
    return _json(202, id=export.id, url=url_for("ExportView.show", export_id=export.id))


def _deals_link(drill: Any) -> str | None:
    return grid_link("deals", drill) if drill else None


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


class ReportView(BaseView):
    route_base = "/reports"
    default_view = "builder"
    class_permission_name = "Reports"
    method_permission_name = {
        "builder": "read",
        "fields": "read",
        "run": "read",
        "export": "read",
        "saved": "read",
        "saved_one": "read",
        "create": "read",
        "change": "read",
        "delete": "read",
        "plan": "read",
        "plan_run": "read",
        "plan_export": "read",
        "conversion": "read",
        "conversion_run": "read",
        "conversion_export": "read",
    }

    @expose("/")
    @has_access
    def builder(self) -> Any:
        actor = Actor.current("ui")
        opened = None
        wanted = request.args.get("report", "")
        standard = [standard_reports.as_json(s) for s in standard_reports.offered(actor)]
        if wanted:
            try:
                opened = _saved_json(saved_reports.get(wanted, actor), actor)
            except QueryError:
                opened = None
        elif request.args.get("standard"):
            opened = next((s for s in standard if s["key"] == request.args["standard"]), None)
        config = {
            "tables": readable_tables(actor),
            "charts": [{"value": k, "label": str(v)} for k, v in CHARTS.items()],
            "periods": [{"value": k, "label": str(v)} for k, v in PERIODS.items()],
            "dayCounts": list(reports.DAY_COUNTS),
            "fieldsUrl": url_for("ReportView.fields", slug="__slug__"),
            "runUrl": url_for("ReportView.run"),
            "exportUrl": url_for("ReportView.export"),
            "savedUrl": url_for("ReportView.saved"),
            "pinUrl": url_for("DashboardView.pin") if self._may_pin() else None,
            "savedOneUrl": url_for("ReportView.saved_one", report_id=0).rsplit("/", 1)[0] + "/",
            "saved": _saved_list(actor),
            "standard": standard,
            "roles": [{"id": i, "name": n} for i, n in saved_reports.role_choices(actor)],
            "open": opened,
            "locale": str(get_locale() or "en")[:2],
            "texts": {
                "table": _("Table"),
                "allRows": _("All rows"),
                "rows": _("Row groups"),
                "column": _("Column group"),
                "measures": _("Values"),
                "none": _("(none)"),
                "byValue": _("by value"),
                "addRow": _("Add a row group"),
                "addMeasure": _("Add a value"),
                "remove": _("Remove"),
                "run": _("Show"),
                "total": _("Total"),
                "chart": _("Chart"),
                "top": _("Only the first rows"),
                "leftOut": _("%(n)s more rows are left out (the totals count them)."),
                "failed": _("The report could not be run."),
                "empty": _("No records match."),
                "open": _("Open these records"),
                "newReport": _("(a new report)"),
                "mine": _("My reports"),
                "shared": _("Shared with me"),
                "standard": _("Standard reports"),
                "builtIn": _("A standard report: “Save as new” keeps a copy you may change."),
                "allPeriods": _("Any date"),
                "saved": _("The report was saved."),
                "deleted": _("The report was deleted."),
                "confirmDelete": _("Delete this report?"),
                "readOnly": _("Shared with you by %(owner)s: read-only; “Save as new” keeps your own copy."),
                "needName": _("A report needs a name."),
                "pinned": _("Pinned to your dashboard."),
                "abcClass": _("ABC class"),
            },
        }
        return self.render_template(
            "tabula/reports/builder.html", config=json.dumps(config, ensure_ascii=False), title=_("Reports")
        )

    def _may_pin(self) -> bool:
        return bool(self.appbuilder.sm.has_access("can_read", "Dashboard"))

    @expose("/fields/<slug>")
    @has_access_api
    def fields(self, slug: str) -> Response:
        try:
            return _json(200, **fields_of(slug, Actor.current("ui")))
        except QueryError as refused:
            return _json(refused.status, message=str(refused))

    @expose("/export", methods=["POST"])
    @has_access_api
    def export(self) -> Response:
        """The report as a workbook (summary, chart, the records behind it), written by a worker as any
        export: the answer names the export's page (progress, then download)."""
        actor = Actor.current("ui")
        try:
            found = Definition.from_json(_body())
            spec = found.resolved(actor)
            reports.query_of(spec, actor).aggregate(list(spec.rows), {"n": ("count", None)})  # checks it
            return _workbook(
                spec.table,
                actor,
                {"filter": spec.filter, "q": spec.q},
                reports.workbook_settings(spec, found.chart, actor),
                _("Report: %(table)s", table=runtime.current().entity(spec.table).plural_label),
                url_for("ReportView.builder"),
            )
        except (QueryError, ExportRefused) as refused:
            return _json(getattr(refused, "status", 403), message=str(refused))

    @expose("/run", methods=["POST"])
    @has_access_api
    def run(self) -> Response:
        try:
            actor = Actor.current("ui")
            spec = Definition.from_json(_body()).resolved(actor)
            pivot = reports.run(spec, actor)
        except QueryError as refused:
            return _json(getattr(refused, "status", 400), message=str(refused))
        return _json(200, **result(spec, pivot))

    # --- plan vs fact -------------------------------------------------------------------------------------

    @expose("/plan")
    @has_access
    def plan(self) -> Any:
        config = {
            "runUrl": url_for("ReportView.plan_run"),
            "exportUrl": url_for("ReportView.plan_export"),
            "periods": [{"value": k, "label": str(PERIODS[k])} for k in plan_fact.PERIOD_KINDS],
            "locale": str(get_locale() or "en")[:2],
            "texts": {
                "failed": _("The report could not be run."),
                "empty": _("No plans and no sales in this period."),
                "open": _("Open these records"),
                "planned": _("Planned"),
                "won": _("Won deals, amount"),
                "paid": _("Paid"),
                "fulfilled": _("Fulfilled, %"),
                "plannedDeals": _("Planned deals"),
                "wonDeals": _("Won deals"),
                "salesperson": _("Salesperson"),
                "currency": _("Currency"),
            },
        }
        return self.render_template(
            "tabula/reports/plan.html",
            config=json.dumps(config, ensure_ascii=False),
            title=_("Plan vs fact"),
        )

    @expose("/plan/run")
    @has_access_api
    def plan_run(self) -> Response:
        """Plan vs fact for ``?period=month|quarter|year`` (of today), as the signed-in user may see it."""
        try:
            found = plan_fact.run(Actor.current("ui"), request.args.get("period", "month"))
        except QueryError as refused:
            return _json(getattr(refused, "status", 400), message=str(refused))
        return _json(200, **plan_json(found))

    @expose("/plan/export", methods=["POST"])
    @has_access_api
    def plan_export(self) -> Response:
        """Plan vs fact of ``{"period": ...}`` as a workbook (the figures and a chart, then the won deals
        behind them), written by a worker as any export: the answer names the export's page."""
        body = request.get_json(silent=True)
        period = body.get("period", "month") if isinstance(body, dict) else None
        try:
            return _workbook(
                "deals",
                Actor.current("ui"),
                {"filter": plan_fact.won_deals(period)},
                {"kind": "plan_fact", "period": period},
                _("Plan vs fact"),
                url_for("ReportView.plan", period=period),
            )
        except (QueryError, ExportRefused) as refused:
            return _json(getattr(refused, "status", 403), message=str(refused))

    # --- stage conversion ---------------------------------------------------------------------------------

    @expose("/conversion")
    @has_access
    def conversion(self) -> Any:
        actor = Actor.current("ui")
        config = {
            "runUrl": url_for("ReportView.conversion_run"),
            "exportUrl": url_for("ReportView.conversion_export"),
            "periods": [
                {"value": k, "label": str(PERIODS[k]) if k else _("All time")}
                for k in stage_conversion.PERIOD_KINDS
            ],
            "managers": [{"id": i, "name": n} for i, n in dashboard.manager_choices(actor)],
            "locale": str(get_locale() or "en")[:2],
            "texts": {
                "failed": _("The report could not be run."),
                "empty": _("No deals in this period."),
                "open": _("Open these records"),
                "stage": _("Stage"),
                "reached": _("Reached"),
                "fromPrevious": _("From the previous stage, %"),
                "fromFirst": _("From the first stage, %"),
                "lostAfter": _("Lost after it"),
                "unknown": _(
                    "Deals never at an open stage (lost at once, or closed before stages were kept):"
                ),
                "everyone": _("All salespeople"),
            },
        }
        return self.render_template(
            "tabula/reports/conversion.html",
            config=json.dumps(config, ensure_ascii=False),
            title=_("Stage conversion"),
        )

    @expose("/conversion/run")
    @has_access_api
    def conversion_run(self) -> Response:
        """Stage conversion for ``?period=&manager=``, as the signed-in user may see it."""
        try:
            manager = dashboard.manager_id(request.args.get("manager"))
            found = stage_conversion.run(Actor.current("ui"), request.args.get("period", ""), manager)
        except QueryError as refused:
            return _json(getattr(refused, "status", 400), message=str(refused))
        return _json(200, **conversion_json(found))

    @expose("/conversion/export", methods=["POST"])
    @has_access_api
    def conversion_export(self) -> Response:
        """Stage conversion of ``{"period": ..., "manager": ...}`` as a workbook (the figures and a chart,
        then the deals behind them), written by a worker as any export."""
        body = request.get_json(silent=True)
        period = body.get("period", "") if isinstance(body, dict) else None  # None: refused as no period
        try:
            manager = dashboard.manager_id(body.get("manager") if isinstance(body, dict) else None)
            return _workbook(
                "deals",
                Actor.current("ui"),
                {"filter": stage_conversion.deals_of(period, manager)},
                {"kind": "stage_conversion", "period": period, "manager": manager},
                _("Stage conversion"),
                url_for("ReportView.conversion"),
            )
        except (QueryError, ExportRefused) as refused:
            return _json(getattr(refused, "status", 403), message=str(refused))

    # --- saved reports ------------------------------------------------------------------------------------

    @expose("/saved")
    @has_access_api
    def saved(self) -> Response:
        return _json(200, reports=_saved_list(Actor.current("ui")))

    @expose("/saved/<int(max=2147483647):report_id>")
    @has_access_api
    def saved_one(self, report_id: int) -> Response:
        actor = Actor.current("ui")
        try:
            return _json(200, **_saved_json(saved_reports.get(report_id, actor), actor))
        except QueryError as refused:
            return _json(refused.status, message=str(refused))

    @expose("/saved", methods=["POST"])
    @has_access_api
    def create(self) -> Response:
        """Save the builder's report as a new one: ``{"name", "definition", "roles"}``."""
        actor = Actor.current("ui")
        try:
            body = _body()
            report = saved_reports.save(actor, body.get("name"), body.get("definition"), body.get("roles"))
        except QueryError as refused:
            db.session.rollback()
            return _json(refused.status, message=str(refused))
        return _json(201, **_saved_json(report, actor))

    @expose("/saved/<int(max=2147483647):report_id>", methods=["POST"])
    @has_access_api
    def change(self, report_id: int) -> Response:
        """Rename, change or re-share a report (its owner or an admin): ``{"name", "definition"?, "roles"?,
        "version"}``; without a definition only the name (and roles) change."""
        actor = Actor.current("ui")
        try:
            body = _body()
            report = saved_reports.save(
                actor,
                body.get("name"),
                body.get("definition"),
                body.get("roles"),
                report_id=report_id,
                version=body.get("version"),
            )
        except QueryError as refused:
            db.session.rollback()
            return _json(refused.status, message=str(refused))
        return _json(200, **_saved_json(report, actor))

    @expose("/saved/<int(max=2147483647):report_id>/delete", methods=["POST"])
    @has_access_api
    def delete(self, report_id: int) -> Response:
        try:
            saved_reports.delete(report_id, Actor.current("ui"))
        except QueryError as refused:
            db.session.rollback()
            return _json(refused.status, message=str(refused))
        return _json(200, deleted=report_id)


def register(appbuilder: Any) -> None:
    from views import add_view

    add_view(appbuilder, ReportView, "Reports", label=_l("Reports"), icon="fa-bar-chart", audience="staff")
