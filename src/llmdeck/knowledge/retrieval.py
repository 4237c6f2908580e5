"""Retrieval: keyword, vector and hybrid (reciprocal rank fusion), filters, MMR, reranking;
and answers with citations, generated through the gateway and traced."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np
from sqlalchemy import select

from llmdeck.core.db import utcnow
from llmdeck.core.errors import InvalidRequest
from llmdeck.core.ids import new_span_id, new_trace_id
from llmdeck.gateway.schemas import ChatCompletionRequest
from llmdeck.gateway.service import chat_call, embedding_call
from llmdeck.identity.schemas import Principal
from llmdeck.knowledge import service
from llmdeck.knowledge.indexes import chunk_vectors, index_for
from llmdeck.knowledge.models import Chunk, Document
from llmdeck.knowledge.schemas import (
    AskRequest,
    AskResult,
    Citation,
    SearchHit,
    SearchRequest,
    SearchResult,
)
from llmdeck.tracing.writer import SpanRecord

RRF_K = 60  # the constant of Cormack et al. (2009)


@dataclass
class Target:
    """What a query runs against: one knowledge base's serving version."""

    kb_id: str
    kb_name: str
    version_id: str
    version_number: int
    embedding_model: str


def resolve(db, principal: Principal, ref: str) -> Target:
    with db.session() as session:
        kb = service.get_or_raise(session, project_id=principal.project_id, ref=ref)
        version = service.active_version_or_raise(session, kb)
        return Target(kb.id, kb.name, version.id, version.number, version.embedding_model)


def rrf(rankings: list[tuple[list[int], float]], k: int = RRF_K) -> dict[int, float]:
    """Weighted reciprocal rank fusion of ranked id lists."""
    fused: dict[int, float] = {}
    for ids, weight in rankings:
        for rank, chunk_id in enumerate(ids, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight / (k + rank)
    return fused


def mmr(
    query: np.ndarray, candidates: list[int], vectors: dict[int, np.ndarray], k: int, lam: float
) -> list[int]:
    """Maximal marginal relevance: relevant, and unlike what was already picked."""
    pool = [c for c in candidates if c in vectors]
    if not pool:
        return candidates[:k]
    matrix = np.vstack([vectors[c] / max(np.linalg.norm(vectors[c]), 1e-12) for c in pool])
    q = query / max(float(np.linalg.norm(query)), 1e-12)
    relevance = matrix @ q
    chosen: list[int] = []
    left = list(range(len(pool)))
    while left and len(chosen) < k:
        if chosen:
            redundancy = (matrix[left] @ matrix[chosen].T).max(axis=1)
        else:
            redundancy = np.zeros(len(left))
        scores = lam * relevance[left] - (1 - lam) * redundancy
        best = left[int(np.argmax(scores))]
        chosen.append(best)
        left.remove(best)
    return [pool[i] for i in chosen]


def _search_sync(
    db, target: Target, request: SearchRequest, vector: np.ndarray | None
) -> tuple[list[SearchHit], dict[str, Any]]:
    depth = max(50, request.top_k * 5) if request.mode == "hybrid" or request.mmr else request.top_k
    with db.session() as session:
        index = index_for(session)
        keyword_ids: list[int] = []
        vector_ids: list[int] = []
        scores: dict[int, float] = {}
        if request.mode in ("keyword", "hybrid"):
            hits = index.keyword(
                session,
                version_id=target.version_id,
                query=request.query,
                k=depth,
                filters=request.filters,
            )
            keyword_ids = [h.chunk_id for h in hits]
            if request.mode == "keyword":
                scores = {h.chunk_id: h.score for h in hits}
        if request.mode in ("vector", "hybrid") and vector is not None:
            hits = index.vector(
                session,
                version_id=target.version_id,
                vector=vector,
                k=depth,
                filters=request.filters,
            )
            vector_ids = [h.chunk_id for h in hits]
            if request.mode == "vector":
                scores = {h.chunk_id: h.score for h in hits}
        if request.mode == "hybrid":
            scores = rrf(
                [(keyword_ids, request.keyword_weight), (vector_ids, request.vector_weight)]
            )
        ranked = sorted(scores, key=lambda c: (-scores[c], c))
        if request.rerank == "embedding" and vector is not None:
            stored = chunk_vectors(session, ranked)
            q = vector / max(float(np.linalg.norm(vector)), 1e-12)
            scores = {
                c: float(stored[c] @ q / max(np.linalg.norm(stored[c]), 1e-12))
                for c in ranked
                if c in stored
            }
            ranked = sorted(scores, key=lambda c: (-scores[c], c))
        if request.mmr and vector is not None:
            ranked = mmr(
                vector, ranked, chunk_vectors(session, ranked), request.top_k, request.mmr_lambda
            )
        ranked = ranked[: request.top_k]
        rows = {
            chunk.id: (chunk, name)
            for chunk, name in session.execute(
                select(Chunk, Document.name)
                .join(Document, Document.id == Chunk.document_id)
                .where(Chunk.id.in_(ranked), Chunk.version_id == target.version_id)
            )
        }
        k_rank = {c: i for i, c in enumerate(keyword_ids, start=1)}
        v_rank = {c: i for i, c in enumerate(vector_ids, start=1)}
        results = []
        for chunk_id in ranked:
            if chunk_id not in rows:
                continue
            chunk, name = rows[chunk_id]
            results.append(
                SearchHit(
                    rank=len(results) + 1,
                    chunk_id=chunk.id,
                    document_id=chunk.document_id,
                    document_name=name,
                    text=chunk.text,
                    score=round(scores.get(chunk_id, 0.0), 6),
                    page=chunk.page,
                    heading_path=chunk.heading_path or [],
                    start_offset=chunk.start_offset,
                    end_offset=chunk.end_offset,
                    metadata=chunk.metadata_ or {},
                    keyword_rank=k_rank.get(chunk_id),
                    vector_rank=v_rank.get(chunk_id),
                )
            )
        stats = {"keyword_candidates": len(keyword_ids), "vector_candidates": len(vector_ids)}
        return results, stats


async def embed_query(
    runtime, principal: Principal, target: Target, query: str, *, trace_id: str, parent: str
) -> np.ndarray:
    # A query longer than the model reads is embedded by its start, like long chunks are;
    # keyword search still sees all of it.
    call = embedding_call(
        principal, target.embedding_model, [query], source="knowledge", truncate=True
    )
    call.trace_id, call.parent_span_id = trace_id, parent
    result = await runtime.gateway.embed(call)
    return np.asarray(result.vectors[0], dtype=np.float32)


async def search(
    runtime,
    principal: Principal,
    ref: str,
    request: SearchRequest,
    *,
    trace_id: str | None = None,
    span_id: str | None = None,
) -> SearchResult:
    """Search a knowledge base; records a retrieval span (query, chunks, scores)."""
    started, started_at = time.perf_counter(), utcnow()
    trace_id, span_id = trace_id or new_trace_id(), span_id or new_span_id()
    target = await anyio.to_thread.run_sync(resolve, runtime.db, principal, ref)
    vector = None
    if request.mode != "keyword" or request.mmr or request.rerank != "none":
        vector = await embed_query(
            runtime, principal, target, request.query, trace_id=trace_id, parent=span_id
        )
    hits, stats = await anyio.to_thread.run_sync(_search_sync, runtime.db, target, request, vector)
    runtime.writer.submit(
        SpanRecord(
            project_id=principal.project_id,
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=None,
            api_key_id=principal.api_key_id,
            name=f"retrieve {target.kb_name}",
            kind="retrieval",
            input=request.query,
            output=None,
            latency_ms=(time.perf_counter() - started) * 1000,
            attributes={
                "source": "knowledge",
                "knowledge.kb": target.kb_name,
                "knowledge.version": target.version_number,
                "retrieval.mode": request.mode,
                "retrieval.top_k": request.top_k,
                "retrieval.filters": request.filters,
                **stats,
                "retrieval.chunks": [
                    {
                        "chunk_id": h.chunk_id,
                        "document": h.document_name,
                        "score": h.score,
                        "text": h.text[:300],
                    }
                    for h in hits
                ],
            },
            started_at=started_at,
            ended_at=utcnow(),
        )
    )
    notice = None
    if not hits and request.filters:  # an unknown key always matches nothing: only then look
        notice = await anyio.to_thread.run_sync(_check_filter_keys, runtime.db, target, request)
    return SearchResult(data=hits, version=target.version_number, trace_id=trace_id, notice=notice)


def _check_filter_keys(db, target: Target, request: SearchRequest) -> str | None:
    """Refuse filter keys that no chunk can have; a notice when JSONL rows might have them."""
    with db.session() as session:
        known, rows_have_fields = service.metadata_keys(session, kb_id=target.kb_id)
    unknown = sorted(set(request.filters) - known)
    if not unknown:
        return None
    names = ", ".join(repr(k) for k in unknown)
    listed = ", ".join(sorted(known))
    if rows_have_fields:
        return (
            f"No chunk matched. No document's metadata has the filter key {names} (they have: "
            f"{listed}); unless a JSONL row carries it, check its spelling."
        )
    raise InvalidRequest(
        f"Unknown filter key {names}: the documents of {target.kb_name!r} have none. "
        f"Filter on one of: {listed}.",
        param="filters",
        code="unknown_filter_key",
    )


SYSTEM_PROMPT = (
    "Answer the question using only the numbered sources. Cite the sources you use with "
    "their numbers in square brackets, like [1]. If the sources do not contain the answer, "
    "say that you do not know."
)


def build_prompt(question: str, hits: list[SearchHit]) -> list[dict[str, str]]:
    sources = "\n\n".join(
        f"[{h.rank}] ({h.document_name}"
        + (f", page {h.page}" if h.page else "")
        + (f", {' > '.join(h.heading_path)}" if h.heading_path else "")
        + f")\n{h.text}"
        for h in hits
    )
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Sources:\n{sources}\n\nQuestion: {question}"},
    ]


async def ask(runtime, principal: Principal, ref: str, request: AskRequest) -> AskResult:
    """Retrieve, prompt, generate through the gateway, and cite (one trace, two spans+)."""
    trace_id, retrieval_span = new_trace_id(), new_span_id()
    found = await search(
        runtime, principal, ref, request, trace_id=trace_id, span_id=retrieval_span
    )
    chat = ChatCompletionRequest.model_validate(
        {
            "model": request.model,
            "messages": build_prompt(request.query, found.data),
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
    )
    call = chat_call(principal, chat, source="knowledge")
    call.trace_id, call.parent_span_id = trace_id, retrieval_span
    call.attributes["knowledge.kb"] = ref
    result = await runtime.gateway.chat(call)
    sources = [
        Citation(
            number=h.rank,
            chunk_id=h.chunk_id,
            document_id=h.document_id,
            document_name=h.document_name,
            page=h.page,
            heading_path=h.heading_path,
            text=h.text,
            url=f"/api/knowledge-bases/{ref}/documents/{h.document_id}/chunks/{h.chunk_id}",
        )
        for h in found.data
    ]
    # The prompt asks for [n] markers: a source is cited when the answer names it, and
    # a number no source has (a model's invention) cites nothing.
    numbers = {c.number for c in sources}
    cited = sorted({int(n) for n in re.findall(r"\[(\d+)\]", result.content)} & numbers)
    return AskResult(
        answer=result.content,
        citations=[c for c in sources if c.number in cited],
        cited=cited,
        sources=sources,
        model=request.model,
        trace_id=trace_id,
    )
