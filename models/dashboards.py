"""A user's dashboard: the reports pinned to their home page, in their order. A user who never changed it
has no row and sees the standard cards."""

from __future__ import annotations

import datetime as dt

from flask_appbuilder import Model
from sqlalchemy import JSON, DateTime, ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from models.system import utcnow


class DashboardLayout(Model):
    __tablename__ = "tabula_dashboard_layout"

    user_id: Mapped[int] = mapped_column(ForeignKey("ab_user.id", ondelete="CASCADE"), primary_key=True)
    #: the pinned cards in order: "std:<key>" (a standard report) or "saved:<id>" (a saved report)
    cards: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    #: the standard cards there were when the user last changed it: one added since joins their dashboard
    known: Mapped[list | None] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow
    )

    def __repr__(self) -> str:
        return f"<DashboardLayout {self.user_id} {self.cards!r}>"
