"""Reading traces."""

from __future__ import annotations

import base64
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from llmdeck.core.errors import InvalidRequest, NotFound
from llmdeck.tracing.models import Span
from llmdeck.tracing.schemas import SpanPublic, TracePage, TracePublic, TraceSummary

MAX_LIMIT = 200


def list_traces(
    session: Session,
    *,
    project_id: str,
    model: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> TracePage:
    """A project's traces, newest first, as root-span summaries."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}.", param="limit")
    query = select(Span).where(Span.project_id == project_id, Span.parent_span_id.is_(None))
    if model:
        query = query.where(Span.model == model)
    if status:
        query = query.where(Span.status == status)
    if since:
        query = query.where(Span.started_at >= since)
    if until:
        query = query.where(Span.started_at < until)
    if cursor:
        at, row_id = _decode_cursor(cursor)
        query = query.where(
            or_(Span.started_at < at, and_(Span.started_at == at, Span.id < row_id))
        )
    rows = list(
        session.scalars(query.order_by(Span.started_at.desc(), Span.id.desc()).limit(limit + 1))
    )
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return TracePage(data=[_summary(span) for span in rows[:limit]], next_cursor=next_cursor)


def get_trace_or_raise(session: Session, *, project_id: str, trace_id: str) -> TracePublic:
    # Sorted here, not by the query: ordering by started_at made SQLite's planner walk the
    # project's (project_id, started_at) index, every span the project has, rather than
    # find the trace's few spans through the (project_id, trace_id, span_id) one.
    spans = sorted(
        session.scalars(
            select(Span).where(Span.project_id == project_id, Span.trace_id == trace_id)
        ),
        key=lambda span: (span.started_at, span.id),
    )
    if not spans:
        raise NotFound(f"No trace {trace_id!r} in this project.", param="trace_id")
    return TracePublic(trace_id=trace_id, spans=[SpanPublic.model_validate(s) for s in spans])


def _summary(span: Span) -> TraceSummary:
    return TraceSummary(
        trace_id=span.trace_id,
        name=span.name,
        model=span.model,
        status=span.status,
        input_tokens=span.input_tokens,
        output_tokens=span.output_tokens,
        cost=span.cost,
        latency_ms=span.latency_ms,
        ttft_ms=span.ttft_ms,
        started_at=span.started_at,
    )


def _encode_cursor(span: Span) -> str:
    raw = f"{span.started_at.isoformat()}|{span.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        at, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(at), int(row_id)
    except Exception:
        raise InvalidRequest(
            "The cursor is not valid; pass back the next_cursor of a previous page.",
            param="cursor",
        ) from None
