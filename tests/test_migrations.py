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


def test_0020_gives_existing_records_their_times_from_their_history(scratch_env, tmp_path) -> None:  # noqa: ANN001
    """Records written before revision 0020 get created_at / updated_at from the oldest and newest line of
    their history; a core record without history keeps its created_at as its last change; a run-time
    record without history stays empty (nobody knows)."""
    from sqlalchemy import text

    from custom_fields import records, service
    from custom_fields.access import Actor
    from custom_fields.runtime import refresh

    url = f"sqlite:///{tmp_path / 'scratch.db'}"
    scratch = create_app({**scratch_env, "DATABASE_URL": url, "TABULA_INSTANCE_DIR": str(tmp_path)})
    directory = scratch.extensions["migrate"].directory
    from app.bootstrap import initialize

    initialize(scratch, echo=lambda _message: None)  # the migrations, then the core tables' metadata
    with scratch.app_context():
        entity = service.create_entity("Сроки", "Сроки")
        table, entity_id = entity.table_name, entity.id
        name = refresh().entity(table).display_field.name
        system = Actor.system_job()
        pk = records.create(table, {name: "первая"}, system).id
        records.update(table, pk, {name: "вторая"}, system, expected_version=None)
        company = records.create("companies", {"name": "ООО Старое"}, system).id
        records.update("companies", company, {"region": "Тверь"}, system, expected_version=None)
        db.session.commit()

        def one(sql: str, **params: object) -> tuple:
            return tuple(db.session.execute(text(sql), params).one())

        history = "SELECT min(at), max(at) FROM tabula_record_change WHERE record_id = :r AND entity_id = :e"
        first, last = one(history, r=pk, e=entity_id)
        core_id = one("SELECT id FROM tabula_entity WHERE table_name = 'crm_company'")[0]
        company_last = one(history, r=company, e=core_id)[1]
        downgrade(directory=directory, revision="0019")
        db.session.execute(text(f"INSERT INTO {table} (row_version, {name}) VALUES (1, 'без истории')"))  # noqa: S608
        bare = db.session.execute(
            text(
                "INSERT INTO crm_company (name, row_version, created_at) "
                "VALUES ('ООО Голое', 1, '2024-01-02 03:04:05.000000') RETURNING id"
            )
        ).scalar_one()
        db.session.commit()
        upgrade(directory=directory)
        stamps = f"SELECT created_at, updated_at FROM {table} WHERE id "  # noqa: S608
        assert one(stamps + "= :r", r=pk) == (first, last)
        assert one(stamps + "<> :r", r=pk) == (None, None)
        assert one("SELECT updated_at FROM crm_company WHERE id = :c", c=company)[0] == company_last
        assert (
            one("SELECT updated_at FROM crm_company WHERE id = :c", c=bare)[0] == "2024-01-02 03:04:05.000000"
        )
