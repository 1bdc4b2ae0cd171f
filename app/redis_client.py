"""The app's Redis client: one per app, short timeouts. A low module (it imports nothing from ``jobs/`` or
``views/``) so the sign-in throttle, the session registry, the security log and ``/health`` can use it."""

from __future__ import annotations

from flask import current_app
from redis import Redis


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
