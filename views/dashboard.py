"""The dashboard, the home page of signed-in users: the reports they pinned (or the standard cards), each a
chart whose every bar and slice opens the grid on exactly the records behind it, narrowed by one period and
one manager for the whole page. Figures come from the report engine as the signed-in user may see them
(``exports.dashboard``)."""

from __future__ import annotations

import json
from typing import Any

from flask import jsonify, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access, has_access_api
from flask_babel import get_locale
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from app.extensions import db
from custom_fields.access import Actor
from custom_fields.query import QueryError
from exports import dashboard, reports
from views.reports import plan_card, result


def _json(status: int, **payload: Any) -> Response:
    response = jsonify(payload)
    response.status_code = status
    return response


def _cards(actor: Actor) -> list[dict[str, Any]]:
    return [_card_json(c) for c in dashboard.pinned(actor)]


def _card_json(card: dashboard.Card) -> dict[str, Any]:
    found = card.as_json()
    kind, _sep, key = card.ref.partition(":")
    if card.ref == dashboard.PLAN_FACT:
        found["reportUrl"] = url_for("ReportView.plan")
    else:
        found["reportUrl"] = url_for(
            "ReportView.builder", **({"standard": key} if kind == "std" else {"report": key})
        )
    return found


def texts() -> dict[str, str]:
    return {
        "failed": _("The card could not be drawn."),
        "loading": _("Loading…"),
        "empty": _("No records match."),
        "open": _("Open these records"),
        "total": _("Total"),
        "moveEarlier": _("Move earlier"),
        "moveLater": _("Move later"),
        "unpin": _("Unpin from the dashboard"),
        "openReport": _("Open in the report builder"),
        "noPeriod": _("as of now"),
        "nothingPinned": _("Nothing is pinned. Add a card above, or pin a report in the report builder."),
        "pinned": _("Pinned to your dashboard."),
        "leftOut": _("%(n)s more rows are left out (the totals count them)."),
    }


def page(view: BaseView) -> Any:
    """The dashboard page, rendered by ``view`` (this screen, or the home page for a signed-in user)."""
    actor = Actor.current("ui")
    managers = dashboard.manager_choices(actor)
    config = {
        "cards": _cards(actor),
        "offered": [{"ref": c.ref, "name": c.name} for c in dashboard.offered(actor)],
        "periods": [{"value": k, "label": str(v)} for k, v in dashboard.PERIODS.items()],
        "managers": [{"id": i, "name": n} for i, n in managers],
        "cardUrl": url_for("DashboardView.card"),
        "pinUrl": url_for("DashboardView.pin"),
        "unpinUrl": url_for("DashboardView.unpin"),
        "moveUrl": url_for("DashboardView.move"),
        "resetUrl": url_for("DashboardView.reset"),
        "locale": str(get_locale() or "en")[:2],
        "texts": texts(),
    }
    return view.render_template(
        "tabula/dashboard.html",
        config=json.dumps(config, ensure_ascii=False),
        has_managers=bool(managers),
        title=_("Dashboard"),
    )


class DashboardView(BaseView):
    route_base = "/dashboard"
    default_view = "show"
    class_permission_name = "Dashboard"
    method_permission_name = {
        "show": "read",
        "card": "read",
        "pin": "read",
        "unpin": "read",
        "move": "read",
        "reset": "read",
    }

    @expose("/")
    @has_access
    def show(self) -> Any:
        return page(self)

    @expose("/card")
    @has_access_api
    def card(self) -> Response:
        """One card's figures: ``?ref=std:funnel&period=month&manager=7``."""
        actor = Actor.current("ui")
        try:
            found = dashboard.card(request.args.get("ref"), actor)
            period, manager = request.args.get("period", ""), request.args.get("manager")
            if found.ref == dashboard.PLAN_FACT:
                return _json(200, **plan_card(dashboard.plan_fact_of(actor, period, manager)))
            spec = dashboard.spec_of(found, actor, period, manager)
            pivot = reports.run(spec, actor)
        except QueryError as refused:
            return _json(getattr(refused, "status", 400), message=str(refused))
        return _json(200, **result(spec, pivot))

    def _changed(self, change: Any) -> Response:
        actor = Actor.current("ui")
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            body = {}
        try:
            cards = change(actor, body)
        except QueryError as refused:
            db.session.rollback()
            return _json(getattr(refused, "status", 400), message=str(refused))
        return _json(200, cards=[_card_json(c) for c in cards])

    @expose("/pin", methods=["POST"])
    @has_access_api
    def pin(self) -> Response:
        """Pin a report: ``{"ref": "saved:12"}``."""
        return self._changed(lambda actor, body: dashboard.pin(actor, body.get("ref")))

    @expose("/unpin", methods=["POST"])
    @has_access_api
    def unpin(self) -> Response:
        return self._changed(lambda actor, body: dashboard.unpin(actor, body.get("ref")))

    @expose("/move", methods=["POST"])
    @has_access_api
    def move(self) -> Response:
        """``{"ref": "std:funnel", "offset": -1}``: one place earlier (-1) or later (1)."""
        return self._changed(lambda actor, body: dashboard.move(actor, body.get("ref"), body.get("offset")))

    @expose("/reset", methods=["POST"])
    @has_access_api
    def reset(self) -> Response:
        return self._changed(lambda actor, body: dashboard.reset(actor))


def register(appbuilder: Any) -> None:
    from views import add_view

    add_view(appbuilder, DashboardView, None, audience="staff")
