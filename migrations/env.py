"""Alembic environment: the schema is every table on Flask-AppBuilder's declarative base (``models``)."""

import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app

from models import Model

config = context.config
if config.config_file_name is not None and not logging.getLogger().handlers:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Model.metadata


def include_object(obj, name, type_, reflected, compare_to):  # noqa: ANN001, ANN201
    # Tables, columns and indexes created at run time for custom tables and fields (``t_*``, ``f_*`` and
    # their ``ix_``/``uq_`` indexes) are not part of the fixed schema.
    if not reflected or compare_to is not None:
        return True
    if type_ == "table":
        return not name.startswith("t_")
    if type_ == "column":
        return not name.startswith("f_")
    if type_ == "index":
        return not (name or "").startswith(("ix_t_", "uq_t_", "ix_crm_", "uq_crm_")) or "_f_" not in name
    return True


def run_migrations_offline() -> None:
    context.configure(
        url=current_app.config["SQLALCHEMY_DATABASE_URI"],
        target_metadata=target_metadata,
        literal_binds=True,
        include_object=include_object,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = current_app.extensions["migrate"].db.engine
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_object=include_object,
            compare_type=True,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
