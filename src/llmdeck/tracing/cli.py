"""CLI of tracing: `llmdeck traces list|show`."""

from __future__ import annotations

import json

import typer

from llmdeck.cli.output import console, db_session, emit
from llmdeck.identity import service as identity
from llmdeck.tracing import service

traces = typer.Typer(help="Traces of the calls made through llmdeck.", no_args_is_help=True)


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


@traces.command("show")
def traces_show(
    trace_id: str, project: str = typer.Option("default", help="Project of the trace.")
) -> None:
    """Print one trace with all its spans, as JSON."""
    with db_session() as session:
        target = identity.get_project_by_name_or_raise(session, name=project)
        trace = service.get_trace_or_raise(session, project_id=target.id, trace_id=trace_id)
    console.print_json(json.dumps(trace.model_dump(mode="json")))
