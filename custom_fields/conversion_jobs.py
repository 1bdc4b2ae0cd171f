"""Type changes of big tables as background work: the request is recorded (``FieldConversion``) and the
field shows "converting" to everyone; a job (``jobs.schema``) converts it with progress, and can be
cancelled; a job whose worker died is cleaned up. The conversion itself is ``service.change_type``: online
on PostgreSQL, one transaction on SQLite. Its last transaction swaps the new column in *and* marks the record
done, so the record and the field never disagree: the field is either as it was or converted.

The cancel signal travels through Redis (a key the job looks at after each batch): on SQLite the job's one
transaction holds the database's write lock, so the web cannot write a flag there meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import current_app
from flask_babel import gettext as _
from redis.exceptions import RedisError
from sqlalchemy import column, func, select, table, update

from app.extensions import db
from custom_fields import online, service, short_locks
from custom_fields.service import ConversionRefused, SchemaError
from models import Field, FieldConversion
from models.system import percent, seconds_left, utcnow

Report = Callable[[int, int], None]
CANCEL_KEY = "tabula:conversion-cancel:{id}"
CANCEL_TTL = 7 * 86400


class ConversionCancelled(Exception):  # noqa: N818 (a signal, not a failure)
    """Raised from the progress callback when the admin cancelled: the conversion undoes itself."""


def _redis() -> Any:
    from app.redis_client import redis_connection

    return redis_connection()


def needs_job(field_id: int) -> bool:
    """Whether the field's table has more rows than ``TABULA_CONVERSION_JOB_ROWS`` (a bounded count: cheap
    whatever the size of the table)."""
    limit = int(current_app.config.get("TABULA_CONVERSION_JOB_ROWS", 50_000))
    row = service.field_row(field_id)
    rows = table(row.entity.table_name, column("id"))
    bounded = select(rows.c.id).limit(limit + 1).subquery()
    return (db.session.scalar(select(func.count()).select_from(bounded)) or 0) > limit


def latest(field_id: int) -> FieldConversion | None:
    """The field's most recent background conversion."""
    return db.session.scalars(
        select(FieldConversion)
        .where(FieldConversion.field_id == field_id)
        .order_by(FieldConversion.id.desc())
    ).first()


def request(
    field_id: int, new_type: str, settings: dict[str, Any] | None, *, user_id: int | None = None
) -> FieldConversion:
    """Record a type change for a job to make (``SchemaError`` when it cannot be made at all); from now on
    the field shows "converting" everywhere (a schema version bump, not logged: the change is logged once,
    when it is made)."""
    old_spec, new_spec = service.planned_type_change(field_id, new_type, settings)

    def change() -> FieldConversion:
        row = service.field_row(field_id)
        if row.converting_to:
            raise SchemaError(_("The field is being converted; wait until that finishes or cancel it."))
        record = FieldConversion(
            field_id=row.id, user_id=user_id, from_type=row.type, to_type=new_type,
            settings=dict(new_spec.settings), status="queued", offenders=[], message="",
        )  # fmt: skip
        db.session.add(record)
        row.converting_to = new_type
        service.bump_schema_version(user_id, "change_type", "", row.entity_id, row.id, log=False)
        return record

    return service.run_schema_change(change)


def finish(
    conversion_id: int, status: str, message: str = "", *, only_if: str | None = None, **values: Any
) -> FieldConversion | None:
    """End an unfinished conversion without converting (refused, cancelled, failed): the field is as it
    was and no longer "converting". A conversion already ended (or, with ``only_if``, no longer in that
    state) is left as it is. The record is locked meanwhile: a job starting it waits, then sees it ended."""

    def change() -> FieldConversion | None:
        record = db.session.get(FieldConversion, conversion_id, with_for_update=True)
        if record is None or not record.active or (only_if is not None and record.status != only_if):
            return record
        record.status, record.message, record.finished_at = status, message[:2000], utcnow()
        for key, value in values.items():
            setattr(record, key, value)
        row = db.session.get(Field, record.field_id)
        if row is not None and row.converting_to:
            row.converting_to = None
            service.bump_schema_version(record.user_id, "change_type", "", row.entity_id, row.id, log=False)
        return record

    db.session.rollback()
    return service.run_schema_change(change)


def cancel_requested(conversion_id: int) -> bool:
    try:
        return bool(_redis().exists(CANCEL_KEY.format(id=conversion_id)))
    except RedisError:  # Redis gone: the job goes on (its queue is gone too)
        return False


def cancel(record: FieldConversion) -> bool:
    """Stop a conversion: a queued one ends now; a running one undoes itself after its current batch (the
    field exactly as it was). False when it can no longer be cancelled (finished)."""
    if not record.active:
        return False
    try:  # whatever its state by now: a job that has just started sees it after its first batch
        _redis().set(CANCEL_KEY.format(id=record.id), "1", ex=CANCEL_TTL)
    except RedisError:
        if record.status != "queued":
            raise
    ended = finish(record.id, "cancelled", _("Cancelled; the field is as it was."), only_if="queued")
    return ended is not None and ended.status in ("cancelled", "running")


def run(conversion_id: int, report: Report | None = None) -> dict[str, Any]:
    """The job's work: convert the field as recorded, with progress; idempotent (a conversion that ended
    is not made again)."""
    record = db.session.get(FieldConversion, conversion_id)
    if record is None:
        raise LookupError(f"conversion {conversion_id} does not exist")
    if not record.active:
        return {"status": record.status}
    if cancel_requested(conversion_id):
        finish(conversion_id, "cancelled", _("Cancelled; the field is as it was."))
        return {"status": "cancelled"}
    field_id, to_type, settings, user_id = record.field_id, record.to_type, record.settings, record.user_id
    started = db.session.execute(
        update(FieldConversion)
        .where(FieldConversion.id == conversion_id, FieldConversion.status == "queued")
        .values(status="running", started_at=utcnow())
    ).rowcount
    db.session.commit()
    if not started:  # cancelled meanwhile (or another run of this job took it)
        db.session.expire_all()
        ended = db.session.get(FieldConversion, conversion_id)
        return {"status": ended.status if ended else "gone"}
    durable = db.engine.dialect.name == "postgresql"  # SQLite: the conversion's transaction holds the lock
    pause = int(current_app.config.get("TABULA_CONVERSION_PAUSE_PERCENT") or 0) / 100
    batch_started = time.monotonic()

    def progress(done: int, total: int) -> None:
        nonlocal batch_started
        if pause:
            time.sleep(pause * (time.monotonic() - batch_started))
        if cancel_requested(conversion_id):
            raise ConversionCancelled()
        if durable:
            db.session.execute(
                update(FieldConversion)
                .where(FieldConversion.id == conversion_id)
                .values(rows_done=done, rows_total=total)
            )
            db.session.commit()
        if report is not None:
            report(done, total)
        batch_started = time.monotonic()

    try:
        service.change_type(
            field_id, to_type, settings, user_id=user_id, progress=progress, conversion_id=conversion_id
        )
    except ConversionCancelled:
        finish(conversion_id, "cancelled", _("Cancelled; the field is as it was."))
        return {"status": "cancelled"}
    except ConversionRefused as refused:
        finish(
            conversion_id, "refused", refused.message,
            offenders=[list(o) for o in refused.offenders], offenders_total=refused.total,
        )  # fmt: skip
        return {"status": "refused", "offenders": refused.total}
    except SchemaError as exc:
        finish(conversion_id, "failed", str(exc))
        return {"status": "failed", "message": str(exc)}
    except BaseException:
        db.session.rollback()
        finish(conversion_id, "failed", _("The conversion failed; the field is as it was."))
        raise
    finally:
        try:
            _redis().delete(CANCEL_KEY.format(id=conversion_id))
        except RedisError:  # noqa: S110 (the key expires by itself)
            pass
    db.session.expire_all()
    record = db.session.get(FieldConversion, conversion_id)
    return {"status": record.status if record else "done", "converted": record.converted if record else None}


def recover(conversion_id: int, reason: str) -> bool:
    """A conversion whose job died (its worker killed): drop what it left (PostgreSQL: the trigger and the
    unfinished column, ``online.clean_up_leftovers``), and end it as failed; the field is as it was (the
    swap and the record's "done" are one transaction, so an unfinished record means an unswapped field).
    False while the conversion still runs somewhere (its process holds the field's advisory lock)."""
    record = db.session.get(FieldConversion, conversion_id)
    if record is None or not record.active:
        return False
    field_id = record.field_id
    db.session.rollback()
    if db.engine.dialect.name == "postgresql":
        online.clean_up_leftovers(db.engine)
        try:
            with online.converting(db.engine, field_id):
                finish(conversion_id, "failed", reason)
        except short_locks.TableBusy:
            return False
        return True
    finish(conversion_id, "failed", reason)
    return True


def progress_of(record: FieldConversion, live: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the field's page shows, live: status, rows done of the total, time left. ``live``: the job's
    progress in Redis (SQLite records none in the database while it converts)."""
    done, total = record.rows_done or 0, record.rows_total
    if live and record.status == "running" and (live.get("done") or 0) > done:
        done, total = int(live["done"]), live.get("total") or total
    left = seconds_left(done, total, record.started_at) if record.status == "running" else None
    shown = percent(done, total) if total else (100 if record.status == "done" else 0)
    return {
        "id": record.id,
        "status": record.status,
        "done": done,
        "total": total,
        "percent": shown,
        "seconds_left": left,
        "converted": record.converted,
        "message": record.message,
        "finished": not record.active,
    }
