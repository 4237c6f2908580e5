"""Experiments: create, read, summarise and compare (running them is runner.py)."""

from __future__ import annotations

from statistics import fmean
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmdeck.core.db import utcnow
from llmdeck.core.errors import InvalidRequest, NotFound
from llmdeck.evals import datasets
from llmdeck.evals.metrics import build_all, spec_name
from llmdeck.evals.models import Dataset, DatasetItem, Experiment, ExperimentResult
from llmdeck.evals.schemas import Comparison, ExperimentCreate, ExperimentPublic, ResultPublic
from llmdeck.evals.targets import check


def create(session: Session, *, project_id: str, data: ExperimentCreate) -> Experiment:
    dataset = datasets.get_by_name_or_raise(session, project_id=project_id, name=data.dataset)
    version = data.dataset_version or dataset.version
    if not 1 <= version <= dataset.version:
        raise InvalidRequest(f"Dataset {dataset.name!r} has no version {version}.")
    check(data.target)
    build_all(data.metrics)  # refuse unknown metrics and bad parameters now, not mid-run
    experiment = Experiment(
        project_id=project_id,
        name=data.name or f"{data.target.type}:{_target_ref(data.target.model_dump())}",
        dataset_id=dataset.id,
        dataset_version=version,
        target=data.target.model_dump(exclude_none=True),
        metrics=data.metrics,
        concurrency=data.concurrency,
        total=len(datasets.items(session, dataset=dataset, version=version)),
    )
    session.add(experiment)
    session.flush()
    return experiment


def _target_ref(target: dict[str, Any]) -> str:
    return str(
        target.get("prompt")
        or target.get("chain")
        or target.get("knowledge_base")
        or target.get("model")
    )


MIN_PREFIX = 6  # of a 26-character ULID: short enough to type, long enough to be unique


def get_or_raise(session: Session, *, project_id: str, experiment_id: str) -> Experiment:
    """The experiment with this id, or with this unique id prefix (at least 6 characters)."""
    experiment = session.get(Experiment, experiment_id)
    if experiment is not None and experiment.project_id == project_id:
        return experiment
    # ULIDs are upper case; a copied "01M91YD8Z…" from a table may carry the ellipsis.
    prefix = experiment_id.strip().rstrip("…").upper()
    if len(prefix) < MIN_PREFIX:
        raise NotFound(
            f"No experiment {experiment_id!r} in this project "
            f"(an id prefix needs at least {MIN_PREFIX} characters).",
            param="experiment_id",
        )
    found = [
        *session.scalars(
            select(Experiment)
            .where(
                Experiment.project_id == project_id,
                Experiment.id.startswith(prefix, autoescape=True),
            )
            .order_by(Experiment.id)
            .limit(6)
        )
    ]
    if not found:
        raise NotFound(f"No experiment {experiment_id!r} in this project.", param="experiment_id")
    if len(found) > 1:
        shown = ", ".join(e.id for e in found[:5]) + (", ..." if len(found) > 5 else "")
        raise InvalidRequest(
            f"The id prefix {experiment_id!r} matches several experiments ({shown}); "
            "give more characters.",
            param="experiment_id",
            code="ambiguous_id",
        )
    return found[0]


def list(session: Session, *, project_id: str, limit: int = 100) -> list[Experiment]:  # noqa: A001
    return [
        *session.scalars(
            select(Experiment)
            .where(Experiment.project_id == project_id)
            .order_by(Experiment.created_at.desc(), Experiment.id.desc())
            .limit(limit)
        )
    ]


def done_item_ids(session: Session, *, experiment: Experiment) -> set[str]:
    return set(
        session.scalars(
            select(ExperimentResult.item_id).where(ExperimentResult.experiment_id == experiment.id)
        )
    )


def results(session: Session, *, experiment: Experiment) -> list[ExperimentResult]:
    return [
        *session.scalars(
            select(ExperimentResult)
            .where(ExperimentResult.experiment_id == experiment.id)
            .order_by(ExperimentResult.item_id)
        )
    ]


def summarise(experiment: Experiment, rows: list[ExperimentResult]) -> dict[str, Any]:
    """Mean of each metric over the items it scored, plus latency, cost and errors."""
    names = [spec_name(s) for s in experiment.metrics]
    metrics: dict[str, float | None] = {}
    for name in names:
        values = [
            r.scores[name]["score"]
            for r in rows
            if name in (r.scores or {}) and r.scores[name].get("score") is not None
        ]
        metrics[name] = fmean(values) if values else None
    latencies = sorted(r.latency_ms for r in rows if r.latency_ms is not None and not r.error)
    return {
        "metrics": metrics,
        "items": len(rows),
        "errors": sum(1 for r in rows if r.error),
        "latency_ms_p50": latencies[len(latencies) // 2] if latencies else None,
        "latency_ms_mean": fmean(latencies) if latencies else None,
        "cost": sum(r.cost or 0.0 for r in rows),
    }


def finish(session: Session, *, experiment: Experiment, status: str, error: str | None) -> None:
    rows = results(session, experiment=experiment)
    experiment.completed = len(rows)
    experiment.summary = summarise(experiment, rows)
    experiment.status = status
    experiment.error = error
    if status == "done":
        experiment.finished_at = utcnow()
    session.flush()


def to_public(session: Session, experiment: Experiment) -> ExperimentPublic:
    dataset = session.get(Dataset, experiment.dataset_id)
    return ExperimentPublic(
        id=experiment.id,
        name=experiment.name,
        dataset=dataset.name if dataset else "?",
        dataset_version=experiment.dataset_version,
        target=experiment.target,
        metrics=experiment.metrics,
        concurrency=experiment.concurrency,
        status=experiment.status,
        total=experiment.total,
        completed=experiment.completed,
        summary=experiment.summary or {},
        error=experiment.error,
        created_at=experiment.created_at,
        finished_at=experiment.finished_at,
    )


def result_public(row: ExperimentResult, item: DatasetItem | None) -> ResultPublic:
    return ResultPublic(
        id=row.id,
        item_id=row.item_id,
        input=item.input if item else {},
        expected=item.expected if item else None,
        output=row.output,
        latency_ms=row.latency_ms,
        cost=row.cost,
        scores=row.scores or {},
        error=row.error,
        trace_id=row.trace_id,
    )


def items_by_id(session: Session, ids: set[str]) -> dict[str, DatasetItem]:
    if not ids:
        return {}
    return {i.id: i for i in session.scalars(select(DatasetItem).where(DatasetItem.id.in_(ids)))}


def compare(session: Session, *, project_id: str, experiment_ids: list[str]) -> Comparison:
    """Side by side: each metric's mean per experiment, and each item's outputs and scores."""
    if len(experiment_ids) < 1:
        raise InvalidRequest("Name at least one experiment.", param="ids")
    experiments = [
        get_or_raise(session, project_id=project_id, experiment_id=e) for e in experiment_ids
    ]
    metrics: list[str] = []
    for e in experiments:
        for spec in e.metrics:
            if spec_name(spec) not in metrics:
                metrics.append(spec_name(spec))
    per_item: dict[str, dict[str, Any]] = {}
    for e in experiments:
        for r in results(session, experiment=e):
            row = per_item.setdefault(r.item_id, {"item_id": r.item_id, "runs": {}})
            row["runs"][e.id] = {
                "output": r.output,
                "error": r.error,
                "latency_ms": r.latency_ms,
                "scores": {k: v.get("score") for k, v in (r.scores or {}).items()},
            }
    items = items_by_id(session, set(per_item))
    for item_id, row in per_item.items():
        item = items.get(item_id)
        row["input"] = item.input if item else {}
        row["expected"] = item.expected if item else None
    summary = {
        m: {e.id: (e.summary or {}).get("metrics", {}).get(m) for e in experiments} for m in metrics
    }
    return Comparison(
        experiments=[to_public(session, e) for e in experiments],
        metrics=metrics,
        summary=summary,
        items=[per_item[k] for k in sorted(per_item)],
    )
