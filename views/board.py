"""The deal board: one column per stage of a pipeline, with the number of deals and their total per
currency, and cards a user drags to another column, which changes the deal's stage through the write path
(history, derived fields, optimistic locking). Every read goes through the query layer
(``custom_fields.query``): row scopes, the recycle bin and hidden fields are applied there."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from flask import abort, jsonify, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_appbuilder.security.decorators import has_access_api
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from custom_fields import formats, records, runtime
from custom_fields.access import Actor, Grants, current_grants
from custom_fields.query import QueryError, TableQuery
from custom_fields.spec import EntitySpec
from custom_fields.types import REGISTRY
from views import add_view

#: Cards shown per column (the newest); the rest are counted and linked to the deals list.
CARD_LIMIT = 100
MAX_ID = 2**31 - 1
CHUNK = 500
#: Stages whose deals one statement reads (a filter holds at most ``query.MAX_CONDITIONS`` conditions).
STAGES_PER_QUERY = 40


# --- reading ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Named:
    """A pipeline or stage as the board shows it: its id and its label (as the reader may see it)."""

    id: int
    label: str

    def __str__(self) -> str:
        return self.label


@dataclass
class BoardContext:
    """The signed-in user and their rights on deals; every read goes through the query layer."""

    deals: EntitySpec
    deal_rights: Grants
    actor: Actor
    user_id: int | None

    @property
    def can_move(self) -> bool:
        """Whether the user may move any deal at all (the board is read-only otherwise)."""
        return self.deal_rights.can("edit") and self.deal_rights.mode("stage_id") == "edit"

    def shows(self, name: str) -> bool:
        return self.deal_rights.mode(name) != "hidden"

    def query(self, slug: str, action: str = "read") -> TableQuery | None:
        """What the user may ``action`` in the table, or None when they may not at all."""
        try:
            return TableQuery(slug, self.actor, action)
        except QueryError:
            return None


def board_context() -> BoardContext | None:
    """None when one of the tables the board needs is gone (archived)."""
    schema = runtime.current()
    specs = {slug: schema.entity(slug) for slug in ("deals", "stages", "pipelines")}
    if any(spec is None or spec.archived for spec in specs.values()):
        return None
    actor = Actor.current("ui")
    return BoardContext(
        deals=specs["deals"],
        deal_rights=current_grants(specs["deals"]),
        actor=actor,
        user_id=actor.user_id,
    )


def _visible(query: TableQuery, name: str) -> bool:
    return any(column.name == name for column in query.all_columns)


def _in_order(query: TableQuery) -> TableQuery:
    """Pipelines and stages in their position (empty last), then by id."""
    return query.order_by("position") if _visible(query, "position") else query


def _named(query: TableQuery, rows: list[dict[str, Any]]) -> list[Named]:
    labels = query.labels_of(row["id"] for row in rows)
    return [Named(row["id"], labels.get(row["id"], f"#{row['id']}")) for row in rows]


def pipelines(ctx: BoardContext) -> list[Named]:
    """Active pipelines the user may read, in their order."""
    query = ctx.query("pipelines")
    if query is None:
        return []
    rows = [row for row in _in_order(query).stream() if row.get("active") is not False]
    return _named(query, rows)


def pipeline(ctx: BoardContext, pipeline_id: int) -> Named | None:
    """One pipeline the user may read (active or not)."""
    query = ctx.query("pipelines")
    if query is None or not query.exists(pipeline_id):
        return None
    return _named(query, [{"id": pipeline_id}])[0]


def stages(ctx: BoardContext, pipeline_id: int) -> list[Named]:
    """Live stages of a pipeline the user may read, in their order."""
    query = ctx.query("stages")
    if query is None or not _visible(query, "pipeline_id"):
        return []
    query = query.where({"field": "pipeline_id", "op": "eq", "value": pipeline_id})
    return _named(query, list(_in_order(query).stream()))


def _deals_of(ctx: BoardContext, query: TableQuery, stage_ids: Sequence[int], *, mine: bool) -> TableQuery:
    """Deals of these stages (at most ``STAGES_PER_QUERY``) the user may read (and owns, for "only mine")."""
    chosen = [{"field": "stage_id", "op": "eq", "value": sid} for sid in stage_ids]
    query = query.where({"or": chosen})
    if mine:
        if ctx.user_id is None or not _visible(query, "owner_id"):
            return query.where({"field": "id", "op": "empty"})  # nothing
        query = query.where({"field": "owner_id", "op": "eq", "value": ctx.user_id})
    return query


def _chunks(ids: Sequence[int]) -> list[list[int]]:
    unique = sorted(set(ids))
    return [unique[i : i + STAGES_PER_QUERY] for i in range(0, len(unique), STAGES_PER_QUERY)]


def _money(amount: Decimal | None) -> str:
    if amount is None:
        return ""
    return formats.number_text(amount)  # rounds half up, to two decimals


def _currency_label(ctx: BoardContext, code: str | None) -> str:
    spec = ctx.deals.field_by_name("currency")
    if not code or spec is None or not ctx.shows("currency"):
        return ""
    return REGISTRY[spec.type].to_text(code, spec) or code


@dataclass
class ColumnTotals:
    count: int = 0
    totals: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"count": self.count, "totals": self.totals}


def column_totals(ctx: BoardContext, stage_ids: Sequence[int], *, mine: bool) -> dict[int, ColumnTotals]:
    """Per stage: how many deals the user may read, and the sum of their amounts per currency (one
    aggregate query over all of them, not only the cards shown)."""
    result = {sid: ColumnTotals() for sid in stage_ids}
    query = ctx.query("deals")
    if not stage_ids or query is None or not _visible(query, "stage_id"):
        return result
    with_amounts = _visible(query, "amount")
    group_by = ["stage_id", *(["currency"] if _visible(query, "currency") else [])]
    measures: dict[str, tuple[str, str | None]] = {"n": ("count", None)}
    if with_amounts:
        measures["total"] = ("sum", "amount")
    for chunk in _chunks(stage_ids):
        for group in _deals_of(ctx, query, chunk, mine=mine).aggregate(group_by, measures):
            column = result.setdefault(group["stage_id"], ColumnTotals())
            column.count += group["n"]
            total, currency = group.get("total"), group.get("currency")
            if with_amounts and total is not None:
                column.totals.append(
                    {
                        "currency": currency or "",
                        "label": _currency_label(ctx, currency),
                        "amount": str(Decimal(total).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)),
                        "text": " ".join(p for p in (_money(total), _currency_label(ctx, currency)) if p),
                    }
                )
    return result


@dataclass
class Card:
    id: int
    version: int
    title: str
    company: str
    amount: str
    owner: str
    expected_close: dt.date | None
    editable: bool


def _versions(query: TableQuery, ids: list[int]) -> dict[int, int]:
    """The deals' versions (for the optimistic lock of a move), which no screen shows."""
    return query.versions(ids)


def _editable(ctx: BoardContext, ids: list[int]) -> set[int]:
    query = ctx.query("deals", "edit") if ctx.can_move and ids else None
    return query.readable_ids(ids) if query is not None else set()


def _label(row: dict[str, Any], name: str) -> str:
    """A link's or user's label as the layer gives it (``#id`` when not disclosed)."""
    value = row.get(name)
    if value is None:
        return ""
    return (row.get("_labels") or {}).get(name) or f"#{value}"


def cards(ctx: BoardContext, stage_ids: Sequence[int], *, mine: bool) -> dict[int, list[Card]]:
    """The newest ``CARD_LIMIT`` deals of each stage that the user may read."""
    result: dict[int, list[Card]] = {sid: [] for sid in stage_ids}
    query = ctx.query("deals")
    if not stage_ids or query is None or not _visible(query, "stage_id"):
        return result
    newest = ("-created_at", "-id") if _visible(query, "created_at") else ("-id",)
    deals: list[dict[str, Any]] = []
    for stage_id in dict.fromkeys(stage_ids):
        chosen = _deals_of(ctx, query, [stage_id], mine=mine).order_by(*newest)
        deals += chosen.page(CARD_LIMIT).rows
    ids = [row["id"] for row in deals]
    versions = _versions(query, ids)
    editable = _editable(ctx, ids)
    for deal in deals:
        amount = ""
        if deal.get("amount") is not None:
            amount = " ".join(
                p for p in (_money(deal["amount"]), _currency_label(ctx, deal.get("currency"))) if p
            )
        result.setdefault(deal["stage_id"], []).append(
            Card(
                id=deal["id"],
                version=versions.get(deal["id"], 1),
                title=deal.get("title") or f"#{deal['id']}",
                company=_label(deal, "company_id"),
                amount=amount,
                owner=_label(deal, "owner_id"),
                expected_close=deal.get("expected_close"),
                editable=deal["id"] in editable,
            )
        )
    return result


def _deals_list_url(stage_id: int, owner_id: int | None) -> str:
    """The deals list filtered by a stage (and owner): FAB names a filter by its position, "eq" is first."""
    url = url_for("TableView.list", slug="deals") + f"?_flt_0_stage_id={stage_id}"
    return url + (f"&_flt_0_owner_id={owner_id}" if owner_id is not None else "")


# --- moving -------------------------------------------------------------------------------------------------


def _positive_int(value: Any) -> int | None:
    """A record id or version from JSON: a whole number (or its digits as text) within the database's
    range; anything else is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        value = int(text) if text.isascii() and text.isdecimal() and len(text) < 11 else None
    if not isinstance(value, int) or not 0 < value <= MAX_ID:
        return None
    return value


def _refuse(status: int, message: str, **extra: Any) -> Response:
    response = jsonify({"ok": False, "message": message, **extra})
    response.status_code = status
    return response


def move_deal(ctx: BoardContext | None, body: Any) -> Response:
    """Check a move sent by the board and apply it through the write path; the JSON answer carries the
    deal's new version and the totals of the columns it left and joined."""
    if ctx is None:
        return _refuse(404, _("No such deal."))
    if not isinstance(body, dict):
        return _refuse(400, _("Expected a JSON object with deal_id, stage_id and version."))
    deal_id = _positive_int(body.get("deal_id"))
    stage_id = _positive_int(body.get("stage_id"))
    version = _positive_int(body.get("version"))
    if deal_id is None or stage_id is None or version is None:
        return _refuse(400, _("Expected a JSON object with deal_id, stage_id and version."))
    board_pipeline = body.get("pipeline_id")
    if board_pipeline is not None and _positive_int(board_pipeline) is None:
        return _refuse(400, _("No such pipeline."))
    mine = body.get("mine") is True
    if not ctx.can_move:
        return _refuse(403, _("You may not move deals."))
    deals, stages_of = ctx.query("deals"), ctx.query("stages")
    deal = deals.get(deal_id) if deals is not None and _visible(deals, "stage_id") else None
    if deal is None:
        return _refuse(404, _("No such deal."))
    editable = ctx.query("deals", "edit")
    if editable is None or not editable.exists(deal_id):
        return _refuse(403, _("You may not change this deal."))
    target = None
    if stages_of is not None and _visible(stages_of, "pipeline_id"):
        stages_of = stages_of.fields("pipeline_id")
        target = stages_of.get(stage_id)
    if target is None:
        return _refuse(400, _("No such stage."))
    current_pipeline = deal.get("pipeline_id")
    if deal["stage_id"] is not None:
        current = stages_of.get(deal["stage_id"])
        current_pipeline = current["pipeline_id"] if current is not None else current_pipeline
    wanted = {target["pipeline_id"], current_pipeline}
    if board_pipeline is not None:
        wanted.add(_positive_int(board_pipeline))
    if len(wanted) != 1:
        return _refuse(400, _("This stage belongs to another pipeline."))
    try:
        saved = records.update(
            "deals", deal_id, {"stage_id": stage_id}, Actor.current("ui"), expected_version=version
        )
    except records.StaleRecord as exc:
        return _refuse(409, exc.message, version=exc.version)
    except records.RecordNotFound as exc:
        return _refuse(404, exc.message or _("No such deal."))
    except records.AccessDenied as exc:
        return _refuse(403, exc.message)
    except records.RecordInvalid as exc:
        return _refuse(400, exc.message, errors=exc.errors)
    except records.RecordError as exc:
        return _refuse(400, exc.message)
    touched = [sid for sid in dict.fromkeys((deal["stage_id"], stage_id)) if sid is not None]
    totals = column_totals(ctx, touched, mine=mine)
    return jsonify(
        {
            "ok": True,
            "deal_id": saved.id,
            "stage_id": stage_id,
            "version": saved.version,
            "columns": {str(sid): totals[sid].as_json() for sid in touched},
        }
    )


# --- the screen ---------------------------------------------------------------------------------------------


class DealBoardView(BaseView):
    """Deals as cards in one column per stage of a pipeline."""

    route_base = "/board"
    default_view = "index"
    class_permission_name = "DealBoard"
    method_permission_name = {"index": "read", "pipeline": "read", "move": "write"}

    @expose("/")
    @has_access
    def index(self) -> Any:
        ctx = board_context()
        if ctx is None:
            abort(404)
        found = pipelines(ctx)
        if found:
            args = {"mine": 1} if request.args.get("mine") == "1" else {}
            return redirect(url_for("DealBoardView.pipeline", pipeline_id=found[0].id, **args))
        return self.render_template(
            "tabula/board.html", pipeline=None, pipelines=[], columns=[], mine=False, can_move=False
        )

    @expose("/<int(max=2147483647):pipeline_id>")
    @has_access
    def pipeline(self, pipeline_id: int) -> Any:
        ctx = board_context()
        if ctx is None:
            abort(404)
        chosen = pipeline(ctx, pipeline_id)
        if chosen is None or not ctx.deal_rights.can("read"):
            abort(404)
        mine = request.args.get("mine") == "1"
        columns_of = stages(ctx, pipeline_id)
        ids = [stage.id for stage in columns_of]
        totals = column_totals(ctx, ids, mine=mine)
        shown = cards(ctx, ids, mine=mine)
        columns = [
            {
                "stage": stage,
                "totals": totals[stage.id],
                "cards": shown[stage.id],
                "more": max(totals[stage.id].count - len(shown[stage.id]), 0),
                "list_url": _deals_list_url(stage.id, ctx.user_id if mine else None),
            }
            for stage in columns_of
        ]
        switcher = pipelines(ctx)
        if all(item.id != chosen.id for item in switcher):
            switcher.append(chosen)  # an inactive pipeline opened by its address
        return self.render_template(
            "tabula/board.html",
            pipeline=chosen,
            pipelines=switcher,
            columns=columns,
            mine=mine,
            can_move=ctx.can_move,
            more_template=_("%(num)s more", num="__N__"),
        )

    @expose("/move", methods=["POST"])
    @has_access_api
    def move(self) -> Any:
        return move_deal(board_context(), request.get_json(silent=True))


def register(appbuilder: Any) -> None:
    """Add this module's screens (called by ``views.register_views``)."""
    add_view(
        appbuilder,
        DealBoardView,
        "Deal board",
        label=_l("Deal board"),
        icon="fa-columns",
        audience="staff",
    )
