"""Mailings: e-mail templates, a mailing to a saved view of contacts, one recipient row per contact, and the
addresses that opted out."""

from __future__ import annotations

import datetime as dt

from flask_appbuilder import Model
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.system import utcnow

#: What a mailing goes through (``status``).
MAILING_STATUSES = ("draft", "sending", "paused", "cancelled", "done")
#: What happens to one recipient (``MailRecipient.state``).
RECIPIENT_STATES = ("queued", "sending", "sent", "failed", "skipped", "held_out", "unknown")


class MailTemplate(Model):
    __tablename__ = "tabula_mail_template"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    subject: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    html: Mapped[str] = mapped_column(Text, nullable=False, default="")
    #: The plain-text part as edited; empty: generated from the HTML.
    text: Mapped[str] = mapped_column(Text, nullable=False, default="")
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("ab_user.id", ondelete="SET NULL"), index=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow
    )


class Mailing(Model):
    """One campaign. The template is copied in when sending starts (a later edit of the template changes
    no message of a mailing under way); the audience is the saved view's state as of then."""

    __tablename__ = "tabula_mailing"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    template_id: Mapped[int | None] = mapped_column(
        ForeignKey("tabula_mail_template.id", ondelete="SET NULL"), index=True
    )
    view_id: Mapped[int | None] = mapped_column(
        ForeignKey("tabula_saved_view.id", ondelete="SET NULL"), index=True
    )
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("ab_user.id", ondelete="SET NULL"), index=True)
    sender: Mapped[str] = mapped_column(String(320), nullable=False, default="")
    reply_to: Mapped[str] = mapped_column(String(320), nullable=False, default="")
    subject: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    html: Mapped[str] = mapped_column(Text, nullable=False, default="")
    text: Mapped[str] = mapped_column(Text, nullable=False, default="")
    #: Share of the audience held out as the control group (0 to 0.5), and the seed that chose them.
    control_share: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    seed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    #: Messages per second and per hour, across all workers (0: no limit).
    rate_per_second: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    rate_per_hour: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    #: What counts as converting (either, deal_won, invoice_paid), and within how many days of the start.
    conversion: Mapped[str] = mapped_column(String(16), nullable=False, default="either")
    conversion_days: Mapped[int] = mapped_column(Integer, nullable=False, default=30)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="draft", index=True)
    #: How many contacts each rule left out when the audience was built: {"no_consent": n, ...}.
    exclusions: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    message: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class MailRecipient(Model):
    """One contact of a mailing. ``claim`` is the sender holding it (a queued row being worked on);
    ``sending`` is committed before the message goes out, ``sent`` after: a row found ``sending`` once its
    sender is gone may or may not have been mailed, and becomes ``unknown`` (never sent again by itself)."""

    __tablename__ = "tabula_mail_recipient"
    __table_args__ = (
        UniqueConstraint("mailing_id", "contact_id", name="uq_tabula_mail_recipient_contact"),
        Index("ix_tabula_mail_recipient_mailing_state", "mailing_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailing_id: Mapped[int] = mapped_column(
        ForeignKey("tabula_mailing.id", ondelete="CASCADE"), nullable=False
    )
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("crm_contact.id", ondelete="CASCADE"), nullable=False, index=True
    )
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    claim: Mapped[str | None] = mapped_column(String(64), index=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: The outbound e-mail activity written into the contact's history (once, after sending).
    logged: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class MailOptOut(Model):
    """An address that asked for no more mailings (normalised: trimmed, lower case)."""

    __tablename__ = "tabula_mail_opt_out"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), nullable=False, unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    #: one_click (the mail client's button), link (the confirmation page), admin ...
    source: Mapped[str] = mapped_column(String(32), nullable=False, default="")
    mailing_id: Mapped[int | None] = mapped_column(ForeignKey("tabula_mailing.id", ondelete="SET NULL"))


#: The automatic mailings an admin can switch on.
AUTOMATION_KINDS = ("birthday", "overdue_invoice", "task_reminder")


class MailAutomation(Model):
    """An automatic mailing run by the scheduler: birthday greetings, overdue-invoice reminders (first
    ``first_after_days`` after the due date, then every ``every_days`` until paid), task reminders."""

    __tablename__ = "tabula_mail_automation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    template_id: Mapped[int | None] = mapped_column(
        ForeignKey("tabula_mail_template.id", ondelete="SET NULL"), index=True
    )
    #: Whose view of the records it reads (the admin who configured it).
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("ab_user.id", ondelete="SET NULL"), index=True)
    first_after_days: Mapped[int] = mapped_column(Integer, nullable=False, default=3)
    every_days: Mapped[int] = mapped_column(Integer, nullable=False, default=7)
    last_run_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class MailAutomationLog(Model):
    """One message of an automatic mailing: at most one per (automation, record, step), whoever runs it and
    however often (the unique constraint decides which run sends it). ``sending`` is committed before the
    SMTP call, ``sent`` after; a row left ``sending`` is never sent again by itself."""

    __tablename__ = "tabula_mail_automation_log"
    __table_args__ = (
        UniqueConstraint("automation_id", "record_id", "step", name="uq_tabula_mail_automation_log_step"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    automation_id: Mapped[int] = mapped_column(
        ForeignKey("tabula_mail_automation.id", ondelete="CASCADE"), nullable=False
    )
    record_id: Mapped[int] = mapped_column(Integer, nullable=False)
    #: Which occasion: the year of a birthday, the reminder number of an invoice, the reminder time of a task.
    step: Mapped[str] = mapped_column(String(40), nullable=False)
    email: Mapped[str] = mapped_column(String(320), nullable=False, default="")
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="sending")
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
