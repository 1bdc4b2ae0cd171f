"""Teams: who works with whom. A role's "team" scope lets its users reach the records of everyone who
shares a team with them (``custom_fields.access``)."""

from __future__ import annotations

import datetime as dt

from flask_appbuilder import Model
from flask_appbuilder.security.sqla.models import User
from sqlalchemy import Column, DateTime, ForeignKey, Integer, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.system import utcnow

team_member = Table(
    "tabula_team_member",
    Model.metadata,
    Column("team_id", Integer, ForeignKey("tabula_team.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Integer, ForeignKey("ab_user.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Team(Model):
    __tablename__ = "tabula_team"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    members: Mapped[list[User]] = relationship(User, secondary=team_member)

    def __str__(self) -> str:
        return self.name
