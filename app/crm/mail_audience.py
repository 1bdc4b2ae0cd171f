"""Who a mailing goes to: the contacts of a saved view the owner may mail, less those without e-mail consent,
opted out, with an invalid address, or repeating an address already in; a seeded share held out as the
control group. Each exclusion is counted (shown before sending and kept with the mailing)."""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.crm.mail_render import normalise_email
from app.extensions import db
from custom_fields import records, saved_views
from custom_fields.access import Actor
from custom_fields.query import QueryDenied, QueryError, TableQuery
from models import Mailing, MailOptOut, MailRecipient, SavedView

EXCLUSIONS = ("no_consent", "opted_out", "invalid", "duplicate")


class AudienceError(QueryError):
    """An audience that cannot be built; the message is for the user."""

    status = 422


@dataclass
class Audience:
    """The contacts to mail (and to hold out), with the count of each exclusion."""

    recipients: list[tuple[int, str, bool]] = field(default_factory=list)  # contact, e-mail, held out
    counts: Counter = field(default_factory=Counter)

    def summary(self) -> dict[str, int]:
        held = sum(1 for r in self.recipients if r[2])
        return {
            "matched": self.counts["matched"],
            **{name: self.counts[name] for name in EXCLUSIONS},
            "held_out": held,
            "to_send": len(self.recipients) - held,
        }


def mailing_query(actor: Actor) -> TableQuery:
    """The contacts ``actor`` may mail: the *mail* right on contacts decides who may send; their read scope
    decides which rows."""
    query = TableQuery("contacts", actor)
    if not query.rights.can("mail"):
        raise QueryDenied(_("You may not send mailings to contacts."))
    names = {c.name for c in query.columns}
    if not {"email", "email_consent"} <= names:
        raise AudienceError(
            _("Mailing needs the contacts' e-mail and e-mail consent fields, hidden from you.")
        )
    return query


def view_of(view_id: Any, actor: Actor) -> SavedView:
    return saved_views.get("contacts", view_id, actor)


#: An unquoted ASCII local part (RFC 5322's dot-atom): email-validator takes each of at most 64 characters.
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def valid_email(address: str) -> bool:
    """email-validator's verdict (syntax only, no DNS). A plain ASCII address has its domain checked once
    per domain: an audience of thousands mostly shares a few domains, and the domain is most of the check."""
    local, at, domain = address.rpartition("@")
    if (
        at
        and address.isascii()
        and len(address) <= 254
        and len(local) <= 64
        and _PLAIN_LOCAL.fullmatch(local)
    ):
        return _valid_domain(domain)
    return _validated(address)


@functools.lru_cache(maxsize=4096)
def _valid_domain(domain: str) -> bool:
    return _validated(f"a@{domain}")


def _validated(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def held_out(seed: int, contact_id: int, share: float) -> bool:
    """Whether the contact is in the control group: a hash of the seed and the contact, so the same mailing
    holds out the same contacts however the audience is read."""
    if share <= 0:
        return False
    digest = hashlib.sha256(f"{seed}:{contact_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def _opted_out(emails: set[str]) -> set[str]:
    if not emails:
        return set()
    statement = select(MailOptOut.email).where(MailOptOut.email.in_(sorted(emails)))
    return set(db.session.scalars(statement))


def _rows(view: SavedView, actor: Actor) -> Iterator[list[dict[str, Any]]]:
    state = saved_views.applied(view, actor)
    query = mailing_query(actor).where(state.get("filter")).search(state.get("q") or "")
    yield from query.fields("id", "email", "email_consent").order_by("id").batches(2000)


def build(view: SavedView, actor: Actor, seed: int, share: float) -> Audience:
    audience = Audience()
    seen: set[str] = set()
    for batch in _rows(view, actor):
        addresses = {normalise_email(r.get("email")) for r in batch}
        opted = _opted_out(addresses - {""})
        for row in batch:
            audience.counts["matched"] += 1
            email = normalise_email(row.get("email"))
            if not row.get("email_consent"):
                audience.counts["no_consent"] += 1
            elif not email or not valid_email(email):
                audience.counts["invalid"] += 1
            elif email in opted:
                audience.counts["opted_out"] += 1
            elif email in seen:
                audience.counts["duplicate"] += 1
            else:
                seen.add(email)
                audience.recipients.append((row["id"], email, held_out(seed, row["id"], share)))
    return audience


def create_recipients(mailing: Mailing, audience: Audience) -> int:
    """One row per recipient, in bulk (the unique (mailing, contact) constraint refuses a second); the
    control group as ``held_out``. Flushes; the caller commits."""
    rows = [
        {
            "mailing_id": mailing.id,
            "contact_id": contact_id,
            "email": email,
            "state": "held_out" if out else "queued",
            "reason": "",
            "attempts": 0,
            "logged": False,
        }
        for contact_id, email, out in audience.recipients
    ]
    records.insert_rows(MailRecipient.__table__, rows)  # COPY on PostgreSQL
    return len(rows)


def opted_out_among(emails: set[str]) -> set[str]:
    """Those of ``emails`` (as stored: normalised) that opted out."""
    return _opted_out(emails)


def is_opted_out(email: str) -> bool:
    return bool(_opted_out({normalise_email(email)}))


def opt_out(email: str, source: str, mailing_id: int | None) -> bool:
    """Record that ``email`` wants no more mailings (once; a repeat keeps the first date). Commits."""
    address = normalise_email(email)
    if not address or is_opted_out(address):
        return False
    if mailing_id is not None and db.session.get(Mailing, mailing_id) is None:
        mailing_id = None
    db.session.add(MailOptOut(email=address[:320], source=source[:32], mailing_id=mailing_id))
    try:
        db.session.commit()
    except IntegrityError:  # two clicks at once: the other one recorded it
        db.session.rollback()
        return False
    return True
