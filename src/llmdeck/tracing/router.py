"""REST API of tracing: /api/traces."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from llmdeck.identity.deps import get_principal, get_session
from llmdeck.identity.schemas import Principal
from llmdeck.tracing import service
from llmdeck.tracing.schemas import TracePage, TracePublic

router = APIRouter(prefix="/api/traces", tags=["tracing"])


@router.get("", operation_id="list_traces", response_model=TracePage)
def list_traces(
    model: str | None = Query(default=None, description="Only calls to this model alias."),
    status: str | None = Query(
        default=None, description="ok or error: error when any span of the trace failed."
    ),
    since: datetime | None = Query(default=None, description="Started at or after (ISO 8601)."),
    until: datetime | None = Query(default=None, description="Started before (ISO 8601)."),
    limit: int = Query(default=50, ge=1, le=service.MAX_LIMIT),
    cursor: str | None = Query(default=None, description="next_cursor of the previous page."),
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
):
    """This project's traces, newest first."""
    return service.list_traces(
        session,
        project_id=principal.project_id,
        model=model,
        status=status,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )


@router.get("/{trace_id}", operation_id="get_trace", response_model=TracePublic)
def get_trace(
    trace_id: str,
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
):
    """One trace with all its spans."""
    return service.get_trace_or_raise(session, project_id=principal.project_id, trace_id=trace_id)
