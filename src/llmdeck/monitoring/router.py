"""REST API of monitoring: /api/monitoring/... and feedback on /api/traces/{trace_id}/feedback."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from llmdeck.core.db import Database
from llmdeck.identity.deps import get_principal, get_runtime, get_session, requires
from llmdeck.identity.schemas import Principal
from llmdeck.monitoring import alerts, calls, drift, feedback, metrics, retention
from llmdeck.monitoring.schemas import (
    AlertEventPublic,
    AlertRuleCreate,
    AlertRuleCreated,
    AlertRulePublic,
    DriftReportPublic,
    DriftRequest,
    FeedbackCreate,
    FeedbackPage,
    FeedbackPublic,
    RetentionPublic,
    RetentionUpdate,
)
from llmdeck.runtime import Runtime

router = APIRouter(prefix="/api/monitoring", tags=["monitoring"])
feedback_router = APIRouter(prefix="/api/traces", tags=["monitoring"])
give_feedback = requires("reviewer", "give feedback")
manage_alerts = requires("builder", "manage alert rules")
run_drift = requires("builder", "run drift checks")
manage_retention = requires("admin", "change retention")
WindowQuery = Query(default="24h", description="1h, 6h, 24h, 7d or 30d.")
SourceQuery = Query(default="app", max_length=50, description=calls.SOURCE_HELP)


def _filters(model, api_key, user, tag, source) -> dict[str, str | None]:
    return {"model": model, "api_key": api_key, "user": user, "tag": tag, "source": source}


@router.get("/timeseries", operation_id="get_monitoring_timeseries")
def get_timeseries(
    window: str = WindowQuery,
    group_by: str | None = Query(default=None, description="model, api_key, user, tag or source."),
    model: str | None = None,
    api_key: str | None = Query(default=None, description="An API key id."),
    user: str | None = Query(default=None, description="An end user id."),
    tag: str | None = None,
    source: str = SourceQuery,
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Requests, error rate, latency and TTFT percentiles, tokens and cost per time bucket."""
    return metrics.timeseries(
        session,
        project_id=principal.project_id,
        window=window,
        group_by=group_by,
        filters=_filters(model, api_key, user, tag, source),
    )


@router.get("/summary", operation_id="get_monitoring_summary")
def get_summary(
    window: str = WindowQuery,
    model: str | None = None,
    api_key: str | None = None,
    user: str | None = None,
    tag: str | None = None,
    source: str = SourceQuery,
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Totals over the window, with feedback (on the traces the filters keep).

    platform_calls: the number and cost of the platform's own calls in the window
    (evaluations, drift checks, indexing; source=internal lists them), whatever `source`."""
    return metrics.summary(
        session,
        project_id=principal.project_id,
        window=window,
        filters=_filters(model, api_key, user, tag, source),
    )


@router.get("/top", operation_id="get_monitoring_top")
def get_top(
    by: str = Query(default="model", description="model, api_key, user, tag or source."),
    window: str = WindowQuery,
    limit: int = Query(default=10, ge=1, le=100),
    source: str = SourceQuery,
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """The costliest models, users, keys, tags or sources over the window."""
    return metrics.top(
        session,
        project_id=principal.project_id,
        by=by,
        window=window,
        limit=limit,
        filters={"source": source},
    )


@feedback_router.post(
    "/{trace_id}/feedback",
    operation_id="create_feedback",
    response_model=FeedbackPublic,
    status_code=201,
)
async def create_feedback(
    trace_id: str,
    body: FeedbackCreate,
    principal: Principal = Depends(give_feedback),
    runtime: Runtime = Depends(get_runtime),
):
    """Attach a score from 0 to 1, a thumb or a comment to a trace of this project.

    A trace whose spans are still on their way (feedback right after the answer) is waited
    for a few seconds; one that does not come is a 404."""
    trace_id = feedback.check(trace_id, body)
    await feedback.wait_for_trace(
        runtime.db,
        runtime.writer,
        project_id=principal.project_id,
        trace_id=trace_id,
        span_id=body.span_id,
    )
    return await run_in_threadpool(
        _store_feedback, runtime.db, principal.project_id, trace_id, body
    )


def _store_feedback(
    db: Database, project_id: str, trace_id: str, body: FeedbackCreate
) -> FeedbackPublic:
    with db.session() as session:
        row = feedback.create(session, project_id=project_id, trace_id=trace_id, data=body)
        return FeedbackPublic.model_validate(row)


@feedback_router.get(
    "/{trace_id}/feedback", operation_id="list_trace_feedback", response_model=FeedbackPage
)
def list_trace_feedback(
    trace_id: str,
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
):
    """Feedback on one trace, newest first."""
    rows = feedback.list_feedback(session, project_id=principal.project_id, trace_id=trace_id)
    return FeedbackPage(data=[FeedbackPublic.model_validate(r) for r in rows])


@router.get("/feedback", operation_id="list_feedback", response_model=FeedbackPage)
def list_feedback(
    limit: int = Query(default=50, ge=1, le=feedback.MAX_LIMIT),
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
):
    """This project's feedback, newest first."""
    rows = feedback.list_feedback(session, project_id=principal.project_id, limit=limit)
    return FeedbackPage(data=[FeedbackPublic.model_validate(r) for r in rows])


@router.post(
    "/alert-rules",
    operation_id="create_alert_rule",
    response_model=AlertRuleCreated,
    status_code=201,
)
def create_alert_rule(
    body: AlertRuleCreate,
    principal: Principal = Depends(manage_alerts),
    runtime: Runtime = Depends(get_runtime),
    session: Session = Depends(get_session),
):
    """Create a rule; the webhook's HMAC secret is in the answer, once."""
    rule, secret = alerts.create_rule(
        session, runtime.settings, project_id=principal.project_id, data=body
    )
    return AlertRuleCreated(**AlertRulePublic.model_validate(rule).model_dump(), secret=secret)


@router.get("/alert-rules", operation_id="list_alert_rules", response_model=list[AlertRulePublic])
def list_alert_rules(
    principal: Principal = Depends(get_principal), session: Session = Depends(get_session)
):
    return alerts.list_rules(session, project_id=principal.project_id)


@router.delete("/alert-rules/{rule_id}", operation_id="delete_alert_rule", status_code=204)
def delete_alert_rule(
    rule_id: str,
    principal: Principal = Depends(manage_alerts),
    session: Session = Depends(get_session),
) -> None:
    alerts.delete_rule(session, project_id=principal.project_id, rule_id=rule_id)


@router.post(
    "/alert-rules/evaluate",
    operation_id="evaluate_alert_rules",
    response_model=list[AlertEventPublic],
)
async def evaluate_alert_rules(
    principal: Principal = Depends(manage_alerts), runtime: Runtime = Depends(get_runtime)
):
    """Evaluate this project's rules now (the server also does every minute)."""
    ids = await run_in_threadpool(
        alerts.evaluate, runtime.db, runtime.settings, project_id=principal.project_id
    )
    with runtime.db.session() as session:
        events = alerts.list_events(session, project_id=principal.project_id, limit=200)
        return [AlertEventPublic.model_validate(e) for e in events if e.id in ids]


@router.get(
    "/alert-events", operation_id="list_alert_events", response_model=list[AlertEventPublic]
)
def list_alert_events(
    limit: int = Query(default=100, ge=1, le=500),
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
):
    """The alert history, newest first."""
    return alerts.list_events(session, project_id=principal.project_id, limit=limit)


@router.post(
    "/drift-reports",
    operation_id="create_drift_report",
    response_model=DriftReportPublic,
    status_code=201,
)
async def create_drift_report(
    body: DriftRequest,
    principal: Principal = Depends(run_drift),
    runtime: Runtime = Depends(get_runtime),
):
    """Compare recent inputs and outputs with a baseline window (MMD on embeddings, KS, Fisher)."""
    report = await drift.run(runtime, principal, **body.model_dump())
    return DriftReportPublic.model_validate(report)


@router.get(
    "/drift-reports", operation_id="list_drift_reports", response_model=list[DriftReportPublic]
)
def list_drift_reports(
    principal: Principal = Depends(get_principal), session: Session = Depends(get_session)
):
    return drift.list_reports(session, project_id=principal.project_id)


@router.get("/retention", operation_id="get_retention", response_model=RetentionPublic)
def get_retention(
    principal: Principal = Depends(get_principal), session: Session = Depends(get_session)
):
    days = retention.get_retention(session, project_id=principal.project_id)
    return RetentionPublic(retention_days=days)


@router.put("/retention", operation_id="set_retention", response_model=RetentionPublic)
def set_retention(
    body: RetentionUpdate,
    principal: Principal = Depends(manage_retention),
    session: Session = Depends(get_session),
):
    """Keep spans, feedback and alert history this many days (null: forever)."""
    days = retention.set_retention(
        session, project_id=principal.project_id, days=body.retention_days
    )
    return RetentionPublic(retention_days=days)


@router.post("/retention/purge", operation_id="purge_expired", status_code=200)
async def purge_expired(
    principal: Principal = Depends(manage_retention), runtime: Runtime = Depends(get_runtime)
) -> dict[str, int]:
    """Run the purge job now; the number of spans deleted."""
    deleted = await run_in_threadpool(retention.purge, runtime.db)
    return {"deleted_spans": deleted.get(principal.project_id, 0)}
