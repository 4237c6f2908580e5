"""Speed: index insert rate and query latency at 10k and 100k chunks, on both backends and
Chroma, same vectors, same machine, one run; recall@10 against exact search.

Vectors are scaled up from real ones: the bundled MiniLM's embeddings of the Cranfield
abstracts, each copy mixed with its own random direction (so neighbourhoods look like real
text, not uniform noise); queries are the embeddings of Cranfield's real queries.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import delete, insert, select, text

from bench.retrieval import common

SIZES = (10_000, 100_000)
CHROMA_PYTHON = common.REPO / ".cache" / "bench-chroma-venv" / "bin" / "python"


def real_vectors() -> tuple[np.ndarray, np.ndarray]:
    """(chunk embeddings, query embeddings) saved by the quality run (bench.retrieval.quality)."""
    if not common.VECTORS.exists():
        from bench.retrieval import quality

        quality.evaluate_both(limit=5)
    data = np.load(common.VECTORS)
    return data["corpus"].astype(np.float32), data["queries"].astype(np.float32)


def synthetic(base: np.ndarray, n: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, base.shape[1])).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    out = base[np.arange(n) % len(base)] + 0.6 * noise
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def exact_top10(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    scores = queries @ vectors.T
    best = np.argpartition(-scores, 10, axis=1)[:, :10]
    return best


def _stats(latencies: list[float]) -> dict:
    return {
        "p50_ms": float(np.percentile(latencies, 50)),
        "p95_ms": float(np.percentile(latencies, 95)),
    }


def _target(rt, who):
    from llmdeck.knowledge import service
    from llmdeck.knowledge.schemas import KnowledgeBaseCreate

    with rt.db.session() as session:
        kb = service.create(
            session, project_id=who.project_id, data=KnowledgeBaseCreate(name="speed")
        )
        document, _ = service.add_document(
            session, settings=rt.settings, kb=kb, name="synthetic.txt", data=b"synthetic"
        )
        return kb.id, kb.active_version_id, document.id, kb.project_id


def _load(rt, ids, vectors: np.ndarray, offset: int) -> tuple[float, list[int]]:
    from llmdeck.knowledge.indexes import mark_changed
    from llmdeck.knowledge.models import Chunk

    kb_id, version_id, document_id, project_id = ids
    rows = [
        dict(
            version_id=version_id,
            kb_id=kb_id,
            project_id=project_id,
            document_id=document_id,
            ordinal=offset + i,
            text=f"synthetic chunk {offset + i}",
            page=None,
            heading_path=[],
            start_offset=0,
            end_offset=0,
            token_count=3,
            metadata_={},
            dimensions=vectors.shape[1],
            embedding=v,
        )
        for i, v in enumerate(vectors)
    ]
    started = time.perf_counter()
    with rt.db.session() as session:
        for start in range(0, len(rows), 5000):
            mark_changed(session)
            session.execute(insert(Chunk), rows[start : start + 5000])
    elapsed = time.perf_counter() - started
    with rt.db.session() as session:
        chunk_ids = list(
            session.scalars(
                select(Chunk.id).where(Chunk.version_id == version_id).order_by(Chunk.id)
            )
        )
    return elapsed, chunk_ids


def _queries(rt, version_id, queries, exact, chunk_ids) -> dict:
    from llmdeck.knowledge.indexes import index_for

    position = {c: i for i, c in enumerate(chunk_ids)}
    latencies, recalls = [], []
    with rt.db.session() as session:
        index = index_for(session)
        for q in queries[:5]:  # warm-up: the SQLite side loads its matrix here
            index.vector(session, version_id=version_id, vector=q, k=10, filters={})
            session.rollback()
        for q, truth in zip(queries, exact, strict=True):
            t = time.perf_counter()
            hits = index.vector(session, version_id=version_id, vector=q, k=10, filters={})
            latencies.append((time.perf_counter() - t) * 1000)
            session.rollback()  # SET LOCAL lives per transaction, as in a request
            found = {position[h.chunk_id] for h in hits}
            recalls.append(len(found & set(truth.tolist())) / 10)
    return _stats(latencies) | {"recall@10": float(np.mean(recalls))}


def run_backend(backend: str, vectors: np.ndarray, queries: np.ndarray, exacts: dict) -> dict:
    out = {}
    with common.runtime(backend) as rt:
        who = common.principal(rt)
        ids = _target(rt, who)
        loaded = 0
        chunk_ids: list[int] = []
        for size in SIZES:
            part = vectors[loaded:size]
            if backend == "postgres":
                with rt.db.session() as session:  # bulk load, then build HNSW once
                    session.execute(text("DROP INDEX IF EXISTS ix_kb_chunks_hnsw_384"))
            elapsed, chunk_ids = _load(rt, ids, part, loaded)
            loaded = size
            entry = {"insert_per_s": len(part) / elapsed}
            if backend == "postgres":
                started = time.perf_counter()
                with rt.db.session() as session:
                    session.execute(text("SET maintenance_work_mem = '1GB'"))
                    session.execute(
                        text(
                            "CREATE INDEX ix_kb_chunks_hnsw_384 ON kb_chunks USING hnsw "
                            "((embedding::vector(384)) vector_cosine_ops) WHERE dimensions = 384"
                        )
                    )
                entry["index_build_s"] = time.perf_counter() - started
            entry |= _queries(rt, ids[1], queries, exacts[size], chunk_ids)
            out[size] = entry
        with rt.db.session() as session:
            from llmdeck.knowledge.models import Chunk

            session.execute(delete(Chunk))
    return out


def run_chroma(vectors: np.ndarray, queries: np.ndarray, exacts: dict) -> dict:
    if not CHROMA_PYTHON.exists():
        return {"skipped": f"no Chroma venv at {CHROMA_PYTHON}; create it as BENCHMARKS.md says"}
    out = {}
    for size in SIZES:
        work = Path(tempfile.mkdtemp(prefix="chroma-in-"))
        np.save(work / "vectors.npy", vectors[:size])
        np.save(work / "queries.npy", queries)
        np.save(work / "exact.npy", exacts[size])
        result = subprocess.run(
            [str(CHROMA_PYTHON), str(Path(__file__).with_name("chroma_side.py")), str(work)],
            capture_output=True,
            text=True,
            timeout=1800,
            check=True,
        )
        data = json.loads(result.stdout.strip().splitlines()[-1])
        data["insert_per_s"] = size / data.pop("add_s")
        out[size] = data
    return out


def measure() -> dict:
    base, queries = real_vectors()
    vectors = synthetic(base, max(SIZES))
    exacts = {size: exact_top10(vectors[:size], queries) for size in SIZES}
    return {
        "queries": len(queries),
        "sqlite": run_backend("sqlite", vectors, queries, exacts),
        "postgres": run_backend("postgres", vectors, queries, exacts),
        "chroma": run_chroma(vectors, queries, exacts),
    }


if __name__ == "__main__":
    import sys

    if sys.argv[1:]:  # e.g. `python -m bench.retrieval.speed postgres`: one engine only
        base, queries = real_vectors()
        vectors = synthetic(base, max(SIZES))
        exacts = {size: exact_top10(vectors[:size], queries) for size in SIZES}
        print(json.dumps({b: run_backend(b, vectors, queries, exacts) for b in sys.argv[1:]}))
    else:
        print(json.dumps(measure(), indent=2))
