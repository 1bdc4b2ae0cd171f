"""The deal board: one column per stage of a pipeline, with the number of deals and their total per
currency, and cards a user drags to another column, which changes the deal's stage through the write path
(history, derived fields, optimistic locking). Every query applies the user's row scope."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from flask import abort, jsonify, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_appbuilder.security.decorators import has_access_api
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, func, select
from werkzeug.wrappers import Response

from app.extensions import db
from custom_fields import formats, records, runtime
from custom_fields.access import Actor, Grants, current_grants, row_filter
from custom_fields.spec import EntitySpec
from custom_fields.types import REGISTRY
from views import add_view

#: Cards shown per column (the newest); the rest are counted and linked to the deals list.
CARD_LIMIT = 100
MAX_ID = 2**31 - 1
CHUNK = 500


# --- reading ------------------------------------------------------------------------------------------------


@dataclass
class BoardContext:
    """The tables the board reads and the signed-in user's rights on them."""

    deals: EntitySpec
    deal: Any
    deal_rights: Grants
    stage: Any
    stage_rights: Grants
    pipeline: Any
    pipeline_rights: Grants
    user_id: int | None

    @property
    def can_move(self) -> bool:
        """Whether the user may move any deal at all (the board is read-only otherwise)."""
        return self.deal_rights.can("edit") and self.deal_rights.mode("stage_id") == "edit"

    def shows(self, name: str) -> bool:
        return self.deal_rights.mode(name) != "hidden"


def board_context() -> BoardContext | None:
    """None when one of the tables the board needs is gone (archived)."""
    schema = runtime.current()
    specs = {slug: schema.entity(slug) for slug in ("deals", "stages", "pipelines")}
    if any(spec is None or spec.archived for spec in specs.values()):
        return None
    return BoardContext(
        deals=specs["deals"],
        deal=schema.classes["deals"],
        deal_rights=current_grants(specs["deals"]),
        stage=schema.classes["stages"],
        stage_rights=current_grants(specs["stages"]),
        pipeline=schema.classes["pipelines"],
        pipeline_rights=current_grants(specs["pipelines"]),
        user_id=Actor.current("ui").user_id,
    )


def pipelines(ctx: BoardContext) -> list[Any]:
    """Active pipelines the user may read, in their order."""
    p = ctx.pipeline
    query = (
        select(p)
        .where(row_filter(p, ctx.pipeline_rights), p.active.is_not(False))
        .order_by(p.position.is_(None), p.position, p.id)
    )
    return list(db.session.scalars(query))


def stages(ctx: BoardContext, pipeline_id: int) -> list[Any]:
    """Live stages of a pipeline the user may read, in their order."""
    s = ctx.stage
    query = (
        select(s)
        .where(row_filter(s, ctx.stage_rights), s.pipeline_id == pipeline_id)
        .order_by(s.position.is_(None), s.position, s.id)
    )
    return list(db.session.scalars(query))


def deal_condition(ctx: BoardContext, stage_ids: Iterable[int], *, mine: bool) -> Any:
    """Deals of these stages the user may read (and owns, for "only mine")."""
    d = ctx.deal
    conditions = [row_filter(d, ctx.deal_rights), d.stage_id.in_(sorted(set(stage_ids)))]
    if mine:
        conditions.append(d.owner_id == ctx.user_id)
    return and_(*conditions)


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
    d = ctx.deal
    result = {sid: ColumnTotals() for sid in stage_ids}
    if not stage_ids:
        return result
    query = (
        select(d.stage_id, d.currency, func.count(d.id), func.sum(d.amount))
        .where(deal_condition(ctx, stage_ids, mine=mine))
        .group_by(d.stage_id, d.currency)
        .order_by(d.stage_id, d.currency)
    )
    with_amounts = ctx.shows("amount")
    for stage_id, currency, count, total in db.session.execute(query):
        column = result.setdefault(stage_id, ColumnTotals())
        column.count += count
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


def _labels(slug: str, ids: Iterable[int]) -> dict[int, str]:
    """Display labels of records, one query per chunk."""
    schema = runtime.current()
    model = schema.classes.get(slug)
    wanted = sorted({i for i in ids if i is not None})
    if model is None or not wanted:
        return {}
    labels: dict[int, str] = {}
    for start in range(0, len(wanted), CHUNK):
        for item in db.session.scalars(select(model).where(model.id.in_(wanted[start : start + CHUNK]))):
            labels[item.id] = str(item)
    return labels


def _editable(ctx: BoardContext, ids: list[int]) -> set[int]:
    if not ctx.can_move or not ids:
        return set()
    d = ctx.deal
    found: set[int] = set()
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        found.update(
            db.session.scalars(select(d.id).where(d.id.in_(chunk), row_filter(d, ctx.deal_rights, "edit")))
        )
    return found


def cards(ctx: BoardContext, stage_ids: Sequence[int], *, mine: bool) -> dict[int, list[Card]]:
    """The newest ``CARD_LIMIT`` deals of each stage that the user may read."""
    d = ctx.deal
    result: dict[int, list[Card]] = {sid: [] for sid in stage_ids}
    if not stage_ids:
        return result
    rank = (
        func.row_number()
        .over(partition_by=d.stage_id, order_by=(d.created_at.desc(), d.id.desc()))
        .label("rank")
    )
    ranked = select(d.id, rank).where(deal_condition(ctx, stage_ids, mine=mine)).subquery()
    query = (
        select(d)
        .join(ranked, ranked.c.id == d.id)
        .where(ranked.c.rank <= CARD_LIMIT)
        .order_by(d.created_at.desc(), d.id.desc())
    )
    deals = list(db.session.scalars(query))
    companies = _labels("companies", (x.company_id for x in deals)) if ctx.shows("company_id") else {}
    editable = _editable(ctx, [x.id for x in deals])
    for deal in deals:
        amount = ""
        if ctx.shows("amount") and deal.amount is not None:
            amount = " ".join(p for p in (_money(deal.amount), _currency_label(ctx, deal.currency)) if p)
        result.setdefault(deal.stage_id, []).append(
            Card(
                id=deal.id,
                version=deal.row_version,
                title=(deal.title if ctx.shows("title") else "") or f"#{deal.id}",
                company=companies.get(deal.company_id, "") if deal.company_id else "",
                amount=amount,
                owner=runtime.user_label(deal.owner_id) if deal.owner_id and ctx.shows("owner_id") else "",
                expected_close=deal.expected_close if ctx.shows("expected_close") else None,
                editable=deal.id in editable,
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
        value = int(text) if text.isascii() and text.isdigit() and len(text) < 11 else None
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
    d, s = ctx.deal, ctx.stage
    deal = db.session.execute(
        select(d.id, d.stage_id, d.pipeline_id).where(d.id == deal_id, row_filter(d, ctx.deal_rights))
    ).first()
    if deal is None:
        return _refuse(404, _("No such deal."))
    editable = db.session.scalar(select(d.id).where(d.id == deal_id, row_filter(d, ctx.deal_rights, "edit")))
    if editable is None:
        return _refuse(403, _("You may not change this deal."))
    target = db.session.execute(
        select(s.id, s.pipeline_id).where(s.id == stage_id, row_filter(s, ctx.stage_rights))
    ).first()
    if target is None:
        return _refuse(400, _("No such stage."))
    current_pipeline = deal.pipeline_id
    if deal.stage_id is not None:
        current_pipeline = db.session.scalar(select(s.pipeline_id).where(s.id == deal.stage_id))
    wanted = {target.pipeline_id, current_pipeline}
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
    touched = [sid for sid in dict.fromkeys((deal.stage_id, stage_id)) if sid is not None]
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
        p = ctx.pipeline
        chosen = db.session.scalar(select(p).where(p.id == pipeline_id, row_filter(p, ctx.pipeline_rights)))
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
