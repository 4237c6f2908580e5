"""CLI of monitoring: `llmdeck monitoring summary|top|alerts|retention|purge`."""

from __future__ import annotations

import json

import typer

from llmdeck.cli.output import console, db_session, emit
from llmdeck.identity import service as identity
from llmdeck.monitoring import alerts, metrics, retention

monitoring = typer.Typer(
    help="Dashboards' figures, alerts and retention of traces.", no_args_is_help=True
)


@monitoring.command("summary")
def summary(
    project: str = typer.Option("default", help="Project to report on."),
    window: str = typer.Option("24h", help="1h, 6h, 24h, 7d or 30d."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Requests, errors, latency percentiles, tokens, cost and feedback over a window."""
    with db_session() as session:
        target = identity.get_project_by_name_or_raise(session, name=project)
        figures = metrics.summary(session, project_id=target.id, window=window)
    if as_json:
        console.print_json(json.dumps(figures, default=str))
        return
    rows = [{"figure": k, "value": v} for k, v in figures.items() if k != "window"]
    emit(rows, ["figure", "value"], as_json=False)


@monitoring.command("top")
def top(
    by: str = typer.Option("model", help="model, user, api_key or tag."),
    project: str = typer.Option("default", help="Project to report on."),
    window: str = typer.Option("24h", help="1h, 6h, 24h, 7d or 30d."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The costliest models, users, keys or tags."""
    with db_session() as session:
        target = identity.get_project_by_name_or_raise(session, name=project)
        rows = metrics.top(session, project_id=target.id, by=by, window=window)
    emit(rows, ["group", "requests", "tokens", "cost"], as_json=as_json)


@monitoring.command("alerts")
def alert_history(
    project: str = typer.Option("default", help="Project whose alert history to list."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The alert history, newest first."""
    with db_session() as session:
        target = identity.get_project_by_name_or_raise(session, name=project)
        events = alerts.list_events(session, project_id=target.id)
        rows = [
            {
                "created_at": e.created_at.isoformat(),
                "state": e.state,
                "message": e.message,
                "delivery": e.delivery,
            }
            for e in events
        ]
    emit(rows, ["created_at", "state", "message", "delivery"], as_json=as_json)


@monitoring.command("retention")
def set_retention(
    days: int = typer.Argument(..., help="Days to keep spans; 0 keeps them forever."),
    project: str = typer.Option("default", help="Project to change."),
) -> None:
    """Set how long a project keeps its spans."""
    with db_session() as session:
        target = identity.get_project_by_name_or_raise(session, name=project)
        retention.set_retention(session, project_id=target.id, days=days or None)
    console.print(f"{project} keeps spans {'forever' if not days else f'{days} days'}.")


@monitoring.command("purge")
def purge() -> None:
    """Delete spans older than each project's retention now."""
    from llmdeck.cli.output import fail_cleanly
    from llmdeck.core.settings import get_settings
    from llmdeck.runtime import prepare_database

    with fail_cleanly():
        deleted = retention.purge(prepare_database(get_settings()))
    console.print(f"Deleted {sum(deleted.values())} spans.")
