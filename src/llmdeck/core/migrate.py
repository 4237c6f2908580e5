"""Alembic migrations shipped inside the package, applied at start-up."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision of every branch (safe from several processes).

    Each domain that adds tables starts its own branch from 0001, so domains built side by
    side never fight over the next revision number.
    """
    command.upgrade(alembic_config(engine), "heads")
