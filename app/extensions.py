"""Process-wide extension objects, bound to each app in ``create_app``."""

from flask_appbuilder.models.sqla.base import SQLA
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFProtect

db = SQLA()
migrate = Migrate()
csrf = CSRFProtect()


def _unicode_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _on_sqlite_connect(dbapi_connection: object, _record: object) -> None:
    import sqlite3

    if isinstance(dbapi_connection, sqlite3.Connection):
        # SQLite's own lower() folds ASCII only; search must be case-insensitive for Cyrillic too.
        dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)


def sqlite_unicode_functions() -> None:
    """Install once per process: every SQLite connection gets a Unicode-aware ``lower``."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not event.contains(Engine, "connect", _on_sqlite_connect):
        event.listen(Engine, "connect", _on_sqlite_connect)
