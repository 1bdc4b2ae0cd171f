"""Brute-force protection: failed sign-ins counted per account and per client address, in Redis.

``TABULA_LOGIN_MAX_FAILURES`` failures for one account (the user, whichever of their user name or e-mail
was typed; for a name no user has, that name, so a lockout says nothing about whether the account exists),
or ``TABULA_LOGIN_MAX_FAILURES_PER_ADDRESS`` from one address, within ``TABULA_LOGIN_LOCKOUT_MINUTES`` lock
that account or address until the oldest of those failures leaves the window: no password is checked
meanwhile. A successful sign-in clears its account's count; an admin can unlock an account or an address on
*System → Sign-in security*. The counting is the ``limits`` library's moving window (the engine of
Flask-Limiter) on the app's Redis, so every web process sees the same counts.
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
    who: str  # the account's user name, or the name typed when no user has it (casefolded); or the address
    until: float  # epoch seconds


def account_key(typed: str, matched_username: str | None = None) -> str:
    """What an account's failures are counted under: the user name of the user the text typed names (FAB
    signs in by user name or e-mail, so both forms must share one count), else the text typed; casefolded.
    A user name rather than the id, so that the admin's list of lockouts reads and unlocks by name."""
    return typed_name(matched_username if matched_username is not None else typed)


def typed_name(typed: str) -> str:
    name = (typed or "").strip().casefold()[:MAX_NAME]
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


def _subjects(account: str) -> list[tuple[str, str]]:
    return [(ACCOUNT, account), (ADDRESS, security_log.client_address() or "unknown")]


def count_attempt(account: str) -> None:
    """Count a sign-in attempt against the account and the client's address BEFORE the password is checked;
    raise ``LoginLocked`` when either has used up its allowance. Each count is one atomic check-and-add in
    Redis, so a burst of parallel attempts cannot get more password checks than the limit."""
    limiter = _limiter()
    counted: list[tuple[str, str]] = []
    for kind, who in _subjects(account):
        item = _item(kind)
        if not limiter.hit(item, who):
            for done_kind, done_who in counted:
                _give_back(done_kind, done_who)
            reset = limiter.get_window_stats(item, who).reset_time
            raise LoginLocked(max(1, math.ceil(reset - time.time())))
        counted.append((kind, who))


def record_failure(account: str, typed: str) -> None:
    """Log a failed sign-in (already counted by ``count_attempt``); a name or address whose allowance it
    used up is listed as locked."""
    security_log.record(security_log.LOGIN_FAILED, typed_name(typed))
    limiter = _limiter()
    for kind, who in _subjects(account):
        item = _item(kind)
        stats = limiter.get_window_stats(item, who)
        if stats.remaining <= 0:
            redis_connection().zadd(LOCKS, {f"{kind}:{who}": stats.reset_time})
            minutes = current_app.config["TABULA_LOGIN_LOCKOUT_MINUTES"]
            security_log.record(
                security_log.LOCKED, who, detail=f"{kind}, {item.amount} failures within {minutes} min"
            )


def record_success(account: str) -> None:
    """A correct password clears the account's failures; the address keeps its failures but not this
    attempt, which ``count_attempt`` counted before the password was known."""
    _limiter().clear(_item(ACCOUNT), account)
    redis_connection().zrem(LOCKS, f"{ACCOUNT}:{account}")
    _give_back(ADDRESS, security_log.client_address() or "unknown")


def _give_back(kind: str, who: str) -> None:
    # The moving window is a Redis list of timestamps, newest first (limits' RedisStorage): dropping the
    # newest entry un-counts one attempt. limits has no public call for it.
    storage = _limiter().storage
    redis_connection().lpop(storage.prefixed_key(_item(kind).key_for(who)))


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
