"""Saved reports: a report builder's definition (table, rows of a saved view, groups, values, chart, period)
under a name, personal or shared with roles. Every figure is computed with the reader's own rights."""

from __future__ import annotations

import datetime as dt

from flask_appbuilder import Model
from flask_appbuilder.security.sqla.models import Role, User
from sqlalchemy import JSON, Column, DateTime, ForeignKey, Integer, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.metadata import Entity
from models.system import utcnow

saved_report_role = Table(
    "tabula_saved_report_role",
    Model.metadata,
    Column("report_id", Integer, ForeignKey("tabula_saved_report.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", Integer, ForeignKey("ab_role.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class SavedReport(Model):
    __tablename__ = "tabula_saved_report"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entity_id: Mapped[int] = mapped_column(
        ForeignKey("tabula_entity.id", ondelete="CASCADE"), nullable=False, index=True
    )
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("ab_user.id", ondelete="SET NULL"), index=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    #: {"table", "rows", "column", "measures", "top", "view", "chart", "period"} (``exports.reports``)
    definition: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow
    )
    roles: Mapped[list[Role]] = relationship(Role, secondary=saved_report_role)
    entity: Mapped[Entity] = relationship(Entity)
    owner: Mapped[User | None] = relationship(User)

    def __repr__(self) -> str:
        return f"<SavedReport {self.id} {self.name!r}>"
