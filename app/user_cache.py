"""The signed-in user and their roles, kept by each process between requests.

Every request signs in (a browser session or an API token) and used to read its user and roles with a
``SELECT``: with production's connection per request, that statement and its round trip were about half of
a grid page's time. A process now keeps a copy of each user it signed in (their columns and their roles'
columns, nothing lazily loaded) and hands the request a copy merged into its own session without a
statement (``Session.merge(load=False)``), so the request can still change, lazily load or compare the user
as before.

The copy is used only while nothing about users or roles changed: every transaction that inserts, changes
or deletes a user or a role (a user's roles are part of the user) increments ``EPOCH_KEY`` in Redis after it
commits, and the request reads that epoch in the same ``MGET`` as the schema signal and the session
generation (``app.redis_client.prefetch``). A copy is taken only with the epoch read before its ``SELECT``
and is dropped when the epoch moved, when Redis does not answer, and at the latest after ``BACKSTOP_S``
seconds, in case an increment was lost (a process that died between its commit and the increment, Redis
restarted, a change written by plain SQL).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flask import has_app_context
from redis.exceptions import RedisError
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from app.redis_client import forget_prefetched, get_once, redis_connection

EPOCH_KEY = "tabula:users-epoch"
BACKSTOP_S = 10.0
#: Beyond this many users a process forgets them all and starts again (memory stays bounded).
MAX_USERS = 5000
_PENDING = "tabula_users_changed"
_NO_EPOCH = b"0"
logger = logging.getLogger(__name__)

_kept: dict[int, tuple[bytes, float, Any]] = {}
_lock = threading.Lock()


def signed_in_user(session: Session, model: type, pk: Any, load: Any) -> Any:
    """The user ``pk`` in ``session``: this process's copy when still current, else ``load()``'s answer
    (which is then kept)."""
    try:
        key = int(pk)
    except (TypeError, ValueError):
        return load()
    present = session.identity_map.get(Session.identity_key(model, key))
    if present is not None:  # as ``Session.get`` would: never overwrite what this session holds
        return present
    epoch = _read_epoch()
    if epoch is None:
        return load()
    with _lock:
        kept = _kept.get(key)
    if kept is not None and kept[0] == epoch and kept[1] > time.monotonic():
        return session.merge(kept[2], load=False)
    user = load()
    if user is not None and isinstance(user, model):
        copy = _detached_copy(user)
        with _lock:
            if len(_kept) >= MAX_USERS:
                _kept.clear()
            _kept[key] = (epoch, time.monotonic() + BACKSTOP_S, copy)
    return user


def forget_all() -> None:
    """This process keeps no user (the next request of each reads it from the database)."""
    with _lock:
        _kept.clear()


def _read_epoch() -> bytes | None:
    """The epoch (``b"0"`` before any change), or None when Redis does not answer."""
    try:
        value = get_once(EPOCH_KEY)
    except RedisError:
        return None
    return value if value is not None else _NO_EPOCH


def _detached_copy(user: Any) -> Any:
    """The user and their roles, columns only, belonging to no session (so no commit or close of the
    request's session expires them)."""
    roles = [_columns_copy(role) for role in user.roles]
    copy = _columns_copy(user, detach=False)
    set_committed_value(copy, "roles", roles)
    make_transient_to_detached(copy)
    return copy


def _columns_copy(instance: Any, detach: bool = True) -> Any:
    mapper = inspect(type(instance))
    copy = mapper.class_manager.new_instance()
    for attribute in mapper.column_attrs:
        set_committed_value(copy, attribute.key, getattr(instance, attribute.key))
    if detach:
        make_transient_to_detached(copy)
    return copy


def _after_flush(session: Session, _context: Any) -> None:
    from flask_appbuilder.security.sqla.models import Role, User

    if session.info.get(_PENDING):
        return
    for instance in (*session.new, *session.dirty, *session.deleted):
        if isinstance(instance, User | Role):
            session.info[_PENDING] = True
            return


def _after_commit(session: Session) -> None:
    if not session.info.pop(_PENDING, False):
        return
    forget_all()
    if not has_app_context():
        return
    forget_prefetched(EPOCH_KEY)
    try:
        redis_connection().incr(EPOCH_KEY)
    except RedisError:
        logger.warning("user change not signalled (no Redis): other processes see it within %ss", BACKSTOP_S)


def install() -> None:
    # A transaction that rolls back keeps the mark (as the schema signal does): the session's next commit
    # signals once more, which costs each process one SELECT per user and misses nothing.
    for name, listener in (("after_flush", _after_flush), ("after_commit", _after_commit)):
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)
