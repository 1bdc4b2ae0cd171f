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


def test_upgrade_creates_every_table_and_downgrade_removes_them(scratch_env, tmp_path) -> None:  # noqa: ANN001
    url = f"sqlite:///{tmp_path / 'scratch.db'}"
    scratch = create_app({**scratch_env, "DATABASE_URL": url, "TABULA_INSTANCE_DIR": str(tmp_path)})
    with scratch.app_context():
        upgrade(directory=scratch.extensions["migrate"].directory)
        engine = create_engine(url)
        assert set(Model.metadata.tables) <= set(inspect(engine).get_table_names())
        downgrade(directory=scratch.extensions["migrate"].directory, revision="base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        engine.dispose()


def test_0005_makes_every_case_insensitive_unique_field_lower_and_its_downgrade_undoes_it(
    scratch_env,
    tmp_path,  # noqa: ANN001
) -> None:
    """The types whose unique values ignore letter case (long text and tax ids too) get a lower() index on
    upgrade, and their exact-value index back on downgrade (what revision 0004's code expects)."""
    from sqlalchemy import text

    from custom_fields import service
    from custom_fields.types import REGISTRY

    url = f"sqlite:///{tmp_path / 'scratch.db'}"
    scratch = create_app({**scratch_env, "DATABASE_URL": url, "TABULA_INSTANCE_DIR": str(tmp_path)})
    directory = scratch.extensions["migrate"].directory
    with scratch.app_context():
        upgrade(directory=directory)
        entity = service.create_entity("Уникальные", "Уникальные")
        table = entity.table_name
        fields = {  # one unique field of every type that may be unique (links need a target: left out)
            t: service.add_field(entity.id, f"Поле {t}", t, unique=True).column_name
            for t, ftype in REGISTRY.items()
            if ftype.can_unique and t not in ("link", "single_select")
        }
        db.session.commit()
        lowered = {t for t in fields if "lower" in str(REGISTRY[t].unique_expression(db.column("x")))}
        assert {"text", "email", "tax_id"} <= lowered
        engine = create_engine(url)

        def index_sql(column: str) -> str:
            with engine.connect() as conn:
                return conn.execute(
                    text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :n"),
                    {"n": f"uq_{table}_{column}"},
                ).scalar_one()

        def lower_indexed() -> set[str]:
            return {t for t, column in fields.items() if f"lower({column})" in index_sql(column)}

        assert lower_indexed() == lowered  # as the field service creates them
        downgrade(directory=directory, revision="0004")
        assert lower_indexed() == set()
        upgrade(directory=directory)
        assert lower_indexed() == lowered
        engine.dispose()
