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
    # Tables created at run time for custom entities are not part of the fixed schema.
    return not (type_ == "table" and reflected and compare_to is None and name.startswith("t_"))


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
