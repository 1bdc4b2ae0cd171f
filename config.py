"""Every Tabula setting, read from the environment, with embedded defaults.

Nothing here needs editing to deploy: the embedded defaults (SQLite file, embedded Redis, generated secret
key) run a complete CRM on one machine; production sets ``DATABASE_URL``, ``REDIS_URL`` and ``SECRET_KEY``.
The README lists every variable.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask_appbuilder.security.manager import AUTH_DB
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

BASE_DIR = Path(__file__).resolve().parent

LANGUAGES = {
    "en": {"flag": "gb", "name": "English"},
    "ru": {"flag": "ru", "name": "Русский"},
}


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which variable to set and how."""


def instance_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("TABULA_INSTANCE_DIR") or BASE_DIR / "instance").resolve()


def database_url(env: Mapping[str, str]) -> str:
    """The SQLAlchemy URL, with ``postgres://`` and ``postgresql://`` mapped to the psycopg 3 driver."""
    raw = env.get("DATABASE_URL", "").strip()
    if not raw:
        return f"sqlite:///{instance_dir(env) / 'tabula.db'}"
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(
            "DATABASE_URL is not a database URL; set it like "
            "postgresql://user:password@host:5432/dbname or sqlite:////path/to/tabula.db"
        ) from None
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("postgresql", "sqlite"):
        raise ConfigError(
            f"DATABASE_URL uses {url.get_backend_name()!r}; Tabula supports postgresql and sqlite"
        )
    return url.render_as_string(hide_password=False)


def embedded_redis_socket(env: Mapping[str, str]) -> Path:
    """The embedded Redis listens on a unix socket in the instance folder (or in /tmp when that path is
    longer than a unix socket address allows)."""
    path = instance_dir(env) / "redis.sock"
    if len(str(path)) <= 100:
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"tabula-{digest}.sock"


def redis_url(env: Mapping[str, str]) -> str:
    raw = env.get("REDIS_URL", "").strip()
    if not raw:
        return f"unix://{embedded_redis_socket(env)}"
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            "REDIS_URL must start with redis://, rediss:// or unix://, "
            "e.g. redis://127.0.0.1:6379/0 (leave it unset for the embedded Redis)"
        )
    return raw


def uses_embedded_redis(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return not env.get("REDIS_URL", "").strip()


def secret_key(env: Mapping[str, str]) -> str:
    """``SECRET_KEY`` from the environment, else one generated once into the instance folder."""
    key = env.get("SECRET_KEY", "").strip()
    if key:
        return key
    path = instance_dir(env) / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    stored = path.read_text().strip()
    if not stored:
        raise ConfigError(f"{path} is empty; delete it to generate a new key, or set SECRET_KEY")
    return stored


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1, got {value}")
    return value


def _not_negative(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value < 0:
        raise ConfigError(f"{name} must be a whole number of at least 0, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw.replace(",", "."))
    except ValueError:
        raise ConfigError(f"{name} must be a number such as 0.5, got {raw!r}") from None
    if not value > minimum or value != value or value == float("inf"):
        raise ConfigError(f"{name} must be a number above {minimum:g}, got {raw!r}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _locale(env: Mapping[str, str]) -> str:
    locale = env.get("TABULA_DEFAULT_LOCALE", "").strip() or "en"
    if locale not in LANGUAGES:
        raise ConfigError(f"TABULA_DEFAULT_LOCALE must be one of {', '.join(LANGUAGES)}, got {locale!r}")
    return locale


def _worker_timing(env: Mapping[str, str]) -> dict[str, int]:
    # A worker counts as alive while its heartbeat is younger than STALE; a busy worker renews it every
    # HEARTBEAT (RQ's job monitoring interval, 30 s by default). A heartbeat not well inside the stale time
    # would mark the jobs of live workers "worker stopped".
    stale = _positive(env, "TABULA_WORKER_STALE_SECONDS", 120)
    heartbeat = _positive(env, "TABULA_WORKER_HEARTBEAT_SECONDS", 10)
    if heartbeat * 2 >= stale:
        raise ConfigError(
            f"TABULA_WORKER_HEARTBEAT_SECONDS must be below half of TABULA_WORKER_STALE_SECONDS ({stale}), "
            f"got {heartbeat}"
        )
    return {"TABULA_WORKER_STALE_SECONDS": stale, "TABULA_WORKER_HEARTBEAT_SECONDS": heartbeat}


def engine_options(url: str) -> dict[str, Any]:
    """SQLAlchemy's engine settings. On PostgreSQL every statement is planned with its values: psycopg
    prepares a statement run 5 times, and PostgreSQL's generic plan for it then cannot see which owner or
    search text is asked for (the grid's quick search ran about twice as long on it, ``bench/grid.py``);
    planning these statements takes a fraction of a millisecond."""
    options: dict[str, Any] = {"pool_pre_ping": True}
    if make_url(url).get_backend_name() == "postgresql":
        options["connect_args"] = {"options": "-c plan_cache_mode=force_custom_plan"}
    return options


def schedule_seconds(env: Mapping[str, str]) -> int:
    """How often ``tabula cron`` looks for due export schedules (and other calendar work)."""
    return _positive(env, "TABULA_SCHEDULE_SECONDS", 60)


def base_url(env: Mapping[str, str]) -> str:
    """``TABULA_BASE_URL`` without a trailing slash; by default the run command's own address."""
    raw = env.get("TABULA_BASE_URL", "").strip().rstrip("/")
    if not raw:
        host = env.get("TABULA_HOST", "").strip() or "127.0.0.1"
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 (an address to reach, not bind)
        return f"http://{host}:{_int(env, 'TABULA_PORT', 5000)}"
    if not raw.startswith(("http://", "https://")) or " " in raw:
        raise ConfigError(f"TABULA_BASE_URL must be an http:// or https:// address, got {raw!r}")
    return raw


def build_config(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """All Flask, Flask-AppBuilder and Tabula settings as one dict for ``app.config``."""
    env = os.environ if env is None else env
    return {
        "TABULA_INSTANCE_DIR": str(instance_dir(env)),
        "SECRET_KEY": secret_key(env),
        "SQLALCHEMY_DATABASE_URI": database_url(env),
        "SQLALCHEMY_TRACK_MODIFICATIONS": False,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options(database_url(env)),
        "REDIS_URL": redis_url(env),
        "TABULA_EMBEDDED_REDIS": uses_embedded_redis(env),
        "RQ_QUEUES": ["default"],
        # Deleted records stay in the recycle bin this many days, then the daily purge removes them.
        "RECYCLE_BIN_DAYS": _int(env, "TABULA_RECYCLE_BIN_DAYS", 30),
        **_worker_timing(env),
        "TABULA_HOST": env.get("TABULA_HOST", "").strip() or "127.0.0.1",
        "TABULA_PORT": _int(env, "TABULA_PORT", 5000),
        "TABULA_ADMIN_USER": env.get("TABULA_ADMIN_USER", "").strip() or "admin",
        "TABULA_ADMIN_PASSWORD": env.get("TABULA_ADMIN_PASSWORD", ""),
        "TABULA_ADMIN_EMAIL": env.get("TABULA_ADMIN_EMAIL", "").strip() or "admin@example.com",
        "TABULA_DEMO": _bool(env, "TABULA_DEMO", True),
        "TABULA_DEMO_PASSWORD": env.get("TABULA_DEMO_PASSWORD", ""),
        # Size of the demo book: 1.0 is 2,000 companies, 5,000 contacts, 3,000 deals, 20,000 activities ...
        "TABULA_DEMO_SCALE": _float(env, "TABULA_DEMO_SCALE", 1.0),
        # Exports: where finished files live (a folder, default <instance>/files, shared by the machines; or
        # "database": in the database they all reach), and how many days they are kept.
        "TABULA_FILE_STORE": env.get("TABULA_FILE_STORE", "").strip(),
        "TABULA_EXPORT_DAYS": _positive(env, "TABULA_EXPORT_DAYS", 7),
        # The RQ queue export jobs go to (give big exports workers of their own: `tabula worker exports`).
        "TABULA_EXPORT_QUEUE": env.get("TABULA_EXPORT_QUEUE", "").strip() or "default",
        # Imports: the largest file a user may upload (bytes), and the most a workbook (a zip) may unpack to
        # (bytes: a small file that unpacks to gigabytes is refused before it is read).
        "TABULA_IMPORT_MAX_BYTES": _positive(env, "TABULA_IMPORT_MAX_BYTES", 50 * 1024 * 1024),
        "TABULA_IMPORT_MAX_UNPACKED": _positive(env, "TABULA_IMPORT_MAX_UNPACKED", 500 * 1024 * 1024),
        "TABULA_IMPORT_QUEUE": env.get("TABULA_IMPORT_QUEUE", "").strip() or "default",
        # Type changes of tables with more rows than this run as a background job with a progress bar (0:
        # always); smaller tables convert in the admin's request.
        "TABULA_CONVERSION_JOB_ROWS": _not_negative(env, "TABULA_CONVERSION_JOB_ROWS", 50_000),
        # The RQ queue conversion jobs go to, and how many rows each short transaction of a conversion fills.
        "TABULA_SCHEMA_QUEUE": env.get("TABULA_SCHEMA_QUEUE", "").strip() or "default",
        "TABULA_CONVERSION_BATCH": _not_negative(env, "TABULA_CONVERSION_BATCH", 0),  # 0: 10,000
        # A conversion job rests after each batch for this share of the batch's time (percent): 100 halves
        # its speed and the load it puts on a busy database.
        "TABULA_CONVERSION_PAUSE_PERCENT": _not_negative(env, "TABULA_CONVERSION_PAUSE_PERCENT", 0),
        # Scheduled exports: files above this size are linked in the message, not attached; the scheduler
        # looks for due schedules this often (seconds).
        "TABULA_EXPORT_ATTACH_MB": _not_negative(env, "TABULA_EXPORT_ATTACH_MB", 10),
        "TABULA_SCHEDULE_SECONDS": schedule_seconds(env),
        # The address users reach the CRM at, for links in e-mails.
        "TABULA_BASE_URL": base_url(env),
        # Outgoing mail (mailings, reminders, scheduled exports).
        "SMTP_HOST": env.get("SMTP_HOST", "").strip() or "localhost",
        "SMTP_PORT": _int(env, "SMTP_PORT", 25),
        "SMTP_USER": env.get("SMTP_USER", ""),
        "SMTP_PASSWORD": env.get("SMTP_PASSWORD", ""),
        "SMTP_STARTTLS": _bool(env, "SMTP_STARTTLS", False),
        "SMTP_SSL": _bool(env, "SMTP_SSL", False),
        "MAIL_FROM": env.get("MAIL_FROM", "").strip() or "Tabula CRM <crm@localhost>",
        # Without SMTP_HOST no mail server is configured: mailings say so instead of sending.
        "SMTP_CONFIGURED": bool(env.get("SMTP_HOST", "").strip()),
        "SMTP_TIMEOUT": _positive(env, "SMTP_TIMEOUT", 30),
        # Mailings: the queue their senders go to, how many senders a mailing starts, how long a sender's
        # claim lives without renewal, and how often (with what first pause) a temporary error is retried.
        "TABULA_MAIL_QUEUE": env.get("TABULA_MAIL_QUEUE", "").strip() or "default",
        "TABULA_MAIL_SENDERS": _positive(env, "TABULA_MAIL_SENDERS", 2),
        "TABULA_MAIL_LEASE_SECONDS": _positive(env, "TABULA_MAIL_LEASE_SECONDS", 60),
        "TABULA_MAIL_RETRIES": _not_negative(env, "TABULA_MAIL_RETRIES", 3),
        "TABULA_MAIL_RETRY_SECONDS": _float(env, "TABULA_MAIL_RETRY_SECONDS", 2.0),
        # Flask-AppBuilder
        "APP_NAME": "Tabula CRM",
        "AUTH_TYPE": AUTH_DB,
        "AUTH_ROLE_ADMIN": "Admin",
        "AUTH_ROLE_PUBLIC": "Public",
        "FAB_CREATE_DB": False,  # Alembic owns the schema: `tabula init` upgrades it
        "FAB_UPDATE_PERMS": False,  # `tabula init` syncs permissions once, not every process
        "FAB_ADD_SECURITY_API": False,  # roles and users are managed in the browser
        "FAB_API_SWAGGER_UI": True,
        "FAB_ADD_OPENAPI_VIEWS": False,  # views.tables registers a per-user OpenAPI document instead
        "FAB_BASE_TEMPLATE": "tabula/base.html",
        "FAB_PASSWORD_COMPLEXITY_ENABLED": False,
        # i18n
        "LANGUAGES": LANGUAGES,
        "BABEL_DEFAULT_LOCALE": _locale(env),
        "BABEL_DEFAULT_TIMEZONE": env.get("TABULA_TIMEZONE", "").strip() or "Europe/Moscow",
        "BABEL_TRANSLATION_DIRECTORIES": str(BASE_DIR / "app" / "translations"),
        # Cookies and CSRF
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _bool(env, "TABULA_SECURE_COOKIES", False),
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "WTF_CSRF_ENABLED": True,
        "WTF_CSRF_TIME_LIMIT": None,
        # Server-side sessions in Redis (Flask-Session): logging out ends the session in every process; an
        # idle session expires after TABULA_SESSION_IDLE_HOURS.
        "SESSION_TYPE": "redis",
        "SESSION_KEY_PREFIX": "tabula:session:",
        "SESSION_PERMANENT": False,
        # Only a changed session is written back (app.sessions: an unchanged one only has its expiry pushed).
        "SESSION_REFRESH_EACH_REQUEST": False,
        "PERMANENT_SESSION_LIFETIME": dt.timedelta(hours=_positive(env, "TABULA_SESSION_IDLE_HOURS", 12)),
        # Failed sign-ins: this many for one user name, or from one address, within the lockout window
        # lock that name or address until the first of them is older than the window.
        "TABULA_LOGIN_MAX_FAILURES": _positive(env, "TABULA_LOGIN_MAX_FAILURES", 5),
        "TABULA_LOGIN_MAX_FAILURES_PER_ADDRESS": _positive(env, "TABULA_LOGIN_MAX_FAILURES_PER_ADDRESS", 20),
        "TABULA_LOGIN_LOCKOUT_MINUTES": _positive(env, "TABULA_LOGIN_LOCKOUT_MINUTES", 15),
        # Reverse proxies in front of the app whose X-Forwarded-For/-Proto/-Host are trusted (ProxyFix):
        # 0 = none, the client's address is the connection's; never more than really stand in front.
        "TABULA_PROXY_HOPS": _not_negative(env, "TABULA_PROXY_HOPS", 0),
        # Content-Security-Policy and other security headers (app/headers.py); off only to debug a page.
        "TALISMAN_ENABLED": _bool(env, "TABULA_CSP", True),
    }


def redact(url: str) -> str:
    """A database or Redis URL fit for a message: the password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"
