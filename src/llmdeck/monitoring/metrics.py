"""Dashboard metrics over a project's model calls: time series, summaries, costliest groups.

A request is one model call as `calls.rows` reads them: counted once, credited with its
trace's end user and tags, and application traffic only unless `source` asks for the
platform's own calls too. The rows of a window are read once, in time order, and bucketed
here: percentiles need the values themselves, and computing them in Python keeps one code
path for both databases.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from llmdeck.core.errors import InvalidRequest
from llmdeck.monitoring import feedback
from llmdeck.monitoring.calls import Row, rows_of

WINDOWS = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
# About 60 points per chart whatever the window.
BUCKETS = {"1h": 60, "6h": 360, "24h": 1800, "7d": 3 * 3600, "30d": 12 * 3600}
GROUPS = {"model", "api_key", "user", "tag", "source"}
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


def window_of(window: str) -> timedelta:
    if window not in WINDOWS:
        raise InvalidRequest(
            f"Unknown window {window!r}; choose one of: {', '.join(WINDOWS)}.", param="window"
        )
    return WINDOWS[window]


def _keys(row: Row, group_by: str | None) -> list[str]:
    if group_by is None:
        return ["all"]
    if group_by == "tag":
        return list(row.tags or []) or ["(no tag)"]
    value = {
        "model": row.model,
        "api_key": row.api_key_id,
        "user": row.user_id,
        "source": row.source,
    }[group_by]
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
    rows = rows_of(session, project_id, filters or {}, since=since, until=until)
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
    """Totals over the window, with feedback, and `platform_calls`: the number and cost of
    the platform's own calls in it (evaluations, drift checks, indexing), which the default
    source leaves out of the other figures but which still cost money."""
    span = window_of(window)
    until = now or datetime.now(UTC)
    filters = filters or {}
    figures = summary_since(
        session, project_id=project_id, span=span, filters=filters, now=until, window=window
    )
    internal = {**filters, "source": "internal"}
    own = rows_of(session, project_id, internal, since=until - span, until=until)
    figures["platform_calls"] = {
        "source": "internal",
        "requests": len(own),
        "cost": sum(r.cost or 0.0 for r in own),
    }
    return figures


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
    filters = filters or {}
    rows = rows_of(session, project_id, filters, since=since, until=until)
    figures = aggregate(rows, span.total_seconds() / 3600)
    figures.update(
        feedback.summary(session, project_id=project_id, since=since, until=until, filters=filters)
    )
    figures["window"] = window
    return figures


def top(
    session: Session,
    *,
    project_id: str,
    by: str = "model",
    window: str = "24h",
    limit: int = 10,
    filters: dict[str, str | None] | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """The costliest users, models, keys, tags or sources over the window."""
    if by not in GROUPS:
        raise InvalidRequest(f"by must be one of: {', '.join(sorted(GROUPS))}.", param="by")
    until = now or datetime.now(UTC)
    rows = rows_of(session, project_id, filters or {}, since=until - window_of(window), until=until)
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
    """One dashboard metric over the last `minutes` (what alert rules watch): application
    traffic, as the dashboard counts it."""
    if metric not in METRICS:
        raise InvalidRequest(
            f"Unknown metric {metric!r}; choose one of: {', '.join(METRICS)}.", param="metric"
        )
    figures = summary_since(
        session, project_id=project_id, span=timedelta(minutes=minutes), now=now
    )
    value = figures.get(metric)
    return float(value) if value is not None else None
