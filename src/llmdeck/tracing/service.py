"""Reading traces."""

from __future__ import annotations

import base64
from datetime import datetime

from sqlalchemy import ColumnElement, and_, exists, or_, select
from sqlalchemy.orm import Session, aliased

from llmdeck.core.errors import InvalidRequest, NotFound
from llmdeck.identity import service as identity
from llmdeck.tracing.models import Span
from llmdeck.tracing.schemas import SpanPublic, TracePage, TracePublic, TraceSummary

# The spans that are model calls (from the gateway, the SDK or OTLP).
REQUEST_KINDS = ("llm", "embedding")


def one_per_call() -> ColumnElement[bool]:
    """True for a request span that no other request span of its project records again.

    The SDK's span of a call sent to the gateway (and any client span over a traced
    proxy) is the parent of the span the gateway writes for the same call; counting both
    would double the requests and tokens. The innermost one counts: it has the tokens, the
    cost and the model that answered.
    """
    inner = aliased(Span)
    return ~exists().where(
        inner.project_id == Span.project_id,
        inner.trace_id == Span.trace_id,
        inner.parent_span_id == Span.span_id,
        inner.kind.in_(REQUEST_KINDS),
    )


def failed_trace() -> ColumnElement[bool]:
    """True for a span of a trace in which some span failed.

    A trace is an error when any of its spans is (as Langfuse and LangSmith show a trace
    with an errored observation): an app's root span is often ok around a model call that
    failed and was caught, and the dashboard counts that call as an error. Found through
    the (project_id, trace_id, span_id) index, a trace's few spans.
    """
    other = aliased(Span)
    return exists().where(
        other.project_id == Span.project_id,
        other.trace_id == Span.trace_id,
        other.status == "error",
    )


MAX_LIMIT = 200
STATUSES = ("ok", "error")


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
    """A project's traces, newest first: each root span with the model and the summed
    tokens and cost of the trace's calls (an app's OTLP root span is rarely the call)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}.", param="limit")
    query = select(Span).where(Span.project_id == project_id, Span.parent_span_id.is_(None))
    if model:
        call = aliased(Span)
        query = query.where(
            or_(
                Span.model == model,
                exists().where(
                    call.project_id == Span.project_id,
                    call.trace_id == Span.trace_id,
                    call.model == model,
                ),
            )
        )
    if status:  # empty is no filter, as an empty form field
        if status not in STATUSES:
            raise InvalidRequest(
                f"Unknown status {status!r}; choose one of: {', '.join(STATUSES)}.",
                param="status",
            )
        query = query.where(failed_trace() if status == "error" else ~failed_trace())
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
    trace_ids = [span.trace_id for span in rows[:limit]]
    calls = _calls_of(session, project_id, trace_ids)
    failed = _failed_of(session, project_id, trace_ids)
    return TracePage(
        data=[
            _summary(span, calls.get(span.trace_id, []), failed=span.trace_id in failed)
            for span in rows[:limit]
        ],
        next_cursor=next_cursor,
    )


def _calls_of(session: Session, project_id: str, trace_ids: list[str]) -> dict[str, list[Span]]:
    """Each trace's model calls, each counted once (monitoring's rule), in time order."""
    calls: dict[str, list[Span]] = {}
    if not trace_ids:
        return calls
    query = select(Span).where(
        Span.project_id == project_id,
        Span.trace_id.in_(trace_ids),
        Span.kind.in_(REQUEST_KINDS),
        one_per_call(),
    )
    for span in session.scalars(query.order_by(Span.started_at, Span.id)):
        calls.setdefault(span.trace_id, []).append(span)
    return calls


def _failed_of(session: Session, project_id: str, trace_ids: list[str]) -> set[str]:
    """Which of these traces have a failed span (one query for a page, not one per row)."""
    if not trace_ids:
        return set()
    query = select(Span.trace_id).where(
        Span.project_id == project_id, Span.trace_id.in_(trace_ids), Span.status == "error"
    )
    return set(session.scalars(query.distinct()))


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
    # A child can land before its root (OTLP batches are not ordered): the earliest stands in.
    root = next((s for s in spans if s.parent_span_id is None), spans[0])
    calls = _calls_of(session, project_id, [trace_id]).get(trace_id, [])
    return TracePublic(
        trace_id=trace_id,
        spans=[SpanPublic.model_validate(s) for s in spans],
        summary=_summary(root, calls, failed=any(s.status == "error" for s in spans)),
        call_span_ids=[c.span_id for c in calls],
    )


def has_traces(session: Session, *, project_id: str) -> bool:
    """Whether the project has any span at all (one index look-up)."""
    return bool(session.scalar(select(exists().where(Span.project_id == project_id))))


def projects_with_traces(session: Session) -> list[str]:
    """Names of the projects that have traces, by name (a look-up per project: there are
    few projects, and a DISTINCT over spans would read every span)."""
    return [p.name for p in identity.list_projects(session) if has_traces(session, project_id=p.id)]


def _total(values: list[int | float | None]) -> int | float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _summary(span: Span, calls: list[Span], *, failed: bool) -> TraceSummary:
    """The root span's name and timing; the model, tokens, cost and time to first token of
    its calls; error when any span of the trace failed."""
    if not calls:
        calls = [span]
    models = ", ".join(dict.fromkeys(c.model for c in calls if c.model))
    # The first token the trace waited for is its first call's (an app's root span has
    # none of its own); a call that recorded none (an OTLP client may not) is skipped.
    ttft = next((c.ttft_ms for c in calls if c.ttft_ms is not None), span.ttft_ms)
    return TraceSummary(
        trace_id=span.trace_id,
        name=span.name,
        model=models or span.model,
        status="error" if failed else span.status,
        input_tokens=_total([c.input_tokens for c in calls]),
        output_tokens=_total([c.output_tokens for c in calls]),
        cost=_total([c.cost for c in calls]),
        latency_ms=span.latency_ms,
        ttft_ms=ttft,
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
