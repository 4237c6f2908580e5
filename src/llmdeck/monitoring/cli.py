"""CLI of monitoring: `llmdeck monitoring summary|top|alerts ...|retention|purge`."""

from __future__ import annotations

import json

import typer

from llmdeck.cli.output import console, db_session, emit, validated
from llmdeck.core.errors import InvalidRequest
from llmdeck.core.settings import get_settings
from llmdeck.identity import service as identity
from llmdeck.monitoring import alerts, metrics, retention
from llmdeck.monitoring.schemas import (
    AlertRuleCreate,
    AlertRuleCreated,
    AlertRulePublic,
    RetentionUpdate,
)
from llmdeck.tracing.cli import say_where_traces_are

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
        else:
            rows = [{"figure": k, "value": v} for k, v in figures.items() if k != "window"]
            emit(rows, ["figure", "value"], as_json=False)
        if not figures.get("requests"):
            say_where_traces_are(session, project=target, nothing=_no_calls(project, window))


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
        if not rows:
            say_where_traces_are(session, project=target, nothing=_no_calls(project, window))


def _no_calls(project: str, window: str) -> str:
    return (
        f"No model calls in project {project} in the last {window}; "
        "a longer --window (7d, 30d) looks further back."
    )


alert_rules = typer.Typer(
    help="Alert rules: a metric over a window against a threshold, sent to a webhook.",
    no_args_is_help=True,
)
monitoring.add_typer(alert_rules, name="alerts")
RULE_COLUMNS = ["id", "name", "metric", "comparison", "threshold", "window_minutes", "state"]


@alert_rules.command("list")
def alert_list(
    project: str = typer.Option("default", help="Project whose rules to list."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The project's alert rules, with their state."""
    with db_session() as session:
        target = identity.get_project_by_name_or_raise(session, name=project)
        rows = [
            AlertRulePublic.model_validate(r).model_dump(mode="json")
            for r in alerts.list_rules(session, project_id=target.id)
        ]
    emit(rows, [*RULE_COLUMNS, "webhook_url"], as_json=as_json)


@alert_rules.command("create")
def alert_create(
    name: str = typer.Argument(help="What the rule watches, in words."),
    metric: str = typer.Option(
        ..., help=f"One of: {', '.join(alerts.ALERT_METRICS)}.", show_default=False
    ),
    threshold: float = typer.Option(..., help="Fires when the metric crosses it."),
    webhook_url: str = typer.Option(..., help="Where firing and resolved go (POST)."),
    comparison: str = typer.Option(">", help="> fires above the threshold, < below it."),
    window: int = typer.Option(60, help="Minutes of data the metric is computed over."),
    secret: str = typer.Option(
        None, help="HMAC key of the webhook (16+ characters); generated when left out."
    ),
    project: str = typer.Option("default", help="Project of the rule."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Create an alert rule; the webhook's signing secret is printed once."""
    data = validated(
        AlertRuleCreate,
        options={
            "metric": "--metric",
            "comparison": "--comparison",
            "window_minutes": "--window",
            "webhook_url": "--webhook-url",
            "secret": "--secret",
        },
        name=name,
        metric=metric,
        comparison=comparison,
        threshold=threshold,
        window_minutes=window,
        webhook_url=webhook_url,
        secret=secret,
    )
    with db_session() as session:
        target = identity.get_project_by_name_or_raise(session, name=project)
        rule, key = alerts.create_rule(session, get_settings(), project_id=target.id, data=data)
        created = AlertRuleCreated(**AlertRulePublic.model_validate(rule).model_dump(), secret=key)
    if as_json:
        console.print_json(created.model_dump_json())
        return
    console.print(f"Created alert rule [bold]{name}[/bold] ({created.id}) in {project}.")
    console.print(f"Webhook signing secret (shown once): {key}", highlight=False, soft_wrap=True)


@alert_rules.command("delete")
def alert_delete(
    rule: str = typer.Argument(help="Rule id, or its name when no other rule has it."),
    project: str = typer.Option("default", help="Project of the rule."),
) -> None:
    """Delete an alert rule (its history stays)."""
    with db_session() as session:
        target = identity.get_project_by_name_or_raise(session, name=project)
        named = [r.id for r in alerts.list_rules(session, project_id=target.id) if r.name == rule]
        if len(named) > 1:
            raise InvalidRequest(
                f"{len(named)} rules are named {rule!r}; give the id "
                "(`llmdeck monitoring alerts list` shows them)."
            )
        alerts.delete_rule(session, project_id=target.id, rule_id=named[0] if named else rule)
    console.print(f"Deleted alert rule {rule} from {project}.")


@alert_rules.command("history")
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
    days: int | None = typer.Argument(
        None, help="Days to keep spans, 1 to 3650. Leave out (with no --forever) to show it."
    ),
    forever: bool = typer.Option(False, "--forever", help="Keep spans forever (no limit)."),
    project: str = typer.Option("default", help="Project to change."),
) -> None:
    """Show or set how long a project keeps its spans (and feedback and alert history).

    A positive number of days, or --forever for no limit (null in the REST API); 0 is
    refused, as by the API."""
    if days is not None and forever:
        raise InvalidRequest("Give a number of days or --forever, not both.")
    if days == 0:
        raise InvalidRequest(
            "0 days would keep nothing; use --forever to keep spans forever, "
            "or a positive number of days."
        )
    change = days is not None or forever
    if change:
        days = validated(
            RetentionUpdate, options={"retention_days": "DAYS"}, retention_days=days
        ).retention_days
    with db_session() as session:
        target = identity.get_project_by_name_or_raise(session, name=project)
        if change:
            kept = retention.set_retention(session, project_id=target.id, days=days)
        else:
            kept = retention.get_retention(session, project_id=target.id)
    console.print(f"{project} keeps spans {'forever' if kept is None else f'{kept} days'}.")


@monitoring.command("purge")
def purge() -> None:
    """Delete spans older than each project's retention now."""
    from llmdeck.cli.output import fail_cleanly
    from llmdeck.core.settings import get_settings
    from llmdeck.runtime import prepare_database

    with fail_cleanly():
        deleted = retention.purge(prepare_database(get_settings()))
    console.print(f"Deleted {sum(deleted.values())} spans.")
