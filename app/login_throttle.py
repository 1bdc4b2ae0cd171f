"""Brute-force protection: failed sign-ins counted per user name and per client address, in Redis.

``TABULA_LOGIN_MAX_FAILURES`` failures for one user name (whether or not such a user exists, so a lockout
says nothing about the account), or ``TABULA_LOGIN_MAX_FAILURES_PER_ADDRESS`` from one address, within
``TABULA_LOGIN_LOCKOUT_MINUTES`` lock that name or address until the oldest of those failures leaves the
window: no password is checked meanwhile. A successful sign-in clears its name's count; an admin can unlock
a name or an address on *System → Sign-in security*. The counting is the ``limits`` library's moving window
(the engine of Flask-Limiter) on the app's Redis, so every web process sees the same counts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from flask import current_app
from flask_babel import ngettext
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from app import security_log
from app.redis_client import redis_connection

KEY_PREFIX = "tabula:login"
LOCKS = f"{KEY_PREFIX}:locked"  # sorted set: "<kind>:<who>" scored by the moment the lock ends
ACCOUNT = "account"
ADDRESS = "address"
KINDS = (ACCOUNT, ADDRESS)
MAX_NAME = 200  # longer names are counted by their first characters


class LoginLocked(Exception):  # noqa: N818 (reads better at the raise site)
    """Sign-in refused without checking the password: too many recent failures for the name or address."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after

    @property
    def message(self) -> str:
        minutes = max(1, math.ceil(self.retry_after / 60))
        return ngettext(
            "Too many failed sign-ins. Try again in %(num)d minute.",
            "Too many failed sign-ins. Try again in %(num)d minutes.",
            minutes,
        )


@dataclass(frozen=True)
class Lockout:
    kind: str  # ACCOUNT or ADDRESS
    who: str  # the user name (lower case) or the address
    until: float  # epoch seconds


def account_key(username: str) -> str:
    name = (username or "").strip().casefold()[:MAX_NAME]
    return name.encode("utf-8", "replace").decode("utf-8")  # a lone surrogate from JSON becomes "?"


def _limiter() -> MovingWindowRateLimiter:
    limiter = current_app.extensions.get("tabula_login_limiter")
    if limiter is None:
        storage = RedisStorage(
            "redis://", connection_pool=redis_connection().connection_pool, key_prefix=KEY_PREFIX
        )
        limiter = current_app.extensions["tabula_login_limiter"] = MovingWindowRateLimiter(storage)
    return limiter


def _item(kind: str) -> RateLimitItem:
    config = current_app.config
    most = config["TABULA_LOGIN_MAX_FAILURES" if kind == ACCOUNT else "TABULA_LOGIN_MAX_FAILURES_PER_ADDRESS"]
    return RateLimitItemPerMinute(most, config["TABULA_LOGIN_LOCKOUT_MINUTES"], namespace=kind)


def _subjects(username: str) -> list[tuple[str, str]]:
    return [(ACCOUNT, account_key(username)), (ADDRESS, security_log.client_address() or "unknown")]


def refuse_if_locked(username: str) -> None:
    """Raise ``LoginLocked`` when the name or the client's address has used up its failures."""
    limiter = _limiter()
    for kind, who in _subjects(username):
        item = _item(kind)
        if not limiter.test(item, who):
            reset = limiter.get_window_stats(item, who).reset_time
            raise LoginLocked(max(1, math.ceil(reset - time.time())))


def record_failure(username: str) -> None:
    """Count a failed sign-in; the failure that uses up a name's or an address's allowance locks it."""
    security_log.record(security_log.LOGIN_FAILED, account_key(username))
    limiter = _limiter()
    for kind, who in _subjects(username):
        item = _item(kind)
        limiter.hit(item, who)
        stats = limiter.get_window_stats(item, who)
        if stats.remaining <= 0:
            redis_connection().zadd(LOCKS, {f"{kind}:{who}": stats.reset_time})
            minutes = current_app.config["TABULA_LOGIN_LOCKOUT_MINUTES"]
            security_log.record(
                security_log.LOCKED, who, detail=f"{kind}, {item.amount} failures within {minutes} min"
            )


def record_success(username: str) -> None:
    """A correct password clears the name's failures (not the address's)."""
    who = account_key(username)
    _limiter().clear(_item(ACCOUNT), who)
    redis_connection().zrem(LOCKS, f"{ACCOUNT}:{who}")


def unlock(kind: str, who: str, *, actor: str) -> bool:
    """Clear a name's or an address's failures; False when ``kind`` is unknown."""
    if kind not in KINDS:
        return False
    _limiter().clear(_item(kind), who)
    redis_connection().zrem(LOCKS, f"{kind}:{who}")
    security_log.record(security_log.UNLOCKED, who, detail=kind, actor=actor)
    return True


def lockouts() -> list[Lockout]:
    """Names and addresses locked now, the soonest to end first."""
    connection = redis_connection()
    now = time.time()
    connection.zremrangebyscore(LOCKS, "-inf", now)
    found = []
    for member, until in connection.zrange(LOCKS, 0, -1, withscores=True):
        kind, _, who = member.decode(errors="replace").partition(":")
        found.append(Lockout(kind, who, until))
    return found
