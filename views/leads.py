"""Lead conversion screen: what converting a lead will do (the contact and company it reuses or creates,
the deal), with the choice of other existing records; the conversion itself is ``app.crm.convert``."""

from __future__ import annotations

import sys
from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_babel import gettext as _

from app.crm import convert as conversion
from custom_fields import hooks, records
from custom_fields.access import Actor, Grants
from custom_fields.query import QueryError, TableQuery
from custom_fields.spec import EntitySpec
from views.related import RecordAction

CHOICES = ("auto", "new", "pick")
MAX_ID = 2147483647


def _int(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if value.isdecimal() and 0 < int(value) <= MAX_ID else None


def _label_of(slug: str, record_id: int | None, actor: Actor) -> str | None:
    """A record's label if the actor may read it (None otherwise)."""
    if record_id is None:
        return None
    try:
        return TableQuery(slug, actor).labels_of([record_id]).get(record_id)
    except QueryError:
        return None


def _stages(actor: Actor) -> list[tuple[int, str]]:
    """Stages of active pipelines the actor may read, as (id, "Pipeline — Stage"), both by position (an
    order or an "active" field hidden from the actor is not used)."""
    try:
        pipelines = TableQuery("pipelines", actor)
        stages = TableQuery("stages", actor)
        stages = stages.fields("pipeline_id", *stages.label_fields)
        if pipelines.shown(["active"]):
            pipelines = pipelines.where({"or": [
                {"field": "active", "op": "eq", "value": "true"}, {"field": "active", "op": "empty"},
            ]})  # fmt: skip
        pipelines = pipelines.fields(*pipelines.label_fields).order_by(*pipelines.shown(["position"]))
        by_pipeline: dict[int, list[dict[str, Any]]] = {}
        for row in stages.order_by(*stages.shown(["position"])).stream(500):
            by_pipeline.setdefault(row["pipeline_id"], []).append(row)
        return [
            (stage["id"], f"{pipelines.label(pipeline)} — {stages.label(stage)}")
            for pipeline in pipelines.stream(500)
            for stage in by_pipeline.get(pipeline["id"], [])
        ]
    except QueryError:
        return []


@hooks.hookimpl
def record_actions(entity: EntitySpec, rights: Grants, record_id: int) -> list[RecordAction]:
    """A lead's page offers "Convert" to whoever may edit leads, until it is converted."""
    pk = record_id
    if entity.slug != "leads" or not rights.can("edit") or not rights.can("read"):
        return []
    try:
        lead = TableQuery(entity.slug, rights.actor).get(pk) if rights.actor is not None else None
    except QueryError:
        lead = None
    if lead is None or lead.get("status") == "converted":  # a hidden status is not read
        return []
    return [RecordAction(_("Convert"), url_for("LeadConvertView.convert", pk=pk), "fa-exchange")]


class LeadConvertView(BaseView):
    """``/leads/<id>/convert``: the plan (GET) and the conversion (POST)."""

    route_base = "/leads"
    default_view = "convert"
    class_permission_name = "LeadConversion"
    method_permission_name = {"convert": "write"}

    @expose("/<int(max=2147483647):pk>/convert", methods=["GET", "POST"])
    @has_access
    def convert(self, pk: int) -> Any:
        actor = Actor.current("ui")
        try:
            plan = conversion.plan(pk, actor)
        except records.RecordNotFound:
            abort(404)
        except records.AccessDenied:
            abort(403)
        form = request.form if request.method == "POST" else {}
        errors: dict[str, str] = {}
        if request.method == "POST":
            if plan.lead.status == "converted":
                flash(_("This lead has already been converted."), "warning")
                return redirect(url_for("TableView.show", slug="leads", pk=pk))
            errors = self._read_form(form)
            if not errors:
                result, errors = self._attempt(pk, actor, form)
                if result is not None:
                    flash(_("The lead was converted."), "success")
                    if result.deal_id is not None:
                        return redirect(url_for("TableView.show", slug="deals", pk=result.deal_id))
                    return redirect(url_for("TableView.show", slug="leads", pk=pk))
        return self.render_template(
            "tabula/leads/convert.html",
            plan=plan,
            lead=plan.lead,
            form=form,
            errors=errors,
            stages=_stages(actor),
            picked_contact=_label_of("contacts", _int(form.get("contact_id")), actor),
            picked_company=_label_of("companies", _int(form.get("company_id")), actor),
            contact_choice=form.get("contact_choice", "auto"),
            company_choice=form.get("company_choice", "auto"),
            create_deal=(form.get("create_deal") == "1") if request.method == "POST" else True,
            chosen_stage=_int(form.get("stage_id")) or plan.stage_id,
            contacts_lookup=url_for("TableView.lookup", slug="contacts"),
            companies_lookup=url_for("TableView.lookup", slug="companies"),
        )

    @staticmethod
    def _read_form(form: Any) -> dict[str, str]:
        errors: dict[str, str] = {}
        for name in ("contact_choice", "company_choice"):
            if form.get(name, "auto") not in CHOICES:
                errors[name] = _("Not saved: an unknown choice was sent.")
        for choice, field in (("contact_choice", "contact_id"), ("company_choice", "company_id")):
            if form.get(choice) == "pick" and _int(form.get(field)) is None:
                errors[field] = _("Choose a record.")
        if form.get("create_deal") == "1" and form.get("stage_id") and _int(form.get("stage_id")) is None:
            errors["stage_id"] = _("Choose a stage.")
        return errors

    @staticmethod
    def _attempt(pk: int, actor: Actor, form: Any) -> tuple[conversion.Converted | None, dict[str, str]]:
        contact_choice = form.get("contact_choice", "auto")
        company_choice = form.get("company_choice", "auto")
        try:
            result = conversion.convert(
                pk,
                actor,
                company_id=_int(form.get("company_id")) if company_choice == "pick" else None,
                contact_id=_int(form.get("contact_id")) if contact_choice == "pick" else None,
                new_company=company_choice == "new",
                new_contact=contact_choice == "new",
                create_deal=form.get("create_deal") == "1",
                deal_title=form.get("deal_title", "")[:255],
                stage_id=_int(form.get("stage_id")),
                amount=form.get("amount", "")[:40].strip() or None,
            )
        except records.RecordNotFound:
            abort(404)
        except records.AccessDenied as exc:
            flash(str(exc) or _("You may not do this."), "danger")
            return None, {"_": str(exc)}
        except records.RecordInvalid as exc:
            flash(_("Not converted: please correct the errors below. Nothing was saved."), "danger")
            return None, dict(exc.errors) or {"_": str(exc)}
        except records.RecordError as exc:
            flash(str(exc), "danger")
            return None, {"_": str(exc)}
        return result, {}


def register(appbuilder: Any) -> None:
    """Add this module's screens (called by ``views.register_views``)."""
    from views import add_view

    add_view(appbuilder, LeadConvertView, None, audience="staff")
    hooks.register(sys.modules[__name__])
