"""Feedback on traces: scores, thumbs and comments from the API, the SDK and the console.

Feedback is only taken for a trace recorded in the caller's project: a made-up or mistyped
id would otherwise count toward the project's quality figures. Spans are stored a moment
after a call ends, though (the gateway's by this server's batching trace writer, an SDK's or
an OpenTelemetry app's in its exporter's next batch), so feedback sent right after an answer
may come first. `wait_for_trace` covers that: it has this server's queued spans written at
once, then looks again for a few seconds (`TRACE_WAIT`) before answering 404.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import datetime
from typing import Any

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlalchemy.orm import Session

from llmdeck.core.db import Database
from llmdeck.core.errors import InvalidRequest, NotFound
from llmdeck.monitoring import calls
from llmdeck.monitoring.models import Feedback
from llmdeck.monitoring.schemas import FeedbackCreate, is_hex_id
from llmdeck.tracing.models import Span
from llmdeck.tracing.writer import TraceWriter

MAX_LIMIT = 200
# Covers this server's writer (it writes every 0.2 s, and is flushed first), another
# replica's, and the SDK exporter's next batch (every 0.5 s). An OpenTelemetry app's batch
# processor waits up to 5 s: such an app should force_flush before it sends feedback.
TRACE_WAIT = 5.0
_POLL = 0.25
_FIRST_POLL = 0.02  # a queued span is written in a few ms once the writer is woken


def trace_id_or_raise(trace_id: str) -> str:
    """The trace id in lower case, or InvalidRequest when it cannot be one."""
    if not is_hex_id(trace_id, 32):
        raise InvalidRequest(
            "trace_id is 32 hexadecimal digits, not all zero (as GET /api/traces and the "
            "gateway's x-llmdeck-trace-id header give it).",
            param="trace_id",
        )
    return trace_id.lower()


def check(trace_id: str, data: FeedbackCreate) -> str:
    """What can be refused before looking for the trace; the trace id in lower case."""
    trace_id = trace_id_or_raise(trace_id)
    if data.score is None and data.thumbs is None and not data.comment:
        raise InvalidRequest("Give a score, a thumb (up or down) or a comment.")
    return trace_id


def is_recorded(
    session: Session, *, project_id: str, trace_id: str, span_id: str | None = None
) -> bool:
    """Whether the project has the trace (and, when given, that span of it)."""
    query = select(Span.id).where(Span.project_id == project_id, Span.trace_id == trace_id)
    if span_id is not None:
        query = query.where(Span.span_id == span_id)
    return session.scalar(query.limit(1)) is not None


def _not_recorded(trace_id: str, span_id: str | None) -> NotFound:
    what = f"span {span_id!r} of trace {trace_id!r}" if span_id else f"trace {trace_id!r}"
    return NotFound(
        f"No {what} is recorded in this project, so there is nothing to give feedback on. "
        "Check the id and the project; spans still on their way are waited for a few "
        "seconds, so send the trace's spans first (flush the exporter) and try again.",
        param="span_id" if span_id else "trace_id",
    )


async def wait_for_trace(
    db: Database,
    writer: TraceWriter | None,
    *,
    project_id: str,
    trace_id: str,
    span_id: str | None = None,
    wait: float | None = None,
) -> None:
    """Return once the trace (and span) is stored in the project; NotFound after `wait` s.

    It waits on the event loop, each look a short query in the threadpool: a burst of
    feedback on unknown ids would otherwise hold every worker thread for the whole wait.
    """
    wait = TRACE_WAIT if wait is None else wait
    deadline = time.monotonic() + wait
    nudged = writer is None
    pause = _FIRST_POLL
    while True:
        if await run_in_threadpool(_is_stored, db, project_id, trace_id, span_id):
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise _not_recorded(trace_id, span_id)
        if not nudged:
            # The common case (a gateway call that just answered): its span is queued here.
            # timeout=0 wakes the writer without waiting for its queue to empty, which under
            # steady traffic it may never do; the looks below see the span once written.
            writer.flush(timeout=0)  # type: ignore[union-attr]
            nudged = True
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, _POLL)


def _is_stored(db: Database, project_id: str, trace_id: str, span_id: str | None) -> bool:
    with db.session() as session:
        return is_recorded(session, project_id=project_id, trace_id=trace_id, span_id=span_id)


def create(session: Session, *, project_id: str, trace_id: str, data: FeedbackCreate) -> Feedback:
    """Record feedback on a recorded trace; a thumb counts as score 1 (up) or 0 (down)."""
    trace_id = check(trace_id, data)
    if not is_recorded(session, project_id=project_id, trace_id=trace_id, span_id=data.span_id):
        raise _not_recorded(trace_id, data.span_id)
    # The schema refuses a score with a thumb: each feedback is one value.
    if data.thumbs is not None:
        kind, score = "thumbs", 1.0 if data.thumbs == "up" else 0.0
    elif data.score is not None:
        kind, score = "score", data.score
    else:
        kind, score = "comment", None
    row = Feedback(
        project_id=project_id,
        trace_id=trace_id,
        span_id=data.span_id,
        name=data.name,
        kind=kind,
        score=score,
        comment=data.comment,
        source=data.source,
        author=data.author,
    )
    session.add(row)
    session.flush()
    return row


def list_feedback(
    session: Session, *, project_id: str, trace_id: str | None = None, limit: int = 50
) -> list[Feedback]:
    """Newest first."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}.", param="limit")
    query = select(Feedback).where(Feedback.project_id == project_id)
    if trace_id:
        query = query.where(Feedback.trace_id == trace_id.lower())
    return list(session.scalars(query.order_by(Feedback.created_at.desc()).limit(limit)))


def summary(
    session: Session,
    *,
    project_id: str,
    since: datetime,
    until: datetime,
    filters: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """Feedback given in the window; with filters (user, model, ...), only feedback on traces
    with a model call that passes them, as the dashboard's other figures count calls.

    feedback_score is the mean of the scores, each from 0 (bad) to 1 (good), a thumb 0 or
    1; feedback_by_name keeps what was judged (the name) apart.
    """
    filters = filters or {}
    rows = list(
        session.execute(
            select(Feedback.trace_id, Feedback.name, Feedback.kind, Feedback.score).where(
                Feedback.project_id == project_id,
                Feedback.created_at >= since,
                Feedback.created_at < until,
            )
        )
    )
    # The default (application traffic) and "all" narrow nothing: feedback on a trace with
    # no model call (an app's own step) still counts.
    source = filters.get("source")
    narrowed = any(filters.get(k) for k in calls.NARROWING) or source not in calls.ANY_SOURCE
    if narrowed and rows:
        judged = calls.rows_of(session, project_id, filters, trace_ids={r[0] for r in rows})
        matching = {c.trace_id for c in judged}
        rows = [r for r in rows if r.trace_id in matching]
    # Scores stored before they were bounded to 0..1 stay listed, but out of the means.
    scored = [(name, s) for _, name, _, s in rows if s is not None and 0 <= s <= 1]
    by_name: dict[str, list[float]] = defaultdict(list)
    for name, score in scored:
        by_name[name].append(score)
    thumbs = [s for _, _, kind, s in rows if kind == "thumbs"]
    return {
        "feedback_count": len(rows),
        "feedback_score": _mean([s for _, s in scored]),
        "feedback_by_name": {
            name: {"count": len(values), "score": _mean(values)}
            for name, values in sorted(by_name.items())
        },
        "thumbs_up": sum(1 for s in thumbs if s == 1.0),
        "thumbs_down": sum(1 for s in thumbs if s == 0.0),
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
