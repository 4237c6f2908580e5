"""Request and response shapes of the knowledge domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmdeck.knowledge.chunking import ChunkingConfig

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class KnowledgeBaseCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=NAME)
    description: str = Field(default="", max_length=1000)
    embedding_model: str = Field(
        default="minilm-l6", description="Catalog alias of the embedding model."
    )
    chunking: ChunkingConfig = Field(default_factory=ChunkingConfig)


class KnowledgeBaseUpdate(BaseModel):
    """Changing the model or the chunking builds a new index version in the background."""

    description: str | None = Field(default=None, max_length=1000)
    embedding_model: str | None = None
    chunking: ChunkingConfig | None = None


class VersionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    number: int
    embedding_model: str
    dimensions: int | None
    chunking: dict[str, Any]
    status: str
    created_at: datetime
    activated_at: datetime | None


class KnowledgeBasePublic(BaseModel):
    id: str
    name: str
    description: str
    embedding_model: str
    chunking: dict[str, Any]
    active_version: VersionPublic | None
    building_version: VersionPublic | None
    document_count: int
    chunk_count: int
    truncated_chunks: int = Field(
        default=0,
        description="Chunks longer than the embedding model reads: their vectors were made "
        "from their start only (keyword search sees all of them).",
    )
    truncation_notice: str | None = Field(
        default=None, description="What the truncated chunks mean and what to do about them."
    )
    created_at: datetime


class DocumentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    kb_id: str
    name: str
    content_type: str
    size: int
    content_hash: str
    status: str
    error: str | None
    chunk_count: int
    truncated_chunks: int = Field(
        default=0,
        description="Of its chunks, those longer than the embedding model reads: vector "
        "search sees only their start.",
    )
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    created_at: datetime
    updated_at: datetime


class UploadResult(BaseModel):
    documents: list[DocumentPublic]
    unchanged: list[str] = Field(description="Names whose content was already ingested.")
    job_id: str | None = Field(description="The ingestion job, if there is work to do.")


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    kind: str
    status: str
    done: int
    total: int
    message: str
    error: str | None
    result: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=4000)
    mode: Literal["hybrid", "keyword", "vector"] = "hybrid"
    top_k: int = Field(default=5, ge=1, le=100)
    filters: dict[str, Any] = Field(
        default_factory=dict,
        description='Metadata equality filters, e.g. {"document": "faq.md", "row": [1, 2]}.',
    )
    keyword_weight: float = Field(default=1.0, ge=0, le=10, description="RRF weight.")
    vector_weight: float = Field(default=1.0, ge=0, le=10, description="RRF weight.")
    mmr: bool = Field(default=False, description="Diversify results (maximal marginal relevance).")
    mmr_lambda: float = Field(default=0.5, ge=0, le=1, description="1: relevance only.")
    rerank: Literal["none", "embedding"] = Field(
        default="none",
        description="embedding: re-score fused candidates by exact cosine similarity.",
    )


class SearchHit(BaseModel):
    rank: int
    chunk_id: int
    document_id: str
    document_name: str
    text: str
    score: float
    page: int | None
    heading_path: list[str]
    start_offset: int
    end_offset: int
    metadata: dict[str, Any]
    keyword_rank: int | None = None
    vector_rank: int | None = None


class SearchResult(BaseModel):
    data: list[SearchHit]
    version: int
    trace_id: str | None = None
    notice: str | None = Field(
        default=None,
        description="Why nothing matched, when a filter names a key no document's metadata "
        "has but JSONL rows might.",
    )


class AskRequest(SearchRequest):
    model: str = Field(default="smollm2-135m", description="Catalog alias of the chat model.")
    max_tokens: int = Field(default=256, ge=1, le=4096)
    temperature: float | None = Field(default=None, ge=0, le=2)


class Citation(BaseModel):
    number: int
    chunk_id: int
    document_id: str
    document_name: str
    page: int | None
    heading_path: list[str]
    text: str
    url: str


class AskResult(BaseModel):
    answer: str
    citations: list[Citation] = Field(
        description="The sources the answer cites by their [n] marker, in number order."
    )
    cited: list[int] = Field(description="Citation numbers the answer actually refers to.")
    sources: list[Citation] = Field(
        description="Every retrieved chunk given to the model, numbered as in its prompt."
    )
    model: str
    trace_id: str


class Page(BaseModel):
    next_cursor: str | None = None


class KnowledgeBasePage(Page):
    data: list[KnowledgeBasePublic]


class DocumentPage(Page):
    data: list[DocumentPublic]
