"""Feedback on traces: scores, thumbs and comments from the API, the SDK and the console."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmdeck.core.errors import InvalidRequest
from llmdeck.monitoring.models import Feedback
from llmdeck.monitoring.schemas import FeedbackCreate

MAX_LIMIT = 200


def create(session: Session, *, project_id: str, trace_id: str, data: FeedbackCreate) -> Feedback:
    """Record feedback; a thumb counts as score 1 (up) or 0 (down) in the averages."""
    if data.score is None and data.thumbs is None and not data.comment:
        raise InvalidRequest("Give a score, a thumb (up or down) or a comment.")
    if len(trace_id) != 32:
        raise InvalidRequest("trace_id is 32 hexadecimal digits.", param="trace_id")
    kind, score = "score", data.score
    if data.thumbs is not None:
        kind, score = "thumbs", 1.0 if data.thumbs == "up" else 0.0
    elif data.score is None:
        kind = "comment"
    row = Feedback(
        project_id=project_id,
        trace_id=trace_id.lower(),
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
