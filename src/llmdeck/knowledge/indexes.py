"""The one interface retrieval talks to; SQLite and PostgreSQL implement it.

`index_for(session)` is the only place that looks at the dialect. Both sides store chunks in
`kb_chunks`; they differ in how text and vectors are searched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sqlalchemy import String, cast, event, select
from sqlalchemy.orm import Session

from llmdeck.core.errors import InvalidRequest
from llmdeck.knowledge.models import Chunk

# A small English stop list: these words match nearly every chunk and only add noise to an
# OR query (PostgreSQL's english configuration drops them too).
_STOP = (
    "a an and are as at be but by for from has have how if in into is it its of on or such "
    "that the their then there these they this to was were what when where which who why will "
    "with do does did can could should would than so not no any all also been being"
)
STOPWORDS = frozenset(_STOP.split())
_WORD = re.compile(r"[a-z0-9]+")
_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def query_terms(query: str, limit: int = 64) -> list[str]:
    """The searchable words of a query, lower-cased, de-duplicated, stop words dropped."""
    terms: list[str] = []
    for word in _WORD.findall(query.lower()):
        if word not in STOPWORDS and word not in terms:
            terms.append(word)
    return terms[:limit]


@dataclass
class Hit:
    chunk_id: int
    score: float


class ChunkIndex(Protocol):
    """Keyword and vector search over one index version's chunks."""

    def keyword(
        self, session: Session, *, version_id: str, query: str, k: int, filters: dict[str, Any]
    ) -> list[Hit]: ...

    def vector(
        self,
        session: Session,
        *,
        version_id: str,
        vector: np.ndarray,
        k: int,
        filters: dict[str, Any],
    ) -> list[Hit]: ...

    def prepare(self, session: Session, *, dimensions: int) -> None:
        """Make sure vectors of this many dimensions can be indexed."""


def filter_clauses(filters: dict[str, Any]) -> list[Any]:
    """SQL conditions for metadata filters: `{"key": value}` or `{"key": [v1, v2]}`."""
    clauses = []
    for key, value in (filters or {}).items():
        if not _KEY.match(key):
            raise InvalidRequest(
                f"Filter key {key!r} must be letters, digits, '_', '.' or '-'.", param="filters"
            )
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str | int | float | bool) for v in values):
            raise InvalidRequest(
                f"Filter {key!r} takes a string, number or list of them.", param="filters"
            )
        field = cast(Chunk.metadata_[key].as_string(), String)
        clauses.append(field.in_([_as_text(v) for v in values]))
    return clauses


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# Chunk writes in this process bump a counter once committed, so in-process caches (the
# SQLite vector matrix) know at once; other processes' writes are found by a periodic check.
_generation = 0


def mark_changed(session: Session) -> None:
    """Note that this session changed chunks; caches learn of it when it commits."""
    session.info["knowledge_changed"] = True


def generation() -> int:
    return _generation


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    global _generation
    if session.info.pop("knowledge_changed", False):
        _generation += 1


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop("knowledge_changed", None)


def index_for(session: Session) -> ChunkIndex:
    """The index implementation for this session's database."""
    if session.get_bind().dialect.name == "postgresql":
        from llmdeck.knowledge.index_postgres import PostgresIndex

        return PostgresIndex()
    from llmdeck.knowledge.index_sqlite import SqliteIndex

    return SqliteIndex()


def chunk_vectors(session: Session, chunk_ids: list[int]) -> dict[int, np.ndarray]:
    """Stored vectors of these chunks (for MMR and reranking)."""
    if not chunk_ids:
        return {}
    rows = session.execute(select(Chunk.id, Chunk.embedding).where(Chunk.id.in_(chunk_ids)))
    return {i: np.asarray(v, dtype=np.float32) for i, v in rows if v is not None}
