"""Lead conversion: a lead becomes a contact, a company and a deal, linked to each other and to the lead.

What already exists is reused, so converting never makes a duplicate contact: a contact whose e-mail
(``email``/``email2``) or phone (``phone``/``mobile``) matches the lead's, normalised; a company whose tax id
matches, else its e-mail or phone, else its exact name (ignoring case). Only what is missing is created.

Every write goes through the write path (``custom_fields.records``) with the converting user as the actor,
so rights, validation, derived fields and history apply as anywhere else; and the conversion is all or
nothing: the write-path calls run inside one ``records.atomic()`` block, which commits once at the end or
rolls everything back.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import func

from app.crm.matching import NORMALISE, match_reason, same_value
from custom_fields import records
from custom_fields.access import Actor
from custom_fields.query import QueryDenied, QueryError, TableQuery
from custom_fields.records import AccessDenied, RecordError, RecordInvalid, RecordNotFound


@dataclass(frozen=True)
class Converted:
    """What the lead became (None: not linked, e.g. no deal was asked for)."""

    company_id: int | None
    contact_id: int | None
    deal_id: int | None


@dataclass(frozen=True)
class Match:
    """An existing record the conversion would reuse."""

    slug: str
    id: int
    label: str
    visible: bool  # whether the actor may open it (a match is reused either way: no duplicates)
    reason: str


@dataclass(frozen=True)
class Plan:
    """What converting a lead will do, for the convert screen."""

    lead: Any
    contact: Match | None
    company: Match | None
    new_contact: dict[str, Any]  # the contact that would be created (when nothing matches)
    new_company: dict[str, Any]
    stage_id: int | None
    deal_title: str


# --- one transaction for several write-path calls ----------------------------------------------------------


# --- reading and matching ----------------------------------------------------------------------------------

#: Why conversion may look beyond the user's rows (``TableQuery.ids_beyond_reach``) and link what it found.
REASON = "lead conversion"
STAGE_REASON = "the default stage of a new deal"


def _query(slug: str, actor: Actor, action: str = "read") -> TableQuery:
    try:
        return TableQuery(slug, actor, action)
    except QueryDenied as refused:
        raise AccessDenied(str(refused)) from None
    except QueryError as refused:
        raise RecordNotFound(str(refused)) from None


def load_lead(lead_id: int, actor: Actor, *, for_edit: bool = True) -> Any:
    """The lead as the actor may see it (fields hidden from them read as empty: conversion neither copies
    nor matches them), if they may read it (and edit it, with ``for_edit``); else RecordNotFound/AccessDenied
    (a lead out of the actor's reach is as if it did not exist)."""
    query = _query("leads", actor)
    if for_edit and not query.rights.can("edit"):
        raise AccessDenied(_("You may not change this lead."))
    row = query.get(lead_id)
    if row is None or (for_edit and not _query("leads", actor, "edit").exists(lead_id)):
        raise RecordNotFound(_("Record %(id)s does not exist.", id=lead_id))
    values: dict[str, Any] = dict.fromkeys((f.name for f in query.entity.live_fields), None)
    values.update({k: v for k, v in row.items() if k != "_labels"})
    values["row_version"] = query.versions([lead_id]).get(lead_id)
    return SimpleNamespace(**values)


def _match(slug: str, actor: Actor, conditions: list[tuple[str, list[tuple[str, Any]]]]) -> Match | None:
    """The first live record of ``slug`` meeting one of ``conditions`` (tried in order; each a reason and
    ``TableQuery.match_any`` tests, applied only to fields the actor may see), preferring records the actor
    may read, then the oldest. One out of their reach is found by the named system read (its id only)."""
    try:
        readable = TableQuery(slug, actor)
    except QueryError:
        return None
    for reason, tests in conditions:
        query = readable.match_any(tests)
        rows = query.fields(*query.label_fields).order_by("id").page(1).rows
        if rows:
            return Match(slug, rows[0]["id"], query.label(rows[0]), True, reason)
        beyond = query.ids_beyond_reach(REASON)
        if beyond:
            return Match(slug, beyond[0], f"#{beyond[0]}", False, reason)
    return None


def _identifying(slug: str, raw: dict[str, Any]) -> list[tuple[str, list[tuple[str, Any]]]]:
    """Tests for the given kinds of identifying value (in that order), each with its reason."""
    conditions = []
    for kind, value in raw.items():
        normal = NORMALISE[kind](value)
        if normal:
            conditions.append((match_reason(kind, normal), same_value(slug, kind, [normal])))
    return conditions


def match_contact(actor: Actor, email: Any, phone: Any) -> Match | None:
    """An existing contact with the same normalised e-mail, else the same phone."""
    conditions = _identifying("contacts", {"email": email, "phone": phone})
    return _match("contacts", actor, conditions) if conditions else None


def match_company(actor: Actor, tax_id: Any, email: Any, phone: Any, name: Any) -> Match | None:
    """An existing company with the same tax id, else e-mail or phone, else exactly the name (any case)."""
    conditions = _identifying("companies", {"tax_id": tax_id, "email": email, "phone": phone})
    found = _match("companies", actor, conditions) if conditions else None
    if found is not None:
        return found
    return _match_company_name(actor, name)


def _match_company_name(actor: Actor, name: Any) -> Match | None:
    """Exactly the name, ignoring case and outer spaces (SQLite gets a Unicode-aware ``lower``)."""
    wanted = str(name or "").strip().lower()
    if not wanted:
        return None
    tests = [("name", lambda column: func.lower(func.trim(column)) == wanted)]
    return _match("companies", actor, [(_("Same name"), tests)])


def split_name(full: Any) -> dict[str, str]:
    """A person's name into parts: three words are Russian order (last, first, middle name); otherwise the
    first word is the first name and the rest the last name."""
    words = str(full or "").split()
    if not words:
        return {}
    if len(words) == 3:
        return {"last_name": words[0], "first_name": words[1], "middle_name": words[2]}
    parts = {"first_name": words[0]}
    if len(words) > 1:
        parts["last_name"] = " ".join(words[1:])
    return parts


def default_stage_id() -> int | None:
    """The first stage (by position) of the first active pipeline (by position) that has stages: a system
    read (``TableQuery.system``) of the reference tables, as the default of every new deal."""
    active = {"or": [{"field": "active", "op": "eq", "value": "true"}, {"field": "active", "op": "empty"}]}
    pipelines = TableQuery.system("pipelines", STAGE_REASON).where(active).fields().order_by("position")
    stages = TableQuery.system("stages", STAGE_REASON).fields().order_by("position")
    for pipeline in pipelines.stream(100):
        first = stages.where({"field": "pipeline_id", "op": "eq", "value": pipeline["id"]}).page(1).rows
        if first:
            return int(first[0]["id"])
    return None


def _new_contact_values(lead: Any) -> dict[str, Any]:
    values: dict[str, Any] = split_name(lead.contact_name)
    if not values.get("first_name"):
        fallback = lead.email or lead.phone
        if not fallback:
            return {}
        values["first_name"] = str(fallback)
    if lead.email:
        values["email"] = lead.email
    if lead.phone:
        values["phone"] = lead.phone
    return values


def _new_company_values(lead: Any) -> dict[str, Any]:
    name = str(lead.company_name or "").strip()
    if not name:
        return {}
    values: dict[str, Any] = {"name": name}
    if lead.tax_id:
        values["tax_id"] = str(lead.tax_id).strip()
    if lead.is_foreign is not None:
        values["is_foreign"] = lead.is_foreign
    return values


def plan(lead_id: int, actor: Actor) -> Plan:
    """What ``convert`` would do with the lead by default (nothing is written)."""
    lead = load_lead(lead_id, actor)
    return Plan(
        lead=lead,
        contact=match_contact(actor, lead.email, lead.phone),
        company=match_company(actor, lead.tax_id, lead.email, lead.phone, lead.company_name),
        new_contact=_new_contact_values(lead),
        new_company=_new_company_values(lead),
        stage_id=default_stage_id(),
        deal_title=str(lead.title or ""),
    )


def _picked(slug: str, record_id: int, actor: Actor, field: str) -> int:
    """A record the user chose: it must exist and be one they may read."""
    if not _query(slug, actor).exists(record_id):
        raise RecordInvalid({field: _("Record %(id)s does not exist.", id=record_id)})
    return int(record_id)


def _settable(slug: str, actor: Actor, values: dict[str, Any]) -> dict[str, Any]:
    """The values of a new record that the actor may set (a lead's e-mail is not copied into a contact's
    e-mail field hidden from them: they could not have typed it there either)."""
    names = {f.name for f in _query(slug, actor).rights.editable_fields}
    return {name: value for name, value in values.items() if name in names}


# --- converting --------------------------------------------------------------------------------------------


def convert(
    lead_id: int,
    actor: Actor,
    *,
    company_id: int | None = None,
    contact_id: int | None = None,
    create_deal: bool = True,
    deal_title: str | None = None,
    stage_id: Any = None,
    amount: Any = None,
    new_company: bool = False,
    new_contact: bool = False,
) -> Converted:
    """Convert the lead, all or nothing. ``company_id``/``contact_id`` pick existing records (None: the
    matching one, else a new one); ``new_company`` creates a company even if one matches; ``new_contact``
    asks for a new contact, refused when one matches (never a duplicate contact). The deal goes to
    ``stage_id`` (default: the first stage of the first active pipeline). Raises the write path's errors
    (RecordInvalid with messages by field: ``company_id``, ``contact_id``, ``stage_id``, ``amount`` ...);
    when it does, nothing was written."""
    # The company and contact it matched may be out of the user's reach (linking them avoids a duplicate):
    # the system path lets these writes link them. Records the user picked are checked by ``_picked``.
    with records.atomic(), records.linking_unreadable(REASON):
        lead = load_lead(lead_id, actor)
        if lead.status == "converted":
            raise RecordError(_("This lead has already been converted."))
        # Company: chosen, else matched, else new (if the lead names one).
        if company_id is not None:
            company = _picked("companies", int(company_id), actor, "company_id")
        else:
            match = (
                None
                if new_company
                else match_company(actor, lead.tax_id, lead.email, lead.phone, lead.company_name)
            )
            company = match.id if match is not None else None
            values = _new_company_values(lead)
            if company is None and values:
                company = records.create("companies", _settable("companies", actor, values), actor).id
            elif company is None and new_company:
                raise RecordInvalid({"company_id": _("The lead names no company to create.")})
        # Contact: chosen, else matched (never a duplicate), else new.
        if contact_id is not None:
            contact = _picked("contacts", int(contact_id), actor, "contact_id")
        else:
            match = match_contact(actor, lead.email, lead.phone)
            if match is not None and new_contact:
                message = (
                    _("A contact with this e-mail or phone already exists: %(name)s.", name=match.label)
                    if match.visible
                    else _("A contact with this e-mail or phone already exists.")
                )
                raise RecordInvalid({"contact_id": message})
            contact = match.id if match is not None else None
            values = _new_contact_values(lead)
            if contact is None and values:
                if company is not None:
                    values["company_id"] = company
                contact = records.create("contacts", _settable("contacts", actor, values), actor).id
        deal: int | None = None
        if create_deal:
            stage = stage_id if stage_id not in (None, "") else default_stage_id()
            if stage is None:
                raise RecordInvalid(
                    {"stage_id": _("There is no active pipeline with stages; create one first.")}
                )
            title = (
                str(deal_title).strip() if deal_title is not None and str(deal_title).strip() else lead.title
            )
            deal_values: dict[str, Any] = {"title": title, "stage_id": stage}
            if company is not None:
                deal_values["company_id"] = company
            if contact is not None:
                deal_values["contact_id"] = contact
            if amount not in (None, ""):
                deal_values["amount"] = amount
            if lead.source:
                deal_values["source"] = lead.source
            deal = records.create("deals", deal_values, actor).id
        records.update(
            "leads",
            lead_id,
            {"status": "converted", "company_id": company, "contact_id": contact, "deal_id": deal},
            actor,
            expected_version=lead.row_version,
        )
    return Converted(company, contact, deal)
