"""SQLite: FTS5 (BM25) for keywords, exact float32 search in process for vectors.

Why exact search: measured here (bench/retrieval, BENCHMARKS.md), a matrix product over a
version's vectors answers in about 1 ms at 10k chunks and 8 ms at 100k with perfect recall,
needs no index build and filters by plain row selection, while the HNSW library tried lost
recall on hard data and took minutes to build at 100k on two cores. The vectors live in the
database (float32 blobs) and are loaded once per version into a contiguous matrix, reloaded
when the version's contents change (at once for this process's commits, within a second
for other processes').
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from sqlalchemy import column, func, literal_column, select, table, text
from sqlalchemy.orm import Session

from llmdeck.knowledge.indexes import Hit, filter_clauses, generation, query_terms
from llmdeck.knowledge.models import Chunk


class _Matrix:
    def __init__(self, fingerprint: tuple[int, int], ids: np.ndarray, vectors: np.ndarray):
        self.fingerprint = fingerprint
        self.ids = ids  # ascending
        self.vectors = vectors  # normalised rows, float32, C-contiguous
        self.generation = -1
        self.checked = 0.0


_cache: dict[tuple[str, str], _Matrix] = {}
_lock = threading.Lock()
# How stale another process's writes may look here: the fingerprint query is skipped for
# this long after a check when this process has written nothing meanwhile.
RECHECK_S = 1.0


def _fingerprint(session: Session, version_id: str) -> tuple[int, int]:
    # Chunk ids are never reused (AUTOINCREMENT), so any insert or delete changes this pair.
    count, top = session.execute(
        select(func.count(Chunk.id), func.max(Chunk.id)).where(Chunk.version_id == version_id)
    ).one()
    return int(count or 0), int(top or 0)


def _load(session: Session, version_id: str) -> _Matrix:
    key = (str(session.get_bind().url), version_id)
    now, seen = time.monotonic(), generation()
    with _lock:
        cached = _cache.get(key)
    if cached is not None and cached.generation == seen and now - cached.checked < RECHECK_S:
        return cached
    fingerprint = _fingerprint(session, version_id)
    if cached is not None and cached.fingerprint == fingerprint:
        cached.generation, cached.checked = seen, now
        return cached
    rows = session.execute(
        select(Chunk.id, Chunk.embedding)
        .where(Chunk.version_id == version_id, Chunk.embedding.is_not(None))
        .order_by(Chunk.id)
    ).all()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    if rows:
        vectors = np.ascontiguousarray(np.vstack([r[1] for r in rows]), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.maximum(norms, 1e-12)
    else:
        vectors = np.zeros((0, 0), dtype=np.float32)
    matrix = _Matrix(fingerprint, ids, vectors)
    matrix.generation, matrix.checked = seen, now
    with _lock:
        _cache[key] = matrix
    return matrix


def top_k(vectors: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row positions and cosine scores of the k best rows (rows and query normalised)."""
    scores = vectors @ query
    best = np.argpartition(-scores, k)[:k] if k < len(scores) else np.arange(len(scores))
    best = best[np.argsort(-scores[best], kind="stable")]
    return best, scores[best]


_FTS = table("kb_chunks_fts", column("rowid"))


class SqliteIndex:
    def prepare(self, session: Session, *, dimensions: int) -> None:
        return None  # nothing to create: vectors are blobs, searched in process

    def keyword(
        self, session: Session, *, version_id: str, query: str, k: int, filters: dict[str, Any]
    ) -> list[Hit]:
        terms = query_terms(query)
        if not terms:
            return []
        match = " OR ".join(f'"{t}"' for t in terms)  # terms are [a-z0-9]+: safe to quote
        statement = (
            select(Chunk.id, literal_column("bm25(kb_chunks_fts)").label("rank"))
            .select_from(Chunk)
            .join(_FTS, _FTS.c.rowid == Chunk.id)
            .where(text("kb_chunks_fts MATCH :match"), Chunk.version_id == version_id)
            .where(*filter_clauses(filters))
            .order_by(text("rank"), Chunk.id)
            .limit(k)
        )
        rows = session.execute(statement, {"match": match}).all()
        return [Hit(chunk_id=i, score=-float(rank)) for i, rank in rows]

    def vector(
        self,
        session: Session,
        *,
        version_id: str,
        vector: np.ndarray,
        k: int,
        filters: dict[str, Any],
    ) -> list[Hit]:
        matrix = _load(session, version_id)
        if not len(matrix.ids):
            return []
        query = np.asarray(vector, dtype=np.float32)
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        vectors, ids = matrix.vectors, matrix.ids
        if filters:
            allowed = np.array(
                sorted(
                    session.scalars(
                        select(Chunk.id).where(
                            Chunk.version_id == version_id, *filter_clauses(filters)
                        )
                    )
                ),
                dtype=np.int64,
            )
            rows = np.searchsorted(ids, allowed)
            rows = rows[(rows < len(ids)) & (ids[np.minimum(rows, len(ids) - 1)] == allowed)]
            vectors, ids = vectors[rows], ids[rows]
            if not len(ids):
                return []
        best, scores = top_k(vectors, query, k)
        return [
            Hit(chunk_id=int(ids[b]), score=float(s)) for b, s in zip(best, scores, strict=True)
        ]
