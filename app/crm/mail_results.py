"""What a mailing achieved: among the contacts mailed and those held out (the control group), the share that
converted within the mailing's window (a deal won, or an invoice paid, by the contact or their company), and
the difference with its 95% confidence interval (Newcombe). Read through the query layer as the mailing's
owner may see the deals and invoices."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select

from app.crm.uplift import Uplift, newcombe
from app.extensions import db
from custom_fields.access import Actor
from custom_fields.query import MAX_CONDITIONS, QueryError, TableQuery
from custom_fields.types import local_timezone
from models import Mailing, MailRecipient

CONVERSIONS = ("either", "deal_won", "invoice_paid")


@dataclass(frozen=True)
class Results:
    target: int
    target_converted: int
    control: int
    control_converted: int
    window_from: dt.datetime | None
    window_to: dt.datetime | None
    uplift: Uplift | None

    @property
    def verdict(self) -> str:
        if self.control == 0:
            return _("There is no control group, so the campaign's effect cannot be measured.")
        if self.target == 0:
            return _("Nothing was sent yet.")
        if self.uplift is None:
            return _("Not enough data yet.")
        points = dict(low=round(self.uplift.low * 100, 1), high=round(self.uplift.high * 100, 1))
        if self.uplift.verdict == "positive":
            return _(
                "The campaign raised conversion by %(low)s to %(high)s percentage points (95%% confidence).",
                **points,
            )
        if self.uplift.verdict == "negative":
            return _(
                "The campaign lowered conversion by %(low)s to %(high)s percentage points (95%% confidence).",
                low=-points["high"],
                high=-points["low"],
            )
        return _("The campaign's effect is not distinguishable from zero.")

    def as_json(self) -> dict[str, Any]:
        u = self.uplift
        return {
            "target": self.target, "target_converted": self.target_converted,
            "control": self.control, "control_converted": self.control_converted,
            "uplift": None if u is None else {"difference": u.difference, "low": u.low, "high": u.high},
            "verdict": self.verdict,
        }  # fmt: skip


def _local_day(moment: dt.datetime) -> dt.date:
    """The calendar day (in ``TABULA_TIMEZONE``) of a moment: payment days are local days."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).astimezone(local_timezone()).date()


def _in_window(query: TableQuery, field: str, start: dt.datetime, end: dt.datetime) -> TableQuery:
    return query.where([
        {"field": field, "op": "ge", "value": start.isoformat()},
        {"field": field, "op": "le", "value": end.isoformat()},
    ])  # fmt: skip


def _converters(actor: Actor, kind: str, start: dt.datetime, end: dt.datetime) -> tuple[set[int], set[int]]:
    """The contacts and the companies that converted in the window."""
    contacts: set[int] = set()
    companies: set[int] = set()
    if kind in ("either", "deal_won"):
        try:
            won = [r["id"] for r in TableQuery("stages", actor).where(
                {"field": "is_won", "op": "eq", "value": "true"}).fields("id").stream()]  # fmt: skip
            for chunk in range(0, len(won), MAX_CONDITIONS):
                stages = {"or": [{"field": "stage_id", "op": "eq", "value": str(s)}
                                 for s in won[chunk : chunk + MAX_CONDITIONS]]}  # fmt: skip
                deals = _in_window(TableQuery("deals", actor), "closed_at", start, end).where(stages)
                for row in deals.fields("id", "contact_id", "company_id").stream():
                    contacts.add(row.get("contact_id"))
                    companies.add(row.get("company_id"))
        except QueryError:
            pass  # deals the owner may not read count for nobody
    if kind in ("either", "invoice_paid"):
        try:
            paid = TableQuery("invoices", actor).where([
                {"field": "paid_on", "op": "ge", "value": _local_day(start).isoformat()},
                {"field": "paid_on", "op": "le", "value": _local_day(end).isoformat()},
                {"field": "status", "op": "eq", "value": "paid"},
            ])  # fmt: skip
            companies.update(row.get("company_id") for row in paid.fields("id", "company_id").stream())
        except QueryError:
            pass
    return contacts - {None}, companies - {None}


def _companies_of(actor: Actor, contact_ids: Iterable[int]) -> dict[int, int | None]:
    rows = TableQuery("contacts", actor).fields("id", "company_id").rows_of(contact_ids)
    return {pk: row.get("company_id") for pk, row in rows.items()}


def results(mailing: Mailing, actor: Actor, now: dt.datetime | None = None) -> Results:
    members = db.session.execute(
        select(MailRecipient.contact_id, MailRecipient.state).where(
            MailRecipient.mailing_id == mailing.id, MailRecipient.state.in_(("sent", "held_out"))
        )
    ).all()
    target = [c for c, s in members if s == "sent"]
    control = [c for c, s in members if s == "held_out"]
    start = mailing.started_at
    if start is None or not members:
        return Results(len(target), 0, len(control), 0, None, None, None)
    start = start if start.tzinfo else start.replace(tzinfo=dt.UTC)
    end = min(start + dt.timedelta(days=mailing.conversion_days), now or dt.datetime.now(dt.UTC))
    contacts, companies = _converters(actor, mailing.conversion or "either", start, end)
    company_of = _companies_of(actor, target + control)

    def converted(group: list[int]) -> int:
        return sum(1 for c in group if c in contacts or (company_of.get(c) in companies))

    hit_target, hit_control = converted(target), converted(control)
    uplift = newcombe(hit_target, len(target), hit_control, len(control)) if target and control else None
    return Results(len(target), hit_target, len(control), hit_control, start, end, uplift)
