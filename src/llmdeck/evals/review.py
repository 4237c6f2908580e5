"""Expert review: queues of experiment results or traces that people score, label and comment,
and how well each automatic metric agrees with them (Spearman's rho and Cohen's kappa)."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from llmdeck.core.db import utcnow
from llmdeck.core.errors import Conflict, InvalidRequest, NotFound
from llmdeck.evals import service
from llmdeck.evals.models import ExperimentResult, ReviewQueue, ReviewTask
from llmdeck.evals.schemas import QueueCreate, ReviewSubmit
from llmdeck.tracing import service as tracing


def create_queue(session: Session, *, project_id: str, data: QueueCreate) -> ReviewQueue:
    """A queue; with `experiment_id`, holding that experiment's results as its tasks (the API,
    the console's form and the CLI all create queues here)."""
    if get_queue(session, project_id=project_id, name=data.name) is not None:
        raise Conflict(f"A review queue named {data.name!r} already exists.", param="name")
    queue = ReviewQueue(
        project_id=project_id, name=data.name, instructions=data.instructions, labels=data.labels
    )
    session.add(queue)
    session.flush()
    if data.experiment_id:
        add_experiment(
            session, project_id=project_id, queue=queue, experiment_id=data.experiment_id
        )
    return queue


def queue_public(session: Session, *, queue: ReviewQueue) -> dict[str, Any]:
    """A queue's name, labels, instructions and how many of its tasks are reviewed."""
    total, done = session.execute(
        select(func.count(ReviewTask.id), func.count(ReviewTask.reviewed_at)).where(
            ReviewTask.queue_id == queue.id
        )
    ).one()
    return {
        "name": queue.name,
        "total": total,
        "reviewed": done,
        "labels": queue.labels,
        "instructions": queue.instructions,
    }


def get_queue(session: Session, *, project_id: str, name: str) -> ReviewQueue | None:
    return session.scalar(
        select(ReviewQueue).where(ReviewQueue.project_id == project_id, ReviewQueue.name == name)
    )


def get_queue_or_raise(session: Session, *, project_id: str, name: str) -> ReviewQueue:
    queue = get_queue(session, project_id=project_id, name=name)
    if queue is None:
        raise NotFound(f"No review queue named {name!r}.", param="queue")
    return queue


def list_queues(session: Session, *, project_id: str) -> list[dict[str, Any]]:
    return [
        queue_public(session, queue=queue)
        for queue in session.scalars(
            select(ReviewQueue)
            .where(ReviewQueue.project_id == project_id)
            .order_by(ReviewQueue.name)
        )
    ]


def add_experiment(
    session: Session, *, project_id: str, queue: ReviewQueue, experiment_id: str
) -> int:
    experiment = service.get_or_raise(session, project_id=project_id, experiment_id=experiment_id)
    rows = service.results(session, experiment=experiment)
    items = service.items_by_id(session, {r.item_id for r in rows})
    for r in rows:
        item = items.get(r.item_id)
        session.add(
            ReviewTask(
                queue_id=queue.id,
                result_id=r.id,
                trace_id=r.trace_id,
                payload={
                    "experiment": experiment.name,
                    "input": item.input if item else {},
                    "expected": item.expected if item else None,
                    "output": r.output,
                    "scores": r.scores or {},
                },
            )
        )
    session.flush()
    return len(rows)


def add_traces(
    session: Session, *, project_id: str, queue: ReviewQueue, trace_ids: list[str]
) -> int:
    for trace_id in trace_ids:
        trace = tracing.get_trace_or_raise(session, project_id=project_id, trace_id=trace_id)
        span = next((s for s in trace.spans if s.kind == "llm"), trace.spans[0])
        session.add(
            ReviewTask(
                queue_id=queue.id,
                trace_id=trace_id,
                payload={"input": span.input, "output": span.output, "model": span.model},
            )
        )
    session.flush()
    return len(trace_ids)


def tasks(session: Session, *, queue: ReviewQueue, pending_only: bool = False) -> list[ReviewTask]:
    query = select(ReviewTask).where(ReviewTask.queue_id == queue.id).order_by(ReviewTask.id)
    if pending_only:
        query = query.where(ReviewTask.reviewed_at.is_(None))
    return [*session.scalars(query)]


def get_task_or_raise(session: Session, *, queue: ReviewQueue, task_id: str) -> ReviewTask:
    task = session.get(ReviewTask, task_id)
    if task is None or task.queue_id != queue.id:
        raise NotFound(f"No review task {task_id!r} in {queue.name!r}.", param="task_id")
    return task


def submit(
    session: Session,
    *,
    queue: ReviewQueue,
    task: ReviewTask,
    data: ReviewSubmit,
    reviewer: str | None,
) -> ReviewTask:
    if data.score is None and data.label is None and not data.comment:
        raise InvalidRequest("A review needs a score, a label or a comment.")
    if data.label is not None and queue.labels and data.label not in queue.labels:
        raise InvalidRequest(f"Label must be one of {', '.join(queue.labels)}.", param="label")
    task.score, task.label, task.comment = data.score, data.label, data.comment
    task.reviewer, task.reviewed_at = reviewer, utcnow()
    session.flush()
    return task


def task_public(task: ReviewTask) -> dict[str, Any]:
    return {
        "id": task.id,
        "trace_id": task.trace_id,
        "result_id": task.result_id,
        "payload": task.payload,
        "score": task.score,
        "label": task.label,
        "comment": task.comment,
        "reviewer": task.reviewer,
        "reviewed_at": task.reviewed_at,
    }


# Agreement -----------------------------------------------------------------------------------


def spearman(xs: list[float], ys: list[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    rho = spearmanr(xs, ys).statistic
    return None if rho is None or math.isnan(rho) else float(rho)


def cohen_kappa(a: list[int], b: list[int]) -> float | None:
    """Agreement of two binary raters beyond chance."""
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    pa, pb = sum(a) / n, sum(b) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    if expected == 1:
        return 1.0 if observed == 1 else None
    return (observed - expected) / (1 - expected)


def agreement(session: Session, *, queue: ReviewQueue, threshold: float = 0.5) -> dict[str, Any]:
    """For each automatic metric on the reviewed results: Spearman's rho with the experts'
    scores and Cohen's kappa after splitting both at `threshold`."""
    pairs: dict[str, tuple[list[float], list[float]]] = {}
    rows = session.execute(
        select(ReviewTask, ExperimentResult)
        .join(ExperimentResult, ExperimentResult.id == ReviewTask.result_id)
        .where(ReviewTask.queue_id == queue.id, ReviewTask.score.is_not(None))
    )
    for task, result in rows:
        for name, value in (result.scores or {}).items():
            if value.get("score") is None:
                continue
            auto, human = pairs.setdefault(name, ([], []))
            auto.append(float(value["score"]))
            human.append(float(task.score))
    out = {}
    for name, (auto, human) in sorted(pairs.items()):
        out[name] = {
            "n": len(auto),
            "spearman": spearman(auto, human),
            "cohen_kappa": cohen_kappa(
                [int(x >= threshold) for x in auto], [int(y >= threshold) for y in human]
            ),
        }
    return out
