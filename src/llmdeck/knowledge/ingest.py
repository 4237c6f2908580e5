"""The ingestion job: parse, chunk and embed (through the gateway) what each version lacks."""

from __future__ import annotations

from typing import Any

import anyio
import numpy as np
from sqlalchemy import insert, select

from llmdeck.core import jobs
from llmdeck.core.errors import LLMDeckError, UpstreamError
from llmdeck.gateway.service import embedding_call
from llmdeck.identity.schemas import Principal
from llmdeck.knowledge import chunking, parsing, service
from llmdeck.knowledge.indexes import index_for, mark_changed
from llmdeck.knowledge.models import Chunk, Document, IndexVersion, KnowledgeBase

EMBED_BATCH = 16
EMBED_ATTEMPTS = 6
# How long a replaced version's chunks outlive the switch: queries that resolved the old
# version just before it must still find its chunks.
RETIRE_GRACE_S = 2.0


def _plan(db, kb_id: str) -> list[tuple[str, str]]:
    """(version id, document id) pairs still to ingest: documents with no chunks there."""
    with db.session() as session:
        kb = session.get(KnowledgeBase, kb_id)
        if kb is None:
            return []
        versions = [v for v in (kb.active_version_id, kb.building_version_id) if v]
        documents = session.scalars(
            select(Document.id).where(Document.kb_id == kb.id).order_by(Document.id)
        ).all()
        plan = []
        for version_id in versions:
            done = set(
                session.scalars(
                    select(Chunk.document_id).where(Chunk.version_id == version_id).distinct()
                )
            )
            failed = set(
                session.scalars(
                    select(Document.id).where(Document.kb_id == kb.id, Document.status == "failed")
                )
            )
            plan += [(version_id, d) for d in documents if d not in done and d not in failed]
        return plan


def _prepare(db, settings, version_id: str, document_id: str):
    """Parse and chunk one document (CPU work, run in a thread)."""
    with db.session() as session:
        document = session.get(Document, document_id)
        version = session.get(IndexVersion, version_id)
        if document is None or version is None:
            return None
        data = service.read_original(settings, document)
        kind = document.metadata_.get("format") or parsing.sniff(document.name, data)
        blocks = parsing.parse(kind, data)
        text, _ = chunking.document_text(blocks)
        service.write_parsed(settings, document, text)
        config = chunking.ChunkingConfig.model_validate(version.chunking)
        pieces = chunking.chunk(blocks, config)
        if not pieces:
            raise parsing.ParseError("The document has no text to index.")
        base = {k: v for k, v in document.metadata_.items()}
        base["document"] = document.name
        return {
            "hash": document.content_hash,
            "kb_id": document.kb_id,
            "project_id": document.project_id,
            "model": version.embedding_model,
            "base": base,
            "pieces": pieces,
        }


def _store(
    db, version_id: str, document_id: str, prepared: dict[str, Any], vectors, cut: set[int]
) -> int:
    with db.session() as session:
        document = session.get(Document, document_id)
        if document is None or document.content_hash != prepared["hash"]:
            return 0  # deleted or replaced while we worked: drop this result
        version = session.get(IndexVersion, version_id)
        if version is None or version.status == "retired":
            return 0
        dims = len(vectors[0]) if len(vectors) else None
        if dims is not None and version.dimensions is None:
            version.dimensions = dims
            index_for(session).prepare(session, dimensions=dims)
        rows = [
            dict(
                version_id=version_id,
                kb_id=prepared["kb_id"],
                project_id=prepared["project_id"],
                document_id=document_id,
                ordinal=i,
                text=p.text,
                page=p.page,
                heading_path=list(p.headings),
                start_offset=p.start,
                end_offset=p.end,
                token_count=p.token_count,
                metadata_={**prepared["base"], **p.metadata, **_cut_flag(i in cut)},
                dimensions=dims,
                embedding=np.asarray(v, dtype=np.float32),
            )
            for i, (p, v) in enumerate(zip(prepared["pieces"], vectors, strict=True))
        ]
        if rows:
            mark_changed(session)
            session.execute(insert(Chunk), rows)
        kb = session.get(KnowledgeBase, prepared["kb_id"])
        if kb is not None and version_id == kb.active_version_id:
            document.status, document.error, document.chunk_count = "ready", None, len(rows)
        return len(rows)


def _cut_flag(cut: bool) -> dict[str, bool]:
    return {service.TRUNCATED: True} if cut else {}


def _fail(db, document_id: str, message: str) -> None:
    with db.session() as session:
        document = session.get(Document, document_id)
        if document is not None:
            document.status, document.error = "failed", message


def _finish_builds(db, kb_id: str) -> bool:
    """Activate the building version once it holds every ingestible document."""
    with db.session() as session:
        kb = session.get(KnowledgeBase, kb_id)
        if kb is None or not kb.building_version_id:
            return False
        version = session.get(IndexVersion, kb.building_version_id)
        done = set(session.scalars(select(Chunk.document_id).where(Chunk.version_id == version.id)))
        pending = session.scalars(
            select(Document.id).where(Document.kb_id == kb.id, Document.status != "failed")
        ).all()
        if any(d not in done for d in pending):
            return False
        service.activate(session, kb=kb, version=version)
        # Counts shown per document follow the version now serving.
        for document in session.scalars(select(Document).where(Document.kb_id == kb.id)):
            if document.status != "failed":
                document.chunk_count = sum(
                    1
                    for _ in session.scalars(
                        select(Chunk.id).where(
                            Chunk.version_id == version.id, Chunk.document_id == document.id
                        )
                    )
                )
                document.status = "ready"
        return True


# Indexing documents is the platform's own work, not the application's traffic
# (monitoring.calls.INTERNAL_SOURCES); answering a question (retrieval.py) is the app's.
INGEST_SOURCE = "knowledge-ingest"


async def _embed(runtime, principal, model: str, texts: list[str], kb_id: str, document_id: str):
    """One batch through the gateway; a timeout or an open circuit (a cold model, a busy
    machine) is retried with backoff: a long ingestion should not fail on a slow minute."""
    for attempt in range(EMBED_ATTEMPTS):
        # A chunk longer than the model reads is still indexed, its vector made of its start
        # (keyword search sees all of it); the cut chunks are counted and shown.
        call = embedding_call(principal, model, texts, source=INGEST_SOURCE, truncate=True)
        call.attributes["knowledge.kb_id"] = kb_id
        call.attributes["knowledge.document_id"] = document_id
        try:
            return await runtime.gateway.embed(call)
        except UpstreamError:
            if attempt == EMBED_ATTEMPTS - 1:
                raise
            await anyio.sleep(min(30, 2 ** (attempt + 1)))


def _purge(db, kb_id: str) -> None:
    with db.session() as session:
        service.purge_retired(session, kb_id=kb_id)


async def ingest(ctx: jobs.JobContext) -> dict[str, Any]:
    """The `knowledge.ingest` job."""
    runtime = ctx.runtime
    db, settings = runtime.db, runtime.settings
    kb_id = ctx.payload["kb_id"]
    principal = Principal(**ctx.payload["principal"])
    plan = await anyio.to_thread.run_sync(_plan, db, kb_id)
    chunks_total = failed = 0
    cut_by_model: dict[str, int] = {}
    ctx.progress(0, len(plan), "starting", force=True)
    for step, (version_id, document_id) in enumerate(plan):
        try:
            prepared = await anyio.to_thread.run_sync(
                _prepare, db, settings, version_id, document_id
            )
            if prepared is None:
                continue
            texts = [p.text for p in prepared["pieces"]]
            vectors: list[list[float]] = []
            cut: set[int] = set()
            for start in range(0, len(texts), EMBED_BATCH):
                batch = texts[start : start + EMBED_BATCH]
                result = await _embed(
                    runtime, principal, prepared["model"], batch, kb_id, document_id
                )
                vectors.extend(result.vectors)
                cut.update(start + i for i in result.truncated)
            stored = await anyio.to_thread.run_sync(
                _store, db, version_id, document_id, prepared, vectors, cut
            )
            chunks_total += stored
            if stored and cut:
                model = prepared["model"]
                cut_by_model[model] = cut_by_model.get(model, 0) + len(cut)
        except LLMDeckError as exc:
            failed += 1
            await anyio.to_thread.run_sync(_fail, db, document_id, exc.message)
        ctx.progress(step + 1, len(plan), f"{step + 1}/{len(plan)} documents")
    switched = await anyio.to_thread.run_sync(_finish_builds, db, kb_id)
    if switched:
        await anyio.sleep(RETIRE_GRACE_S)
        await anyio.to_thread.run_sync(_purge, db, kb_id)
    ctx.progress(len(plan), len(plan), "done", force=True)
    notices = await anyio.to_thread.run_sync(_notices, db, cut_by_model)
    return {
        "documents": len(plan),
        "chunks": chunks_total,
        "failed": failed,
        "switched": switched,
        "truncated_chunks": sum(cut_by_model.values()),
        "notices": notices,
    }


def _notices(db, cut_by_model: dict[str, int]) -> list[str]:
    with db.session() as session:
        notices = (
            service.truncation_notice(session, model=model, count=count)
            for model, count in cut_by_model.items()
        )
        return [notice for notice in notices if notice]


jobs.register(service.INGEST_JOB, ingest)
