"""CLI of tracing: `llmdeck traces list|show`."""

from __future__ import annotations

import json

import typer
from sqlalchemy.orm import Session

from llmdeck.cli.output import console, db_session, emit, errors
from llmdeck.identity import service as identity
from llmdeck.identity.models import Project
from llmdeck.tracing import service

traces = typer.Typer(help="Traces of the calls made through llmdeck.", no_args_is_help=True)


def say_where_traces_are(session: Session, *, project: Project, nothing: str) -> None:
    """After an empty listing, on stderr (JSON on stdout stays clean): `nothing` when the
    project has traces (a filter or window left them out); else that it has none, and which
    projects do (`llmdeck up --demo` traces to `demo`, while the CLI's default is `default`).
    """
    if service.has_traces(session, project_id=project.id):
        message = nothing
    else:
        others = [name for name in service.projects_with_traces(session) if name != project.name]
        message = f"No traces in project {project.name}."
        if others:
            message += f" Traces are in: {', '.join(others)} (use --project {others[0]})."
    errors.print(message, highlight=False, soft_wrap=True)


@traces.command("list")
def traces_list(
    project: str = typer.Option("default", help="Project whose traces to list."),
    model: str | None = typer.Option(None, help="Only calls to this model alias."),
    status: str | None = typer.Option(
        None, help="ok or error (error: any span of the trace failed)."
    ),
    limit: int = typer.Option(20, help="How many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List recent traces."""
    with db_session() as session:
        target = identity.get_project_by_name_or_raise(session, name=project)
        page = service.list_traces(
            session, project_id=target.id, model=model, status=status, limit=limit
        )
        rows = [t.model_dump() for t in page.data]
        emit(
            rows,
            [
                "started_at",
                "trace_id",
                "model",
                "status",
                "latency_ms",
                "input_tokens",
                "output_tokens",
                "cost",
            ],
            as_json=as_json,
        )
        if not rows:
            say_where_traces_are(
                session,
                project=target,
                nothing=f"No traces in project {target.name} match these filters.",
            )


@traces.command("show")
def traces_show(
    trace_id: str, project: str = typer.Option("default", help="Project of the trace.")
) -> None:
    """Print one trace with all its spans, as JSON."""
    with db_session() as session:
        target = identity.get_project_by_name_or_raise(session, name=project)
        trace = service.get_trace_or_raise(session, project_id=target.id, trace_id=trace_id)
    console.print_json(json.dumps(trace.model_dump(mode="json")))
