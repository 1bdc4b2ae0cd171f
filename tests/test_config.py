"""config.py: every setting from the environment, embedded defaults, clear messages for bad values."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import config


def test_embedded_defaults(tmp_path: Path) -> None:
    cfg = config.build_config({"TABULA_INSTANCE_DIR": str(tmp_path)})
    assert cfg["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'tabula.db'}"
    assert cfg["REDIS_URL"] == f"unix://{tmp_path / 'redis.sock'}"
    assert cfg["TABULA_EMBEDDED_REDIS"] is True
    assert cfg["BABEL_DEFAULT_LOCALE"] == "en"
    assert set(cfg["LANGUAGES"]) == {"en", "ru"}
    assert cfg["SESSION_COOKIE_HTTPONLY"] is True
    assert cfg["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert cfg["WTF_CSRF_ENABLED"] is True


def test_secret_key_generated_once_and_private(tmp_path: Path) -> None:
    env = {"TABULA_INSTANCE_DIR": str(tmp_path)}
    first = config.build_config(env)["SECRET_KEY"]
    second = config.build_config(env)["SECRET_KEY"]
    assert first == second and len(first) == 64
    mode = stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode)
    assert mode == 0o600
    other = tmp_path / "other"
    assert config.build_config({"TABULA_INSTANCE_DIR": str(other)})["SECRET_KEY"] != first


def test_secret_key_from_environment_wins(tmp_path: Path) -> None:
    env = {"TABULA_INSTANCE_DIR": str(tmp_path), "SECRET_KEY": "from-env"}
    assert config.build_config(env)["SECRET_KEY"] == "from-env"
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.parametrize(
    ("given_url", "expected"),
    [
        ("postgresql://u:p@db:5432/crm", "postgresql+psycopg://u:p@db:5432/crm"),
        ("postgres://u@db/crm", "postgresql+psycopg://u@db/crm"),
        ("postgresql+psycopg://u@db/crm", "postgresql+psycopg://u@db/crm"),
        ("sqlite:////var/lib/tabula.db", "sqlite:////var/lib/tabula.db"),
    ],
)
def test_database_url_normalised(tmp_path: Path, given_url: str, expected: str) -> None:
    env = {"TABULA_INSTANCE_DIR": str(tmp_path), "DATABASE_URL": given_url}
    assert config.build_config(env)["SQLALCHEMY_DATABASE_URI"] == expected


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("DATABASE_URL", "not a url", "DATABASE_URL is not a database URL"),
        ("DATABASE_URL", "mysql://u@h/db", "supports postgresql and sqlite"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL must start with"),
        ("SMTP_PORT", "twenty-five", "SMTP_PORT must be a whole number"),
        ("TABULA_DEMO", "maybe", "TABULA_DEMO must be true or false"),
        ("TABULA_DEFAULT_LOCALE", "de", "TABULA_DEFAULT_LOCALE must be one of en, ru"),
        ("TABULA_PROXY_HOPS", "-1", "TABULA_PROXY_HOPS must be a whole number of at least 0"),
        (
            "TABULA_WORKER_HEARTBEAT_SECONDS",
            "0",
            "TABULA_WORKER_HEARTBEAT_SECONDS must be a whole number of at",
        ),
    ],
)
def test_bad_values_name_the_variable(tmp_path: Path, name: str, value: str, fragment: str) -> None:
    with pytest.raises(config.ConfigError, match=fragment):
        config.build_config({"TABULA_INSTANCE_DIR": str(tmp_path), name: value})


@pytest.mark.parametrize(("stale", "heartbeat"), [("120", "60"), ("120", "90"), ("20", "10"), ("", "60")])
def test_a_heartbeat_not_below_half_the_stale_time_is_refused(
    tmp_path: Path, stale: str, heartbeat: str
) -> None:
    env = {"TABULA_INSTANCE_DIR": str(tmp_path), "TABULA_WORKER_HEARTBEAT_SECONDS": heartbeat}
    if stale:
        env["TABULA_WORKER_STALE_SECONDS"] = stale
    with pytest.raises(config.ConfigError, match=r"^TABULA_WORKER_HEARTBEAT_SECONDS must be below half of"):
        config.build_config(env)


def test_a_heartbeat_below_half_the_stale_time_is_taken(tmp_path: Path) -> None:
    env = {"TABULA_INSTANCE_DIR": str(tmp_path), "TABULA_WORKER_STALE_SECONDS": "21"}
    built = config.build_config({**env, "TABULA_WORKER_HEARTBEAT_SECONDS": "10"})
    assert (built["TABULA_WORKER_STALE_SECONDS"], built["TABULA_WORKER_HEARTBEAT_SECONDS"]) == (21, 10)


def test_redis_and_smtp_from_environment(tmp_path: Path) -> None:
    cfg = config.build_config(
        {
            "TABULA_INSTANCE_DIR": str(tmp_path),
            "REDIS_URL": "redis://cache:6379/2",
            "SMTP_HOST": "smtp.example.ru",
            "SMTP_PORT": "587",
            "SMTP_STARTTLS": "yes",
            "TABULA_DEFAULT_LOCALE": "ru",
        }
    )
    assert cfg["REDIS_URL"] == "redis://cache:6379/2"
    assert cfg["TABULA_EMBEDDED_REDIS"] is False
    assert (cfg["SMTP_HOST"], cfg["SMTP_PORT"], cfg["SMTP_STARTTLS"]) == ("smtp.example.ru", 587, True)
    assert cfg["BABEL_DEFAULT_LOCALE"] == "ru"


def test_long_instance_path_keeps_socket_address_short(tmp_path: Path) -> None:
    deep = tmp_path / ("каталог" * 20)
    socket = config.embedded_redis_socket({"TABULA_INSTANCE_DIR": str(deep)})
    assert len(str(socket)) <= 100
    assert socket == config.embedded_redis_socket({"TABULA_INSTANCE_DIR": str(deep)})


def test_redact_hides_passwords() -> None:
    assert "secret" not in config.redact("postgresql+psycopg://user:secret@db/crm")
    assert config.redact("::::") == "<unparseable URL>"


SETTING_NAMES = [
    "DATABASE_URL",
    "REDIS_URL",
    "SMTP_PORT",
    "SMTP_SSL",
    "TABULA_DEMO",
    "TABULA_PORT",
    "TABULA_DEFAULT_LOCALE",
    "TABULA_WORKER_STALE_SECONDS",
    "SECRET_KEY",
    "TABULA_ADMIN_USER",
]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(SETTING_NAMES), st.text(max_size=60)))
def test_any_environment_gives_a_config_or_a_clear_error(tmp_path_factory, values) -> None:  # noqa: ANN001
    env = {"TABULA_INSTANCE_DIR": str(tmp_path_factory.mktemp("fuzz")), **values}
    try:
        cfg = config.build_config(env)
    except config.ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert cfg["SQLALCHEMY_DATABASE_URI"].startswith(("sqlite", "postgresql+psycopg"))
