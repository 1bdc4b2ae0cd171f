"""``/health``: database, Redis and worker status as JSON; 503 when any of them is down."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db
from app.redis_client import redis_connection
from app.worker_liveness import live_workers

health_bp = Blueprint("health", __name__)


def check_database() -> dict[str, Any]:
    try:
        db.session.execute(text("SELECT 1"))
        return {"ok": True, "backend": db.engine.dialect.name}
    except SQLAlchemyError as exc:
        db.session.rollback()
        return {"ok": False, "error": exc.__class__.__name__}


def check_redis() -> dict[str, Any]:
    try:
        redis_connection().ping()
        return {"ok": True, "embedded": current_app.config["TABULA_EMBEDDED_REDIS"]}
    except (RedisError, OSError) as exc:
        return {"ok": False, "error": exc.__class__.__name__}


def check_workers() -> dict[str, Any]:
    """Workers registered in Redis, on any machine, whose heartbeat is recent."""
    try:
        alive = live_workers(redis_connection())
    except (RedisError, OSError) as exc:
        return {"ok": False, "count": 0, "error": exc.__class__.__name__}
    result: dict[str, Any] = {"ok": bool(alive), "count": len(alive)}
    if not alive:
        result["error"] = "no worker is running"
    return result


def health_report() -> tuple[dict[str, Any], bool]:
    checks = {"database": check_database(), "redis": check_redis(), "worker": check_workers()}
    healthy = all(check["ok"] for check in checks.values())
    return {"status": "ok" if healthy else "error", "checks": checks}, healthy


@health_bp.get("/health")
def health():  # noqa: ANN201
    report, healthy = health_report()
    response = jsonify(report)
    response.status_code = 200 if healthy else 503
    response.headers["Cache-Control"] = "no-store"
    return response
