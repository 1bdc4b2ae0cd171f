"""Sessions that really end: server-side sessions in Redis and a per-user session generation.

The browser's ``session`` cookie holds only a random id; the session itself lives in Redis (Flask-Session),
so logging out empties it for every web process and a replayed cookie finds nothing. Each user also has a
*generation* in Redis, copied into the session (and into API tokens) at sign-in and compared on every
request: changing a user's password (their own or by an admin) or deactivating them bumps it, which ends all
of that user's sessions and tokens at once. Whoever changes their own password keeps the session they did
it from.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import msgspec
from flask import Flask, current_app, has_request_context, request, session
from flask_babel import LazyString
from flask_login import user_logged_in
from flask_session import Session
from redis.exceptions import RedisError
from sqlalchemy import event, inspect

from app import security_log
from app.redis_client import forget_prefetched, get_once, redis_connection

GENERATION_KEY = "tabula:session-generation:{user_id}"
SESSION_GENERATION = "_tabula_generation"
CLAIM_GENERATION = "tabula_generation"
KEPT_AT_LOGOUT = ("locale",)


def init_app(app: Flask) -> None:
    with app.app_context():
        app.config["SESSION_REDIS"] = redis_connection()
    Session(app)
    app.after_request(_keep_alive)
    # Flashed messages may be lazily translated strings (FAB flashes some): store them as text.
    app.session_interface.serializer.encoder = msgspec.msgpack.Encoder(enc_hook=_as_text)
    user_logged_in.connect(_on_login, app)
    from flask_appbuilder.security.sqla.models import User

    if not event.contains(User, "after_update", _after_user_update):
        event.listen(User, "after_update", _after_user_update)


def generation(user_id: int) -> int:
    value = get_once(GENERATION_KEY.format(user_id=int(user_id)))
    return int(value) if value else 0


def token_generation_key() -> str | None:
    """The generation key of the user an API token in this request names, read without verifying the token:
    only so that the request's first Redis read can fetch it too (``app.redis_client.prefetch``). The token
    is verified as always; the value is used only for the user the verified token names."""
    header = request.headers.get("Authorization", "")
    if not header[:7].lower() == "bearer ":
        return None
    parts = header[7:].strip().split(".")
    if len(parts) != 3 or len(parts[1]) > 4096:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return GENERATION_KEY.format(user_id=int(claims["sub"]))
    except (ValueError, TypeError, KeyError, binascii.Error):
        return None


def session_generation_key() -> str | None:
    """The generation key of the user this request's browser session is signed in as (for ``prefetch``)."""
    user_id = session.get("_user_id")
    try:
        return GENERATION_KEY.format(user_id=int(user_id)) if user_id is not None else None
    except (TypeError, ValueError):
        return None


def is_current(user_id: int) -> bool:
    """The signed-in session was started at the user's current generation."""
    return session.get(SESSION_GENERATION) == generation(user_id)


def token_is_current(user_id: int, claims: dict[str, Any]) -> bool:
    return claims.get(CLAIM_GENERATION) == generation(user_id)


def token_claims(identity: Any) -> dict[str, Any]:
    """Extra claims of every API token: the user's generation (checked when the token is used)."""
    try:
        return {CLAIM_GENERATION: generation(int(identity))}
    except (TypeError, ValueError):
        return {}


def end_sessions(user_id: int, reason: str) -> None:
    """End every session and API token of the user, in every process.

    Runs inside the database flush that changes the user: a Redis outage (only possible outside a web
    request, e.g. ``tabula create-admin --reset`` while the embedded Redis is stopped) must not undo the
    password change, so it is logged and the sessions end when they expire."""
    key = GENERATION_KEY.format(user_id=int(user_id))
    forget_prefetched(key)
    try:
        new = redis_connection().incr(key)
    except RedisError:
        security_log.logger.error(
            "could not end the sessions of user %s (%s): Redis unreachable", user_id, reason
        )
        return
    security_log.record(security_log.SESSIONS_ENDED, str(user_id), detail=reason)
    if has_request_context() and str(session.get("_user_id")) == str(user_id):
        session[SESSION_GENERATION] = new  # the session that changed its own password stays


def end_this_session() -> None:
    """After Flask-Login's ``logout_user``: forget everything but the language, under a new session id."""
    kept = {key: session[key] for key in KEPT_AT_LOGOUT if key in session}
    session.clear()
    session.update(kept)
    current_app.session_interface.regenerate(session)


def _keep_alive(response: Any) -> Any:
    """Push an unchanged session's expiry back (idle sessions expire after ``PERMANENT_SESSION_LIFETIME``)
    without writing its contents: with ``SESSION_REFRESH_EACH_REQUEST`` every request wrote back the session
    it had read, so one answered after a concurrent change undid it (a language switched while the
    dashboard's cards were loading came back as it was). A changed session is written, with its expiry, by
    Flask-Session as always."""
    sid = getattr(session, "sid", None)
    if sid and session and not session.modified:
        try:
            current_app.config["SESSION_REDIS"].expire(
                current_app.config["SESSION_KEY_PREFIX"] + sid, current_app.permanent_session_lifetime
            )
        except RedisError:
            pass  # the session was read from Redis a moment ago; it expires a little sooner
    return response


def _as_text(value: Any) -> str:
    if isinstance(value, LazyString):
        return str(value)
    raise NotImplementedError(f"a session cannot hold {type(value).__name__}")


def _on_login(app: Flask, user: Any, **_extra: Any) -> None:
    # A new id at sign-in: an id planted before it (session fixation) is worth nothing after.
    app.session_interface.regenerate(session)
    session[SESSION_GENERATION] = generation(user.id)


def _after_user_update(_mapper: Any, _connection: Any, user: Any) -> None:
    state = inspect(user)
    if state.attrs.password.history.has_changes():
        end_sessions(user.id, "password changed")
    elif state.attrs.active.history.has_changes() and not user.active:
        end_sessions(user.id, "deactivated")
