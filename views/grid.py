"""The spreadsheet grid of a table (``/grid/<slug>/``): Tabulator in the browser, its columns built here from
the field-type registry (``grid_hints``) and the user's field rights, rows read from the query layer's data
endpoint, and every edit, fill, clear, undo and paste saved through the write path by ``/grid/<slug>/save``.

A batch is checked cell by cell before anything is written: each candidate write runs inside a transaction
that is rolled back (``records.atomic`` + a dry-run exception), the write path's refusals (``RecordInvalid``
per row index, ``StaleRecord``) take the refused cells or rows out, and what is left is checked again, until
what remains passes. ``mode: "all"`` then saves only when nothing was refused; ``mode: "valid"`` saves what
passed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import abort, current_app, jsonify, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_appbuilder.security.decorators import has_access_api
from flask_babel import get_locale
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from custom_fields import records, runtime, saved_views
from custom_fields.access import Actor, Grants, current_grants
from custom_fields.forms import converting_note
from custom_fields.link_labels import LinkLabels
from custom_fields.query import QueryError, TableQuery
from custom_fields.spec import EntitySpec
from custom_fields.types import OPERATORS, REGISTRY, FieldValueError
from views import add_view, grid_bulk, live

#: Most cells one save may carry (a pasted block of 5,000 rows × 20 columns).
MAX_CELLS = 100_000
MAX_ROWS = 5_000
MAX_ID = 2**31 - 1
PAGE_SIZE = 100
#: Saved rows read back for the grid after a save (a bigger paste keeps the values it sent).
REREAD = 200


# --- columns -----------------------------------------------------------------------------------------------


def column_defs(entity: EntitySpec, rights: Grants) -> list[dict[str, Any]]:
    """One column per field the user may see, as the registry describes it for the grid; hidden fields are
    absent, view-only and automatic ones are marked read-only."""
    can_edit = rights.can("edit")
    editable = {f.name for f in rights.editable_fields}
    columns = []
    for spec in rights.visible_fields:
        ftype = REGISTRY[spec.type]
        hints = dict(ftype.grid_hints(spec))
        hints.pop("target", None)
        if ftype.reference:
            hints["lookup"] = runtime.lookup_url(ftype, spec)
        if "options" in hints:
            hints["options"] = [
                {"id": o["id"], "label": str(o["label"]), "color": o.get("color") or ""}
                for o in hints["options"]
            ]
        columns.append(
            {
                **hints,
                "field": spec.name,
                "label": str(spec.label),
                "help": str(spec.help_text or ""),
                "converting": converting_note(spec),
                "required": spec.required,
                "editable": can_edit and spec.name in editable,
                "sortable": ftype.sortable,
                "operators": [{"op": op, "label": str(OPERATORS[op][0])} for op in ftype.operators],
            }
        )
    return columns


# --- saving ------------------------------------------------------------------------------------------------


class _DryRun(Exception):  # noqa: N818 (a signal, not a failure)
    """Raised at the end of a checked write so that ``records.atomic`` rolls it back."""


def _attempt(work: Callable[[], Any]) -> records.RecordError | None:
    """Run write-path calls in one transaction and roll it back: None when they would have succeeded, else
    the write path's refusal."""
    try:
        with records.atomic():
            work()
            raise _DryRun
    except _DryRun:
        return None
    except records.RecordError as refused:
        return refused


class MalformedSave(ValueError):  # noqa: N818 (a refusal of the request)
    """A save request that is not what grid.js sends."""


@dataclass
class Batch:
    """A save request, checked: what passed, what was refused (per cell or per row) and what conflicts."""

    slug: str
    entity: EntitySpec
    actor: Actor
    updates: dict[int, tuple[int, dict[str, Any], int]] = field(default_factory=dict)  # index -> change
    creates: dict[int, dict[str, Any]] = field(default_factory=dict)  # index -> values
    deletes: list[tuple[int, int]] = field(default_factory=list)  # (id, version): undoing appended rows
    refused: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)

    def refuse(self, kind: str, index: int, name: str | None, message: str) -> None:
        item: dict[str, Any] = {"kind": kind, "index": index, "message": message}
        if name is not None:
            spec = self.entity.field_by_name(name)
            item["field"] = name
            item["label"] = str(spec.label) if spec is not None else name
        self.refused.append(item)

    @property
    def clean(self) -> bool:
        return not self.refused and not self.conflicts


def parse_request(slug: str, entity: EntitySpec, body: Any, actor: Actor) -> tuple[Batch, str]:
    """The JSON body -> a Batch and its mode; raises MalformedSave on anything malformed."""
    if not isinstance(body, dict):
        raise MalformedSave(_("Send a JSON object."))
    mode = body.get("mode", "all")
    if mode not in ("all", "valid"):
        raise MalformedSave(_("Unknown mode."))
    changes, creates = body.get("changes") or [], body.get("create") or []
    deletes = body.get("delete") or []
    if not all(isinstance(part, list) for part in (changes, creates, deletes)):
        raise MalformedSave(_("Changes must be a list."))
    if len(changes) + len(creates) + len(deletes) > MAX_ROWS:
        raise MalformedSave(_("At most %(n)d rows at once.", n=MAX_ROWS))
    batch = Batch(slug, entity, actor)
    cells = 0
    seen: dict[int, int] = {}
    for index, change in enumerate(changes):
        if not isinstance(change, dict):
            raise MalformedSave(_("Each change must be an object."))
        pk, version, values = change.get("id"), change.get("version"), _values(change.get("values"))
        if not _whole(pk) or not 0 < pk <= MAX_ID or not _whole(version):
            raise MalformedSave(_("Each change needs the record's id and version."))
        cells += len(values)
        if pk in seen:  # the same record twice: one change, the later value winning, the first version
            first = seen[pk]
            batch.updates[first][1].update(values)
            continue
        seen[pk] = index
        batch.updates[index] = (pk, values, version)
    for index, item in enumerate(creates):
        if not isinstance(item, dict):
            raise MalformedSave(_("Each new row must be an object."))
        values = _values(item.get("values"))
        cells += len(values)
        batch.creates[index] = values
    for item in deletes:
        pk, version = (item.get("id"), item.get("version")) if isinstance(item, dict) else (None, None)
        if not _whole(pk) or not 0 < pk <= MAX_ID or not _whole(version):
            raise MalformedSave(_("Each change needs the record's id and version."))
        batch.deletes.append((pk, version))
    if cells > MAX_CELLS:
        raise MalformedSave(_("At most %(n)d cells at once.", n=MAX_CELLS))
    return batch, mode


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _values(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise MalformedSave(_("Values must be an object."))
    for name, value in raw.items():
        if not isinstance(name, str) or len(name) > 100:
            raise MalformedSave(_("Unknown field."))
        if not (value is None or isinstance(value, str | int | float | bool | list)):
            raise MalformedSave(_("Values must be text, numbers, yes/no or lists."))
    return dict(raw)


def resolve_link_labels(batch: Batch) -> None:
    """Link cells pasted as the linked record's label become its id (``custom_fields.link_labels``); a
    label none or several readable records have refuses that cell only."""
    labels = LinkLabels(batch.actor)

    def resolve(name: str, raw: Any) -> tuple[bool, Any] | None:
        spec = batch.entity.field_by_name(name)
        return labels.resolve(spec, raw) if spec is not None else None

    tables = ((batch.updates, True), (batch.creates, False))
    labels.prefetch(
        (spec, raw)
        for table, updating in tables for entry in table.values()
        for name, raw in (entry[1] if updating else entry).items()
        if (spec := batch.entity.field_by_name(name)) is not None
    )  # fmt: skip

    for kind, table in (("update", batch.updates), ("create", batch.creates)):
        for index in list(table):
            values = table[index][1] if kind == "update" else table[index]
            for name, raw in list(values.items()):
                answer = resolve(name, raw)
                if answer is None:
                    continue
                if answer[0]:
                    values[name] = answer[1]
                else:
                    batch.refuse(kind, index, name, answer[1])
                    del values[name]
            if not values:
                del table[index]


def check_updates(batch: Batch) -> None:
    """Take out of ``batch.updates`` every cell the write path refuses and every row that conflicts."""
    if batch.updates:  # records gone or out of reach, all at once (not by elimination, one dry run each)
        wanted = {pk for pk, _values, _version in batch.updates.values()}
        found = TableQuery(batch.slug, batch.actor, "edit").readable_ids(wanted)
        for index, (pk, _values, _version) in list(batch.updates.items()):
            if pk not in found:
                batch.refuse("update", index, None, _("Record %(id)s does not exist.", id=pk))
                del batch.updates[index]
    while batch.updates:
        order = list(batch.updates)
        refused = _attempt(
            lambda order=order: records.update_many(
                batch.slug, [batch.updates[i] for i in order], batch.actor
            )
        )
        if refused is None:
            return
        if isinstance(refused, records.AccessDenied):
            raise refused
        if isinstance(refused, records.StaleRecord):
            index = next((i for i in order if batch.updates[i][0] == refused.record_id), None)
            if index is None:  # a record of another table the write changes in turn (a deal's total)
                _isolate(batch, order, refused)
            else:
                batch.conflicts.append(_conflict(batch, index, refused))
                del batch.updates[index]
        elif isinstance(refused, records.RecordInvalid) and refused.rows:
            _take_out(batch, "update", order, refused.rows, lambda i: batch.updates[i][1])
            for i in order:
                if i in batch.updates and not batch.updates[i][1]:
                    del batch.updates[i]
        else:  # a refusal that names no row (a record gone, a database refusal): find the rows one by one
            _isolate(batch, order, refused)


def check_creates(batch: Batch) -> None:
    """Take out of ``batch.creates`` every refused cell; a new row refused as a whole is left out."""
    while batch.creates:
        order = list(batch.creates)
        refused = _attempt(
            lambda order=order: records.create_many(
                batch.slug, [batch.creates[i] for i in order], batch.actor
            )
        )
        if refused is None:
            return
        if isinstance(refused, records.AccessDenied):
            raise refused
        if isinstance(refused, records.RecordInvalid) and refused.rows:
            _take_out(batch, "create", order, refused.rows, lambda i: batch.creates[i])
        else:
            for i in order:
                batch.refuse("create", i, None, str(refused))
            batch.creates.clear()


def _take_out(
    batch: Batch,
    kind: str,
    order: list[int],
    rows: Mapping[int, Mapping[str, str]],
    values_of: Callable[[int], dict[str, Any]],
) -> None:
    table = batch.updates if kind == "update" else batch.creates
    for position, errors in rows.items():
        if not 0 <= position < len(order) or order[position] not in table:
            continue
        index = order[position]
        values = values_of(index)
        for name, message in errors.items():
            if name in values:
                batch.refuse(kind, index, name, message)
                del values[name]
            else:  # about a field the row did not change (a required one, a derived rule): the whole row
                batch.refuse(kind, index, name, message)
                values.clear()
        if kind == "create" and not values:
            del table[index]
    if not any(0 <= p < len(order) for p in rows):  # nothing to take out: never loop for ever
        for index in order:
            batch.refuse(kind, index, None, _("Not saved."))
        table.clear()


def _isolate(batch: Batch, order: list[int], refused: records.RecordError) -> None:
    """Find the rows behind a refusal that names none by trying each alone; when no row alone is refused
    so (only their combination is), refuse them all: the loop checking the batch always ends."""
    before = len(batch.updates)
    if len(order) > 1:
        for i in order:
            alone = _attempt(lambda i=i: records.update_many(batch.slug, [batch.updates[i]], batch.actor))
            if alone is not None and not isinstance(alone, records.RecordInvalid):
                batch.refuse("update", i, None, str(alone))
                del batch.updates[i]
    if len(batch.updates) == before:
        for i in order:
            batch.refuse("update", i, None, str(refused) or _("Not saved."))
            del batch.updates[i]


def _conflict(batch: Batch, index: int, stale: records.StaleRecord) -> dict[str, Any]:
    pk, values, _version = batch.updates[index]
    return {
        "index": index,
        "id": pk,
        "version": stale.version,
        "text": {name: stale.current.get(name, "") for name in values},
        "current": shown_values(batch.entity, stale.current),
        "by": stale.changed_by,
        "message": str(stale),
    }


def shown_values(entity: EntitySpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """Saved values as the grid holds them: the stored value's JSON form, with a label for links."""
    shown: dict[str, Any] = {}
    for name, raw in values.items():
        spec = entity.field_by_name(name)
        if spec is None:
            continue
        ftype = REGISTRY[spec.type]
        try:
            stored = ftype.parse(raw, spec)
        except FieldValueError:
            continue
        item: dict[str, Any] = {"value": ftype.to_json(stored, spec)}
        if ftype.reference and stored is not None:
            item["label"] = ftype.display(stored, spec)
        shown[name] = item
    return shown


def save_batch(batch: Batch, mode: str) -> tuple[int, dict[str, Any]]:
    """Save the batch (all of it, or what passes the checks, per ``mode``); (HTTP status, answer)."""
    resolve_link_labels(batch)
    if mode == "all" and not batch.refused:  # the usual case, one edit: straight to the write path
        try:
            return 200, _save(batch)
        except records.AccessDenied:
            raise
        except records.RecordError:
            pass  # nothing was written: find out which cells and rows were refused
    check_updates(batch)
    check_creates(batch)
    answer: dict[str, Any] = {"refused": batch.refused, "conflicts": batch.conflicts, "saved": False}
    if mode == "all":
        if batch.clean:  # refused a moment ago, accepted now: someone saved in between
            answer["message"] = _("Not saved.")
            return 409, answer
        return (409 if batch.conflicts else 422), answer
    try:
        saved = _save(batch)
    except records.StaleRecord as stale:  # someone saved in between the check and the save
        answer["message"] = str(stale)
        return 409, answer
    except records.RecordError as refused:
        answer["message"] = str(refused) or _("Not saved.")
        return 422, answer
    return 200, {**answer, **saved}


def _save(batch: Batch) -> dict[str, Any]:
    """Write the batch in one transaction (each kind only when there is some: each needs its own right);
    the saved rows as the data endpoint shows them."""
    order = list(batch.updates)
    new_order = list(batch.creates)
    with records.atomic():
        updated = (
            records.update_many(batch.slug, [batch.updates[i] for i in order], batch.actor) if order else []
        )
        created = (
            records.create_many(batch.slug, [batch.creates[i] for i in new_order], batch.actor)
            if new_order
            else []
        )
        if batch.deletes:
            pks, versions = zip(*batch.deletes, strict=True)
            records.delete_many(batch.slug, list(pks), batch.actor, expected_versions=list(versions))
    return {
        "saved": True,
        "updated": [
            {
                "index": i,
                "id": s.id,
                "version": s.version,
                "values": shown_values(batch.entity, batch.updates[i][1]),
            }
            for i, s in zip(order, updated, strict=True)
        ],
        "created": [
            {
                "index": i,
                "id": s.id,
                "version": s.version,
                "values": shown_values(batch.entity, batch.creates[i]),
            }
            for i, s in zip(new_order, created, strict=True)
        ],
        "rows": saved_rows(batch, [s.id for s in (*updated, *created)]),
    }


def saved_rows(batch: Batch, ids: list[int]) -> dict[str, Any]:
    """The saved rows read back through the query layer, as the data endpoint sends them (values the write
    path derived, defaults of new rows, labels); up to ``REREAD`` rows, else the grid keeps what it sent."""
    if not ids or len(ids) > REREAD:
        return {}
    try:
        query = TableQuery(batch.slug, batch.actor).with_versions()
    except QueryError:
        return {}
    found = {}
    for pk in ids:
        row = query.get(pk)
        if row is not None:
            found[str(pk)] = query.to_json(row)
    return found


# --- the screen --------------------------------------------------------------------------------------------


#: Tabulator's own words, per language (its ``langs`` option).
def tabulator_langs() -> dict[str, Any]:
    return {
        "default": {
            "data": {"loading": _("Loading…"), "error": _("Could not load the rows.")},
            "headerFilters": {"default": _("filter…")},
        }
    }


def ui_texts() -> dict[str, str]:
    """The grid's own words, in the reader's language (the page passes them to grid.js)."""
    return {
        "rows": _("Rows: %(n)s"),
        "about": _("Rows: about %(n)s"),
        "saving": _("Saving…"),
        "saved": _("Saved."),
        "notSaved": _("Not saved."),
        "network": _("The server did not answer; nothing was saved. Please try again."),
        "pasteSummary": _("%(changed)s changed, %(refused)s refused."),
        "saveValid": _("Save the valid ones"),
        "saveNothing": _("Save nothing"),
        "conflict": _(
            "Someone else changed this record since you loaded it. Saved: %(saved)s. Yours: %(yours)s."
        ),
        "keepMine": _("Keep mine"),
        "takeTheirs": _("Take the saved value"),
        "readOnly": _("This cell is read-only."),
        "nothingToUndo": _("Nothing to undo."),
        "undone": _("Undone."),
        "pasteCut": _("Only the loaded rows were pasted into; scroll to the end to add new rows."),
        "noAdd": _("You may not add records to this table: rows past the end were left out."),
        "deleteAsk": _("Move %(n)s records to the recycle bin?"),
        "delete": _("Delete"),
        "cancel": _("Cancel"),
        "deleted": _("Moved to the recycle bin: %(n)s."),
        "noRows": _("Select cells in the rows to delete first."),
        "empty": _("(empty)"),
        "yes": _("yes"),
        "no": _("no"),
        "searching": _("Searching…"),
        "views": _("Saved views of this table"),
        "allRows": _("All rows"),
        "saveView": _("Save the view"),
        "saveAs": _("Save as a new view"),
        "viewName": _("Name of the view"),
        "shareWith": _("Share with roles:"),
        "makeDefault": _("Open the table with this view for everyone"),
        "notDefault": _("Stop opening the table with this view"),
        "deleteView": _("Delete the view"),
        "deleteViewAsk": _("Delete the view “%(name)s”?"),
        "viewSaved": _("The view is saved."),
        "viewDeleted": _("The view is deleted."),
        "defaultMark": _("default"),
        "sharedMark": _("shared"),
        "changed": _("changed"),
        "frozen": _("Frozen columns:"),
        "nothingFound": _("Nothing found"),
        "bulkSelected": _("The selected rows (%(n)s)"),
        "bulkAll": _("All %(n)s matching rows you may change"),
        "bulkCounting": _("Counting the matching rows…"),
        "bulkAsk": _("Set “%(field)s” to “%(value)s” in %(n)s records?"),
        "bulkApply": _("Change them"),
        "bulkNone": _("No row you may change is selected."),
        "bulkProgress": _("%(done)s of %(total)s"),
        "bulkRunning": _("Changing the records in the background…"),
        "extraFilter": _("Also filtered by: %(fields)s"),
        **live.live_texts(),
        "changedUnder": _(
            "%(by)s has just changed the value you are editing to “%(value)s”; saving yours replaces it."
        ),
        "removedUnder": _("%(by)s has just deleted the record you are editing."),
        "columnsChanged": _("The table's fields were changed; the columns are up to date."),
    }


def _grid_entity(slug: str) -> tuple[EntitySpec, Grants]:
    entity = runtime.current().entity(slug)
    if entity is None or entity.archived:
        abort(404)
    rights = current_grants(entity)
    if not rights.can("read"):
        abort(403)
    return entity, rights


def opened_view(slug: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The saved view the page opens (``?view=<id>``, else the table's default) and the state it shows:
    the address's own ``?state=`` (the view as the user changed it) when given and valid, else the view's.
    A view or state the user may not have is ignored: the plain grid opens."""
    actor = Actor.current("ui")
    view = None
    try:
        if request.args.get("view"):
            view = saved_views.get(slug, request.args.get("view"), actor)
        elif "state" not in request.args:
            view = saved_views.default_view(slug, actor)
    except QueryError:
        view = None
    state = saved_views.applied(view, actor) if view is not None else None
    raw = request.args.get("state")
    if raw:
        try:
            state = saved_views.clean_state(TableQuery(slug, actor), json.loads(raw[:20_000]))
        except (ValueError, QueryError, RecursionError):
            pass
    return (saved_views.as_json(view, actor) if view is not None else None), state


def data_urls(slug: str) -> dict[str, str]:
    """Where rows and their count come from: the query layer's data endpoint."""
    return {"rows": f"/api/v1/data/{slug}", "count": f"/api/v1/data/{slug}/count"}


class GridView(BaseView):
    """The spreadsheet grid of any table, core or custom."""

    route_base = "/grid"
    default_view = "table"
    class_permission_name = "Grid"
    method_permission_name = {
        "table": "read", "columns": "read", "save": "write", "bulk": "write", "bulk_status": "read",
    }  # fmt: skip

    @expose("/<slug>/")
    @has_access
    def table(self, slug: str) -> Any:
        entity, rights = _grid_entity(slug)
        view, state = opened_view(slug)
        config = {
            "slug": slug,
            "view": view,
            "state": state,
            "viewsUrl": url_for("SavedViewApi.listing", slug=slug),
            "columns": column_defs(entity, rights),
            "canEdit": rights.can("edit"),
            "canAdd": rights.can("add"),
            "canDelete": rights.can("delete"),
            "saveUrl": url_for("GridView.save", slug=slug),
            "bulkUrl": url_for("GridView.bulk", slug=slug),
            "recordUrl": url_for("TableView.show", slug=slug, pk=0).removesuffix("0"),
            "liveUrl": live.stream_url(slug),
            "columnsUrl": url_for("GridView.columns", slug=slug),
            "pageSize": PAGE_SIZE,
            "locale": str(get_locale() or "en"),
            "timezone": current_app.config.get("BABEL_DEFAULT_TIMEZONE", "UTC"),
            "langs": tabulator_langs(),
            "texts": ui_texts(),
            **data_urls(slug),
        }
        return self.render_template(
            "tabula/grid.html",
            entity=entity,
            config=json.dumps(config, ensure_ascii=False),
            list_url=url_for("TableView.list", slug=slug),
        )

    @expose("/<slug>/columns")
    @has_access_api
    def columns(self, slug: str) -> Response:
        """The columns as they are now (a live grid asks after a schema change)."""
        entity, rights = _grid_entity(slug)
        return _json(200, columns=column_defs(entity, rights))

    @expose("/<slug>/save", methods=["POST"])
    @has_access_api
    def save(self, slug: str) -> Response:
        entity, rights = _grid_entity(slug)
        actor = Actor.current("ui")
        try:
            batch, mode = parse_request(slug, entity, request.get_json(silent=True), actor)
            status, answer = save_batch(batch, mode)
        except MalformedSave as bad:
            return _json(400, message=str(bad))
        except records.AccessDenied as denied:
            return _json(403, message=str(denied))
        except records.RecordNotFound as missing:
            return _json(404, message=str(missing))
        except QueryError as refused:
            return _json(refused.status, message=str(refused))
        except records.RecordError as refused:  # any other refusal of the write path: nothing was saved
            return _json(422, message=str(refused) or _("Not saved."))
        return _json(status, **answer)

    @expose("/<slug>/bulk", methods=["POST"])
    @has_access_api
    def bulk(self, slug: str) -> Response:
        """Set one field to one value in the selected rows or all matching rows (``views.grid_bulk``)."""
        _entity, rights = _grid_entity(slug)
        if not rights.can("edit"):
            return _json(403, message=_("You may not do this in this table."))
        try:
            status, answer = grid_bulk.start(slug, request.get_json(silent=True), Actor.current("ui"))
        except QueryError as refused:
            return _json(refused.status, message=str(refused))
        except records.AccessDenied as denied:
            return _json(403, message=str(denied))
        return _json(status, **answer)

    @expose("/<slug>/bulk/<int(max=2147483647):run_id>")
    @has_access_api
    def bulk_status(self, slug: str, run_id: int) -> Response:
        _grid_entity(slug)
        status, answer = grid_bulk.status(slug, run_id, Actor.current("ui"))
        return _json(status, **answer)


def _json(status: int, **payload: Any) -> Response:
    response = jsonify(payload)
    response.status_code = status
    return response


def register(appbuilder: Any) -> None:
    """Add the grid (no menu entry: reached from each table's list; later the menu opens it)."""
    add_view(appbuilder, GridView, None, audience="staff")
