"""Signing in without reading the user from the database on every request (``app.user_cache``): a process
keeps each signed-in user and their roles while no user or role changed; a committed change (here or in
another process, through the admin's screens or the ORM) is seen by the very next request; a change the
signal missed is seen after ``BACKSTOP_S`` seconds; a Redis outage only costs the SELECT."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_appbuilder.security.sqla.models import Role
from redis import Redis
from sqlalchemy import event, text

from app import user_cache
from app.extensions import db
from tests.conftest import csrf_token, login, signed_in

PASSWORD = "Пароль-стойкий-1"


def new_user(app: Flask, role: str = "Staff") -> tuple[str, int]:
    username = f"cache_{uuid.uuid4().hex[:10]}"
    with app.app_context():
        sm = app.appbuilder.sm
        user = sm.add_user(username, "Кэш", "Тестов", f"{username}@example.ru", sm.find_role(role), PASSWORD)
        assert user
        return username, user.id


def bearer(app: Flask, username: str) -> dict[str, str]:
    response = app.test_client().post(
        "/api/v1/security/login", json={"username": username, "password": PASSWORD, "provider": "db"}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def companies_status(app: Flask, headers: dict[str, str]) -> int:
    return app.test_client().get("/api/v1/t/companies/", headers=headers).status_code


def user_statements(app: Flask, work: Any) -> list[str]:
    """The statements reading the users' or roles' tables while ``work`` runs."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        if "ab_user" in statement or "ab_role" in statement:
            seen.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        work()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


@pytest.fixture
def no_role(app: Flask) -> Iterator[int]:
    """A role with no rights at all."""
    with app.app_context():
        role = app.appbuilder.sm.add_role(f"Без прав {uuid.uuid4().hex[:6]}")
        yield role.id


def set_role_by_sql(app: Flask, user_id: int, role_id: int) -> None:
    """What a process that signals nothing would do (a script, a migration): no ORM event fires."""
    with app.app_context():
        db.session.execute(text("DELETE FROM ab_user_role WHERE user_id = :u"), {"u": user_id})
        db.session.execute(
            text("INSERT INTO ab_user_role (user_id, role_id) VALUES (:u, :r)"), {"u": user_id, "r": role_id}
        )
        db.session.commit()


def test_a_token_signs_in_again_without_reading_the_user(app: Flask) -> None:
    username, _ = new_user(app)
    headers = bearer(app, username)
    assert companies_status(app, headers) == 200  # the process keeps the user from here on
    seen = user_statements(app, lambda: [companies_status(app, headers) for _ in range(3)])
    assert seen == []
    assert companies_status(app, headers) == 200


def test_a_browser_session_signs_in_again_without_reading_the_user(app: Flask) -> None:
    username, _ = new_user(app)
    client = app.test_client()
    assert signed_in(login(client, username, PASSWORD))
    assert client.get("/t/companies/list/").status_code == 200
    seen = user_statements(app, lambda: [client.get("/api/v1/t/companies/") for _ in range(3)])
    assert seen == []


def test_an_admin_changing_the_role_on_the_users_screen_takes_effect_on_the_next_request(
    app: Flask, admin_client: FlaskClient, no_role: int
) -> None:
    username, user_id = new_user(app)
    headers = bearer(app, username)
    assert companies_status(app, headers) == 200
    form = admin_client.get(f"/users/edit/{user_id}").get_data(as_text=True)
    data = {
        "first_name": "Кэш",
        "last_name": "Тестов",
        "username": username,
        "email": f"{username}@example.ru",
        "roles": [str(no_role)],
        "active": "y",
        "csrf_token": csrf_token(form),
    }
    assert admin_client.post(f"/users/edit/{user_id}", data=data).status_code == 302
    assert companies_status(app, headers) == 403


def test_a_change_committed_by_another_process_is_seen_through_the_signal(
    app: Flask, redis_url: str, no_role: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(user_cache, "BACKSTOP_S", 600.0)  # however slow the machine
    username, user_id = new_user(app)
    headers = bearer(app, username)
    assert companies_status(app, headers) == 200
    set_role_by_sql(app, user_id, no_role)
    assert companies_status(app, headers) == 200  # nothing said the users changed: this process's copy
    Redis.from_url(redis_url).incr(user_cache.EPOCH_KEY)  # what the other process does after its commit
    assert companies_status(app, headers) == 403


def test_a_lost_signal_is_caught_up_after_the_backstop(
    app: Flask, no_role: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(user_cache, "BACKSTOP_S", 0.5)
    username, user_id = new_user(app)
    headers = bearer(app, username)
    assert companies_status(app, headers) == 200
    set_role_by_sql(app, user_id, no_role)
    time.sleep(0.6)
    assert companies_status(app, headers) == 403


def test_a_committed_user_or_role_change_moves_the_epoch_and_a_rolled_back_one_does_not(
    app: Flask, redis_url: str
) -> None:
    redis = Redis.from_url(redis_url)
    username, user_id = new_user(app)
    before = int(redis.get(user_cache.EPOCH_KEY) or 0)
    with app.app_context():
        user = app.appbuilder.sm.find_user(username=username)
        user.first_name = "Отменено"
        db.session.flush()
        db.session.rollback()
    assert int(redis.get(user_cache.EPOCH_KEY) or 0) == before
    with app.app_context():
        user = app.appbuilder.sm.find_user(username=username)
        user.first_name = "Изменено"
        db.session.commit()
    after_user = int(redis.get(user_cache.EPOCH_KEY) or 0)
    assert after_user > before
    with app.app_context():
        role = app.appbuilder.sm.add_role(f"Роль {uuid.uuid4().hex[:6]}")
        assert role is not None
    assert int(redis.get(user_cache.EPOCH_KEY) or 0) > after_user
    after_role = int(redis.get(user_cache.EPOCH_KEY) or 0)
    assert after_role > after_user
    with app.app_context():  # a commit touching neither moves nothing
        db.session.execute(text("SELECT 1"))
        db.session.commit()
    assert int(redis.get(user_cache.EPOCH_KEY) or 0) == after_role


def test_deactivation_ends_a_token_at_once(app: Flask, admin_client: FlaskClient) -> None:
    username, user_id = new_user(app)
    headers = bearer(app, username)
    assert companies_status(app, headers) == 200
    with app.app_context():
        user = app.appbuilder.sm.get_user_by_id(user_id)
        user.active = False
        db.session.commit()
    assert companies_status(app, headers) == 401


def test_the_kept_user_can_still_be_changed_and_saved(app: Flask) -> None:
    username, user_id = new_user(app)
    client = app.test_client()
    assert signed_in(login(client, username, PASSWORD))
    assert client.get("/users/userinfo/").status_code == 200  # kept from here on
    form = client.get("/userinfoeditview/form").get_data(as_text=True)
    response = client.post(
        "/userinfoeditview/form",
        data={"first_name": "Новое-имя", "last_name": "Тестов", "csrf_token": csrf_token(form)},
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    assert "Новое-имя" in client.get("/users/userinfo/").get_data(as_text=True)
    with app.app_context():
        assert app.appbuilder.sm.get_user_by_id(user_id).first_name == "Новое-имя"


def test_without_redis_signing_in_reads_the_database_each_time(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    username, user_id = new_user(app)
    with app.app_context():
        kept = app.appbuilder.sm.get_user_by_id(user_id)
        assert kept.username == username

    def unreachable(_key: str) -> Any:
        raise RedisConnectionError("down")

    monkeypatch.setattr(user_cache, "get_once", unreachable)
    for _ in range(2):
        with app.app_context():
            seen = user_statements(app, lambda: app.appbuilder.sm.get_user_by_id(user_id))
        assert seen, "with no epoch to trust the user must be read"


def test_a_change_whose_signal_failed_is_seen_by_its_own_process_at_once(
    app: Flask, no_role: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    monkeypatch.setattr(user_cache, "BACKSTOP_S", 600.0)
    username, user_id = new_user(app)
    headers = bearer(app, username)
    assert companies_status(app, headers) == 200

    class NoIncrement:
        def incr(self, _key: str) -> int:
            raise RedisConnectionError("down for a moment")

    with monkeypatch.context() as down, app.app_context():
        down.setattr(user_cache, "redis_connection", lambda: NoIncrement())
        user = app.appbuilder.sm.get_user_by_id(user_id)
        user.roles = [db.session.get(Role, no_role)]
        db.session.commit()
    assert companies_status(app, headers) == 403


def test_a_kept_user_is_a_copy_that_no_requests_commit_expires(app: Flask) -> None:
    username, user_id = new_user(app)
    with app.app_context():
        first = app.appbuilder.sm.get_user_by_id(user_id)
        role_names = sorted(role.name for role in first.roles)
        db.session.commit()  # expires what this session holds, the user included
    got: list[Any] = []
    with app.app_context():
        seen = user_statements(app, lambda: got.append(app.appbuilder.sm.get_user_by_id(user_id)))
        user = got[0]
        assert seen == []
        assert user.username == username and sorted(role.name for role in user.roles) == role_names
        assert user in db.session and user is not first


def test_a_user_changed_but_not_yet_saved_in_this_session_is_not_overwritten(app: Flask) -> None:
    username, user_id = new_user(app)
    with app.app_context():
        app.appbuilder.sm.get_user_by_id(user_id)  # kept from here on
    with app.app_context():
        user = app.appbuilder.sm.get_user_by_id(user_id)
        user.first_name = "Не сохранено"
        again = app.appbuilder.sm.get_user_by_id(user_id)
        assert again is user and again.first_name == "Не сохранено"
        db.session.rollback()
