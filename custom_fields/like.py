"""``LIKE`` with backslash as the escape character, written for each database.

SQLite has no escape character unless told (``ESCAPE '\\'``). PostgreSQL's is backslash already, and
naming it costs: once psycopg prepares a statement and PostgreSQL switches to a generic plan, an explicit
``ESCAPE`` keeps a ``like_escape()`` call per row, which made the quick search about 1.5 times slower than
the same ``LIKE`` without it. So PostgreSQL gets the plain ``LIKE``, every other database the ``ESCAPE``.

The pattern is sent untyped: SQLAlchemy would cast it (``LIKE $1::VARCHAR``), and with that cast the quick
search of ``bench/grid.py`` (seven ``lower(column) LIKE`` on 50,000 rows) took about twice as long.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression, ColumnElement, literal
from sqlalchemy.types import NullType

ESCAPE = "\\"


def escape_like(text: str) -> str:
    """``text`` matched literally inside a pattern (its ``%``, ``_`` and ``\\`` escaped)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class EscapedLike(BinaryExpression[bool]):
    """``left LIKE right`` (or ``NOT LIKE``) with backslash escapes."""

    inherit_cache = True

    def _negate(self) -> ColumnElement[bool]:
        return EscapedLike(
            self.left,
            self.right,
            self.negate,  # type: ignore[arg-type]
            negate=self.operator,
            modifiers=self.modifiers,
            type_=self.type,
        )


def like(column: ColumnElement, pattern: str) -> ColumnElement[bool]:
    """``column LIKE pattern``, ``pattern`` using backslash escapes (see ``escape_like``)."""
    return EscapedLike(
        column,
        literal(pattern, NullType()),
        operators.like_op,
        negate=operators.not_like_op,
        modifiers={"escape": ESCAPE},
        type_=Boolean(),
    )


@compiles(EscapedLike, "postgresql")
def _plain_like(element: EscapedLike, compiler: Any, **kw: Any) -> str:
    bare = BinaryExpression(
        element.left, element.right, element.operator, negate=element.negate, type_=element.type
    )
    return compiler.process(bare, **kw)
