"""``tabula init``: bring a database to the current schema, permissions, roles, first admin and demo data.

Safe to run any number of times, and from several machines at once (one at a time under a lock).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, current_app
from flask_migrate import upgrade
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

import config
from app.crm.demo import DemoResult
from app.extensions import db
from app.security import MANAGER, STAFF
from custom_fields.access import Actor, seed_defaults
from custom_fields.core import ensure_unique_indexes, sync_core_entities
from models import AppSetting

DEMO_SETTING = "demo_loaded_at"
# Demo users: (username, first name, last name, role). Names are Cyrillic on purpose. Their teams are in
# ``app.crm.demo.TEAMS``.
DEMO_USERS = [
    ("manager", "Мария", "Иванова", MANAGER),
    ("staff1", "Пётр", "Смирнов", STAFF),
    ("staff2", "Анна", "Кузнецова", STAFF),
    ("staff3", "Дмитрий", "Орлов", STAFF),
    ("manager2", "Олег", "Волков", MANAGER),
    ("staff4", "Екатерина", "Соколова", STAFF),
    ("staff5", "Илья", "Новиков", STAFF),
]
#: Progress of a long step: (table, rows done, rows in all).
Progress = Callable[[str, int, int], None]
_INIT_LOCK_KEY = 7_305_911  # PostgreSQL advisory lock id of `tabula init`


@dataclass
class InitReport:
    admin_created: str | None = None
    admin_password: str | None = None
    demo_loaded: bool = False
    demo_password: str | None = None
    demo_counts: dict[str, int] = field(default_factory=dict)
    demo_seconds: float = 0.0
    demo_cpu_seconds: float = 0.0
    pipeline_created: str | None = None
    grants: dict[str, int] = field(default_factory=dict)
    unique_problems: list[str] = field(default_factory=list)


def database_error_reason(exc: SQLAlchemyError) -> str:
    """The driver's own first line (e.g. "connection refused"), without SQLAlchemy's wrapping."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else exc.__class__.__name__


def check_database(app: Flask) -> None:
    """Connect once; raise ``config.ConfigError`` with one line saying what to set when that fails."""
    with app.app_context():
        try:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            reason = database_error_reason(exc)
            raise config.ConfigError(
                f"cannot connect to the database {config.redact(app.config['SQLALCHEMY_DATABASE_URI'])}"
                f" ({reason}); set DATABASE_URL to a reachable PostgreSQL database "
                "(postgresql://user:password@host:5432/dbname), or unset it for the embedded SQLite file"
            ) from None


@contextlib.contextmanager
def init_lock(app: Flask) -> Iterator[None]:
    """Serialise concurrent ``init`` runs against one database."""
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _INIT_LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _INIT_LOCK_KEY})
                conn.commit()
    else:
        lock_path = Path(app.config["TABULA_INSTANCE_DIR"]) / "init.lock"
        with open(lock_path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def initialize(
    app: Flask,
    *,
    demo: bool | None = None,
    echo: Callable[[str], None] = print,
    progress: Progress | None = None,
) -> InitReport:
    """Upgrade the schema, sync permissions and roles, create the first admin, load demo data once, and
    make sure a pipeline exists so deals can be created."""
    check_database(app)
    report = InitReport()
    with app.app_context():
        with init_lock(app):
            upgrade(directory=app.extensions["migrate"].directory)
            appbuilder = app.appbuilder
            appbuilder.sm.ensure_roles()
            appbuilder.add_permissions(update_perms=True)
            report.grants = appbuilder.sm.sync_roles()
            sync_core_entities()
            report.unique_problems = ensure_unique_indexes()
            seed_defaults()
            report.admin_created, report.admin_password = ensure_admin()
            want_demo = app.config["TABULA_DEMO"] if demo is None else demo
            if want_demo and get_setting(DEMO_SETTING) is None:
                report.demo_password, result = load_demo(progress=progress)
                report.demo_loaded = True
                report.demo_counts, report.demo_seconds = result.counts, result.seconds
                report.demo_cpu_seconds = result.cpu_seconds
            report.pipeline_created = ensure_pipeline()
    _announce(report, echo)
    return report


def _announce(report: InitReport, echo: Callable[[str], None]) -> None:
    for problem in report.unique_problems:
        echo(f"Warning: {problem}. Make them unique, then run `tabula init` again.")
    if report.admin_created:
        if report.admin_password:
            echo(
                f"Created admin '{report.admin_created}' with password: {report.admin_password}\n"
                "  (shown only once; change it under your user menu, or run "
                "`tabula create-admin --reset` for a new one)"
            )
        else:
            echo(f"Created admin '{report.admin_created}' with the password from TABULA_ADMIN_PASSWORD")
    if report.pipeline_created:
        echo(f"Created the pipeline '{report.pipeline_created}' with its stages")
    if report.demo_loaded:
        names = ", ".join(u[0] for u in DEMO_USERS)
        echo(f"Loaded demo data; demo users {names} share the password: {report.demo_password}")
        echo(
            f"  {demo_summary(report.demo_counts)} in {report.demo_seconds:.1f} s"
            f" ({report.demo_cpu_seconds:.1f} s CPU)"
        )


def get_setting(key: str) -> str | None:
    row = db.session.get(AppSetting, key)
    return row.value if row else None


def set_setting(key: str, value: str) -> None:
    row = db.session.get(AppSetting, key) or AppSetting(key=key)
    row.value = value
    db.session.add(row)


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def ensure_admin() -> tuple[str | None, str | None]:
    """Create the first admin when no admin user exists. Returns (username, generated password)."""
    sm = current_app.appbuilder.sm
    username = current_app.config["TABULA_ADMIN_USER"]
    if sm.find_user(username=username) is not None:
        return None, None
    given = current_app.config["TABULA_ADMIN_PASSWORD"]
    password = given or generate_password()
    create_user(
        username, "Admin", "Tabula", current_app.config["TABULA_ADMIN_EMAIL"], sm.auth_role_admin, password
    )
    return username, (None if given else password)


def create_user(
    username: str, first_name: str, last_name: str, email: str, role_name: str, password: str
) -> None:
    sm = current_app.appbuilder.sm
    role = sm.find_role(role_name)
    if role is None:
        raise config.ConfigError(f"role {role_name!r} does not exist; run `tabula init` first")
    user = sm.add_user(username, first_name, last_name, email, role, password)
    if not user:
        raise config.ConfigError(f"could not create user {username!r}; is the e-mail {email!r} taken?")


def ensure_pipeline() -> str | None:
    """Every install has a pipeline with stages (named in the default language); returns the name of the one
    created, or None when one existed."""
    from app.crm.demo import DEFAULT_STAGES, ensure_default_pipeline

    locale = current_app.config["BABEL_DEFAULT_LOCALE"]
    if ensure_default_pipeline(locale, _admin_actor()):
        return DEFAULT_STAGES["ru" if locale == "ru" else "en"][0]
    return None


def _admin_id() -> int | None:
    user = current_app.appbuilder.sm.find_user(username=current_app.config["TABULA_ADMIN_USER"])
    return user.id if user is not None else None


def _admin_actor() -> Actor:
    user = current_app.appbuilder.sm.find_user(username=current_app.config["TABULA_ADMIN_USER"])
    return Actor.of_user(user, "import") if user is not None else Actor.system_job()


def demo_summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {slug.replace('_', ' ')}" for slug, n in counts.items())


def load_demo(*, progress: Progress | None = None, scale: float | None = None) -> tuple[str, DemoResult]:
    """Demo users (two managers, five staff) with one shared password, their two teams, and the demo book
    (``app.crm.demo``) at ``scale`` (default: TABULA_DEMO_SCALE). Returns (password, what was loaded)."""
    from app.crm.demo import ensure_teams, load_book

    sm = current_app.appbuilder.sm
    password = current_app.config.get("TABULA_DEMO_PASSWORD") or generate_password()
    user_ids: dict[str, int] = {}
    for username, first, last, role in DEMO_USERS:
        if sm.find_user(username=username) is None:
            create_user(username, first, last, f"{username}@demo.tabula.local", role, password)
        user_ids[username] = sm.find_user(username=username).id
    ensure_teams(user_ids)
    if scale is None:
        scale = float(current_app.config["TABULA_DEMO_SCALE"])
    result = load_book(scale, user_ids, admin_id=_admin_id(), progress=progress)
    set_setting(DEMO_SETTING, dt.datetime.now(dt.UTC).isoformat())
    db.session.commit()
    return password, result
