"""Alembic environment: runs against the engine handed over by llmdeck.core.migrate."""

from alembic import context
from sqlalchemy import create_engine

from llmdeck.core.db import Base
from llmdeck.models import import_all_models

import_all_models()
config = context.config
target_metadata = Base.metadata


def run() -> None:
    engine = config.attributes.get("engine") or create_engine(
        config.get_main_option("sqlalchemy.url")
    )
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Two server processes starting together must not both migrate.
            connection.exec_driver_sql("SELECT pg_advisory_lock(72170001)")
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SELECT pg_advisory_unlock(72170001)")
            connection.commit()


run()
