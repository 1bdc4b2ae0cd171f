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
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import func, select

from app.crm.matching import NORMALISE, match_reason, same_value
from app.extensions import db
from custom_fields import records, runtime
from custom_fields.access import Actor, Grants, grants
from custom_fields.query import TableQuery
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


def _rights(slug: str, actor: Actor) -> tuple[Grants, type]:
    schema = runtime.current()
    entity = schema.entity(slug)
    if entity is None or entity.archived:
        raise RecordNotFound(_("No such table."))
    return grants(actor, entity, schema.access), schema.classes[slug]


def _label(slug: str, item: Any) -> str:
    return str(item)


def load_lead(lead_id: int, actor: Actor, *, for_edit: bool = True) -> Any:
    """The lead, if the actor may read it (and edit it, with ``for_edit``); else RecordNotFound/AccessDenied
    (a lead out of the actor's reach is as if it did not exist)."""
    rights, model = _rights("leads", actor)
    if not rights.can("read"):
        raise AccessDenied(_("You may not do this in this table."))
    if for_edit and not rights.can("edit"):
        raise AccessDenied(_("You may not change this lead."))
    query = select(model).where(model.id == lead_id, TableQuery.reach(rights.entity.slug, rights.actor))
    if for_edit:
        query = query.where(TableQuery.reach(rights.entity.slug, rights.actor, "edit"))
    lead = db.session.scalar(query)
    if lead is None:
        raise RecordNotFound(_("Record %(id)s does not exist.", id=lead_id))
    return lead


def _match(slug: str, actor: Actor, conditions: list[tuple[str, Any]]) -> Match | None:
    """The first live record of ``slug`` meeting one of ``conditions`` (tried in order), preferring records
    the actor may read, then the oldest."""
    rights, model = _rights(slug, actor)
    visible = TableQuery.reach(rights.entity.slug, rights.actor)
    for reason, condition in conditions:
        found = db.session.execute(
            select(model, visible.label("visible"))
            .where(model.deleted_at.is_(None), condition)
            .order_by(visible.desc(), model.id)
            .limit(1)
        ).first()
        if found is not None:
            item, seen = found
            return Match(slug, item.id, _label(slug, item), bool(seen), reason)
    return None


def _identifying(slug: str, actor: Actor, raw: dict[str, Any]) -> list[tuple[str, Any]]:
    """Conditions for the given kinds of identifying value (in that order), each with its reason."""
    _rights_, model = _rights(slug, actor)
    conditions: list[tuple[str, Any]] = []
    for kind, value in raw.items():
        normal = NORMALISE[kind](value)
        if normal:
            conditions.append((match_reason(kind, normal), same_value(slug, model, kind, normal)))
    return conditions


def match_contact(actor: Actor, email: Any, phone: Any) -> Match | None:
    """An existing contact with the same normalised e-mail, else the same phone."""
    conditions = _identifying("contacts", actor, {"email": email, "phone": phone})
    return _match("contacts", actor, conditions) if conditions else None


def match_company(actor: Actor, tax_id: Any, email: Any, phone: Any, name: Any) -> Match | None:
    """An existing company with the same tax id, else e-mail or phone, else exactly the name (any case)."""
    conditions = _identifying("companies", actor, {"tax_id": tax_id, "email": email, "phone": phone})
    found = _match("companies", actor, conditions) if conditions else None
    if found is not None:
        return found
    return _match_company_name(actor, name)


def _match_company_name(actor: Actor, name: Any) -> Match | None:
    """Exactly the name, ignoring case and outer spaces (SQLite gets a Unicode-aware ``lower``)."""
    wanted = str(name or "").strip().lower()
    if not wanted:
        return None
    _rights_, model = _rights("companies", actor)
    return _match("companies", actor, [(_("Same name"), func.lower(func.trim(model.name)) == wanted)])


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
    """The first stage (by position) of the first active pipeline (by position)."""
    schema = runtime.current()
    pipelines, stages = schema.classes["pipelines"], schema.classes["stages"]
    pipeline_id = db.session.scalar(
        select(pipelines.id)
        .where(pipelines.deleted_at.is_(None), pipelines.active.is_not(False))
        .where(
            select(stages.id).where(stages.pipeline_id == pipelines.id, stages.deleted_at.is_(None)).exists()
        )
        .order_by(pipelines.position.is_(None), pipelines.position, pipelines.id)
        .limit(1)
    )
    if pipeline_id is None:
        return None
    return db.session.scalar(
        select(stages.id)
        .where(stages.pipeline_id == pipeline_id, stages.deleted_at.is_(None))
        .order_by(stages.position.is_(None), stages.position, stages.id)
        .limit(1)
    )


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
    rights, model = _rights(slug, actor)
    found = db.session.scalar(
        select(model.id).where(model.id == record_id, TableQuery.reach(rights.entity.slug, rights.actor))
    )
    if found is None:
        raise RecordInvalid({field: _("Record %(id)s does not exist.", id=record_id)})
    return int(found)


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
    with records.atomic(), records.linking_unreadable("lead conversion"):
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
                company = records.create("companies", values, actor).id
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
                contact = records.create("contacts", values, actor).id
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
