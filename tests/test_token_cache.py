"""API tokens verified once per process (``app.token_cache``): the same token is not decoded again, yet an
expired, tampered or foreign token is refused exactly as before, also right after the genuine one passed."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from typing import Any

import jwt
import pytest
from flask import Flask
from flask_jwt_extended import create_access_token

from tests.conftest import ADMIN_PASSWORD

COMPANIES = "/api/v1/t/companies/"


def admin_token(app: Flask) -> str:
    response = app.test_client().post(
        "/api/v1/security/login", json={"username": "admin", "password": ADMIN_PASSWORD, "provider": "db"}
    )
    assert response.status_code == 200
    return response.get_json()["access_token"]


def status(app: Flask, token: str) -> int:
    return app.test_client().get(COMPANIES, headers={"Authorization": f"Bearer {token}"}).status_code


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every PyJWT decode of this test (flask-jwt-extended calls it through the module)."""
    seen: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return seen


def test_a_token_is_verified_once(app: Flask, decodes: list[str]) -> None:
    token = admin_token(app)
    assert status(app, token) == 200
    assert decodes, "the first use verifies it"
    decodes.clear()
    assert [status(app, token) for _ in range(3)] == [200, 200, 200]
    assert decodes == []


def test_an_expired_token_is_refused_although_it_passed_before(app: Flask) -> None:
    with app.app_context():
        admin_id = app.appbuilder.sm.find_user(username="admin").id
    with app.test_request_context():
        token = create_access_token(identity=str(admin_id), expires_delta=dt.timedelta(seconds=1))
    assert status(app, token) == 200
    time.sleep(1.2)
    response = app.test_client().get(COMPANIES, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "expired" in response.get_data(as_text=True).lower()


def _segments(token: str) -> list[str]:
    return token.split(".")


def test_a_tampered_token_is_refused_after_the_genuine_one_passed(app: Flask) -> None:
    token = admin_token(app)
    assert status(app, token) == 200
    header, payload, signature = _segments(token)
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = str(int(claims["sub"]) + 1)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    assert status(app, f"{header}.{forged}.{signature}") in (401, 422)
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    assert status(app, f"{header}.{payload}.{flipped}") in (401, 422)
    foreign = jwt.encode(claims, "not-our-key-" * 4, algorithm="HS256")
    assert status(app, foreign) in (401, 422)
    assert status(app, token) == 200


def test_a_token_not_yet_valid_is_refused(app: Flask) -> None:
    with app.app_context():
        admin_id = app.appbuilder.sm.find_user(username="admin").id
    with app.test_request_context():
        from flask_jwt_extended import decode_token

        token = create_access_token(identity=str(admin_id))
        claims = decode_token(token)
    later = {**claims, "nbf": int(time.time()) + 60}
    with app.app_context():
        forged = jwt.encode(
            later, app.config["JWT_SECRET_KEY"] or app.config["SECRET_KEY"], algorithm="HS256"
        )
    assert status(app, forged) in (401, 422)
    assert status(app, forged) in (401, 422)
