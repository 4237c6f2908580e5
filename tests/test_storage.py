"""The database layer on both dialects: migrations, pragmas, and safe concurrent start."""

from __future__ import annotations

from sqlalchemy import inspect, text

from llmdeck.core.db import Database
from llmdeck.core.migrate import upgrade


def test_migrations_create_every_table(db: Database) -> None:
    tables = set(inspect(db.engine).get_table_names())
    assert {"projects", "users", "memberships", "api_keys", "models", "spans"} <= tables
    with db.engine.connect() as conn:
        versions = set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    assert versions and all(v.startswith("0") for v in versions)


def test_migrating_twice_is_harmless(db: Database) -> None:
    upgrade(db.engine)
    with db.engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM alembic_version")).scalar()
    upgrade(db.engine)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == before


def test_sqlite_runs_in_wal_mode_with_foreign_keys(db: Database) -> None:
    if db.engine.dialect.name != "sqlite":
        assert db.engine.dialect.name == "postgresql"
        with db.engine.connect() as conn:
            assert conn.execute(text("SHOW server_version")).scalar().startswith("18")
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
            assert conn.execute(text("SELECT '[1,2]'::vector <-> '[1,3]'::vector")).scalar() == 1
        return
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_failed_transaction_loses_nothing_already_stored(db: Database) -> None:
    from llmdeck.identity import service
    from llmdeck.identity.schemas import ProjectCreate

    with db.session() as session:
        service.create_project(session, data=ProjectCreate(name="kept"))
    try:
        with db.session() as session:
            service.create_project(session, data=ProjectCreate(name="dropped"))
            service.create_project(session, data=ProjectCreate(name="kept"))
    except Exception as exc:
        assert "already exists" in str(exc)
    with db.session() as session:
        names = {p.name for p in service.list_projects(session)}
    assert "kept" in names and "dropped" not in names
