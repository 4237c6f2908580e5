"""Drift: a recent window of a project's inputs against a baseline window.

Inputs are embedded with a model served by the gateway (so the embedding calls are traced
and governed like any other, with source "monitoring": the dashboard, the alert metrics and
the drift samples leave them out as the platform's own traffic, see calls.INTERNAL_SOURCES),
then compared by a kernel two-sample test: the maximum mean
discrepancy (MMD, Gaussian kernel, median-distance bandwidth) with a permutation p-value.
Outputs are compared too: their length (Kolmogorov-Smirnov) and the rate of refusals
(Fisher's exact test). Reports are made on demand, and by the monitoring loop for every
project with enough traffic, every `drift_interval` seconds (`run_scheduled`).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from llmdeck.core.errors import InvalidRequest, LLMDeckError
from llmdeck.monitoring.calls import source_condition
from llmdeck.monitoring.models import DriftReport
from llmdeck.tracing.models import Span
from llmdeck.tracing.service import one_per_call

log = logging.getLogger(__name__)

ALPHA = 0.05
METHOD = "mmd-rbf-permutation"
SOURCE = "monitoring"  # of the embedding calls; calls.INTERNAL_SOURCES counts it as internal
TRAFFIC_NOTE = (
    "The embedding calls of drift checks go through the gateway and are traced with source "
    "monitoring; the dashboard, alert metrics and drift samples count application traffic "
    "only, so they leave them out."
)
_REFUSAL = re.compile(
    r"\b(i can(?:'|no)t|i cannot|i'm sorry|i am sorry|i am unable|i'm unable|i won't|"
    r"as an ai|i'm not able|i am not able)\b",
    re.IGNORECASE,
)


def input_text(value: Any) -> str | None:
    """The text a call was about: the last user message, or the input itself."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, list):
        for message in reversed(value):
            if isinstance(message, dict) and message.get("role", "user") == "user":
                content = message.get("content")
                if isinstance(content, str) and content:
                    return content
    if isinstance(value, dict):
        for key in ("input", "query", "question", "prompt", "text"):
            if isinstance(value.get(key), str):
                return value[key]
    return json.dumps(value, default=str)[:2000]


def is_refusal(text: str | None) -> bool:
    return bool(text) and bool(_REFUSAL.search(text[:500]))


def window_samples(
    session: Session, *, project_id: str, since: datetime, until: datetime, limit: int
) -> tuple[list[str], list[str]]:
    """Inputs and outputs of the window's model calls (newest `limit`)."""
    rows = session.execute(
        select(Span.input, Span.output)
        .where(
            Span.project_id == project_id,
            Span.kind == "llm",
            Span.started_at >= since,
            Span.started_at < until,
            one_per_call(),
            _app_traffic(),  # an experiment's dataset is not what users ask
        )
        .order_by(Span.started_at.desc())
        .limit(limit)
    )
    inputs, outputs = [], []
    for value, output in rows:
        text = input_text(value)
        if text:
            inputs.append(text[:2000])
        if output is not None:
            outputs.append(output)
    return inputs, outputs


def _app_traffic() -> Any:
    return source_condition("app")


def mmd_test(
    x: np.ndarray, y: np.ndarray, *, permutations: int = 500, seed: int = 0
) -> tuple[float, float]:
    """Unbiased MMD^2 between samples x and y and its permutation p-value."""
    z = np.vstack([x, y]).astype(np.float64)
    n = len(x)
    sq = np.sum(z * z, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)
    upper = d2[np.triu_indices(len(z), k=1)]
    bandwidth = np.median(upper) if np.median(upper) > 0 else 1.0
    k = np.exp(-d2 / bandwidth)
    np.fill_diagonal(k, 0.0)

    def statistic(mask: np.ndarray) -> float:
        a, b = mask, ~mask
        m, q = a.sum(), b.sum()
        kxx = k[np.ix_(a, a)].sum() / (m * (m - 1))
        kyy = k[np.ix_(b, b)].sum() / (q * (q - 1))
        kxy = k[np.ix_(a, b)].sum() / (m * q)
        return float(kxx + kyy - 2 * kxy)

    labels = np.zeros(len(z), dtype=bool)
    labels[:n] = True
    observed = statistic(labels)
    rng = np.random.default_rng(seed)
    exceed = sum(statistic(rng.permutation(labels)) >= observed for _ in range(permutations))
    return observed, (exceed + 1) / (permutations + 1)


def output_drift(baseline: list[str], recent: list[str]) -> dict[str, Any]:
    from scipy import stats

    details: dict[str, Any] = {}
    if len(baseline) >= 5 and len(recent) >= 5:
        b_len, r_len = [len(t) for t in baseline], [len(t) for t in recent]
        ks = stats.ks_2samp(b_len, r_len)
        details["output_length"] = {
            "baseline_mean": float(np.mean(b_len)),
            "recent_mean": float(np.mean(r_len)),
            "statistic": float(ks.statistic),
            "p_value": float(ks.pvalue),
            "drifted": bool(ks.pvalue < ALPHA),
        }
    if baseline and recent:
        b_ref = sum(is_refusal(t) for t in baseline)
        r_ref = sum(is_refusal(t) for t in recent)
        table = [[b_ref, len(baseline) - b_ref], [r_ref, len(recent) - r_ref]]
        p = float(stats.fisher_exact(table).pvalue)
        details["refusal_rate"] = {
            "baseline": b_ref / len(baseline),
            "recent": r_ref / len(recent),
            "p_value": p,
            "drifted": bool(p < ALPHA),
        }
    return details


async def run(
    runtime: Any,
    principal: Any,
    *,
    baseline_days: float = 7,
    recent_hours: float = 24,
    embedding_model: str = "minilm-l6",
    max_samples: int = 200,
    permutations: int = 500,
    now: datetime | None = None,
) -> DriftReport:
    """Compare the last `recent_hours` with the `baseline_days` before them; store the report."""
    from fastapi.concurrency import run_in_threadpool

    from llmdeck.gateway.service import embedding_call

    # Up front: with too few inputs no call is made, and a wrong model would go unnoticed.
    await check_embedding_model(runtime, principal, embedding_model)
    now = now or datetime.now(UTC)
    recent_start = now - timedelta(hours=recent_hours)
    baseline_start = recent_start - timedelta(days=baseline_days)
    project_id = principal.project_id
    with runtime.db.session() as session:
        base_in, base_out = window_samples(
            session,
            project_id=project_id,
            since=baseline_start,
            until=recent_start,
            limit=max_samples,
        )
        new_in, new_out = window_samples(
            session, project_id=project_id, since=recent_start, until=now, limit=max_samples
        )
    details: dict[str, Any] = {
        "baseline": [baseline_start.isoformat(), recent_start.isoformat()],
        "recent": [recent_start.isoformat(), now.isoformat()],
        "embedding_model": embedding_model,
        "alpha": ALPHA,
        "traffic": TRAFFIC_NOTE,
    }
    statistic = p_value = None
    if len(base_in) >= 5 and len(new_in) >= 5:
        # Truncated: the inputs are cut to 2,000 characters already, and a distribution
        # test over their openings is what this report measures.
        call = embedding_call(
            principal, embedding_model, base_in + new_in, source=SOURCE, truncate=True
        )
        result = await runtime.gateway.embed(call)
        vectors = np.asarray(result.vectors, dtype=np.float64)
        statistic, p_value = await run_in_threadpool(
            mmd_test, vectors[: len(base_in)], vectors[len(base_in) :], permutations=permutations
        )
    else:
        details["note"] = "Too few inputs to compare: at least 5 in each window are needed."
    details.update(output_drift(base_out, new_out))
    report = DriftReport(
        project_id=project_id,
        method=METHOD,
        baseline_count=len(base_in),
        recent_count=len(new_in),
        statistic=statistic,
        p_value=p_value,
        drifted=bool(p_value is not None and p_value < ALPHA),
        details=details,
    )
    with runtime.db.session() as session:
        session.add(report)
    return report


async def check_embedding_model(runtime: Any, principal: Any, alias: str) -> None:
    """InvalidRequest unless `alias` resolves, as the gateway resolves it (a route, then the
    catalog), to an embedding model this project may use."""
    try:
        await runtime.gateway.directory.target(alias, principal, "embedding")
    except LLMDeckError as exc:  # NotFound, or a chat model (catalog.wrong_kind)
        raise InvalidRequest(
            f"embedding_model: {exc.message} Drift checks embed inputs with an embedding "
            "model (the bundled one is minilm-l6).",
            param="embedding_model",
        ) from None


def list_reports(session: Session, *, project_id: str, limit: int = 20) -> list[DriftReport]:
    return list(
        session.scalars(
            select(DriftReport)
            .where(DriftReport.project_id == project_id)
            .order_by(DriftReport.created_at.desc())
            .limit(limit)
        )
    )


def _calls_by_project(session: Session, since: datetime, until: datetime) -> dict[str, int]:
    rows = session.execute(
        select(Span.project_id, func.count())
        .where(
            Span.kind == "llm",
            Span.started_at >= since,
            Span.started_at < until,
            _app_traffic(),
        )
        .group_by(Span.project_id)
    )
    return {project_id: count for project_id, count in rows}


def due_projects(session: Session, *, settings: Any, now: datetime) -> list[str]:
    """Projects owed a scheduled report: enough calls in both windows, none reported lately."""
    recent_start = now - timedelta(hours=settings.drift_recent_hours)
    baseline_start = recent_start - timedelta(days=settings.drift_baseline_days)
    floor = max(5, settings.drift_min_calls)  # the MMD test needs 5 a side
    recent = _calls_by_project(session, recent_start, now)
    baseline = _calls_by_project(session, baseline_start, recent_start)
    busy = [p for p, n in recent.items() if n >= floor and baseline.get(p, 0) >= floor]
    if not busy:
        return []
    # The newest report of each (on-demand ones count): a restart or a second replica does
    # not repeat a report made less than an interval ago.
    last = dict(
        session.execute(
            select(DriftReport.project_id, func.max(DriftReport.created_at))
            .where(DriftReport.project_id.in_(busy))
            .group_by(DriftReport.project_id)
        ).all()
    )
    due_before = now - timedelta(seconds=settings.drift_interval)
    return [p for p in busy if last.get(p) is None or _aware(last[p]) <= due_before]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def run_scheduled(runtime: Any, *, now: datetime | None = None) -> list[DriftReport]:
    """A drift report for every project that is due one (see `due_projects`)."""
    from llmdeck.identity import service as identity
    from llmdeck.identity.schemas import Principal

    settings = runtime.settings
    now = now or datetime.now(UTC)
    with runtime.db.session() as session:
        due = due_projects(session, settings=settings, now=now)
        names = {p.id: p.name for p in identity.list_projects(session) if p.id in due}
    reports = []
    for project_id in due:
        principal = Principal(
            project_id=project_id, project_name=names.get(project_id, ""), role="admin"
        )
        try:
            reports.append(
                await run(
                    runtime,
                    principal,
                    baseline_days=settings.drift_baseline_days,
                    recent_hours=settings.drift_recent_hours,
                    embedding_model=settings.drift_embedding_model,
                    now=now,
                )
            )
        except Exception:  # one project's failure (a missing model) must not stop the rest
            log.exception("scheduled drift report for project %s failed", project_id)
    return reports
