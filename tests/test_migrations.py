"""Alembic migrations and the models agree, on every backend the suite runs on."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect

from app import create_app
from app.extensions import db
from custom_fields.ddl import is_fixed_schema
from models import Model


def test_models_match_migrations(app_ctx) -> None:  # noqa: ANN001
    with db.engine.connect() as conn:
        # Tables and columns that admins created at run time are not the migrations' business.
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": is_fixed_schema}
        )
        diff = compare_metadata(context, Model.metadata)
    assert diff == []


def test_upgrade_creates_every_table_and_downgrade_removes_them(env, tmp_path) -> None:  # noqa: ANN001
    url = f"sqlite:///{tmp_path / 'scratch.db'}"
    scratch = create_app({**env, "DATABASE_URL": url, "TABULA_INSTANCE_DIR": str(tmp_path)})
    with scratch.app_context():
        upgrade(directory=scratch.extensions["migrate"].directory)
        engine = create_engine(url)
        assert set(Model.metadata.tables) <= set(inspect(engine).get_table_names())
        downgrade(directory=scratch.extensions["migrate"].directory, revision="base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        engine.dispose()
