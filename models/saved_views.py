"""Saved views of a table: the grid's columns (order, widths, hidden, frozen), filters, sort and quick search
under a name, personal or shared with roles; one of a table's shared views may be its default."""

from __future__ import annotations

import datetime as dt

from flask_appbuilder import Model
from flask_appbuilder.security.sqla.models import Role, User
from sqlalchemy import JSON, Boolean, Column, DateTime, ForeignKey, Integer, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.metadata import Entity
from models.system import utcnow

saved_view_role = Table(
    "tabula_saved_view_role",
    Model.metadata,
    Column("view_id", Integer, ForeignKey("tabula_saved_view.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", Integer, ForeignKey("ab_role.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class SavedView(Model):
    __tablename__ = "tabula_saved_view"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entity_id: Mapped[int] = mapped_column(
        ForeignKey("tabula_entity.id", ondelete="CASCADE"), nullable=False, index=True
    )
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("ab_user.id", ondelete="SET NULL"), index=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    #: {"fields": [...], "widths": {name: px}, "frozen": n, "filter": ..., "sort": [...], "q": "..."}
    state: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    #: The table's default view (opened when no other is asked for); at most one per table, always shared.
    is_default: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow
    )
    roles: Mapped[list[Role]] = relationship(Role, secondary=saved_view_role)
    entity: Mapped[Entity] = relationship(Entity)
    owner: Mapped[User | None] = relationship(User)

    def __repr__(self) -> str:
        return f"<SavedView {self.id} {self.name!r}>"
