"""CLI of expert review: `llmdeck eval review list|create|show` (the API's and console's
review queues, through the same service)."""

from __future__ import annotations

import typer

from llmdeck.cli.output import console, db_session, emit, validated
from llmdeck.evals import review as service
from llmdeck.evals.schemas import QueueCreate
from llmdeck.identity import service as identity

review = typer.Typer(help="Review queues: experts score and label results.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print JSON.")
PROJECT = typer.Option("default", help="Project to act in.")


def _project_id(session, name: str) -> str:
    return identity.get_project_by_name_or_raise(session, name=name).id


@review.command("list")
def review_list(project: str = PROJECT, as_json: bool = JSON) -> None:
    """Review queues with how many of their tasks are reviewed."""
    with db_session() as session:
        rows = service.list_queues(session, project_id=_project_id(session, project))
    for row in rows:
        row["labels"] = ", ".join(row["labels"])
    emit(rows, ["name", "reviewed", "total", "labels"], as_json=as_json)


@review.command("create")
def review_create(
    name: str = typer.Argument(..., help="Queue name."),
    experiment: str | None = typer.Option(
        None, "--experiment", help="Experiment (id or unique prefix) whose results to review."
    ),
    label: list[str] = typer.Option([], "--label", help="A label reviewers can pick (repeat)."),
    instructions: str = typer.Option("", help="What reviewers should look for."),
    project: str = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Create a review queue, filled with an experiment's results when given one."""
    data = validated(
        QueueCreate,
        options={"experiment_id": "--experiment", "labels": "--label"},
        name=name,
        experiment_id=experiment,
        labels=label,
        instructions=instructions,
    )
    with db_session() as session:
        queue = service.create_queue(session, project_id=_project_id(session, project), data=data)
        row = service.queue_public(session, queue=queue)
    if as_json:
        emit([row], [], as_json=True)
        return
    console.print(f"Created review queue {row['name']} with {row['total']} tasks.", highlight=False)


@review.command("show")
def review_show(
    name: str = typer.Argument(..., help="Queue name."),
    project: str = PROJECT,
    as_json: bool = JSON,
) -> None:
    """A queue's tasks (pending first) and how its metrics agree with the reviewers."""
    with db_session() as session:
        queue = service.get_queue_or_raise(
            session, project_id=_project_id(session, project), name=name
        )
        row = service.queue_public(session, queue=queue)
        tasks = [service.task_public(t) for t in service.tasks(session, queue=queue)]
        agreement = service.agreement(session, queue=queue)
    if as_json:
        emit([{**row, "tasks": tasks, "agreement": agreement}], [], as_json=True)
        return
    console.print(
        f"{row['name']}: {row['reviewed']} of {row['total']} reviewed · labels "
        f"{', '.join(row['labels']) or '-'}",
        highlight=False,
    )
    tasks.sort(key=lambda t: t["reviewed_at"] is not None)
    emit(
        [
            {
                "id": t["id"],
                "output": str((t["payload"] or {}).get("output") or "")[:60],
                "score": t["score"],
                "label": t["label"],
            }
            for t in tasks
        ],
        ["id", "output", "score", "label"],
        as_json=False,
    )
