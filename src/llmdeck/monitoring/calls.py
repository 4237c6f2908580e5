"""A project's model calls as monitoring counts them: each call once, credited with the end
user, session and tags of its trace, application traffic unless asked otherwise.

A call is a span of kind `llm` or `embedding` (from the gateway, the SDK or OTLP), counted
once: an app's span of a call that went through the gateway has the gateway's span as its
child, and only that child counts (tracing.service.one_per_call).

An app sets the end user, session and tags on its request span (the SDK's `context`,
OpenTelemetry's `user.id` on the root span), rarely on each model call, and the gateway's
span of a call knows none of them: a call is credited with those of its nearest ancestor
that has them, or of its trace's root, as the console's trace page shows them.

The platform's own calls (`INTERNAL_SOURCES`) are traced like any other, with their source,
and left out unless a `source` filter asks for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from llmdeck.tracing.models import Span
from llmdeck.tracing.service import REQUEST_KINDS, one_per_call

# The sources of the platform's own calls: drift checks embed a project's inputs
# (monitoring); experiments call their target (eval) and judges (eval-judge); knowledge
# bases embed the documents they index (knowledge-ingest). They go
# through the gateway like every call and stay traced, but they are not the application's
# traffic: counted, a drift check kept a `requests > 0` rule firing, and an experiment
# moves latency and cost. LLMOps tools keep such calls apart the same way (Langfuse runs
# its evaluators in reserved `langfuse-*` environments, out of the default views).
INTERNAL_SOURCES = ("monitoring", "eval", "eval-judge", "knowledge-ingest")
SOURCE_HELP = (
    "app (default: the application's traffic, without the platform's own drift checks and "
    "evaluation calls), all, internal (only those), or one source (gateway, playground, "
    "otlp, eval, monitoring, ...)."
)
# The filters that narrow calls down beyond the default source.
NARROWING = ("model", "api_key", "user", "tag")
ANY_SOURCE = (None, "", "app", "all")
_CHUNK = 500  # ids per IN (...): well under every driver's limit on bound parameters


@dataclass(slots=True)
class Row:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    started_at: datetime
    status: str
    latency_ms: float | None
    ttft_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None
    model: str | None
    api_key_id: str | None
    user_id: str | None
    session_id: str | None
    tags: list[str] | None
    source: str | None


def source_condition(source: str | None) -> ColumnElement[bool] | None:
    """Which spans a `source` filter keeps (None: all of them); see SOURCE_HELP."""
    column = Span.attributes["source"].as_string()
    if source in (None, "", "app"):
        return or_(column.is_(None), column.not_in(INTERNAL_SOURCES))
    if source == "all":
        return None
    if source == "internal":
        return column.in_(INTERNAL_SOURCES)
    return column == source


def _chunks(ids: Iterable[str]) -> Iterator[list[str]]:
    ids = sorted(ids)
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def rows_of(
    session: Session,
    project_id: str,
    filters: dict[str, str | None],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    trace_ids: Iterable[str] | None = None,
) -> list[Row]:
    """The model calls of a window (or of the given traces) that pass the filters."""
    query = select(
        Span.trace_id,
        Span.span_id,
        Span.parent_span_id,
        Span.started_at,
        Span.status,
        Span.latency_ms,
        Span.ttft_ms,
        Span.input_tokens,
        Span.output_tokens,
        Span.cost,
        Span.model,
        Span.api_key_id,
        Span.user_id,
        Span.session_id,
        Span.tags,
        Span.attributes["source"].as_string(),
    ).where(Span.project_id == project_id, Span.kind.in_(REQUEST_KINDS), one_per_call())
    if since is not None:
        query = query.where(Span.started_at >= since)
    if until is not None:
        query = query.where(Span.started_at < until)
    condition = source_condition(filters.get("source"))
    if condition is not None:
        query = query.where(condition)
    if filters.get("model"):
        query = query.where(Span.model == filters["model"])
    if filters.get("api_key"):
        query = query.where(Span.api_key_id == filters["api_key"])
    if trace_ids is None:
        rows = [Row(*r) for r in session.execute(query.order_by(Span.started_at))]
    else:
        rows = [
            Row(*r)
            for chunk in _chunks(trace_ids)
            for r in session.execute(query.where(Span.trace_id.in_(chunk)))
        ]
        rows.sort(key=lambda r: r.started_at)
    _credit(session, project_id, rows)
    if filters.get("user"):
        rows = [r for r in rows if r.user_id == filters["user"]]
    if filters.get("tag"):
        rows = [r for r in rows if r.tags and filters["tag"] in r.tags]
    return rows


def _credit(session: Session, project_id: str, rows: list[Row]) -> None:
    """Give each call the end user, session and tags of its nearest ancestor that has them,
    or else of its trace's root (an ancestor may be missing: another project's, or purged)."""
    wanting = [r for r in rows if r.parent_span_id and not (r.user_id and r.session_id and r.tags)]
    if not wanting:
        return
    spans: dict[tuple[str, str], tuple[Any, ...]] = {}
    roots: dict[str, tuple[Any, ...]] = {}
    for chunk in _chunks({r.trace_id for r in wanting}):
        found = session.execute(
            select(
                Span.trace_id,
                Span.span_id,
                Span.parent_span_id,
                Span.user_id,
                Span.session_id,
                Span.tags,
            ).where(Span.project_id == project_id, Span.trace_id.in_(chunk))
        )
        for trace_id, span_id, *rest in found:
            spans[(trace_id, span_id)] = tuple(rest)
            if rest[0] is None:
                roots.setdefault(trace_id, tuple(rest))
    for row in wanting:
        parent, seen = row.parent_span_id, set()
        while parent and parent not in seen and (row.trace_id, parent) in spans:
            seen.add(parent)
            parent, user, session_id, tags = spans[(row.trace_id, parent)]
            _take(row, user, session_id, tags)
        if parent is not None and row.trace_id in roots:  # the chain broke before the root
            _take(row, *roots[row.trace_id][1:])


def _take(row: Row, user: str | None, session_id: str | None, tags: list[str] | None) -> None:
    row.user_id = row.user_id or user
    row.session_id = row.session_id or session_id
    row.tags = row.tags or tags
