"""Experiments started from the API or the console run as durable jobs (`evals.experiment`).

The job runner (core/jobs.py) claims the job under a lease, so a server that dies mid-run
leaves a job that another process, or the same one restarted, claims again; the run then
resumes from the results already stored (each item is scored once: `eval_results` is unique
per experiment and item). `llmdeck eval run`, the CI gate, calls the runner in the
foreground instead.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmdeck.core import jobs
from llmdeck.core.errors import Conflict
from llmdeck.evals.models import Experiment
from llmdeck.evals.runner import run_experiment
from llmdeck.identity.schemas import Principal

EXPERIMENT_JOB = "evals.experiment"


def active_job(session: Session, *, experiment: Experiment) -> jobs.Job | None:
    """The queued or running job of this experiment, if any."""
    rows = session.scalars(
        select(jobs.Job).where(
            jobs.Job.kind == EXPERIMENT_JOB,
            jobs.Job.project_id == experiment.project_id,
            jobs.Job.status.in_(("queued", "running")),
        )
    )
    return next((j for j in rows if (j.payload or {}).get("experiment_id") == experiment.id), None)


def queue_run(session: Session, *, experiment: Experiment, principal: Principal) -> jobs.Job:
    """Queue a run (or the rest of one); a server's job worker picks it up."""
    if active_job(session, experiment=experiment) is not None:
        raise Conflict("This experiment is already running; watch its progress instead.")
    experiment.status = "queued"
    return jobs.enqueue(
        session,
        kind=EXPERIMENT_JOB,
        project_id=experiment.project_id,
        payload={"experiment_id": experiment.id, "principal": dataclasses.asdict(principal)},
    )


async def experiment_job(ctx: jobs.JobContext) -> dict[str, Any]:
    """The `evals.experiment` job: run the experiment, skipping items already stored."""
    principal = Principal(**ctx.payload["principal"])
    experiment = await run_experiment(
        ctx.runtime,
        principal,
        ctx.payload["experiment_id"],
        progress=lambda done, total: ctx.progress(done, total, f"{done}/{total} items"),
    )
    return {"experiment_id": experiment.id, "status": experiment.status}


jobs.register(EXPERIMENT_JOB, experiment_job)
