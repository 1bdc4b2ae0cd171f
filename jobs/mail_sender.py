"""The sending loop of a mailing: claim a batch of recipients, send each over one reused SMTP connection,
at the mailing's rate, exactly once.

Each recipient goes queued -> sending (committed before the SMTP call) -> sent (committed after). A sender
holds its claim under a lease in Redis, renewed with every message; a claim whose lease has lapsed belongs
to a sender that died: its queued rows are claimed again, and a row it left *sending* becomes ``unknown``
(it may or may not have been delivered: never sent again by itself, only by a deliberate "send again").
"""

from __future__ import annotations

import datetime as dt
import functools
import smtplib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from flask import current_app
from sqlalchemy import exists, func, select, update

from app.crm import mail_audience, mail_render
from app.extensions import db
from app.mailer import AnswerLost, SmtpLink, Stopped
from app.redis_client import redis_connection
from custom_fields import records
from custom_fields.access import Actor
from custom_fields.core import N_
from custom_fields.records import RecordError
from models import Mailing, MailRecipient
from models.system import utcnow

LEASE_PREFIX = "tabula:mail:claim:"
RATE_PREFIX = "tabula:mail:rate:"
#: Rows a claim takes: the claim, the outcomes and the history lines are written once per batch (about half a
#: second of sending), so fewer, larger batches cost less; 250 against 100 made a 10,000-contact mailing about
#: 7 % faster (bench/mailing.py).
BATCH = 250
UNKNOWN_REASON = "the sender stopped while sending: check whether it arrived before sending again"
UNKNOWN_AFTER_DATA = "the connection was lost after the message was handed over: check whether it arrived"
NO_SERVER = N_("No mail server is configured: set SMTP_HOST (and SMTP_PORT, SMTP_USER ...) and restart.")


@dataclass(frozen=True)
class SendFailure:
    """An SMTP answer or a lost connection: ``temporary`` ones are tried again; ``unknown`` ones (the
    connection lost after the whole message was handed over, before the server's answer) may have been
    delivered: never tried again by themselves."""

    reason: str
    temporary: bool
    unknown: bool = False
    #: Not sent because the sender lost its lease: the row is left to whoever settles its claim.
    stopped: bool = False


def classify(exc: Exception) -> SendFailure:
    """4xx answers and lost connections are temporary; 5xx answers (a refused address) are permanent; a
    connection lost after the message was handed over is unknown."""
    if isinstance(exc, Stopped):
        return SendFailure(str(exc), False, stopped=True)
    if isinstance(exc, AnswerLost):
        return SendFailure(f"{UNKNOWN_AFTER_DATA}: {exc}"[:300], False, unknown=True)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, said = next(iter(exc.recipients.values()), (550, b""))
        return SendFailure(f"{code} {_text(said)}".strip(), 400 <= int(code) < 500)
    if isinstance(exc, smtplib.SMTPResponseException):
        return SendFailure(f"{exc.smtp_code} {_text(exc.smtp_error)}".strip(), 400 <= exc.smtp_code < 500)
    if isinstance(exc, smtplib.SMTPServerDisconnected | OSError):
        return SendFailure(f"connection lost: {exc}"[:300], True)
    return SendFailure(f"{exc.__class__.__name__}: {exc}"[:300], False)


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def write(statement: Any) -> Any:
    """Runs an UPDATE of the mailing tables (the objects the session holds are not brought up to date)."""
    return db.session.execute(statement, execution_options={"synchronize_session": False})


# --- claims and the journal --------------------------------------------------------------------------------


def _claim(mailing_id: int, token: str, size: int) -> list[int]:
    """Take up to ``size`` free queued rows for this sender and mark them ``sending`` in one transaction:
    ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (other senders skip the rows being taken); on SQLite the UPDATE
    itself holds the database's write lock. Which of them went out is kept in the sender's journal."""
    free = (
        select(MailRecipient.id)
        .where(
            MailRecipient.mailing_id == mailing_id,
            MailRecipient.state == "queued",
            MailRecipient.claim.is_(None),
        )
        .order_by(MailRecipient.id)
        .limit(size)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        free = free.with_for_update(skip_locked=True)
    # The ids first, then the UPDATE: inside an UPDATE, PostgreSQL may run a LIMIT ... SKIP LOCKED subquery
    # more than once (each time skipping the rows it has just locked itself) and take far more than ``size``.
    ids = list(db.session.scalars(free))
    if ids:
        write(
            update(MailRecipient)
            .where(MailRecipient.id.in_(ids), MailRecipient.claim.is_(None), MailRecipient.state == "queued")
            .values(claim=token, state="sending")
        )
    db.session.commit()
    if not ids:
        return []
    mine = select(MailRecipient.id).where(
        MailRecipient.id.in_(ids), MailRecipient.claim == token, MailRecipient.state == "sending"
    )
    return list(db.session.scalars(mine.order_by(MailRecipient.id)))


#: One step of a sender, atomic in Redis: while its lease lives, renew it, write the outcomes of the messages
#: just sent into its journal and name the message about to go out (``inflight``); 0 when the lease is gone
#: (the sender was given up for dead: it must stop).
_STEP = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
if ARGV[2] == '' then redis.call('HDEL', KEYS[2], 'inflight')
else redis.call('HSET', KEYS[2], 'inflight', ARGV[2]) end
redis.call('EXPIRE', KEYS[2], 604800)
return 1
"""
JOURNAL_PREFIX = "tabula:mail:journal:"
SENDERS_PREFIX = "tabula:mail:senders:"
JOURNAL_SECONDS = 7 * 24 * 3600


class Journal:
    """What one sender has done with the rows it marked ``sending``, kept in Redis (one round trip a message
    instead of a database commit): each row's outcome once the server answered, and the one message under
    way. The database takes the outcomes once per batch. A sender that dies leaves its journal: the rows it
    names sent are sent, the one under way is unknown, the rest never went out and are queued again. Without
    a journal (Redis lost it) every row it left ``sending`` is unknown: no message is ever sent twice."""

    def __init__(self, token: str, mailing_id: int) -> None:
        self.token = token
        self.lease_key = LEASE_PREFIX + token
        self.key = JOURNAL_PREFIX + token
        self.lease_ms = int(current_app.config["TABULA_MAIL_LEASE_SECONDS"] * 1000)
        self.redis = redis_connection()
        self.pending: list[str] = []
        self.alive = True
        self.link: Any = None  # the connection the steps go over
        self.waiting = False
        self.redis.set(self.lease_key, mailing_id, px=self.lease_ms)
        self.redis.sadd(SENDERS_PREFIX + str(mailing_id), token)
        self.redis.expire(SENDERS_PREFIX + str(mailing_id), JOURNAL_SECONDS)

    def open(self) -> None:
        """Before a batch is claimed: the journal exists (empty) while its rows are ``sending``."""
        self.redis.hset(self.key, "open", "1")
        self.redis.expire(self.key, JOURNAL_SECONDS)

    def done(self, recipient_id: int, outcome: str) -> None:
        self.pending += [str(recipient_id), outcome]

    def step(self, inflight: int | None) -> bool:
        """Write the outcomes so far and name the next message (None: none); False once the lease is lost."""
        self.send_step(inflight)
        return self.confirm()

    def send_step(self, inflight: int | None) -> None:
        """The step goes to Redis without waiting for its answer (read by ``confirm``, before the message's
        DATA: the round trip overlaps the SMTP server's answers to MAIL and RCPT)."""
        self.confirm()  # an answer still unread first
        if not self.alive:
            return
        if self.link is None:
            self.link = self.redis.connection_pool.get_connection()
        args = [self.lease_ms, "" if inflight is None else str(inflight), *self.pending]
        self.pending = []
        try:
            self.link.send_command("EVAL", _STEP, 2, self.lease_key, self.key, *args)
        except Exception:
            self._drop_link()
            raise
        self.waiting = True

    def confirm(self) -> bool:
        """The answer to the last step sent (or a renewed lease): False once the lease is lost."""
        if self.waiting:
            self.waiting = False
            try:
                self.alive = bool(self.link.read_response())
            except Exception:
                self.alive = False  # the step may or may not be in: its message is not sent
                self._drop_link()
                raise
            return self.alive
        return self.alive

    def _drop_link(self) -> None:
        if self.link is not None:
            self.link.disconnect()
            self.redis.connection_pool.release(self.link)
            self.link, self.waiting = None, False

    def confirm_or_renew(self) -> bool:
        """Before a message's DATA: the answer to its step on the first try, a renewed lease on later ones."""
        return self.confirm() if self.waiting else self.renew()

    def renew(self) -> bool:
        self.confirm()
        if self.alive:
            self.alive = bool(self.redis.pexpire(self.lease_key, self.lease_ms))
        return self.alive

    def close(self) -> None:
        """After the batch's outcomes are committed: the journal has nothing more to tell."""
        self.redis.delete(self.key)

    def end(self, mailing_id: int) -> None:
        if self.link is not None:
            try:
                self.confirm()
            finally:
                self.redis.connection_pool.release(self.link)
                self.link = None
        self.redis.delete(self.lease_key)
        self.redis.srem(SENDERS_PREFIX + str(mailing_id), self.token)


def sent_outcome(subject: str) -> str:
    return f"s {time.time():.3f} {subject}"


def _read_outcome(value: str) -> tuple[str, Any, str]:
    """A journal entry: ("sent", time, subject), ("failed", None, reason) or ("unknown", None, reason)."""
    kind, _sep, rest = value.partition(" ")
    if kind == "s":
        when, _sep, subject = rest.partition(" ")
        try:
            at = dt.datetime.fromtimestamp(float(when), dt.UTC)
        except ValueError:
            at = utcnow()
        return "sent", at, subject
    return ("unknown" if kind == "u" else "failed"), None, rest


def recover(mailing_id: int) -> dict[str, int]:
    """Claims whose sender is gone (its lease lapsed), settled from its journal: rows it sent are sent (and
    written into the history in the same transaction), rows it failed failed, the row under way ``unknown``,
    rows it never reached queued again; without a journal, every row it left ``sending`` is ``unknown``.
    Commits; returns how many rows went each way and how many dead senders were found."""
    claims = db.session.scalars(
        select(MailRecipient.claim)
        .distinct()
        .where(
            MailRecipient.mailing_id == mailing_id,
            MailRecipient.claim.is_not(None),
            MailRecipient.state.in_(("queued", "sending")),
        )
    ).all()
    redis = redis_connection()
    dead = [c for c in claims if not redis.exists(LEASE_PREFIX + c)]
    found = {"freed": 0, "unknown": 0, "sent": 0, "failed": 0, "dead": len(dead)}
    for token in dead:
        journal = {_text(k): _text(v) for k, v in redis.hgetall(JOURNAL_PREFIX + token).items()}
        mine = (MailRecipient.mailing_id == mailing_id) & (MailRecipient.claim == token)
        left = list(
            db.session.scalars(select(MailRecipient.id).where(mine, MailRecipient.state == "sending"))
        )
        unknown: list[int] = []
        again: list[int] = []
        sent: dict[int, tuple[dt.datetime, str]] = {}
        closed: list[tuple[int, str, str]] = []
        for recipient_id in left:
            entry = journal.get(str(recipient_id))
            if not journal or journal.get("inflight") == str(recipient_id):
                unknown.append(recipient_id)
            elif entry is None:
                again.append(recipient_id)
            else:
                kind, at, said = _read_outcome(entry)
                if kind == "sent":
                    sent[recipient_id] = (at, said)
                else:
                    closed.append((recipient_id, kind, said))

        subjects = {recipient_id: said for recipient_id, (_at, said) in sent.items()}
        settle = functools.partial(_settle_from_journal, mine, sent, closed, unknown, again)
        for name, number in _settled_with_history(settle, mailing_id, subjects).items():
            found[name] += number
        redis.delete(JOURNAL_PREFIX + token)
    return found


def _settle_from_journal(
    mine: Any,
    sent: dict[int, tuple[dt.datetime, str]],
    closed: list[tuple[int, str, str]],
    unknown: list[int],
    again: list[int],
) -> dict[str, int]:
    """A dead sender's rows (``mine``) as its journal tells: sent (at the time it wrote), failed or unknown
    (its reason), unknown (under way), queued again (never reached); its claim released."""
    counts = {"freed": 0, "unknown": 0, "sent": 0, "failed": 0}
    attempted = MailRecipient.attempts + 1
    for recipient_id, (at, _said) in sent.items():
        counts["sent"] += _settle(mine, [recipient_id], state="sent", sent_at=at, attempts=attempted)
    for recipient_id, kind, said in closed:
        counts["failed" if kind == "failed" else "unknown"] += _settle(
            mine, [recipient_id], state=kind, reason=said[:500], attempts=attempted
        )
    counts["unknown"] += _settle(mine, unknown, state="unknown", reason=UNKNOWN_REASON)
    counts["freed"] += _settle(mine, again, state="queued")
    counts["freed"] += write(
        update(MailRecipient).where(mine, MailRecipient.state == "queued").values(claim=None)
    ).rowcount
    return counts


def _settle(where: Any, ids: list[int], **values: Any) -> int:
    """Rows of ``ids`` still ``sending`` under the claim ``where`` names: set ``values``, claim released."""
    if not ids:
        return 0
    return write(
        update(MailRecipient)
        .where(where, MailRecipient.id.in_(ids), MailRecipient.state == "sending")
        .values(claim=None, **values)
    ).rowcount


def live_senders(mailing_id: int) -> int:
    """How many senders of the mailing hold a live lease now."""
    redis = redis_connection()
    tokens = [_text(t) for t in redis.smembers(SENDERS_PREFIX + str(mailing_id))]
    alive = sum(bool(redis.exists(LEASE_PREFIX + t)) for t in tokens)
    for token in tokens:  # forget the dead ones
        if not redis.exists(LEASE_PREFIX + token):
            redis.srem(SENDERS_PREFIX + str(mailing_id), token)
    return alive


# --- rate -----------------------------------------------------------------------------------------------


def _window_full(mailing_id: int, name: str, window: float, limit: int) -> float:
    """Counts one message in the current window shared by every sender; returns 0 when it fits, else the
    seconds until the next window."""
    now = time.time()
    slot = int(now // window)
    key = f"{RATE_PREFIX}{mailing_id}:{name}:{slot}"
    redis = redis_connection()
    count = redis.incr(key)
    if count == 1:
        redis.expire(key, int(window) + 2)
    return 0.0 if count <= limit else (slot + 1) * window - now + 0.001


#: Reserves the next slot of an evenly spaced stream (one message every ``interval`` seconds over all the
#: mailing's senders): returns how long to wait for it.
_NEXT_SLOT = """
local now = tonumber(ARGV[1])
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
redis.call('SET', KEYS[1], tostring(slot + tonumber(ARGV[2])), 'EX', 3600)
return tostring(slot - now)
"""


def _next_slot(mailing_id: int, interval: float) -> float:
    redis = redis_connection()
    waited = redis.eval(_NEXT_SLOT, 1, f"{RATE_PREFIX}{mailing_id}:slot", repr(time.time()), repr(interval))
    return float(waited)


def _sleep(seconds: float, still_sending: Callable[[], bool]) -> bool:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, 1.0))
        if left > 1.0 and not still_sending():
            return False
    return True


def wait_for_rate(mailing: Mailing | Plan, still_sending: Callable[[], bool]) -> bool:
    """Waits until the mailing's rates allow one more message: messages per second evenly spaced, per hour
    counted in the clock's hours, over all its senders. False when the mailing stopped meanwhile."""
    if mailing.rate_per_hour and mailing.rate_per_hour > 0:
        while (pause := _window_full(mailing.id, "h", 3600.0, mailing.rate_per_hour)) > 0:
            if not _sleep(pause, still_sending):
                return False
    if mailing.rate_per_second and mailing.rate_per_second > 0:
        pause = _next_slot(mailing.id, 1.0 / mailing.rate_per_second)
        if pause > 0 and not _sleep(pause, still_sending):
            return False
    return True


# --- sending --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0


def _status(mailing_id: int) -> str | None:
    return db.session.scalar(select(Mailing.status).where(Mailing.id == mailing_id))


def deliver(
    link: SmtpLink,
    message: EmailMessage | bytes,
    sender: str,
    email: str,
    keep_alive: Callable[[], bool] | None = None,
) -> SendFailure | None:
    """Sends with retries on temporary failures (growing pauses); None when the server took it.
    ``keep_alive`` (the sender's lease: the journal's step read back, or renewed) is asked before each
    DATA; once it is lost nothing more is handed over."""
    tries = current_app.config["TABULA_MAIL_RETRIES"]
    pause = current_app.config["TABULA_MAIL_RETRY_SECONDS"]
    for attempt in range(tries + 1):
        try:
            link.send(message, sender, email, keep_alive)
            return None
        except Exception as exc:  # noqa: BLE001 (every failure is classified and recorded)
            failure = classify(exc)
            if not failure.temporary or attempt == tries:
                return failure
            time.sleep(pause * 2**attempt)
    return None  # pragma: no cover


def send_one(rendered: mail_render.Rendered, sender: str, to: str) -> SendFailure | None:
    """One message outside any mailing ("send a test to me"), on a connection of its own."""
    link = SmtpLink(current_app.config)
    message = mail_render.build_message(
        rendered,
        sender=sender,
        to_email=to,
        msg_id=f"<tabula.test.{uuid.uuid4().hex}@tabula>",
        unsubscribe="",
    )
    try:
        return deliver(link, message, mail_render.parseaddr_email(sender), to)
    finally:
        link.close()


@dataclass(frozen=True)
class Plan:
    """The mailing as its senders use it, read once (the ORM object would be read again after each commit)."""

    id: int
    name: str
    subject: str
    html: str
    text: str
    sender: str
    envelope_from: str
    rate_per_second: float
    rate_per_hour: int
    shape: mail_render.MessageShape
    #: The merge fields the mailing's templates name (only those are read and shown).
    fields: set[tuple[str, str]] | None

    @classmethod
    def of(cls, mailing: Mailing) -> Plan:
        return cls(
            mailing.id,
            mailing.name,
            mailing.subject,
            mailing.html,
            mailing.text,
            mailing.sender,
            mail_render.parseaddr_email(mailing.sender),
            mailing.rate_per_second or 0.0,
            mailing.rate_per_hour or 0,
            mail_render.MessageShape(mailing.sender, mailing.reply_to),
            _fields(mailing),
        )


def _fields(mailing: Mailing) -> set[tuple[str, str]] | None:
    try:
        return mail_render.named_fields(mailing.subject, mailing.html, mailing.text)
    except mail_render.TemplateError:
        return None  # every field: rendering then says what is wrong, row by row


def run(mailing_id: int, link: SmtpLink | None = None) -> dict[str, Any]:
    """Send what is left of a mailing (several senders may run at once). Returns what this sender did."""
    mailing = db.session.get(Mailing, mailing_id)
    if mailing is None:
        return {"missing": True}
    if not current_app.config["SMTP_CONFIGURED"]:
        mailing.message = NO_SERVER
        db.session.commit()
        return {"no_server": True}
    recover(mailing_id)
    plan = Plan.of(mailing)
    actor = Actor.job_of(mailing.owner_id)
    journal = Journal(uuid.uuid4().hex, mailing_id)
    own_link = link is None
    link = link or SmtpLink(current_app.config)
    outcome = Outcome()
    try:
        while journal.alive and _status(mailing_id) == "sending":
            journal.open()
            batch = _claim(mailing_id, journal.token, batch_size(plan))
            if not batch:
                journal.close()
                if _wait_for_others(mailing_id, journal):
                    continue  # a dead sender's rows are free again
                break
            _send_batch(plan, batch, journal, link, actor, outcome)
        if journal.alive and _status(mailing_id) == "sending":
            _finish_if_done(mailing_id)
    finally:
        journal.end(mailing_id)
        if own_link:
            link.close()
    found = {"sent": outcome.sent, "failed": outcome.failed, "skipped": outcome.skipped}
    if outcome.unknown:
        found["unknown"] = outcome.unknown
    return found


def _wait_for_others(mailing_id: int, journal: Journal) -> bool:
    """Nothing left to claim: while other senders still hold rows ``sending``, wait (at most a lease and a
    half) for them to finish or for their leases to lapse; True as soon as a dead sender's rows are queued
    again (this sender takes them up), False when nothing is left for it."""
    lease = current_app.config["TABULA_MAIL_LEASE_SECONDS"]
    give_up = time.monotonic() + lease * 1.5
    others = (
        (MailRecipient.mailing_id == mailing_id)
        & (MailRecipient.state == "sending")
        & (MailRecipient.claim != journal.token)
    )
    while time.monotonic() < give_up and journal.renew() and _status(mailing_id) == "sending":
        if recover(mailing_id)["freed"]:
            return True
        if db.session.scalar(select(MailRecipient.id).where(others).limit(1)) is None:
            db.session.commit()
            return False
        db.session.commit()
        time.sleep(min(1.0, lease / 4))
    return False


def batch_size(plan: Plan) -> int:
    """``BATCH`` rows a claim; fewer under a rate per second (about two seconds' worth), so that the progress
    the database shows moves at least every few seconds."""
    if plan.rate_per_second and plan.rate_per_second > 0:
        return max(1, min(BATCH, int(plan.rate_per_second * 2)))
    return BATCH


class _Watch:
    """What a sender re-reads while it works, at most every ``FRESH`` seconds: whether the mailing still
    sends, which of the batch's addresses opted out meanwhile; and its lease, renewed before it lapses."""

    FRESH = 1.0

    def __init__(self, mailing_id: int, journal: Journal, emails: set[str]) -> None:
        self.mailing_id, self.journal, self.emails = mailing_id, journal, emails
        self.lease = current_app.config["TABULA_MAIL_LEASE_SECONDS"]
        self.read_at, self.renewed_at = float("-inf"), time.monotonic()
        self.sending, self.opted = True, set()

    def _read(self) -> None:
        now = time.monotonic()
        if now - self.read_at >= self.FRESH:
            self.sending = _status(self.mailing_id) == "sending"
            self.opted = mail_audience.opted_out_among(self.emails)
            db.session.commit()  # nothing waits in an open transaction while this sender sends
            self.read_at = now
        if now - self.renewed_at >= self.lease / 4:
            self.journal.renew()
            self.renewed_at = now

    def still_sending(self) -> bool:
        self._read()
        return self.sending and self.journal.alive

    def opted_out(self, email: str) -> bool:
        self._read()
        return email in self.opted


def _send_batch(
    plan: Plan,
    batch: list[int],
    journal: Journal,
    link: SmtpLink,
    actor: Actor,
    outcome: Outcome,
) -> None:
    """The batch's rows are ``sending`` (committed by the claim). Each message: its predecessor's outcome and
    its own id go into the journal (one Redis round trip), then the SMTP call. The outcomes reach the
    database in one transaction at the end of the batch; rows not reached go back to the queue."""
    rows = db.session.execute(
        select(MailRecipient.id, MailRecipient.contact_id, MailRecipient.email).where(
            MailRecipient.id.in_(batch)
        )
    ).all()
    values = mail_render.merge_values(actor, [r.contact_id for r in rows], plan.fields)
    db.session.commit()
    watch = _Watch(plan.id, journal, {r.email for r in rows})
    sent: dict[int, str] = {}
    closed: dict[int, tuple[str, str]] = {}  # id -> (state, reason) for failed, skipped, unknown
    for row in sorted(rows, key=lambda r: r.id):
        if not watch.still_sending() or not wait_for_rate(plan, watch.still_sending):
            break
        if watch.opted_out(row.email):
            closed[row.id] = ("skipped", "opted out")
            continue
        if row.contact_id not in values:
            closed[row.id] = ("skipped", "contact no longer reachable")
            continue
        unsubscribe = mail_render.unsubscribe_url(row.email, plan.id)
        try:
            rendered = mail_render.render(
                plan.subject, plan.html, plan.text, values[row.contact_id], unsubscribe
            )
            contact = values[row.contact_id]["contact"]
            message = plan.shape.bytes(
                rendered,
                to_email=row.email,
                to_name=contact.get("full_name") or "",
                msg_id=mail_render.message_id(plan.id, row.id, plan.sender),
                unsubscribe=unsubscribe,
            )
        except (mail_render.TemplateError, ValueError) as exc:
            closed[row.id] = ("failed", str(exc)[:500])
            continue
        journal.send_step(row.id)
        if not journal.alive:
            break  # given up for dead: whoever recovered the claim settles the rest
        failure = deliver(link, message, plan.envelope_from, row.email, journal.confirm_or_renew)
        if failure is not None and failure.stopped:
            break
        if failure is None:
            sent[row.id] = rendered.subject
            journal.done(row.id, sent_outcome(rendered.subject))
        else:
            state = "unknown" if failure.unknown else "failed"
            closed[row.id] = (state, failure.reason[:500])
            journal.done(row.id, f"{state[0]} {failure.reason[:500]}")
    journal.step(None)
    _record(plan, journal.token, batch, sent, closed, outcome)
    journal.close()


def _record(
    plan: Plan,
    token: str,
    batch: list[int],
    sent: dict[int, str],
    closed: dict[int, tuple[str, str]],
    outcome: Outcome,
) -> None:
    """A batch's outcomes and the history lines of the messages sent, in one transaction; only rows still
    ``sending`` under this sender's claim change (a sender given up for dead changes nothing: its claim was
    settled from its journal)."""
    mine = MailRecipient.claim == token

    def settle() -> dict[str, int]:
        counts = {"sent": 0, "failed": 0, "skipped": 0, "unknown": 0}
        attempted = MailRecipient.attempts + 1
        counts["sent"] += _settle(mine, sorted(sent), state="sent", sent_at=utcnow(), attempts=attempted)
        by_outcome: dict[tuple[str, str], list[int]] = {}
        for recipient_id, found in closed.items():
            by_outcome.setdefault(found, []).append(recipient_id)
        for (state, reason), ids in by_outcome.items():
            extra = {"attempts": attempted} if state != "skipped" else {}
            counts[state] += _settle(mine, ids, state=state, reason=reason, **extra)
        untouched = [i for i in batch if i not in sent and i not in closed]
        if untouched:
            cancelled = _status(plan.id) == "cancelled"
            _settle(
                mine,
                untouched,
                **({"state": "skipped", "reason": "cancelled"} if cancelled else {"state": "queued"}),
            )
        return counts

    for name, number in _settled_with_history(settle, plan.id, sent).items():
        setattr(outcome, name, getattr(outcome, name) + number)


def _settled_with_history(
    settle: Callable[[], dict[str, int]], mailing_id: int, subjects: dict[int, str]
) -> dict[str, int]:
    """``settle`` (the recipient rows' outcomes) and the activities of the messages sent (``subjects``) in
    one transaction: a sender that dies in between leaves neither, and its journal settles both. Activities
    the write path refuses (say the table gained a required field) are left out with a warning; the
    outcomes are committed all the same. Returns ``settle``'s counts."""
    try:
        with records.atomic():
            counts = settle()
            log_activities(mailing_id, subjects)
        return counts
    except RecordError as exc:
        current_app.logger.warning("mailing %s: activities not written: %s", mailing_id, exc)
    counts = settle()
    db.session.commit()
    return counts


def log_activities(mailing_id: int, subjects: dict[int, str]) -> int:
    """Each message sent (``subjects``: recipient id -> subject) becomes an outbound e-mail activity in the
    contact's history, written by the mailing's owner, in bulk; once: a row is marked logged (only if it was
    not) in the same transaction, whoever else logs the same rows at the same time. Flushes; the caller
    commits (inside ``records.atomic``); raises ``RecordError`` when the write path refuses them."""
    if not subjects:
        return 0
    rows = write(
        update(MailRecipient)
        .where(
            MailRecipient.id.in_(sorted(subjects)),
            MailRecipient.state == "sent",
            MailRecipient.logged.is_(False),
        )
        .values(logged=True)
        .returning(MailRecipient.id, MailRecipient.contact_id, MailRecipient.sent_at)
    ).all()
    if not rows:
        return 0
    mailing = db.session.get(Mailing, mailing_id)
    actor = Actor.job_of(mailing.owner_id)
    activities = [
        {
            "kind": "email",
            "direction": "outbound",
            "outcome": "done",
            "occurred_at": row.sent_at or utcnow(),
            "subject": subjects[row.id][:255],
            "contact_id": row.contact_id,
            "body": f"{mailing.name} (#{mailing.id})",
        }
        for row in sorted(rows, key=lambda r: r.id)
    ]
    records.create_many("activities", activities, actor)
    return len(rows)


def _finish_if_done(mailing_id: int) -> None:
    left = exists().where(
        MailRecipient.mailing_id == mailing_id, MailRecipient.state.in_(("queued", "sending"))
    )
    write(
        update(Mailing)
        .where(Mailing.id == mailing_id, Mailing.status == "sending", ~left)
        .values(status="done", finished_at=utcnow())
    )
    db.session.commit()


def counts(mailing_id: int) -> dict[str, int]:
    found = dict.fromkeys(("queued", "sending", "sent", "failed", "skipped", "held_out", "unknown"), 0)
    statement = (
        select(MailRecipient.state, func.count())
        .where(MailRecipient.mailing_id == mailing_id)
        .group_by(MailRecipient.state)
    )
    for state, number in db.session.execute(statement):
        found[state] = number
    return found


def sent_since(mailing_id: int, seconds: int) -> int:
    since = utcnow() - dt.timedelta(seconds=seconds)
    return (
        db.session.scalar(
            select(func.count()).where(
                MailRecipient.mailing_id == mailing_id,
                MailRecipient.state == "sent",
                MailRecipient.sent_at >= since,
            )
        )
        or 0
    )
