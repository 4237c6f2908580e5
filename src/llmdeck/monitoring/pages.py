"""Console pages of monitoring: the dashboard, a trace's waterfall with feedback, alerts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Depends, Form, Request
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.console.forms import field_errors
from llmdeck.console.shell import PageSet, console_of
from llmdeck.core.errors import LLMDeckError, NotFound
from llmdeck.monitoring import alerts, drift, feedback, metrics, retention
from llmdeck.monitoring.schemas import AlertRuleCreate, FeedbackCreate
from llmdeck.monitoring.waterfall import waterfall
from llmdeck.tracing import service as tracing

pages = PageSet("monitoring", __file__)
pages.nav("Dashboard", "/monitoring", section="Observe", order=30, icon="activity")
pages.nav("Alerts", "/alerts", section="Observe", order=50, icon="alert")

STATIC = Path(__file__).parent / "static"
ASSETS = {"uPlot.iife.min.js", "uPlot.min.css", "monitoring.js"}
GROUP_LABELS = {"": "No slicing", "model": "Model", "api_key": "API key", "user": "End user"}
GROUP_LABELS |= {"tag": "Tag", "source": "Source"}
# What the dashboard counts: the application's traffic unless asked (calls.INTERNAL_SOURCES).
TRAFFIC_LABELS = {
    "app": "Application traffic",
    "all": "All traffic",
    "internal": "Platform's own calls",
}
# What calls.INTERNAL_SOURCES are, in the words the dashboard uses.
PLATFORM_CALLS = "evaluations, drift checks, knowledge-base indexing"


@pages.router.get("/monitoring/assets/{name}")
def asset(name: str) -> FileResponse:
    """The vendored chart library (uPlot, MIT) and the dashboard's script: no CDN, offline."""
    if name not in ASSETS:
        raise HTTPException(404)
    return FileResponse(STATIC / name, headers={"Cache-Control": "public, max-age=3600"})


def _charts(series: dict[str, Any]) -> dict[str, Any]:
    """What the dashboard script draws: one chart per figure, one line per group."""
    grouped = series["group_by"] is not None

    def lines(field: str) -> list[dict[str, Any]]:
        return [
            {"label": s["group"] if grouped else field, "values": [p[field] for p in s["points"]]}
            for s in series["series"]
        ]

    def percentiles(prefix: str, qs: tuple[str, ...]) -> list[dict[str, Any]]:
        if grouped:
            return [
                {"label": f"{s['group']} p95", "values": [p[f"{prefix}_p95"] for p in s["points"]]}
                for s in series["series"]
            ]
        return [line for q in qs for line in lines(f"{prefix}_{q}")]

    charts = [
        {"id": "requests", "title": "Requests", "unit": "", "series": lines("requests")},
        {"id": "errors", "title": "Error rate", "unit": "%", "series": lines("error_rate")},
        {
            "id": "latency",
            "title": "Latency",
            "unit": "ms",
            "series": percentiles("latency", ("p50", "p95", "p99")),
        },
        {
            "id": "ttft",
            "title": "Time to first token",
            "unit": "ms",
            "series": percentiles("ttft", ("p50", "p95")),
        },
        {
            "id": "tokens",
            "title": "Tokens (in + out)",
            "unit": "",
            "series": [
                {
                    "label": s["group"] if grouped else "tokens",
                    "values": [p["input_tokens"] + p["output_tokens"] for p in s["points"]],
                }
                for s in series["series"]
            ],
        },
        {"id": "cost", "title": "Cost", "unit": "$", "series": lines("cost")},
    ]
    return {"times": [t.timestamp() for t in series["times"]], "charts": charts}


@pages.router.get("/monitoring")
def dashboard(
    request: Request,
    window: str = "24h",
    group_by: str = "",
    source: str = "app",
    viewer: Viewer = Depends(signed_in),
):
    window = window if window in metrics.WINDOWS else "24h"
    group_by = group_by if group_by in metrics.GROUPS else ""
    source = source if source in TRAFFIC_LABELS else "app"
    project_id = viewer.project.id
    only = {"source": source}
    with request.app.state.runtime.db.session() as session:
        summary = metrics.summary(session, project_id=project_id, window=window, filters=only)
        series = metrics.timeseries(
            session, project_id=project_id, window=window, group_by=group_by or None, filters=only
        )
        top_models, top_users = (
            metrics.top(session, project_id=project_id, by=by, window=window, filters=only)
            for by in ("model", "user")
        )
        reports = drift.list_reports(session, project_id=project_id, limit=5)
        recent_feedback = feedback.list_feedback(session, project_id=project_id, limit=10)
        days = retention.get_retention(session, project_id=project_id)
    context = {
        "window": window,
        "windows": list(metrics.WINDOWS),
        "group_by": group_by,
        "groups": GROUP_LABELS,
        "source": source,
        "sources": TRAFFIC_LABELS,
        "platform_calls": PLATFORM_CALLS,
        "summary": summary,
        "charts": _charts(series),
        "top_models": top_models,
        "top_users": top_users,
        "reports": reports,
        "feedback": recent_feedback,
        "retention_days": days,
        "notice": request.query_params.get("notice", ""),
        "drift_traffic": drift.TRAFFIC_NOTE,
    }
    return console_of(request).render(request, "monitoring/dashboard.html", context)


@pages.router.post("/monitoring/drift", dependencies=[Depends(csrf_protected)])
async def run_drift(request: Request, viewer: Viewer = Depends(signed_in)):
    viewer.require("builder", "run drift checks")
    try:
        report = await drift.run(request.app.state.runtime, viewer.principal)
        notice = "Drift detected." if report.drifted else "No drift detected."
    except LLMDeckError as exc:
        notice = exc.message
    return RedirectResponse(f"/monitoring?notice={notice}", status_code=303)


@pages.router.post("/monitoring/retention", dependencies=[Depends(csrf_protected)])
def set_retention(
    request: Request, retention_days: str = Form(""), viewer: Viewer = Depends(signed_in)
):
    viewer.require("admin", "change retention")
    days = int(retention_days) if retention_days.strip().isdigit() else None
    if days is not None and not 1 <= days <= 3650:
        days = None
    with request.app.state.runtime.db.session() as session:
        retention.set_retention(session, project_id=viewer.project.id, days=days)
    shown = f"{days} days" if days else "forever"
    return RedirectResponse(f"/monitoring?notice=Spans are kept {shown}.", status_code=303)


@pages.router.get("/traces/{trace_id}")
def trace_tree(request: Request, trace_id: str, viewer: Viewer = Depends(signed_in)):
    """A trace as a tree of spans on a time line (waterfall), with its feedback."""
    return _trace_page(request, viewer, trace_id)


def _trace_page(request: Request, viewer: Viewer, trace_id: str, **extra: Any):
    with request.app.state.runtime.db.session() as session:
        try:
            trace = tracing.get_trace_or_raise(
                session, project_id=viewer.project.id, trace_id=trace_id
            )
        except NotFound:
            return console_of(request).render(
                request, "tracing/pending.html", {"trace_id": trace_id}
            )
        notes = feedback.list_feedback(session, project_id=viewer.project.id, trace_id=trace_id)
    context = {
        "trace": trace,
        "rows": waterfall(trace.spans),
        "feedback": notes,
        "form": {},
        "errors": {},
        **extra,
    }
    return console_of(request).render(request, "monitoring/trace.html", context)


@pages.router.post("/traces/{trace_id}/feedback", dependencies=[Depends(csrf_protected)])
def give_feedback(
    request: Request,
    trace_id: str,
    thumbs: str = Form(""),
    score: str = Form(""),
    comment: str = Form(""),
    viewer: Viewer = Depends(signed_in),
):
    viewer.require("reviewer", "give feedback")
    form = {"score": score, "comment": comment}
    try:
        data = FeedbackCreate(
            thumbs=thumbs or None,
            score=score.strip() or None,
            comment=comment.strip() or None,
            source="console",
            author=viewer.email,
        )
        with request.app.state.runtime.db.session() as session:
            feedback.create(session, project_id=viewer.project.id, trace_id=trace_id, data=data)
    except ValidationError as exc:
        # A thumb with a score: said beside the score, the thumbs being buttons.
        errors = field_errors(exc, rename={"thumbs": "score"})
        return _trace_page(request, viewer, trace_id, form=form, errors=errors)
    except LLMDeckError as exc:
        return _trace_page(request, viewer, trace_id, form=form, errors={"form": exc.message})
    return RedirectResponse(f"/traces/{trace_id}#feedback", status_code=303)


@pages.router.get("/alerts")
def alerts_page(request: Request, viewer: Viewer = Depends(signed_in)):
    return _alerts(request, viewer)


def _alerts(request: Request, viewer: Viewer, **extra: Any):
    with request.app.state.runtime.db.session() as session:
        rules = alerts.list_rules(session, project_id=viewer.project.id)
        events = alerts.list_events(session, project_id=viewer.project.id, limit=100)
    names = {r.id: r.name for r in rules}
    context = {
        "rules": rules,
        "events": events,
        "names": names,
        "metrics": alerts.ALERT_METRICS,
        "form": {},
        "errors": {},
        **extra,
    }
    return console_of(request).render(request, "monitoring/alerts.html", context)


@pages.router.post("/alerts", dependencies=[Depends(csrf_protected)])
def create_alert(
    request: Request,
    name: str = Form(""),
    metric: str = Form("latency_p95"),
    comparison: str = Form(">"),
    threshold: str = Form(""),
    window_minutes: str = Form("60"),
    webhook_url: str = Form(""),
    viewer: Viewer = Depends(signed_in),
):
    viewer.require("builder", "manage alert rules")
    form = {
        "name": name,
        "metric": metric,
        "comparison": comparison,
        "threshold": threshold,
        "window_minutes": window_minutes,
        "webhook_url": webhook_url,
    }
    try:
        # The form's text goes to the API's schema as it is: its messages are the real ones.
        data = AlertRuleCreate(
            name=name.strip() or metric,
            metric=metric,
            comparison=comparison,
            threshold=threshold.strip(),
            window_minutes=window_minutes.strip() or 60,
            webhook_url=webhook_url.strip(),
        )
        with request.app.state.runtime.db.session() as session:
            rule, secret = alerts.create_rule(
                session, request.app.state.runtime.settings, project_id=viewer.project.id, data=data
            )
    except ValidationError as exc:
        return _alerts(request, viewer, form=form, errors=field_errors(exc))
    except LLMDeckError as exc:
        field = exc.param if exc.param in form else "form"
        return _alerts(request, viewer, form=form, errors={field: exc.message})
    return _alerts(request, viewer, created=rule.name, secret=secret)


@pages.router.post("/alerts/{rule_id}/delete", dependencies=[Depends(csrf_protected)])
def delete_alert(request: Request, rule_id: str, viewer: Viewer = Depends(signed_in)):
    viewer.require("builder", "manage alert rules")
    with request.app.state.runtime.db.session() as session:
        alerts.delete_rule(session, project_id=viewer.project.id, rule_id=rule_id)
    return RedirectResponse("/alerts", status_code=303)
