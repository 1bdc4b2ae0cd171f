"""What the write path keeps about records: who may do what (the access rules, per role, down to the field)
and what happened to every record (its history).

Access rules cascade: a role's row with ``entity_id`` NULL is its default for every table; a row for one
table overrides it action by action (NULL = inherit); a field rule overrides the table for one field.
"""

from __future__ import annotations

import datetime as dt

from flask_appbuilder import Model
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.system import utcnow

#: Table-level actions a role may be allowed, in the order the access screen shows them.
TABLE_ACTIONS = ("read", "add", "edit", "delete", "export", "import", "mail")
#: Actions that reach existing rows, and how far: the user's own rows (owner, or named in a user field),
#: their teams' rows, or all rows. Listed from the narrowest to the widest.
SCOPED_ACTIONS = ("read", "edit", "delete")
SCOPES = ("own", "team", "all")
#: Field-level modes, from the most to the least permissive.
FIELD_MODES = ("edit", "view", "hidden")


class TableRule(Model):
    """One role's rights on one table (or, with ``entity_id`` NULL, on every table by default)."""

    __tablename__ = "tabula_table_rule"
    __table_args__ = (
        Index("uq_tabula_table_rule_role_entity", "role_id", func.coalesce("entity_id", 0), unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("ab_role.id", ondelete="CASCADE"), nullable=False)
    entity_id: Mapped[int | None] = mapped_column(ForeignKey("tabula_entity.id", ondelete="CASCADE"))
    read: Mapped[bool | None] = mapped_column(Boolean)
    add: Mapped[bool | None] = mapped_column(Boolean)
    edit: Mapped[bool | None] = mapped_column(Boolean)
    delete: Mapped[bool | None] = mapped_column(Boolean)
    export: Mapped[bool | None] = mapped_column(Boolean)
    import_: Mapped[bool | None] = mapped_column("import", Boolean)
    mail: Mapped[bool | None] = mapped_column(Boolean)
    # How far read/edit/delete reach (own, team, all; NULL = inherit, or "all" on a role's default).
    read_scope: Mapped[str | None] = mapped_column(String(8))
    edit_scope: Mapped[str | None] = mapped_column(String(8))
    delete_scope: Mapped[str | None] = mapped_column(String(8))

    def get(self, action: str) -> bool | None:
        return getattr(self, "import_" if action == "import" else action)

    def set(self, action: str, value: bool | None) -> None:
        setattr(self, "import_" if action == "import" else action, value)

    def get_scope(self, action: str) -> str | None:
        return getattr(self, f"{action}_scope")

    def set_scope(self, action: str, scope: str | None) -> None:
        setattr(self, f"{action}_scope", scope)


class FieldRule(Model):
    """One role's mode for one field: ``edit``, ``view`` (read only) or ``hidden``."""

    __tablename__ = "tabula_field_rule"
    __table_args__ = (UniqueConstraint("role_id", "field_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("ab_role.id", ondelete="CASCADE"), nullable=False)
    field_id: Mapped[int] = mapped_column(ForeignKey("tabula_field.id", ondelete="CASCADE"), nullable=False)
    mode: Mapped[str] = mapped_column(String(10), nullable=False)


class RecordChange(Model):
    """One change of one record: a save, a create, a delete, a restore, a purge or a merge. A change set
    (one call of the write path) shares ``changeset`` across the records it touched.

    ``changes`` lists the fields the change set, in the fields' order, as ``[field_id, old, new]``
    triples (``old`` is null for a create); values are the field type's JSON form, so history survives
    renames and type changes of the field. ``note`` holds what a line without a field says (a merge's
    ``{"merged": id}`` / ``{"into": id}``). One row per record changed, not one per value: bulk writes
    stay cheap (``custom_fields.history.lines`` still reads it as one line per value)."""

    __tablename__ = "tabula_record_change"
    __table_args__ = (
        Index("ix_tabula_record_change_record", "entity_id", "record_id", "id"),
        Index("ix_tabula_record_change_at", "at"),
        Index("ix_tabula_record_change_user", "user_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    changeset: Mapped[str] = mapped_column(String(32), nullable=False)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("ab_user.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(String(10), nullable=False)
    entity_id: Mapped[int] = mapped_column(ForeignKey("tabula_entity.id", ondelete="CASCADE"), nullable=False)
    record_id: Mapped[int] = mapped_column(Integer, nullable=False)
    action: Mapped[str] = mapped_column(String(10), nullable=False)
    # Field ids inside are not foreign keys: the history of a purged field stays (shown as a deleted field).
    changes: Mapped[list | None] = mapped_column(JSON(none_as_null=True))
    note: Mapped[object | None] = mapped_column(JSON(none_as_null=True))


class RecordColumns:
    """The columns the write path keeps on every table, core and custom (see ``record_columns``)."""

    row_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default="1")
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("ab_user.id", ondelete="SET NULL"), index=True)
    #: When the write path last changed the record (created, saved, deleted or restored); a core table's
    #: ``created_at`` is a field of its own. Empty for records last changed before this column existed
    #: and never since (migration 0020 fills it from their history where there is one).
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=utcnow)


def record_columns() -> list[Column]:
    """The same columns for a runtime-built table: the optimistic-locking version, the recycle-bin mark,
    the owner (set to whoever created the record), and when it was created and last changed (set by the
    write path; a Python default for whatever else inserts). ``custom_fields.ddl.create_table`` adds the
    owner's foreign key and index."""
    return [
        Column("row_version", Integer, nullable=False, default=1, server_default="1"),
        Column("deleted_at", DateTime(timezone=True)),
        Column("owner_id", Integer),
        Column("created_at", DateTime(timezone=True), default=utcnow),
        Column("updated_at", DateTime(timezone=True), default=utcnow),
    ]


RECORD_COLUMN_NAMES = ("row_version", "deleted_at", "owner_id", "created_at", "updated_at")
#: The record columns the write path sets itself whenever it writes a record.
TIMESTAMP_COLUMNS = ("created_at", "updated_at")
