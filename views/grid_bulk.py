"""The grid's bulk edit over HTTP (``POST /grid/<slug>/bulk``, ``GET /grid/<slug>/bulk/<run>``): one field set
to one value in the selected rows or in every row matching the grid's filter and search.

The page first asks for the count (``preview``), shows it in the confirmation, and sends it back: a count
that changed in between is answered 409 with the new one, never applied to rows the user did not confirm.
Up to ``INLINE_ROWS`` rows are written during the request; more go to an RQ job whose progress the page
polls. Everything else is ``custom_fields.bulk``.
"""

from __future__ import annotations

import json
from typing import Any

from flask import url_for
from flask_babel import gettext as _
from flask_babel import ngettext

from app.extensions import db
from custom_fields import bulk
from custom_fields.access import Actor
from jobs import JobQueueUnavailable, enqueue
from jobs.runtime import REASONS, reconcile, translated_message
from models import JobRun, JobStatus

#: Rows written during the request; above, a job with a progress bar.
INLINE_ROWS = 1_000
MAX_VALUE = 10_000  # characters
MAX_FILTER = 20_000  # characters of the filter's JSON
MAX_SEARCH = 100
JOB_KIND = "bulk_edit"


class Malformed(ValueError):  # noqa: N818 (a refusal of the request)
    pass


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _value(raw: Any) -> Any:
    if raw is None or isinstance(raw, bool) or _whole(raw):
        return raw
    if isinstance(raw, float) and raw == raw and abs(raw) != float("inf"):
        return raw
    if isinstance(raw, str) and len(raw) <= MAX_VALUE:
        return raw
    if isinstance(raw, list) and len(raw) <= 100 and all(isinstance(v, str) and len(v) <= 200 for v in raw):
        return raw
    raise Malformed(_("The new value must be text, a number, yes/no or a list."))


def _target(body: dict[str, Any]) -> bulk.Target:
    if body.get("all") is True:
        spec, q = body.get("filter"), body.get("q") or ""
        if spec is not None and not isinstance(spec, dict | list):
            raise Malformed(_("The filter must be JSON, such as %(example)s.", example='{"and": []}'))
        try:
            too_long = len(json.dumps(spec, default=str)) > MAX_FILTER
        except (ValueError, RecursionError):
            too_long = True
        if too_long:
            raise Malformed(_("The filter is too long."))
        if not isinstance(q, str) or len(q) > MAX_SEARCH:
            raise Malformed(_("The search is too long."))
        return bulk.Target(None, spec, q)
    ids = body.get("ids")
    if (
        not isinstance(ids, list)
        or not 0 < len(ids) <= bulk.MAX_IDS
        or not all(_whole(i) and 0 < i <= 2**31 - 1 for i in ids)
    ):
        raise Malformed(_("Select the rows to change, or all matching rows."))
    return bulk.Target(tuple(dict.fromkeys(ids)), None, "")


def start(slug: str, body: Any, actor: Actor) -> tuple[int, dict[str, Any]]:
    """(HTTP status, answer) of a bulk-edit request. Raises ``bulk.QueryError`` (a bad filter, no right)."""
    if not isinstance(body, dict):
        return 400, {"message": _("Send a JSON object.")}
    try:
        target = _target(body)
        name = bulk.editable_field(slug, actor, body.get("field"))
        value = _value(body.get("value"))
    except Malformed as bad:
        return 400, {"message": str(bad)}
    except bulk.BulkRefused as refused:
        return 422, {"message": str(refused)}
    found = bulk.count(slug, actor, target)
    if body.get("preview") is True:
        return 200, {"count": found}
    confirmed = body.get("count")
    if not _whole(confirmed):
        return 400, {"message": _("Confirm the number of rows to change.")}
    if confirmed != found:
        message = _("The number of rows to change is now %(n)s: check it and confirm again.", n=found)
        return 409, {"count": found, "message": message}
    if found == 0:
        return 422, {"message": _("No row you may change is selected.")}
    try:
        bulk.check(slug, actor, name, value, target)
    except bulk.BulkRefused as refused:
        return 422, {"message": str(refused)}
    if found <= INLINE_ROWS:
        outcome = bulk.run(slug, actor, name, value, target)
        return 200, {"done": True, **outcome.as_json(), "message": summary(outcome.as_json())}
    spec = {"ids": list(target.ids) if target.ids is not None else None, "filter": target.filter}
    spec.update(q=target.q, total=found)
    from jobs.records import bulk_edit

    try:
        run = enqueue(JOB_KIND, bulk_edit, slug, actor.user_id, name, value, spec, user_id=actor.user_id)
    except JobQueueUnavailable:
        return 503, {"message": _("The job queue is not reachable; nothing was changed. Please try again.")}
    progress_url = url_for("GridView.bulk_status", slug=slug, run_id=run.id)
    return 202, {"done": False, "job": run.id, "progress": progress_url, "count": found}


def summary(result: dict[str, Any]) -> str:
    text = ngettext("%(num)d record changed.", "%(num)d records changed.", result.get("changed", 0))
    if result.get("refused"):
        refused = ngettext("%(num)d refused", "%(num)d refused", result["refused"])
        text += " " + _("%(refused)s: %(message)s", refused=refused, message=result.get("message") or "")
    return text


def status(slug: str, run_id: int, actor: Actor) -> tuple[int, dict[str, Any]]:
    """A bulk-edit job's progress, for the user who started it."""
    run = db.session.get(JobRun, run_id)
    if run is None or run.kind != JOB_KIND or run.created_by_fk != actor.user_id:
        return 404, {"message": _("No such job.")}
    run = reconcile(run)
    result = run.result if isinstance(run.result, dict) else {}
    if result and result.get("slug") != slug:
        return 404, {"message": _("No such job.")}
    done, total = run.progress_done or 0, run.progress_total
    answer: dict[str, Any] = {
        "state": str(run.status.value if hasattr(run.status, "value") else run.status),
        "done": done,
        "total": total,
        "percent": min(100, round(100 * done / total)) if total else 0,
        "finished": run.status == JobStatus.finished,
        "failed": run.status == JobStatus.failed,
    }
    if run.status == JobStatus.finished:
        answer.update(percent=100, result=result, message=summary(result))
    elif run.status == JobStatus.failed:
        stopped = _("The bulk edit stopped after %(n)s rows.", n=done)
        answer["message"] = (
            f"{stopped} {translated_message(run.message)}" if run.message in REASONS else stopped
        )
    return 200, answer
