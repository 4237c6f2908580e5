"""Cranfield (BEIR layout): nDCG@10 and recall@10 for keyword, vector and hybrid retrieval,
on SQLite and PostgreSQL, through the real ingestion and search code."""

from __future__ import annotations

import asyncio
import json
import math
import time

from bench.retrieval import common

MODES = ("keyword", "vector", "hybrid")
DEPTH = 40  # chunks fetched per query, folded into documents (a long abstract has several)


def ndcg_at_10(ranked: list[str], grades: dict[str, int]) -> float:
    dcg = sum(grades.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted(grades.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at_10(ranked: list[str], grades: dict[str, int]) -> float:
    return len(set(ranked[:10]) & set(grades)) / len(grades) if grades else 0.0


def corpus_file(corpus: list[dict]) -> bytes:
    # The BEIR text already starts with the title, so the text alone is indexed.
    lines = [
        json.dumps({"text": row["text"] or row["title"] or "(empty)", "doc_id": row["_id"]})
        for row in corpus
    ]
    return ("\n".join(lines) + "\n").encode()


async def embed_queries(rt, who, texts: list[str]):
    """Query embeddings, through the gateway like every search's, in retried batches."""
    import numpy as np

    from llmdeck.knowledge.ingest import _embed

    vectors = []
    for start in range(0, len(texts), 16):
        batch = texts[start : start + 16]
        vectors += (await _embed(rt, who, "minilm-l6", batch, "cranfield", "queries")).vectors
    return [np.asarray(v, dtype=np.float32) for v in vectors]


def score(rt, who, queries, qrels, ids, vectors, backend: str) -> dict:
    from llmdeck.knowledge import retrieval
    from llmdeck.knowledge.schemas import SearchRequest

    scores = {m: {"ndcg@10": [], "recall@10": []} for m in MODES}
    latencies = {m: [] for m in MODES}
    target = retrieval.resolve(rt.db, who, "cranfield")
    for qid, vector in zip(ids, vectors, strict=True):
        for mode in MODES:
            request = SearchRequest(query=queries[qid], mode=mode, top_k=DEPTH)
            t = time.perf_counter()
            hits, _ = retrieval._search_sync(rt.db, target, request, vector)
            latencies[mode].append((time.perf_counter() - t) * 1000)
            ranked: list[str] = []
            for hit in hits:
                doc = str(hit.metadata.get("doc_id"))
                if doc not in ranked:
                    ranked.append(doc)
            scores[mode]["ndcg@10"].append(ndcg_at_10(ranked, qrels[qid]))
            scores[mode]["recall@10"].append(recall_at_10(ranked, qrels[qid]))
    return {
        "backend": backend,
        "queries": len(ids),
        "modes": {
            m: {k: sum(v) / len(v) for k, v in scores[m].items()}
            | {"p50_ms": sorted(latencies[m])[len(latencies[m]) // 2]}
            for m in MODES
        },
    }


def _chunk_rows(rt) -> list[dict]:
    from sqlalchemy import select

    from llmdeck.knowledge.models import Chunk

    columns = [
        "ordinal",
        "text",
        "page",
        "heading_path",
        "start_offset",
        "end_offset",
        "token_count",
        "metadata_",
        "dimensions",
        "embedding",
    ]
    with rt.db.session() as session:
        chunks = session.scalars(select(Chunk).order_by(Chunk.id)).all()
        return [{c: getattr(chunk, c) for c in columns} for chunk in chunks]


def _copy_into(rt, who, corpus_bytes: bytes, rows: list[dict]) -> None:
    """The same chunks and vectors into another backend, without embedding them again."""
    from sqlalchemy import insert

    from llmdeck.knowledge import service
    from llmdeck.knowledge.indexes import index_for, mark_changed
    from llmdeck.knowledge.models import Chunk, IndexVersion
    from llmdeck.knowledge.schemas import KnowledgeBaseCreate

    with rt.db.session() as session:
        kb = service.create(
            session, project_id=who.project_id, data=KnowledgeBaseCreate(name="cranfield")
        )
        document, _ = service.add_document(
            session, settings=rt.settings, kb=kb, name="cranfield.jsonl", data=corpus_bytes
        )
        version = session.get(IndexVersion, kb.active_version_id)
        version.dimensions = rows[0]["dimensions"]
        index_for(session).prepare(session, dimensions=version.dimensions)
        extra = dict(
            version_id=version.id, kb_id=kb.id, project_id=kb.project_id, document_id=document.id
        )
        for start in range(0, len(rows), 2000):
            mark_changed(session)
            session.execute(insert(Chunk), [r | extra for r in rows[start : start + 2000]])
        document.status, document.chunk_count = "ready", len(rows)


def evaluate_both(limit: int | None = None) -> list[dict]:
    """Ingest into SQLite through the real pipeline (timed), search; then load the same
    chunks and vectors into PostgreSQL and search there (the embedding is not redone)."""
    import numpy as np

    corpus, queries, qrels = common.load_cranfield()
    data = corpus_file(corpus)
    ids = sorted(qrels, key=int)[:limit]
    results = []
    with common.runtime("sqlite") as rt:
        who = common.principal(rt)
        started = time.perf_counter()
        result = common.ingest(rt, who, "cranfield", {"cranfield.jsonl": data})
        ingest_s = time.perf_counter() - started
        if result["failed"] or not result["chunks"]:
            raise RuntimeError(f"Cranfield ingestion failed: {result}")
        vectors = asyncio.run(embed_queries(rt, who, [queries[q] for q in ids]))
        rows = _chunk_rows(rt)
        results.append(score(rt, who, queries, qrels, ids, vectors, "sqlite"))
        results[0] |= {"chunks": result["chunks"], "ingest_s": ingest_s, "documents": len(corpus)}
    # Real vectors for the speed benchmark, so it need not embed anything again.
    common.VECTORS.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        common.VECTORS, corpus=np.vstack([r["embedding"] for r in rows]), queries=np.vstack(vectors)
    )
    with common.runtime("postgres") as rt:
        who = common.principal(rt)
        _copy_into(rt, who, data, rows)
        results.append(score(rt, who, queries, qrels, ids, vectors, "postgres"))
    return results


if __name__ == "__main__":
    print(json.dumps(evaluate_both(), indent=2))
