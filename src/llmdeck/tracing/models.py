"""Tracing tables: one row per span; a trace is the spans sharing a trace id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from llmdeck.core.db import Base, UTCDateTime


class Span(Base):
    __tablename__ = "spans"
    __table_args__ = (
        # Ingestion is idempotent on this triple (OTLP retries must not duplicate spans);
        # its index also finds a trace's spans (0007 dropped a second one that did).
        UniqueConstraint("project_id", "trace_id", "span_id"),
        Index("ix_spans_project_started", "project_id", "started_at"),
        Index("ix_spans_project_session", "project_id", "session_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    trace_id: Mapped[str] = mapped_column(String(32))
    span_id: Mapped[str] = mapped_column(String(16))
    parent_span_id: Mapped[str | None] = mapped_column(String(16))
    api_key_id: Mapped[str | None] = mapped_column(String(26))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20), default="llm")  # llm | embedding | chain | ...
    model: Mapped[str | None] = mapped_column(String(200))
    provider: Mapped[str | None] = mapped_column(String(50))
    input: Mapped[Any | None] = mapped_column(JSON)
    output: Mapped[str | None] = mapped_column(Text)
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    cost: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(10), default="ok")  # ok | error
    error: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Added by 0004_observability: who and what the call was for, from the SDK or OTLP.
    session_id: Mapped[str | None] = mapped_column(String(200))
    user_id: Mapped[str | None] = mapped_column(String(200))
    tags: Mapped[list[str] | None] = mapped_column(JSON)
