"""knowledge bases: jobs, knowledge_bases, kb_versions, kb_documents, kb_chunks and indexes

On SQLite, full-text search is an FTS5 table kept in step with kb_chunks by triggers; vectors
are float32 blobs searched in process. On PostgreSQL, a generated tsvector column with a GIN
index, and pgvector's HNSW per embedding dimension (see knowledge/index_postgres.py).

Revision ID: 0003_knowledge
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

import llmdeck.core.db
import llmdeck.knowledge.models

revision = "0003_knowledge"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC = llmdeck.core.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column(
            "project_id",
            sa.String(26),
            sa.ForeignKey("projects.id", ondelete="CASCADE", name="fk_jobs_project_id_projects"),
            nullable=True,
        ),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("message", sa.String(500), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("started_at", UTC, nullable=True),
        sa.Column("finished_at", UTC, nullable=True),
    )
    op.create_index("ix_jobs_project_id", "jobs", ["project_id"])
    op.create_index("ix_jobs_status_created", "jobs", ["status", "created_at"])

    op.create_table(
        "knowledge_bases",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column(
            "project_id",
            sa.String(26),
            sa.ForeignKey(
                "projects.id", ondelete="CASCADE", name="fk_knowledge_bases_project_id_projects"
            ),
            nullable=False,
        ),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.String(1000), nullable=False),
        sa.Column("active_version_id", sa.String(26), nullable=True),
        sa.Column("building_version_id", sa.String(26), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.UniqueConstraint("project_id", "name", name="uq_knowledge_bases_project_id"),
    )
    op.create_index("ix_knowledge_bases_project_id", "knowledge_bases", ["project_id"])

    op.create_table(
        "kb_versions",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column(
            "kb_id",
            sa.String(26),
            sa.ForeignKey(
                "knowledge_bases.id",
                ondelete="CASCADE",
                name="fk_kb_versions_kb_id_knowledge_bases",
            ),
            nullable=False,
        ),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("embedding_model", sa.String(200), nullable=False),
        sa.Column("dimensions", sa.Integer(), nullable=True),
        sa.Column("chunking", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("activated_at", UTC, nullable=True),
        sa.UniqueConstraint("kb_id", "number", name="uq_kb_versions_kb_id"),
    )

    op.create_table(
        "kb_documents",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column(
            "kb_id",
            sa.String(26),
            sa.ForeignKey(
                "knowledge_bases.id",
                ondelete="CASCADE",
                name="fk_kb_documents_kb_id_knowledge_bases",
            ),
            nullable=False,
        ),
        sa.Column(
            "project_id",
            sa.String(26),
            sa.ForeignKey(
                "projects.id", ondelete="CASCADE", name="fk_kb_documents_project_id_projects"
            ),
            nullable=False,
        ),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.UniqueConstraint("kb_id", "name", name="uq_kb_documents_kb_id"),
    )
    op.create_index("ix_kb_documents_kb_id", "kb_documents", ["kb_id"])

    op.create_table(
        "kb_chunks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "version_id",
            sa.String(26),
            sa.ForeignKey("kb_versions.id", ondelete="CASCADE", name="fk_kb_chunks_version_id"),
            nullable=False,
        ),
        sa.Column(
            "kb_id",
            sa.String(26),
            sa.ForeignKey("knowledge_bases.id", ondelete="CASCADE", name="fk_kb_chunks_kb_id"),
            nullable=False,
        ),
        sa.Column(
            "project_id",
            sa.String(26),
            sa.ForeignKey("projects.id", ondelete="CASCADE", name="fk_kb_chunks_project_id"),
            nullable=False,
        ),
        sa.Column(
            "document_id",
            sa.String(26),
            sa.ForeignKey("kb_documents.id", ondelete="CASCADE", name="fk_kb_chunks_document_id"),
            nullable=False,
        ),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.Column("heading_path", sa.JSON(), nullable=False),
        sa.Column("start_offset", sa.Integer(), nullable=False),
        sa.Column("end_offset", sa.Integer(), nullable=False),
        sa.Column("token_count", sa.Integer(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("dimensions", sa.Integer(), nullable=True),
        sa.Column("embedding", llmdeck.knowledge.models.Embedding(), nullable=True),
        # Ids never reused on SQLite: (count, max id) then fingerprints a version's contents.
        sqlite_autoincrement=True,
    )
    op.create_index("ix_kb_chunks_version_document", "kb_chunks", ["version_id", "document_id"])
    op.create_index("ix_kb_chunks_document", "kb_chunks", ["document_id"])

    if postgres:
        # Full text: a stored, generated tsvector with a GIN index.
        op.execute(
            "ALTER TABLE kb_chunks ADD COLUMN tsv tsvector "
            "GENERATED ALWAYS AS (to_tsvector('english', text)) STORED"
        )
        op.execute("CREATE INDEX ix_kb_chunks_tsv ON kb_chunks USING gin (tsv)")
        # HNSW needs a fixed dimension: one partial index per dimension in use. The bundled
        # model's (384) is made here; index_postgres adds others when a model needs them.
        op.execute(
            "CREATE INDEX ix_kb_chunks_hnsw_384 ON kb_chunks USING hnsw "
            "((embedding::vector(384)) vector_cosine_ops) WHERE dimensions = 384"
        )
    else:
        # FTS5 over kb_chunks.text (external content: the text is stored once), with the
        # porter stemmer, kept in step by triggers.
        op.execute(
            "CREATE VIRTUAL TABLE kb_chunks_fts USING fts5("
            "text, content='kb_chunks', content_rowid='id', tokenize='porter unicode61')"
        )
        op.execute(
            "CREATE TRIGGER kb_chunks_ai AFTER INSERT ON kb_chunks BEGIN "
            "INSERT INTO kb_chunks_fts(rowid, text) VALUES (new.id, new.text); END"
        )
        op.execute(
            "CREATE TRIGGER kb_chunks_ad AFTER DELETE ON kb_chunks BEGIN "
            "INSERT INTO kb_chunks_fts(kb_chunks_fts, rowid, text) "
            "VALUES ('delete', old.id, old.text); END"
        )
        op.execute(
            "CREATE TRIGGER kb_chunks_au AFTER UPDATE OF text ON kb_chunks BEGIN "
            "INSERT INTO kb_chunks_fts(kb_chunks_fts, rowid, text) "
            "VALUES ('delete', old.id, old.text); "
            "INSERT INTO kb_chunks_fts(rowid, text) VALUES (new.id, new.text); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for trigger in ("kb_chunks_ai", "kb_chunks_ad", "kb_chunks_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS kb_chunks_fts")
    op.drop_table("kb_chunks")
    op.drop_table("kb_documents")
    op.drop_table("kb_versions")
    op.drop_table("knowledge_bases")
    op.drop_table("jobs")
