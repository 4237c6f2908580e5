"""Dashboard metrics over a project's model calls: time series, summaries, costliest groups.

A request is a span of kind `llm` or `embedding` (from the gateway, the SDK or OTLP), counted
once per call: an app's span of a call that went through the gateway has the gateway's span
as its child, and only that child counts (tracing.service.one_per_call). The rows of a
window are read once, in time order, and bucketed here: percentiles need the values
themselves, and computing them in Python keeps one code path for both databases.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, aliased

from llmdeck.core.errors import InvalidRequest
from llmdeck.monitoring.models import Feedback
from llmdeck.tracing.models import Span
from llmdeck.tracing.service import REQUEST_KINDS, one_per_call

WINDOWS = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
# About 60 points per chart whatever the window.
BUCKETS = {"1h": 60, "6h": 360, "24h": 1800, "7d": 3 * 3600, "30d": 12 * 3600}
GROUPS = {"model", "api_key", "user", "tag"}
METRICS = (
    "requests",
    "error_rate",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "ttft_p50",
    "ttft_p95",
    "input_tokens",
    "output_tokens",
    "cost",
    "cost_per_day",
    "feedback_score",
)


@dataclass(slots=True)
class Row:
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
    tags: list[str] | None


def window_of(window: str) -> timedelta:
    if window not in WINDOWS:
        raise InvalidRequest(
            f"Unknown window {window!r}; choose one of: {', '.join(WINDOWS)}.", param="window"
        )
    return WINDOWS[window]


def _rows(
    session: Session,
    project_id: str,
    since: datetime,
    until: datetime,
    filters: dict[str, str | None],
) -> list[Row]:
    # The app's span over a gateway call knows the end user and tags; the gateway's does not.
    outer = aliased(Span)
    user = func.coalesce(Span.user_id, outer.user_id)
    query = (
        select(
            Span.started_at,
            Span.status,
            Span.latency_ms,
            Span.ttft_ms,
            Span.input_tokens,
            Span.output_tokens,
            Span.cost,
            Span.model,
            Span.api_key_id,
            user,
            Span.tags,
            outer.tags,
        )
        .outerjoin(
            outer,
            and_(
                outer.project_id == Span.project_id,
                outer.trace_id == Span.trace_id,
                outer.span_id == Span.parent_span_id,
                outer.kind.in_(REQUEST_KINDS),
            ),
        )
        .where(
            Span.project_id == project_id,
            Span.started_at >= since,
            Span.started_at < until,
            Span.kind.in_(REQUEST_KINDS),
            one_per_call(),
        )
    )
    if filters.get("model"):
        query = query.where(Span.model == filters["model"])
    if filters.get("api_key"):
        query = query.where(Span.api_key_id == filters["api_key"])
    if filters.get("user"):
        query = query.where(user == filters["user"])
    rows = [
        Row(*r[:-2], tags=r[-2] if r[-2] is not None else r[-1])
        for r in session.execute(query.order_by(Span.started_at))
    ]
    if filters.get("tag"):
        rows = [r for r in rows if r.tags and filters["tag"] in r.tags]
    return rows


def _keys(row: Row, group_by: str | None) -> list[str]:
    if group_by is None:
        return ["all"]
    if group_by == "tag":
        return list(row.tags or []) or ["(no tag)"]
    value = {"model": row.model, "api_key": row.api_key_id, "user": row.user_id}[group_by]
    return [value or "(none)"]


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def aggregate(rows: list[Row], hours: float) -> dict[str, Any]:
    """The dashboard's figures for a set of requests spanning `hours`."""
    latencies = [r.latency_ms for r in rows if r.latency_ms is not None]
    ttfts = [r.ttft_ms for r in rows if r.ttft_ms is not None]
    errors = sum(1 for r in rows if r.status == "error")
    cost = sum(r.cost or 0.0 for r in rows)
    return {
        "requests": len(rows),
        "errors": errors,
        "error_rate": errors / len(rows) if rows else None,
        "latency_p50": _pct(latencies, 50),
        "latency_p95": _pct(latencies, 95),
        "latency_p99": _pct(latencies, 99),
        "ttft_p50": _pct(ttfts, 50),
        "ttft_p95": _pct(ttfts, 95),
        "input_tokens": sum(r.input_tokens or 0 for r in rows),
        "output_tokens": sum(r.output_tokens or 0 for r in rows),
        "cost": cost,
        "cost_per_day": cost * 24 / hours if hours else None,
    }


def timeseries(
    session: Session,
    *,
    project_id: str,
    window: str = "24h",
    group_by: str | None = None,
    filters: dict[str, str | None] | None = None,
    now: datetime | None = None,
    max_groups: int = 8,
) -> dict[str, Any]:
    """Per-bucket figures over the window, one series per group (the largest `max_groups`)."""
    if group_by is not None and group_by not in GROUPS:
        raise InvalidRequest(
            f"group_by must be one of: {', '.join(sorted(GROUPS))}.", param="group_by"
        )
    span = window_of(window)
    until = now or datetime.now(UTC)
    since = until - span
    step = BUCKETS[window]
    n = int(span.total_seconds() // step)
    start = since.timestamp()
    rows = _rows(session, project_id, since, until, filters or {})
    grouped: dict[str, list[list[Row]]] = defaultdict(lambda: [[] for _ in range(n)])
    for row in rows:
        index = min(int((row.started_at.timestamp() - start) // step), n - 1)
        for key in _keys(row, group_by):
            grouped[key][index].append(row)
    ranked = sorted(grouped.items(), key=lambda kv: -sum(len(b) for b in kv[1]))[:max_groups]
    hours = step / 3600
    times = [datetime.fromtimestamp(start + i * step, tz=UTC) for i in range(n)]
    return {
        "window": window,
        "bucket_seconds": step,
        "group_by": group_by,
        "times": times,
        "series": [
            {"group": key, "points": [aggregate(bucket, hours) for bucket in buckets]}
            for key, buckets in ranked
        ],
    }


def summary(
    session: Session,
    *,
    project_id: str,
    window: str = "24h",
    filters: dict[str, str | None] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Totals over the window, with feedback."""
    span = window_of(window)
    return summary_since(
        session, project_id=project_id, span=span, filters=filters, now=now, window=window
    )


def summary_since(
    session: Session,
    *,
    project_id: str,
    span: timedelta,
    filters: dict[str, str | None] | None = None,
    now: datetime | None = None,
    window: str | None = None,
) -> dict[str, Any]:
    until = now or datetime.now(UTC)
    since = until - span
    rows = _rows(session, project_id, since, until, filters or {})
    figures = aggregate(rows, span.total_seconds() / 3600)
    figures.update(feedback_summary(session, project_id=project_id, since=since, until=until))
    figures["window"] = window
    return figures


def feedback_summary(
    session: Session, *, project_id: str, since: datetime, until: datetime
) -> dict[str, Any]:
    scores = list(
        session.execute(
            select(Feedback.kind, Feedback.score).where(
                Feedback.project_id == project_id,
                Feedback.created_at >= since,
                Feedback.created_at < until,
            )
        )
    )
    values = [s for _, s in scores if s is not None]
    thumbs = [s for k, s in scores if k == "thumbs"]
    return {
        "feedback_count": len(scores),
        "feedback_score": sum(values) / len(values) if values else None,
        "thumbs_up": sum(1 for s in thumbs if s == 1.0),
        "thumbs_down": sum(1 for s in thumbs if s == 0.0),
    }


def top(
    session: Session,
    *,
    project_id: str,
    by: str = "model",
    window: str = "24h",
    limit: int = 10,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """The costliest users, models, keys or tags over the window."""
    if by not in GROUPS:
        raise InvalidRequest(f"by must be one of: {', '.join(sorted(GROUPS))}.", param="by")
    until = now or datetime.now(UTC)
    rows = _rows(session, project_id, until - window_of(window), until, {})
    totals: dict[str, dict[str, Any]] = {}
    for row in rows:
        for key in _keys(row, by):
            entry = totals.setdefault(key, {"group": key, "cost": 0.0, "requests": 0, "tokens": 0})
            entry["cost"] += row.cost or 0.0
            entry["requests"] += 1
            entry["tokens"] += (row.input_tokens or 0) + (row.output_tokens or 0)
    return sorted(totals.values(), key=lambda e: (-e["cost"], -e["requests"]))[:limit]


def metric_value(
    session: Session, *, project_id: str, metric: str, minutes: int, now: datetime | None = None
) -> float | None:
    """One dashboard metric over the last `minutes` (what alert rules watch)."""
    if metric not in METRICS:
        raise InvalidRequest(
            f"Unknown metric {metric!r}; choose one of: {', '.join(METRICS)}.", param="metric"
        )
    figures = summary_since(
        session, project_id=project_id, span=timedelta(minutes=minutes), now=now
    )
    value = figures.get(metric)
    return float(value) if value is not None else None
