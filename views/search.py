"""Global search (the navbar's box, its JSON answers and the full results page) and merging duplicate
companies and contacts (choose the other record, compare side by side, merge)."""

from __future__ import annotations

import sys
from typing import Any

from flask import abort, flash, jsonify, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_appbuilder.security.decorators import has_access_api
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from app.crm import duplicates
from app.crm import merge as merging
from app.crm import search as searching
from custom_fields import hooks, records, runtime
from custom_fields.access import Actor, Grants
from custom_fields.query import TableQuery
from custom_fields.spec import EntitySpec, FieldSpec
from custom_fields.types import REGISTRY
from views import related

CANDIDATES = 20


class SearchView(BaseView):
    """``/search/?q=``: the full results; ``/search/api?q=``: the navbar dropdown's answers."""

    route_base = "/search"
    default_view = "results"
    class_permission_name = "GlobalSearch"
    method_permission_name = {"results": "read", "answers": "read"}

    @expose("/")
    @has_access
    def results(self) -> Any:
        query = searching.clean_query(request.args.get("q", ""))
        groups = searching.search(query, Actor.current("ui"), searching.PAGE_LIMIT)
        return self.render_template(
            "tabula/search/results.html",
            query=query,
            groups=groups,
            too_short=bool(query) and len(query) < searching.MIN_QUERY,
            limit=searching.PAGE_LIMIT,
        )

    @expose("/api")
    @has_access_api
    def answers(self) -> Any:
        query = searching.clean_query(request.args.get("q", ""))
        groups = searching.search(query, Actor.current("ui"), searching.DROPDOWN_LIMIT)
        return jsonify(
            query=query,
            groups=[group.as_json() for group in groups if group.hits],
            page_url=url_for("SearchView.results", q=query),
        )


# --- merging -----------------------------------------------------------------------------------------------


def _merge_rights(slug: str) -> Grants:
    """The signed-in user's rights when they may merge records of ``slug``; 404/403 otherwise."""
    entity = runtime.current().entity(slug)
    if slug not in merging.MERGEABLE or entity is None or entity.archived:
        abort(404)
    rights = merging.merge_rights(slug, Actor.current("ui"))
    if rights is None or not merging.may_merge(current_user):
        abort(403)
    return rights


def _record(slug: str, pk: int, rights: Grants) -> Any:
    """The record as the user may see it (its visible fields, and the version the merge form names)."""
    query = TableQuery(slug, rights.actor or Actor.current("ui"))
    row = query.get(pk)
    if row is None:
        abort(404)
    item = related.as_record(row)
    item.row_version = query.versions([pk]).get(pk)
    item.tabula_label = query.label(row)
    return item


def _text(spec: FieldSpec, value: Any) -> str:
    if value is None:
        return ""
    try:
        return REGISTRY[spec.type].to_text(value, spec)
    except (TypeError, ValueError):
        return str(value)


def _comparison(entity: EntitySpec, rights: Grants, keep: Any, drop: Any) -> list[dict[str, Any]]:
    """One row per field the merge may set: both values as text, and whether the user must choose."""
    rows = []
    for spec in merging.merge_fields(entity, rights):
        a, b = getattr(keep, spec.name, None), getattr(drop, spec.name, None)
        differ = not merging.same(spec, a, b)
        rows.append(
            {
                "name": spec.name,
                "label": spec.label,
                "keep": _text(spec, a),
                "drop": _text(spec, b),
                "differ": differ,
                "choose": differ and not (merging.is_empty(a) and merging.is_empty(b)),
                # The default: the kept record's value, unless it has none.
                "default": "drop" if merging.is_empty(a) and not merging.is_empty(b) else "keep",
            }
        )
    return rows


class MergeView(BaseView):
    """Merge two companies or two contacts (Managers and Admins)."""

    route_base = "/merge"
    default_view = "choose"
    class_permission_name = "MergeRecords"
    method_permission_name = {"choose": "merge", "compare": "merge", "apply": "merge"}

    @expose("/<slug>/<int(max=2147483647):pk>/")
    @has_access
    def choose(self, slug: str, pk: int) -> Any:
        """Pick the record to merge with: by search, or among the likely duplicates."""
        rights = _merge_rights(slug)
        entity = rights.entity
        item = _record(slug, pk, rights)
        query = searching.clean_query(request.args.get("q", ""))
        actor = Actor.current("ui")
        candidates: list[dict[str, Any]] = []
        if len(query) >= searching.MIN_QUERY:
            group = searching.search_table(slug, query, actor, CANDIDATES)
            for hit in group.hits if group else []:
                if hit.id != pk:
                    candidates.append({"id": hit.id, "label": hit.label, "detail": hit.detail})
        else:
            values = {f.name: getattr(item, f.name) for f in rights.visible_fields}
            for dup in duplicates.find(slug, values, rights, exclude_id=pk):
                if dup.slug == slug:
                    candidates.append({"id": dup.id, "label": dup.label, "detail": dup.reason})
        return self.render_template(
            "tabula/search/merge_choose.html",
            entity=entity,
            entity_label=entity.label,
            item=item,
            item_label=item.tabula_label,
            query=query,
            candidates=candidates,
            suggested=len(query) < searching.MIN_QUERY,
        )

    @expose("/<slug>/<int(max=2147483647):keep>/with/<int(max=2147483647):drop>")
    @has_access
    def compare(self, slug: str, keep: int, drop: int) -> Any:
        """Both records side by side; the user picks a value for each field where they differ."""
        rights = _merge_rights(slug)
        if keep == drop:
            abort(404)
        entity = rights.entity
        kept, dropped = _record(slug, keep, rights), _record(slug, drop, rights)
        return self.render_template(
            "tabula/search/merge_compare.html",
            entity=entity,
            entity_label=entity.label,
            kept=kept,
            dropped=dropped,
            kept_label=kept.tabula_label,
            dropped_label=dropped.tabula_label,
            rows=_comparison(entity, rights, kept, dropped),
            moves=_reference_counts(entity, drop),
        )

    @expose("/<slug>/<int(max=2147483647):keep>/with/<int(max=2147483647):drop>", methods=["POST"])
    @has_access
    def apply(self, slug: str, keep: int, drop: int) -> Any:
        rights = _merge_rights(slug)
        if keep == drop:
            abort(404)
        entity = rights.entity
        kept, dropped = _record(slug, keep, rights), _record(slug, drop, rights)
        back = url_for("MergeView.compare", slug=slug, keep=keep, drop=drop)
        if request.form.get("keep_version") != str(kept.row_version) or request.form.get(
            "drop_version"
        ) != str(dropped.row_version):
            flash(_("One of the records changed since you compared them. Check again."), "warning")
            return redirect(back)
        values: dict[str, Any] = {}
        for row in _comparison(entity, rights, kept, dropped):
            if not row["choose"]:
                continue
            side = request.form.get(f"field.{row['name']}", row["default"])
            if side not in ("keep", "drop"):
                flash(_("Not merged: an unknown choice was sent."), "danger")
                return redirect(back)
            values[row["name"]] = getattr(dropped if side == "drop" else kept, row["name"])
        label = dropped.tabula_label
        try:
            result = merging.merge(slug, keep, drop, Actor.current("ui"), values)
        except records.AccessDenied:
            abort(403)
        except records.RecordNotFound:
            # Readable but out of the user's edit/delete reach (or gone meanwhile).
            flash(_("Not merged: you may not change or delete one of these records."), "danger")
            return redirect(back)
        except records.RecordInvalid as exc:
            flash(_("Not merged: %(reason)s", reason="; ".join(exc.errors.values()) or str(exc)), "danger")
            return redirect(back)
        except records.RecordError as exc:
            flash(_("Not merged: %(reason)s", reason=str(exc)), "danger")
            return redirect(back)
        flash(
            _(
                "Merged “%(label)s” into this record (links moved: %(moved)s); it is in the recycle bin.",
                label=label,
                moved=result.moved,
            ),
            "success",
        )
        return redirect(url_for("TableView.show", slug=slug, pk=keep))


def _reference_counts(entity: EntitySpec, drop: int) -> list[tuple[str, int]]:
    """How many live records of each table link to the record that will be dropped (all that the merge
    moves, as ``merging.linking`` finds them)."""
    counts: dict[str, int] = {}
    labels: dict[str, str] = {}
    for other, spec in merging.references(entity):
        count = merging.linking(other.slug, spec.name, drop, entity.slug).count().value
        if count:
            counts[other.slug] = counts.get(other.slug, 0) + count
            labels[other.slug] = str(other.plural_label)
    return [(labels[slug], n) for slug, n in counts.items()]


@hooks.hookimpl
def record_actions(entity: EntitySpec, rights: Grants, record_id: int) -> list[related.RecordAction]:
    """ "Merge with…" on a company's or contact's page, for those who may merge."""
    pk = record_id
    if entity.slug not in merging.MERGEABLE:
        return []
    if not (rights.can("edit") and rights.can("delete")) or not merging.may_merge(current_user):
        return []
    return [
        related.RecordAction(
            _l("Merge with…"), url_for("MergeView.choose", slug=entity.slug, pk=pk), icon="fa-compress"
        )
    ]


def register(appbuilder: Any) -> None:
    """Add this module's screens (called by ``views.register_views``)."""
    from views import add_view

    # Who each screen is for (``sync_roles`` grants from this): everyone searches, managers merge.
    add_view(appbuilder, SearchView, None, audience="staff")
    add_view(appbuilder, MergeView, None, audience="manager")
    hooks.register(sys.modules[__name__])
