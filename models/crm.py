"""Core CRM tables. Their own columns are defined here; admins extend them with custom fields at run time,
and the same metadata-driven views serve them as serve custom tables (see ``custom_fields.core``)."""

from __future__ import annotations

import datetime as dt

from flask_appbuilder import Model
from sqlalchemy import DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.records import RecordColumns
from models.system import utcnow


class Company(RecordColumns, Model):
    """A counterparty: customer, supplier, partner."""

    __tablename__ = "crm_company"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    tax_id: Mapped[str | None] = mapped_column(String(20), index=True)
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    website: Mapped[str | None] = mapped_column(String(2048))
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class Contact(RecordColumns, Model):
    """A person at a counterparty."""

    __tablename__ = "crm_contact"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_name: Mapped[str] = mapped_column(String(100), nullable=False)
    last_name: Mapped[str | None] = mapped_column(String(100))
    company_id: Mapped[int | None] = mapped_column(
        ForeignKey("crm_company.id", ondelete="SET NULL"), index=True
    )
    position: Mapped[str | None] = mapped_column(String(150))
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    birthday: Mapped[dt.date | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
