"""API tokens verified once per process, not on every request.

flask-jwt-extended decodes a token three times per request (its claims unverified, its header, then
verified with the key): about a twentieth of a grid page's time. A token is a fixed string whose signature
either matches the key or not, so the claims of a token that passed are kept (by the exact token, CSRF value
and whether an expired one was allowed) and only its time limits are checked again on each use; a token that
failed is never kept, and one past its expiry goes through the full decode again, which refuses it as
before. The key is the app's for the process's life: rotating it means restarting the processes anyway.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from flask_jwt_extended import JWTManager
from flask_jwt_extended.config import config

#: Beyond this many tokens a process forgets them all and starts again (memory stays bounded).
MAX_TOKENS = 5000


class RememberingJWTManager(JWTManager):
    """flask-jwt-extended's manager, keeping the claims of the tokens it verified."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._verified: dict[tuple[str, Any, bool], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _decode_jwt_from_config(
        self, encoded_token: str, csrf_value: Any = None, allow_expired: bool = False
    ) -> dict:
        key = (encoded_token, csrf_value, allow_expired)
        with self._lock:
            kept = self._verified.get(key)
        if kept is not None and _within_time_limits(kept, allow_expired):
            return dict(kept)
        claims = super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        with self._lock:
            if len(self._verified) >= MAX_TOKENS:
                self._verified.clear()
            self._verified[key] = dict(claims)
        return claims


def _within_time_limits(claims: dict[str, Any], allow_expired: bool) -> bool:
    """PyJWT's expiry check, with the configured leeway (the one check that changes with time: a token past
    its "not before" once stays past it)."""
    if allow_expired:
        return True
    expires = claims.get("exp")
    return isinstance(expires, int | float) and time.time() < expires + _leeway_seconds()


def _leeway_seconds() -> float:
    leeway = config.leeway
    return leeway.total_seconds() if hasattr(leeway, "total_seconds") else float(leeway or 0)
