"""The app's Redis client: one per app, short timeouts. A low module (it imports nothing from ``jobs/`` or
``views/``) so the sign-in throttle, the session registry, the security log and ``/health`` can use it."""

from __future__ import annotations

from typing import Any

from flask import current_app, g, has_request_context
from redis import Redis

_PREFETCHED = "tabula_redis_prefetched"


def redis_connection(url: str | None = None) -> Redis:
    """A client for the configured Redis with short timeouts, so a dead Redis is reported, not waited on."""
    if url is None:
        cached = current_app.extensions.get("tabula_redis")
        if cached is not None:
            return cached
    client = Redis.from_url(
        url or current_app.config["REDIS_URL"],
        socket_connect_timeout=3,
        socket_timeout=10,
        health_check_interval=30,
    )
    if url is None:
        current_app.extensions["tabula_redis"] = client
    return client


def prefetch(keys: list[str]) -> None:
    """Read ``keys`` in one round trip at the start of a request, for ``get_once`` to answer later in it
    (the schema-change signal and the token's session generation: one ``MGET`` instead of two ``GET``)."""
    values = redis_connection().mget(keys)
    setattr(g, _PREFETCHED, dict(zip(keys, values, strict=True)))


def get_once(key: str) -> Any:
    """The value prefetched for this request (once: a second read asks Redis again), else read now."""
    if has_request_context():
        prefetched = g.get(_PREFETCHED)
        if prefetched is not None and key in prefetched:
            return prefetched.pop(key)
    return redis_connection().get(key)


def forget_prefetched(key: str) -> None:
    """The key changed during this request: later reads ask Redis."""
    if has_request_context():
        g.get(_PREFETCHED, {}).pop(key, None)
