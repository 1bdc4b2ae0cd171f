"""The Tabula CRM application factory."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, current_app, has_request_context, request, session
from flask.json.provider import DefaultJSONProvider
from flask_appbuilder import AppBuilder
from flask_babel.speaklater import LazyString
from redis.exceptions import RedisError
from werkzeug.middleware.proxy_fix import ProxyFix

import config
import models  # noqa: F401  (maps every table before FAB and Alembic look)
from app import crm, errors, sessions, user_cache
from app.api_csrf import refuse_cross_site_api_writes
from app.extensions import csrf, db, migrate, sqlite_unicode_functions
from app.guards import GUARDS
from app.headers import install_security_headers
from app.redis_client import prefetch
from app.security import TabulaSecurityManager
from custom_fields import live, schema_signal

MIGRATIONS_DIR = Path(config.BASE_DIR) / "migrations"


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, with lazily translated text (core labels, FAB's lazy strings) as its plain text: the
    default would take it through ``__html__``, HTML-escaped."""

    @staticmethod
    def default(o: Any) -> Any:
        if isinstance(o, LazyString):
            return str(o)
        return DefaultJSONProvider.default(o)


def create_app(env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the web app from environment-style settings (``os.environ`` unless ``env`` is given)."""
    app = Flask(__name__, instance_path=config.instance_dir(env), instance_relative_config=False)
    app.json = JSONProvider(app)
    app.config.from_mapping(config.build_config(env))
    if overrides:
        app.config.update(overrides)
    Path(app.config["TABULA_INSTANCE_DIR"]).mkdir(parents=True, exist_ok=True)
    hops = app.config["TABULA_PROXY_HOPS"]
    if hops:  # the client's address (sign-in lockout, security log), scheme and host, as the proxies saw them
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]

    for guard in GUARDS:
        app.before_request(guard)
    app.before_request(refuse_cross_site_api_writes)
    errors.register(app)
    app.before_request(_follow_schema_changes)
    db.init_app(app)
    schema_signal.install()
    user_cache.install()
    live.install()
    sqlite_unicode_functions()
    crm.register()
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))
    csrf.init_app(app)
    sessions.init_app(app)
    install_security_headers(app)

    with app.app_context():
        from views.home import HomeView

        appbuilder = AppBuilder(
            update_perms=False, security_manager_class=TabulaSecurityManager, indexview=HomeView
        )
        appbuilder.init_app(app, db.session)
        app.extensions["babel"].locale_selector = _select_locale
        from views import register_views

        register_views(appbuilder)
        appbuilder.post_init()

    from app.health import health_bp

    app.register_blueprint(health_bp)
    csrf.exempt(health_bp)
    return app


def _follow_schema_changes() -> None:
    """Rebuild this process's tables when another process changed them (one Redis read while nothing did,
    which also fetches what signing in reads: the session generation and the users' epoch)."""
    if (
        request.endpoint is None
        or request.endpoint.endswith("static")
        or request.endpoint.startswith("health.")
    ):
        return
    from custom_fields.runtime import follow

    generation_key = sessions.token_generation_key() or sessions.session_generation_key()
    if generation_key is not None:
        with contextlib.suppress(RedisError):  # each read then asks Redis itself, and reports the outage
            prefetch([schema_signal.EPOCH_KEY, user_cache.EPOCH_KEY, generation_key])
    follow()


def _select_locale() -> str:
    """The user's explicit choice (FAB's language menu), else the browser's preference, else the default."""
    languages = current_app.config["LANGUAGES"]
    if not has_request_context():
        return current_app.config["BABEL_DEFAULT_LOCALE"]
    for chosen in (request.args.get("_l_"), session.get("locale")):
        if chosen in languages:
            return chosen
    best = request.accept_languages.best_match(list(languages))
    return best or current_app.config["BABEL_DEFAULT_LOCALE"]
