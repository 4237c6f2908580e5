"""Shapes of traces and spans."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SpanPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    model: str | None
    provider: str | None
    api_key_id: str | None
    input: Any | None
    output: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None
    latency_ms: float | None
    ttft_ms: float | None
    status: str
    error: str | None
    attributes: dict[str, Any] = Field(default_factory=dict)
    started_at: datetime
    ended_at: datetime | None
    session_id: str | None = None
    user_id: str | None = None
    tags: list[str] | None = None


class TraceSummary(BaseModel):
    """A trace as listed: its root span's name and timing, with the model(s), the summed
    tokens and cost and the time to first token of the trace's model calls."""

    trace_id: str
    name: str
    model: str | None
    status: str = Field(description="error when any span of the trace failed, else ok.")
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None
    latency_ms: float | None
    ttft_ms: float | None
    started_at: datetime


class TracePage(BaseModel):
    data: list[TraceSummary]
    next_cursor: str | None


class TracePublic(BaseModel):
    trace_id: str
    spans: list[SpanPublic]
    summary: TraceSummary = Field(description="The trace as the list shows it.")
    call_span_ids: list[str] = Field(
        description="The spans counted as the trace's model calls, in time order: each call "
        "once (an SDK span over the gateway's span of the same call is not counted)."
    )
