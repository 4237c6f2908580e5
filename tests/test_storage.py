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


def test_the_migrated_schema_is_the_models_schema(db: Database) -> None:
    """Migrations and models say the same: no table, column or index only one of them has."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import llmdeck.app  # noqa: F401  (imports every domain's models)
    from llmdeck.core.db import Base

    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diff if _name(d) not in _SEARCH_OBJECTS] == []


# Knowledge search objects 0003 makes in raw SQL, with no model: SQLite's full-text tables,
# PostgreSQL's text-search column and its index, and the vector index.
_SEARCH_OBJECTS = {
    "kb_chunks_fts",
    "kb_chunks_fts_config",
    "kb_chunks_fts_data",
    "kb_chunks_fts_docsize",
    "kb_chunks_fts_idx",
    "tsv",
    "ix_kb_chunks_tsv",
    "ix_kb_chunks_hnsw_384",
}


def _name(difference: tuple) -> str:
    kind, *rest = difference
    if kind == "remove_column":
        return rest[-1].name
    return rest[0].name
