"""Mailings: create one from a template and a saved view of contacts, start it (the audience becomes one
recipient row each, senders go to the queue), pause, resume, cancel, send again, and its progress.

The sending itself is ``jobs.mail_sender``; who may send, and to which rows, is ``app.crm.mail_audience``.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
from typing import Any

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import func, select, update

from app.crm import mail_audience, mail_render, mail_results
from app.extensions import db
from app.redis_client import redis_connection
from custom_fields.access import Actor, is_admin
from custom_fields.core import N_
from custom_fields.query import QueryDenied, QueryError
from jobs import mail_sender
from jobs.runtime import app_job
from models import JobRun, JobStatus, Mailing, MailOptOut, MailRecipient, MailTemplate
from models.system import utcnow

NAME_LENGTH = 200
MAX_CONTROL_SHARE = 0.5
NO_SERVER = mail_sender.NO_SERVER
RUNS_PREFIX = "tabula:mail:runs:"
#: How often ``tabula cron`` looks for mailings whose senders all died.
STALLED_SCHEDULE = "* * * * *"
TAKEN_UP = N_(
    "A worker stopped while sending; the check that runs every minute took the mailing up again. A message "
    "that may or may not have arrived is listed as unknown: check it before sending it again."
)
STALLED = N_(
    "No sender is working on this mailing (a worker stopped): it is taken up again automatically within a "
    "minute or two."
)


class MailingRefused(QueryError):  # noqa: N818 (a refusal, as QueryDenied)
    """A mailing request refused; the message is for the user."""

    status = 422


class MailingNotFound(MailingRefused):  # noqa: N818 (a refusal)
    status = 404


@app_job
def send_mailing(run: JobRun, mailing_id: int) -> dict:
    return mail_sender.run(mailing_id)


def mail_server_configured() -> bool:
    return bool(current_app.config["SMTP_CONFIGURED"])


# --- templates ----------------------------------------------------------------------------------------------


def _name(raw: Any) -> str:
    name = " ".join(str(raw or "").split())
    if not name:
        raise MailingRefused(_("Give it a name."))
    if len(name) > NAME_LENGTH:
        raise MailingRefused(_("A name has at most %(n)d characters.", n=NAME_LENGTH))
    return name


def may_change(owner_id: int | None, actor: Actor) -> bool:
    return is_admin(actor) or (owner_id is not None and owner_id == actor.user_id)


def save_template(actor: Actor, values: dict[str, Any], template_id: Any = None) -> MailTemplate:
    mail_audience.mailing_query(actor)  # only those who may mail keep templates
    subject, html, text = (str(values.get(k) or "") for k in ("subject", "html", "text"))
    if len(subject) > 500:
        raise MailingRefused(_("A subject has at most %(n)d characters.", n=500))
    mail_render.check(subject, html, text)
    if template_id is None:
        template = MailTemplate(owner_id=actor.user_id, version=1)
        db.session.add(template)
    else:
        template = get_template(template_id, actor)
        if not may_change(template.owner_id, actor):
            raise QueryDenied(_("Only its owner or an admin may change it."))
        template.version += 1
    template.name = _name(values.get("name"))
    template.subject, template.html, template.text = subject, html, text
    db.session.commit()
    return template


def _id(raw: Any) -> int:
    if (
        isinstance(raw, bool)
        or not isinstance(raw, int | str)
        or not str(raw).isdecimal()
        or len(str(raw)) > 12
    ):
        raise MailingNotFound(_("Not found."))
    return int(raw)


def get_template(template_id: Any, actor: Actor) -> MailTemplate:
    mail_audience.mailing_query(actor)
    template = db.session.get(MailTemplate, _id(template_id))
    if template is None:
        raise MailingNotFound(_("Not found."))
    return template


# --- mailings -----------------------------------------------------------------------------------------------


def _number(raw: Any, low: float, high: float, message: str) -> float:
    try:
        value = float(str(raw if raw not in (None, "") else 0).replace(",", "."))
    except ValueError:
        raise MailingRefused(message) from None
    if not math.isfinite(value) or not low <= value <= high:
        raise MailingRefused(message)
    return value


def create(actor: Actor, values: dict[str, Any]) -> Mailing:
    """A draft mailing (nothing is sent until ``start``)."""
    mail_audience.mailing_query(actor)
    template = get_template(values.get("template_id"), actor)
    view = mail_audience.view_of(values.get("view_id"), actor)
    share = (
        _number(
            values.get("control_percent"),
            0,
            MAX_CONTROL_SHARE * 100,
            _("The control group is from 0 to 50 percent."),
        )
        / 100
    )
    per_second = _number(
        values.get("rate_per_second"), 0, 10_000, _("Messages per second: from 0 (no limit) to 10000.")
    )
    per_hour = int(
        _number(
            values.get("rate_per_hour"),
            0,
            10_000_000,
            _("Messages per hour: a whole number from 0 (no limit)."),
        )
    )
    conversion = str(values.get("conversion") or "either")
    if conversion not in mail_results.CONVERSIONS:
        raise MailingRefused(_("Choose what counts as a conversion."))
    days = int(_number(values.get("conversion_days") or 30, 1, 3650,
                       _("Conversion window: from 1 to 3650 days.")))  # fmt: skip
    sender = " ".join(str(values.get("sender") or "").split()) or current_app.config["MAIL_FROM"]
    # The configured MAIL_FROM is taken as it is (crm@localhost in the embedded defaults).
    if sender != current_app.config["MAIL_FROM"] and not mail_audience.valid_email(
        mail_render.parseaddr_email(sender)
    ):
        raise MailingRefused(_("The sender needs a valid e-mail address."))
    seed_raw = values.get("seed")
    seed = (
        int(seed_raw)
        if isinstance(seed_raw, int | str) and str(seed_raw).isdecimal() and len(str(seed_raw)) < 10
        else secrets.randbelow(2**31)
    )
    mailing = Mailing(
        name=_name(values.get("name")),
        template_id=template.id,
        view_id=view.id,
        owner_id=actor.user_id,
        sender=sender[:320],
        reply_to=str(values.get("reply_to") or "")[:320],
        control_share=share,
        seed=seed,
        rate_per_second=per_second,
        rate_per_hour=per_hour,
        conversion=conversion,
        conversion_days=days,
        status="draft",
        exclusions={},
    )
    db.session.add(mailing)
    db.session.commit()
    return mailing


def get(mailing_id: Any, actor: Actor) -> Mailing:
    """A mailing the actor may see: their own, or any for an admin."""
    mailing = db.session.get(Mailing, _id(mailing_id))
    if mailing is None or not may_change(mailing.owner_id, actor):
        raise MailingNotFound(_("Not found."))
    return mailing


def preview(mailing: Mailing, actor: Actor) -> dict[str, int]:
    """The audience's counts as sending would find them now (nothing is written)."""
    if mailing.view_id is None:
        raise MailingRefused(_("The mailing's saved view was deleted."))
    view = mail_audience.view_of(mailing.view_id, actor)
    return mail_audience.build(view, actor, mailing.seed, mailing.control_share).summary()


def start(mailing: Mailing, actor: Actor) -> Mailing:
    """Build the audience (one recipient row each, the control group held out) and start the senders."""
    if not mail_server_configured():
        raise MailingRefused(_(NO_SERVER))
    if mailing.status != "draft":
        raise MailingRefused(_("This mailing has already started."))
    template = db.session.get(MailTemplate, mailing.template_id) if mailing.template_id else None
    if template is None:
        raise MailingRefused(_("The mailing's template was deleted."))
    if mailing.view_id is None:
        raise MailingRefused(_("The mailing's saved view was deleted."))
    view = mail_audience.view_of(mailing.view_id, actor)
    audience = mail_audience.build(view, actor, mailing.seed, mailing.control_share)
    claimed = mail_sender.write(
        update(Mailing).where(Mailing.id == mailing.id, Mailing.status == "draft").values(status="sending")
    ).rowcount
    if claimed != 1:
        db.session.rollback()
        raise MailingRefused(_("This mailing has already started."))
    mailing.subject, mailing.html, mailing.text = template.subject, template.html, template.text
    mailing.exclusions = audience.summary()
    mailing.started_at = utcnow()
    mail_audience.create_recipients(mailing, audience)
    db.session.commit()
    enqueue_senders(mailing, actor)
    return mailing


def enqueue_senders(mailing: Mailing, actor: Actor | None = None) -> None:
    from jobs.queues import enqueue

    config = current_app.config
    runs = []
    for _n in range(config["TABULA_MAIL_SENDERS"]):
        run = enqueue(
            "mailing",
            send_mailing,
            mailing.id,
            user_id=actor.user_id if actor else mailing.owner_id,
            queue=config["TABULA_MAIL_QUEUE"],
            timeout=24 * 3600,
        )
        runs.append(run.id)
    if runs:
        key = f"{RUNS_PREFIX}{mailing.id}"
        redis_connection().sadd(key, *runs)
        redis_connection().expire(key, 7 * 24 * 3600)


def stalled(mailing_id: int) -> bool:
    """A mailing still sending that no sender works on: none holds a live lease, none waits in the queue
    (or has only just started), yet recipients are left."""
    if mail_sender.live_senders(mailing_id):
        return False
    run_ids = [int(i) for i in redis_connection().smembers(f"{RUNS_PREFIX}{mailing_id}")]
    if run_ids:
        lease = current_app.config["TABULA_MAIL_LEASE_SECONDS"]
        recent = utcnow() - dt.timedelta(seconds=lease)
        for run in db.session.scalars(select(JobRun).where(JobRun.id.in_(run_ids))):
            started = run.started_at
            if started is not None and started.tzinfo is None:
                started = started.replace(tzinfo=dt.UTC)
            if run.status == JobStatus.queued or (
                run.status == JobStatus.running and (started is None or started > recent)
            ):
                return False
    found = mail_sender.counts(mailing_id)
    return found["queued"] + found["sending"] > 0


def take_up_stalled() -> list[int]:
    """What ``tabula cron`` runs every minute: each mailing whose senders all died (a worker killed, a
    machine gone) without anyone pressing Resume is taken up again: the dead senders' claims are settled
    from their journals (a message under way becomes unknown, never sent again by itself) and new senders
    are queued; the mailing says so. Returns the ids of the mailings taken up."""
    taken = []
    sending = db.session.scalars(select(Mailing.id).where(Mailing.status == "sending")).all()
    for mailing_id in sending:
        if not stalled(mailing_id):
            continue
        mail_sender.recover(mailing_id)
        mailing = db.session.get(Mailing, mailing_id)
        mailing.message = TAKEN_UP
        db.session.commit()
        enqueue_senders(mailing)
        taken.append(mailing_id)
    return taken


def scheduled_take_up() -> list[int]:
    """What the cron scheduler enqueues (no JobRun of its own: it would fill the Background jobs list)."""
    from jobs.runtime import worker_app

    with worker_app().app_context():
        return take_up_stalled()


def _move(mailing: Mailing, allowed: tuple[str, ...], to: str) -> Mailing:
    moved = mail_sender.write(
        update(Mailing).where(Mailing.id == mailing.id, Mailing.status.in_(allowed)).values(status=to)
    ).rowcount
    db.session.commit()
    db.session.refresh(mailing)
    if moved != 1:
        raise MailingRefused(_("Not possible in this mailing's state."))
    return mailing


def pause(mailing: Mailing) -> Mailing:
    return _move(mailing, ("sending",), "paused")


def resume(mailing: Mailing, actor: Actor) -> Mailing:
    """Senders start again; the claims of senders that died are freed first (their rows left *sending*
    become unknown)."""
    if not mail_server_configured():
        raise MailingRefused(_(NO_SERVER))
    mail_sender.recover(mailing.id)
    if mailing.status == "paused":
        _move(mailing, ("paused",), "sending")
    elif mailing.status != "sending":
        raise MailingRefused(_("Not possible in this mailing's state."))
    enqueue_senders(mailing, actor)
    return mailing


def cancel(mailing: Mailing) -> Mailing:
    _move(mailing, ("draft", "sending", "paused"), "cancelled")
    mail_sender.write(
        update(MailRecipient)
        .where(MailRecipient.mailing_id == mailing.id, MailRecipient.state == "queued")
        .values(state="skipped", reason="cancelled", claim=None)
    )
    mailing.finished_at = utcnow()
    db.session.commit()
    return mailing


def send_again(mailing: Mailing, actor: Actor, recipient_ids: list[int] | None = None) -> int:
    """A deliberate decision: the chosen *unknown* recipients (all of them when none is chosen) are queued
    again. Returns how many."""
    if not mail_server_configured():
        raise MailingRefused(_(NO_SERVER))
    if mailing.status not in ("sending", "paused", "done"):
        raise MailingRefused(_("Not possible in this mailing's state."))
    table = MailRecipient
    chosen = (table.mailing_id == mailing.id) & (table.state == "unknown")
    if recipient_ids is not None:
        chosen = chosen & table.id.in_(sorted({int(i) for i in recipient_ids}))
    again = mail_sender.write(
        update(table).where(chosen).values(state="queued", reason="", claim=None)
    ).rowcount
    db.session.commit()
    if again and mailing.status == "done":
        _move(mailing, ("done",), "sending")
    if again and mailing.status == "sending":
        enqueue_senders(mailing, actor)
    return again


def progress(mailing: Mailing) -> dict[str, Any]:
    """Counts by state, the rate of the last minute and the time left at that rate."""
    found = mail_sender.counts(mailing.id)
    left = found["queued"] + found["sending"]
    per_minute = mail_sender.sent_since(mailing.id, 60)
    rate = per_minute / 60
    return {
        "id": mailing.id,
        "status": mailing.status,
        "counts": found,
        "left": left,
        "rate": round(rate, 2),
        "seconds_left": round(left / rate) if rate > 0 and left else None,
        "exclusions": mailing.exclusions or {},
        "opt_outs": db.session.scalar(
            select(func.count()).select_from(MailOptOut).where(MailOptOut.mailing_id == mailing.id)
        ),
        "message": STALLED if mailing.status == "sending" and stalled(mailing.id) else mailing.message,
        "server": mail_server_configured(),
    }


def listed(actor: Actor) -> list[Mailing]:
    statement = select(Mailing).order_by(Mailing.id.desc()).limit(200)
    if not is_admin(actor):
        statement = statement.where(Mailing.owner_id == actor.user_id)
    return list(db.session.scalars(statement))
