"""Core CRM tables. Their own columns are defined here; admins extend them with custom fields at run time,
and the same metadata-driven views serve them as serve custom tables (see ``custom_fields.core``, which
also says each column's field type, label and options).

Money is NUMERIC, never float. Choice columns store an option id (``custom_fields.core`` lists them).
Columns marked "derived" are computed by ``app.crm.derive`` inside the write path.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from flask_appbuilder import Model
from sqlalchemy import Boolean, Date, DateTime, ForeignKey, Index, Integer, Numeric, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from models.records import RecordColumns
from models.system import utcnow

MONEY = Numeric(18, 2)
PERCENT = Numeric(18, 2)  # the registry's percent column


def _link(table: str, *, parent: bool = False) -> Mapped:
    """A link column; a ``parent`` link's rows go with their parent when it is purged."""
    return mapped_column(ForeignKey(f"{table}.id", ondelete="CASCADE" if parent else "SET NULL"), index=True)


def _created() -> Mapped[dt.datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class Company(RecordColumns, Model):
    """A counterparty: customer, supplier, partner, competitor."""

    __tablename__ = "crm_company"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    kind: Mapped[str | None] = mapped_column(String(16), index=True)
    tax_id: Mapped[str | None] = mapped_column(String(20), index=True)
    is_foreign: Mapped[bool | None] = mapped_column(Boolean)  # its tax id need not be Russian
    industry: Mapped[str | None] = mapped_column(String(16))
    region: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    phone2: Mapped[str | None] = mapped_column(String(32), index=True)
    website: Mapped[str | None] = mapped_column(String(2048))
    address: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[str | None] = mapped_column(Text)
    #: derived: when its newest live activity happened (empty: never)
    last_activity_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    created_at: Mapped[dt.datetime] = _created()


class Contact(RecordColumns, Model):
    """A person, usually at a counterparty."""

    __tablename__ = "crm_contact"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    full_name: Mapped[str | None] = mapped_column(String(320))  # derived from the three parts
    first_name: Mapped[str] = mapped_column(String(100), nullable=False)
    middle_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    company_id: Mapped[int | None] = _link("crm_company")
    position: Mapped[str | None] = mapped_column(String(150))
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    email2: Mapped[str | None] = mapped_column(String(320), index=True)
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    mobile: Mapped[str | None] = mapped_column(String(32), index=True)
    birthday: Mapped[dt.date | None] = mapped_column(Date)
    preferred_channel: Mapped[str | None] = mapped_column(String(16))
    email_consent: Mapped[bool | None] = mapped_column(Boolean)
    email_consent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    email_consent_source: Mapped[str | None] = mapped_column(String(255))
    sms_consent: Mapped[bool | None] = mapped_column(Boolean)
    sms_consent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    sms_consent_source: Mapped[str | None] = mapped_column(String(255))
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _created()


class Lead(RecordColumns, Model):
    """An incoming request, as it came; "convert" turns it into a company, a contact and a deal."""

    __tablename__ = "crm_lead"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(255), nullable=False)
    source: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str | None] = mapped_column(String(16), index=True)
    contact_name: Mapped[str | None] = mapped_column(String(255))
    company_name: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    tax_id: Mapped[str | None] = mapped_column(String(20))
    is_foreign: Mapped[bool | None] = mapped_column(Boolean)
    message: Mapped[str | None] = mapped_column(Text)
    company_id: Mapped[int | None] = _link("crm_company")
    contact_id: Mapped[int | None] = _link("crm_contact")
    deal_id: Mapped[int | None] = mapped_column(Integer, index=True)  # set on conversion (links crm_deal)
    converted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # derived: the first outbound activity with the lead, and the hours from the lead's arrival to it
    first_response_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    response_hours: Mapped[Decimal | None] = mapped_column(Numeric(12, 1))
    created_at: Mapped[dt.datetime] = _created()


class Pipeline(RecordColumns, Model):
    """A sales funnel: an ordered list of stages."""

    __tablename__ = "crm_pipeline"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    position: Mapped[int | None] = mapped_column(Integer)
    active: Mapped[bool | None] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = _created()


class Stage(RecordColumns, Model):
    """A step of a pipeline, with the probability a deal there usually has."""

    __tablename__ = "crm_stage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    pipeline_id: Mapped[int | None] = _link("crm_pipeline", parent=True)
    position: Mapped[int | None] = mapped_column(Integer)
    probability: Mapped[Decimal | None] = mapped_column(PERCENT)
    is_won: Mapped[bool | None] = mapped_column(Boolean, default=False)
    is_lost: Mapped[bool | None] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = _created()


class Product(RecordColumns, Model):
    __tablename__ = "crm_product"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    sku: Mapped[str | None] = mapped_column(String(64), index=True)
    unit: Mapped[str | None] = mapped_column(String(20))
    price: Mapped[Decimal | None] = mapped_column(MONEY)
    currency: Mapped[str | None] = mapped_column(String(16))
    active: Mapped[bool | None] = mapped_column(Boolean, default=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _created()


class Deal(RecordColumns, Model):
    """An opportunity moving through a pipeline's stages."""

    __tablename__ = "crm_deal"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(255), nullable=False)
    company_id: Mapped[int | None] = _link("crm_company")
    contact_id: Mapped[int | None] = _link("crm_contact")
    pipeline_id: Mapped[int | None] = _link("crm_pipeline")  # derived from the stage
    stage_id: Mapped[int | None] = _link("crm_stage")
    reached_stage_id: Mapped[int | None] = _link("crm_stage")  # derived: the furthest stage it has been at
    amount: Mapped[Decimal | None] = mapped_column(MONEY)  # derived from the lines when it has any
    currency: Mapped[str | None] = mapped_column(String(16))
    probability: Mapped[Decimal | None] = mapped_column(PERCENT)
    weighted_amount: Mapped[Decimal | None] = mapped_column(MONEY)  # derived: amount × probability
    expected_close: Mapped[dt.date | None] = mapped_column(Date, index=True)
    source: Mapped[str | None] = mapped_column(String(16))
    lost_because: Mapped[str | None] = mapped_column(String(16), index=True)
    lost_reason: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))  # derived
    won: Mapped[bool | None] = mapped_column(Boolean, index=True)  # derived: at a won stage
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _created()


class DealLine(RecordColumns, Model):
    """A product on a deal; its deal's amount is the sum of its lines."""

    __tablename__ = "crm_deal_line"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deal_id: Mapped[int | None] = _link("crm_deal", parent=True)
    product_id: Mapped[int | None] = _link("crm_product")
    description: Mapped[str | None] = mapped_column(String(255))
    quantity: Mapped[Decimal] = mapped_column(Numeric(18, 3), nullable=False)
    price: Mapped[Decimal | None] = mapped_column(MONEY)
    discount: Mapped[Decimal | None] = mapped_column(PERCENT)
    total: Mapped[Decimal | None] = mapped_column(MONEY)  # derived
    created_at: Mapped[dt.datetime] = _created()


class Activity(RecordColumns, Model):
    """One interaction: a call, letter, meeting, note, SMS or complaint, including failed attempts."""

    __tablename__ = "crm_activity"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    direction: Mapped[str | None] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(16))
    occurred_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    duration_min: Mapped[int | None] = mapped_column(Integer)
    subject: Mapped[str | None] = mapped_column(String(255))
    body: Mapped[str | None] = mapped_column(Text)
    company_id: Mapped[int | None] = _link("crm_company")
    contact_id: Mapped[int | None] = _link("crm_contact")
    deal_id: Mapped[int | None] = _link("crm_deal")
    lead_id: Mapped[int | None] = _link("crm_lead")
    complaint_category: Mapped[str | None] = mapped_column(String(16))
    resolution: Mapped[str | None] = mapped_column(String(16))
    # derived: when a complaint was resolved or rejected, and the days it took from when it came
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    resolution_days: Mapped[Decimal | None] = mapped_column(Numeric(12, 1))
    created_at: Mapped[dt.datetime] = _created()


class Task(RecordColumns, Model):
    __tablename__ = "crm_task"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(255), nullable=False)
    due_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("ab_user.id", ondelete="SET NULL"), index=True)
    status: Mapped[str | None] = mapped_column(String(16), index=True)
    priority: Mapped[str | None] = mapped_column(String(16))
    company_id: Mapped[int | None] = _link("crm_company")
    contact_id: Mapped[int | None] = _link("crm_contact")
    deal_id: Mapped[int | None] = _link("crm_deal")
    reminder_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    description: Mapped[str | None] = mapped_column(Text)
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))  # derived
    created_at: Mapped[dt.datetime] = _created()


class Invoice(RecordColumns, Model):
    __tablename__ = "crm_invoice"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(50), nullable=False)
    company_id: Mapped[int | None] = _link("crm_company")
    deal_id: Mapped[int | None] = _link("crm_deal")
    amount: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    currency: Mapped[str | None] = mapped_column(String(16))
    issued_on: Mapped[dt.date | None] = mapped_column(Date)
    due_on: Mapped[dt.date | None] = mapped_column(Date, index=True)
    paid_amount: Mapped[Decimal | None] = mapped_column(MONEY)
    status: Mapped[str | None] = mapped_column(String(16), index=True)
    balance: Mapped[Decimal | None] = mapped_column(MONEY)  # derived
    overdue_days: Mapped[int | None] = mapped_column(Integer, index=True)  # derived, refreshed nightly
    paid_on: Mapped[dt.date | None] = mapped_column(Date, index=True)  # today when paid in full, unless given
    created_at: Mapped[dt.datetime] = _created()


class SalesPlan(RecordColumns, Model):
    """A salesperson's target for a month: the amount of won deals (in a currency) and their number."""

    __tablename__ = "crm_sales_plan"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))  # derived: who and which month
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("ab_user.id", ondelete="SET NULL"), index=True)
    month: Mapped[dt.date] = mapped_column(Date, nullable=False, index=True)  # its first day
    amount: Mapped[Decimal | None] = mapped_column(MONEY)
    currency: Mapped[str | None] = mapped_column(String(16))
    deals_count: Mapped[int | None] = mapped_column(Integer)
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _created()


# Values documented as unique are unique in the database, whatever requests overlap, and letter case does
# not make two SKUs (the write path compares the same way). Records in the recycle bin keep their values.
Index("uq_crm_product_sku", func.lower(Product.__table__.c.sku), unique=True)
Index("uq_crm_invoice_number", func.lower(Invoice.__table__.c.number), unique=True)
# One live plan per salesperson, month and currency, also when two people save the same plan at once (the
# write path says which plan is the twin; a plan in the recycle bin is no twin).
_plans = SalesPlan.__table__.c
Index(
    "uq_crm_sales_plan_month",
    _plans.manager_id,
    _plans.month,
    _plans.currency,
    unique=True,
    sqlite_where=_plans.deleted_at.is_(None),
    postgresql_where=_plans.deleted_at.is_(None),
)
